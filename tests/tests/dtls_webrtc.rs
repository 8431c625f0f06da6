//! callsec-dtls against webrtc-dtls (the webrtc-rs stack), both directions, both suites, both
//! SRTP profiles, over loopback UDP: same profile, same RFC 5705 keying material, each side
//! sees the other's certificate.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::UdpSocket;
use std::sync::Arc;
use std::time::{Duration, Instant};

use callsec_dtls::{
    Certificate, CipherSuite, Config, Connected, Connection, Error, Event, ExtendedMasterSecret,
    Fingerprint,
};
use callsec_srtp::ProtectionProfile;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use webrtc_dtls::cipher_suite::CipherSuiteId;
use webrtc_dtls::config::{ClientAuthType, Config as WConfig, ExtendedMasterSecretType};
use webrtc_dtls::conn::DTLSConn;
use webrtc_dtls::extension::extension_use_srtp::SrtpProtectionProfile;
use webrtc_util::KeyingMaterialExporter;

fn w_suite(s: CipherSuite) -> CipherSuiteId {
    match s {
        CipherSuite::EcdheEcdsaAes128GcmSha256 => {
            CipherSuiteId::Tls_Ecdhe_Ecdsa_With_Aes_128_Gcm_Sha256
        }
        CipherSuite::EcdheEcdsaAes256CbcSha => CipherSuiteId::Tls_Ecdhe_Ecdsa_With_Aes_256_Cbc_Sha,
    }
}

fn w_profile(p: ProtectionProfile) -> SrtpProtectionProfile {
    match p {
        ProtectionProfile::AeadAes128Gcm => SrtpProtectionProfile::Srtp_Aead_Aes_128_Gcm,
        ProtectionProfile::Aes128CmHmacSha1_80 => {
            SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_80
        }
    }
}

struct Outcome {
    keying_material: Vec<u8>,
    profile: SrtpProtectionProfile,
    peer_certificate: Vec<u8>,
}

fn w_config(
    cert: webrtc_dtls::crypto::Certificate,
    suite: CipherSuite,
    profile: ProtectionProfile,
    ems: ExtendedMasterSecretType,
) -> WConfig {
    WConfig {
        certificates: vec![cert],
        cipher_suites: vec![w_suite(suite)],
        srtp_protection_profiles: vec![w_profile(profile)],
        extended_master_secret: ems,
        insecure_skip_verify: true,
        client_auth: ClientAuthType::RequireAnyClientCert,
        ..Default::default()
    }
}

/// Runs webrtc-dtls on `sock` (already connected to the peer).
async fn run_webrtc(
    sock: tokio::net::UdpSocket,
    cert: webrtc_dtls::crypto::Certificate,
    suite: CipherSuite,
    profile: ProtectionProfile,
    is_client: bool,
    ems: ExtendedMasterSecretType,
) -> Outcome {
    let config = w_config(cert, suite, profile, ems);
    let conn = tokio::time::timeout(
        Duration::from_secs(15),
        DTLSConn::new(Arc::new(sock), config, is_client, None),
    )
    .await
    .expect("webrtc-dtls handshake timed out")
    .expect("webrtc-dtls handshake failed");
    let state = conn.connection_state().await;
    let len = profile.keying_material_len();
    let keying_material = state
        .export_keying_material("EXTRACTOR-dtls_srtp", &[], len)
        .await
        .unwrap();
    let profile = conn.selected_srtpprotection_profile();
    let peer_certificate = state.peer_certificates.first().cloned().unwrap_or_default();
    // Exchange one application message each way.
    conn.write(b"from-webrtc", None).await.unwrap();
    let mut buf = [0u8; 100];
    let n = tokio::time::timeout(Duration::from_secs(5), conn.read(&mut buf, None))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf[..n], b"from-callsec");
    // Give the datagram time to leave before closing.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let _ = conn.close().await;
    Outcome {
        keying_material,
        profile,
        peer_certificate,
    }
}

