//! A whole call on a virtual clock, with no sockets: one [`Sfu`] and participants built from
//! callsec's own crates ([`callsec_rtc::client::Client`]), joined, negotiated (including the
//! server's renegotiation offers) and connected. Tests use it to count allocations on the
//! forwarding path; the `sfu` benchmark uses it to time forwarding against the crypto floor.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use callsec_dtls::{Certificate, CipherSuite};
use callsec_rtc::client::{Client, write_rtp};
use callsec_rtc::sdp::{Kind, VP8_PT};
use callsec_srtp::ProtectionProfile;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

use crate::metrics::Metrics;
use crate::sfu::{ConnId, Output, Sfu, SfuConfig, Signal};

/// The server's address in the simulation.
pub const SERVER: SocketAddr = SocketAddr::new(
    std::net::IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1)),
    3478,
);

/// One simulated participant.
#[derive(Debug)]
pub struct SimClient {
    /// Its signaling connection id.
    pub conn: ConnId,
    /// Its address.
    pub addr: SocketAddr,
    /// Its transport.
    pub media: Client,
    /// The SSRC of the video it publishes.
    pub video_ssrc: u32,
    /// The RTP packets it received, unprotected: (SSRC, payload type).
    pub received: Vec<(u32, u8)>,
}

impl SimClient {
    /// A protected RTP packet of its video stream: sequence number `seq`, `payload_len`
    /// bytes of payload.
    pub fn video_packet(&mut self, seq: u16, payload_len: usize) -> Vec<u8> {
        let mut buf = vec![0u8; 12 + payload_len + 64];
        let payload = vec![seq as u8; payload_len];
        let n = write_rtp(
            &mut buf,
            VP8_PT,
            seq,
            u32::from(seq) * 3000,
            self.video_ssrc,
            &payload,
        );
        match self.media.protect_rtp(&mut buf, n) {
            Ok(n) => buf.truncate(n),
            Err(_) => buf.clear(),
        }
        buf
    }
}

/// An [`Output`] that queues datagrams (setup phase).
#[derive(Debug, Default)]
pub struct QueueOutput {
    /// (to, bytes)
    pub queue: VecDeque<(SocketAddr, Vec<u8>)>,
}

impl Output for QueueOutput {
    fn send(&mut self, to: SocketAddr, data: &[u8]) {
        self.queue.push_back((to, data.to_vec()));
    }
}

/// An [`Output`] that only counts (the measured phase: no allocation).
#[derive(Debug, Default)]
pub struct CountOutput {
    /// Datagrams sent.
    pub packets: u64,
    /// Bytes sent.
    pub bytes: u64,
}

impl Output for CountOutput {
    fn send(&mut self, _to: SocketAddr, data: &[u8]) {
        self.packets += 1;
        self.bytes += data.len() as u64;
    }
}

/// A call in one room.
pub struct SimCall {
    /// The forwarding core.
    pub sfu: Sfu,
    /// The participants.
    pub clients: Vec<SimClient>,
    /// Virtual time.
    pub now: Instant,
    out: QueueOutput,
}

impl std::fmt::Debug for SimCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimCall")
            .field("sfu", &self.sfu)
            .field("clients", &self.clients.len())
            .finish_non_exhaustive()
    }
}

impl SimCall {
    /// `n` participants in one room, each publishing one video stream, connected and with
    /// every stream negotiated to every other participant.
    pub fn connected(n: usize, profile: ProtectionProfile, suite: CipherSuite, seed: u64) -> Self {
        Self::connected_with(n, profile, suite, seed, |_, _| {})
    }

    /// As [`SimCall::connected`], with participant `i`'s client set up by `setup(i, ..)`
    /// before its first offer (its payload types, say).
    pub fn connected_with(
        n: usize,
        profile: ProtectionProfile,
        suite: CipherSuite,
        seed: u64,
        setup: impl Fn(usize, &mut Client),
    ) -> Self {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let mut dtls = callsec_dtls::Config::new(Certificate::generate(&mut rng));
        dtls.cookie_exchange = false;
        dtls.srtp_profiles = vec![profile];
        dtls.cipher_suites = vec![suite];
        let config = Arc::new(SfuConfig {
            rtc: Arc::new(callsec_rtc::Config::new(Arc::new(dtls))),
            max_room_size: n.max(2),
            max_participants: n.max(2),
            max_bitrate: 2_500_000,
        });
        let now = Instant::now();
        let sfu = Sfu::new(config, SERVER, Metrics::new().worker(0), [seed as u8; 32]);
        let client_dtls = Arc::new(callsec_dtls::Config::new(Certificate::generate(&mut rng)));
        let mut call = Self {
            sfu,
            clients: Vec::new(),
            now,
            out: QueueOutput::default(),
        };
        for i in 0..n {
            let conn = i as ConnId + 1;
            let mut seed32 = [0u8; 32];
            seed32[..8].copy_from_slice(&(seed ^ ((i as u64) << 8)).to_le_bytes());
            let mut media = Client::new(client_dtls.clone(), seed32);
            setup(i, &mut media);
            let video_ssrc = 0x1000 + i as u32;
            media.add_track(Kind::Video, video_ssrc);
            let addr = SocketAddr::new(
                std::net::IpAddr::V4(std::net::Ipv4Addr::new(10, 1, (i >> 8) as u8, i as u8)),
                5000,
            );
            // A refused join leaves it out; a refused offer leaves it in, unnegotiated.
            let _ = call.join(conn, addr, media, video_ssrc);
        }
        // Run until every client is connected and no offers are outstanding.
        for _ in 0..2000 {
            call.step(Duration::from_millis(5));
            let forwarded = call.clients.iter().all(|c| {
                c.media
                    .sections()
                    .iter()
                    .filter(|s| s.recv_ssrc.is_some())
                    .count()
                    + 1
                    >= n
            });
            if forwarded && call.clients.iter().all(|c| c.media.is_connected()) && call.quiet() {
                break;
            }
        }
        call
    }

