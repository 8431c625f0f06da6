//! A server connection (no cookie, so the handshake state is reachable) driven by arbitrary
//! datagrams and timeouts: never panics, never grows without bound. The same datagrams then
//! go to a client connection, so the client's parsers and states (HelloVerifyRequest,
//! ServerHello and the rest of flight 4) are fuzzed too.
#![no_main]

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use callsec_dtls::{Certificate, Config, Connection, Fingerprint, Provider};
use libfuzzer_sys::fuzz_target;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

fn config() -> Arc<Config> {
    static CONFIG: OnceLock<Arc<Config>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let mut rng = ChaCha20Rng::seed_from_u64(1);
            let mut c = Config::new(Certificate::generate(&mut rng));
            c.cookie_exchange = false;
            // Deterministic: the ECDHE key and signatures come from the seeded RNG.
            c.provider = Provider::RustCrypto;
            Arc::new(c)
        })
        .clone()
}

/// The client certificate the server expects: the one `cargo test -p callsec-dtls --test
/// fuzz_seeds -- --ignored` uses to write a seed corpus of whole handshakes, so the fuzzer
/// starts from inputs that reach the connected state.
fn client_fingerprint() -> Fingerprint {
    static FP: OnceLock<Fingerprint> = OnceLock::new();
    *FP.get_or_init(|| Certificate::generate(&mut ChaCha20Rng::seed_from_u64(3)).fingerprint())
}

fuzz_target!(|data: &[u8]| {
    let mut rng = ChaCha20Rng::seed_from_u64(2);
    let start = Instant::now();
    if let Ok(server) = Connection::server(config(), &[client_fingerprint()], ([192, 0, 2, 1], 4444).into(), &mut rng) {
        drive(server, start, data);
    }
    let server_fp = config().certificate.fingerprint();
    if let Ok(client) = Connection::client(config(), &[server_fp], start, &mut rng) {
        drive(client, start, data);
    }
});

fn drive(mut conn: Connection, start: Instant, data: &[u8]) {
    // Datagrams are separated by a 2-byte length; a zero length advances the clock.
    let mut rest = data;
    let mut now = start;
    while rest.len() >= 2 {
        let n = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
        rest = &rest[2..];
        if n == 0 {
            now += Duration::from_secs(1);
            let _ = conn.handle_timeout(now);
            continue;
        }
        let take = n.min(rest.len());
        let _ = conn.handle_datagram(now, &rest[..take]);
        rest = &rest[take..];
        while conn.poll_transmit().is_some() {}
        while conn.poll_event().is_some() {}
    }
}
