//! Signaling for callsec: an authenticated WebSocket-over-TLS server (and client) that
//! carries SDP offers, answers and ICE candidates between participants and the calls
//! server. It decides who gets into a call; it owns no media logic.
//!
//! # Plugging in the calls server
//!
//! Implement [`CallHandler`]; start a [`Server`] with a [`ServerConfig`]:
//!
//! ```no_run
//! use callsec_signaling::{
//!     AuthConfig, CallHandler, Peer, Reply, Request, Server, ServerConfig, TokenKey,
//! };
//!
//! struct Calls;
//! impl CallHandler for Calls {
//!     async fn handle(&self, peer: &Peer, request: Request) -> Reply {
//!         match request {
//!             Request::Offer(_offer) => Reply::Accept, // negotiate media, Reply::Answer(..)
//!             _ => Reply::Accept,
//!         }
//!     }
//! }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let auth = AuthConfig::new(TokenKey::Hs256 { secret: vec![7; 32] }, "callsec");
//! let config = ServerConfig::new("127.0.0.1:8443".parse()?, auth, "/var/lib/callsec/revocations");
//! let server = Server::start(config, Calls).await?;
//! server.revoke_session("s-123").await?; // closes its sockets, persists, tells Calls
//! # Ok(()) }
//! ```
//!
//! The handler gets typed [`Request`]s from authenticated [`Peer`]s (user id, session
//! id, room, connection id) and answers with a [`Reply`]; it pushes its own messages with
//! [`Server::send`] and learns of every ended connection through
//! [`CallHandler::disconnected`] (with [`CloseReason::Revoked`] when revoked).
//!
//! # Connection lifecycle
//!
//! 1. TCP accept: counted against `max_connections`, `max_connections_per_address` (per
//!    IPv4 address or IPv6 /64) and `max_pending_handshakes` ([`Limits`]); connections
//!    over the first two get their refusal from a small pool of their own.
//! 2. TLS 1.2/1.3 (rustls, ring) and the HTTP request, within `handshake_timeout`. A
//!    request that does not ask for a WebSocket upgrade is a plain `GET`/`HEAD` for
//!    [`CallHandler::http_get`] (a web page on the same origin), answered and closed. The
//!    upgrade is refused with 429/503 over the connection limits, 400 when the URL
//!    has any query or fragment or a token in its (percent-decoded) path (tokens are never
//!    accepted in the URL), when `Origin`, `Authorization`, `Host` or `Sec-WebSocket-Key`
//!    appears more than once, or when `Authorization` is not `Bearer`, and 403 when an
//!    `Origin` header is not in `allowed_origins`.
//! 3. Authentication: the `Authorization: Bearer` token, or else an `auth` message that
//!    must arrive within `auth_timeout`. Tokens are checked by [`TokenValidator`] and
//!    against the persisted revocations; refusals close with the codes in [`close`].
//! 4. Messages ([`protocol`]) until the peer leaves, the session is revoked, it idles past
//!    `idle_timeout`, lives past `max_session_length`, or — with `close_at_token_expiry` —
//!    its token expires before the client sent a fresh one in an `auth` message.
//!
//! # Protocol
//!
//! One JSON object per WebSocket message, `{"v":1,"id":N,"type":"...",...}`; see
//! [`protocol`] for every type. A session, as seen on the wire:
//!
//! ```text
//! C: {"v":1,"type":"auth","token":"eyJ..."}                 (unless sent as Bearer header)
//! S: {"v":1,"type":"authenticated","user_id":"alice","session_id":"s1","rooms":["r1"]}
//! C: {"v":1,"id":1,"type":"join","room":"r1"}
//! S: {"v":1,"id":1,"type":"joined","room":"r1","participants":["bob"]}
//! C: {"v":1,"id":2,"type":"offer","sdp":"v=0..."}
//! S: {"v":1,"id":2,"type":"answer","sdp":"v=0..."}
//! C: {"v":1,"type":"candidate","candidate":"candidate:...","sdpMid":"0","sdpMLineIndex":0}
//! C: {"v":1,"id":3,"type":"mute","track":"audio"}
//! S: {"v":1,"id":3,"type":"ack"}                             (bob gets participant_muted)
//! S: {"v":1,"type":"participant_left","room":"r1","user_id":"bob"}
//! C: {"v":1,"id":4,"type":"nonsense"}
//! S: {"v":1,"id":4,"type":"error","code":"unknown_type","message":"unknown message type"}
//! ```
//!
//! Undecodable messages (invalid UTF-8 in a binary frame, malformed JSON, unknown type,
//! wrong version, oversize message or SDP) get an `error` and the connection stays up,
//! up to `max_protocol_errors`. Invalid UTF-8 in a *text* frame fails the connection with
//! 1007 as RFC 6455 §8.1 requires; before authentication, invalid UTF-8 in any frame does.
//!
//! # Audit log
//!
//! Security events go to `tracing` with target [`audit::AUDIT_TARGET`];
//! [`audit::json_subscriber`] writes them as one JSON line each. Tokens and SDP are never
//! logged.
#![forbid(unsafe_code)]

pub mod audit;
pub mod client;
pub mod close;
pub mod config;
pub mod handler;
mod limits;
pub mod protocol;
mod server;
pub mod store;
pub mod tls;
pub mod token;

pub use client::{Client, ClientConfig, ClientError, ClientTls, Incoming, TokenPlacement};
pub use close::CloseReason;
pub use config::{Limits, ServerConfig, Transport};
pub use handler::{CallHandler, ConnectionId, HttpGet, HttpResponse, Peer, Reply, Request};
pub use protocol::{
    ClientEnvelope, ClientMessage, DecodeError, DecodeLimits, ErrorCode, IceCandidate, Sdp,
    ServerEnvelope, ServerMessage, Token, Track, decode_client_message,
};
pub use server::{SendError, Server, StartError};
pub use store::{RevocationKind, RevocationStore, StoreError};
pub use token::{AuthConfig, Claims, TokenError, TokenKey, TokenValidator};
