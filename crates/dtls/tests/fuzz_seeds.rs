//! Writes a seed corpus for `fuzz/fuzz_targets/dtls_server.rs`: whole client sides of real
//! handshakes against the fuzz target's deterministic server, in its input format (each
//! datagram behind a 2-byte length; length 0 advances the clock one second).
//!
//! `cargo test -p callsec-dtls --test fuzz_seeds -- --ignored` writes to
//! `fuzz/corpus/dtls_server/`. The normal run only checks that the recorded inputs drive a
//! fresh server to the connected state.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use callsec_dtls::{Certificate, CipherSuite, Config, Connection, Event, Provider};
use callsec_srtp::ProtectionProfile;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

/// The server exactly as the fuzz target builds it: RustCrypto, so that its ECDHE key and
/// signatures come from the seeded RNG and a recorded client side replays.
fn fuzz_server(client_cert: &Certificate) -> Connection {
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let mut c = Config::new(Certificate::generate(&mut rng));
    c.cookie_exchange = false;
    c.provider = Provider::RustCrypto;
    let mut rng = ChaCha20Rng::seed_from_u64(2);
    Connection::server(
        Arc::new(c),
        &[client_cert.fingerprint()],
        ([192, 0, 2, 1], 4444).into(),
        &mut rng,
    )
    .unwrap()
}

/// One recorded client side: returns the fuzz input.
fn record(suite: CipherSuite, profile: ProtectionProfile, extra: bool) -> Vec<u8> {
    let client_cert = Certificate::generate(&mut ChaCha20Rng::seed_from_u64(3));
    let mut cfg = Config::new(client_cert.clone());
    cfg.cipher_suites = vec![suite];
    cfg.srtp_profiles = vec![profile];
    cfg.provider = Provider::RustCrypto;
    let mut server = fuzz_server(&client_cert);
    let server_fp = {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        Certificate::generate(&mut rng).fingerprint()
    };
    let now = Instant::now();
    let mut client = Connection::client(
        Arc::new(cfg),
        &[server_fp],
        now,
        &mut ChaCha20Rng::seed_from_u64(4),
    )
    .unwrap();
    let mut input = Vec::new();
    let push = |input: &mut Vec<u8>, d: &[u8]| {
        input.extend_from_slice(&(d.len() as u16).to_be_bytes());
        input.extend_from_slice(d);
    };
    for _ in 0..10 {
        while let Some(d) = client.poll_transmit() {
            push(&mut input, &d);
            server.handle_datagram(now, &d).unwrap();
        }
        while let Some(d) = server.poll_transmit() {
            client.handle_datagram(now, &d).unwrap();
        }
    }
    assert!(client.is_connected() && server.is_connected());
    if extra {
        client.send(b"application data").unwrap();
        let d = client.poll_transmit().unwrap();
        push(&mut input, &d);
        push(&mut input, &d); // a replay
        input.extend_from_slice(&[0, 0]); // a second passes
        client.close();
        let d = client.poll_transmit().unwrap();
        push(&mut input, &d);
    }
    input
}

/// Replays a fuzz input against a fresh fuzz server; returns whether it connected.
fn replay(input: &[u8]) -> bool {
    let client_cert = Certificate::generate(&mut ChaCha20Rng::seed_from_u64(3));
    let mut s = fuzz_server(&client_cert);
    let mut rest = input;
    let mut now = Instant::now();
    let mut connected = false;
    while rest.len() >= 2 {
        let n = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
        rest = &rest[2..];
        if n == 0 {
            now += Duration::from_secs(1);
            let _ = s.handle_timeout(now);
            continue;
        }
        let _ = s.handle_datagram(now, &rest[..n]);
        rest = &rest[n..];
        while s.poll_transmit().is_some() {}
        while let Some(e) = s.poll_event() {
            connected |= matches!(e, Event::Connected(_));
        }
    }
    connected
}

fn seeds() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for suite in CipherSuite::ALL {
        for profile in ProtectionProfile::ALL {
            for extra in [false, true] {
                let name = format!(
                    "handshake-{:04x}-{:04x}-{}",
                    suite.id(),
                    profile.id(),
                    u8::from(extra)
                );
                out.push((name, record(suite, profile, extra)));
            }
        }
    }
    out
}

#[test]
fn recorded_handshakes_reach_connected_on_the_fuzz_server() {
    for (name, input) in seeds() {
        assert!(replay(&input), "{name}");
    }
}

#[test]
#[ignore = "writes files; run by hand to refresh the fuzz corpus"]
fn write_fuzz_seeds() {
    let dir = format!(
        "{}/../../fuzz/corpus/dtls_server",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::create_dir_all(&dir).unwrap();
    for (name, input) in seeds() {
        std::fs::write(format!("{dir}/{name}"), input).unwrap();
    }
}
