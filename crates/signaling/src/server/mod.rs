//! The WebSocket server: accept, TLS, HTTP upgrade checks, authentication, sessions,
//! limits, rooms, revocation.

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

mod outbox;
mod upgrade;

use self::outbox::{EventKey, Outbox, Slot};
use self::upgrade::{RequestLineTap, check_upgrade};
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

/// Handshakes at once of connections refused over the connection limits: an eighth of
/// `max_pending_handshakes`, at least one.
fn refusal_slots(limits: &Limits) -> usize {
    (limits.max_pending_handshakes / 8).clamp(1, Semaphore::MAX_PERMITS)
}

#[derive(Default)]
struct State {
    /// Admitted TCP connections (handshaking or authenticated).
    open: usize,
    /// Admitted connections per [`address_key`].
    per_address: HashMap<IpAddr, usize>,
    conns: HashMap<ConnectionId, Live>,
    /// Authenticated connections and room-event budget per user id.
    per_user: HashMap<String, User>,
    /// Authenticated connections per session id.
    per_session: HashMap<String, usize>,
    rooms: HashMap<String, Room>,
}

/// A user with at least one authenticated connection.
struct User {
    connections: usize,
    /// Room events (joins, mute/unmute, screen share) of all the user's connections.
    events: TokenBucket,
}

/// A room with at least one member.
struct Room {
    members: Vec<ConnectionId>,
    /// Room events of all members together.
    events: TokenBucket,
}

/// Which room-event budget ran out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum EventLimit {
    /// The sender's own: counts as a rate violation of the connection.
    User,
    /// The room's, shared by all members.
    Room,
}

/// Why a join was refused before the calls server heard of it.
enum JoinRefusal {
    Full,
    Rate(EventLimit),
}

/// Counts `key` up or down by one, forgetting keys that reach zero; returns the new count.
fn count(map: &mut HashMap<String, usize>, key: &str, up: bool) -> usize {
    if up {
        let n = map.entry(key.to_owned()).or_insert(0);
        *n += 1;
        return *n;
    }
    match map.get_mut(key) {
        Some(n) if *n > 1 => {
            *n -= 1;
            *n
        }
        Some(_) => {
            map.remove(key);
            0
        }
        None => 0,
    }
}

/// What the registry knows about an authenticated connection.
struct Live {
    user_id: Arc<str>,
    session_id: String,
    room: Option<String>,
    /// Server-initiated messages, already encoded (a broadcast encodes once for all).
    outbox: Arc<Outbox>,
    kill: watch::Sender<Option<CloseReason>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Live {
    /// Asks the connection to close. The first reason stays, except that a revocation
    /// replaces any other: the calls server and the audit log must learn of it even when
    /// the peer's queue filled up or shutdown began just before.
    fn close(&self, reason: CloseReason) {
        self.kill.send_if_modified(|current| {
            let replace = current.is_none() || reason == CloseReason::Revoked;
            if replace {
                *current = Some(reason);
            }
            replace
        });
    }
}

/// Queues `text` for `live`; a reader that stopped reading is marked a slow consumer to
/// be closed (see [`outbox`]).
fn deliver(live: &Live, key: Option<EventKey>, text: Utf8Bytes) -> bool {
    match live.outbox.push(key, text, Instant::now()) {
        Ok(()) => true,
        Err(outbox::Overflow::Slow) => {
            live.close(CloseReason::SlowConsumer);
            false
        }
    }
}

/// Counts one admitted TCP connection against the limits until dropped.
struct Admission {
    shared: Arc<Shared>,
    ip: IpAddr,
}

#[derive(Clone, Copy)]
enum Refusal {
    Total,
    PerAddress,
}

/// What connections are counted under for `max_connections_per_address`: the IPv4
/// address, or the IPv6 /64 prefix (the smallest block one subscriber gets, RFC 6177 §2,
/// so a host cannot step around the limit by cycling through its interface ids). An
/// IPv4-mapped IPv6 address counts as its IPv4 address.
fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !u128::from(u64::MAX))),
        },
    }
}

impl Admission {
    fn try_new(shared: &Arc<Shared>, ip: IpAddr) -> Result<Self, Refusal> {
        let ip = address_key(ip);
        let mut state = lock(&shared.state);
        if state.open >= shared.limits.max_connections {
            return Err(Refusal::Total);
        }
        let n = state.per_address.entry(ip).or_insert(0);
        if *n >= shared.limits.max_connections_per_address {
            return Err(Refusal::PerAddress);
        }
        *n += 1;
        state.open += 1;
        Ok(Self {
            shared: Arc::clone(shared),
            ip,
        })
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        let mut state = lock(&self.shared.state);
        state.open = state.open.saturating_sub(1);
        if let Some(n) = state.per_address.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                state.per_address.remove(&self.ip);
            }
        }
    }
}

