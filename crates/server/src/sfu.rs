//! The forwarding core of one worker, sans-IO: its participants, its rooms, and what moves
//! between them. Datagrams, signaling requests and `Instant`s in; datagrams (through an
//! [`Output`]), signaling messages ([`Signal`]) and deadlines out. The worker in
//! [`crate::worker`] drives it from a UDP socket; tests and the benchmark drive it directly.
//!
//! Per forwarded RTP packet: one unprotect with the sender's context, header extension ids
//! mapped once in place, then per receiver one copy into a reusable buffer (or the receiver's
//! retransmission slot, for video), its payload type set, one protect with the receiver's
//! context and one send. No allocation and no lock.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use callsec_dtls::Fingerprint;
use callsec_ice::{PacketKind, classify};
use callsec_rtc::rtcp::{self, Packet, ReportBlock};
use callsec_rtc::sdp::{Extension, Kind, Local, Mid, Remote, Section, Session};
use callsec_rtc::{CloseReason, Event, Received, Rtc, random_credentials};
use callsec_srtp::view::RtpView;
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};

use crate::metrics::WorkerMetrics;

mod routing;

/// The SSRC the server signs its own RTCP with.
pub const SERVER_SSRC: u32 = 0x00ca_11ec;
/// Retransmission slots per receiver (video only): about 1 s of 1.5 Mbit/s video.
pub const RTX_SLOTS: usize = 256;
/// Largest datagram handled.
pub const MTU: usize = 1500;
/// How long the server waits for an answer to its offer before offering again.
const OFFER_TIMEOUT: Duration = Duration::from_secs(3);
/// A server offer waits this long after the server answered the participant's offer, so
/// the answer reaches it first.
const ANSWER_FIRST: Duration = Duration::from_millis(50);
/// Receiver reports and REMB to publishers, this often.
const REPORT_INTERVAL: Duration = Duration::from_millis(500);
/// At most one PLI per stream this often towards a publisher.
const PLI_INTERVAL: Duration = Duration::from_millis(300);

/// Where datagrams go. The worker implements it over its socket; tests over a queue.
pub trait Output {
    /// Sends `data` to `to` (best effort: UDP).
    fn send(&mut self, to: SocketAddr, data: &[u8]);
}

/// A participant's handle: the signaling connection id.
pub type ConnId = u64;

/// What the worker must tell signaling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signal {
    /// Send this offer to the participant (server-initiated renegotiation).
    Offer {
        /// The participant.
        conn: ConnId,
        /// The SDP.
        sdp: String,
    },
    /// The participant's media ended (consent expiry, DTLS close or failure, timeout).
    MediaClosed {
        /// The participant.
        conn: ConnId,
        /// Why.
        reason: String,
    },
}

/// Settings of the forwarding core.
#[derive(Debug, Clone)]
pub struct SfuConfig {
    /// Transport settings for each participant (DTLS config with certificate, SRTP).
    pub rtc: Arc<callsec_rtc::Config>,
    /// Participants per room.
    pub max_room_size: usize,
    /// Participants per worker.
    pub max_participants: usize,
    /// Ceiling of the bitrate the server invites publishers to use (REMB), bits/s.
    pub max_bitrate: u64,
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SfuError {
    /// The room is full.
    RoomFull,
    /// The worker is full.
    Full,
    /// The connection has not joined.
    UnknownParticipant,
    /// The SDP was refused.
    Sdp(String),
}

impl std::fmt::Display for SfuError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::RoomFull => f.write_str("room is full"),
            Self::Full => f.write_str("server is full"),
            Self::UnknownParticipant => f.write_str("join a room first"),
            Self::Sdp(e) => write!(f, "{e}"),
        }
    }
}

/// A published stream as its publisher sends it.
#[derive(Debug)]
struct Publication {
    kind: Kind,
    /// Which of the publisher's tracks (its section index), for the source id.
    track: u32,
    ext: callsec_rtc::sdp::ExtensionMap,
    stats: RecvStats,
    last_pli: Option<Instant>,
}

/// Reception statistics for RR (RFC 3550 §6.4.1, Appendix A.3) and the REMB estimate.
#[derive(Debug, Default)]
struct RecvStats {
    started: bool,
    base_seq: u32,
    max_seq: u16,
    cycles: u32,
    received: u32,
    expected_prior: u32,
    received_prior: u32,
    bytes_window: u64,
    last_sr: Option<(u32, Instant)>,
}

