//! callsec-dtls against OpenSSL's `s_server` / `s_client -dtls1_2`, both directions, both
//! suites, both SRTP profiles: the RFC 5705 "EXTRACTOR-dtls_srtp" keying material OpenSSL
//! prints must equal callsec's byte for byte. OpenSSL must be installed (/usr/bin/openssl or
//! $OPENSSL): these tests fail, never skip, without it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::net::UdpSocket;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use callsec_dtls::{Certificate, CipherSuite, Config, Connection, Error, Event, Fingerprint};
use callsec_srtp::ProtectionProfile;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

fn openssl() -> String {
    std::env::var("OPENSSL").unwrap_or_else(|_| "/usr/bin/openssl".to_string())
}

fn openssl_cipher(s: CipherSuite) -> &'static str {
    match s {
        CipherSuite::EcdheEcdsaAes128GcmSha256 => "ECDHE-ECDSA-AES128-GCM-SHA256",
        CipherSuite::EcdheEcdsaAes256CbcSha => "ECDHE-ECDSA-AES256-SHA",
    }
}

fn openssl_profile(p: ProtectionProfile) -> &'static str {
    match p {
        ProtectionProfile::AeadAes128Gcm => "SRTP_AEAD_AES_128_GCM",
        ProtectionProfile::Aes128CmHmacSha1_80 => "SRTP_AES128_CM_SHA1_80",
    }
}

/// A P-256 certificate and key for OpenSSL, and its fingerprint.
struct PeerCert {
    dir: PathBuf,
    fingerprint: Fingerprint,
}

impl PeerCert {
    fn new(tag: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("callsec-dtls-openssl-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let run = |args: &[&str]| {
            let out = Command::new(openssl())
                .args(args)
                .current_dir(&dir)
                .output()
                .expect("openssl must be installed");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        run(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "k.pem",
            "-out",
            "c.pem",
            "-subj",
            "/CN=openssl-peer",
            "-days",
            "2",
        ]);
        run(&["x509", "-in", "c.pem", "-outform", "DER", "-out", "c.der"]);
        let der = std::fs::read(dir.join("c.der")).unwrap();
        Self {
            fingerprint: Fingerprint::of_der(&der),
            dir,
        }
    }

    fn path(&self, f: &str) -> String {
        self.dir.join(f).to_string_lossy().into_owned()
    }
}

/// An OpenSSL child whose stdout is collected by a thread.
struct Peer {
    child: Child,
    stdin: Option<ChildStdin>,
    out: Arc<Mutex<String>>,
}

