//! One WebRTC participant's transport, sans-IO: the ICE-lite responder, the DTLS 1.2 server
//! connection, the two SRTP contexts, RTCP and the participant's SDP session.
//!
//! Datagrams and `Instant`s in; datagrams, events and deadlines out, as quinn-proto's
//! `Connection` or str0m's `Rtc`. The driver (the calls server, or a test on a virtual clock)
//! loops: [`Rtc::handle_datagram`] / [`Rtc::handle_timeout`], then [`Rtc::poll_transmit`] and
//! [`Rtc::poll_event`] until empty, then sleeps until [`Rtc::poll_timeout`].
//!
//! # Admission
//! DTLS and SRTP are accepted only from a 5-tuple that passed a valid ICE check with this
//! participant's credentials (RFC 8445 §7.3: MESSAGE-INTEGRITY with our password) and is
//! still validated. Anything else from anywhere else is dropped with [`Error::NotAdmitted`];
//! a STUN request with bad credentials gets no answer at all. One datagram from an unknown
//! source therefore costs at most one STUN reply, and only when it carries our password's MAC.
//!
//! The validated set is bounded ([`callsec_ice::candidates`], [`Config::ice`]): a few
//! addresses at once, new ones rate-limited, unnominated ones expiring after a fixed lifetime
//! even if DTLS or SRTP arrived on them, the selected one kept while consent holds and never
//! evicted. Its changes come out of [`Rtc::poll_route`] so a driver's 5-tuple route table holds
//! exactly the validated addresses.
//!
//! # Media path
//! [`Rtc::destination`] is an address the peer nominated *and* that authenticated: the DTLS
//! handshake completed on it, or an SRTP/SRTCP packet from it passed authentication. A
//! nominated check from a new address does not move media by itself (anyone holding the ICE
//! password can spoof one); media keeps going to the old address until the peer's own SRTP
//! or SRTCP arrives from the new one.
//!
//! # Media
//! [`Rtc::handle_datagram`] unprotects SRTP and SRTCP in place and returns the plaintext
//! length; [`Rtc::protect_rtp`] and [`Rtc::protect_rtcp`] protect in place for sending. No
//! allocation happens on these paths.
#![forbid(unsafe_code)]

pub mod client;
pub mod rtcp;
pub mod sdp;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use callsec_dtls::{CipherSuite, Connection, Fingerprint};
use callsec_ice::{Credentials, IceLite, PacketKind, classify, is_rtcp};
use callsec_srtp::{Context, ProtectionProfile};
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};

pub use callsec_ice::{Limits, RouteChange, local_ufrag};

/// Settings shared by every participant of a server.
#[derive(Debug, Clone)]
pub struct Config {
    /// The DTLS configuration (certificate, suites, SRTP profiles in preference order).
    pub dtls: Arc<callsec_dtls::Config>,
    /// SRTP context settings (replay window).
    pub srtp: callsec_srtp::Config,
    /// Time from creation to a connected DTLS session before the participant is closed.
    pub connect_timeout: Duration,
    /// Bounds on the addresses a participant may validate by ICE.
    pub ice: Limits,
}

impl Config {
    /// Defaults around a DTLS config: SRTP defaults, 30 s to connect.
    pub fn new(dtls: Arc<callsec_dtls::Config>) -> Self {
        Self {
            dtls,
            srtp: callsec_srtp::Config::default(),
            connect_timeout: Duration::from_secs(30),
            ice: Limits::default(),
        }
    }
}

/// Why something handed to an [`Rtc`] was refused. The participant stays usable.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// DTLS or SRTP from a 5-tuple that has not passed an ICE check.
    NotAdmitted,
    /// SRTP before the DTLS handshake produced keys.
    NotConnected,
    /// A STUN message that was refused.
    Stun(callsec_ice::Error),
    /// A DTLS record that was refused.
    Dtls(callsec_dtls::Error),
    /// An SRTP or SRTCP packet that was refused (malformed, replayed, not authentic).
    Srtp(callsec_srtp::Error),
    /// Not STUN, DTLS, RTP or RTCP (RFC 7983).
    Unknown,
    /// The participant is closed.
    Closed,
    /// The remote description lacks something (no fingerprint).
    Config(&'static str),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotAdmitted => f.write_str("source has not passed an ICE check"),
            Self::NotConnected => f.write_str("SRTP before DTLS completed"),
            Self::Stun(e) => write!(f, "stun: {e}"),
            Self::Dtls(e) => write!(f, "dtls: {e}"),
            Self::Srtp(e) => write!(f, "srtp: {e}"),
            Self::Unknown => f.write_str("unknown protocol"),
            Self::Closed => f.write_str("closed"),
            Self::Config(what) => write!(f, "config: {what}"),
        }
    }
}