impl Shared {
    /// Checks revocation and shutdown and registers, atomically with respect to
    /// [`Server::revoke`] and [`Server::shutdown`] (which set their flag or record
    /// before they take the registry lock to close what is registered).
    fn register(&self, id: ConnectionId, claims: &Claims, live: Live) -> Result<(), CloseReason> {
        let mut state = lock(&self.state);
        if *self.shutdown.borrow() {
            return Err(CloseReason::Shutdown);
        }
        if self.is_revoked(claims) {
            return Err(CloseReason::Auth(TokenError::Revoked));
        }
        // One insider must not multiply their share of every room by opening many
        // connections: bounded per user and per session.
        let users = state
            .per_user
            .get(&claims.user_id)
            .map_or(0, |u| u.connections);
        let sessions = state
            .per_session
            .get(&claims.session_id)
            .copied()
            .unwrap_or(0);
        if users >= self.limits.max_connections_per_user
            || sessions >= self.limits.max_connections_per_session
        {
            return Err(CloseReason::TooManyConnections);
        }
        let limits = &self.limits;
        state
            .per_user
            .entry(claims.user_id.clone())
            .or_insert_with(|| User {
                connections: 0,
                events: TokenBucket::new(
                    limits.room_events_per_second_per_user,
                    limits.room_event_burst_per_user,
                    Instant::now(),
                ),
            })
            .connections += 1;
        count(&mut state.per_session, &claims.session_id, true);
        state.conns.insert(id, live);
        Ok(())
    }

    /// Whether `claims` are revoked. A user revocation also covers tokens stamped up to
    /// the clock-skew leeway after it: the issuer's clock may run ahead of ours, and a
    /// token minted just before the revocation must not get through.
    fn is_revoked(&self, claims: &Claims) -> bool {
        let issued = claims
            .issued()
            .saturating_sub(self.validator.leeway().as_secs());
        self.store
            .is_revoked(&claims.user_id, &claims.session_id, issued)
    }

    /// Queues a server-initiated message (no `id`) for one connection.
    fn send(&self, connection: ConnectionId, message: ServerMessage) -> Result<(), SendError> {
        let state = lock(&self.state);
        let live = state
            .conns
            .get(&connection)
            .ok_or(SendError::NotConnected)?;
        deliver(
            live,
            None,
            ServerEnvelope::new(None, message).encode().into(),
        )
        .then_some(())
        .ok_or(SendError::QueueFull)
    }

    /// Removes the connection and its room membership; tells the room.
    fn unregister(&self, id: ConnectionId) {
        let mut state = lock(&self.state);
        let Some(live) = state.conns.remove(&id) else {
            return;
        };
        if let Some(user) = state.per_user.get_mut(&*live.user_id) {
            user.connections = user.connections.saturating_sub(1);
            if user.connections == 0 {
                state.per_user.remove(&*live.user_id);
            }
        }
        count(&mut state.per_session, &live.session_id, false);
        if let Some(room) = live.room {
            remove_member(&mut state, &room, id);
            broadcast(
                &state,
                &room,
                id,
                Slot::Membership,
                &live.user_id,
                &ServerMessage::ParticipantLeft {
                    room: room.clone(),
                    user_id: live.user_id.to_string(),
                },
            );
        }
    }

    /// Takes a place in `room` if it has one free and the user and the room have a room
    /// event left (a join is one).
    fn reserve_room(&self, id: ConnectionId, user_id: &str, room: &str) -> Result<(), JoinRefusal> {
        let now = Instant::now();
        let mut state = lock(&self.state);
        let State {
            rooms, per_user, ..
        } = &mut *state;
        if let Some(r) = rooms.get(room)
            && r.members.len() >= self.limits.max_participants_per_room
        {
            return Err(JoinRefusal::Full);
        }
        let r = rooms.entry(room.to_owned()).or_insert_with(|| Room {
            members: Vec::new(),
            events: room_bucket(&self.limits, now),
        });
        take_event(per_user.get_mut(user_id), r, now).map_err(JoinRefusal::Rate)?;
        r.members.push(id);
        if let Some(live) = state.conns.get_mut(&id) {
            live.room = Some(room.to_owned());
        }
        Ok(())
    }

    /// Takes one room event (mute/unmute, screen share) from the user's and the room's
    /// budgets, or neither.
    fn take_room_event(&self, user_id: &str, room: &str) -> Result<(), EventLimit> {
        let now = Instant::now();
        let mut state = lock(&self.state);
        let State {
            rooms, per_user, ..
        } = &mut *state;
        match rooms.get_mut(room) {
            Some(r) => take_event(per_user.get_mut(user_id), r, now),
            None => Ok(()),
        }
    }

    /// Gives the place back (join refused, or leave).
    fn release_room(&self, id: ConnectionId, room: &str) {
        let mut state = lock(&self.state);
        remove_member(&mut state, room, id);
        if let Some(live) = state.conns.get_mut(&id) {
            live.room = None;
        }
    }

    /// Announces `id` to the room and lists the others.
    fn announce_join(&self, id: ConnectionId, room: &str, user_id: &Arc<str>) -> Vec<String> {
        let state = lock(&self.state);
        broadcast(
            &state,
            room,
            id,
            Slot::Membership,
            user_id,
            &ServerMessage::ParticipantJoined {
                room: room.to_owned(),
                user_id: user_id.to_string(),
            },
        );
        state.rooms.get(room).map_or_else(Vec::new, |r| {
            r.members
                .iter()
                .filter(|&&m| m != id)
                .filter_map(|m| state.conns.get(m).map(|l| l.user_id.to_string()))
                .collect()
        })
    }

    /// Tells the room (but `from`) that `user_id` changed `slot`.
    fn broadcast(
        &self,
        room: &str,
        from: ConnectionId,
        slot: Slot,
        user_id: &Arc<str>,
        message: &ServerMessage,
    ) {
        broadcast(&lock(&self.state), room, from, slot, user_id, message);
    }
}

