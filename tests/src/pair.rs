//! The one simulated network of the workspace: a two-peer DTLS harness on a virtual clock.
//! Datagrams move between a client and a server through a network with seeded loss,
//! duplication and reordering; time jumps to the next deadline instead of sleeping. Used by
//! `callsec-dtls`'s own tests (a dev-dependency) and by the cross-crate tests here.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::time::{Duration, Instant};

use callsec_dtls::{Certificate, Config, Connected, Connection, Event};
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};

/// Network behaviour, each a probability per datagram.
#[derive(Debug, Clone, Copy, Default)]
pub struct Netem {
    pub loss: f64,
    pub duplicate: f64,
    pub reorder: f64,
}

pub struct Pair {
    pub client: Connection,
    pub server: Connection,
    pub now: Instant,
    pub start: Instant,
    net: ChaCha20Rng,
    pub netem: Netem,
    to_server: Vec<Vec<u8>>,
    to_client: Vec<Vec<u8>>,
    pub client_events: Vec<Event>,
    pub server_events: Vec<Event>,
    pub datagrams_sent: usize,
    pub client_errors: Vec<callsec_dtls::Error>,
    pub server_errors: Vec<callsec_dtls::Error>,
}

/// The client's address, as the server sees it.
pub const PEER_ADDR: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 1), 4444));

pub fn configs(seed: u64, tweak: impl Fn(&mut Config)) -> (Arc<Config>, Arc<Config>) {
    let mut rng = ChaCha20Rng::seed_from_u64(seed ^ 0xc0ffee);
    let mut c = Config::new(Certificate::generate(&mut rng));
    let mut s = Config::new(Certificate::generate(&mut rng));
    tweak(&mut c);
    tweak(&mut s);
    (Arc::new(c), Arc::new(s))
}

impl Pair {
    pub fn new(seed: u64, netem: Netem, tweak: impl Fn(&mut Config)) -> Self {
        let (cc, sc) = configs(seed, tweak);
        Self::with_configs(seed, netem, cc, sc)
    }

    pub fn with_configs(seed: u64, netem: Netem, cc: Arc<Config>, sc: Arc<Config>) -> Self {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let start = Instant::now();
        let client_fp = cc.certificate.fingerprint();
        let server_fp = sc.certificate.fingerprint();
        let client = Connection::client(cc, &[server_fp], start, &mut rng).unwrap();
        let server = Connection::server(sc, &[client_fp], PEER_ADDR, &mut rng).unwrap();
        Self {
            client,
            server,
            now: start,
            start,
            net: ChaCha20Rng::seed_from_u64(seed.wrapping_mul(7919)),
            netem,
            to_server: Vec::new(),
            to_client: Vec::new(),
            client_events: Vec::new(),
            server_events: Vec::new(),
            datagrams_sent: 0,
            client_errors: Vec::new(),
            server_errors: Vec::new(),
        }
    }

    /// Draws one event of probability `p` from the network's seeded RNG.
    fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && (self.net.next_u64() as f64 / u64::MAX as f64) < p
    }

    /// Moves every pending datagram through the network model into the queues.
    fn collect(&mut self) {
        while let Some(d) = self.client.poll_transmit() {
            self.datagrams_sent += 1;
            self.enqueue(d, true);
        }
        while let Some(d) = self.server.poll_transmit() {
            self.datagrams_sent += 1;
            self.enqueue(d, false);
        }
        while let Some(e) = self.client.poll_event() {
            self.client_events.push(e);
        }
        while let Some(e) = self.server.poll_event() {
            self.server_events.push(e);
        }
    }

    fn enqueue(&mut self, d: Vec<u8>, to_server: bool) {
        if self.chance(self.netem.loss) {
            return;
        }
        let copies = if self.chance(self.netem.duplicate) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let reorder = self.chance(self.netem.reorder);
            let q = if to_server {
                &mut self.to_server
            } else {
                &mut self.to_client
            };
            if reorder && !q.is_empty() {
                let at = (self.net.next_u32() as usize) % q.len();
                let q = if to_server {
                    &mut self.to_server
                } else {
                    &mut self.to_client
                };
                q.insert(at, d.clone());
            } else {
                q.push(d.clone());
            }
        }
    }

    /// Puts `d` among the datagrams in flight to one side, at a random place: an attacker
    /// who spoofs the other side's address.
    pub fn inject(&mut self, to_server: bool, d: Vec<u8>) {
        self.collect();
        let q = if to_server {
            &mut self.to_server
        } else {
            &mut self.to_client
        };
        let at = (self.net.next_u32() as usize) % (q.len() + 1);
        q.insert(at, d);
    }

    /// Delivers what is queued; returns whether anything moved.
    pub fn deliver(&mut self) -> bool {
        self.collect();
        let to_server = std::mem::take(&mut self.to_server);
        let to_client = std::mem::take(&mut self.to_client);
        let moved = !to_server.is_empty() || !to_client.is_empty();
        for d in to_server {
            if let Err(e) = self.server.handle_datagram(self.now, &d) {
                self.server_errors.push(e);
            }
        }
        for d in to_client {
            if let Err(e) = self.client.handle_datagram(self.now, &d) {
                self.client_errors.push(e);
            }
        }
        self.collect();
        moved
    }

    /// Advances the virtual clock to the earliest deadline and fires it.
    pub fn advance(&mut self) -> bool {
        let next = [self.client.poll_timeout(), self.server.poll_timeout()]
            .into_iter()
            .flatten()
            .min();
        let Some(t) = next else { return false };
        if t > self.now {
            self.now = t;
        }
        if let Err(e) = self.client.handle_timeout(self.now) {
            self.client_errors.push(e);
        }
        if let Err(e) = self.server.handle_timeout(self.now) {
            self.server_errors.push(e);
        }
        true
    }

    /// Runs until both sides are connected or closed, or nothing can happen any more.
    pub fn drive(&mut self) {
        for _ in 0..100_000 {
            let done = |c: &Connection| c.is_connected() || c.is_closed();
            if done(&self.client) && done(&self.server) {
                self.deliver();
                return;
            }
            if !self.deliver() && !self.advance() {
                return;
            }
        }
        panic!("drive did not settle");
    }

    pub fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    pub fn connected(events: &[Event]) -> Option<&Connected> {
        events.iter().find_map(|e| match e {
            Event::Connected(c) => Some(&**c),
            _ => None,
        })
    }

    pub fn client_connected(&self) -> &Connected {
        Self::connected(&self.client_events).expect("client connected")
    }

    pub fn server_connected(&self) -> &Connected {
        Self::connected(&self.server_events).expect("server connected")
    }
}

/// (content type, epoch, record seq, fragment) for every record of a datagram.
pub fn records(d: &[u8]) -> Vec<(u8, u16, u64, Vec<u8>)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i + 13 <= d.len() {
        assert!(d[i + 1] == 0xfe && (d[i + 2] == 0xfd || d[i + 2] == 0xff));
        let epoch = u16::from_be_bytes([d[i + 3], d[i + 4]]);
        let seq = u64::from_be_bytes([
            0,
            0,
            d[i + 5],
            d[i + 6],
            d[i + 7],
            d[i + 8],
            d[i + 9],
            d[i + 10],
        ]);
        let len = usize::from(u16::from_be_bytes([d[i + 11], d[i + 12]]));
        out.push((d[i], epoch, seq, d[i + 13..i + 13 + len].to_vec()));
        i += 13 + len;
    }
    assert_eq!(i, d.len());
    out
}