impl RecvStats {
    fn update(&mut self, seq: u16, bytes: usize) {
        self.bytes_window += bytes as u64;
        if !self.started {
            self.started = true;
            self.base_seq = u32::from(seq);
            self.max_seq = seq;
            self.received = 1;
            return;
        }
        self.received += 1;
        let delta = seq.wrapping_sub(self.max_seq);
        if delta != 0 && delta < 0x8000 {
            if seq < self.max_seq {
                self.cycles += 1 << 16;
            }
            self.max_seq = seq;
        }
    }

    fn extended_max(&self) -> u32 {
        self.cycles | u32::from(self.max_seq)
    }

    fn report(&mut self, ssrc: u32, now: Instant) -> ReportBlock {
        let expected = self
            .extended_max()
            .wrapping_sub(self.base_seq)
            .wrapping_add(1);
        let lost = i64::from(expected) - i64::from(self.received);
        let expected_interval = expected.wrapping_sub(self.expected_prior);
        let received_interval = self.received.wrapping_sub(self.received_prior);
        self.expected_prior = expected;
        self.received_prior = self.received;
        let lost_interval = i64::from(expected_interval) - i64::from(received_interval);
        let fraction_lost = if expected_interval == 0 || lost_interval <= 0 {
            0
        } else {
            ((lost_interval << 8) / i64::from(expected_interval)).min(255) as u8
        };
        let (lsr, dlsr) = match self.last_sr {
            Some((mid, at)) => {
                let d = now.saturating_duration_since(at);
                (mid, (d.as_secs_f64() * 65536.0) as u32)
            }
            None => (0, 0),
        };
        ReportBlock {
            ssrc,
            fraction_lost,
            cumulative_lost: lost.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32,
            highest_seq: self.extended_max(),
            jitter: 0,
            lsr,
            dlsr,
        }
    }
}

/// A receiver's view of one forwarded stream.
#[derive(Debug, Clone, Copy)]
struct Forwarding {
    pt: u8,
    kind: Kind,
    /// Header-extension ids for this receiver by the server's id (0: drop), when its
    /// section could not take the server's ids (`Forward::extension_rewrite`).
    ext: Option<[u8; 16]>,
}

/// The retransmission cache of one receiver: protected packets as sent, by (SSRC, seq).
struct RtxCache {
    slots: Box<[RtxSlot]>,
}

#[derive(Clone)]
struct RtxSlot {
    ssrc: u32,
    seq: u16,
    len: u16,
    data: [u8; MTU],
}

impl RtxCache {
    fn new() -> Self {
        Self {
            slots: vec![
                RtxSlot {
                    ssrc: 0,
                    seq: 0,
                    len: 0,
                    data: [0; MTU],
                };
                RTX_SLOTS
            ]
            .into_boxed_slice(),
        }
    }

    fn index(ssrc: u32, seq: u16) -> usize {
        (usize::from(seq) ^ (ssrc as usize).rotate_left(5)) % RTX_SLOTS
    }

    fn get(&self, ssrc: u32, seq: u16) -> Option<&[u8]> {
        let s = &self.slots[Self::index(ssrc, seq)];
        (s.len > 0 && s.ssrc == ssrc && s.seq == seq).then(|| &s.data[..usize::from(s.len)])
    }
}

struct Participant {
    conn: ConnId,
    room: Arc<str>,
    rtc: Rtc,
    session: Session,
    /// Published streams by SSRC.
    publications: HashMap<u32, Publication>,
    /// Streams forwarded to this participant by SSRC (negotiated and active).
    forwarding: HashMap<u32, Forwarding>,
    offer_sent: Option<Instant>,
    wants_offer: bool,
    /// No server offer before this: the answer to the participant's own offer goes first.
    offer_not_before: Instant,
    rtx: Option<RtxCache>,
    next_report: Instant,
    /// The last REMB sent for this participant's video (bit/s; 0 before the first).
    remb: u64,
    ufrag: String,
    /// When the last authenticated SRTP or SRTCP packet arrived: the media liveness that
    /// keeps a quiet signaling connection open ([`Sfu::media_alive`]).
    heard: Option<Instant>,
}

struct Room {
    members: Vec<ConnId>,
    /// Which member publishes each SSRC.
    owners: HashMap<u32, ConnId>,
}