impl std::error::Error for Error {}

/// Why a participant closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// Closed by the application ([`Rtc::close`]).
    Local,
    /// The peer sent close_notify.
    PeerClosed,
    /// The DTLS handshake or connection failed.
    DtlsFailed(callsec_dtls::Error),
    /// ICE consent expired (RFC 7675: no valid check from the selected address for 30 s),
    /// or the participant was connected without a media path (nothing nominated and
    /// authenticated) for [`Limits::lifetime`].
    ConsentExpired,
    /// Not connected within [`Config::connect_timeout`].
    ConnectTimeout,
}

/// What a participant reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Media goes to this address from now on (nominated and authenticated).
    IceSelected(SocketAddr),
    /// DTLS completed; SRTP is ready.
    Connected {
        /// The DTLS cipher suite.
        suite: CipherSuite,
        /// The SRTP protection profile.
        profile: ProtectionProfile,
    },
    /// The participant is closed; drop it.
    Closed(CloseReason),
}

/// A datagram to send (control plane: STUN and DTLS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Where to.
    pub destination: SocketAddr,
    /// The bytes.
    pub payload: Vec<u8>,
}

/// What [`Rtc::handle_datagram`] left in the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// Nothing for the application (STUN or DTLS, handled inside).
    Control,
    /// An RTP packet, unprotected in place: `buf[..len]`.
    Rtp(usize),
    /// A compound RTCP packet, unprotected in place: `buf[..len]`.
    Rtcp(usize),
}

struct Srtp {
    rx: Context,
    tx: Context,
}

/// One participant's transport.
pub struct Rtc {
    config: Arc<Config>,
    ice: IceLite,
    remote_fingerprints: Vec<Fingerprint>,
    dtls: Option<(SocketAddr, Connection)>,
    srtp: Option<Srtp>,
    connected: Option<(CipherSuite, ProtectionProfile)>,
    closed: bool,
    connect_deadline: Instant,
    /// Since when the connected participant has had no media path.
    unselected_since: Option<Instant>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    rng: ChaCha20Rng,
}

impl std::fmt::Debug for Rtc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rtc")
            .field("selected", &self.ice.selected())
            .field("connected", &self.connected)
            .field("closed", &self.closed)
            .finish_non_exhaustive()
    }
}

impl Rtc {
    /// A participant answering ICE checks made with `local` credentials. `seed` feeds its
    /// DTLS randomness (the server passes OS randomness; tests pass a fixed seed).
    pub fn new(config: Arc<Config>, local: Credentials, now: Instant, seed: [u8; 32]) -> Self {
        let connect_deadline = now + config.connect_timeout;
        let limits = config.ice;
        Self {
            config,
            ice: IceLite::with_limits(local, limits),
            remote_fingerprints: Vec::new(),
            dtls: None,
            srtp: None,
            connected: None,
            closed: false,
            connect_deadline,
            unselected_since: None,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            rng: ChaCha20Rng::from_seed(seed),
        }
    }

    /// Takes the participant's ICE ufrag and certificate fingerprints from its description.
    /// Until this is called, no check is answered and no DTLS is accepted.
    pub fn set_remote(&mut self, remote: &sdp::Remote) {
        self.ice.set_remote_ufrag(&remote.ice.ufrag);
        self.remote_fingerprints = remote.fingerprints.clone();
    }

    /// The address media goes to: nominated by the peer and authenticated (see the crate
    /// documentation). `None` until both happened.
    pub fn destination(&self) -> Option<SocketAddr> {
        self.ice.selected()
    }

    /// Whether `addr` is validated now (the driver's 5-tuple routing may point here).
    pub fn is_validated(&self, addr: SocketAddr) -> bool {
        self.ice.is_validated(addr)
    }

    /// The validated addresses.
    pub fn validated(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        self.ice.validated()
    }

    /// The address the DTLS association runs on, once a ClientHello arrived.
    pub fn dtls_peer(&self) -> Option<SocketAddr> {
        self.dtls.as_ref().map(|(a, _)| *a)
    }

    /// The next change of the validated set: a driver routing by 5-tuple adds and removes
    /// routes to this participant accordingly.
    #[must_use]
    pub fn poll_route(&mut self) -> Option<RouteChange> {
        self.ice.poll_route()
    }

