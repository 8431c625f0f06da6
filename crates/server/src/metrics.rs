//! Prometheus metrics (`prometheus-client`), served at `/metrics`. Every counter a worker
//! touches per packet is a pre-resolved handle (an atomic), so the hot path takes no lock;
//! the forwarding-latency histogram is per worker and sampled.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use callsec_ice::{PacketKind, classify, is_rtcp};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// `kind` and `direction` of a packet counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PacketLabels {
    /// stun, dtls, rtp, rtcp, other (RFC 7983 first byte; RFC 5761 for RTCP).
    pub kind: &'static str,
    /// in or out.
    pub direction: &'static str,
}

/// The worker a gauge or histogram belongs to.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WorkerLabel {
    /// Worker index.
    pub worker: u32,
}

/// Every metric of the server, registered once.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Mutex<Registry>>,
    packets: Family<PacketLabels, Counter>,
    bytes: Family<PacketLabels, Counter>,
    participants: Family<WorkerLabel, Gauge>,
    rooms: Family<WorkerLabel, Gauge>,
    routes: Family<WorkerLabel, Gauge>,
    latency: Family<WorkerLabel, Histogram>,
    srtp_auth_failures: Counter,
    srtp_replays: Counter,
    handshakes_started: Counter,
    handshakes_completed: Counter,
    handshakes_failed: Counter,
    forwarded: Counter,
    dropped_unknown: Counter,
    dropped_invalid: Counter,
    keyframe_requests: Counter,
    nacks_answered: Counter,
    nacks_forwarded: Counter,
    send_errors: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric under the `callsec` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("callsec");
        let packets = Family::<PacketLabels, Counter>::default();
        let bytes = Family::<PacketLabels, Counter>::default();
        let participants = Family::<WorkerLabel, Gauge>::default();
        let rooms = Family::<WorkerLabel, Gauge>::default();
        let routes = Family::<WorkerLabel, Gauge>::default();
        let latency = Family::<WorkerLabel, Histogram>::new_with_constructor(|| {
            // 1 µs .. ~1 s, doubling.
            Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
                1e-6, 2.0, 20,
            ))
        });
        registry.register(
            "packets",
            "UDP datagrams by kind and direction",
            packets.clone(),
        );
        registry.register(
            "bytes",
            "UDP payload bytes by kind and direction",
            bytes.clone(),
        );
        registry.register(
            "participants",
            "Participants with media state",
            participants.clone(),
        );
        registry.register(
            "rooms",
            "Rooms with at least one participant",
            rooms.clone(),
        );
        registry.register(
            "media_routes",
            "Source addresses routed to participants (validated by ICE checks, not expired)",
            routes.clone(),
        );
        registry.register(
            "forwarding_latency_seconds",
            "Time from an SRTP packet's arrival to its last protected copy sent (sampled)",
            latency.clone(),
        );
        let counter = |registry: &mut Registry, name: &str, help: &str| {
            let c = Counter::default();
            registry.register(name, help, c.clone());
            c
        };
        let srtp_auth_failures = counter(
            &mut registry,
            "srtp_auth_failures",
            "SRTP/SRTCP packets that failed authentication",
        );
        let srtp_replays = counter(&mut registry, "srtp_replays", "SRTP/SRTCP replays dropped");
        let handshakes_started = counter(
            &mut registry,
            "dtls_handshakes_started",
            "DTLS handshakes started",
        );
        let handshakes_completed = counter(
            &mut registry,
            "dtls_handshakes_completed",
            "DTLS handshakes completed",
        );
        let handshakes_failed = counter(
            &mut registry,
            "dtls_handshakes_failed",
            "DTLS handshakes failed or timed out",
        );
        let forwarded = counter(
            &mut registry,
            "rtp_forwarded",
            "RTP packets protected and sent to a receiver",
        );
        let dropped_unknown = counter(
            &mut registry,
            "dropped_unknown_source",
            "Datagrams from no known participant (or for no known stream), dropped",
        );
        let dropped_invalid = counter(
            &mut registry,
            "dropped_invalid",
            "Datagrams refused by a participant's transport (not admitted, malformed)",
        );
        let keyframe_requests = counter(
            &mut registry,
            "keyframe_requests",
            "PLI sent to publishers on behalf of receivers",
        );
        let nacks_answered = counter(
            &mut registry,
            "nack_retransmissions",
            "Packets resent from the retransmission cache",
        );
        let nacks_forwarded = counter(
            &mut registry,
            "nacks_forwarded",
            "NACKs passed to publishers for packets not cached",
        );
        let send_errors = counter(
            &mut registry,
            "udp_send_errors",
            "Datagrams the socket refused (send buffer full): dropped by the server",
        );
        Self {
            registry: Arc::new(Mutex::new(registry)),
            packets,
            bytes,
            participants,
            rooms,
            routes,
            latency,
            srtp_auth_failures,
            srtp_replays,
            handshakes_started,
            handshakes_completed,
            handshakes_failed,
            forwarded,
            dropped_unknown,
            dropped_invalid,
            keyframe_requests,
            nacks_answered,
            nacks_forwarded,
            send_errors,
        }
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        out
    }

    /// Pre-resolved handles for worker `index`.
    pub fn worker(&self, index: u32) -> WorkerMetrics {
        let pair = |kind: &'static str, direction: &'static str| {
            let l = PacketLabels { kind, direction };
            (
                self.packets.get_or_create(&l).clone(),
                self.bytes.get_or_create(&l).clone(),
            )
        };
        let kinds = ["stun", "dtls", "rtp", "rtcp", "other"];
        let label = WorkerLabel { worker: index };
        WorkerMetrics {
            inbound: kinds.map(|k| pair(k, "in")),
            outbound: kinds.map(|k| pair(k, "out")),
            participants: self.participants.get_or_create(&label).clone(),
            rooms: self.rooms.get_or_create(&label).clone(),
            routes: self.routes.get_or_create(&label).clone(),
            latency: self.latency.get_or_create(&label).clone(),
            srtp_auth_failures: self.srtp_auth_failures.clone(),
            srtp_replays: self.srtp_replays.clone(),
            handshakes_started: self.handshakes_started.clone(),
            handshakes_completed: self.handshakes_completed.clone(),
            handshakes_failed: self.handshakes_failed.clone(),
            forwarded: self.forwarded.clone(),
            dropped_unknown: self.dropped_unknown.clone(),
            dropped_invalid: self.dropped_invalid.clone(),
            keyframe_requests: self.keyframe_requests.clone(),
            nacks_answered: self.nacks_answered.clone(),
            nacks_forwarded: self.nacks_forwarded.clone(),
            send_errors: self.send_errors.clone(),
            samples: Arc::new(AtomicU64::new(0)),
        }
    }
}

