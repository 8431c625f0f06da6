//! One DTLS 1.2 association, client or server, driven without I/O.
//!
//! Flights (RFC 6347 §4.2.4) of the full handshake callsec runs:
//!
//! ```text
//! Client                                   Server
//! ClientHello                  -------->                          Flight 1
//!                              <-------   HelloVerifyRequest      Flight 2 (stateless)
//! ClientHello (cookie)         -------->                          Flight 3
//!                                         ServerHello             \
//!                                         Certificate              \
//!                                         ServerKeyExchange         Flight 4
//!                                         CertificateRequest       /
//!                              <-------   ServerHelloDone         /
//! Certificate                                                     \
//! ClientKeyExchange                                                \
//! CertificateVerify                                                 Flight 5
//! [ChangeCipherSpec]                                               /
//! Finished                     -------->                          /
//!                                         [ChangeCipherSpec]      \ Flight 6
//!                              <-------   Finished                /
//! ```
//!
//! This module holds the public [`Connection`] and the handshake states (one type per step:
//! what is valid then, nothing optional; the server's cookie exchange lives in its first
//! state); `input` the record layer's dispatch and which message each state takes in which
//! epoch; `client` and `server` the steps of each role, `flight` our flights and their
//! retransmission, `keys` the transcript, ECDHE, master secret and key installation, `stall`
//! when a handshake that makes no progress ends early and why. The submodules take this
//! module's imports with `use super::*`.

mod client;
mod flight;
mod input;
mod keys;
mod server;
mod stall;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use callsec_srtp::{MasterKey, ProtectionProfile};
use rand_core::CryptoRngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use self::client::*;
use self::flight::*;
use self::input::Provisional;
use self::keys::*;
use self::server::*;
use self::stall::*;
use crate::cert::{Fingerprint, public_key_of};
use crate::codec::Reader;
use crate::config::{CipherSuite, Config, ExtendedMasterSecret};
use crate::cookie::{self, Verdict};
use crate::crypto::{EcdhKey, PeerKey, ecdh_public, ecdh_shared, verify_signature};
use crate::error::{AlertDescription, AlertLevel, Error};
use crate::fragment::{Inserted, MAX_AHEAD, Message, Reassembler};
use crate::handshake::{
    CertificateRequest, ClientHello, ECDSA_SECP256R1_SHA256, ECDSA_SIGN, Extensions, HS_HEADER_LEN,
    HandshakeType, HelloVerifyRequest, HsHeader, POINT_UNCOMPRESSED, SECP256R1, ServerHello,
    ServerKeyExchange, TLS_EMPTY_RENEGOTIATION_INFO_SCSV, read_certificate,
    read_client_key_exchange, read_digitally_signed, read_finished, transcript_bytes,
    write_certificate, write_client_key_exchange, write_digitally_signed,
};
use crate::prf::{self, MasterSecret};
use crate::record::{
    ContentType, DTLS10, DTLS12, HEADER_LEN, MAX_PLAINTEXT, MAX_SEQ, Record, RecordCipher,
    ReplayWindow,
};

/// Which end of the handshake this is (in WebRTC, `a=setup:active` is the client).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Sends the ClientHello.
    Client,
    /// Answers it.
    Server,
}

/// The SRTP master keys for both directions (RFC 5764 §4.2).
#[derive(Debug, Clone)]
pub struct SrtpKeys {
    /// The negotiated protection profile.
    pub profile: ProtectionProfile,
    /// Protects what this side sends.
    pub local: MasterKey,
    /// Unprotects what the peer sends.
    pub remote: MasterKey,
}

/// Everything the application learns when the handshake completes. The peer's certificate
/// fingerprint was already checked against the expected ones.
#[derive(Debug, Clone)]
pub struct Connected {
    /// The negotiated cipher suite.
    pub cipher_suite: CipherSuite,
    /// The negotiated SRTP profile.
    pub profile: ProtectionProfile,
    /// SRTP keys for both directions.
    pub srtp: SrtpKeys,
    /// The peer certificate's fingerprint (one of those expected).
    pub peer_fingerprint: Fingerprint,
    /// Whether the extended master secret (RFC 7627) is in use.
    pub extended_master_secret: bool,
}

