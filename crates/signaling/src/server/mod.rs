//! The WebSocket server: accept, TLS, HTTP upgrade checks, authentication, sessions,
//! limits, rooms, revocation.
//!
//! - this module: the public [`Server`] handle, its errors and the state all tasks share;
//! - `admission`: TCP accept, connection limits, handshake slots, TLS and the upgrade;
//! - `upgrade`: reading the HTTP request head, the checks on the upgrade request;
//! - `http`: plain `GET`s (no upgrade), answered by the handler's page;
//! - `registry`: authenticated connections, rooms, room-event budgets, broadcast;
//! - `outbox`: one connection's outbound queue (coalescing, slow-consumer rule);
//! - `session`: one authenticated connection's life.
//!
//! The submodules take this module's imports with `use super::*`.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::{FutureExt as _, SinkExt as _, StreamExt as _};
use rustls_pki_types::CertificateDer;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::{Instant, sleep, sleep_until, timeout};
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::server::{Request as HttpRequest, Response};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};
use tracing::{debug, info, warn};

mod admission;
mod http;
mod outbox;
mod registry;
mod session;
mod upgrade;

use self::admission::*;
use self::outbox::{EventKey, Outbox, Slot};
use self::registry::*;
use self::session::*;
use self::upgrade::{Replay, check_upgrade, read_head, request_line, wants_upgrade};
use crate::audit::AUDIT_TARGET;
use crate::close::CloseReason;
use crate::config::{Limits, ServerConfig, Transport};
use crate::handler::{CallHandler, ConnectionId, Peer, Reply, Request};
use crate::limits::TokenBucket;
use crate::protocol::{
    ClientMessage, DecodeLimits, ErrorCode, ServerEnvelope, ServerMessage, decode_client_message,
};
use crate::store::{RevocationKind, RevocationStore, StoreError};
use crate::tls::{self, TlsError};
use crate::token::{Claims, KeyError, TokenError, TokenValidator};

/// Time allowed for writing one message to a peer before it counts as a slow consumer.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// "Never" for timers that are switched off (about thirty years).
const FAR_FUTURE: Duration = Duration::from_secs(30 * 365 * 24 * 3600);
/// Rate-limit violations older than this are forgiven.
const VIOLATION_MEMORY: Duration = Duration::from_secs(10);
/// At most one audit line per this interval for connections dropped at accept.
const DROP_LINE_INTERVAL: Duration = Duration::from_secs(1);
/// Time allowed for the closing handshake after the server sent its close frame.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// Why [`Server::start`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// Plain `ws://` was asked for on a non-loopback address.
    #[error("plaintext WebSocket is only allowed on a loopback address, not {0}")]
    PlaintextNotLoopback(SocketAddr),
    /// A limit is zero where that makes no sense.
    #[error("invalid limit: {0}")]
    InvalidLimits(&'static str),
    /// The token key is unusable.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// TLS setup failed.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The revocation store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Binding the listener failed.
    #[error("binding {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The error.
        source: std::io::Error,
    },
}

/// Why [`Server::send`] failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// No authenticated connection has this id (any more).
    #[error("connection not found")]
    NotConnected,
    /// The connection stopped reading (its outbound queue stood full past
    /// `slow_consumer_grace`, or reached its hard bound); it is being closed (1013).
    #[error("connection outbound queue full")]
    QueueFull,
}

