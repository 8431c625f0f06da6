//! An off-path attacker who can spoof the peer's address (RFC 6347 §4.1.2.7: invalid records
//! are discarded, "thus preserving the association"). Over 1000 seeds, both roles and both
//! suites, a few attacker datagrams land at random points of the handshake: random bytes,
//! and well-formed plaintext or epoch-1 records with random epoch, sequence number, content
//! type, handshake message type, message_seq and fragment fields. Besides, one or two
//! valid-looking handshake messages (any a spoofer can forge without a secret: a
//! HelloVerifyRequest, a ServerHello, someone's Certificate, a ServerKeyExchange or
//! CertificateVerify that cannot verify, a CertificateRequest, a ServerHelloDone, a
//! ClientKeyExchange) are planted at the predictable message_seq of a message of the peer's
//! flight, mostly ahead of that flight (issue 17). The handshake must still complete, with
//! matching keys, within the normal retransmission schedule.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use callsec_dtls::CipherSuite;
use callsec_tests::pair::{Netem, Pair};
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};

mod support;
use support::forge;
use support::wire::{message, record};

/// Seeds run by default (each a full handshake under attack); `CALLSEC_ATTACK_SEEDS` asks
/// for more.
fn seeds() -> u64 {
    std::env::var("CALLSEC_ATTACK_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000)
}
/// Four retransmission timeouts (1 + 2 + 4 + 8 s): far below the 60 s handshake timeout.
const SCHEDULE: Duration = Duration::from_secs(15);

struct Attacker(ChaCha20Rng);

impl Attacker {
    fn below(&mut self, n: u32) -> u32 {
        self.0.next_u32() % n
    }

    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len() as u32) as usize]
    }

    /// `n` random bytes, `n` one of `lens`.
    fn bytes_of(&mut self, lens: &[usize]) -> Vec<u8> {
        let n = self.pick(lens);
        self.bytes(n)
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut b = vec![0; n];
        self.0.fill_bytes(&mut b);
        b
    }

    /// A 48-bit record sequence number: small, the largest, or anything.
    fn record_seq(&mut self) -> u64 {
        match self.below(3) {
            0 => u64::from(self.below(16)),
            1 => (1 << 48) - 1,
            _ => self.0.next_u64() >> 16,
        }
    }

    /// A handshake fragment: a plausible or random type, message_seq near the real ones or
    /// anywhere, and length/offset/fragment fields that agree or not.
    fn fragment(&mut self) -> Vec<u8> {
        let msg_type = match self.below(4) {
            0 => self.below(256) as u8,
            _ => self.pick(&[0u8, 1, 2, 3, 11, 12, 13, 14, 15, 16, 20]),
        };
        let message_seq = match self.below(4) {
            0 => self.0.next_u32() as u16,
            _ => self.below(7) as u16,
        };
        let data = self.bytes_of(&[0, 1, 12, 40, 100, 300]);
        let (length, offset) = match self.below(5) {
            0 => (data.len() as u32, 0),
            1 => (data.len() as u32 + self.below(200), self.below(200)),
            2 => (self.below(1 << 24), self.below(1 << 24)),
            3 => (16 * 1024, 0),
            _ => (data.len() as u32 + self.below(64), 0),
        };
        let mut f = vec![msg_type];
        f.extend_from_slice(&length.to_be_bytes()[1..]);
        f.extend_from_slice(&message_seq.to_be_bytes());
        f.extend_from_slice(&offset.to_be_bytes()[1..]);
        f.extend_from_slice(&(data.len() as u32).to_be_bytes()[1..]);
        f.extend_from_slice(&data);
        if self.below(4) == 0 {
            let extra = self.fragment();
            f.extend_from_slice(&extra);
        }
        f
    }

    fn record(&mut self) -> Vec<u8> {
        let ct = match self.below(6) {
            0 => self.below(256) as u8,
            1 => 20,
            2 => 21,
            3 => 23,
            _ => 22,
        };
        let epoch = match self.below(5) {
            0 => 1,
            1 => self.0.next_u32() as u16,
            _ => 0,
        };
        let body = match (ct, epoch) {
            (_, 1) => self.bytes_of(&[0, 8, 24, 48, 64, 100]),
            (20, _) => self.pick(&[&[1u8][..], &[], &[1, 1], &[2]]).to_vec(),
            (21, _) => match self.below(3) {
                0 => Vec::new(),
                _ => vec![self.pick(&[1u8, 2]), self.below(256) as u8],
            },
            (22, _) => self.fragment(),
            _ => self.bytes_of(&[0, 2, 13, 63]),
        };
        let mut d = vec![ct, 0xfe, self.pick(&[0xfdu8, 0xfd, 0xff])];
        d.extend_from_slice(&epoch.to_be_bytes());
        d.extend_from_slice(&self.record_seq().to_be_bytes()[2..]);
        d.extend_from_slice(&(body.len() as u16).to_be_bytes());
        d.extend_from_slice(&body);
        d
    }

    /// One plaintext record carrying a valid-looking message that the side receiving it
    /// (`to_server`) could take from its peer, at a message_seq the genuine flights use (0 to
    /// 5 covers them with and without the cookie exchange).
    fn planted(&mut self, to_server: bool) -> Vec<u8> {
        let (msg_type, body) = if to_server {
            match self.below(3) {
                0 => (11u8, forge::certificate(u64::from(self.below(64)))),
                1 => (16, forge::client_key_exchange()),
                _ => (15, forge::certificate_verify()),
            }
        } else {
            match self.below(7) {
                0 => {
                    let n = self.pick(&[0usize, 4, 32]);
                    (3, forge::hello_verify_request(&self.bytes(n)))
                }
                1 => {
                    let mut random = [0; 32];
                    self.0.fill_bytes(&mut random);
                    (2, forge::server_hello(random, self.pick(&[0xc02b, 0xc00a])))
                }
                2 => (11, forge::certificate(u64::from(self.below(64)))),
                3 => (12, forge::server_key_exchange()),
                4 => (13, forge::certificate_request()),
                _ => (14, Vec::new()),
            }
        };
        let seq = self.below(6) as u16;
        record(22, 0, self.record_seq(), &message(msg_type, seq, &body))
    }

    fn datagram(&mut self) -> Vec<u8> {
        if self.below(5) == 0 {
            let n = self.below(300) as usize;
            return self.bytes(n);
        }
        let mut d = Vec::new();
        for _ in 0..=self.below(3) {
            d.extend_from_slice(&self.record());
        }
        d
    }
}