impl Peer {
    fn spawn(args: &[String]) -> Self {
        let mut child = Command::new(openssl())
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("openssl must be installed");
        let out = Arc::new(Mutex::new(String::new()));
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let out = out.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let mut o = out.lock().unwrap();
                    o.push_str(&line);
                    o.push('\n');
                }
            });
        }
        let stdin = child.stdin.take();
        Self { child, stdin, out }
    }

    fn wait_for(&self, needle: &str, timeout: Duration) -> bool {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if self.out.lock().unwrap().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    fn output(&self) -> String {
        self.out.lock().unwrap().clone()
    }

    /// The hex OpenSSL printed after "Keying material:".
    fn keying_material(&self) -> Vec<u8> {
        assert!(
            self.wait_for("Keying material:", Duration::from_secs(10)),
            "no keying material:\n{}",
            self.output()
        );
        // Let the line finish.
        std::thread::sleep(Duration::from_millis(50));
        let out = self.output();
        let line = out
            .lines()
            .find(|l| l.contains("Keying material:"))
            .unwrap();
        let hex = line.split(':').nth(1).unwrap().trim();
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect()
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config(suite: CipherSuite, profile: ProtectionProfile) -> Arc<Config> {
    let mut rng = ChaCha20Rng::seed_from_u64(99);
    let mut c = Config::new(Certificate::generate(&mut rng));
    c.cipher_suites = vec![suite];
    c.srtp_profiles = vec![profile];
    Arc::new(c)
}

/// Pumps datagrams between `conn` and the socket until the handshake ends or 10 s pass.
/// Returns the events seen.
fn pump(conn: &mut Connection, sock: &UdpSocket) -> Vec<Event> {
    let mut events = Vec::new();
    let end = Instant::now() + Duration::from_secs(10);
    sock.set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let mut buf = [0u8; 65536];
    loop {
        while let Some(d) = conn.poll_transmit() {
            sock.send(&d).unwrap();
        }
        while let Some(e) = conn.poll_event() {
            events.push(e);
        }
        if conn.is_connected() || conn.is_closed() || Instant::now() > end {
            return events;
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
}

fn check_keys(
    conn: &Connection,
    events: &[Event],
    theirs: &[u8],
    profile: ProtectionProfile,
    client: bool,
) {
    let connected = events
        .iter()
        .find_map(|e| match e {
            Event::Connected(c) => Some(c),
            _ => None,
        })
        .expect("connected");
    assert_eq!(connected.profile, profile);
    let mut ours = vec![0u8; profile.keying_material_len()];
    conn.export_keying_material(b"EXTRACTOR-dtls_srtp", None, &mut ours)
        .unwrap();
    assert_eq!(
        ours, theirs,
        "exported keying material differs from OpenSSL's"
    );
    // RFC 5764 §4.2 split.
    let (k, s) = (profile.key_len(), profile.salt_len());
    let (client_key, server_key) = (&ours[..k], &ours[k..2 * k]);
    let (client_salt, server_salt) = (&ours[2 * k..2 * k + s], &ours[2 * k + s..]);
    let (lk, ls, rk, rs) = if client {
        (client_key, client_salt, server_key, server_salt)
    } else {
        (server_key, server_salt, client_key, client_salt)
    };
    assert_eq!(connected.srtp.local.key(), lk);
    assert_eq!(connected.srtp.local.salt(), ls);
    assert_eq!(connected.srtp.remote.key(), rk);
    assert_eq!(connected.srtp.remote.salt(), rs);
}

/// `s_server -dtls1_2` with `cert` on a free local port, `extra` options, one accept; started,
/// and a socket connected to it.
fn s_server(cert: &PeerCert, extra: &[String]) -> (Peer, UdpSocket) {
    let port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut args = vec![
        "s_server".into(),
        "-dtls1_2".into(),
        "-accept".into(),
        format!("127.0.0.1:{port}"),
        "-cert".into(),
        cert.path("c.pem"),
        "-key".into(),
        cert.path("k.pem"),
    ];
    args.extend_from_slice(extra);
    args.extend(["-naccept".into(), "1".into()]);
    let peer = Peer::spawn(&args);
    assert!(
        peer.wait_for("ACCEPT", Duration::from_secs(10)),
        "s_server did not start:\n{}",
        peer.output()
    );
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.connect(("127.0.0.1", port)).unwrap();
    (peer, sock)
}

fn callsec_client_openssl_server(suite: CipherSuite, profile: ProtectionProfile) {
    let tag = format!("s{:x}{:x}", suite.id(), profile.id());
    let cert = PeerCert::new(&tag);
    let (peer, sock) = s_server(
        &cert,
        &[
            "-cipher".into(),
            openssl_cipher(suite).into(),
            "-use_srtp".into(),
            openssl_profile(profile).into(),
            "-keymatexport".into(),
            "EXTRACTOR-dtls_srtp".into(),
            "-keymatexportlen".into(),
            profile.keying_material_len().to_string(),
            "-verify".into(),
            "1".into(),
        ],
    );
    let mut rng = ChaCha20Rng::seed_from_u64(5);
    let cfg = config(suite, profile);
    let mut conn =
        Connection::client(cfg.clone(), &[cert.fingerprint], Instant::now(), &mut rng).unwrap();
    let events = pump(&mut conn, &sock);
    assert!(
        conn.is_connected(),
        "not connected: {events:?}\n{}",
        peer.output()
    );
    let theirs = peer.keying_material();
    check_keys(&conn, &events, &theirs, profile, true);
    // s_server runs the stateless cookie exchange: our client followed one HelloVerifyRequest.
    assert_eq!(conn.stats().hello_verify_requests, 1);
    // Application data reaches OpenSSL, which prints it.
    conn.send(b"hello-from-callsec\n").unwrap();
    while let Some(d) = conn.poll_transmit() {
        sock.send(&d).unwrap();
    }
    assert!(
        peer.wait_for("hello-from-callsec", Duration::from_secs(5)),
        "{}",
        peer.output()
    );
    let out = peer.output();
    assert!(out.contains(openssl_cipher(suite)), "{out}");
    conn.close();
    while let Some(d) = conn.poll_transmit() {
        sock.send(&d).unwrap();
    }
}

fn openssl_client_callsec_server(suite: CipherSuite, profile: ProtectionProfile) {
    let tag = format!("c{:x}{:x}", suite.id(), profile.id());
    let cert = PeerCert::new(&tag);
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = sock.local_addr().unwrap().port();
    let mut peer = Peer::spawn(&[
        "s_client".into(),
        "-dtls1_2".into(),
        "-connect".into(),
        format!("127.0.0.1:{port}"),
        "-cert".into(),
        cert.path("c.pem"),
        "-key".into(),
        cert.path("k.pem"),
        "-cipher".into(),
        openssl_cipher(suite).into(),
        "-use_srtp".into(),
        openssl_profile(profile).into(),
        "-keymatexport".into(),
        "EXTRACTOR-dtls_srtp".into(),
        "-keymatexportlen".into(),
        profile.keying_material_len().to_string(),
    ]);
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = [0u8; 65536];
    let (n, from) = sock.recv_from(&mut buf).expect("s_client sent nothing");
    let mut rng = ChaCha20Rng::seed_from_u64(6);
    let cfg = config(suite, profile);
    let mut conn = Connection::server(cfg, &[cert.fingerprint], from, &mut rng).unwrap();
    conn.handle_datagram(Instant::now(), &buf[..n]).unwrap();
    sock.connect(from).unwrap();
    let events = pump(&mut conn, &sock);
    assert!(
        conn.is_connected(),
        "not connected: {events:?}\n{}",
        peer.output()
    );
    assert_eq!(conn.stats().hello_verify_requests, 1, "cookie exchange ran");
    let theirs = peer.keying_material();
    check_keys(&conn, &events, &theirs, profile, false);
    // OpenSSL's application data reaches us.
    use std::io::Write;
    peer.stdin
        .as_mut()
        .unwrap()
        .write_all(b"hello-from-openssl\n")
        .unwrap();
    peer.stdin.as_mut().unwrap().flush().unwrap();
    let end = Instant::now() + Duration::from_secs(5);
    let mut got = Vec::new();
    while Instant::now() < end && !got.windows(18).any(|w| w == b"hello-from-openssl") {
        if let Ok(n) = sock.recv(&mut buf) {
            conn.handle_datagram(Instant::now(), &buf[..n]).unwrap();
        }
        while let Some(e) = conn.poll_event() {
            if let Event::ApplicationData(d) = e {
                got.extend_from_slice(&d);
            }
        }
    }
    assert!(
        got.windows(18).any(|w| w == b"hello-from-openssl"),
        "{}",
        peer.output()
    );
    drop(peer.stdin.take());
}

#[test]
fn callsec_client_openssl_server_gcm_aead() {
    callsec_client_openssl_server(
        CipherSuite::EcdheEcdsaAes128GcmSha256,
        ProtectionProfile::AeadAes128Gcm,
    );
}

#[test]
fn callsec_client_openssl_server_gcm_cm() {
    callsec_client_openssl_server(
        CipherSuite::EcdheEcdsaAes128GcmSha256,
        ProtectionProfile::Aes128CmHmacSha1_80,
    );
}

#[test]
fn callsec_client_openssl_server_cbc_aead() {
    callsec_client_openssl_server(
        CipherSuite::EcdheEcdsaAes256CbcSha,
        ProtectionProfile::AeadAes128Gcm,
    );
}

#[test]
fn callsec_client_openssl_server_cbc_cm() {
    callsec_client_openssl_server(
        CipherSuite::EcdheEcdsaAes256CbcSha,
        ProtectionProfile::Aes128CmHmacSha1_80,
    );
}

#[test]
fn openssl_client_callsec_server_gcm_aead() {
    openssl_client_callsec_server(
        CipherSuite::EcdheEcdsaAes128GcmSha256,
        ProtectionProfile::AeadAes128Gcm,
    );
}

#[test]
fn openssl_client_callsec_server_gcm_cm() {
    openssl_client_callsec_server(
        CipherSuite::EcdheEcdsaAes128GcmSha256,
        ProtectionProfile::Aes128CmHmacSha1_80,
    );
}

#[test]
fn openssl_client_callsec_server_cbc_aead() {
    openssl_client_callsec_server(
        CipherSuite::EcdheEcdsaAes256CbcSha,
        ProtectionProfile::AeadAes128Gcm,
    );
}

#[test]
fn openssl_client_callsec_server_cbc_cm() {
    openssl_client_callsec_server(
        CipherSuite::EcdheEcdsaAes256CbcSha,
        ProtectionProfile::Aes128CmHmacSha1_80,
    );
}

/// A server certificate whose fingerprint is not the expected one: no key is ever handed
/// out. The certificate came in plaintext (anyone who spoofs the server's address could have
/// sent it), so one copy is discarded rather than fatal; OpenSSL resends its flight, and
/// once refusals came in three retransmission rounds (about 3 s) the handshake fails with
/// bad_certificate, well before the total timeout (30 s here, longer than `pump` waits).
#[test]
fn openssl_server_with_wrong_fingerprint_never_connects() {
    let cert = PeerCert::new("wrongfp");
    let (_peer, sock) = s_server(&cert, &["-use_srtp".into(), "SRTP_AEAD_AES_128_GCM".into()]);
    let mut rng = ChaCha20Rng::seed_from_u64(7);
    let mut cfg = (*config(
        CipherSuite::EcdheEcdsaAes128GcmSha256,
        ProtectionProfile::AeadAes128Gcm,
    ))
    .clone();
    cfg.handshake_timeout = Duration::from_secs(30);
    let wrong = Fingerprint::from_bytes([0x11; 32]);
    let mut conn = Connection::client(Arc::new(cfg), &[wrong], Instant::now(), &mut rng).unwrap();
    let events = pump(&mut conn, &sock);
    assert!(conn.is_closed());
    assert!(!events.iter().any(|e| matches!(e, Event::Connected(_))));
    assert!(
        events.iter().any(|e| matches!(
            e,
            Event::Closed {
                error: Some(Error::BadCertificate(_))
            }
        )),
        "{events:?}"
    );
    assert!(
        matches!(conn.last_discarded(), Some(Error::BadCertificate(_))),
        "{:?}",
        conn.last_discarded()
    );
    assert!(
        conn.export_keying_material(b"EXTRACTOR-dtls_srtp", None, &mut [0; 60])
            .is_err()
    );
}
