//! The interface the calls server plugs into.
//!
//! The signaling server authenticates the socket, decodes and checks every message, keeps
//! room membership and participant events, and hands the calls server only typed
//! requests from authenticated peers. The calls server answers each request with a
//! [`Reply`], pushes its own messages with [`crate::Server::send`], and is told when a
//! peer goes away ([`CallHandler::disconnected`]) — including on revocation, where it
//! must drop the peer's media.

use std::borrow::Cow;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use crate::close::CloseReason;
use crate::protocol::{IceCandidate, Sdp, Track};

/// Identifies one WebSocket connection for the lifetime of the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId(pub u64);

/// Who sent a request: an authenticated connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    /// The connection.
    pub connection: ConnectionId,
    /// User id from the token (`sub`).
    pub user_id: String,
    /// Session id from the token (`sid`).
    pub session_id: String,
    /// The remote socket address.
    pub remote: SocketAddr,
    /// The room joined, if any. For [`Request::Join`] it is the room being joined.
    pub room: Option<String>,
}

/// What an authenticated peer asks of the calls server.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Request {
    /// Join `room` (already checked against the token and the room limit).
    Join {
        /// The room id.
        room: String,
    },
    /// Leave `room`.
    Leave {
        /// The room id.
        room: String,
    },
    /// An SDP offer; usually answered with [`Reply::Answer`].
    Offer(Sdp),
    /// An SDP answer to an offer the calls server sent.
    Answer(Sdp),
    /// A trickled ICE candidate.
    Candidate(IceCandidate),
    /// Mute (`true`) or unmute (`false`) a track.
    Mute {
        /// Which track.
        track: Track,
        /// Muted or not.
        muted: bool,
    },
    /// Screen share on (`true`) or off (`false`).
    ScreenShare {
        /// On or off.
        on: bool,
    },
}

/// The calls server's answer to a [`Request`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reply {
    /// Accepted; the peer gets `ack` (when it sent an id) and, for joins, mutes and
    /// screen shares, the room gets the matching participant event.
    Accept,
    /// Accepted, with an SDP answer for the peer (in place of `ack`; for a join, as an
    /// `answer` message right after `joined`).
    Answer(Sdp),
    /// Accepted, with an SDP offer for the peer (in place of `ack`; for a join, as an
    /// `offer` message right after `joined`).
    Offer(Sdp),
    /// Refused; the peer gets an `error` with code `rejected` and this message.
    Reject(String),
}

/// A plain HTTP `GET` (or `HEAD`) that reached the signaling address without asking for a
/// WebSocket upgrade: how the calls server serves its web page from the same HTTPS origin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpGet {
    /// The path, as sent (starts with `/`; not percent-decoded).
    pub path: String,
    /// The query after `?`, if any.
    pub query: Option<String>,
    /// The remote socket address.
    pub remote: SocketAddr,
}

/// The calls server's answer to an [`HttpGet`]. The signaling server adds the security
/// headers (a strict `Content-Security-Policy` allowing only same-origin scripts, styles
/// and connections, `X-Content-Type-Options: nosniff`, `Cache-Control: no-store`,
/// `Referrer-Policy: no-referrer`, framing refused) and closes the connection after it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// The `Content-Type`.
    pub content_type: &'static str,
    /// The body.
    pub body: Cow<'static, [u8]>,
}

impl HttpResponse {
    /// `200 OK` with `body`.
    pub fn ok(content_type: &'static str, body: impl Into<Cow<'static, [u8]>>) -> Self {
        Self {
            status: 200,
            content_type,
            body: body.into(),
        }
    }

    /// A plain-text response with status `status`.
    pub fn text(status: u16, body: impl Into<Cow<'static, [u8]>>) -> Self {
        Self {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.into(),
        }
    }
}

/// The calls server side of signaling.
///
/// Implementations must be cheap to call concurrently: one connection awaits its own
/// request before reading its next message, but different connections call in parallel.
/// A request not answered within `Limits::handler_timeout` gets an `internal` error, and
/// a revocation or shutdown interrupts a request in progress (its future is dropped).
/// Key per-peer state by [`Peer::connection`]: [`CallHandler::disconnected`] comes once
/// per connection, whatever happened to its last request.
pub trait CallHandler: Send + Sync + 'static {
    /// Handles one request from an authenticated peer.
    fn handle(&self, peer: &Peer, request: Request) -> impl Future<Output = Reply> + Send;

    /// Called once when an authenticated connection ends, for any reason (with
    /// [`CloseReason::Revoked`] on revocation, within milliseconds of it). The calls
    /// server drops the peer's media here.
    fn disconnected(&self, peer: &Peer, reason: CloseReason) -> impl Future<Output = ()> + Send {
        let _ = (peer, reason);
        async {}
    }

    /// Whether the peer's media shows it is still there, asked when its connection has
    /// been silent (no message, no WebSocket ping or pong) for `Limits::idle_timeout`:
    /// `true` keeps the connection open for another `idle_timeout`, `false` closes it with
    /// 4015 `idle timeout`. A calls server answers from its transport, e.g. "DTLS is up and
    /// an authenticated packet arrived within `within`" (`within` is the idle timeout), so
    /// that a call whose signaling is quiet but whose media flows is never cut. The
    /// default, for servers without media, is `false`: silence closes.
    fn media_alive(&self, peer: &Peer, within: Duration) -> impl Future<Output = bool> + Send {
        let _ = (peer, within);
        async { false }
    }

    /// Answers a plain HTTP `GET`/`HEAD` on the signaling address (one that does not ask
    /// for a WebSocket upgrade), e.g. with a web page; `None` is `404 Not Found`. It runs
    /// within the handshake timeout and before any authentication: serve only what anyone
    /// may fetch.
    fn http_get(&self, request: &HttpGet) -> impl Future<Output = Option<HttpResponse>> + Send {
        let _ = request;
        async { None }
    }
}
