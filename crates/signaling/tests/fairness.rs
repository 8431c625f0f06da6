//! Broadcast fairness under load (issue 10, signaling 1): logged-in insiders, each at its
//! connection limit and sending room events as fast as its limits let it, at random
//! times, must not get a member who reads continuously closed, and that member must end
//! up knowing every insider's last accepted state.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::time::Duration;

use callsec_signaling::{
    Client, ClientMessage, ErrorCode, Incoming, ServerMessage, Track, Transport,
};
use common::{Harness, token};
use tokio::time::{Instant, sleep, timeout};

/// A small deterministic generator (xorshift64*), so a failing seed can be replayed.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn coin(&mut self) -> bool {
        self.next() & 1 == 1
    }
}

/// One piece of a participant's state as the other members see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Slot {
    Audio,
    Video,
    Screen,
}

const SLOTS: [Slot; 3] = [Slot::Audio, Slot::Video, Slot::Screen];

fn event(slot: Slot, on: bool) -> ClientMessage {
    match (slot, on) {
        (Slot::Audio, true) => ClientMessage::Mute {
            track: Track::Audio,
        },
        (Slot::Audio, false) => ClientMessage::Unmute {
            track: Track::Audio,
        },
        (Slot::Video, true) => ClientMessage::Mute {
            track: Track::Video,
        },
        (Slot::Video, false) => ClientMessage::Unmute {
            track: Track::Video,
        },
        (Slot::Screen, true) => ClientMessage::ScreenShareOn,
        (Slot::Screen, false) => ClientMessage::ScreenShareOff,
    }
}

type States = HashMap<(String, Slot), bool>;

/// Records a state event into `states`; false if the connection closed.
fn record(states: &mut States, incoming: &Incoming) -> Result<(), (u16, String)> {
    match incoming {
        Incoming::Closed { code, reason } => return Err((*code, reason.clone())),
        Incoming::Message(env) => match &env.message {
            ServerMessage::ParticipantMuted {
                user_id,
                track,
                muted,
                ..
            } => {
                let slot = match track {
                    Track::Audio => Slot::Audio,
                    _ => Slot::Video,
                };
                states.insert((user_id.clone(), slot), *muted);
            }
            ServerMessage::ParticipantScreenShare { user_id, on, .. } => {
                states.insert((user_id.clone(), Slot::Screen), *on);
            }
            _ => {}
        },
    }
    Ok(())
}

/// An insider connection: random bursts of random state events at random times, reading
/// whatever comes back in between, until `until`; then a ping, whose pong proves that
/// the server has processed everything this connection sent.
async fn burster(mut client: Client, seed: u64, until: Instant) {
    let mut rng = Rng::new(seed);
    while Instant::now() < until {
        for _ in 0..rng.below(60) {
            let slot = SLOTS[rng.below(3) as usize];
            if client.send(event(slot, rng.coin())).await.is_err() {
                return;
            }
        }
        let read_for = Duration::from_millis(rng.below(150));
        let stop = Instant::now() + read_for;
        while let Ok(incoming) = timeout(stop - Instant::now(), client.recv()).await {
            match incoming {
                Ok(Incoming::Message(_)) => {}
                // Closed for its rate violations: that is the insider's own business.
                Ok(Incoming::Closed { .. }) | Err(_) => return,
            }
        }
    }
    let _ = timeout(Duration::from_secs(10), client.request(ClientMessage::Ping)).await;
}

/// Sets `slot` to `on` through `client`, waiting out rate limits; returns when accepted.
async fn set_state(client: &mut Client, slot: Slot, on: bool) {
    loop {
        match client.request(event(slot, on)).await.unwrap() {
            ServerMessage::Ack => return,
            ServerMessage::Error {
                code: ErrorCode::RateLimited,
                ..
            } => sleep(Duration::from_millis(100)).await,
            other => panic!("{other:?}"),
        }
    }
}