/// Runs callsec on a blocking socket connected to the peer; returns the keying material and
/// what the Connected event said.
fn run_callsec(mut conn: Connection, sock: &UdpSocket) -> (Vec<u8>, Box<Connected>, Connection) {
    sock.set_read_timeout(Some(Duration::from_millis(10)))
        .unwrap();
    let end = Instant::now() + Duration::from_secs(15);
    let mut buf = [0u8; 65536];
    let mut got_data = false;
    let mut sent_data = false;
    let mut connected = None;
    while Instant::now() < end && !(got_data && sent_data) {
        while let Some(d) = conn.poll_transmit() {
            sock.send(&d).unwrap();
        }
        while let Some(e) = conn.poll_event() {
            match e {
                Event::Connected(c) => connected = Some(c),
                Event::ApplicationData(d) => {
                    assert_eq!(d, b"from-webrtc");
                    got_data = true;
                }
                Event::Closed { error } => panic!("closed: {error:?}"),
                _ => {}
            }
        }
        if connected.is_some() && !sent_data {
            conn.send(b"from-callsec").unwrap();
            sent_data = true;
            continue;
        }
        match sock.recv(&mut buf) {
            Ok(n) => {
                let _ = conn.handle_datagram(Instant::now(), &buf[..n]);
            }
            Err(_) => {
                let _ = conn.handle_timeout(Instant::now());
            }
        }
    }
    let c = connected.expect("callsec connected");
    let mut km = vec![0u8; c.profile.keying_material_len()];
    conn.export_keying_material(b"EXTRACTOR-dtls_srtp", None, &mut km)
        .unwrap();
    assert!(got_data, "no application data from webrtc-dtls");
    (km, c, conn)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// webrtc-dtls's own self-signed certificate and its fingerprint.
fn webrtc_certificate() -> (webrtc_dtls::crypto::Certificate, Fingerprint) {
    let cert =
        webrtc_dtls::crypto::Certificate::generate_self_signed(vec!["webrtc".to_string()]).unwrap();
    let fp = Fingerprint::of_der(cert.certificate[0].as_ref());
    (cert, fp)
}

/// Two loopback sockets connected to each other: ours (blocking) and webrtc-dtls's
/// (non-blocking, for tokio).
fn socket_pair() -> (UdpSocket, UdpSocket) {
    let ours = UdpSocket::bind("127.0.0.1:0").unwrap();
    let theirs = UdpSocket::bind("127.0.0.1:0").unwrap();
    ours.connect(theirs.local_addr().unwrap()).unwrap();
    theirs.connect(ours.local_addr().unwrap()).unwrap();
    theirs.set_nonblocking(true).unwrap();
    (ours, theirs)
}

fn case(suite: CipherSuite, profile: ProtectionProfile, callsec_is_client: bool) {
    case_ems(
        suite,
        profile,
        callsec_is_client,
        ExtendedMasterSecretType::Require,
        ExtendedMasterSecret::Required,
    );
}

/// One handshake with the given extended master secret policies on both sides.
fn case_ems(
    suite: CipherSuite,
    profile: ProtectionProfile,
    callsec_is_client: bool,
    peer_ems: ExtendedMasterSecretType,
    our_ems: ExtendedMasterSecret,
) {
    let rt = runtime();
    let (w_cert, w_fp) = webrtc_certificate();
    let mut rng = ChaCha20Rng::seed_from_u64(u64::from(suite.id()) ^ u64::from(profile.id()));
    let mut config = Config::new(Certificate::generate(&mut rng));
    config.cipher_suites = vec![suite];
    config.srtp_profiles = vec![profile];
    config.extended_master_secret = our_ems;
    let our_der = config.certificate.der().to_vec();
    let config = Arc::new(config);

    let (ours, theirs_std) = socket_pair();
    let peer_addr = theirs_std.local_addr().unwrap();

    let webrtc = rt.spawn(async move {
        let sock = tokio::net::UdpSocket::from_std(theirs_std).unwrap();
        run_webrtc(sock, w_cert, suite, profile, !callsec_is_client, peer_ems).await
    });
    let conn = if callsec_is_client {
        Connection::client(config, &[w_fp], Instant::now(), &mut rng).unwrap()
    } else {
        Connection::server(config, &[w_fp], peer_addr, &mut rng).unwrap()
    };
    let (km, connected, mut conn) = run_callsec(conn, &ours);
    assert_eq!(
        connected.extended_master_secret,
        peer_ems != ExtendedMasterSecretType::Disable
    );
    // Both servers run the stateless cookie exchange (callsec by default, webrtc-dtls always).
    assert_eq!(conn.stats().hello_verify_requests, 1);
    let outcome = rt.block_on(webrtc).unwrap();
    assert_eq!(outcome.profile as u16, profile.id());
    assert_eq!(outcome.keying_material, km, "keying material differs");
    assert_eq!(
        outcome.peer_certificate, our_der,
        "webrtc-dtls saw another certificate"
    );
    // webrtc-dtls ended with close_notify (RFC 5246 §7.2.1): callsec closes in order.
    assert_eq!(await_close(&mut conn, &ours), None);
}

/// Feeds `conn` what arrives on `sock` until it closes (at most 5 s); returns the error its
/// `Closed` event carried (`None`: an orderly close_notify).
fn await_close(conn: &mut Connection, sock: &UdpSocket) -> Option<Error> {
    let end = Instant::now() + Duration::from_secs(5);
    let mut buf = [0u8; 65536];
    while !conn.is_closed() && Instant::now() < end {
        if let Ok(n) = sock.recv(&mut buf) {
            let _ = conn.handle_datagram(Instant::now(), &buf[..n]);
        }
    }
    assert!(
        conn.is_closed(),
        "callsec never saw the peer's close_notify"
    );
    std::iter::from_fn(|| conn.poll_event())
        .find_map(|e| match e {
            Event::Closed { error } => Some(error),
            _ => None,
        })
        .expect("a Closed event")
}

#[test]
fn callsec_client_webrtc_server_gcm_aead() {
    case(
        CipherSuite::EcdheEcdsaAes128GcmSha256,
        ProtectionProfile::AeadAes128Gcm,
        true,
    );
}

#[test]
fn callsec_client_webrtc_server_cbc_cm() {
    case(
        CipherSuite::EcdheEcdsaAes256CbcSha,
        ProtectionProfile::Aes128CmHmacSha1_80,
        true,
    );
}

#[test]
fn callsec_client_webrtc_server_gcm_cm() {
    case(
        CipherSuite::EcdheEcdsaAes128GcmSha256,
        ProtectionProfile::Aes128CmHmacSha1_80,
        true,
    );
}

#[test]
fn callsec_client_webrtc_server_cbc_aead() {
    case(
        CipherSuite::EcdheEcdsaAes256CbcSha,
        ProtectionProfile::AeadAes128Gcm,
        true,
    );
}

#[test]
fn webrtc_client_callsec_server_gcm_aead() {
    case(
        CipherSuite::EcdheEcdsaAes128GcmSha256,
        ProtectionProfile::AeadAes128Gcm,
        false,
    );
}

#[test]
fn webrtc_client_callsec_server_cbc_cm() {
    case(
        CipherSuite::EcdheEcdsaAes256CbcSha,
        ProtectionProfile::Aes128CmHmacSha1_80,
        false,
    );
}

#[test]
fn webrtc_client_callsec_server_gcm_cm() {
    case(
        CipherSuite::EcdheEcdsaAes128GcmSha256,
        ProtectionProfile::Aes128CmHmacSha1_80,
        false,
    );
}

#[test]
fn webrtc_client_callsec_server_cbc_aead() {
    case(
        CipherSuite::EcdheEcdsaAes256CbcSha,
        ProtectionProfile::AeadAes128Gcm,
        false,
    );
}

/// webrtc-dtls without the extended master secret, callsec preferring it: the RFC 5246 §8.1
/// master secret, checked against another implementation's keying material.
#[test]
fn without_extended_master_secret_when_only_preferred() {
    for callsec_is_client in [true, false] {
        case_ems(
            CipherSuite::EcdheEcdsaAes128GcmSha256,
            ProtectionProfile::AeadAes128Gcm,
            callsec_is_client,
            ExtendedMasterSecretType::Disable,
            ExtendedMasterSecret::Preferred,
        );
    }
}

/// webrtc-dtls without the extended master secret, callsec requiring it (the default): the
/// handshake never completes, in both roles (RFC 7627 §5.3, §5.4). As server, callsec refuses
/// the ClientHello (its cookie proved the sender) with handshake_failure; as client it
/// discards the plaintext ServerHello (a spoofer could have sent it) and the handshake ends
/// by its total timeout, with the refusal as the recorded reason.
#[test]
fn without_extended_master_secret_when_required_is_refused() {
    for callsec_is_client in [true, false] {
        let rt = runtime();
        let (w_cert, w_fp) = webrtc_certificate();
        let mut rng = ChaCha20Rng::seed_from_u64(77);
        let mut config = Config::new(Certificate::generate(&mut rng));
        config.handshake_timeout = Duration::from_secs(2);
        let config = Arc::new(config);
        let (ours, theirs_std) = socket_pair();
        let peer_addr = theirs_std.local_addr().unwrap();
        let webrtc = rt.spawn(async move {
            let sock = tokio::net::UdpSocket::from_std(theirs_std).unwrap();
            let config = w_config(
                w_cert,
                CipherSuite::EcdheEcdsaAes128GcmSha256,
                ProtectionProfile::AeadAes128Gcm,
                ExtendedMasterSecretType::Disable,
            );
            let res = tokio::time::timeout(
                Duration::from_secs(5),
                DTLSConn::new(Arc::new(sock), config, !callsec_is_client, None),
            )
            .await;
            matches!(res, Ok(Ok(_)))
        });
        let mut conn = if callsec_is_client {
            Connection::client(config, &[w_fp], Instant::now(), &mut rng).unwrap()
        } else {
            Connection::server(config, &[w_fp], peer_addr, &mut rng).unwrap()
        };
        ours.set_read_timeout(Some(Duration::from_millis(10)))
            .unwrap();
        let end = Instant::now() + Duration::from_secs(5);
        let mut buf = [0u8; 65536];
        let mut closed = None;
        while Instant::now() < end && closed.is_none() {
            while let Some(d) = conn.poll_transmit() {
                let _ = ours.send(&d);
            }
            while let Some(e) = conn.poll_event() {
                match e {
                    Event::Connected(_) => panic!("connected without EMS"),
                    Event::Closed { error } => closed = Some(error),
                    _ => {}
                }
            }
            match ours.recv(&mut buf) {
                Ok(n) => {
                    let _ = conn.handle_datagram(Instant::now(), &buf[..n]);
                }
                Err(_) => {
                    let _ = conn.handle_timeout(Instant::now());
                }
            }
        }
        // The fatal alert goes out.
        while let Some(d) = conn.poll_transmit() {
            let _ = ours.send(&d);
        }
        if callsec_is_client {
            assert!(
                matches!(closed, Some(Some(Error::Timeout))),
                "client: {closed:?}"
            );
            assert!(
                matches!(conn.last_discarded(), Some(Error::PeerIncompatible(_))),
                "{:?}",
                conn.last_discarded()
            );
        } else {
            assert!(
                matches!(closed, Some(Some(Error::PeerIncompatible(_)))),
                "server: {closed:?}"
            );
        }
        assert!(!rt.block_on(webrtc).unwrap(), "webrtc-dtls connected");
    }
}
