//! Server configuration: where to listen, TLS identity, token validation, limits.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::token::AuthConfig;

/// The TLS identity the server presents, or plaintext.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Transport {
    /// TLS 1.2/1.3 with a certificate chain and private key read from PEM files.
    TlsPemFiles {
        /// PEM file with the certificate chain, leaf first.
        cert_chain: PathBuf,
        /// PEM file with the private key (PKCS#8, SEC1 or PKCS#1).
        private_key: PathBuf,
    },
    /// TLS with a self-signed certificate generated at start for these names (the
    /// embedded default: `localhost`). Clients must trust [`crate::Server::certificate_der`].
    TlsSelfSigned {
        /// DNS names or IP addresses for the certificate's subjectAltName.
        names: Vec<String>,
    },
    /// Plain `ws://`. Refused at start unless the listen address is loopback.
    PlaintextLoopback,
}

/// Abuse limits. Every field has a safe default ([`Limits::default`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Sustained messages per second per connection (token bucket refill rate).
    pub messages_per_second: u32,
    /// Messages a connection may send in a burst (token bucket size).
    pub message_burst: u32,
    /// Messages dropped for rate before the connection is closed (1008); violations are
    /// forgotten after ten seconds without one.
    pub max_rate_violations: u32,
    /// Undecodable messages tolerated before the connection is closed (1008).
    pub max_protocol_errors: u32,
    /// Connections (including those still handshaking) from one IPv4 address or one
    /// IPv6 /64 prefix.
    pub max_connections_per_address: usize,
    /// Connections in total.
    pub max_connections: usize,
    /// Authenticated connections of one user (token `sub`), all sessions together; one
    /// more is closed with 4016 right after authentication.
    pub max_connections_per_user: usize,
    /// Authenticated connections of one session (token session id); one more is closed
    /// with 4016.
    pub max_connections_per_session: usize,
    /// Admitted connections in the TLS/HTTP handshake at once; beyond it new TCP
    /// connections are dropped without a reply. Connections over the connection limits
    /// get their HTTP 429/503 from a separate pool an eighth this size (at least one),
    /// so they never take these slots; beyond that pool they are dropped too.
    pub max_pending_handshakes: usize,
    /// Largest message answered with an `error` instead of being processed. Messages up
    /// to four times this size are read and answered `message_too_large`; larger ones
    /// close the connection with 1009 (RFC 6455 §7.4.1).
    pub max_message_size: usize,
    /// Largest SDP accepted in an offer or answer.
    pub max_sdp_size: usize,
    /// Time allowed for the TLS and WebSocket handshakes together.
    pub handshake_timeout: Duration,
    /// Time allowed for the `auth` message when no `Authorization` header was sent.
    pub auth_timeout: Duration,
    /// A connection that sends nothing for this long (no message, no WebSocket ping or
    /// pong) is closed with 4015 `idle timeout`, unless the calls server says its media is
    /// alive ([`crate::CallHandler::media_alive`]).
    pub idle_timeout: Duration,
    /// The server sends a WebSocket ping after this long without one; the peer's pong (any
    /// WebSocket client library sends it by itself, browsers included) counts as activity,
    /// so a client that reads its socket is never idle. Keep it well below `idle_timeout`.
    pub ping_interval: Duration,
    /// A connection is closed this long after it authenticated, whatever it does.
    pub max_session_length: Duration,
    /// Participants (connections) in one room.
    pub max_participants_per_room: usize,
    /// Close a connection (4008 `token expired`) when its token expires (plus the
    /// leeway), unless the client sent a fresh token first in an `auth` message. Off by
    /// default: then only `max_session_length` bounds a connection's life.
    pub close_at_token_expiry: bool,
    /// Time the calls server has to answer one request.
    pub handler_timeout: Duration,
    /// Messages queued towards one connection. A participant's state events (mute,
    /// screen share) coalesce in the queue: only the last of each (participant, track)
    /// waits there. The queue may run past this size while the peer keeps reading; a peer
    /// that lets it stand full for `slow_consumer_grace` without reading a message, or
    /// lets it reach eight times this size, is closed (1013) rather than buffered
    /// without bound.
    pub outbound_queue: usize,
    /// How long a full outbound queue may go without one message written before the
    /// peer counts as a slow consumer.
    pub slow_consumer_grace: Duration,
    /// Sustained room events (joins, mute/unmute, screen share on/off) per second of one
    /// user, all its connections together. An event over it is dropped and answered
    /// `rate_limited`, and counts as a rate violation of the connection that sent it.
    pub room_events_per_second_per_user: u32,
    /// Room events one user may send in a burst.
    pub room_event_burst_per_user: u32,
    /// Sustained room events per second of one room, all members together. An event
    /// over it is dropped and answered `rate_limited` (not a violation: the budget is
    /// shared). Bounds how fast a room's members can make the server write to each one.
    pub room_events_per_second_per_room: u32,
    /// Room events one room may take in a burst; at least `max_participants_per_room`
    /// is used, so a full room can join at once.
    pub room_event_burst_per_room: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            messages_per_second: 20,
            message_burst: 50,
            max_rate_violations: 50,
            max_protocol_errors: 20,
            max_connections_per_address: 32,
            max_connections: 10_000,
            max_connections_per_user: 8,
            max_connections_per_session: 4,
            max_pending_handshakes: 512,
            max_message_size: 64 * 1024,
            max_sdp_size: 32 * 1024,
            handshake_timeout: Duration::from_secs(5),
            auth_timeout: Duration::from_secs(3),
            idle_timeout: Duration::from_secs(60),
            ping_interval: Duration::from_secs(20),
            max_session_length: Duration::from_secs(12 * 3600),
            max_participants_per_room: 64,
            close_at_token_expiry: false,
            handler_timeout: Duration::from_secs(5),
            outbound_queue: 64,
            slow_consumer_grace: Duration::from_secs(5),
            room_events_per_second_per_user: 10,
            room_event_burst_per_user: 20,
            room_events_per_second_per_room: 50,
            room_event_burst_per_room: 100,
        }
    }
}

/// Everything [`crate::Server::start`] needs.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ServerConfig {
    /// Address to listen on (port 0 picks one; see [`crate::Server::local_addr`]).
    pub listen: SocketAddr,
    /// TLS identity or plaintext.
    pub transport: Transport,
    /// Token validation.
    pub auth: AuthConfig,
    /// Abuse limits.
    pub limits: Limits,
    /// Origins (`scheme://host[:port]`, exact match) browsers may connect from. A request
    /// with an `Origin` header not in this list is refused with HTTP 403; requests without
    /// `Origin` (servers, tools) are not browsers and pass to authentication.
    pub allowed_origins: Vec<String>,
    /// File holding persisted revocations (see [`crate::RevocationStore`]).
    pub revocation_store: PathBuf,
}

impl ServerConfig {
    /// A config with a self-signed `localhost` certificate, default limits and no
    /// browser origin allowed.
    #[must_use]
    pub fn new(listen: SocketAddr, auth: AuthConfig, revocation_store: impl Into<PathBuf>) -> Self {
        Self {
            listen,
            transport: Transport::TlsSelfSigned {
                names: vec!["localhost".to_owned()],
            },
            auth,
            limits: Limits::default(),
            allowed_origins: Vec::new(),
            revocation_store: revocation_store.into(),
        }
    }
}