/// What a connection reports to the application.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Event {
    /// The handshake completed.
    Connected(Box<Connected>),
    /// Application data from the peer.
    ApplicationData(Vec<u8>),
    /// The peer sent a warning alert (for example no_renegotiation).
    Alert {
        /// Always `Warning` here: fatal alerts close the connection.
        level: AlertLevel,
        /// The alert.
        description: AlertDescription,
    },
    /// The connection is closed: by close_notify (`error: None`), by a fatal alert either way,
    /// or by a handshake that could not complete. A handshake whose peer flights were refused
    /// (in plaintext) ends with the refusal, for example `Error::BadCertificate` when the
    /// peer's certificate does not match the expected fingerprint, and one that got a
    /// plaintext fatal alert with `Error::AlertReceived`: early, once the evidence covers
    /// several retransmission rounds (see [`Connection::last_discarded`]), or at the total
    /// timeout. `Error::Timeout` means no such reason was seen.
    Closed {
        /// Why, unless it was an orderly close.
        error: Option<Error>,
    },
}

/// Counters for what was dropped or resent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Records dropped: malformed, wrong version, unknown or future epoch, failed
    /// authentication, plaintext after the handshake, not allowed now.
    pub dropped_records: u64,
    /// Authenticated-epoch records dropped by the replay window.
    pub replayed_records: u64,
    /// Plaintext handshake messages discarded during the handshake because they did not
    /// parse or were refused, or were taken and then undone (a peer flight taken in
    /// plaintext is undone when the signature over it is refused, or has not come when our
    /// retransmission timer fires), and plaintext alerts ignored. Anyone who can spoof the
    /// peer's address can send these, so one of them never ends a handshake (see
    /// [`Connection::last_discarded`]).
    pub discarded_messages: u64,
    /// Plaintext handshake fragments that were buffered and then thrown away undelivered:
    /// replaced by a later fragment that conflicted with them (the latest wins), evicted to
    /// make room, or come before the first message of their flight (a flight's messages are
    /// only taken from the datagrams that carry its first message and those after).
    pub superseded_fragments: u64,
    /// Well-formed ChangeCipherSpec records, all ignored: the epoch in each record header
    /// says which keys protect it (the peer's own, in plaintext, count here too).
    pub ignored_change_cipher_specs: u64,
    /// Flights resent because the retransmission timer fired (RFC 6347 §4.2.4.1).
    pub retransmissions: u64,
    /// Flights resent because the peer repeated its previous flight (RFC 6347 §4.2.4).
    pub repeats_answered: u64,
    /// HelloVerifyRequests sent (server) or answered with a new ClientHello (client).
    pub hello_verify_requests: u64,
}

/// Most HelloVerifyRequests a client follows before it gives up.
const MAX_HELLO_VERIFY: u8 = 4;
/// Label of the DTLS-SRTP exporter (RFC 5764 §4.2).
const SRTP_EXPORTER_LABEL: &[u8] = b"EXTRACTOR-dtls_srtp";

/// A DTLS 1.2 connection. Feed it datagrams and timeouts; poll it for datagrams to send,
/// events and the next deadline.
pub struct Connection {
    role: Role,
    config: Arc<Config>,
    expected: Vec<Fingerprint>,
    state: State,
    write: [WriteEpoch; 2],
    write_epoch: u16,
    reassembler: Reassembler,
    next_send_seq: u16,
    flight: Vec<OutMsg>,
    retransmit_at: Option<Instant>,
    /// When we last resent our flight because the peer repeated its own.
    last_repeat_answer: Option<Instant>,
    rto: Duration,
    handshake_deadline: Option<Instant>,
    transmits: VecDeque<Vec<u8>>,
    events: VecDeque<Event>,
    iv_secret: Zeroizing<[u8; 32]>,
    /// Why the last plaintext handshake message was discarded.
    last_discarded: Option<Error>,
    /// Whether we sent a flight whose answer has not begun: the next peer message the
    /// handshake takes starts the peer's flight.
    awaiting_flight: bool,
    /// The peer flight taken so far in plaintext, until a signature authenticates it.
    provisional: Option<Box<Provisional>>,
    /// Evidence that the handshake will not complete.
    stall: Stall,
    stats: Stats,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("role", &self.role)
            .field("state", &self.state.name())
            .finish_non_exhaustive()
    }
}

