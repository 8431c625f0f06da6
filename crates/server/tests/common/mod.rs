//! Participants built from callsec's own crates (signaling client, ICE checks, DTLS client,
//! SRTP) joining a real `callsec serve` over loopback.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs, dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use callsec_dtls::{Certificate, CipherSuite};
use callsec_rtc::Received;
use callsec_rtc::client::{Client as MediaClient, write_rtp};
use callsec_rtc::rtcp::{self, Packet};
use callsec_rtc::sdp::Kind;
use callsec_server::config::ServeArgs;
use callsec_server::{Running, Settings};
use callsec_signaling::{
    Client, ClientConfig, ClientMessage, ClientTls, Incoming, Sdp, ServerMessage,
};
use callsec_srtp::ProtectionProfile;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use rustls_pki_types::CertificateDer;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

pub async fn server(
    profiles: &[ProtectionProfile],
    suites: &[CipherSuite],
    tweak: impl FnOnce(&mut Settings),
) -> Running {
    let dir = std::env::temp_dir().join(format!(
        "callsec-e2e-{}-{}",
        std::process::id(),
        rand_core::RngCore::next_u64(&mut rand_core::OsRng)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let mut s = Settings::resolve(ServeArgs {
        signaling: Some("127.0.0.1:0".parse().unwrap()),
        admin: Some("127.0.0.1:0".parse().unwrap()),
        revocations: Some(dir.join("revocations.log")),
        workers: Some(2),
        ..Default::default()
    })
    .unwrap();
    s.srtp_profiles = profiles.to_vec();
    s.dtls_suites = suites.to_vec();
    tweak(&mut s);
    callsec_server::start(s).await.unwrap()
}

/// What a participant saw.
#[derive(Default, Debug)]
pub struct Seen {
    /// RTP packets per SSRC, payload checked.
    pub rtp: HashMap<u32, u64>,
    /// Last arrival per SSRC.
    pub last_rtp: HashMap<u32, Instant>,
    /// Payload mismatches (must stay 0).
    pub corrupt: u64,
    pub plis: u64,
    pub nacks: u64,
    pub remb: u64,
    pub rr: u64,
    pub sr: u64,
    /// Packets whose seq we had already accepted once (retransmissions after a NACK).
    pub retransmitted: u64,
    pub srtp_errors: u64,
    pub offers: u64,
}

pub enum Cmd {
    /// Publish another track (renegotiate).
    Publish(Kind, u32),
    /// Stop publishing a track (renegotiate).
    Unpublish(u32),
    /// Send a leave and stop.
    Leave,
}

/// Shared between the participant's tasks and the test.
pub struct State {
    pub media: MediaClient,
    pub seen: Seen,
    /// Tracks being sent: ssrc -> (pt, next seq).
    pub sending: HashMap<u32, (u8, u16)>,
    /// Packets to drop on receipt once (simulated loss), by (ssrc, seq).
    pub drop_once: Vec<(u32, u16)>,
    /// Sequence numbers accepted per SSRC.
    pub accepted: HashMap<u32, Vec<u16>>,
    pub closed: Option<String>,
    pub mute_media: bool,
    /// Protected datagrams to send to the server from the media socket.
    pub outbox: Vec<Vec<u8>>,
    /// Load mode: count SRTP datagrams and bytes without decrypting them.
    pub count_only: bool,
    /// Datagrams and bytes counted in load mode.
    pub counted: (u64, u64),
}

pub struct Participant {
    pub name: String,
    pub state: Arc<Mutex<State>>,
    pub commands: mpsc::UnboundedSender<Cmd>,
    pub session_id: String,
    pub token: String,
    pub udp_addr: SocketAddr,
}

/// Payload of synthetic packets: the SSRC and seq repeated, so corruption shows.
pub fn payload(ssrc: u32, seq: u16, len: usize) -> Vec<u8> {
    let mut p = Vec::with_capacity(len);
    while p.len() < len {
        p.extend_from_slice(&ssrc.to_be_bytes());
        p.extend_from_slice(&seq.to_be_bytes());
    }
    p.truncate(len);
    p
}

impl Participant {
    /// Connects, joins `room` and publishes `tracks`.
    pub async fn join(
        running: &Running,
        name: &str,
        room: &str,
        tracks: &[(Kind, u32)],
        seed: u64,
    ) -> Participant {
        let bind = "127.0.0.1:0".parse().unwrap();
        Self::join_from(running, name, room, tracks, seed, bind, true).await
    }

    /// As [`Participant::join`], with the media socket bound to `bind`, and checks that carry
    /// USE-CANDIDATE or (`nominate` false) never do.
    pub async fn join_from(
        running: &Running,
        name: &str,
        room: &str,
        tracks: &[(Kind, u32)],
        seed: u64,
        bind: SocketAddr,
        nominate: bool,
    ) -> Participant {
        let dev = running.dev.as_ref().unwrap();
        let token = dev.issue(name, room).unwrap();
        let cert = CertificateDer::from(running.signaling_certificate().unwrap());
        let config = ClientConfig::new(
            running.signaling_addr,
            ClientTls::Trust(vec![cert]),
            Some(token.token.clone()),
        );
        let (mut sig, _) = Client::connect(&config).await.unwrap();
        let joined = sig
            .request(ClientMessage::Join { room: room.into() })
            .await
            .unwrap();
        assert!(matches!(joined, ServerMessage::Joined { .. }), "{joined:?}");

        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let dtls = Arc::new(callsec_dtls::Config::new(Certificate::generate(&mut rng)));
        let mut media = MediaClient::new(dtls, [seed as u8; 32]);
        media.set_nominate(nominate);
        let mut sending = HashMap::new();
        for &(kind, ssrc) in tracks {
            media.add_track(kind, ssrc);
            sending.insert(ssrc, (pt(kind), 1u16));
        }
        let offer = media.create_offer();
        let state = Arc::new(Mutex::new(State {
            media,
            seen: Seen::default(),
            sending,
            drop_once: Vec::new(),
            accepted: HashMap::new(),
            closed: None,
            mute_media: false,
            outbox: Vec::new(),
            count_only: false,
            counted: (0, 0),
        }));
        let answer = sig
            .request(ClientMessage::Offer { sdp: Sdp(offer) })
            .await
            .unwrap();
        let ServerMessage::Answer { sdp } = answer else {
            panic!("{name}: expected an answer, got {answer:?}")
        };
        state.lock().unwrap().media.accept_answer(&sdp.0).unwrap();

        let udp = UdpSocket::bind(bind).await.unwrap();
        let udp_addr = udp.local_addr().unwrap();
        tokio::spawn(media_loop(udp, state.clone()));
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(signaling_loop(sig, state.clone(), rx, name.to_owned()));
        Participant {
            name: name.into(),
            state,
            commands: tx,
            session_id: token.session_id,
            token: token.token,
            udp_addr,
        }
    }

    pub fn connected(&self) -> bool {
        self.state.lock().unwrap().media.is_connected()
    }

    pub fn received(&self, ssrc: u32) -> u64 {
        self.state
            .lock()
            .unwrap()
            .seen
            .rtp
            .get(&ssrc)
            .copied()
            .unwrap_or(0)
    }

    pub fn seen<T>(&self, f: impl FnOnce(&Seen) -> T) -> T {
        f(&self.state.lock().unwrap().seen)
    }
}

pub fn pt(kind: Kind) -> u8 {
    match kind {
        Kind::Audio => callsec_rtc::sdp::OPUS_PT,
        Kind::Video => callsec_rtc::sdp::VP8_PT,
    }
}

/// Polls `cond` every 20 ms until it holds or `within` passes.
pub async fn wait_until(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + within;
    while Instant::now() < end {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cond()
}

async fn signaling_loop(
    mut sig: Client,
    state: Arc<Mutex<State>>,
    mut commands: mpsc::UnboundedReceiver<Cmd>,
    name: String,
) {
    let mut offer_out = false;
    loop {
        tokio::select! {
            incoming = sig.recv() => {
                let env = match incoming {
                    Ok(Incoming::Message(env)) => env,
                    Ok(Incoming::Closed { code, reason }) => {
                        state.lock().unwrap().closed = Some(format!("{code} {reason}"));
                        return;
                    }
                    Err(e) => {
                        state.lock().unwrap().closed = Some(e.to_string());
                        return;
                    }
                };
                match env.message {
                    ServerMessage::Offer { sdp } => {
                        if offer_out {
                            continue; // glare: the impolite side ignores the server's offer
                        }
                        let answer = {
                            let mut s = state.lock().unwrap();
                            s.seen.offers += 1;
                            s.media.accept_offer(&sdp.0)
                        };
                        match answer {
                            Ok(a) => {
                                let _ = sig.send(ClientMessage::Answer { sdp: Sdp(a) }).await;
                            }
                            Err(e) => panic!("{name}: bad server offer: {e}"),
                        }
                    }
                    ServerMessage::Answer { sdp } => {
                        offer_out = false;
                        state.lock().unwrap().media.accept_answer(&sdp.0).unwrap();
                    }
                    ServerMessage::Error { code, message } => {
                        offer_out = false;
                        eprintln!("{name}: server error {code:?}: {message}");
                    }
                    _ => {}
                }
            }
            cmd = commands.recv() => {
                match cmd {
                    Some(Cmd::Publish(kind, ssrc)) => {
                        let offer = {
                            let mut s = state.lock().unwrap();
                            s.media.add_track(kind, ssrc);
                            s.sending.insert(ssrc, (pt(kind), 1));
                            s.media.create_offer()
                        };
                        offer_out = true;
                        let _ = sig.send(ClientMessage::Offer { sdp: Sdp(offer) }).await;
                    }
                    Some(Cmd::Unpublish(ssrc)) => {
                        let offer = {
                            let mut s = state.lock().unwrap();
                            s.media.remove_track(ssrc);
                            s.sending.remove(&ssrc);
                            s.media.create_offer()
                        };
                        offer_out = true;
                        let _ = sig.send(ClientMessage::Offer { sdp: Sdp(offer) }).await;
                    }
                    Some(Cmd::Leave) | None => {
                        let _ = sig.send(ClientMessage::Leave).await;
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        let _ = sig.close().await;
                        return;
                    }
                }
            }
        }
    }
}

async fn media_loop(udp: UdpSocket, state: Arc<Mutex<State>>) {
    let mut buf = vec![0u8; 2048];
    let mut next_media = Instant::now();
    loop {
        let now = Instant::now();
        let mut out: Vec<(SocketAddr, Vec<u8>)> = Vec::new();
        {
            let mut s = state.lock().unwrap();
            s.media.handle_timeout(now);
            while let Some(t) = s.media.poll_transmit() {
                out.push((t.destination, t.payload));
            }
            if let Some(dest) = s.media.server_addr() {
                for d in std::mem::take(&mut s.outbox) {
                    out.push((dest, d));
                }
            }
            if now >= next_media && s.media.is_connected() && !s.mute_media {
                next_media = now + Duration::from_millis(20);
                let dest = s.media.server_addr().unwrap();
                let ssrcs: Vec<u32> = s.sending.keys().copied().collect();
                for ssrc in ssrcs {
                    let (pt, seq) = s.sending[&ssrc];
                    s.sending.insert(ssrc, (pt, seq.wrapping_add(1)));
                    let mut pkt = [0u8; 1500];
                    let n = write_rtp(
                        &mut pkt,
                        pt,
                        seq,
                        u32::from(seq) * 960,
                        ssrc,
                        &payload(ssrc, seq, 200),
                    );
                    if let Ok(n) = s.media.protect_rtp(&mut pkt, n) {
                        out.push((dest, pkt[..n].to_vec()));
                    }
                }
            }
        }
        for (to, bytes) in out {
            let _ = udp.send_to(&bytes, to).await;
        }
        let recv = tokio::time::timeout(Duration::from_millis(5), udp.recv_from(&mut buf)).await;
        let Ok(Ok((n, _from))) = recv else { continue };
        let now = Instant::now();
        let mut s = state.lock().unwrap();
        let datagram = &mut buf[..n];
        if s.count_only && datagram[0] >> 6 == 2 && !callsec_ice::is_rtcp(datagram) {
            s.counted.0 += 1;
            s.counted.1 += n as u64;
            continue;
        }
        // Simulated loss of chosen packets (before decryption, as the network would).
        if datagram.len() >= 12 && datagram[0] >> 6 == 2 && !callsec_ice::is_rtcp(datagram) {
            let seq = u16::from_be_bytes([datagram[2], datagram[3]]);
            let ssrc = u32::from_be_bytes([datagram[8], datagram[9], datagram[10], datagram[11]]);
            if let Some(i) = s.drop_once.iter().position(|&d| d == (ssrc, seq)) {
                s.drop_once.remove(i);
                continue;
            }
        }
        match s.media.handle_datagram(now, datagram) {
            Ok(Received::Rtp(len)) => {
                let pkt = &buf[..len];
                let seq = u16::from_be_bytes([pkt[2], pkt[3]]);
                let ssrc = u32::from_be_bytes([pkt[8], pkt[9], pkt[10], pkt[11]]);
                if pkt[12..] != payload(ssrc, seq, len - 12)[..] {
                    s.seen.corrupt += 1;
                }
                let accepted = s.accepted.entry(ssrc).or_default();
                let again = accepted.contains(&seq);
                accepted.push(seq);
                if accepted.len() > 4096 {
                    accepted.drain(..2048);
                }
                if again {
                    s.seen.retransmitted += 1;
                }
                *s.seen.rtp.entry(ssrc).or_default() += 1;
                s.seen.last_rtp.insert(ssrc, now);
            }
            Ok(Received::Rtcp(len)) => {
                for (p, _) in rtcp::packets(&buf[..len]) {
                    match p {
                        Packet::Pli { .. } | Packet::Fir { .. } => s.seen.plis += 1,
                        Packet::Nack { .. } => s.seen.nacks += 1,
                        Packet::SenderReport { .. } => s.seen.sr += 1,
                        Packet::ReceiverReport { .. } => s.seen.rr += 1,
                        Packet::Other {
                            packet_type: rtcp::PSFB,
                        } => s.seen.remb += 1,
                        Packet::Other { .. } => {}
                    }
                }
            }
            Ok(Received::Control) => {}
            Err(_) => s.seen.srtp_errors += 1,
        }
    }
}

/// Sends an RTCP packet `bytes` from `p`'s socket to the server, protected.
pub fn send_rtcp(p: &Participant, bytes: &[u8]) {
    let mut s = p.state.lock().unwrap();
    let mut buf = [0u8; 1500];
    buf[..bytes.len()].copy_from_slice(bytes);
    let n = s.media.protect_rtcp(&mut buf, bytes.len()).unwrap();
    s.outbox.push(buf[..n].to_vec());
}

/// Writes an RTCP SR for `ssrc`.
pub fn sender_report(ssrc: u32) -> Vec<u8> {
    let mut b = [0u8; 28];
    let n = rtcp::write_sr(&mut b, ssrc, 0x1234_5678_9abc_def0, 1000, 10, 2000).unwrap();
    b[..n].to_vec()
}

/// A signaling client of `name`, joined to `room`.
pub async fn signaling(running: &Running, name: &str, room: &str) -> Client {
    let token = running.dev.as_ref().unwrap().issue(name, room).unwrap();
    let cert = CertificateDer::from(running.signaling_certificate().unwrap());
    let config = ClientConfig::new(
        running.signaling_addr,
        ClientTls::Trust(vec![cert]),
        Some(token.token),
    );
    let (mut sig, _) = Client::connect(&config).await.unwrap();
    sig.request(ClientMessage::Join { room: room.into() })
        .await
        .unwrap();
    sig
}

/// Joins and offers through signaling only: no ICE, no DTLS, ever.
pub async fn offer_only(running: &Running, name: &str, room: &str, ssrc: u32) -> Client {
    let mut sig = signaling(running, name, room).await;
    let mut rng = ChaCha20Rng::seed_from_u64(99);
    let dtls = Arc::new(callsec_dtls::Config::new(Certificate::generate(&mut rng)));
    let mut media = MediaClient::new(dtls, [9; 32]);
    media.add_track(Kind::Audio, ssrc);
    let answer = sig
        .request(ClientMessage::Offer {
            sdp: Sdp(media.create_offer()),
        })
        .await
        .unwrap();
    assert!(matches!(answer, ServerMessage::Answer { .. }), "{answer:?}");
    sig
}

/// The sum of a metric's samples (all label sets) in the server's exposition.
pub fn metric(running: &Running, name: &str) -> f64 {
    running
        .metrics
        .encode()
        .lines()
        .filter(|l| l.starts_with(&format!("callsec_{name}")) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
