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

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use callsec_srtp::{MasterKey, ProtectionProfile};
use rand_core::CryptoRngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

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
    /// or by a handshake timeout.
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
    /// parse or were refused, and plaintext alerts ignored. Anyone who can spoof the peer's
    /// address can send these, so they never end a handshake (see
    /// [`Connection::last_discarded`]).
    pub discarded_messages: u64,
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
    /// Server: the client's transport address, which the cookie is bound to.
    client_addr: Option<SocketAddr>,
    state: State,
    /// Epoch 1 (epoch 0 has no protection, and so no replay window: nothing in it can be
    /// authenticated, so nothing in it may move a window, RFC 6347 §4.1.2.6).
    read: Option<ReadEpoch>,
    write: [WriteEpoch; 2],
    write_epoch: u16,
    reassembler: Reassembler,
    next_send_seq: u16,
    flight: Vec<OutMsg>,
    /// message_seq of the first message of the peer flight ours answers: a repeat of it makes
    /// us resend ours (RFC 6347 §4.2.4).
    peer_flight_start: Option<u16>,
    retransmit_at: Option<Instant>,
    /// When we last resent our flight because the peer repeated its own.
    last_repeat_answer: Option<Instant>,
    /// When we last refused a renegotiation attempt.
    last_no_renegotiation: Option<Instant>,
    rto: Duration,
    handshake_deadline: Option<Instant>,
    transmits: VecDeque<Vec<u8>>,
    events: VecDeque<Event>,
    iv_secret: Zeroizing<[u8; 32]>,
    cookie_secret: Zeroizing<[u8; 32]>,
    /// Server: whether a ClientHello with our cookie is still to come (config, unless a
    /// [`HelloVerifier`](crate::HelloVerifier) checked it already). Until then the server
    /// is stateless: it answers ClientHellos with HelloVerifyRequests and drops the rest.
    verify_cookie: bool,
    /// Why the last plaintext handshake message was discarded.
    last_discarded: Option<Error>,
    stats: Stats,
    /// Set once the connection is closed for good (the state is also briefly `Closed` while
    /// a handler owns it).
    terminated: bool,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("role", &self.role)
            .field("state", &self.state.name())
            .finish_non_exhaustive()
    }
}

struct ReadEpoch {
    cipher: RecordCipher,
    window: ReplayWindow,
}

#[derive(Default)]
struct WriteEpoch {
    cipher: Option<RecordCipher>,
    next_seq: u64,
}

#[derive(Clone)]
enum OutMsg {
    Handshake {
        msg_type: HandshakeType,
        seq: u16,
        epoch: u16,
        body: Vec<u8>,
    },
    ChangeCipherSpec,
}

/// The randoms and the transcript (RFC 6347 §4.2.6: every message as one fragment, without
/// the first ClientHello and the HelloVerifyRequest).
#[derive(Clone)]
struct Hs {
    client_random: [u8; 32],
    server_random: [u8; 32],
    transcript: Vec<u8>,
}

impl Hs {
    fn add(&mut self, msg_type: HandshakeType, seq: u16, body: &[u8]) {
        transcript_bytes(&mut self.transcript, msg_type, seq, body);
    }

    fn hash(&self) -> [u8; 32] {
        Sha256::digest(&self.transcript).into()
    }

    /// What the ServerKeyExchange signature covers (RFC 8422 §5.4): client_random +
    /// server_random + ServerECDHParams.
    fn server_params_signed(&self, params: &[u8]) -> Vec<u8> {
        [&self.client_random[..], &self.server_random, params].concat()
    }
}

/// 32 random bytes an ECDHE key is made from when it is needed: a server derives its key only
/// once a ClientHello with a valid cookie arrives, so spoofed hellos cost no scalar
/// multiplication (RFC 6347 §4.2.1).
#[derive(Clone)]
struct EcdhSeed(Zeroizing<[u8; 32]>);

impl EcdhSeed {
    fn new(rng: &mut impl CryptoRngCore) -> Self {
        let mut b = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(&mut b[..]);
        Self(b)
    }

    /// The ECDHE key of `provider` (RustCrypto makes it from these bytes; `ring` from the
    /// OS RNG, see `crypto::EcdhKey`).
    fn key(&self, provider: crate::Provider) -> EcdhKey {
        EcdhKey::generate(provider, &self.0)
    }
}

/// Client, before the ServerHello.
#[derive(Clone)]
struct ClientStart {
    hs: Hs,
    ecdh: EcdhKey,
    hello: ClientHello,
    hello_seq: u16,
    hello_verifies: u8,
}

/// Server, before a ClientHello with a valid cookie.
#[derive(Clone)]
struct ServerStart {
    server_random: [u8; 32],
    ecdh: EcdhSeed,
}

/// Between the hellos and the key exchange.
#[derive(Clone)]
struct Negotiated {
    hs: Hs,
    ecdh: EcdhKey,
    suite: CipherSuite,
    profile: ProtectionProfile,
    ems: bool,
    /// The peer's certificate key and fingerprint, once its Certificate arrived.
    peer: Option<(PeerKey, Fingerprint)>,
    /// Client: the server's ECDHE share from ServerKeyExchange.
    server_share: Option<p256::PublicKey>,
}

/// Keys derived, Finished pending.
#[derive(Clone)]
struct Keyed {
    hs: Hs,
    suite: CipherSuite,
    profile: ProtectionProfile,
    ems: bool,
    master: MasterSecret,
    peer_key: PeerKey,
    peer_fingerprint: Fingerprint,
}

/// Handshake complete.
#[derive(Clone)]
struct Established {
    client_random: [u8; 32],
    server_random: [u8; 32],
    master: MasterSecret,
    suite: CipherSuite,
    profile: ProtectionProfile,
    peer_fingerprint: Fingerprint,
    ems: bool,
}