/// The forwarding core of one worker.
pub struct Sfu {
    config: Arc<SfuConfig>,
    local_addr: SocketAddr,
    fingerprint: Fingerprint,
    participants: HashMap<ConnId, Participant>,
    by_ufrag: HashMap<String, ConnId>,
    by_addr: routing::Routes,
    rooms: HashMap<String, Room>,
    /// Which participant publishes an SSRC, per room.
    signals: Vec<Signal>,
    scratch: Box<[u8; MTU + 64]>,
    targets: Vec<ConnId>,
    rng: ChaCha20Rng,
    metrics: WorkerMetrics,
}

impl std::fmt::Debug for Sfu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sfu")
            .field("local_addr", &self.local_addr)
            .field("participants", &self.participants.len())
            .field("rooms", &self.rooms.len())
            .finish_non_exhaustive()
    }
}

impl Sfu {
    /// A core whose participants' candidate is `local_addr` (the worker's socket, or its
    /// public address).
    pub fn new(
        config: Arc<SfuConfig>,
        local_addr: SocketAddr,
        metrics: WorkerMetrics,
        seed: [u8; 32],
    ) -> Self {
        let fingerprint = config.rtc.dtls.certificate.fingerprint();
        Self {
            config,
            local_addr,
            fingerprint,
            participants: HashMap::new(),
            by_ufrag: HashMap::new(),
            by_addr: routing::Routes::default(),
            rooms: HashMap::new(),
            signals: Vec::new(),
            scratch: Box::new([0; MTU + 64]),
            targets: Vec::with_capacity(64),
            rng: ChaCha20Rng::from_seed(seed),
            metrics,
        }
    }

    /// Participants on this worker.
    pub fn participant_count(&self) -> usize {
        self.participants.len()
    }

    /// Rooms on this worker.
    pub fn room_count(&self) -> usize {
        self.rooms.len()
    }

    /// Members of a room (signaling connection ids).
    pub fn room_members(&self, room: &str) -> &[ConnId] {
        self.rooms.get(room).map_or(&[], |r| &r.members)
    }

    /// Whether a participant's SRTP is up.
    pub fn is_connected(&self, conn: ConnId) -> bool {
        self.participants
            .get(&conn)
            .is_some_and(|p| p.rtc.is_connected())
    }

    /// A participant joins `room`: its transport is created (it waits for an offer).
    pub fn join(&mut self, now: Instant, conn: ConnId, room: &str) -> Result<(), SfuError> {
        if self.participants.contains_key(&conn) {
            self.leave(now, conn, &mut NoOutput);
        }
        let size = self.rooms.get(room).map_or(0, |r| r.members.len());
        if size >= self.config.max_room_size {
            return Err(SfuError::RoomFull);
        }
        if self.participants.len() >= self.config.max_participants {
            return Err(SfuError::Full);
        }
        let ice = loop {
            let c = random_credentials(&mut self.rng);
            if !self.by_ufrag.contains_key(&c.ufrag) {
                break c;
            }
        };
        let mut seed = [0u8; 32];
        self.rng.fill_bytes(&mut seed);
        let session = Session::new(Local {
            ice: ice.clone(),
            fingerprint: self.fingerprint,
            candidate: self.local_addr,
            session_id: (self.rng.next_u64() >> 2) | 1,
        });
        let ufrag = ice.ufrag.clone();
        let rtc = Rtc::new(self.config.rtc.clone(), ice, now, seed);
        self.by_ufrag.insert(ufrag.clone(), conn);
        self.rooms
            .entry(room.to_owned())
            .or_insert_with(|| Room {
                members: Vec::new(),
                owners: HashMap::new(),
            })
            .members
            .push(conn);
        self.participants.insert(
            conn,
            Participant {
                conn,
                room: Arc::from(room),
                rtc,
                session,
                publications: HashMap::new(),
                forwarding: HashMap::new(),
                offer_sent: None,
                wants_offer: false,
                offer_not_before: now,
                rtx: None,
                next_report: now + REPORT_INTERVAL,
                remb: 0,
                ufrag,
                heard: None,
            },
        );
        self.metrics.participants.inc();
        self.metrics.rooms.set(self.rooms.len() as i64);
        Ok(())
    }