/// The peer's epoch 1: held by the states whose keys are installed (epoch 0 has no
/// protection, and so no replay window: nothing in it can be authenticated, so nothing in it
/// may move a window, RFC 6347 §4.1.2.6). The cipher is shared, not copied, when a state is
/// kept to be restored (`handle_messages`): key schedules are never duplicated.
#[derive(Clone)]
struct ReadEpoch {
    cipher: Arc<RecordCipher>,
    window: ReplayWindow,
}

#[derive(Default)]
struct WriteEpoch {
    cipher: Option<RecordCipher>,
    next_seq: u64,
}

/// Hellos exchanged; the peer's Certificate is next.
#[derive(Clone)]
struct Negotiated {
    /// message_seq of the first message of the peer flight ours answers (its hello): a
    /// repeat of it makes us resend ours (RFC 6347 §4.2.4).
    peer_flight_start: u16,
    hs: Hs,
    ecdh: EcdhKey,
    suite: CipherSuite,
    profile: ProtectionProfile,
    ems: bool,
}

/// The peer's Certificate matched a fingerprint; the key exchange is next.
#[derive(Clone)]
struct Certified {
    n: Negotiated,
    peer_key: PeerKey,
    peer_fingerprint: Fingerprint,
}

/// Client: the server's signed ECDHE share arrived (ServerKeyExchange); its
/// CertificateRequest and ServerHelloDone are next.
#[derive(Clone)]
struct SignedShare {
    c: Certified,
    server_share: p256::PublicKey,
}

/// Keys derived and installed, the peer's Finished pending (either role). The peer's
/// signature key is no longer needed: the client checked it on the ServerKeyExchange, the
/// server on the CertificateVerify ([`ExpectCertificateVerify`]).
#[derive(Clone)]
struct Keyed {
    /// From here on the peer's epoch 1 can be read.
    read: ReadEpoch,
    /// As in [`Negotiated`]: the peer's hello flight, which our last flight answers.
    peer_flight_start: u16,
    hs: Hs,
    suite: CipherSuite,
    profile: ProtectionProfile,
    ems: bool,
    master: MasterSecret,
    peer_fingerprint: Fingerprint,
}

impl Keyed {
    /// The keyed state after `n`, once the key exchange gave `master` and the peer's epoch
    /// 1 can be read with `read`. The ECDHE key is dropped here: it has done its work.
    fn after(
        n: Negotiated,
        read: ReadEpoch,
        master: MasterSecret,
        peer_fingerprint: Fingerprint,
    ) -> Self {
        Self {
            read,
            peer_flight_start: n.peer_flight_start,
            hs: n.hs,
            suite: n.suite,
            profile: n.profile,
            ems: n.ems,
            master,
            peer_fingerprint,
        }
    }
}

/// Server: the ClientKeyExchange arrived (in the transcript); the client's
/// CertificateVerify, signed with the key of the certificate it sent, is next. The ECDHE
/// agreement and the keys wait for it: until its signature verifies, the ClientKeyExchange
/// may be a spoofer's, to be undone (`Connection::refused`) while our ECDHE key, which the
/// `ring` provider lets be used once, stays unused.
#[derive(Clone)]
struct ExpectCertificateVerify {
    c: Certified,
    client_share: p256::PublicKey,
}

/// Handshake complete: the peer's epoch 1 and what the exporter (RFC 5705) needs, nothing
/// else (what the application learns left in the `Connected` event).
#[derive(Clone)]
struct Established {
    read: ReadEpoch,
    /// Server: message_seq of the first message of the client's last flight, whose repeat
    /// means our final flight was lost and is resent (RFC 6347 §4.2.4). Client: none, its
    /// last flight has no answer of ours to resend.
    peer_flight_start: Option<u16>,
    /// When we last refused a renegotiation attempt.
    last_no_renegotiation: Option<Instant>,
    client_random: [u8; 32],
    server_random: [u8; 32],
    master: MasterSecret,
}

/// Each state holds what is valid then (rustls `ExpectServerHello` style).
#[derive(Clone)]
enum State {
    ClientHelloSent(Box<ClientStart>),
    ClientExpectCertificate(Box<Negotiated>),
    ClientExpectServerKeyExchange(Box<Certified>),
    /// WebRTC authenticates both ends (RFC 8827 §6.5): the server must ask for our
    /// certificate, so a ServerHelloDone here (trivial to forge) is not taken.
    ClientExpectCertificateRequest(Box<SignedShare>),
    ClientExpectServerHelloDone(Box<SignedShare>),
    ClientExpectFinished(Box<Keyed>),
    ServerExpectCookie(Box<ExpectCookie>),
    ServerExpectClientHello(Box<ServerStart>),
    ServerExpectCertificate(Box<Negotiated>),
    ServerExpectClientKeyExchange(Box<Certified>),
    ServerExpectCertificateVerify(Box<ExpectCertificateVerify>),
    ServerExpectFinished(Box<Keyed>),
    Connected(Box<Established>),
    Closed,
}