/// A running signaling server. Cloning gives another handle to the same server.
/// Dropping the handles does not stop it; [`Server::shutdown`] does.
#[derive(Clone)]
pub struct Server {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("local_addr", &self.shared.local_addr)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Opens the revocation store, sets up TLS, binds the listener and starts accepting.
    /// `handler` receives every authenticated request.
    ///
    /// # Errors
    /// See [`StartError`].
    pub async fn start<H: CallHandler>(
        config: ServerConfig,
        handler: H,
    ) -> Result<Self, StartError> {
        if matches!(config.transport, Transport::PlaintextLoopback)
            && !config.listen.ip().is_loopback()
        {
            return Err(StartError::PlaintextNotLoopback(config.listen));
        }
        check_limits(&config.limits)?;
        let validator = TokenValidator::new(&config.auth)?;
        let tls = tls::server_tls(&config.transport)?;
        let store = RevocationStore::open(&config.revocation_store)?;
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| StartError::Bind {
                    addr: config.listen,
                    source,
                })?;
        let local_addr = listener.local_addr().map_err(|source| StartError::Bind {
            addr: config.listen,
            source,
        })?;
        let limits = config.limits;
        let hard_cap = limits.max_message_size.saturating_mul(4);
        let ws_config = WebSocketConfig::default()
            .read_buffer_size(8 * 1024)
            .write_buffer_size(0)
            .max_message_size(Some(hard_cap))
            .max_frame_size(Some(hard_cap));
        let (shutdown, shutdown_rx) = watch::channel(false);
        let (certificate, acceptor) = match tls {
            Some(t) => (t.self_signed, Some(TlsAcceptor::from(t.config))),
            None => (None, None),
        };
        let shared = Arc::new(Shared {
            pending: Arc::new(Semaphore::new(
                limits.max_pending_handshakes.min(Semaphore::MAX_PERMITS),
            )),
            refusing: Arc::new(Semaphore::new(refusal_slots(&limits))),
            decode: DecodeLimits {
                max_message_size: limits.max_message_size,
                max_sdp_size: limits.max_sdp_size,
            },
            limits,
            allowed_origins: config.allowed_origins,
            validator,
            acceptor,
            certificate,
            local_addr,
            ws_config,
            state: Mutex::new(State::default()),
            store: Arc::new(store),
            next_id: AtomicU64::new(1),
            shutdown,
        });
        tokio::spawn(accept_loop(
            Arc::clone(&shared),
            Arc::new(handler),
            listener,
            shutdown_rx,
        ));
        Ok(Self { shared })
    }

    /// The address the server listens on.
    #[must_use]
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local_addr
    }

    /// The generated certificate when the transport is [`Transport::TlsSelfSigned`];
    /// clients pass it to [`crate::ClientConfig`] as the root to trust.
    #[must_use]
    pub fn certificate_der(&self) -> Option<CertificateDer<'static>> {
        self.shared.certificate.clone()
    }

    /// Revokes a session: persists it (fsync), closes its live sockets with 4012 and a
    /// `session_revoked` message, and the calls server gets
    /// [`CallHandler::disconnected`] with [`CloseReason::Revoked`]. New connections with
    /// that session id are refused from now on, also after a restart.
    ///
    /// Returns how many live connections are being closed.
    ///
    /// # Errors
    /// When the revocation could not be persisted; nothing is closed then.
    pub async fn revoke_session(&self, session_id: &str) -> Result<usize, StoreError> {
        self.revoke(RevocationKind::Session, session_id).await
    }

    /// Revokes every token of a user issued up to now: persists it, closes all the
    /// user's live sockets like [`Server::revoke_session`], and from now on refuses the
    /// user's tokens whose `iat` (else `nbf`) is at or before this second plus the
    /// clock-skew leeway ([`crate::AuthConfig::leeway`]), so the host can let the user
    /// back in later with a freshly issued token.
    ///
    /// # Errors
    /// When the revocation could not be persisted; nothing is closed then.
    pub async fn revoke_user(&self, user_id: &str) -> Result<usize, StoreError> {
        self.revoke(RevocationKind::User, user_id).await
    }

    async fn revoke(&self, kind: RevocationKind, id: &str) -> Result<usize, StoreError> {
        let at = unix_now();
        let store = Arc::clone(&self.shared.store);
        let owned = id.to_owned();
        tokio::task::spawn_blocking(move || store.revoke(kind, &owned, at))
            .await
            .map_err(|e| StoreError::Io {
                path: std::path::PathBuf::new(),
                source: std::io::Error::other(e.to_string()),
            })??;
        // The record is durable; now close whatever matches. A connection registering
        // concurrently either saw the record (refused) or is in `conns` by now.
        let mut closed = 0;
        let state = lock(&self.shared.state);
        for live in state.conns.values() {
            let hit = match kind {
                RevocationKind::Session => live.session_id == id,
                // Every live socket of the user predates the revocation.
                RevocationKind::User => &*live.user_id == id,
            };
            if hit {
                live.close(CloseReason::Revoked);
                closed += 1;
            }
        }
        drop(state);
        let kind = match kind {
            RevocationKind::Session => "session",
            RevocationKind::User => "user",
        };
        info!(target: AUDIT_TARGET, event = "revocation", kind, id, closed);
        Ok(closed)
    }

    /// Queues a message for one connection (server-initiated offer, candidate, ...).
    ///
    /// # Errors
    /// When the connection is gone or its queue is full.
    pub fn send(&self, connection: ConnectionId, message: ServerMessage) -> Result<(), SendError> {
        self.shared.send(connection, message)
    }

    /// Authenticated connections now.
    #[must_use]
    pub fn connection_count(&self) -> usize {
        lock(&self.shared.state).conns.len()
    }

    /// Participants in `room` now.
    #[must_use]
    pub fn room_size(&self, room: &str) -> usize {
        lock(&self.shared.state)
            .rooms
            .get(room)
            .map_or(0, |r| r.members.len())
    }

    /// Stops accepting, closes every connection with 1001 and waits (up to two seconds)
    /// for them to finish.
    pub async fn shutdown(&self) {
        self.shared.shutdown.send_replace(true);
        for live in lock(&self.shared.state).conns.values() {
            live.close(CloseReason::Shutdown);
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        while lock(&self.shared.state).open > 0 && Instant::now() < deadline {
            sleep(Duration::from_millis(10)).await;
        }
    }
}

fn check_limits(l: &Limits) -> Result<(), StartError> {
    let checks = [
        (l.message_burst == 0, "message_burst"),
        (
            l.max_connections_per_address == 0,
            "max_connections_per_address",
        ),
        (l.max_connections == 0, "max_connections"),
        (l.max_pending_handshakes == 0, "max_pending_handshakes"),
        (l.max_message_size < 256, "max_message_size (at least 256)"),
        (
            l.max_participants_per_room == 0,
            "max_participants_per_room",
        ),
        (l.outbound_queue == 0, "outbound_queue"),
        (l.max_connections_per_user == 0, "max_connections_per_user"),
        (
            l.max_connections_per_session == 0,
            "max_connections_per_session",
        ),
        (
            l.room_event_burst_per_user == 0,
            "room_event_burst_per_user",
        ),
        (
            l.room_event_burst_per_room == 0,
            "room_event_burst_per_room",
        ),
    ];
    match checks.iter().find(|(bad, _)| *bad) {
        Some((_, name)) => Err(StartError::InvalidLimits(name)),
        None => Ok(()),
    }
}

// ---------------------------------------------------------------------------------------
// Shared state

struct Shared {
    limits: Limits,
    decode: DecodeLimits,
    allowed_origins: Vec<String>,
    validator: TokenValidator,
    acceptor: Option<TlsAcceptor>,
    certificate: Option<CertificateDer<'static>>,
    local_addr: SocketAddr,
    ws_config: WebSocketConfig,
    /// Handshake slots of admitted connections.
    pending: Arc<Semaphore>,
    /// Handshake slots of connections refused over the connection limits.
    refusing: Arc<Semaphore>,
    state: Mutex<State>,
    store: Arc<RevocationStore>,
    next_id: AtomicU64,
    shutdown: watch::Sender<bool>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