    /// The participant's offer: answered; publishing changes reach the room's others.
    pub fn offer(&mut self, now: Instant, conn: ConnId, sdp: &str) -> Result<String, SfuError> {
        let remote = Remote::parse(sdp).map_err(|e| SfuError::Sdp(e.to_string()))?;
        let p = self
            .participants
            .get_mut(&conn)
            .ok_or(SfuError::UnknownParticipant)?;
        // An SSRC another member publishes is refused, not silently merged.
        for m in &remote.media {
            for ssrc in &m.ssrcs {
                if let Some(&owner) = self.rooms.get(&*p.room).and_then(|r| r.owners.get(ssrc))
                    && owner != conn
                {
                    return Err(SfuError::Sdp("SSRC already in use in this room".into()));
                }
            }
        }
        let (answer, changes) = p
            .session
            .accept_offer(&remote)
            .map_err(|e| SfuError::Sdp(e.to_string()))?;
        p.rtc.set_remote(&remote);
        let room = p.room.clone();
        let mut changed = stop_publications(
            p,
            self.rooms.get_mut(&*room).map(|r| &mut r.owners),
            &changes.stopped,
        );
        for publish in &changes.started {
            let track = p
                .session
                .sections()
                .iter()
                .position(|s| s.mid() == &publish.mid)
                .unwrap_or(0) as u32;
            for &ssrc in &publish.ssrcs {
                p.publications.insert(
                    ssrc,
                    Publication {
                        kind: publish.kind,
                        track,
                        ext: publish.extensions.clone(),
                        stats: RecvStats::default(),
                        last_pli: None,
                    },
                );
                if let Some(r) = self.rooms.get_mut(&*room) {
                    r.owners.insert(ssrc, conn);
                }
                changed = true;
            }
        }
        self.rebuild_forwarding(conn);
        if let Some(p) = self.participants.get_mut(&conn) {
            // After this answer the participant may need the room's tracks (and on glare, the
            // offer `accept_offer` dropped): offer again, but not before the answer is on
            // its way.
            p.wants_offer = true;
            p.offer_sent = None;
            p.offer_not_before = now + ANSWER_FIRST;
        }
        if changed {
            self.renegotiate_room(&room, Some(conn));
        }
        Ok(answer)
    }

    /// The participant's answer to the server's offer.
    pub fn answer(&mut self, _now: Instant, conn: ConnId, sdp: &str) -> Result<(), SfuError> {
        let remote = Remote::parse(sdp).map_err(|e| SfuError::Sdp(e.to_string()))?;
        let p = self
            .participants
            .get_mut(&conn)
            .ok_or(SfuError::UnknownParticipant)?;
        let changes = p
            .session
            .accept_answer(&remote)
            .map_err(|e| SfuError::Sdp(e.to_string()))?;
        p.offer_sent = None;
        let room = p.room.clone();
        if stop_publications(
            p,
            self.rooms.get_mut(&*room).map(|r| &mut r.owners),
            &changes.stopped,
        ) {
            self.renegotiate_room(&room, Some(conn));
        }
        self.rebuild_forwarding(conn);
        // Whatever changed while this offer was out goes in the next one.
        if let Some(p) = self.participants.get_mut(&conn) {
            p.wants_offer = true;
        }
        Ok(())
    }

    /// The participant leaves (signaling leave, disconnect or revocation): close_notify goes
    /// out, its state is freed, and the others renegotiate.
    pub fn leave(&mut self, _now: Instant, conn: ConnId, out: &mut impl Output) {
        let Some(mut p) = self.participants.remove(&conn) else {
            return;
        };
        p.rtc.close();
        while let Some(t) = p.rtc.poll_transmit() {
            out.send(t.destination, &t.payload);
        }
        self.forget(&p);
    }

    fn forget(&mut self, p: &Participant) {
        self.by_ufrag.remove(&p.ufrag);
        self.forget_routes(p.conn);
        if let Some(room) = self.rooms.get_mut(&*p.room) {
            for ssrc in p.publications.keys() {
                room.owners.remove(ssrc);
            }
            room.members.retain(|c| *c != p.conn);
            if room.members.is_empty() {
                self.rooms.remove(&*p.room);
            }
        }
        self.metrics.participants.dec();
        self.metrics.rooms.set(self.rooms.len() as i64);
        let room = p.room.clone();
        self.renegotiate_room(&room, None);
    }

    /// Closes everyone (close_notify) for shutdown.
    pub fn shutdown(&mut self, now: Instant, out: &mut impl Output) {
        let conns: Vec<ConnId> = self.participants.keys().copied().collect();
        for c in conns {
            self.leave(now, c, out);
        }
    }

    /// The next message for signaling.
    pub fn poll_signal(&mut self) -> Option<Signal> {
        if self.signals.is_empty() {
            None
        } else {
            Some(self.signals.remove(0))
        }
    }