impl State {
    fn name(&self) -> &'static str {
        match self {
            Self::ClientHelloSent(_) => "ClientHelloSent",
            Self::ClientExpectCertificate(_) => "ClientExpectCertificate",
            Self::ClientExpectServerKeyExchange(_) => "ClientExpectServerKeyExchange",
            Self::ClientExpectCertificateRequest(_) => "ClientExpectCertificateRequest",
            Self::ClientExpectServerHelloDone(_) => "ClientExpectServerHelloDone",
            Self::ClientExpectFinished(_) => "ClientExpectFinished",
            Self::ServerExpectCookie(_) => "ServerExpectCookie",
            Self::ServerExpectClientHello(_) => "ServerExpectClientHello",
            Self::ServerExpectCertificate(_) => "ServerExpectCertificate",
            Self::ServerExpectClientKeyExchange(_) => "ServerExpectClientKeyExchange",
            Self::ServerExpectCertificateVerify(_) => "ServerExpectCertificateVerify",
            Self::ServerExpectFinished(_) => "ServerExpectFinished",
            Self::Connected(_) => "Connected",
            Self::Closed => "Closed",
        }
    }

    /// Whether the peer messages taken so far in this state (since the first message of the
    /// peer's current flight) are unauthenticated plaintext that a signature still to come
    /// covers: the client's ServerKeyExchange signs both randoms (RFC 8422 §5.4) with the
    /// certified key, the server's CertificateVerify the whole transcript (RFC 5246 §7.4.8).
    fn is_provisional(&self) -> bool {
        matches!(
            self,
            Self::ClientExpectCertificate(_)
                | Self::ClientExpectServerKeyExchange(_)
                | Self::ServerExpectClientKeyExchange(_)
                | Self::ServerExpectCertificateVerify(_)
        )
    }

    /// The peer's epoch 1, in the states that installed its keys.
    fn read_epoch(&mut self) -> Option<&mut ReadEpoch> {
        match self {
            Self::ClientExpectFinished(k) | Self::ServerExpectFinished(k) => Some(&mut k.read),
            Self::Connected(est) => Some(&mut est.read),
            _ => None,
        }
    }

    /// message_seq of the first message of the peer flight whose repeat makes us resend our
    /// current flight (RFC 6347 §4.2.4); none before the peer's hello, and at a client once
    /// connected.
    fn peer_flight_start(&self) -> Option<u16> {
        match self {
            Self::ClientExpectCertificate(n) | Self::ServerExpectCertificate(n) => {
                Some(n.peer_flight_start)
            }
            Self::ClientExpectServerKeyExchange(c) | Self::ServerExpectClientKeyExchange(c) => {
                Some(c.n.peer_flight_start)
            }
            Self::ClientExpectCertificateRequest(s) | Self::ClientExpectServerHelloDone(s) => {
                Some(s.c.n.peer_flight_start)
            }
            Self::ClientExpectFinished(k) | Self::ServerExpectFinished(k) => {
                Some(k.peer_flight_start)
            }
            Self::ServerExpectCertificateVerify(cv) => Some(cv.c.n.peer_flight_start),
            Self::Connected(est) => est.peer_flight_start,
            Self::ClientHelloSent(_)
            | Self::ServerExpectCookie(_)
            | Self::ServerExpectClientHello(_)
            | Self::Closed => None,
        }
    }

    /// Which epoch and message_seq range the next handshake message may come from: the
    /// hello that answers a ClientHello may carry the message_seq of any ClientHello sent;
    /// a server takes the first ClientHello at any message_seq (RFC 6347 §4.2.2); the
    /// Finished comes only in epoch 1, every other handshake message only in epoch 0.
    fn expects(&self, next: u16) -> Option<(u16, u16)> {
        match self {
            Self::ClientHelloSent(c) => Some((0, c.hello_seq.max(next))),
            Self::ServerExpectClientHello(_) => Some((0, next.saturating_add(MAX_AHEAD))),
            Self::ClientExpectFinished(_) | Self::ServerExpectFinished(_) => Some((1, next)),
            // The cookie's ClientHello is checked statelessly, never reassembled.
            Self::ServerExpectCookie(_) | Self::Connected(_) | Self::Closed => None,
            _ => Some((0, next)),
        }
    }
}

