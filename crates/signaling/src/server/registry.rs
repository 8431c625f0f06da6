//! The registry of authenticated connections: who is connected (per user, per session),
//! who is in which room, the room-event budgets, and delivery into each connection's
//! [`Outbox`].

#[allow(clippy::wildcard_imports)]
use super::*;

#[derive(Default)]
pub(super) struct State {
    /// Admitted TCP connections (handshaking or authenticated).
    pub(super) open: usize,
    /// Admitted connections per [`address_key`].
    pub(super) per_address: HashMap<IpAddr, usize>,
    pub(super) conns: HashMap<ConnectionId, Live>,
    /// Authenticated connections and room-event budget per user id.
    pub(super) per_user: HashMap<String, User>,
    /// Authenticated connections per session id.
    pub(super) per_session: HashMap<String, usize>,
    pub(super) rooms: HashMap<String, Room>,
}
/// A user with at least one authenticated connection.
pub(super) struct User {
    pub(super) connections: usize,
    /// Room events (joins, mute/unmute, screen share) of all the user's connections.
    pub(super) events: TokenBucket,
}
/// A room with at least one member.
pub(super) struct Room {
    pub(super) members: Vec<ConnectionId>,
    /// Room events of all members together.
    pub(super) events: TokenBucket,
}
/// Which room-event budget ran out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum EventLimit {
    /// The sender's own: counts as a rate violation of the connection.
    User,
    /// The room's, shared by all members.
    Room,
}
/// Why a join was refused before the calls server heard of it.
pub(super) enum JoinRefusal {
    Full,
    Rate(EventLimit),
}
/// Counts `key` up or down by one, forgetting keys that reach zero; returns the new count.
pub(super) fn count(map: &mut HashMap<String, usize>, key: &str, up: bool) -> usize {
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
pub(super) struct Live {
    pub(super) user_id: Arc<str>,
    pub(super) session_id: String,
    pub(super) room: Option<String>,
    /// Server-initiated messages, already encoded (a broadcast encodes once for all).
    pub(super) outbox: Arc<Outbox>,
    pub(super) kill: watch::Sender<Option<CloseReason>>,
}
impl Live {
    /// Asks the connection to close. The first reason stays, except that a revocation
    /// replaces any other: the calls server and the audit log must learn of it even when
    /// the peer's queue filled up or shutdown began just before.
    pub(super) fn close(&self, reason: CloseReason) {
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
pub(super) fn deliver(live: &Live, key: Option<EventKey>, text: Utf8Bytes) -> bool {
    match live.outbox.push(key, text, Instant::now()) {
        Ok(()) => true,
        Err(outbox::Overflow::Slow) => {
            live.close(CloseReason::SlowConsumer);
            false
        }
    }
}
impl Shared {
    /// Checks revocation and shutdown and registers, atomically with respect to
    /// [`Server::revoke`] and [`Server::shutdown`] (which set their flag or record
    /// before they take the registry lock to close what is registered).
    pub(super) fn register(
        &self,
        id: ConnectionId,
        claims: &Claims,
        live: Live,
    ) -> Result<(), CloseReason> {
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
    pub(super) fn is_revoked(&self, claims: &Claims) -> bool {
        let issued = claims
            .issued()
            .saturating_sub(self.validator.leeway().as_secs());
        self.store
            .is_revoked(&claims.user_id, &claims.session_id, issued)
    }

    /// Queues a server-initiated message (no `id`) for one connection.
    pub(super) fn send(
        &self,
        connection: ConnectionId,
        message: ServerMessage,
    ) -> Result<(), SendError> {
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
    pub(super) fn unregister(&self, id: ConnectionId) {
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
    pub(super) fn reserve_room(
        &self,
        id: ConnectionId,
        user_id: &str,
        room: &str,
    ) -> Result<(), JoinRefusal> {
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
    pub(super) fn take_room_event(&self, user_id: &str, room: &str) -> Result<(), EventLimit> {
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
    pub(super) fn release_room(&self, id: ConnectionId, room: &str) {
        let mut state = lock(&self.state);
        remove_member(&mut state, room, id);
        if let Some(live) = state.conns.get_mut(&id) {
            live.room = None;
        }
    }

    /// Announces `id` to the room and lists the others.
    pub(super) fn announce_join(
        &self,
        id: ConnectionId,
        room: &str,
        user_id: &Arc<str>,
    ) -> Vec<String> {
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
    pub(super) fn broadcast(
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
pub(super) fn room_bucket(limits: &Limits, now: Instant) -> TokenBucket {
    let floor = u32::try_from(limits.max_participants_per_room).unwrap_or(u32::MAX);
    TokenBucket::new(
        limits.room_events_per_second_per_room,
        limits.room_event_burst_per_room.max(floor),
        now,
    )
}
/// Takes one event from the user's budget (when it has one: it always has while the
/// user is connected) and the room's, or from neither.
pub(super) fn take_event(
    user: Option<&mut User>,
    room: &mut Room,
    now: Instant,
) -> Result<(), EventLimit> {
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
pub(super) fn remove_member(state: &mut State, room: &str, id: ConnectionId) {
    if let Some(r) = state.rooms.get_mut(room) {
        r.members.retain(|&m| m != id);
        if r.members.is_empty() {
            state.rooms.remove(room);
        }
    }
}
/// Queues `message` (about `user_id`'s `slot`) for every member of `room` but `from`,
/// encoded once.
pub(super) fn broadcast(
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
/// Removes an authenticated connection from the registry when dropped.
pub(super) struct Registration {
    pub(super) shared: Arc<Shared>,
    pub(super) id: ConnectionId,
}
impl Drop for Registration {
    fn drop(&mut self) {
        self.shared.unregister(self.id);
    }
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
}