/// One worker's handles: atomics only.
#[derive(Clone)]
pub struct WorkerMetrics {
    inbound: [(Counter, Counter); 5],
    outbound: [(Counter, Counter); 5],
    /// Participants on this worker.
    pub participants: Gauge,
    /// Rooms on this worker.
    pub rooms: Gauge,
    /// Source addresses routed on this worker.
    pub routes: Gauge,
    latency: Histogram,
    /// SRTP authentication failures.
    pub srtp_auth_failures: Counter,
    /// SRTP replays.
    pub srtp_replays: Counter,
    /// DTLS handshakes started.
    pub handshakes_started: Counter,
    /// DTLS handshakes completed.
    pub handshakes_completed: Counter,
    /// DTLS handshakes failed.
    pub handshakes_failed: Counter,
    /// RTP packets forwarded.
    pub forwarded: Counter,
    /// Datagrams from unknown sources.
    pub dropped_unknown: Counter,
    /// Datagrams refused.
    pub dropped_invalid: Counter,
    /// PLIs sent to publishers.
    pub keyframe_requests: Counter,
    /// Retransmissions from the cache.
    pub nacks_answered: Counter,
    /// NACKs forwarded to publishers.
    pub nacks_forwarded: Counter,
    /// Sends the socket refused.
    pub send_errors: Counter,
    samples: Arc<AtomicU64>,
}

fn slot(datagram: &[u8]) -> usize {
    match classify(datagram) {
        PacketKind::Stun => 0,
        PacketKind::Dtls => 1,
        PacketKind::Rtp if is_rtcp(datagram) => 3,
        PacketKind::Rtp => 2,
        PacketKind::Other => 4,
    }
}

impl WorkerMetrics {
    /// Counts an inbound datagram.
    pub fn count_in(&self, datagram: &[u8]) {
        let (p, b) = &self.inbound[slot(datagram)];
        p.inc();
        b.inc_by(datagram.len() as u64);
    }

    /// Counts an outbound datagram.
    pub fn count_out(&self, datagram: &[u8]) {
        let (p, b) = &self.outbound[slot(datagram)];
        p.inc();
        b.inc_by(datagram.len() as u64);
    }

    /// Records, for one call in 16, the time since `arrival` (the histogram takes a
    /// per-worker lock; the clock is read only when sampled).
    pub fn sample_latency(&self, arrival: Instant) {
        if self
            .samples
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(16)
        {
            self.latency.observe(arrival.elapsed().as_secs_f64());
        }
    }
}