impl Connection {
    /// Starts a client: the first flight (ClientHello) is ready in `poll_transmit`.
    /// `expected` are the peer certificate fingerprints from SDP; the handshake fails with
    /// bad_certificate unless the server's certificate matches one of them.
    pub fn client(
        config: Arc<Config>,
        expected: &[Fingerprint],
        now: Instant,
        rng: &mut impl CryptoRngCore,
    ) -> Result<Self, Error> {
        let mut conn = Self::new(Role::Client, config, expected, rng)?;
        let mut client_random = [0u8; 32];
        rng.fill_bytes(&mut client_random);
        let ecdh = EcdhSeed::new(rng).key(conn.config.provider);
        let cfg = &conn.config;
        let hello = ClientHello {
            client_version: DTLS12,
            random: client_random,
            session_id: Vec::new(),
            cookie: Vec::new(),
            cipher_suites: cfg.cipher_suites.iter().map(|s| s.id()).collect(),
            compression_methods: vec![0],
            extensions: Extensions {
                supported_groups: Some(vec![SECP256R1]),
                point_formats: Some(vec![POINT_UNCOMPRESSED]),
                signature_algorithms: Some(vec![ECDSA_SECP256R1_SHA256]),
                use_srtp: Some((
                    cfg.srtp_profiles.iter().map(|p| p.id()).collect(),
                    Vec::new(),
                )),
                extended_master_secret: true,
                renegotiation_info: Some(Vec::new()),
                types: Vec::new(),
            },
        };
        let seq = conn.take_send_seq();
        conn.flight = vec![OutMsg::Handshake {
            msg_type: HandshakeType::CLIENT_HELLO,
            seq,
            epoch: 0,
            body: hello.write(),
        }];
        conn.state = State::ClientHelloSent(Box::new(ClientStart {
            hs: Hs {
                client_random,
                server_random: [0; 32],
                transcript: Vec::new(),
            },
            ecdh,
            hello,
            hello_seq: seq,
            hello_verifies: 0,
            cookies: vec![(seq, Vec::new())],
        }));
        conn.handshake_deadline = Some(now + conn.config.handshake_timeout);
        conn.send_flight(now, true);
        Ok(conn)
    }

    /// Starts a server for the client at `client_addr`; the stateless cookie (RFC 6347
    /// §4.2.1) is bound to that address. With [`Config::cookie_exchange`] on, until a
    /// ClientHello with a valid cookie arrives the server keeps no handshake state, answers
    /// ClientHellos with HelloVerifyRequests, and silently drops everything else.
    pub fn server(
        config: Arc<Config>,
        expected: &[Fingerprint],
        client_addr: SocketAddr,
        rng: &mut impl CryptoRngCore,
    ) -> Result<Self, Error> {
        let cookie = config.cookie_exchange;
        Self::server_start(config, expected, client_addr, cookie, rng)
    }

    /// Starts a server for a client whose ClientHello cookie a [`HelloVerifier`] already
    /// accepted ([`HelloCheck::Accept`]): no second cookie exchange. Feed it the accepted
    /// datagram first; the handshake timeout ([`Config::handshake_timeout`]) runs from then.
    ///
    /// [`HelloVerifier`]: crate::HelloVerifier
    /// [`HelloCheck::Accept`]: crate::HelloCheck::Accept
    pub fn server_verified(
        config: Arc<Config>,
        expected: &[Fingerprint],
        client_addr: SocketAddr,
        rng: &mut impl CryptoRngCore,
    ) -> Result<Self, Error> {
        Self::server_start(config, expected, client_addr, false, rng)
    }