    /// Marks every member of `room` except `except` as needing an offer.
    fn renegotiate_room(&mut self, room: &str, except: Option<ConnId>) {
        let Some(r) = self.rooms.get(room) else {
            return;
        };
        for c in &r.members {
            if Some(*c) != except
                && let Some(p) = self.participants.get_mut(c)
            {
                p.wants_offer = true;
            }
        }
    }

    /// Sends an offer to `conn` if it needs one and has none out.
    fn offer_if_needed(&mut self, now: Instant, conn: ConnId) {
        let Some(p) = self.participants.get(&conn) else {
            return;
        };
        if !p.wants_offer || p.session.sections().is_empty() || now < p.offer_not_before {
            return;
        }
        if let Some(sent) = p.offer_sent
            && now < sent + OFFER_TIMEOUT
        {
            return;
        }
        // What the room publishes (others' tracks) against what is forwarded now.
        let mut add = Vec::new();
        if let Some(room) = self.rooms.get(&*p.room) {
            for other in &room.members {
                if *other == conn {
                    continue;
                }
                let Some(o) = self.participants.get(other) else {
                    continue;
                };
                for (&ssrc, pb) in &o.publications {
                    add.push((pb.kind, ssrc, (*other, pb.track)));
                }
            }
        }
        add.sort_by_key(|a| (a.2, a.1));
        // A forwarded section ends when its source stopped publishing, or now publishes
        // another SSRC (a republished or recycled track of the same index).
        let end: Vec<(u64, u32)> = p
            .session
            .sections()
            .iter()
            .filter_map(Section::forward)
            .filter(|f| f.active && !add.iter().any(|a| a.2 == f.source && a.1 == f.ssrc))
            .map(|f| f.source)
            .collect();
        let Some(p) = self.participants.get_mut(&conn) else {
            return;
        };
        p.session.rollback();
        p.wants_offer = false;
        if let Some(sdp) = p.session.create_offer(&add, &end) {
            p.offer_sent = Some(now);
            self.signals.push(Signal::Offer { conn, sdp });
        }
    }

    /// Recomputes what is forwarded to `conn` from its negotiated sections.
    fn rebuild_forwarding(&mut self, conn: ConnId) {
        let Some(p) = self.participants.get_mut(&conn) else {
            return;
        };
        p.forwarding.clear();
        let mut video = false;
        for s in p.session.sections() {
            if let Some(f) = s.forward()
                && f.active
                && f.negotiated
            {
                p.forwarding.insert(
                    f.ssrc,
                    Forwarding {
                        pt: f.pt,
                        kind: f.kind,
                        ext: f.extension_rewrite(),
                    },
                );
                video |= f.kind == Kind::Video;
            }
        }
        if video && p.rtx.is_none() {
            p.rtx = Some(RtxCache::new());
        }
    }

    /// Whether `conn`'s media is alive at `now`: its SRTP keys are in place and an
    /// authenticated SRTP or SRTCP packet arrived within `within`. Signaling asks this
    /// before closing a quiet connection, so a call whose media flows is never cut for
    /// signaling silence; a spoofer cannot fake it (it needs the participant's SRTP keys).
    pub fn media_alive(&self, now: Instant, conn: ConnId, within: Duration) -> bool {
        self.participants.get(&conn).is_some_and(|p| {
            p.rtc.is_connected()
                && p.heard
                    .is_some_and(|t| now.saturating_duration_since(t) <= within)
        })
    }