async fn run(seed: u64) {
    let mut rng = Rng::new(seed);
    let mut h = Harness::with(|c| {
        c.transport = Transport::PlaintextLoopback;
        // Every insider connects from loopback here; the per-address cap is not the
        // limit under test.
        c.limits.max_connections_per_address = 1000;
    })
    .await;
    let per_user = callsec_signaling::Limits::default().max_connections_per_user;
    let insiders = 2 + rng.below(3) as usize;

    let mut member = h.connect(token("member", "m")).await;
    h.join(&mut member, "r1").await;
    let (expect_tx, mut expect_rx) = tokio::sync::oneshot::channel::<States>();
    // The member reads continuously, with random pauses of up to 20 ms (a real client
    // doing other work, a busy phone) until it has seen the final state it is told to expect.
    let member_seed = rng.next();
    let reader = tokio::spawn(async move {
        let mut rng = Rng::new(member_seed);
        let mut states = States::new();
        let mut expected: Option<States> = None;
        let mut deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(want) = &expected
                && want.iter().all(|(k, v)| states.get(k) == Some(v))
            {
                break;
            }
            if expected.is_none()
                && let Ok(want) = expect_rx.try_recv()
            {
                expected = Some(want);
                deadline = Instant::now() + Duration::from_secs(5);
            }
            if rng.below(4) == 0 {
                sleep(Duration::from_millis(rng.below(20))).await;
            }
            let Ok(incoming) = timeout(Duration::from_millis(50), member.recv()).await else {
                assert!(
                    Instant::now() < deadline,
                    "seed {seed}: final state not seen: have {states:?}, want {expected:?}"
                );
                continue;
            };
            if let Err(closed) = record(&mut states, &incoming.unwrap()) {
                panic!("seed {seed}: the member was closed: {closed:?}");
            }
        }
        // Still connected and served.
        assert_eq!(
            member.request(ClientMessage::Ping).await.unwrap(),
            ServerMessage::Pong
        );
        member
    });

    // Each insider: all its connections in the room, then all but one bursting.
    let mut controllers = Vec::new();
    let mut bursters = Vec::new();
    for i in 0..insiders {
        let user = format!("insider{i}");
        for c in 0..per_user {
            let mut client = h.connect(token(&user, &format!("{user}-{c}"))).await;
            let joined = client
                .request(ClientMessage::Join { room: "r1".into() })
                .await
                .unwrap();
            assert!(matches!(joined, ServerMessage::Joined { .. }), "{joined:?}");
            if c == 0 {
                controllers.push((user.clone(), client));
            } else {
                bursters.push(client);
            }
        }
    }
    let until = Instant::now() + Duration::from_millis(800 + rng.below(800));
    let bursts: Vec<_> = bursters
        .into_iter()
        .map(|client| tokio::spawn(burster(client, rng.next(), until)))
        .collect();
    // Drain the handler's record so it does not grow without bound.
    let drain = tokio::spawn(async move { while h.seen.recv().await.is_some() {} });
    for b in bursts {
        b.await.unwrap();
    }
    // Every insider sets its final state: what the member must end up with.
    let mut expected = States::new();
    for (user, client) in &mut controllers {
        for slot in SLOTS {
            let on = rng.coin();
            set_state(client, slot, on).await;
            expected.insert((user.clone(), slot), on);
        }
    }
    expect_tx.send(expected).unwrap();
    let member = reader.await.unwrap();
    drop((member, controllers));
    drain.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insiders_at_their_limits_do_not_evict_a_reading_member() {
    for seed in 1..=6 {
        run(seed).await;
    }
}

fn rate_limited(m: &ServerMessage) -> bool {
    matches!(
        m,
        ServerMessage::Error {
            code: ErrorCode::RateLimited,
            ..
        }
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_events_are_limited_per_user_across_its_connections() {
    let mut h = Harness::with(|c| {
        c.limits.room_event_burst_per_user = 6;
        c.limits.room_events_per_second_per_user = 0;
    })
    .await;
    let mut first = h.connect(token("alice", "s1")).await;
    let mut second = h.connect(token("alice", "s2")).await;
    // Two joins: two of alice's six room events.
    h.join(&mut first, "r1").await;
    h.join(&mut second, "r1").await;
    let mut accepted = 0;
    for i in 0..12 {
        let client = if i % 2 == 0 { &mut first } else { &mut second };
        let reply = client
            .request(event(SLOTS[i % 3], i % 4 < 2))
            .await
            .unwrap();
        match reply {
            ServerMessage::Ack => accepted += 1,
            other => assert!(rate_limited(&other), "{other:?}"),
        }
    }
    assert_eq!(
        accepted, 4,
        "the budget is the user's, not each connection's"
    );
    // Another user still has its own.
    let mut bob = h.connect(token("bob", "s3")).await;
    let joined = bob
        .request(ClientMessage::Join { room: "r1".into() })
        .await
        .unwrap();
    assert!(matches!(joined, ServerMessage::Joined { .. }), "{joined:?}");
    assert_eq!(
        bob.request(ClientMessage::ScreenShareOn).await.unwrap(),
        ServerMessage::Ack
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_events_are_limited_per_room_without_closing_anyone() {
    let mut h = Harness::with(|c| {
        c.limits.max_participants_per_room = 2;
        c.limits.room_event_burst_per_room = 1;
        c.limits.room_events_per_second_per_room = 0;
    })
    .await;
    let mut alice = h.connect(token("alice", "s1")).await;
    let mut bob = h.connect(token("bob", "s2")).await;
    // The room's burst is raised to its size: both can join, nothing is left.
    h.join(&mut alice, "r1").await;
    h.join(&mut bob, "r1").await;
    // Refused, but the room's budget being spent is not a violation of the sender:
    // more refusals than `max_rate_violations` (at a pace the message rate allows) do
    // not close it.
    let violations = callsec_signaling::Limits::default().max_rate_violations;
    for _ in 0..=violations + 5 {
        let reply = alice.request(ClientMessage::ScreenShareOn).await.unwrap();
        assert!(rate_limited(&reply), "{reply:?}");
        sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        alice.request(ClientMessage::Ping).await.unwrap(),
        ServerMessage::Pong
    );
}