    /// A server in its first state; `cookie`: whether it demands a cookie first.
    fn server_start(
        config: Arc<Config>,
        expected: &[Fingerprint],
        client_addr: SocketAddr,
        cookie: bool,
        rng: &mut impl CryptoRngCore,
    ) -> Result<Self, Error> {
        let mut conn = Self::new(Role::Server, config, expected, rng)?;
        // Drawn with or without a cookie exchange: what is drawn after it stays the same.
        let mut cookie_secret = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(&mut cookie_secret[..]);
        let mut server_random = [0u8; 32];
        rng.fill_bytes(&mut server_random);
        let ecdh = EcdhSeed::new(rng);
        let start = ServerStart {
            server_random,
            ecdh,
        };
        conn.state = if cookie {
            State::ServerExpectCookie(Box::new(ExpectCookie {
                start,
                client_addr,
                cookie_secret,
            }))
        } else {
            State::ServerExpectClientHello(Box::new(start))
        };
        Ok(conn)
    }

    fn new(
        role: Role,
        config: Arc<Config>,
        expected: &[Fingerprint],
        rng: &mut impl CryptoRngCore,
    ) -> Result<Self, Error> {
        config.validate()?;
        if expected.is_empty() {
            return Err(Error::Config("no expected peer fingerprint"));
        }
        let mut iv_secret = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(&mut iv_secret[..]);
        let rto = config.initial_retransmit_timeout;
        Ok(Self {
            role,
            config,
            expected: expected.to_vec(),
            state: State::Closed,
            write: Default::default(),
            write_epoch: 0,
            reassembler: Reassembler::default(),
            next_send_seq: 0,
            flight: Vec::new(),
            retransmit_at: None,
            last_repeat_answer: None,
            rto,
            handshake_deadline: None,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            iv_secret,
            last_discarded: None,
            awaiting_flight: false,
            provisional: None,
            stall: Stall::default(),
            stats: Stats::default(),
        })
    }

    /// This side's role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Whether the handshake completed and the connection is open.
    pub fn is_connected(&self) -> bool {
        matches!(self.state, State::Connected(_))
    }