/// Each state holds what is valid then (rustls `ExpectServerHello` style).
#[derive(Clone)]
enum State {
    ClientHelloSent(Box<ClientStart>),
    ClientExpectCertificate(Box<Negotiated>),
    ClientExpectServerKeyExchange(Box<Negotiated>),
    /// WebRTC authenticates both ends (RFC 8827 §6.5): the server must ask for our
    /// certificate, so a ServerHelloDone here (trivial to forge) is not taken.
    ClientExpectCertificateRequest(Box<Negotiated>),
    ClientExpectServerHelloDone(Box<Negotiated>),
    ClientExpectFinished(Box<Keyed>),
    ServerExpectClientHello(Box<ServerStart>),
    ServerExpectCertificate(Box<Negotiated>),
    ServerExpectClientKeyExchange(Box<Negotiated>),
    ServerExpectCertificateVerify(Box<Keyed>),
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
            Self::ServerExpectClientHello(_) => "ServerExpectClientHello",
            Self::ServerExpectCertificate(_) => "ServerExpectCertificate",
            Self::ServerExpectClientKeyExchange(_) => "ServerExpectClientKeyExchange",
            Self::ServerExpectCertificateVerify(_) => "ServerExpectCertificateVerify",
            Self::ServerExpectFinished(_) => "ServerExpectFinished",
            Self::Connected(_) => "Connected",
            Self::Closed => "Closed",
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
            Self::Connected(_) | Self::Closed => None,
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
        let mut conn = Self::new(Role::Client, config, expected, None, rng)?;
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
        let mut conn = Self::new(Role::Server, config, expected, Some(client_addr), rng)?;
        let mut server_random = [0u8; 32];
        rng.fill_bytes(&mut server_random);
        let ecdh = EcdhSeed::new(rng);
        conn.state = State::ServerExpectClientHello(Box::new(ServerStart {
            server_random,
            ecdh,
        }));
        Ok(conn)
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
        let mut conn = Self::server(config, expected, client_addr, rng)?;
        conn.verify_cookie = false;
        Ok(conn)
    }

    fn new(
        role: Role,
        config: Arc<Config>,
        expected: &[Fingerprint],
        client_addr: Option<SocketAddr>,
        rng: &mut impl CryptoRngCore,
    ) -> Result<Self, Error> {
        config.validate()?;
        if expected.is_empty() {
            return Err(Error::Config("no expected peer fingerprint"));
        }
        let mut iv_secret = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(&mut iv_secret[..]);
        let mut cookie_secret = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(&mut cookie_secret[..]);
        let rto = config.initial_retransmit_timeout;
        let verify_cookie = role == Role::Server && config.cookie_exchange;
        Ok(Self {
            role,
            config,
            expected: expected.to_vec(),
            client_addr,
            state: State::Closed,
            read: None,
            write: Default::default(),
            write_epoch: 0,
            reassembler: Reassembler::default(),
            next_send_seq: 0,
            flight: Vec::new(),
            peer_flight_start: None,
            retransmit_at: None,
            last_repeat_answer: None,
            last_no_renegotiation: None,
            rto,
            handshake_deadline: None,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            iv_secret,
            verify_cookie,
            cookie_secret,
            last_discarded: None,
            stats: Stats::default(),
            terminated: false,
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
        self.terminated
    }

    /// Counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Why the last plaintext handshake message was discarded during the handshake (it did
    /// not parse, came out of order, or was refused). Such messages never end a handshake,
    /// since anyone who can spoof the peer's address can send them: a peer that really is
    /// incompatible shows up as a handshake timeout, with this as the likely reason.
    pub fn last_discarded(&self) -> Option<&Error> {
        self.last_discarded.as_ref()
    }

    /// Processes one received datagram (which may hold several records, RFC 6347 §4.1.1).
    /// Invalid records are dropped silently (RFC 6347 §4.1.2.7) and counted in
    /// [`Stats`]; a protocol violation fails the connection: a fatal alert is queued, a
    /// `Closed` event is emitted and the error is returned.
    pub fn handle_datagram(&mut self, now: Instant, datagram: &[u8]) -> Result<(), Error> {
        if self.is_closed() {
            return Err(Error::Closed);
        }
        if matches!(self.state, State::ServerExpectClientHello(_)) {
            if self.verify_cookie && !self.check_cookie(datagram) {
                return Ok(());
            }
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
    /// RFC 6347 §4.2.4.1) or fails the handshake once its total timeout passed.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), Error> {
        if self.handshake_deadline.is_some_and(|d| now >= d) {
            return Err(self.fail(Error::Timeout));
        }
        if self.retransmit_at.is_some_and(|t| now >= t) {
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

    // ---------------------------------------------------------------- record layer ---------

    /// RFC 6347 §4.2.1, before the server keeps any state: a ClientHello (first fragment,
    /// first record) with our cookie ends the stateless phase; another ClientHello gets a
    /// HelloVerifyRequest; anything else is dropped. Returns whether the datagram is to be
    /// processed.
    fn check_cookie(&mut self, datagram: &[u8]) -> bool {
        let Some(addr) = self.client_addr else {
            return false;
        };
        match cookie::verify(&self.cookie_secret, None, addr, datagram) {
            Verdict::Accept { msg_seq } => {
                self.verify_cookie = false;
                self.reassembler.resync(msg_seq);
                true
            }
            Verdict::Reply(hvr) => {
                self.transmits.push_back(hvr);
                self.stats.hello_verify_requests += 1;
                false
            }
            Verdict::Drop => {
                self.stats.dropped_records += 1;
                false
            }
        }
    }

    fn handle_record(&mut self, now: Instant, rec: &Record<'_>) -> Result<(), Error> {
        // RFC 6347 §4.1: version FEFD, or FEFF in a first ClientHello.
        if rec.version != DTLS12 && rec.version != DTLS10 {
            self.stats.dropped_records += 1;
            return Ok(());
        }
        let plaintext = match (rec.epoch, &mut self.read) {
            (0, _) => {
                if rec.fragment.len() > MAX_PLAINTEXT {
                    self.stats.dropped_records += 1;
                    return Ok(());
                }
                rec.fragment.to_vec()
            }
            (1, Some(read)) => {
                if !read.window.check(rec.seq) {
                    self.stats.replayed_records += 1;
                    return Ok(());
                }
                // RFC 5246 §6.2.3: a plaintext over 2^14 bytes is record_overflow; in DTLS
                // the record is dropped like any other invalid one.
                match read.cipher.open(rec) {
                    Ok(p) if p.len() <= MAX_PLAINTEXT => {
                        // RFC 6347 §4.1.2.6: the window moves only for records that
                        // authenticated.
                        read.window.update(rec.seq);
                        p
                    }
                    _ => {
                        self.stats.dropped_records += 1;
                        return Ok(());
                    }
                }
            }
            // A future epoch (RFC 6347 §4.1: may be discarded) or one that never exists.
            _ => {
                self.stats.dropped_records += 1;
                return Ok(());
            }
        };
        let authenticated = rec.epoch == 1;
        let connected = self.is_connected();
        match rec.content_type {
            ContentType::HANDSHAKE => {
                self.handle_handshake_record(now, rec.epoch, rec.seq, &plaintext)
            }
            // RFC 5246 §7.1: one byte, value 1. The epoch in each record header says which
            // keys protect it, so a ChangeCipherSpec carries no information callsec needs:
            // it may be lost or reordered (RFC 6347 §4.1) and, in plaintext, forged. It is
            // only checked when authenticated and premature. Zero-length and other malformed
            // ones are dropped (RFC 6347 §4.1.2.7).
            ContentType::CHANGE_CIPHER_SPEC => {
                if plaintext != [1] {
                    self.stats.dropped_records += 1;
                } else if authenticated && !connected {
                    return Err(Error::UnexpectedMessage("ChangeCipherSpec in epoch 1"));
                }
                Ok(())
            }
            // Plaintext alerts are never acted on: anyone who can spoof the peer's address
            // could end a handshake or an association with one. Zero-length alerts are
            // dropped as malformed records.
            ContentType::ALERT => {
                if plaintext.is_empty() {
                    self.stats.dropped_records += 1;
                    Ok(())
                } else if !authenticated {
                    self.stats.discarded_messages += 1;
                    Ok(())
                } else {
                    self.handle_alert(&plaintext)
                }
            }
            ContentType::APPLICATION_DATA => {
                if connected && authenticated {
                    self.events.push_back(Event::ApplicationData(plaintext));
                } else {
                    // Plaintext or premature application data (RFC 6347 §4.1: dropped).
                    self.stats.dropped_records += 1;
                }
                Ok(())
            }
            _ => {
                self.stats.dropped_records += 1;
                Ok(())
            }
        }
    }

    fn handle_alert(&mut self, body: &[u8]) -> Result<(), Error> {
        let [level, desc] = body else {
            return Err(Error::Decode("alert"));
        };
        let description = AlertDescription(*desc);
        if description == AlertDescription::CLOSE_NOTIFY {
            // RFC 5246 §7.2.1: answer with close_notify and close.
            self.send_alert(AlertLevel::Warning, AlertDescription::CLOSE_NOTIFY);
            self.shut(None);
            return Ok(());
        }
        match level {
            1 => {
                self.events.push_back(Event::Alert {
                    level: AlertLevel::Warning,
                    description,
                });
                Ok(())
            }
            _ => {
                let e = Error::AlertReceived(description);
                self.shut(Some(e.clone()));
                Err(e)
            }
        }
    }

    fn handle_handshake_record(
        &mut self,
        now: Instant,
        epoch: u16,
        record_seq: u64,
        body: &[u8],
    ) -> Result<(), Error> {
        if self.is_connected() {
            return self.handle_post_handshake_record(now, epoch, body);
        }
        // Trusted fragments are those whose sender is known: authenticated ones, and a
        // ClientHello at a server that demands no cookie from this address (the caller
        // vouched for it). Only for them is a malformed fragment a protocol error.
        let trusted = epoch == 1 || matches!(self.state, State::ServerExpectClientHello(_));
        let mut r = Reader::new(body);
        let mut resend = false;
        while r.remaining() > 0 {
            let (h, frag) = match HsHeader::read(&mut r) {
                Ok(x) => x,
                Err(e) if trusted => return Err(e),
                Err(_) => {
                    self.stats.dropped_records += 1;
                    break;
                }
            };
            match self.reassembler.insert(&h, epoch, frag, trusted)? {
                Inserted::Old => {
                    // RFC 6347 §4.2.4: a repeat of the peer's last flight means ours was lost.
                    if Some(h.message_seq) == self.peer_flight_start && h.fragment_offset == 0 {
                        resend = true;
                    }
                }
                Inserted::Dropped => self.stats.dropped_records += 1,
                Inserted::Buffered => {}
            }
            self.handle_messages(now, record_seq)?;
            if self.is_closed() {
                return Ok(());
            }
        }
        if resend {
            self.answer_repeat(now);
        }
        Ok(())
    }

    /// Hands every message the current state can take to the state machine. A message that
    /// arrived in plaintext and is refused is discarded: the state stays as it was and its
    /// message_seq stays open for the genuine message (RFC 6347 §4.1.2.7: invalid input is
    /// discarded, preserving the association). Only the ClientHello at a server (whose
    /// cookie proved the sender receives at the address, or whose address the caller
    /// vouched for) and authenticated messages are refused with an alert.
    fn handle_messages(&mut self, now: Instant, record_seq: u64) -> Result<(), Error> {
        while let Some((epoch, max_seq)) = self.state.expects(self.reassembler.next_seq()) {
            let Some(msg) = self.reassembler.take(epoch, max_seq) else {
                return Ok(());
            };
            let seq = msg.seq;
            let trusted = msg.epoch == 1 || matches!(self.state, State::ServerExpectClientHello(_));
            let before = (!trusted).then(|| self.state.clone());
            match self.handle_message(now, msg, record_seq) {
                Ok(()) => self.reassembler.accept(seq),
                Err(e) => match before {
                    Some(state) => {
                        self.state = state;
                        self.stats.discarded_messages += 1;
                        self.last_discarded = Some(e);
                    }
                    None => return Err(e),
                },
            }
            if self.is_closed() {
                return Ok(());
            }
        }
        Ok(())
    }

    /// Resends our flight because the peer repeated its own, at most once per half initial
    /// timeout: copies of one repeated flight (or a peer replaying an old fragment) cannot
    /// make us send our flight again and again.
    fn answer_repeat(&mut self, now: Instant) {
        if self.flight.is_empty() || !quiet_since(self.last_repeat_answer, now, &self.config) {
            return;
        }
        self.stats.repeats_answered += 1;
        self.last_repeat_answer = Some(now);
        self.send_flight(now, false);
    }

    /// A handshake record after the handshake: repeats of the peer's last flight make the
    /// server resend its final flight; a new ClientHello or HelloRequest is a renegotiation
    /// attempt, refused with a no_renegotiation warning (RFC 5746 §4.4, RFC 5246 §7.2.2).
    /// Epoch-0 records are unauthenticated here: a malformed one is dropped, never fatal
    /// (RFC 6347 §4.1.2.7), and the answers they cause are rate-limited like repeats.
    fn handle_post_handshake_record(
        &mut self,
        now: Instant,
        epoch: u16,
        body: &[u8],
    ) -> Result<(), Error> {
        let next = self.reassembler.next_seq();
        let mut r = Reader::new(body);
        let (mut resend, mut reneg) = (false, false);
        while r.remaining() > 0 {
            let h = match HsHeader::read(&mut r) {
                Ok((h, _)) => h,
                Err(_) if epoch == 0 => {
                    self.stats.dropped_records += 1;
                    return Ok(());
                }
                Err(e) => return Err(e),
            };
            if h.message_seq < next {
                resend |= Some(h.message_seq) == self.peer_flight_start && h.fragment_offset == 0;
                continue;
            }
            reneg |= h.fragment_offset == 0
                && match self.role {
                    Role::Server => h.msg_type == HandshakeType::CLIENT_HELLO,
                    Role::Client => h.msg_type == HandshakeType::HELLO_REQUEST,
                };
        }
        if resend {
            self.answer_repeat(now);
        }
        if reneg {
            if quiet_since(self.last_no_renegotiation, now, &self.config) {
                self.last_no_renegotiation = Some(now);
                self.send_alert(AlertLevel::Warning, AlertDescription::NO_RENEGOTIATION);
            }
            self.stats.dropped_records += 1;
        }
        Ok(())
    }

    // ---------------------------------------------------------------- handshake ------------

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
                State::ClientExpectServerKeyExchange(self.peer_certificate(n, &msg)?)
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
                n.hs.add(msg.msg_type, msg.seq, &msg.body);
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
                State::ServerExpectClientKeyExchange(self.peer_certificate(n, &msg)?)
            }
            (State::ServerExpectClientKeyExchange(n), HandshakeType::CLIENT_KEY_EXCHANGE) => {
                self.server_client_key_exchange(n, &msg)?
            }
            (State::ServerExpectCertificateVerify(mut k), HandshakeType::CERTIFICATE_VERIFY) => {
                // RFC 5246 §7.4.8: signature over all handshake messages so far.
                let (scheme, sig) = read_digitally_signed(&msg.body)?;
                verify_signature(&k.peer_key, scheme, &sig, &k.hs.transcript)?;
                k.hs.add(msg.msg_type, msg.seq, &msg.body);
                State::ServerExpectFinished(k)
            }
            (State::ServerExpectFinished(k), HandshakeType::FINISHED) => {
                self.server_finished(now, k, &msg)?
            }
            (_, _) => return Err(Error::UnexpectedMessage("handshake message out of order")),
        };
        self.state = next;
        Ok(())
    }

    fn client_hello_verify(
        &mut self,
        now: Instant,
        mut c: Box<ClientStart>,
        msg: &Message,
    ) -> Result<State, Error> {
        let hvr = HelloVerifyRequest::read(&msg.body)?;
        if hvr.server_version != DTLS12 && hvr.server_version != DTLS10 {
            return Err(Error::ProtocolVersion);
        }
        if c.hello_verifies >= MAX_HELLO_VERIFY {
            return Err(Error::UnexpectedMessage("too many HelloVerifyRequests"));
        }
        c.hello_verifies += 1;
        self.stats.hello_verify_requests += 1;
        // RFC 6347 §4.2.1: resend the same ClientHello with the cookie, as a new message.
        c.hello.cookie = hvr.cookie;
        c.hello_seq = self.take_send_seq();
        self.flight = vec![OutMsg::Handshake {
            msg_type: HandshakeType::CLIENT_HELLO,
            seq: c.hello_seq,
            epoch: 0,
            body: c.hello.write(),
        }];
        self.rto = self.config.initial_retransmit_timeout;
        self.send_flight(now, true);
        Ok(State::ClientHelloSent(c))
    }

    fn client_server_hello(&mut self, c: Box<ClientStart>, msg: &Message) -> Result<State, Error> {
        let sh = ServerHello::read(&msg.body)?;
        // RFC 6347 §4.1: only 1.2.
        if sh.server_version != DTLS12 {
            return Err(Error::ProtocolVersion);
        }
        let suite = CipherSuite::from_id(sh.cipher_suite)
            .filter(|s| self.config.cipher_suites.contains(s))
            .ok_or(Error::IllegalParameter("cipher suite not offered"))?;
        if sh.compression_method != 0 {
            return Err(Error::IllegalParameter("compression method not offered"));
        }
        let ext = &sh.extensions;
        // RFC 5246 §7.4.1.4: only extensions the client offered.
        const OFFERED: [u16; 6] = [
            crate::handshake::ext::SUPPORTED_GROUPS,
            crate::handshake::ext::EC_POINT_FORMATS,
            crate::handshake::ext::SIGNATURE_ALGORITHMS,
            crate::handshake::ext::USE_SRTP,
            crate::handshake::ext::EXTENDED_MASTER_SECRET,
            crate::handshake::ext::RENEGOTIATION_INFO,
        ];
        if ext.types.iter().any(|t| !OFFERED.contains(t)) {
            return Err(Error::UnsupportedExtension);
        }
        // RFC 5764 §4.1.1: exactly one of the offered profiles, and no MKI we did not offer.
        let Some((profiles, mki)) = &ext.use_srtp else {
            return Err(Error::PeerIncompatible("no use_srtp"));
        };
        let profile = match profiles.as_slice() {
            [id] => ProtectionProfile::from_id(*id)
                .filter(|p| self.config.srtp_profiles.contains(p))
                .ok_or(Error::IllegalParameter("SRTP profile not offered"))?,
            _ => return Err(Error::IllegalParameter("use_srtp must select one profile")),
        };
        if !mki.is_empty() {
            return Err(Error::IllegalParameter("SRTP MKI not offered"));
        }
        check_hello_extensions(ext, &self.config)?;
        let ClientStart {
            mut hs,
            ecdh,
            hello,
            hello_seq,
            ..
        } = *c;
        hs.server_random = sh.random;
        // The transcript starts at the ClientHello that got this answer (RFC 6347 §4.2.6).
        hs.add(HandshakeType::CLIENT_HELLO, hello_seq, &hello.write());
        hs.add(msg.msg_type, msg.seq, &msg.body);
        self.peer_flight_start = Some(msg.seq);
        Ok(State::ClientExpectCertificate(Box::new(Negotiated {
            hs,
            ecdh,
            suite,
            profile,
            ems: ext.extended_master_secret,
            peer: None,
            server_share: None,
        })))
    }

    /// Certificate from either side: the fingerprint is checked here, before any key is
    /// derived (RFC 8122 §5, RFC 8827 §6.5).
    fn peer_certificate(
        &self,
        mut n: Box<Negotiated>,
        msg: &Message,
    ) -> Result<Box<Negotiated>, Error> {
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
        n.peer = Some((key, fp));
        n.hs.add(msg.msg_type, msg.seq, &msg.body);
        Ok(n)
    }

    fn client_flight5(
        &mut self,
        now: Instant,
        mut n: Box<Negotiated>,
        msg: &Message,
    ) -> Result<State, Error> {
        if !msg.body.is_empty() {
            return Err(Error::Decode("ServerHelloDone not empty"));
        }
        n.hs.add(msg.msg_type, msg.seq, &msg.body);
        let (Some((peer_key, peer_fingerprint)), Some(share)) = (n.peer, n.server_share) else {
            return Err(Error::UnexpectedMessage(
                "ServerHelloDone before key exchange",
            ));
        };
        let mut flight = Vec::new();
        let body = write_certificate(&[self.config.certificate.der()]);
        self.push_msg(&mut flight, &mut n.hs, HandshakeType::CERTIFICATE, 0, body);
        let public = ecdh_public(&n.ecdh);
        self.push_msg(
            &mut flight,
            &mut n.hs,
            HandshakeType::CLIENT_KEY_EXCHANGE,
            0,
            write_client_key_exchange(&public),
        );
        let pms = ecdh_shared(&n.ecdh, &share)?;
        let master = derive_master(&pms, &n.hs, n.ems);
        let sig = crate::crypto::sign(
            &self.config.certificate,
            self.config.provider,
            &n.hs.transcript,
        );
        let body = write_digitally_signed(ECDSA_SECP256R1_SHA256, sig.as_bytes());
        self.push_msg(
            &mut flight,
            &mut n.hs,
            HandshakeType::CERTIFICATE_VERIFY,
            0,
            body,
        );
        self.install_keys(n.suite, &master, &n.hs)?;
        flight.push(OutMsg::ChangeCipherSpec);
        let vd = prf::verify_data(&master, true, &n.hs.hash());
        self.push_msg(
            &mut flight,
            &mut n.hs,
            HandshakeType::FINISHED,
            1,
            vd.to_vec(),
        );
        self.flight = flight;
        self.rto = self.config.initial_retransmit_timeout;
        self.send_flight(now, true);
        Ok(State::ClientExpectFinished(Box::new(Keyed {
            hs: n.hs,
            suite: n.suite,
            profile: n.profile,
            ems: n.ems,
            master,
            peer_key,
            peer_fingerprint,
        })))
    }

    fn client_finished(&mut self, k: Box<Keyed>, msg: &Message) -> Result<State, Error> {
        check_finished(&k, false, &msg.body)?;
        Ok(self.establish(k))
    }

    fn server_client_hello(
        &mut self,
        now: Instant,
        s: ServerStart,
        msg: &Message,
        record_seq: u64,
    ) -> Result<State, Error> {
        let ch = ClientHello::read(&msg.body)?;
        // DTLS versions count down: FEFF is 1.0, FEFD is 1.2 (RFC 6347 §4.1). Anything older
        // than 1.2 is refused; a newer client falls back to 1.2.
        if ch.client_version > DTLS12 {
            return Err(Error::ProtocolVersion);
        }
        // The cookie, when one is demanded, was checked on the first fragment
        // (`check_cookie`).
        let ext = &ch.extensions;
        let suite = self
            .config
            .cipher_suites
            .iter()
            .copied()
            .find(|s| ch.cipher_suites.contains(&s.id()))
            .ok_or_else(|| no_common_suite(&ch.cipher_suites))?;
        // RFC 5246 §7.4.1.2: null compression must be offered.
        if !ch.compression_methods.contains(&0) {
            return Err(Error::IllegalParameter("null compression not offered"));
        }
        // RFC 8422 §5.1: the client must support P-256 if it says which groups it supports.
        if ext
            .supported_groups
            .as_ref()
            .is_some_and(|g| !g.contains(&SECP256R1))
        {
            return Err(Error::PeerIncompatible("secp256r1 not offered"));
        }
        if ext
            .signature_algorithms
            .as_ref()
            .is_some_and(|a| !a.contains(&ECDSA_SECP256R1_SHA256))
        {
            return Err(Error::PeerIncompatible(
                "ecdsa_secp256r1_sha256 not offered",
            ));
        }
        // RFC 5764 §4.1.1: the server picks one of the client's profiles.
        let Some((offered, _mki)) = &ext.use_srtp else {
            return Err(Error::PeerIncompatible("no use_srtp"));
        };
        let profile = self
            .config
            .srtp_profiles
            .iter()
            .copied()
            .find(|p| offered.contains(&p.id()))
            .ok_or(Error::PeerIncompatible("no common SRTP profile"))?;
        check_hello_extensions(ext, &self.config)?;
        let ems = ext.extended_master_secret;
        let secure_reneg = ext.renegotiation_info.is_some()
            || ch
                .cipher_suites
                .contains(&TLS_EMPTY_RENEGOTIATION_INFO_SCSV);

        let ServerStart {
            server_random,
            ecdh,
        } = s;
        // The cookie is valid: only now is the ECDHE key made.
        let ecdh = ecdh.key(self.config.provider);
        let mut hs = Hs {
            client_random: ch.random,
            server_random,
            transcript: Vec::new(),
        };
        hs.add(msg.msg_type, msg.seq, &msg.body);
        // Our message_seq follows the ClientHello's (RFC 6347 §4.2.2, stateless cookie), and
        // our record sequence numbers continue from its record's, so that none repeats one
        // used by a HelloVerifyRequest (RFC 6347 §4.2.1).
        self.next_send_seq = msg.seq;
        self.write[0].next_seq = self.write[0].next_seq.max(record_seq);
        self.peer_flight_start = Some(msg.seq);

        let mut flight = Vec::new();
        let sh = ServerHello {
            server_version: DTLS12,
            random: server_random,
            session_id: Vec::new(),
            cipher_suite: suite.id(),
            compression_method: 0,
            extensions: Extensions {
                supported_groups: None,
                point_formats: ext.point_formats.as_ref().map(|_| vec![POINT_UNCOMPRESSED]),
                signature_algorithms: None,
                use_srtp: Some((vec![profile.id()], Vec::new())),
                extended_master_secret: ems,
                renegotiation_info: secure_reneg.then(Vec::new),
                types: Vec::new(),
            },
        };
        self.push_msg(
            &mut flight,
            &mut hs,
            HandshakeType::SERVER_HELLO,
            0,
            sh.write(),
        );
        let cert = write_certificate(&[self.config.certificate.der()]);
        self.push_msg(&mut flight, &mut hs, HandshakeType::CERTIFICATE, 0, cert);
        let public = ecdh_public(&ecdh);
        let params = ServerKeyExchange::params(SECP256R1, &public);
        let sig = crate::crypto::sign(
            &self.config.certificate,
            self.config.provider,
            &hs.server_params_signed(&params),
        );
        let ske = ServerKeyExchange {
            named_curve: SECP256R1,
            public: public.to_vec(),
            scheme: ECDSA_SECP256R1_SHA256,
            signature: sig.as_bytes().to_vec(),
        };
        self.push_msg(
            &mut flight,
            &mut hs,
            HandshakeType::SERVER_KEY_EXCHANGE,
            0,
            ske.write(),
        );
        // RFC 8827 §6.5: WebRTC authenticates both ends, so always ask for a certificate.
        let cr = CertificateRequest {
            certificate_types: vec![ECDSA_SIGN],
            signature_algorithms: vec![ECDSA_SECP256R1_SHA256],
        };
        self.push_msg(
            &mut flight,
            &mut hs,
            HandshakeType::CERTIFICATE_REQUEST,
            0,
            cr.write(),
        );
        self.push_msg(
            &mut flight,
            &mut hs,
            HandshakeType::SERVER_HELLO_DONE,
            0,
            Vec::new(),
        );
        self.flight = flight;
        self.rto = self.config.initial_retransmit_timeout;
        self.handshake_deadline
            .get_or_insert(now + self.config.handshake_timeout);
        self.send_flight(now, true);
        Ok(State::ServerExpectCertificate(Box::new(Negotiated {
            hs,
            ecdh,
            suite,
            profile,
            ems,
            peer: None,
            server_share: None,
        })))
    }

    fn server_client_key_exchange(
        &mut self,
        mut n: Box<Negotiated>,
        msg: &Message,
    ) -> Result<State, Error> {
        let public = read_client_key_exchange(&msg.body)?;
        let share = parse_share(&public)?;
        n.hs.add(msg.msg_type, msg.seq, &msg.body);
        let Some((peer_key, peer_fingerprint)) = n.peer else {
            return Err(Error::UnexpectedMessage(
                "ClientKeyExchange before Certificate",
            ));
        };
        let pms = ecdh_shared(&n.ecdh, &share)?;
        let master = derive_master(&pms, &n.hs, n.ems);
        self.install_keys(n.suite, &master, &n.hs)?;
        Ok(State::ServerExpectCertificateVerify(Box::new(Keyed {
            hs: n.hs,
            suite: n.suite,
            profile: n.profile,
            ems: n.ems,
            master,
            peer_key,
            peer_fingerprint,
        })))
    }

    fn server_finished(
        &mut self,
        now: Instant,
        mut k: Box<Keyed>,
        msg: &Message,
    ) -> Result<State, Error> {
        check_finished(&k, true, &msg.body)?;
        // Flight 5: Certificate, ClientKeyExchange, CertificateVerify, Finished.
        let client_flight_start = msg.seq.wrapping_sub(3);
        k.hs.add(msg.msg_type, msg.seq, &msg.body);
        let vd = prf::verify_data(&k.master, false, &k.hs.hash());
        let mut flight = vec![OutMsg::ChangeCipherSpec];
        self.push_msg(
            &mut flight,
            &mut k.hs,
            HandshakeType::FINISHED,
            1,
            vd.to_vec(),
        );
        self.flight = flight;
        // The final flight has no timer: it is resent when the client repeats its flight
        // (RFC 6347 §4.2.4).
        self.send_flight(now, false);
        self.peer_flight_start = Some(client_flight_start);
        Ok(self.establish(k))
    }

    fn establish(&mut self, k: Box<Keyed>) -> State {
        self.retransmit_at = None;
        self.handshake_deadline = None;
        if self.role == Role::Client {
            self.flight.clear();
        }
        let est = Established {
            client_random: k.hs.client_random,
            server_random: k.hs.server_random,
            master: k.master,
            suite: k.suite,
            profile: k.profile,
            peer_fingerprint: k.peer_fingerprint,
            ems: k.ems,
        };
        match self.srtp_keys(&est) {
            Ok(srtp) => self.events.push_back(Event::Connected(Box::new(Connected {
                cipher_suite: est.suite,
                profile: est.profile,
                srtp,
                peer_fingerprint: est.peer_fingerprint,
                extended_master_secret: est.ems,
            }))),
            Err(e) => {
                self.shut(Some(e));
                return State::Closed;
            }
        }
        State::Connected(Box::new(est))
    }

    /// RFC 5764 §4.2: export `2 * (key + salt)` bytes and split them into client_write_key,
    /// server_write_key, client_write_salt, server_write_salt.
    fn srtp_keys(&self, est: &Established) -> Result<SrtpKeys, Error> {
        let p = est.profile;
        let (k, s) = (p.key_len(), p.salt_len());
        let mut km = Zeroizing::new(vec![0u8; p.keying_material_len()]);
        prf::export(
            &est.master,
            &est.client_random,
            &est.server_random,
            SRTP_EXPORTER_LABEL,
            None,
            &mut km,
        );
        let bad = |_| Error::Config("SRTP key length");
        let client = MasterKey::new(p, &km[..k], &km[2 * k..2 * k + s]).map_err(bad)?;
        let server = MasterKey::new(p, &km[k..2 * k], &km[2 * k + s..]).map_err(bad)?;
        let (local, remote) = match self.role {
            Role::Client => (client, server),
            Role::Server => (server, client),
        };
        Ok(SrtpKeys {
            profile: p,
            local,
            remote,
        })
    }

    /// RFC 5246 §6.3: key block, split into both directions' record protection.
    fn install_keys(
        &mut self,
        suite: CipherSuite,
        master: &MasterSecret,
        hs: &Hs,
    ) -> Result<(), Error> {
        let (client, server) = match suite {
            CipherSuite::EcdheEcdsaAes128GcmSha256 => {
                // client_write_key[16] server_write_key[16] client_write_IV[4] server_write_IV[4]
                let kb = prf::key_block(master, &hs.client_random, &hs.server_random, 40);
                (
                    RecordCipher::gcm(&kb[0..16], &kb[32..36], self.config.provider)?,
                    RecordCipher::gcm(&kb[16..32], &kb[36..40], self.config.provider)?,
                )
            }
            CipherSuite::EcdheEcdsaAes256CbcSha => {
                // client_write_MAC_key[20] server_write_MAC_key[20] client_write_key[32]
                // server_write_key[32] (no IVs in TLS 1.1+: explicit per record).
                let kb = prf::key_block(master, &hs.client_random, &hs.server_random, 104);
                (
                    RecordCipher::cbc(&kb[40..72], &kb[0..20], &self.iv_secret)?,
                    RecordCipher::cbc(&kb[72..104], &kb[20..40], &self.iv_secret)?,
                )
            }
        };
        let (mine, theirs) = match self.role {
            Role::Client => (client, server),
            Role::Server => (server, client),
        };
        self.write[1] = WriteEpoch {
            cipher: Some(mine),
            next_seq: 0,
        };
        self.read = Some(ReadEpoch {
            cipher: theirs,
            window: ReplayWindow::default(),
        });
        Ok(())
    }

    // ---------------------------------------------------------------- output ---------------

    fn take_send_seq(&mut self) -> u16 {
        let s = self.next_send_seq;
        self.next_send_seq = self.next_send_seq.wrapping_add(1);
        s
    }

    /// Adds a message to a flight being built, and to the transcript.
    fn push_msg(
        &mut self,
        flight: &mut Vec<OutMsg>,
        hs: &mut Hs,
        msg_type: HandshakeType,
        epoch: u16,
        body: Vec<u8>,
    ) {
        let seq = self.take_send_seq();
        hs.add(msg_type, seq, &body);
        flight.push(OutMsg::Handshake {
            msg_type,
            seq,
            epoch,
            body,
        });
    }

    /// Sends the current flight, fragmenting messages to the MTU and packing records into
    /// datagrams (RFC 6347 §4.1.1, §4.2.3). Every send uses fresh record sequence numbers.
    fn send_flight(&mut self, now: Instant, arm_timer: bool) {
        let flight = std::mem::take(&mut self.flight);
        let mtu = self.config.mtu;
        let mut dgram = Vec::with_capacity(mtu);
        for item in &flight {
            match item {
                OutMsg::ChangeCipherSpec => {
                    if dgram.len() + HEADER_LEN + 1 > mtu {
                        self.flush(&mut dgram);
                    }
                    let _ = self.put_record(&mut dgram, ContentType::CHANGE_CIPHER_SPEC, 0, &[1]);
                    self.write_epoch = 1;
                }
                OutMsg::Handshake {
                    msg_type,
                    seq,
                    epoch,
                    body,
                } => {
                    let overhead = HEADER_LEN
                        + HS_HEADER_LEN
                        + self.write[usize::from(*epoch)]
                            .cipher
                            .as_ref()
                            .map_or(0, RecordCipher::overhead);
                    let mut offset = 0;
                    loop {
                        let left = body.len() - offset;
                        let space = mtu.saturating_sub(dgram.len() + overhead);
                        if space < left && space < 64 && !dgram.is_empty() {
                            self.flush(&mut dgram);
                            continue;
                        }
                        let n = left.min(space.max(1));
                        let mut rec = Vec::with_capacity(HS_HEADER_LEN + n);
                        HsHeader {
                            msg_type: *msg_type,
                            length: body.len() as u32,
                            message_seq: *seq,
                            fragment_offset: offset as u32,
                            fragment_length: n as u32,
                        }
                        .write(&mut rec);
                        rec.extend_from_slice(&body[offset..offset + n]);
                        let _ = self.put_record(&mut dgram, ContentType::HANDSHAKE, *epoch, &rec);
                        offset += n;
                        if offset >= body.len() {
                            break;
                        }
                    }
                }
            }
        }
        self.flush(&mut dgram);
        self.flight = flight;
        if arm_timer {
            self.retransmit_at = Some(now + self.rto);
        }
    }

    fn flush(&mut self, dgram: &mut Vec<u8>) {
        if !dgram.is_empty() {
            self.transmits.push_back(std::mem::take(dgram));
        }
    }

    /// Appends one record in `epoch` to `out`.
    fn put_record(
        &mut self,
        out: &mut Vec<u8>,
        ct: ContentType,
        epoch: u16,
        data: &[u8],
    ) -> Result<(), Error> {
        let w = &mut self.write[usize::from(epoch)];
        if w.next_seq > MAX_SEQ {
            // RFC 6347 §4.1: sequence numbers must not wrap.
            return Err(Error::Closed);
        }
        let seq = w.next_seq;
        w.next_seq += 1;
        match &w.cipher {
            Some(c) => c.seal(out, ct, epoch, seq, data),
            None => {
                crate::record::put_header(out, ct, epoch, seq, data.len());
                out.extend_from_slice(data);
            }
        }
        Ok(())
    }

    fn send_alert(&mut self, level: AlertLevel, desc: AlertDescription) {
        let lvl = match level {
            AlertLevel::Warning => 1,
            AlertLevel::Fatal => 2,
        };
        let mut out = Vec::new();
        if self
            .put_record(
                &mut out,
                ContentType::ALERT,
                self.write_epoch,
                &[lvl, desc.0],
            )
            .is_ok()
        {
            self.transmits.push_back(out);
        }
    }

    /// Fails the connection: fatal alert out (when the error has one), `Closed` event.
    fn fail(&mut self, e: Error) -> Error {
        if !self.is_closed() {
            if let Some(desc) = e.alert() {
                self.send_alert(AlertLevel::Fatal, desc);
            }
            self.shut(Some(e.clone()));
        }
        e
    }

    fn shut(&mut self, error: Option<Error>) {
        self.terminated = true;
        self.state = State::Closed;
        self.retransmit_at = None;
        self.handshake_deadline = None;
        self.flight.clear();
        self.events.push_back(Event::Closed { error });
    }
}

/// Whether half an initial retransmission timeout passed since `last` (or nothing was sent):
/// the pace at which unauthenticated input may make us send anything.
fn quiet_since(last: Option<Instant>, now: Instant, config: &Config) -> bool {
    let quiet = config.initial_retransmit_timeout / 2;
    last.is_none_or(|t| now.saturating_duration_since(t) >= quiet)
}

/// RFC 5246 §7.4.1.4 / RFC 5246 §7.2.2: no suite in common. insufficient_security when the
/// client offers only suites without forward secrecy or with weaker ciphers; else
/// handshake_failure.
fn no_common_suite(offered: &[u16]) -> Error {
    // TLS_RSA_* (static RSA, no forward secrecy) and legacy 3DES/RC4/NULL suites.
    const WEAK: [u16; 12] = [
        0x0001, 0x0002, 0x0004, 0x0005, 0x000a, 0x002f, 0x0035, 0x003c, 0x003d, 0x009c, 0x009d,
        0xc008,
    ];
    let real: Vec<u16> = offered
        .iter()
        .copied()
        .filter(|s| *s != TLS_EMPTY_RENEGOTIATION_INFO_SCSV)
        .collect();
    if !real.is_empty() && real.iter().all(|s| WEAK.contains(s)) {
        Error::InsufficientSecurity("only weak cipher suites offered")
    } else {
        Error::PeerIncompatible("no common cipher suite")
    }
}

/// Checks both hellos share: extended_master_secret when required (RFC 7627 §5.3), an empty
/// renegotiation_info (RFC 5746 §3.4, §3.6: this is never a renegotiation), and uncompressed
/// points if point formats are listed at all (RFC 8422 §5.1.2).
fn check_hello_extensions(ext: &Extensions, config: &Config) -> Result<(), Error> {
    if !ext.extended_master_secret
        && config.extended_master_secret == ExtendedMasterSecret::Required
    {
        return Err(Error::PeerIncompatible("no extended_master_secret"));
    }
    if ext
        .renegotiation_info
        .as_ref()
        .is_some_and(|ri| !ri.is_empty())
    {
        return Err(Error::PeerIncompatible("non-empty renegotiation_info"));
    }
    if ext
        .point_formats
        .as_ref()
        .is_some_and(|f| !f.contains(&POINT_UNCOMPRESSED))
    {
        return Err(Error::IllegalParameter("no uncompressed point format"));
    }
    Ok(())
}

/// An uncompressed P-256 point (RFC 8422 §5.4.1; compressed points are not negotiated).
fn parse_share(public: &[u8]) -> Result<p256::PublicKey, Error> {
    if public.len() != 65 || public[0] != 4 {
        return Err(Error::IllegalParameter(
            "ECDHE share is not an uncompressed P-256 point",
        ));
    }
    p256::PublicKey::from_sec1_bytes(public)
        .map_err(|_| Error::IllegalParameter("ECDHE share not on P-256"))
}

fn client_server_key_exchange(
    mut n: Box<Negotiated>,
    msg: &Message,
) -> Result<Box<Negotiated>, Error> {
    let ske = ServerKeyExchange::read(&msg.body)?;
    if ske.named_curve != SECP256R1 {
        return Err(Error::IllegalParameter("ECDHE group not offered"));
    }
    let share = parse_share(&ske.public)?;
    let Some((key, _)) = &n.peer else {
        return Err(Error::UnexpectedMessage(
            "ServerKeyExchange before Certificate",
        ));
    };
    let params = ServerKeyExchange::params(ske.named_curve, &ske.public);
    verify_signature(
        key,
        ske.scheme,
        &ske.signature,
        &n.hs.server_params_signed(&params),
    )?;
    n.server_share = Some(share);
    n.hs.add(msg.msg_type, msg.seq, &msg.body);
    Ok(n)
}

/// RFC 7627 §4 (session hash up to and including ClientKeyExchange) or RFC 5246 §8.1.
fn derive_master(pms: &[u8], hs: &Hs, ems: bool) -> MasterSecret {
    if ems {
        prf::extended_master_secret(pms, &hs.hash())
    } else {
        prf::master_secret(pms, &hs.client_random, &hs.server_random)
    }
}

/// RFC 5246 §7.4.9: compare verify_data in constant time.
fn check_finished(k: &Keyed, from_client: bool, body: &[u8]) -> Result<(), Error> {
    let got = read_finished(body)?;
    let want = prf::verify_data(&k.master, from_client, &k.hs.hash());
    if bool::from(got.ct_eq(&want)) {
        Ok(())
    } else {
        Err(Error::DecryptError("Finished verify_data"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cert::Certificate;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    fn drain(c: &mut Connection) -> Vec<Vec<u8>> {
        std::iter::from_fn(|| c.poll_transmit()).collect()
    }

    /// Only the records of `d` in `epoch`.
    fn keep_epoch(d: &[u8], epoch: u16) -> Vec<u8> {
        let mut r = Reader::new(d);
        let mut kept = Vec::new();
        while r.remaining() > 0 {
            let start = d.len() - r.remaining();
            let rec = Record::read(&mut r).unwrap();
            if rec.epoch == epoch {
                kept.extend_from_slice(&d[start..d.len() - r.remaining()]);
            }
        }
        kept
    }

    /// A Finished that authenticates at the record layer (sealed with the client's real
    /// epoch-1 keys) but carries the wrong verify_data is decrypt_error (RFC 5246 §7.4.9), and
    /// no Connected event leaves the server. The tests outside the crate cannot make one.
    #[test]
    fn a_finished_with_wrong_verify_data_is_decrypt_error() {
        for suite in CipherSuite::ALL {
            let mut rng = ChaCha20Rng::seed_from_u64(1);
            let mut mk = || {
                let mut c = Config::new(Certificate::generate(&mut rng));
                c.cookie_exchange = false;
                c.cipher_suites = vec![suite];
                Arc::new(c)
            };
            let (cc, sc) = (mk(), mk());
            let now = Instant::now();
            let mut client =
                Connection::client(cc.clone(), &[sc.certificate.fingerprint()], now, &mut rng)
                    .unwrap();
            let mut server = Connection::server(
                sc,
                &[cc.certificate.fingerprint()],
                ([192, 0, 2, 1], 4444).into(),
                &mut rng,
            )
            .unwrap();
            for d in drain(&mut client) {
                server.handle_datagram(now, &d).unwrap();
            }
            for d in drain(&mut server) {
                client.handle_datagram(now, &d).unwrap();
            }
            // Flight 5 without its Finished (the only epoch-1 record).
            for d in drain(&mut client) {
                server.handle_datagram(now, &keep_epoch(&d, 0)).unwrap();
            }
            assert!(matches!(server.state, State::ServerExpectFinished(_)));
            let mut msg = Vec::new();
            let seq = server.reassembler.next_seq();
            transcript_bytes(&mut msg, HandshakeType::FINISHED, seq, &[0; 12]);
            let mut forged = Vec::new();
            client
                .put_record(&mut forged, ContentType::HANDSHAKE, 1, &msg)
                .unwrap();
            let res = server.handle_datagram(now, &forged);
            assert!(
                matches!(res, Err(Error::DecryptError(_))),
                "{suite:?}: {res:?}"
            );
            assert!(server.is_closed());
            assert!(
                !std::iter::from_fn(|| server.poll_event())
                    .any(|e| matches!(e, Event::Connected(_)))
            );
        }
    }
}