/// A room's event budget: at least `max_participants_per_room` in a burst, so that a
/// full room can join at once.
fn room_bucket(limits: &Limits, now: Instant) -> TokenBucket {
    let floor = u32::try_from(limits.max_participants_per_room).unwrap_or(u32::MAX);
    TokenBucket::new(
        limits.room_events_per_second_per_room,
        limits.room_event_burst_per_room.max(floor),
        now,
    )
}

/// Takes one event from the user's budget (when it has one: it always has while the
/// user is connected) and the room's, or from neither.
fn take_event(user: Option<&mut User>, room: &mut Room, now: Instant) -> Result<(), EventLimit> {
    let mut user = user.map(|u| &mut u.events);
    if let Some(bucket) = user.as_deref_mut()
        && !bucket.has_token(now)
    {
        return Err(EventLimit::User);
    }
    if !room.events.try_take(now) {
        return Err(EventLimit::Room);
    }
    if let Some(bucket) = user {
        bucket.try_take(now);
    }
    Ok(())
}

fn remove_member(state: &mut State, room: &str, id: ConnectionId) {
    if let Some(r) = state.rooms.get_mut(room) {
        r.members.retain(|&m| m != id);
        if r.members.is_empty() {
            state.rooms.remove(room);
        }
    }
}

/// Queues `message` (about `user_id`'s `slot`) for every member of `room` but `from`,
/// encoded once.
fn broadcast(
    state: &State,
    room: &str,
    from: ConnectionId,
    slot: Slot,
    user_id: &Arc<str>,
    message: &ServerMessage,
) {
    let Some(r) = state.rooms.get(room) else {
        return;
    };
    let text = Utf8Bytes::from(ServerEnvelope::new(None, message.clone()).encode());
    for member in r.members.iter().filter(|&&m| m != from) {
        if let Some(live) = state.conns.get(member) {
            let key = EventKey {
                user: Arc::clone(user_id),
                slot,
            };
            deliver(live, Some(key), text.clone());
        }
    }
}

// ---------------------------------------------------------------------------------------
// Accept and handshake

/// The byte stream under the WebSocket: TLS or (loopback only) plain TCP.
trait Io: AsyncRead + AsyncWrite + Send {}
impl<T: AsyncRead + AsyncWrite + Send> Io for T {}
type BoxIo = Pin<Box<dyn Io>>;
type Ws = WebSocketStream<BoxIo>;