    fn quiet(&self) -> bool {
        self.out.queue.is_empty()
    }

    /// Advances time by `dt` and moves every datagram and signaling message.
    pub fn step(&mut self, dt: Duration) {
        self.now += dt;
        let now = self.now;
        for c in &mut self.clients {
            c.media.handle_timeout(now);
            while let Some(t) = c.media.poll_transmit() {
                let mut bytes = t.payload;
                self.sfu
                    .handle_datagram(now, c.addr, &mut bytes, &mut self.out);
            }
        }
        self.sfu.handle_timeout(now, &mut self.out);
        while let Some(s) = self.sfu.poll_signal() {
            if let Signal::Offer { conn, sdp } = s
                && let Some(c) = self.clients.iter_mut().find(|c| c.conn == conn)
                && let Ok(answer) = c.media.accept_offer(&sdp)
            {
                let _ = self.sfu.answer(now, conn, &answer);
            }
        }
        while let Some((to, mut bytes)) = self.out.queue.pop_front() {
            if let Some(c) = self.clients.iter_mut().find(|c| c.addr == to) {
                if let Ok(callsec_rtc::Received::Rtp(len)) =
                    c.media.handle_datagram(now, &mut bytes)
                    && len >= 12
                {
                    let ssrc = u32::from_be_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
                    c.received.push((ssrc, bytes[1] & 0x7f));
                }
                while let Some(t) = c.media.poll_transmit() {
                    let mut b = t.payload;
                    self.sfu.handle_datagram(now, c.addr, &mut b, &mut self.out);
                }
            }
        }
    }

    /// `media` (its tracks added) joins the room as `conn` from `addr` and makes its first
    /// offer. A refused join adds nothing; otherwise it is the last of the participants,
    /// negotiated unless the server refused its offer or it refused the answer (the error).
    pub fn join(
        &mut self,
        conn: ConnId,
        addr: SocketAddr,
        media: Client,
        video_ssrc: u32,
    ) -> Result<(), String> {
        self.sfu
            .join(self.now, conn, "sim")
            .map_err(|e| e.to_string())?;
        self.clients.push(SimClient {
            conn,
            addr,
            media,
            video_ssrc,
            received: Vec::new(),
        });
        self.renegotiate(self.clients.len() - 1)
    }

    /// Participant `i` offers what its client now has (after `add_track` and the like) and
    /// takes the server's answer.
    pub fn renegotiate(&mut self, i: usize) -> Result<(), String> {
        let c = &mut self.clients[i];
        let offer = c.media.create_offer();
        let answer = self
            .sfu
            .offer(self.now, c.conn, &offer)
            .map_err(|e| e.to_string())?;
        c.media.accept_answer(&answer).map_err(|e| e.to_string())
    }

    /// Participant `i` sends `datagram` (already protected) to the server.
    pub fn send_from(&mut self, i: usize, mut datagram: Vec<u8>) {
        let addr = self.clients[i].addr;
        self.sfu
            .handle_datagram(self.now, addr, &mut datagram, &mut self.out);
    }

    /// Participant `i` leaves the call.
    pub fn leave(&mut self, i: usize) {
        let c = self.clients.remove(i);
        self.sfu.leave(self.now, c.conn, &mut self.out);
    }

    /// Steps `dt` at a time until `done` holds (then true) or `steps` ran out (false).
    pub fn run_until(
        &mut self,
        dt: Duration,
        steps: usize,
        mut done: impl FnMut(&Self) -> bool,
    ) -> bool {
        for _ in 0..steps {
            self.step(dt);
            if done(self) {
                return true;
            }
        }
        false
    }

    /// How many participants receive `ssrc` (negotiated forwarding sections, not ended).
    pub fn receivers_of(&self, ssrc: u32) -> usize {
        self.clients
            .iter()
            .filter(|c| {
                c.media
                    .sections()
                    .iter()
                    .any(|s| s.recv_ssrc == Some(ssrc) && !s.stopped)
            })
            .count()
    }
}