/// One handshake with `attacks` spoofed datagrams, each at a random step, and `plants`
/// planted messages, each at one of the first four steps (the genuine flights 4 and 5 come
/// at steps 2 to 4: the plants mostly precede them), to the client or the server. Returns
/// what went wrong, if anything.
fn attacked_handshake(seed: u64) -> Result<Duration, String> {
    let suite = CipherSuite::ALL[(seed % 2) as usize];
    let attack_server = (seed / 2) % 2 == 1;
    let mut a = Attacker(ChaCha20Rng::seed_from_u64(seed ^ 0xa77ac4));
    let mut p = Pair::new(seed, Netem::default(), |c| c.cipher_suites = vec![suite]);
    let attacks = 1 + a.below(3);
    let plants = 1 + a.below(2);
    // (step, whether a planted message).
    let mut at: Vec<(u32, bool)> = (0..attacks).map(|_| (a.below(8), false)).collect();
    at.extend((0..plants).map(|_| (a.below(4), true)));
    at.sort_unstable();
    for step in 0..10_000 {
        while at.first().is_some_and(|(s, _)| *s == step) {
            let (_, plant) = at.remove(0);
            let d = if plant {
                a.planted(attack_server)
            } else {
                a.datagram()
            };
            p.inject(attack_server, d);
        }
        let done = p.client.is_connected() && p.server.is_connected();
        if (done && at.is_empty()) || p.client.is_closed() || p.server.is_closed() {
            break;
        }
        if !p.deliver() && !p.advance() {
            break;
        }
    }
    p.deliver();
    let who = if attack_server { "server" } else { "client" };
    let why = format!(
        "seed {seed} {suite:?}, {attacks} datagrams and {plants} plants to the {who}: client {:?} {:?}, server {:?} {:?}",
        p.client.last_discarded(),
        p.client_errors,
        p.server.last_discarded(),
        p.server_errors,
    );
    if !(p.client.is_connected() && p.server.is_connected()) {
        return Err(format!("not connected: {why}"));
    }
    if !(p.client_errors.is_empty() && p.server_errors.is_empty()) {
        return Err(format!("errors: {why}"));
    }
    let (c, s) = (p.client_connected(), p.server_connected());
    if c.srtp.local.key() != s.srtp.remote.key()
        || c.srtp.remote.key() != s.srtp.local.key()
        || c.srtp.local.salt() != s.srtp.remote.salt()
        || c.cipher_suite != suite
    {
        return Err(format!("keys differ: {why}"));
    }
    if p.elapsed() > SCHEDULE {
        return Err(format!("took {:?}: {why}", p.elapsed()));
    }
    Ok(p.elapsed())
}

#[test]
fn spoofed_datagrams_never_stall_or_end_a_handshake() {
    let mut failures = Vec::new();
    let mut slowest = Duration::ZERO;
    let seeds = seeds();
    for seed in 0..seeds {
        match attacked_handshake(seed) {
            Ok(t) => slowest = slowest.max(t),
            Err(e) => failures.push(e),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {seeds} failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    eprintln!("slowest attacked handshake: {slowest:?}");
}