    /// Handles one datagram on the worker's socket.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        from: SocketAddr,
        buf: &mut [u8],
        out: &mut impl Output,
    ) {
        let kind = classify(buf);
        self.metrics.count_in(buf);
        let Some(conn) = self.route(from, kind, buf) else {
            self.metrics.dropped_unknown.inc();
            return;
        };
        let Some(p) = self.participants.get_mut(&conn) else {
            return;
        };
        let was_started = p.rtc.handshake_started();
        let result = p.rtc.handle_datagram(now, from, buf);
        if let Ok(Received::Rtp(_) | Received::Rtcp(_)) = result {
            p.heard = Some(now);
        }
        if !was_started && p.rtc.handshake_started() {
            self.metrics.handshakes_started.inc();
        }
        match result {
            Ok(Received::Control) => {}
            Ok(Received::Rtp(len)) => self.forward_rtp(conn, &mut buf[..len], out),
            Ok(Received::Rtcp(len)) => self.route_rtcp(now, conn, &buf[..len], out),
            Err(callsec_rtc::Error::Srtp(callsec_srtp::Error::AuthenticationFailed)) => {
                self.metrics.srtp_auth_failures.inc();
            }
            Err(callsec_rtc::Error::Srtp(callsec_srtp::Error::Replayed)) => {
                self.metrics.srtp_replays.inc();
            }
            Err(_) => {
                self.metrics.dropped_invalid.inc();
            }
        }
        if kind == PacketKind::Stun {
            // Only checks add routes (media never does: nothing more per media packet).
            self.sync_routes(conn);
        }
        self.after_io(conn, out);
    }

    /// Sends what a participant queued and reacts to its events.
    fn after_io(&mut self, conn: ConnId, out: &mut impl Output) {
        let Some(p) = self.participants.get_mut(&conn) else {
            return;
        };
        while let Some(t) = p.rtc.poll_transmit() {
            out.send(t.destination, &t.payload);
        }
        let mut closed = None;
        let mut established = None;
        while let Some(e) = p.rtc.poll_event() {
            match e {
                Event::IceSelected(_) => {}
                Event::Connected { .. } => {
                    self.metrics.handshakes_completed.inc();
                    established = p.rtc.dtls_peer();
                }
                Event::Closed(reason) => closed = Some(reason),
            }
        }
        if let Some(addr) = established {
            self.established(conn, addr);
        }
        if let Some(reason) = closed {
            match &reason {
                CloseReason::DtlsFailed(_) | CloseReason::ConnectTimeout => {
                    self.metrics.handshakes_failed.inc();
                }
                _ => {}
            }
            if let Some(p) = self.participants.remove(&conn) {
                self.forget(&p);
            }
            self.signals.push(Signal::MediaClosed {
                conn,
                reason: format!("{reason:?}"),
            });
        }
    }

    fn forward_rtp(&mut self, from: ConnId, pkt: &mut [u8], out: &mut impl Output) {
        let Some(sender) = self.participants.get_mut(&from) else {
            return;
        };
        let Ok(mut view) = RtpView::new(pkt) else {
            return;
        };
        let ssrc = view.ssrc();
        let Some(publication) = sender.publications.get_mut(&ssrc) else {
            self.metrics.dropped_unknown.inc();
            return;
        };
        publication
            .stats
            .update(view.sequence_number(), view.header_len());
        let ext = &publication.ext;
        view.map_extension_ids(|id| {
            ext.get(id)
                .filter(|e| e.forwarded())
                .map(Extension::server_id)
        });
        let seq = view.sequence_number();
        let len = pkt.len();
        let room = &sender.room;
        let Some(r) = self.rooms.get(&**room) else {
            return;
        };
        self.targets.clear();
        self.targets
            .extend(r.members.iter().copied().filter(|c| *c != from));
        let mut sent = 0u64;
        for i in 0..self.targets.len() {
            let to = self.targets[i];
            let Some(rx) = self.participants.get_mut(&to) else {
                continue;
            };
            let Some(fwd) = rx.forwarding.get(&ssrc).copied() else {
                continue;
            };
            let Some(dest) = rx.rtc.destination() else {
                continue;
            };
            if !rx.rtc.is_connected() {
                continue;
            }
            // Video goes through the receiver's retransmission slot; audio through scratch.
            let buf: &mut [u8] = match (&mut rx.rtx, fwd.kind) {
                (Some(cache), Kind::Video) => {
                    let slot = &mut cache.slots[RtxCache::index(ssrc, seq)];
                    slot.len = 0;
                    slot.ssrc = ssrc;
                    slot.seq = seq;
                    &mut slot.data
                }
                _ => &mut self.scratch[..],
            };
            if len > buf.len() {
                continue;
            }
            buf[..len].copy_from_slice(pkt);
            buf[1] = (buf[1] & 0x80) | fwd.pt;
            if let Some(table) = &fwd.ext
                && let Ok(mut copy) = RtpView::new(&mut buf[..len])
            {
                copy.map_extension_ids(|id| table.get(usize::from(id)).copied());
            }
            match rx.rtc.protect_rtp(buf, len) {
                Ok(n) => {
                    out.send(dest, &buf[..n]);
                    sent += 1;
                    if let (Some(cache), Kind::Video) = (&mut rx.rtx, fwd.kind) {
                        cache.slots[RtxCache::index(ssrc, seq)].len = n as u16;
                    }
                }
                Err(_) => {
                    self.metrics.dropped_invalid.inc();
                }
            }
        }
        self.metrics.forwarded.inc_by(sent);
    }

    fn route_rtcp(&mut self, now: Instant, from: ConnId, compound: &[u8], out: &mut impl Output) {
        let Some(p) = self.participants.get(&from) else {
            return;
        };
        let room = p.room.clone();
        for (packet, bytes) in rtcp::packets(compound) {
            match packet {
                Packet::SenderReport { ssrc, ntp_mid } => {
                    let Some(p) = self.participants.get_mut(&from) else {
                        return;
                    };
                    let Some(pb) = p.publications.get_mut(&ssrc) else {
                        continue;
                    };
                    pb.stats.last_sr = Some((ntp_mid, now));
                    // Receivers get the publisher's SR for lip sync (RFC 3550 §6.4.1).
                    self.send_to_receivers(&room, from, ssrc, bytes, out);
                }
                Packet::Pli { media_ssrc } | Packet::Fir { media_ssrc } => {
                    self.request_keyframe(now, &room, media_ssrc, out);
                }
                Packet::Nack { media_ssrc, fci } => {
                    self.answer_nack(&room, from, media_ssrc, fci, out);
                }
                Packet::ReceiverReport { .. } | Packet::Other { .. } => {}
            }
        }
    }

    fn send_to_receivers(
        &mut self,
        room: &str,
        from: ConnId,
        ssrc: u32,
        bytes: &[u8],
        out: &mut impl Output,
    ) {
        let Some(r) = self.rooms.get(room) else {
            return;
        };
        for c in &r.members {
            if *c == from {
                continue;
            }
            let Some(rx) = self.participants.get_mut(c) else {
                continue;
            };
            if !rx.forwarding.contains_key(&ssrc) {
                continue;
            }
            send_rtcp(&mut rx.rtc, &mut self.scratch[..], bytes, out);
        }
    }

    fn request_keyframe(
        &mut self,
        now: Instant,
        room: &str,
        media_ssrc: u32,
        out: &mut impl Output,
    ) {
        let Some(&owner) = self.rooms.get(room).and_then(|r| r.owners.get(&media_ssrc)) else {
            return;
        };
        let Some(p) = self.participants.get_mut(&owner) else {
            return;
        };
        let Some(pb) = p.publications.get_mut(&media_ssrc) else {
            return;
        };
        if pb.last_pli.is_some_and(|t| now < t + PLI_INTERVAL) {
            return;
        }
        pb.last_pli = Some(now);
        let mut pli = [0u8; 12];
        if let Some(n) = rtcp::write_pli(&mut pli, SERVER_SSRC, media_ssrc) {
            send_rtcp(&mut p.rtc, &mut self.scratch[..], &pli[..n], out);
            self.metrics.keyframe_requests.inc();
        }
    }

    fn answer_nack(
        &mut self,
        room: &str,
        from: ConnId,
        media_ssrc: u32,
        fci: &[u8],
        out: &mut impl Output,
    ) {
        let mut missing = [0u16; 64];
        let mut n_missing = 0;
        if let Some(rx) = self.participants.get_mut(&from)
            && let Some(dest) = rx.rtc.destination()
        {
            for seq in Packet::nacked(fci) {
                match rx.rtx.as_ref().and_then(|c| c.get(media_ssrc, seq)) {
                    Some(bytes) => {
                        out.send(dest, bytes);
                        self.metrics.nacks_answered.inc();
                    }
                    None if n_missing < missing.len() => {
                        missing[n_missing] = seq;
                        n_missing += 1;
                    }
                    None => {}
                }
            }
        }
        if n_missing == 0 {
            return;
        }
        // Not cached: ask the publisher (its retransmission is forwarded like any packet).
        let Some(&owner) = self.rooms.get(room).and_then(|r| r.owners.get(&media_ssrc)) else {
            return;
        };
        let Some(p) = self.participants.get_mut(&owner) else {
            return;
        };
        let mut nack = [0u8; 80];
        if let Some(n) = rtcp::write_nack(&mut nack, SERVER_SSRC, media_ssrc, &missing[..n_missing])
        {
            send_rtcp(&mut p.rtc, &mut self.scratch[..], &nack[..n], out);
            self.metrics.nacks_forwarded.inc();
        }
    }

    /// Advances every participant's timers; sends reports and pending offers.
    pub fn handle_timeout(&mut self, now: Instant, out: &mut impl Output) {
        let conns: Vec<ConnId> = self.participants.keys().copied().collect();
        for conn in conns {
            let Some(p) = self.participants.get_mut(&conn) else {
                continue;
            };
            if p.rtc.poll_timeout().is_some_and(|t| t <= now) {
                p.rtc.handle_timeout(now);
            }
            if p.rtc.is_connected() && now >= p.next_report {
                p.next_report = now + REPORT_INTERVAL;
                self.send_reports(now, conn, out);
            }
            // Expiry removes routes.
            self.sync_routes(conn);
            self.after_io(conn, out);
            self.offer_if_needed(now, conn);
        }
    }

    /// RR for every stream a participant publishes, and REMB for its video.
    fn send_reports(&mut self, now: Instant, conn: ConnId, out: &mut impl Output) {
        let max_bitrate = self.config.max_bitrate;
        let Some(p) = self.participants.get_mut(&conn) else {
            return;
        };
        let mut blocks = [ReportBlock::default(); 8];
        let mut video = [0u32; 8];
        let (mut nb, mut nv) = (0, 0);
        let mut bytes = 0u64;
        let mut worst_loss = 0u8;
        for (&ssrc, pb) in p.publications.iter_mut() {
            if !pb.stats.started || nb == blocks.len() {
                continue;
            }
            blocks[nb] = pb.stats.report(ssrc, now);
            worst_loss = worst_loss.max(blocks[nb].fraction_lost);
            nb += 1;
            if pb.kind == Kind::Video && nv < video.len() {
                video[nv] = ssrc;
                nv += 1;
            }
            bytes += std::mem::take(&mut pb.stats.bytes_window);
        }
        if nb == 0 {
            return;
        }
        let mut buf = [0u8; 512];
        let Some(mut n) = rtcp::write_rr(&mut buf, SERVER_SSRC, &blocks[..nb]) else {
            return;
        };
        if nv > 0 {
            // Invite the publisher up while nothing is lost: a quarter more than the last
            // estimate each report, and at least half again what arrives (a sender that
            // uses less than it may, as encoders of still pictures do, is not held down by
            // its own rate). Hold under light loss (2-10 %), back off under heavier loss.
            // Bounded by the configured ceiling.
            let rate = bytes * 8 * 1000 / REPORT_INTERVAL.as_millis() as u64;
            let estimate = match worst_loss {
                0..5 => (p.remb * 5 / 4).max(rate * 3 / 2 + 500_000).max(1_000_000),
                5..26 => p.remb.max(rate),
                loss => rate * (512 - u64::from(loss)) / 512,
            };
            p.remb = estimate.min(max_bitrate);
            if let Some(m) = rtcp::write_remb(&mut buf[n..], SERVER_SSRC, p.remb, &video[..nv]) {
                n += m;
            }
        }
        send_rtcp(&mut p.rtc, &mut self.scratch[..], &buf[..n], out);
    }

    /// When to call [`Sfu::handle_timeout`] next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.participants
            .values()
            .flat_map(|p| {
                let report = p.rtc.is_connected().then_some(p.next_report);
                let offer = (p.wants_offer && !p.session.sections().is_empty()).then(|| {
                    p.offer_sent
                        .map_or(p.offer_not_before, |t| t + OFFER_TIMEOUT)
                        .max(p.offer_not_before)
                });
                [p.rtc.poll_timeout(), report, offer]
            })
            .flatten()
            .min()
    }
}

