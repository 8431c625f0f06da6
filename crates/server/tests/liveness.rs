//! Calls that last: a call runs many times longer than the signaling idle timeout while
//! nobody sends an app message, kept open by the server's WebSocket pings (answered by the
//! client's WebSocket library) or by the participant's authenticated media; a client whose
//! signaling goes silent and whose media stops is closed with 4015 `idle timeout`.
//! Timeouts are short here (1 s) so that each call lasts several of them.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::time::{Duration, Instant};

use callsec_dtls::CipherSuite;
use callsec_rtc::sdp::Kind;
use callsec_server::Running;
use callsec_signaling::{Client, ClientMessage, Incoming};
use callsec_srtp::ProtectionProfile;
use common::{Participant, metric, server, signaling, wait_until};

const IDLE: Duration = Duration::from_secs(1);
/// Longer than any test here: the server never pings.
const NEVER: Duration = Duration::from_secs(3600);

async fn short_idle(ping: Duration) -> Running {
    server(&ProtectionProfile::ALL, &CipherSuite::ALL, |s| {
        s.idle_timeout = IDLE;
        s.ping_interval = ping;
    })
    .await
}

/// Both receive each other's audio within the last `recent`.
fn flowing(a: &Participant, b: &Participant, recent: Duration) -> bool {
    let fresh = |p: &Participant, ssrc: u32| {
        p.seen(|s| s.last_rtp.get(&ssrc).is_some_and(|t| t.elapsed() < recent))
    };
    fresh(a, 0xb1) && fresh(b, 0xa1)
}

fn closed(p: &Participant) -> Option<String> {
    p.state.lock().unwrap().closed.clone()
}

/// Reads until the server closes; returns the close code and reason.
async fn close_code(sig: &mut Client) -> (u16, String) {
    loop {
        match tokio::time::timeout(Duration::from_secs(5), sig.recv()).await {
            Ok(Ok(Incoming::Closed { code, reason })) => return (code, reason),
            Ok(Ok(Incoming::Message(_))) => {}
            other => panic!("no close: {other:?}"),
        }
    }
}

/// Media alone keeps a quiet call open: the server never pings, nobody sends a message,
/// and the call runs six idle timeouts. Then one side's media stops: that side is closed
/// with 4015 within two idle timeouts, and the other side stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_keeps_a_quiet_call_open_and_silence_closes_it() {
    let running = short_idle(NEVER).await;
    let alice = Participant::join(&running, "alice", "live", &[(Kind::Audio, 0xa1)], 61).await;
    let bob = Participant::join(&running, "bob", "live", &[(Kind::Audio, 0xb1)], 62).await;
    assert!(
        wait_until(10 * IDLE, || flowing(&alice, &bob, IDLE)).await,
        "no call"
    );
    let start = Instant::now();
    while start.elapsed() < 6 * IDLE {
        tokio::time::sleep(IDLE / 4).await;
        assert_eq!(closed(&alice), None, "after {:?}", start.elapsed());
        assert_eq!(closed(&bob), None, "after {:?}", start.elapsed());
        assert!(flowing(&alice, &bob, IDLE), "media stopped");
    }
    assert_eq!(metric(&running, "participants"), 2.0);

    // Alice's media stops (ICE consent checks go on: they are not media) and her
    // signaling is as silent as before.
    alice.state.lock().unwrap().mute_media = true;
    let cut = Instant::now();
    assert!(
        wait_until(4 * IDLE, || closed(&alice).is_some()).await,
        "alice still open"
    );
    assert!(cut.elapsed() <= 2 * IDLE + IDLE / 2, "{:?}", cut.elapsed());
    assert_eq!(closed(&alice).as_deref(), Some("4015 idle timeout"));
    assert!(wait_until(2 * IDLE, || metric(&running, "participants") == 1.0).await);
    assert_eq!(closed(&bob), None);
    running.shutdown().await;
}

/// The server's pings keep a connection with no media open, as long as the client's
/// WebSocket library answers them (it does while the client reads); a client that stops
/// reading answers none and is closed with 4015. The same client without server pings
/// is closed too: the pongs are what kept it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pongs_keep_signaling_open_and_a_client_that_stops_reading_is_closed() {
    let running = short_idle(IDLE / 3).await;
    // Dave joins and then never reads: he answers no ping.
    let mut reader = signaling(&running, "carol", "quiet").await;
    let deaf = signaling(&running, "dave", "deaf").await;
    let start = Instant::now();
    // Carol reads (and so answers pings) for six idle timeouts; no message comes.
    let read = tokio::time::timeout(6 * IDLE, reader.recv()).await;
    assert!(
        read.is_err(),
        "carol got {read:?} after {:?}",
        start.elapsed()
    );
    // Dave never read: closed long ago (his close frame waits unread behind the pings; the
    // code itself is checked below, on a client that reads).
    assert_eq!(running.signaling.room_size("deaf"), 0);
    assert_eq!(running.signaling.room_size("quiet"), 1);
    drop(deaf);
    // Carol is still there: a request is answered.
    let pong = reader.request(ClientMessage::Ping).await.unwrap();
    assert_eq!(pong, callsec_signaling::ServerMessage::Pong);
    running.shutdown().await;

    let running = short_idle(NEVER).await;
    let mut reader = signaling(&running, "carol", "quiet").await;
    let closed_after = Instant::now();
    assert_eq!(close_code(&mut reader).await, (4015, "idle timeout".into()));
    assert!(
        closed_after.elapsed() < 3 * IDLE,
        "{:?}",
        closed_after.elapsed()
    );
    running.shutdown().await;
}

/// Both mechanisms together, as `callsec serve` runs them: a call lasting ten idle
/// timeouts with no app message, media flowing all along.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_outlives_ten_idle_timeouts_without_an_app_message() {
    let running = short_idle(IDLE / 3).await;
    let alice = Participant::join(&running, "alice", "long", &[(Kind::Audio, 0xa1)], 71).await;
    let bob = Participant::join(&running, "bob", "long", &[(Kind::Audio, 0xb1)], 72).await;
    assert!(wait_until(10 * IDLE, || flowing(&alice, &bob, IDLE)).await);
    let start = Instant::now();
    while start.elapsed() < 10 * IDLE {
        tokio::time::sleep(IDLE / 2).await;
        assert_eq!((closed(&alice), closed(&bob)), (None, None));
        assert!(flowing(&alice, &bob, IDLE), "media stopped");
    }
    assert_eq!(metric(&running, "participants"), 2.0);
    running.shutdown().await;
}
