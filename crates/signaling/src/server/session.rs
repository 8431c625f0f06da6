//! One authenticated connection: authentication, its message loop, its limits and
//! timers, and its teardown.

#[allow(clippy::wildcard_imports)]
use super::*;

/// Sends a close frame with `reason`, then waits briefly for the peer's close.
pub(super) async fn close(ws: &mut Ws, reason: CloseReason) {
    let frame = CloseFrame {
        code: CloseCode::from(reason.code()),
        reason: reason.text().into(),
    };
    let _ = timeout(CLOSE_TIMEOUT, ws.close(Some(frame))).await;
}

pub(super) async fn drain(ws: &mut Ws) {
    let _ = timeout(CLOSE_TIMEOUT, async {
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
}

pub(super) async fn send(ws: &mut Ws, text: Utf8Bytes) -> bool {
    send_frame(ws, Message::Text(text)).await
}

pub(super) async fn send_frame(ws: &mut Ws, frame: Message) -> bool {
    matches!(timeout(WRITE_TIMEOUT, ws.send(frame)).await, Ok(Ok(())))
}

/// Reads the first message, which must be `auth`: its token and request id (echoed in the
/// `authenticated` reply, as every reply echoes its request's), or why the connection is
/// refused (invalid UTF-8, in a text or a binary frame, is 1007 as RFC 6455 §8.1 says).
pub(super) async fn auth_message(
    ws: &mut Ws,
    limits: &DecodeLimits,
) -> Result<(String, Option<u64>), CloseReason> {
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
        let env = decoded.map_err(|_| missing)?;
        return match env.message {
            ClientMessage::Auth { token } => Ok((token.0, env.id)),
            _ => Err(missing),
        };
    }
}

pub(super) async fn session<H: CallHandler>(
    shared: Arc<Shared>,
    handler: Arc<H>,
    mut ws: Ws,
    remote: SocketAddr,
    bearer: Option<String>,
) {
    let limits = &shared.limits;
    let (token, request, method) = match bearer {
        Some(t) => (t, None, "header"),
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
                Ok(Ok((t, request))) => (t, request, "message"),
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
        request,
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

/// Runs a calls-server future, turning a panic into `None` so one faulty request cannot
/// leave a connection half torn down.
pub(super) async fn contain<F: Future>(future: F) -> Option<F::Output> {
    std::panic::AssertUnwindSafe(future)
        .catch_unwind()
        .await
        .ok()
}

pub(super) async fn refuse_auth(mut ws: Ws, remote: SocketAddr, reason: CloseReason) {
    warn!(target: AUDIT_TARGET, event = "auth_failure", remote = %remote, reason = reason.as_str());
    close(&mut ws, reason).await;
    drain(&mut ws).await;
}

/// One authenticated connection's loop state.
pub(super) struct Connection {
    pub(super) peer: Peer,
    pub(super) claims: Claims,
    /// `peer.user_id`, shared with the registry and the events about this user.
    pub(super) user: Arc<str>,
    pub(super) outbox: Arc<Outbox>,
    pub(super) bucket: TokenBucket,
    pub(super) rate_violations: u32,
    pub(super) last_violation: Instant,
    pub(super) protocol_errors: u32,
    pub(super) kill: watch::Receiver<Option<CloseReason>>,
    /// Fires at token expiry when `close_at_token_expiry` is on.
    pub(super) token_end: Pin<Box<tokio::time::Sleep>>,
    pub(super) shared: Arc<Shared>,
}

pub(super) enum Step {
    Continue,
    Reply(ServerEnvelope),
    /// A server-initiated message from the outbound queue, already encoded.
    Queued(Utf8Bytes),
    /// Time for the server's WebSocket ping.
    Ping,
    /// Nothing heard for the idle timeout: close unless the peer's media is alive.
    Idle,
    Close(CloseReason),
}

impl Connection {
    /// The connection's loop. Liveness (documented for client authors in `protocol.rs`):
    /// every frame the peer sends counts (messages, and WebSocket pings and pongs); the
    /// server pings after `ping_interval` of its own silence, so a client whose WebSocket
    /// library answers pings (all do, browsers included) is never idle; and when nothing
    /// came for `idle_timeout`, the calls server is asked whether the peer's media is
    /// alive before the connection is closed with 4015.
    pub(super) async fn run<H: CallHandler>(&mut self, ws: &mut Ws, handler: &H) -> CloseReason {
        let limits = self.shared.limits.clone();
        let session_end = sleep_until(after(limits.max_session_length));
        let idle = sleep_until(after(limits.idle_timeout));
        let ping = sleep_until(after(limits.ping_interval));
        tokio::pin!(session_end, idle, ping);
        let outbox = Arc::clone(&self.outbox);
        loop {
            let step = tokio::select! {
                biased;
                reason = killed(&mut self.kill) => Step::Close(reason),
                () = &mut session_end => Step::Close(CloseReason::SessionExpired),
                () = &mut idle => Step::Idle,
                () = &mut self.token_end => Step::Close(CloseReason::Auth(TokenError::Expired)),
                text = outbox.next() => Step::Queued(text),
                () = &mut ping => Step::Ping,
                incoming = ws.next() => {
                    match incoming {
                        None => Step::Close(CloseReason::PeerClosed),
                        Some(Err(WsError::Capacity(_))) => Step::Close(CloseReason::MessageTooBig),
                        Some(Err(WsError::Utf8(_))) => Step::Close(CloseReason::InvalidUtf8),
                        Some(Err(_)) | Some(Ok(Message::Close(_))) => Step::Close(CloseReason::PeerClosed),
                        // Control frames cost a read and (pings) a write too: rate-limited
                        // like messages. They show the peer is there: a pong answers the
                        // server's ping, a ping is the peer's own keep-alive.
                        Some(Ok(Message::Ping(_) | Message::Pong(_))) => {
                            idle.as_mut().reset(after(limits.idle_timeout));
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
            let frame = match step {
                Step::Continue => continue,
                Step::Idle => {
                    let alive = contain(timeout(
                        limits.handler_timeout,
                        handler.media_alive(&self.peer, limits.idle_timeout),
                    ))
                    .await;
                    if alive == Some(Ok(true)) {
                        debug!(
                            conn = self.peer.connection.0,
                            "signaling quiet, media alive"
                        );
                        idle.as_mut().reset(after(limits.idle_timeout));
                        continue;
                    }
                    return CloseReason::IdleTimeout;
                }
                Step::Ping => {
                    ping.as_mut().reset(after(limits.ping_interval));
                    Message::Ping(Default::default())
                }
                Step::Reply(env) => Message::Text(env.encode().into()),
                Step::Queued(text) => Message::Text(text),
                Step::Close(reason) => return reason,
            };
            let counts_as_read = !matches!(frame, Message::Ping(_));
            // A peer that stops reading must not delay a revocation.
            tokio::select! {
                sent = send_frame(ws, frame) => if sent {
                    // Any message written shows the peer is reading (a ping is too small
                    // to tell).
                    if counts_as_read {
                        self.outbox.written(Instant::now());
                    }
                } else {
                    return CloseReason::SlowConsumer;
                },
                reason = killed(&mut self.kill) => return reason,
            }
        }
    }

    pub(super) fn rate_limited(&mut self) -> Step {
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
    pub(super) fn event_limited(&mut self, id: Option<u64>, limit: EventLimit) -> Step {
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

    pub(super) fn protocol_error(&mut self, reply: ServerEnvelope) -> Step {
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

    pub(super) async fn on_message<H: CallHandler>(&mut self, payload: &[u8], handler: &H) -> Step {
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
    pub(super) fn refresh(&mut self, id: Option<u64>, token: &str) -> Step {
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
    pub(super) async fn ask<H: CallHandler>(
        &mut self,
        handler: &H,
        request: Request,
    ) -> Result<Reply, Step> {
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

    pub(super) async fn join<H: CallHandler>(
        &mut self,
        id: Option<u64>,
        room: String,
        handler: &H,
    ) -> Step {
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

    pub(super) async fn leave<H: CallHandler>(&mut self, id: Option<u64>, handler: &H) -> Step {
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
pub(super) fn token_deadline(shared: &Shared, claims: &Claims) -> Instant {
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
pub(super) fn after(duration: Duration) -> Instant {
    Instant::now() + duration.min(FAR_FUTURE)
}

/// Resolves when the server shuts down.
pub(super) async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    // An error means the sender is gone, which also means stopped.
    let _ = shutdown.wait_for(|&stop| stop).await;
}

/// Resolves when the registry asks this connection to close.
pub(super) async fn killed(kill: &mut watch::Receiver<Option<CloseReason>>) -> CloseReason {
    match kill.wait_for(Option::is_some).await {
        Ok(reason) => (*reason).unwrap_or(CloseReason::Internal),
        // The registry dropped the sender: the server is going away.
        Err(_) => CloseReason::Shutdown,
    }
}

impl Step {
    pub(super) fn with_id(self, id: Option<u64>) -> Self {
        match self {
            Self::Reply(mut env) => {
                env.id = id;
                Self::Reply(env)
            }
            other => other,
        }
    }
}

pub(super) fn rejected(id: Option<u64>, mut message: String) -> ServerEnvelope {
    if message.len() > 256 {
        let mut cut = 256;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
    }
    ServerEnvelope::error(id, ErrorCode::Rejected, message)
}