/// Drops `p`'s publications on the sections `mids` (they stopped sending) and their room
/// ownership. Whether any was dropped.
fn stop_publications(
    p: &mut Participant,
    mut owners: Option<&mut HashMap<u32, ConnId>>,
    mids: &[Mid],
) -> bool {
    let sections = p.session.sections();
    let before = p.publications.len();
    p.publications.retain(|ssrc, pb| {
        let stopped = sections
            .get(pb.track as usize)
            .is_some_and(|s| mids.contains(s.mid()));
        if stopped && let Some(owners) = owners.as_deref_mut() {
            owners.remove(ssrc);
        }
        !stopped
    });
    p.publications.len() != before
}

/// Protects `bytes` as SRTCP for `rtc` in `scratch` and sends it.
fn send_rtcp(rtc: &mut Rtc, scratch: &mut [u8], bytes: &[u8], out: &mut impl Output) {
    let Some(dest) = rtc.destination() else {
        return;
    };
    if bytes.len() + 64 > scratch.len() {
        return;
    }
    scratch[..bytes.len()].copy_from_slice(bytes);
    if let Ok(n) = rtc.protect_rtcp(scratch, bytes.len()) {
        out.send(dest, &scratch[..n]);
    }
}

/// An [`Output`] that drops everything.
pub struct NoOutput;

impl Output for NoOutput {
    fn send(&mut self, _: SocketAddr, _: &[u8]) {}
}