    /// Drops `addr` from the validated set at the driver's request (another participant owns
    /// it); not reported by [`Rtc::poll_route`]. If media went there, it stops until an
    /// address is nominated and authenticated again.
    pub fn forget(&mut self, addr: SocketAddr) {
        self.ice.forget(addr);
    }

    /// Whether SRTP keys are in place.
    pub fn is_connected(&self) -> bool {
        self.srtp.is_some() && !self.closed
    }

    /// Whether a DTLS handshake began (a ClientHello arrived from a validated address).
    pub fn handshake_started(&self) -> bool {
        self.dtls.is_some()
    }

    /// Whether the participant closed.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// The negotiated DTLS suite and SRTP profile.
    pub fn negotiated(&self) -> Option<(CipherSuite, ProtectionProfile)> {
        self.connected
    }

    /// Handles one datagram from `from`. SRTP and SRTCP are unprotected in place in `buf`.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        from: SocketAddr,
        buf: &mut [u8],
    ) -> Result<Received, Error> {
        if self.closed {
            return Err(Error::Closed);
        }
        match classify(buf) {
            PacketKind::Stun => {
                if self.remote_fingerprints.is_empty() {
                    return Err(Error::Config("no remote description"));
                }
                let handled = self.ice.handle_datagram(now, from, buf);
                self.drain_ice();
                self.track_selection(now);
                handled.map(|_| Received::Control).map_err(Error::Stun)
            }
            PacketKind::Dtls => {
                if !self.ice.is_validated(from) {
                    return Err(Error::NotAdmitted);
                }
                if self.dtls.is_none() {
                    let conn = Connection::server(
                        self.config.dtls.clone(),
                        &self.remote_fingerprints,
                        from,
                        &mut self.rng,
                    )
                    .map_err(Error::Dtls)?;
                    self.dtls = Some((from, conn));
                }
                let Some((peer, conn)) = &mut self.dtls else {
                    return Err(Error::NotConnected);
                };
                if *peer != from {
                    // One DTLS association per participant, on the 5-tuple that began it.
                    return Err(Error::NotAdmitted);
                }
                let result = conn.handle_datagram(now, buf).map_err(Error::Dtls);
                self.drain_dtls();
                self.track_selection(now);
                result.map(|()| Received::Control)
            }
            PacketKind::Rtp => {
                if !self.ice.is_validated(from) {
                    return Err(Error::NotAdmitted);
                }
                let srtp = self.srtp.as_mut().ok_or(Error::NotConnected)?;
                let received = if is_rtcp(buf) {
                    srtp.rx.unprotect_rtcp(buf).map(Received::Rtcp)
                } else {
                    srtp.rx.unprotect_rtp(buf).map(Received::Rtp)
                }
                .map_err(Error::Srtp)?;
                // Authentic media from a validated address: the media path may move here
                // (one compare when it is already the destination).
                if self.ice.selected() != Some(from) {
                    self.ice.authenticate(from);
                    self.drain_ice();
                }
                Ok(received)
            }
            PacketKind::Other => Err(Error::Unknown),
        }
    }

    /// Protects an RTP packet `buf[..len]` in place for this participant; returns the
    /// protected length.
    pub fn protect_rtp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, Error> {
        let srtp = self.srtp.as_mut().ok_or(Error::NotConnected)?;
        srtp.tx.protect_rtp(buf, len).map_err(Error::Srtp)
    }

    /// Protects a compound RTCP packet `buf[..len]` in place for this participant.
    pub fn protect_rtcp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, Error> {
        let srtp = self.srtp.as_mut().ok_or(Error::NotConnected)?;
        srtp.tx.protect_rtcp(buf, len).map_err(Error::Srtp)
    }

    /// Advances timers: DTLS retransmission, ICE consent, the connect deadline.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.closed {
            return;
        }
        self.ice.handle_timeout(now);
        self.drain_ice();
        if self.closed {
            return;
        }
        self.track_selection(now);
        if let Some(deadline) = self.unselected_deadline()
            && now >= deadline
        {
            // Connected, but no media path for a whole candidate lifetime: the peer never
            // nominated an address it authenticated on (browsers nominate within the
            // handshake), or lost it. Without this, such a peer could keep re-validating
            // addresses for ever.
            self.close_with(CloseReason::ConsentExpired);
            return;
        }
        if let Some((_, conn)) = &mut self.dtls
            && conn.poll_timeout().is_some_and(|t| t <= now)
        {
            let _ = conn.handle_timeout(now);
            self.drain_dtls();
        }
        if self.connected.is_none() && now >= self.connect_deadline && !self.closed {
            self.close_with(CloseReason::ConnectTimeout);
        }
    }

    /// Sends close_notify (when connected) and closes.
    pub fn close(&mut self) {
        if !self.closed {
            self.close_with(CloseReason::Local);
        }
    }

    fn close_with(&mut self, reason: CloseReason) {
        if let Some((peer, conn)) = &mut self.dtls {
            conn.close();
            while let Some(d) = conn.poll_transmit() {
                self.transmits.push_back(Transmit {
                    destination: *peer,
                    payload: d,
                });
            }
        }
        self.closed = true;
        self.srtp = None;
        self.events.push_back(Event::Closed(reason));
    }

    /// The next datagram to send.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When to call [`Rtc::handle_timeout`] next.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.closed {
            return None;
        }
        let connect = self.connected.is_none().then_some(self.connect_deadline);
        [
            self.unselected_deadline(),
            self.ice.poll_timeout(),
            self.dtls.as_ref().and_then(|(_, c)| c.poll_timeout()),
            connect,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn track_selection(&mut self, now: Instant) {
        if self.connected.is_some() && self.ice.selected().is_none() {
            self.unselected_since.get_or_insert(now);
        } else {
            self.unselected_since = None;
        }
    }

    fn unselected_deadline(&self) -> Option<Instant> {
        let since = self.unselected_since?;
        (self.connected.is_some() && self.ice.selected().is_none())
            .then(|| since + self.config.ice.lifetime)
    }

    fn drain_ice(&mut self) {
        while let Some(t) = self.ice.poll_transmit() {
            self.transmits.push_back(Transmit {
                destination: t.destination,
                payload: t.payload,
            });
        }
        while let Some(e) = self.ice.poll_event() {
            match e {
                callsec_ice::Event::Selected(a) => self.events.push_back(Event::IceSelected(a)),
                callsec_ice::Event::ConsentExpired(_) => {
                    if !self.closed {
                        self.close_with(CloseReason::ConsentExpired);
                    }
                }
            }
        }
    }

    fn drain_dtls(&mut self) {
        let Some((peer, conn)) = &mut self.dtls else {
            return;
        };
        let peer = *peer;
        while let Some(d) = conn.poll_transmit() {
            self.transmits.push_back(Transmit {
                destination: peer,
                payload: d,
            });
        }
        let mut closed = None;
        while let Some(e) = conn.poll_event() {
            match e {
                callsec_dtls::Event::Connected(c) => {
                    let made =
                        Context::new(&c.srtp.remote, self.config.srtp.clone()).and_then(|rx| {
                            Ok((rx, Context::new(&c.srtp.local, self.config.srtp.clone())?))
                        });
                    match made {
                        Ok((rx, tx)) => {
                            // The handshake authenticated the peer on this address.
                            self.ice.authenticate(peer);
                            self.srtp = Some(Srtp { rx, tx });
                            self.connected = Some((c.cipher_suite, c.profile));
                            self.events.push_back(Event::Connected {
                                suite: c.cipher_suite,
                                profile: c.profile,
                            });
                        }
                        Err(_) => {
                            closed = Some(CloseReason::DtlsFailed(callsec_dtls::Error::Config(
                                "SRTP keys refused",
                            )));
                        }
                    }
                }
                callsec_dtls::Event::Closed { error } => {
                    closed = Some(match error {
                        None => CloseReason::PeerClosed,
                        Some(e) => CloseReason::DtlsFailed(e),
                    });
                }
                _ => {}
            }
        }
        // Connected may have selected the media path.
        self.drain_ice();
        if let Some(reason) = closed
            && !self.closed
        {
            self.closed = true;
            self.srtp = None;
            self.events.push_back(Event::Closed(reason));
        }
    }
}

/// Fresh random ICE credentials from `rng` (ufrag 8, password 24 characters of RFC 8839's
/// ice-char set).
pub fn random_credentials(rng: &mut impl RngCore) -> Credentials {
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut pick = |n: usize| -> String {
        (0..n)
            .map(|_| char::from(CHARS[(rng.next_u32() % 64) as usize]))
            .collect()
    };
    Credentials {
        ufrag: pick(8),
        pwd: pick(24),
    }
}
