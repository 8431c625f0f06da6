//! callsec-dtls against webrtc-dtls (the webrtc-rs stack), both directions, both suites, both
//! SRTP profiles, over loopback UDP: same profile, same RFC 5705 keying material, each side
//! sees the other's certificate.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::UdpSocket;
use std::sync::Arc;
use std::time::{Duration, Instant};

use callsec_dtls::{
    AlertDescription, Certificate, CipherSuite, Config, Connected, Connection, Error, Event,
    ExtendedMasterSecret, Fingerprint,
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
/// by its total timeout (here 2 s, before three rounds of refusals could end it), with the
/// refusal as its error.
#[test]
fn without_extended_master_secret_when_required_is_refused() {
    for callsec_is_client in [true, false] {
        let (w_cert, w_fp) = webrtc_certificate();
        let mut rng = ChaCha20Rng::seed_from_u64(77);
        let mut config = Config::new(Certificate::generate(&mut rng));
        config.handshake_timeout = Duration::from_secs(2);
        let refused = refused_handshake(
            callsec_is_client,
            (config, w_fp, rng),
            w_config(
                w_cert,
                CipherSuite::EcdheEcdsaAes128GcmSha256,
                ProtectionProfile::AeadAes128Gcm,
                ExtendedMasterSecretType::Disable,
            ),
            Duration::from_secs(5),
            "without EMS",
        );
        let (closed, conn) = (refused.closed, refused.conn);
        if callsec_is_client {
            assert!(
                matches!(closed, Some(Some(Error::PeerIncompatible(_)))),
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
        assert!(
            !matches!(refused.webrtc, Some(Ok(()))),
            "webrtc-dtls connected"
        );
    }
}

/// Who refuses the other's certificate in [`wrong_certificate`].
#[derive(Debug, Clone, Copy)]
enum Refuses {
    /// callsec expects another fingerprint than webrtc-dtls's certificate has.
    Callsec,
    /// webrtc-dtls refuses callsec's certificate (its `verify_peer_certificate` says no).
    Webrtc,
}

fn refuse_every_certificate(
    _: &[Vec<u8>],
    _: &[rustls_pki_types::CertificateDer<'static>],
) -> Result<(), webrtc_dtls::Error> {
    Err(webrtc_dtls::Error::Other(
        "not the certificate in SDP".into(),
    ))
}

/// A wrong certificate (issue 17) against webrtc-dtls: both sides end with a reason long
/// before callsec's 60 s handshake timeout. Returns callsec's `Closed` error and how
/// webrtc-dtls's handshake ended (`Some(error)`: it failed; `None`: it timed out after
/// 20 s or connected).
fn wrong_certificate(callsec_is_client: bool, refuses: Refuses) -> (Option<Error>, Option<String>) {
    let (w_cert, w_fp) = webrtc_certificate();
    let mut rng = ChaCha20Rng::seed_from_u64(90);
    let mut config = Config::new(Certificate::generate(&mut rng));
    // A shorter first retransmission timeout keeps the test short: the silence that follows
    // webrtc-dtls's alert is then judged after 0.25 + 0.5 + 1 s rather than 1 + 2 + 4 s.
    config.initial_retransmit_timeout = Duration::from_millis(250);
    let expected = match refuses {
        Refuses::Callsec => Fingerprint::from_bytes([9; 32]),
        Refuses::Webrtc => w_fp,
    };
    let mut w_config = w_config(
        w_cert,
        CipherSuite::EcdheEcdsaAes128GcmSha256,
        ProtectionProfile::AeadAes128Gcm,
        ExtendedMasterSecretType::Require,
    );
    if matches!(refuses, Refuses::Webrtc) {
        w_config.verify_peer_certificate = Some(Arc::new(refuse_every_certificate));
    }
    let refused = refused_handshake(
        callsec_is_client,
        (config, expected, rng),
        w_config,
        Duration::from_secs(20),
        "with a refused certificate",
    );
    let closed = refused.closed.expect("callsec ended within 20 s");
    let theirs = match refused.webrtc {
        Some(Err(e)) => Some(e),
        Some(Ok(())) | None => None,
    };
    (closed, theirs)
}

/// How a handshake that callsec must not complete ended, in [`refused_handshake`].
struct Refused {
    /// The error of callsec's `Closed` event (`None`: it did not close in time).
    closed: Option<Option<Error>>,
    /// callsec's connection, closed or not.
    conn: Connection,
    /// How webrtc-dtls's handshake ended: `Some(Ok)` connected, `Some(Err(reason))` failed,
    /// `None` still running at the limit.
    webrtc: Option<Result<(), String>>,
}

/// A handshake between callsec (`ours`: its config, the fingerprint it expects, its random
/// source) and webrtc-dtls (`theirs`) over loopback, each given at most `within`; callsec
/// must never connect (it panics naming `never`, "connected {never}"). callsec is driven
/// until its `Closed` event, then its last datagrams (the fatal alert) go out.
fn refused_handshake(
    callsec_is_client: bool,
    ours: (Config, Fingerprint, ChaCha20Rng),
    theirs: WConfig,
    within: Duration,
    never: &str,
) -> Refused {
    let (config, expected, mut rng) = ours;
    let rt = runtime();
    let (sock, theirs_std) = socket_pair();
    let peer_addr = theirs_std.local_addr().unwrap();
    let webrtc = rt.spawn(async move {
        let sock = tokio::net::UdpSocket::from_std(theirs_std).unwrap();
        let res = tokio::time::timeout(
            within,
            DTLSConn::new(Arc::new(sock), theirs, !callsec_is_client, None),
        )
        .await;
        match res {
            Ok(Ok(_)) => Some(Ok(())),
            Ok(Err(e)) => Some(Err(e.to_string())),
            Err(_) => None,
        }
    });
    let config = Arc::new(config);
    let mut conn = if callsec_is_client {
        Connection::client(config, &[expected], Instant::now(), &mut rng).unwrap()
    } else {
        Connection::server(config, &[expected], peer_addr, &mut rng).unwrap()
    };
    sock.set_read_timeout(Some(Duration::from_millis(10)))
        .unwrap();
    let end = Instant::now() + within;
    let mut buf = [0u8; 65536];
    let mut closed = None;
    while Instant::now() < end && closed.is_none() {
        while let Some(d) = conn.poll_transmit() {
            let _ = sock.send(&d);
        }
        while let Some(e) = conn.poll_event() {
            match e {
                Event::Connected(_) => panic!("connected {never}"),
                Event::Closed { error } => closed = Some(error),
                _ => {}
            }
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
    // The fatal alert goes out.
    while let Some(d) = conn.poll_transmit() {
        let _ = sock.send(&d);
    }
    Refused {
        closed,
        conn,
        webrtc: rt.block_on(webrtc).unwrap(),
    }
}

/// callsec refuses webrtc-dtls's certificate: after refusals in three retransmission rounds
/// it fails with bad_certificate, and its alert ends webrtc-dtls's handshake too (which
/// would otherwise retransmit until the 20 s limit).
#[test]
fn callsec_refusing_a_wrong_certificate_tells_webrtc_dtls() {
    for callsec_is_client in [true, false] {
        let (ours, theirs) = wrong_certificate(callsec_is_client, Refuses::Callsec);
        assert_eq!(
            ours,
            Some(Error::BadCertificate("fingerprint mismatch")),
            "callsec client {callsec_is_client}"
        );
        assert!(
            theirs.is_some(),
            "webrtc-dtls did not fail: {callsec_is_client}"
        );
    }
}

/// webrtc-dtls refuses callsec's certificate and sends bad_certificate, in plaintext: callsec
/// keeps it as the reason and, once silence followed it, ends with it well before its 60 s
/// handshake timeout (the 20 s limit here).
#[test]
fn webrtc_dtls_refusing_our_certificate_gives_callsec_the_reason() {
    for callsec_is_client in [true, false] {
        let (ours, theirs) = wrong_certificate(callsec_is_client, Refuses::Webrtc);
        assert_eq!(
            ours,
            Some(Error::AlertReceived(AlertDescription::BAD_CERTIFICATE)),
            "callsec client {callsec_is_client}"
        );
        assert!(
            theirs.is_some(),
            "webrtc-dtls did not fail: {callsec_is_client}"
        );
    }
}