    /// Whether the connection is closed (orderly, by a fatal alert or by timeout).
    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed)
    }

    /// Counters.
    pub fn stats(&self) -> Stats {
        Stats {
            superseded_fragments: self.reassembler.superseded(),
            ..self.stats
        }
    }

    /// Why the last plaintext handshake message was discarded during the handshake (it did
    /// not parse, came out of order, or was refused). One such message never ends a
    /// handshake, since anyone who can spoof the peer's address can send it. A peer that
    /// really is refused sends its refused flight at every retransmission: once refusals
    /// came in three distinct retransmission rounds with nothing new from the peer taken
    /// between them, the handshake fails with the refusal (and its alert goes to the peer).
    /// A plaintext fatal alert followed by silence ends it likewise, with
    /// `Error::AlertReceived`. The reasoning is in the `stall` module.
    pub fn last_discarded(&self) -> Option<&Error> {
        self.last_discarded.as_ref()
    }

    /// Why the handshake would fail if it ended now: the last refusal of a plaintext message
    /// or the last plaintext fatal alert since the peer's last new message. Reported in the
    /// `Closed` event (instead of `Error::Timeout`) if the handshake ends.
    pub fn failure_reason(&self) -> Option<&Error> {
        self.stall.reason()
    }

    /// Processes one received datagram (which may hold several records, RFC 6347 §4.1.1).
    /// Invalid records are dropped silently (RFC 6347 §4.1.2.7) and counted in
    /// [`Stats`]; a protocol violation fails the connection: a fatal alert is queued, a
    /// `Closed` event is emitted and the error is returned.
    pub fn handle_datagram(&mut self, now: Instant, datagram: &[u8]) -> Result<(), Error> {
        if self.is_closed() {
            return Err(Error::Closed);
        }
        self.reassembler.begin_datagram();
        self.stall.heard(now);
        if !self.check_cookie(datagram) {
            return Ok(());
        }
        if matches!(self.state, State::ServerExpectClientHello(_)) {
            // From here the server holds state: the total timeout runs from now, so a
            // ClientHello that never completes cannot keep it alive.
            self.handshake_deadline
                .get_or_insert(now + self.config.handshake_timeout);
        }
        let mut r = Reader::new(datagram);
        while r.remaining() > 0 {
            let Ok(rec) = Record::read(&mut r) else {
                self.stats.dropped_records += 1;
                break;
            };
            if let Err(e) = self.handle_record(now, &rec) {
                return Err(self.fail(e));
            }
            if self.is_closed() {
                break;
            }
        }
        Ok(())
    }

    /// Fires timers: retransmits the current flight (doubling the timeout up to its ceiling,
    /// RFC 6347 §4.2.4.1) or fails the handshake once its total timeout passed (with the
    /// reason seen, [`failure_reason`](Self::failure_reason), else `Error::Timeout`), or
    /// once a plaintext fatal alert was followed by silence for long enough (see the `stall`
    /// module). A peer flight taken in plaintext whose signature has not come by now is
    /// undone: the retransmission brings it again.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), Error> {
        if self.handshake_deadline.is_some_and(|d| now >= d) {
            let e = self.stall.reason().cloned().unwrap_or(Error::Timeout);
            return Err(self.fail(e));
        }
        if self.retransmit_at.is_some_and(|t| now >= t) {
            let quiet = self.config.initial_retransmit_timeout;
            if let Some(e) = self.stall.round_ended(now, quiet) {
                return Err(self.fail(e));
            }
            self.undo_provisional();
            self.stats.retransmissions += 1;
            self.rto = (self.rto * 2).min(self.config.max_retransmit_timeout);
            self.send_flight(now, false);
            self.retransmit_at = Some(now + self.rto);
        }
        Ok(())
    }

    /// The next datagram to send.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.transmits.pop_front()
    }

    /// The next event.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When to call [`handle_timeout`](Self::handle_timeout) next.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        match (self.retransmit_at, self.handshake_deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Sends application data as one record in one datagram (at most 2^14 bytes). Keep it
    /// under the path MTU less the record overhead (13-byte header plus 24 bytes for GCM, at
    /// most 52 for CBC): DTLS does not fragment application data (RFC 6347 §4.1.1).
    pub fn send(&mut self, data: &[u8]) -> Result<(), Error> {
        if !self.is_connected() {
            return Err(if self.is_closed() {
                Error::Closed
            } else {
                Error::NotConnected
            });
        }
        if data.len() > MAX_PLAINTEXT {
            return Err(Error::Config("application data longer than 2^14 bytes"));
        }
        let mut out = Vec::new();
        self.put_record(&mut out, ContentType::APPLICATION_DATA, 1, data)?;
        self.transmits.push_back(out);
        Ok(())
    }

    /// Closes the connection with close_notify (RFC 5246 §7.2.1).
    pub fn close(&mut self) {
        if self.is_closed() {
            return;
        }
        self.send_alert(AlertLevel::Warning, AlertDescription::CLOSE_NOTIFY);
        self.shut(None);
    }

    /// RFC 5705 keying-material exporter, after the handshake. `context` `None` is "no
    /// context" (as DTLS-SRTP uses), distinct from an empty one.
    pub fn export_keying_material(
        &self,
        label: &[u8],
        context: Option<&[u8]>,
        out: &mut [u8],
    ) -> Result<(), Error> {
        let State::Connected(est) = &self.state else {
            return Err(Error::NotConnected);
        };
        // RFC 5705 §4: labels must not collide with those of RFC 5246.
        const RESERVED: [&[u8]; 5] = [
            b"client finished",
            b"server finished",
            b"master secret",
            b"key expansion",
            b"extended master secret",
        ];
        if RESERVED.contains(&label) {
            return Err(Error::Config("reserved exporter label"));
        }
        if context.is_some_and(|c| c.len() > usize::from(u16::MAX)) {
            return Err(Error::Config("exporter context too long"));
        }
        prf::export(
            &est.master,
            &est.client_random,
            &est.server_random,
            label,
            context,
            out,
        );
        Ok(())
    }

    // ---------------------------------------------------------------- handshake ------------

    /// Hands `msg` to the step of the current state, which consumes the state and returns the
    /// next. Meanwhile the state is `Closed`; if the step fails it stays so, and the caller
    /// either restores the state (a refused plaintext message) or fails the connection.
    fn handle_message(&mut self, now: Instant, msg: Message, record_seq: u64) -> Result<(), Error> {
        // The epoch is right by construction: `State::expects` chose it.
        let state = std::mem::replace(&mut self.state, State::Closed);
        let next = match (state, msg.msg_type) {
            (State::ClientHelloSent(c), HandshakeType::HELLO_VERIFY_REQUEST) => {
                self.client_hello_verify(now, c, &msg)?
            }
            (State::ClientHelloSent(c), HandshakeType::SERVER_HELLO) => {
                self.client_server_hello(c, &msg)?
            }
            (State::ClientExpectCertificate(n), HandshakeType::CERTIFICATE) => {
                State::ClientExpectServerKeyExchange(self.peer_certificate(*n, &msg)?)
            }
            (State::ClientExpectServerKeyExchange(n), HandshakeType::SERVER_KEY_EXCHANGE) => {
                State::ClientExpectCertificateRequest(client_server_key_exchange(n, &msg)?)
            }
            (State::ClientExpectCertificateRequest(mut n), HandshakeType::CERTIFICATE_REQUEST) => {
                let cr = CertificateRequest::read(&msg.body)?;
                if !cr.certificate_types.contains(&ECDSA_SIGN)
                    || !cr.signature_algorithms.contains(&ECDSA_SECP256R1_SHA256)
                {
                    return Err(Error::PeerIncompatible(
                        "CertificateRequest without ecdsa/P-256/SHA-256",
                    ));
                }
                n.c.n.hs.add(msg.msg_type, msg.seq, &msg.body);
                State::ClientExpectServerHelloDone(n)
            }
            (State::ClientExpectServerHelloDone(n), HandshakeType::SERVER_HELLO_DONE) => {
                self.client_flight5(now, n, &msg)?
            }
            (State::ClientExpectFinished(k), HandshakeType::FINISHED) => {
                self.client_finished(k, &msg)?
            }
            (State::ServerExpectClientHello(s), HandshakeType::CLIENT_HELLO) => {
                self.server_client_hello(now, *s, &msg, record_seq)?
            }
            (State::ServerExpectCertificate(n), HandshakeType::CERTIFICATE) => {
                State::ServerExpectClientKeyExchange(self.peer_certificate(*n, &msg)?)
            }
            (State::ServerExpectClientKeyExchange(n), HandshakeType::CLIENT_KEY_EXCHANGE) => {
                self.server_client_key_exchange(n, &msg)?
            }
            (State::ServerExpectCertificateVerify(cv), HandshakeType::CERTIFICATE_VERIFY) => {
                self.server_certificate_verify(cv, &msg)?
            }
            (State::ServerExpectFinished(k), HandshakeType::FINISHED) => {
                self.server_finished(now, k, &msg)?
            }
            (_, _) => return Err(Error::UnexpectedMessage("handshake message out of order")),
        };
        self.state = next;
        Ok(())
    }

    /// Certificate from either side: the fingerprint is checked here, before any key is
    /// derived (RFC 8122 §5, RFC 8827 §6.5).
    fn peer_certificate(&self, mut n: Negotiated, msg: &Message) -> Result<Box<Certified>, Error> {
        let chain = read_certificate(&msg.body)?;
        let Some(leaf) = chain.first() else {
            return Err(match self.role {
                // RFC 5246 §7.4.6: a server that requires client authentication fails.
                Role::Server => Error::PeerIncompatible("client sent no certificate"),
                Role::Client => Error::BadCertificate("server sent no certificate"),
            });
        };
        let fp = Fingerprint::of_der(leaf);
        if !self
            .expected
            .iter()
            .any(|e| bool::from(e.as_bytes().ct_eq(fp.as_bytes())))
        {
            return Err(Error::BadCertificate("fingerprint mismatch"));
        }
        let key = PeerKey::new(public_key_of(leaf)?, self.config.provider);
        n.hs.add(msg.msg_type, msg.seq, &msg.body);
        Ok(Box::new(Certified {
            n,
            peer_key: key,
            peer_fingerprint: fp,
        }))
    }

    // ---------------------------------------------------------------- output ---------------

    /// Fails the connection: fatal alert out (when the error has one), `Closed` event. Called
    /// once, with the error that ends it: nothing returns an error after `shut` (an open
    /// connection's input only fails before it closes, a closed one refuses input up
    /// front), so `is_closed` is not asked here; it could not tell a connection already shut
    /// from one whose failed step left the state `Closed` (`handle_message`).
    fn fail(&mut self, e: Error) -> Error {
        if let Some(desc) = e.alert() {
            self.send_alert(AlertLevel::Fatal, desc);
        }
        self.shut(Some(e.clone()));
        e
    }

    /// Closes for good: `Closed` state, no timers, no flight, `Closed` event.
    fn shut(&mut self, error: Option<Error>) {
        self.state = State::Closed;
        self.retransmit_at = None;
        self.handshake_deadline = None;
        self.flight.clear();
        self.events.push_back(Event::Closed { error });
    }
}

#[cfg(test)]
mod tests;
