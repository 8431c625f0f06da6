//! One connection's outbound queue: server-initiated messages waiting for the socket.
//!
//! Other connections' tasks push (room events, under the registry lock); the
//! connection's own task pops and writes. Two rules keep an insider from evicting a
//! member who reads:
//!
//! - **State events coalesce.** A participant's mute/unmute of a track or screen share
//!   on/off is a state, and only its last value matters: a new one replaces a queued one
//!   of the same participant and slot in place, so a burst of them takes one entry per
//!   (participant, slot), however long it is. A membership event of that participant
//!   (joined, left) is a barrier: state queued before it is not replaced by state after
//!   it, so order against membership is kept.
//! - **Slow means not reading.** The queue may run past its size (`outbound_queue`) while
//!   the socket keeps taking messages. The connection is closed as a slow consumer when
//!   the queue has stood at or above its size for `slow_consumer_grace` without one
//!   message written, or when it reaches [`HARD_CAP_FACTOR`] times its size (a memory
//!   bound no reader of a rate-limited room gets near).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::lock;
use crate::protocol::Track;

/// The queue closes a connection outright at this many times its configured size.
pub(super) const HARD_CAP_FACTOR: usize = 8;

/// Which piece of a participant's room state an event sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Slot {
    /// Joined or left: a barrier for coalescing, never coalesced itself.
    Membership,
    /// Mute state of a track.
    Track(Track),
    /// Screen share on or off.
    ScreenShare,
}

/// What a queued room event is about; `None` for everything else (offers, candidates).
#[derive(Clone, Debug)]
pub(super) struct EventKey {
    /// The participant the event is about.
    pub(super) user: Arc<str>,
    pub(super) slot: Slot,
}

/// Why a push was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Overflow {
    /// The reader stopped: close it as a slow consumer.
    Slow,
}

struct Entry {
    key: Option<EventKey>,
    text: Utf8Bytes,
}

struct Inner {
    queue: VecDeque<Entry>,
    /// Since when the queue has stood at or above its size with no message written.
    stalled_since: Option<Instant>,
}

/// See the module documentation.
pub(super) struct Outbox {
    inner: Mutex<Inner>,
    ready: Notify,
    size: usize,
    grace: Duration,
}

impl Outbox {
    pub(super) fn new(size: usize, grace: Duration) -> Self {
        Self {
            inner: Mutex::new(Inner {
                queue: VecDeque::with_capacity(size.min(1024)),
                stalled_since: None,
            }),
            ready: Notify::new(),
            size,
            grace,
        }
    }

    /// Queues `text`, coalescing it with a queued state event of the same key.
    pub(super) fn push(
        &self,
        key: Option<EventKey>,
        text: Utf8Bytes,
        now: Instant,
    ) -> Result<(), Overflow> {
        let mut inner = lock(&self.inner);
        if let Some(key) = &key
            && key.slot != Slot::Membership
        {
            // Newest first, up to this participant's last membership event.
            for entry in inner.queue.iter_mut().rev() {
                let Some(queued) = &entry.key else { continue };
                if queued.user != key.user {
                    continue;
                }
                if queued.slot == Slot::Membership {
                    break;
                }
                if queued.slot == key.slot {
                    entry.text = text;
                    return Ok(());
                }
            }
        }
        let len = inner.queue.len();
        if len >= self.size.saturating_mul(HARD_CAP_FACTOR) {
            return Err(Overflow::Slow);
        }
        if len >= self.size {
            match inner.stalled_since {
                Some(since) if now.saturating_duration_since(since) >= self.grace => {
                    return Err(Overflow::Slow);
                }
                Some(_) => {}
                None => inner.stalled_since = Some(now),
            }
        }
        inner.queue.push_back(Entry { key, text });
        drop(inner);
        self.ready.notify_one();
        Ok(())
    }

    /// The next message to write; waits for one. Cancel-safe.
    pub(super) async fn next(&self) -> Utf8Bytes {
        loop {
            if let Some(entry) = lock(&self.inner).queue.pop_front() {
                return entry.text;
            }
            self.ready.notified().await;
        }
    }

    /// A message has been written to the peer at `now`: progress.
    pub(super) fn written(&self, now: Instant) {
        let mut inner = lock(&self.inner);
        inner.stalled_since = (inner.queue.len() >= self.size).then_some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(user: &Arc<str>, slot: Slot) -> Option<EventKey> {
        Some(EventKey {
            user: Arc::clone(user),
            slot,
        })
    }

    fn push(
        outbox: &Outbox,
        key: Option<EventKey>,
        text: impl Into<Utf8Bytes>,
        now: Instant,
    ) -> Result<(), Overflow> {
        outbox.push(key, text.into(), now)
    }

    fn drain(outbox: &Outbox) -> Vec<String> {
        let mut inner = lock(&outbox.inner);
        inner.queue.drain(..).map(|e| e.text.to_string()).collect()
    }

    #[tokio::test]
    async fn state_events_coalesce_per_participant_and_slot_up_to_a_membership_event() {
        let now = Instant::now();
        let outbox = Outbox::new(4, Duration::from_secs(1));
        let (a, b): (Arc<str>, Arc<str>) = ("a".into(), "b".into());
        let audio = Slot::Track(Track::Audio);
        for i in 0..1000 {
            push(&outbox, key(&a, audio), format!("a{i}"), now).unwrap();
            push(&outbox, key(&b, audio), format!("b{i}"), now).unwrap();
            push(&outbox, key(&a, Slot::ScreenShare), format!("s{i}"), now).unwrap();
        }
        assert_eq!(drain(&outbox), ["a999", "b999", "s999"]);
        push(&outbox, key(&a, audio), "a-before", now).unwrap();
        push(&outbox, key(&a, Slot::Membership), "a-left", now).unwrap();
        push(&outbox, key(&a, audio), "a-after", now).unwrap();
        push(&outbox, key(&a, audio), "a-after2", now).unwrap();
        push(&outbox, None, "offer", now).unwrap();
        push(&outbox, None, "offer", now).unwrap();
        assert_eq!(
            drain(&outbox),
            ["a-before", "a-left", "a-after2", "offer", "offer"]
        );
    }

    #[tokio::test]
    async fn only_a_queue_that_stays_full_without_progress_overflows() {
        let mut now = Instant::now();
        let grace = Duration::from_secs(1);
        let outbox = Outbox::new(2, grace);
        for _ in 0..4 {
            push(&outbox, None, "m", now).unwrap();
        }
        // Over its size, but the reader keeps taking messages: never slow.
        for _ in 0..10 {
            now += grace / 2;
            let _ = outbox.next().await;
            outbox.written(now);
            push(&outbox, None, "m", now).unwrap();
        }
        // The reader stops: within the grace period pushes still queue, after it not.
        push(&outbox, None, "m", now).unwrap();
        now += grace;
        assert_eq!(push(&outbox, None, "m", now), Err(Overflow::Slow));
        // A state event that coalesces takes no room and is still accepted.
        let a: Arc<str> = "a".into();
        let outbox = Outbox::new(2, grace);
        push(&outbox, key(&a, Slot::ScreenShare), "on", now).unwrap();
        for _ in 0..(2 * HARD_CAP_FACTOR - 1) {
            push(&outbox, None, "m", now).unwrap();
        }
        assert_eq!(push(&outbox, None, "m", now), Err(Overflow::Slow));
        push(&outbox, key(&a, Slot::ScreenShare), "off", now).unwrap();
    }
}