async fn accept_loop<H: CallHandler>(
    shared: Arc<Shared>,
    handler: Arc<H>,
    listener: TcpListener,
    mut shutdown: watch::Receiver<bool>,
) {
    // Drops cost an attacker one TCP handshake each: audit them in one line per second
    // at most, with the count, so a connection flood is not also a log flood.
    let mut dropped: u64 = 0;
    let mut last_drop_line: Option<Instant> = None;
    loop {
        let (tcp, remote) = tokio::select! {
            _ = shutdown.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning; never exit.
                    warn!(error = %e, "accept failed");
                    sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let admission = Admission::try_new(&shared, remote.ip());
        // Connections over the connection limits get their HTTP refusal from a small pool
        // of their own: they must never hold the handshake slots admitted clients need
        // (else one address could starve everyone by opening stalled connections).
        let slots = if admission.is_ok() {
            &shared.pending
        } else {
            &shared.refusing
        };
        let Ok(permit) = Arc::clone(slots).try_acquire_owned() else {
            drop(tcp);
            dropped += 1;
            if last_drop_line.is_none_or(|t| t.elapsed() >= DROP_LINE_INTERVAL) {
                warn!(
                    target: AUDIT_TARGET, event = "limit", remote = %remote,
                    limit = "pending_handshakes", dropped
                );
                dropped = 0;
                last_drop_line = Some(Instant::now());
            }
            continue;
        };
        // Best effort: latency matters more than packet count for signaling.
        let _ = tcp.set_nodelay(true);
        tokio::spawn(run_connection(
            Arc::clone(&shared),
            Arc::clone(&handler),
            tcp,
            remote,
            admission,
            permit,
        ));
    }
}

async fn run_connection<H: CallHandler>(
    shared: Arc<Shared>,
    handler: Arc<H>,
    tcp: TcpStream,
    remote: SocketAddr,
    admission: Result<Admission, Refusal>,
    permit: OwnedSemaphorePermit,
) {
    let refusal = admission.as_ref().err().copied();
    let handshake = timeout(
        shared.limits.handshake_timeout,
        handshake(&shared, tcp, remote, refusal),
    )
    .await;
    drop(permit);
    let (ws, bearer) = match handshake {
        Ok(Ok(pair)) => pair,
        Ok(Err(e)) => {
            debug!(remote = %remote, error = %e, "handshake failed");
            return;
        }
        Err(_) => {
            warn!(target: AUDIT_TARGET, event = "limit", remote = %remote, limit = "handshake_timeout");
            return;
        }
    };
    // A refused admission never completes the upgrade, so this holds.
    let Ok(admission) = admission else { return };
    session(shared, handler, ws, remote, bearer).await;
    drop(admission);
}

#[derive(Debug, thiserror::Error)]
enum HandshakeError {
    #[error("tls: {0}")]
    Tls(std::io::Error),
    #[error("websocket: {0}")]
    Ws(#[from] WsError),
}

// tungstenite's callback signature fixes the error type (an HTTP response).
#[allow(clippy::result_large_err)]
async fn handshake(
    shared: &Shared,
    tcp: TcpStream,
    remote: SocketAddr,
    refusal: Option<Refusal>,
) -> Result<(Ws, Option<String>), HandshakeError> {
    let io: BoxIo = match &shared.acceptor {
        Some(acceptor) => Box::pin(acceptor.accept(tcp).await.map_err(HandshakeError::Tls)?),
        None => Box::pin(tcp),
    };
    let (io, request_line) = RequestLineTap::new(io);
    let io: BoxIo = Box::pin(io);
    let mut bearer = None;
    let callback = |request: &HttpRequest, response: Response| {
        let line = lock(&request_line).clone();
        check_upgrade(
            shared,
            remote,
            refusal,
            &line,
            request,
            response,
            &mut bearer,
        )
    };
    let ws = tokio_tungstenite::accept_hdr_async_with_config(io, callback, Some(shared.ws_config))
        .await?;
    Ok((ws, bearer))
}

// ---------------------------------------------------------------------------------------
// Session

/// Sends a close frame with `reason`, then waits briefly for the peer's close.
async fn close(ws: &mut Ws, reason: CloseReason) {
    let frame = CloseFrame {
        code: CloseCode::from(reason.code()),
        reason: reason.text().into(),
    };
    let _ = timeout(CLOSE_TIMEOUT, ws.close(Some(frame))).await;
}

async fn drain(ws: &mut Ws) {
    let _ = timeout(CLOSE_TIMEOUT, async {
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
}

async fn send(ws: &mut Ws, text: Utf8Bytes) -> bool {
    matches!(
        timeout(WRITE_TIMEOUT, ws.send(Message::Text(text))).await,
        Ok(Ok(()))
    )
}

/// Reads the first message, which must be `auth`: its token, or why the connection is
/// refused (invalid UTF-8, in a text or a binary frame, is 1007 as RFC 6455 §8.1 says).
async fn auth_message(ws: &mut Ws, limits: &DecodeLimits) -> Result<String, CloseReason> {
    let missing = CloseReason::Auth(TokenError::Missing);
    loop {
        let decoded = match ws.next().await {
            Some(Ok(Message::Text(t))) => decode_client_message(t.as_bytes(), limits),
            Some(Ok(Message::Binary(b))) => {
                if std::str::from_utf8(&b).is_err() {
                    return Err(CloseReason::InvalidUtf8);
                }
                decode_client_message(&b, limits)
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
            Some(Err(WsError::Utf8(_))) => return Err(CloseReason::InvalidUtf8),
            Some(Err(WsError::Capacity(_))) => return Err(CloseReason::MessageTooBig),
            None | Some(Ok(Message::Close(_)) | Err(_)) => return Err(missing),
        };
        return match decoded.map_err(|_| missing)?.message {
            ClientMessage::Auth { token } => Ok(token.0),
            _ => Err(missing),
        };
    }
}

async fn session<H: CallHandler>(
    shared: Arc<Shared>,
    handler: Arc<H>,
    mut ws: Ws,
    remote: SocketAddr,
    bearer: Option<String>,
) {
    let limits = &shared.limits;
    let (token, method) = match bearer {
        Some(t) => (t, "header"),
        None => {
            let mut shutdown = shared.shutdown.subscribe();
            let first = timeout(limits.auth_timeout, auth_message(&mut ws, &shared.decode));
            let first = tokio::select! {
                first = first => first,
                () = stopped(&mut shutdown) => {
                    close(&mut ws, CloseReason::Shutdown).await;
                    return;
                }
            };
            match first {
                Ok(Ok(t)) => (t, "message"),
                Ok(Err(reason)) => return refuse_auth(ws, remote, reason).await,
                Err(_) => return refuse_auth(ws, remote, CloseReason::AuthTimeout).await,
            }
        }
    };
    let claims = match shared.validator.validate(&token) {
        Ok(c) => c,
        Err(e) => return refuse_auth(ws, remote, CloseReason::Auth(e)).await,
    };
    drop(token);
    let id = ConnectionId(shared.next_id.fetch_add(1, Ordering::Relaxed));
    let outbox = Arc::new(Outbox::new(
        limits.outbound_queue,
        limits.slow_consumer_grace,
    ));
    let (kill, kill_rx) = watch::channel(None);
    let user: Arc<str> = claims.user_id.as_str().into();
    let live = Live {
        user_id: Arc::clone(&user),
        session_id: claims.session_id.clone(),
        room: None,
        outbox: Arc::clone(&outbox),
        kill,
    };
    match shared.register(id, &claims, live) {
        Ok(()) => {}
        Err(CloseReason::Shutdown) => return close(&mut ws, CloseReason::Shutdown).await,
        Err(reason) => return refuse_auth(ws, remote, reason).await,
    }
    // Unregisters on every exit path, panics included.
    let registration = Registration {
        shared: Arc::clone(&shared),
        id,
    };
    info!(
        target: AUDIT_TARGET, event = "auth_success", remote = %remote,
        user = %claims.user_id, session = %claims.session_id, method
    );
    let mut conn = Connection {
        peer: Peer {
            connection: id,
            user_id: claims.user_id.clone(),
            session_id: claims.session_id.clone(),
            remote,
            room: None,
        },
        bucket: TokenBucket::new(
            limits.messages_per_second,
            limits.message_burst,
            Instant::now(),
        ),
        rate_violations: 0,
        last_violation: Instant::now(),
        protocol_errors: 0,
        token_end: Box::pin(sleep_until(token_deadline(&shared, &claims))),
        claims,
        user,
        outbox,
        kill: kill_rx,
        shared: Arc::clone(&shared),
    };
    let welcome = ServerEnvelope::new(
        None,
        ServerMessage::Authenticated {
            user_id: conn.peer.user_id.clone(),
            session_id: conn.peer.session_id.clone(),
            rooms: conn.claims.rooms.clone(),
        },
    );
    let reason = if send(&mut ws, welcome.encode().into()).await {
        conn.run(&mut ws, &*handler).await
    } else {
        CloseReason::PeerClosed
    };

    // Teardown: registry and room first (so nothing more is routed here), then the
    // farewell to the peer and the notice to the calls server at the same time (a peer
    // that does not read must not delay the calls server), then the closing handshake.
    drop(registration);
    if let Some(room) = &conn.peer.room {
        info!(
            target: AUDIT_TARGET, event = "leave", remote = %remote, user = %conn.peer.user_id,
            session = %conn.peer.session_id, room = %room
        );
    }
    let level_warn = !matches!(reason, CloseReason::PeerClosed | CloseReason::Shutdown);
    if level_warn {
        warn!(
            target: AUDIT_TARGET, event = "disconnect", remote = %remote, user = %conn.peer.user_id,
            session = %conn.peer.session_id, reason = reason.as_str(), code = reason.code()
        );
    } else {
        info!(
            target: AUDIT_TARGET, event = "disconnect", remote = %remote, user = %conn.peer.user_id,
            session = %conn.peer.session_id, reason = reason.as_str(), code = reason.code()
        );
    }
    let farewell = async {
        if reason == CloseReason::Revoked {
            let revoked = ServerEnvelope::new(None, ServerMessage::SessionRevoked);
            let _ = timeout(CLOSE_TIMEOUT, ws.send(Message::text(revoked.encode()))).await;
        }
        if reason != CloseReason::PeerClosed {
            close(&mut ws, reason).await;
        }
    };
    let notice = timeout(
        limits.handler_timeout,
        contain(handler.disconnected(&conn.peer, reason)),
    );
    let _ = tokio::join!(farewell, notice);
    drain(&mut ws).await;
}

/// Removes an authenticated connection from the registry when dropped.
struct Registration {
    shared: Arc<Shared>,
    id: ConnectionId,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.shared.unregister(self.id);
    }
}

/// Runs a calls-server future, turning a panic into `None` so one faulty request cannot
/// leave a connection half torn down.
async fn contain<F: Future>(future: F) -> Option<F::Output> {
    std::panic::AssertUnwindSafe(future)
        .catch_unwind()
        .await
        .ok()
}

async fn refuse_auth(mut ws: Ws, remote: SocketAddr, reason: CloseReason) {
    warn!(target: AUDIT_TARGET, event = "auth_failure", remote = %remote, reason = reason.as_str());
    close(&mut ws, reason).await;
    drain(&mut ws).await;
}

/// One authenticated connection's loop state.
struct Connection {
    peer: Peer,
    claims: Claims,
    /// `peer.user_id`, shared with the registry and the events about this user.
    user: Arc<str>,
    outbox: Arc<Outbox>,
    bucket: TokenBucket,
    rate_violations: u32,
    last_violation: Instant,
    protocol_errors: u32,
    kill: watch::Receiver<Option<CloseReason>>,
    /// Fires at token expiry when `close_at_token_expiry` is on.
    token_end: Pin<Box<tokio::time::Sleep>>,
    shared: Arc<Shared>,
}

enum Step {
    Continue,
    Reply(ServerEnvelope),
    /// A server-initiated message from the outbound queue, already encoded.
    Queued(Utf8Bytes),
    Close(CloseReason),
}

impl Connection {
    async fn run<H: CallHandler>(&mut self, ws: &mut Ws, handler: &H) -> CloseReason {
        let limits = self.shared.limits.clone();
        let session_end = sleep_until(after(limits.max_session_length));
        let idle = sleep_until(after(limits.idle_timeout));
        tokio::pin!(session_end, idle);
        let outbox = Arc::clone(&self.outbox);
        loop {
            let step = tokio::select! {
                biased;
                reason = killed(&mut self.kill) => Step::Close(reason),
                () = &mut session_end => Step::Close(CloseReason::SessionExpired),
                () = &mut idle => Step::Close(CloseReason::IdleTimeout),
                () = &mut self.token_end => Step::Close(CloseReason::Auth(TokenError::Expired)),
                text = outbox.next() => Step::Queued(text),
                incoming = ws.next() => {
                    match incoming {
                        None => Step::Close(CloseReason::PeerClosed),
                        Some(Err(WsError::Capacity(_))) => Step::Close(CloseReason::MessageTooBig),
                        Some(Err(WsError::Utf8(_))) => Step::Close(CloseReason::InvalidUtf8),
                        Some(Err(_)) | Some(Ok(Message::Close(_))) => Step::Close(CloseReason::PeerClosed),
                        // Control frames cost a read and (pings) a write too: rate-limited
                        // like messages, but they do not count as activity.
                        Some(Ok(Message::Ping(_) | Message::Pong(_))) => {
                            if self.bucket.try_take(Instant::now()) { Step::Continue } else { self.rate_limited() }
                        }
                        // Only ever produced when sending.
                        Some(Ok(Message::Frame(_))) => Step::Continue,
                        Some(Ok(Message::Text(t))) => {
                            idle.as_mut().reset(after(limits.idle_timeout));
                            self.on_message(t.as_bytes(), handler).await
                        }
                        Some(Ok(Message::Binary(b))) => {
                            idle.as_mut().reset(after(limits.idle_timeout));
                            self.on_message(&b, handler).await
                        }
                    }
                }
            };
            let text = match step {
                Step::Continue => continue,
                Step::Reply(env) => env.encode().into(),
                Step::Queued(text) => text,
                Step::Close(reason) => return reason,
            };
            // A peer that stops reading must not delay a revocation.
            tokio::select! {
                sent = send(ws, text) => if sent {
                    // Any write that completes shows the peer is reading.
                    self.outbox.written(Instant::now());
                } else {
                    return CloseReason::SlowConsumer;
                },
                reason = killed(&mut self.kill) => return reason,
            }
        }
    }

    fn rate_limited(&mut self) -> Step {
        // Violations count towards closing only while they keep coming: ten quiet
        // seconds forgive them, so an occasional burst never adds up to a close.
        let now = Instant::now();
        if now.saturating_duration_since(self.last_violation) > VIOLATION_MEMORY {
            self.rate_violations = 0;
        }
        self.last_violation = now;
        self.rate_violations = self.rate_violations.saturating_add(1);
        if self.rate_violations == 1 {
            warn!(
                target: AUDIT_TARGET, event = "limit", remote = %self.peer.remote,
                user = %self.peer.user_id, limit = "messages_per_second"
            );
        }
        if self.rate_violations > self.shared.limits.max_rate_violations {
            return Step::Close(CloseReason::RateLimited);
        }
        Step::Reply(ServerEnvelope::error(
            None,
            ErrorCode::RateLimited,
            "too many messages; dropped",
        ))
    }

    /// A room event over the user's or the room's budget: dropped and answered. Only the
    /// user's own budget counts towards closing the connection; the room's is shared,
    /// and others spending it is not this connection's fault.
    fn event_limited(&mut self, id: Option<u64>, limit: EventLimit) -> Step {
        let step = match limit {
            EventLimit::User => self.rate_limited(),
            EventLimit::Room => Step::Reply(ServerEnvelope::error(
                None,
                ErrorCode::RateLimited,
                "too many room events",
            )),
        };
        step.with_id(id)
    }

    fn protocol_error(&mut self, reply: ServerEnvelope) -> Step {
        self.protocol_errors = self.protocol_errors.saturating_add(1);
        if self.protocol_errors > self.shared.limits.max_protocol_errors {
            warn!(
                target: AUDIT_TARGET, event = "limit", remote = %self.peer.remote,
                user = %self.peer.user_id, limit = "max_protocol_errors"
            );
            return Step::Close(CloseReason::TooManyErrors);
        }
        Step::Reply(reply)
    }

    async fn on_message<H: CallHandler>(&mut self, payload: &[u8], handler: &H) -> Step {
        if !self.bucket.try_take(Instant::now()) {
            return self.rate_limited();
        }
        if payload.len() > self.shared.limits.max_message_size {
            warn!(
                target: AUDIT_TARGET, event = "limit", remote = %self.peer.remote,
                user = %self.peer.user_id, limit = "max_message_size"
            );
        }
        let env = match decode_client_message(payload, &self.shared.decode) {
            Ok(env) => env,
            Err(e) => return self.protocol_error(e.to_reply()),
        };
        let id = env.id;
        let request = match env.message {
            ClientMessage::Ping => {
                return Step::Reply(ServerEnvelope::new(id, ServerMessage::Pong));
            }
            ClientMessage::Auth { token } => return self.refresh(id, &token.0),
            ClientMessage::Join { room } => return self.join(id, room, handler).await,
            ClientMessage::Leave => return self.leave(id, handler).await,
            ClientMessage::Offer { sdp } => Request::Offer(sdp),
            ClientMessage::Answer { sdp } => Request::Answer(sdp),
            ClientMessage::Candidate(c) => Request::Candidate(c),
            ClientMessage::Mute { track } => Request::Mute { track, muted: true },
            ClientMessage::Unmute { track } => Request::Mute {
                track,
                muted: false,
            },
            ClientMessage::ScreenShareOn => Request::ScreenShare { on: true },
            ClientMessage::ScreenShareOff => Request::ScreenShare { on: false },
        };
        // Borrowed: offers and candidates, the bulk of the traffic, need no copy of it.
        let Some(room) = &self.peer.room else {
            return Step::Reply(ServerEnvelope::error(
                id,
                ErrorCode::NotJoined,
                "join a room first",
            ));
        };
        let event = match &request {
            Request::Mute { track, muted } => Some((
                Slot::Track(*track),
                ServerMessage::ParticipantMuted {
                    room: room.clone(),
                    user_id: self.peer.user_id.clone(),
                    track: *track,
                    muted: *muted,
                },
            )),
            Request::ScreenShare { on } => Some((
                Slot::ScreenShare,
                ServerMessage::ParticipantScreenShare {
                    room: room.clone(),
                    user_id: self.peer.user_id.clone(),
                    on: *on,
                },
            )),
            _ => None,
        };
        // Room events are limited per user and per room too, not only per connection:
        // more connections must not buy a bigger share of every member's queue.
        if event.is_some()
            && let Err(limit) = self.shared.take_room_event(&self.peer.user_id, room)
        {
            return self.event_limited(id, limit);
        }
        match self.ask(handler, request).await {
            Err(step) => step.with_id(id),
            Ok(Reply::Accept) => {
                // The handler cannot change the room; it is the one the event names.
                if let (Some((slot, event)), Some(room)) = (event, &self.peer.room) {
                    self.shared
                        .broadcast(room, self.peer.connection, slot, &self.user, &event);
                }
                if id.is_some() {
                    Step::Reply(ServerEnvelope::new(id, ServerMessage::Ack))
                } else {
                    Step::Continue
                }
            }
            Ok(Reply::Answer(sdp)) => {
                Step::Reply(ServerEnvelope::new(id, ServerMessage::Answer { sdp }))
            }
            Ok(Reply::Offer(sdp)) => {
                Step::Reply(ServerEnvelope::new(id, ServerMessage::Offer { sdp }))
            }
            Ok(Reply::Reject(message)) => Step::Reply(rejected(id, message)),
        }
    }

    /// An `auth` message on an authenticated connection: a fresh token for the same user
    /// and session replaces the old one (and its expiry). An invalid one closes the
    /// connection like at connect time.
    fn refresh(&mut self, id: Option<u64>, token: &str) -> Step {
        let claims = match self.shared.validator.validate(token) {
            Ok(c) => c,
            Err(e) => {
                warn!(
                    target: AUDIT_TARGET, event = "auth_failure", remote = %self.peer.remote,
                    user = %self.peer.user_id, reason = e.as_str(), method = "refresh"
                );
                return Step::Close(CloseReason::Auth(e));
            }
        };
        if claims.user_id != self.peer.user_id || claims.session_id != self.peer.session_id {
            return self.protocol_error(ServerEnvelope::error(
                id,
                ErrorCode::InvalidState,
                "token is for another user or session",
            ));
        }
        if self.shared.is_revoked(&claims) {
            return Step::Close(CloseReason::Revoked);
        }
        if self
            .peer
            .room
            .as_ref()
            .is_some_and(|room| !claims.allows_room(room))
        {
            return Step::Close(CloseReason::WrongRoom);
        }
        self.token_end
            .as_mut()
            .reset(token_deadline(&self.shared, &claims));
        info!(
            target: AUDIT_TARGET, event = "auth_success", remote = %self.peer.remote,
            user = %claims.user_id, session = %claims.session_id, method = "refresh"
        );
        let reply = ServerMessage::Authenticated {
            user_id: claims.user_id.clone(),
            session_id: claims.session_id.clone(),
            rooms: claims.rooms.clone(),
        };
        self.claims = claims;
        Step::Reply(ServerEnvelope::new(id, reply))
    }

    /// Calls the handler with the timeout; a revocation or shutdown meanwhile wins.
    async fn ask<H: CallHandler>(&mut self, handler: &H, request: Request) -> Result<Reply, Step> {
        let failed =
            |detail: &str| Step::Reply(ServerEnvelope::error(None, ErrorCode::Internal, detail));
        let call = timeout(
            self.shared.limits.handler_timeout,
            contain(handler.handle(&self.peer, request)),
        );
        tokio::select! {
            reason = killed(&mut self.kill) => Err(Step::Close(reason)),
            reply = call => match reply {
                Ok(Some(reply)) => Ok(reply),
                Ok(None) => Err(failed("calls server failed")),
                Err(_) => Err(failed("calls server did not answer")),
            },
        }
    }

    async fn join<H: CallHandler>(&mut self, id: Option<u64>, room: String, handler: &H) -> Step {
        if self.peer.room.is_some() {
            return Step::Reply(ServerEnvelope::error(
                id,
                ErrorCode::InvalidState,
                "already in a room",
            ));
        }
        if !self.claims.allows_room(&room) {
            warn!(
                target: AUDIT_TARGET, event = "auth_failure", remote = %self.peer.remote,
                user = %self.peer.user_id, reason = CloseReason::WrongRoom.as_str()
            );
            return Step::Close(CloseReason::WrongRoom);
        }
        match self
            .shared
            .reserve_room(self.peer.connection, &self.peer.user_id, &room)
        {
            Ok(()) => {}
            Err(JoinRefusal::Full) => {
                warn!(
                    target: AUDIT_TARGET, event = "limit", remote = %self.peer.remote,
                    user = %self.peer.user_id, limit = "max_participants_per_room"
                );
                return Step::Reply(ServerEnvelope::error(
                    id,
                    ErrorCode::RoomFull,
                    "room is full",
                ));
            }
            Err(JoinRefusal::Rate(limit)) => return self.event_limited(id, limit),
        }
        self.peer.room = Some(room.clone());
        let reply = match self
            .ask(handler, Request::Join { room: room.clone() })
            .await
        {
            Ok(Reply::Reject(message)) => Err(Step::Reply(rejected(id, message))),
            other => other.map_err(|step| step.with_id(id)),
        };
        let reply = match reply {
            Ok(reply) => reply,
            Err(step) => {
                self.shared.release_room(self.peer.connection, &room);
                self.peer.room = None;
                return step;
            }
        };
        info!(
            target: AUDIT_TARGET, event = "join", remote = %self.peer.remote,
            user = %self.peer.user_id, session = %self.peer.session_id, room = %room
        );
        let participants = self
            .shared
            .announce_join(self.peer.connection, &room, &self.user);
        // An SDP with the acceptance follows `joined` (which is sent first, as this step)
        // as a server-initiated message.
        let sdp = match reply {
            Reply::Offer(sdp) => Some(ServerMessage::Offer { sdp }),
            Reply::Answer(sdp) => Some(ServerMessage::Answer { sdp }),
            Reply::Accept | Reply::Reject(_) => None,
        };
        if let Some(message) = sdp {
            // A full queue already marks the connection for closing.
            let _ = self.shared.send(self.peer.connection, message);
        }
        Step::Reply(ServerEnvelope::new(
            id,
            ServerMessage::Joined { room, participants },
        ))
    }

    async fn leave<H: CallHandler>(&mut self, id: Option<u64>, handler: &H) -> Step {
        let Some(room) = self.peer.room.clone() else {
            return Step::Reply(ServerEnvelope::error(
                id,
                ErrorCode::NotJoined,
                "not in a room",
            ));
        };
        // Leaving cannot be refused; the handler is told and its reply ignored.
        let _ = self
            .ask(handler, Request::Leave { room: room.clone() })
            .await;
        self.shared.release_room(self.peer.connection, &room);
        self.shared.broadcast(
            &room,
            self.peer.connection,
            Slot::Membership,
            &self.user,
            &ServerMessage::ParticipantLeft {
                room: room.clone(),
                user_id: self.peer.user_id.clone(),
            },
        );
        self.peer.room = None;
        info!(
            target: AUDIT_TARGET, event = "leave", remote = %self.peer.remote,
            user = %self.peer.user_id, session = %self.peer.session_id, room = %room
        );
        Step::Reply(ServerEnvelope::new(id, ServerMessage::Left { room }))
    }
}

/// When a connection holding `claims` must close for token expiry: `exp` plus the
/// leeway, or (with `close_at_token_expiry` off) effectively never.
fn token_deadline(shared: &Shared, claims: &Claims) -> Instant {
    if !shared.limits.close_at_token_expiry {
        return after(FAR_FUTURE);
    }
    let end = Duration::from_secs(claims.expires_at).saturating_add(shared.validator.leeway());
    // Sub-second wall clock: whole seconds would close up to a second late.
    let wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    after(end.saturating_sub(wall))
}

/// `duration` from now, capped at [`FAR_FUTURE`] so that a configured `Duration::MAX`
/// switches a timer off instead of overflowing `Instant` (a panic).
fn after(duration: Duration) -> Instant {
    Instant::now() + duration.min(FAR_FUTURE)
}

/// Resolves when the server shuts down.
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    // An error means the sender is gone, which also means stopped.
    let _ = shutdown.wait_for(|&stop| stop).await;
}

/// Resolves when the registry asks this connection to close.
async fn killed(kill: &mut watch::Receiver<Option<CloseReason>>) -> CloseReason {
    match kill.wait_for(Option::is_some).await {
        Ok(reason) => (*reason).unwrap_or(CloseReason::Internal),
        // The registry dropped the sender: the server is going away.
        Err(_) => CloseReason::Shutdown,
    }
}

impl Step {
    fn with_id(self, id: Option<u64>) -> Self {
        match self {
            Self::Reply(mut env) => {
                env.id = id;
                Self::Reply(env)
            }
            other => other,
        }
    }
}

fn rejected(id: Option<u64>, mut message: String) -> ServerEnvelope {
    if message.len() > 256 {
        let mut cut = 256;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
    }
    ServerEnvelope::error(id, ErrorCode::Rejected, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_close_reason_stays_unless_a_revocation_comes() {
        let (kill, reason) = watch::channel(None);
        let live = Live {
            user_id: "u".into(),
            session_id: "s".into(),
            room: None,
            outbox: Arc::new(Outbox::new(1, Duration::from_secs(1))),
            kill,
        };
        live.close(CloseReason::SlowConsumer);
        live.close(CloseReason::Shutdown);
        assert_eq!(*reason.borrow(), Some(CloseReason::SlowConsumer));
        live.close(CloseReason::Revoked);
        live.close(CloseReason::SlowConsumer);
        assert_eq!(*reason.borrow(), Some(CloseReason::Revoked));
    }

    #[test]
    fn addresses_are_counted_per_ipv4_address_and_ipv6_64() {
        let key = |s: &str| address_key(s.parse().unwrap_or_else(|e| panic!("{s}: {e}")));
        assert_eq!(key("192.0.2.7"), key("192.0.2.7"));
        assert_ne!(key("192.0.2.7"), key("192.0.2.8"));
        assert_eq!(
            key("2001:db8:1:2::1"),
            key("2001:db8:1:2:ffff:ffff:ffff:ffff")
        );
        assert_eq!(
            key("2001:db8:1:2:abcd::9"),
            "2001:db8:1:2::".parse::<IpAddr>().unwrap()
        );
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_eq!(key("::ffff:192.0.2.7"), key("192.0.2.7"));
    }
}
