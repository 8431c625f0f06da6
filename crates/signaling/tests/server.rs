//! End-to-end tests: a real TLS WebSocket client against the real server on loopback.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use callsec_signaling::{
    AuthConfig, Client, ClientError, ClientMessage, CloseReason, ErrorCode, Incoming, Request, Sdp,
    Server, ServerMessage, StartError, TokenKey, TokenPlacement, Track, Transport,
};
use common::{Harness, Seen, claims, closed_code, sign, token};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use tokio::io::AsyncReadExt as _;
use tokio::net::TcpStream;
use tokio::time::timeout;

type Result = std::result::Result<(), Box<dyn std::error::Error>>;

/// The next message or close. The timeout only bounds a hang: timing claims are
/// asserted separately, and a loaded machine must not fail a test that works.
async fn recv(client: &mut Client) -> Incoming {
    timeout(Duration::from_secs(5), client.recv())
        .await
        .expect("nothing received in 5 s")
        .unwrap()
}

async fn recv_message(client: &mut Client) -> ServerMessage {
    match recv(client).await {
        Incoming::Message(env) => env.message,
        Incoming::Closed { code, reason } => panic!("closed {code} {reason}"),
    }
}

async fn recv_close(client: &mut Client) -> (u16, String) {
    loop {
        match recv(client).await {
            Incoming::Closed { code, reason } => return (code, reason),
            Incoming::Message(_) => {}
        }
    }
}

fn error_code(m: &ServerMessage) -> ErrorCode {
    match m {
        ServerMessage::Error { code, .. } => *code,
        other => panic!("expected error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_token_joins_and_exchanges_offer_answer() -> Result {
    let mut h = Harness::with(|_| {}).await;
    let (mut alice, hello) = h.try_connect(token("alice", "s1")).await?;
    assert_eq!(
        hello,
        ServerMessage::Authenticated {
            user_id: "alice".into(),
            session_id: "s1".into(),
            rooms: vec!["r1".into()]
        }
    );
    let joined = alice
        .request(ClientMessage::Join { room: "r1".into() })
        .await?;
    assert_eq!(
        joined,
        ServerMessage::Joined {
            room: "r1".into(),
            participants: vec![]
        }
    );
    match h.next_seen().await {
        Seen::Request(peer, Request::Join { room }) => {
            assert_eq!(
                (
                    peer.user_id.as_str(),
                    peer.session_id.as_str(),
                    room.as_str()
                ),
                ("alice", "s1", "r1")
            );
        }
        other => panic!("{other:?}"),
    }
    let offer = Sdp("v=0\r\na=ice-pwd:secretsecretsecret\r\n".into());
    let answer = alice
        .request(ClientMessage::Offer { sdp: offer.clone() })
        .await?;
    assert_eq!(
        answer,
        ServerMessage::Answer {
            sdp: Sdp(format!("v=0 answer to {} bytes", offer.0.len()))
        }
    );
    match h.next_seen().await {
        Seen::Request(peer, Request::Offer(sdp)) => {
            assert_eq!(sdp, offer);
            assert_eq!(peer.room.as_deref(), Some("r1"));
        }
        other => panic!("{other:?}"),
    }
    alice.close().await?;
    let (peer, reason) = h.next_disconnect().await;
    assert_eq!(
        (peer.user_id.as_str(), reason),
        ("alice", CloseReason::PeerClosed)
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_message_auth_and_room_events() -> Result {
    let h = Harness::with(|_| {}).await;
    let mut alice = h.connect(token("alice", "s1")).await;
    let mut cfg = h.client_config(Some(token("bob", "s2")));
    cfg.placement = TokenPlacement::FirstMessage;
    let (mut bob, _) = Client::connect(&cfg).await?;

    alice
        .request(ClientMessage::Join { room: "r1".into() })
        .await?;
    let joined = bob
        .request(ClientMessage::Join { room: "r1".into() })
        .await?;
    assert_eq!(
        joined,
        ServerMessage::Joined {
            room: "r1".into(),
            participants: vec!["alice".into()]
        }
    );
    assert_eq!(
        recv_message(&mut alice).await,
        ServerMessage::ParticipantJoined {
            room: "r1".into(),
            user_id: "bob".into()
        }
    );

    assert_eq!(
        bob.request(ClientMessage::Mute {
            track: Track::Audio
        })
        .await?,
        ServerMessage::Ack
    );
    assert_eq!(
        recv_message(&mut alice).await,
        ServerMessage::ParticipantMuted {
            room: "r1".into(),
            user_id: "bob".into(),
            track: Track::Audio,
            muted: true
        }
    );
    assert_eq!(
        bob.request(ClientMessage::ScreenShareOn).await?,
        ServerMessage::Ack
    );
    assert_eq!(
        recv_message(&mut alice).await,
        ServerMessage::ParticipantScreenShare {
            room: "r1".into(),
            user_id: "bob".into(),
            on: true
        }
    );
    let candidate = callsec_signaling::IceCandidate {
        candidate: "candidate:1 1 udp 2122260223 127.0.0.1 5000 typ host".into(),
        sdp_mid: Some("0".into()),
        sdp_m_line_index: Some(0),
    };
    assert_eq!(
        bob.request(ClientMessage::Candidate(candidate)).await?,
        ServerMessage::Ack
    );
    assert_eq!(
        bob.request(ClientMessage::Leave).await?,
        ServerMessage::Left { room: "r1".into() }
    );
    assert_eq!(
        recv_message(&mut alice).await,
        ServerMessage::ParticipantLeft {
            room: "r1".into(),
            user_id: "bob".into()
        }
    );
    // A second leave is an error, and the connection survives it.
    assert_eq!(
        error_code(&bob.request(ClientMessage::Leave).await?),
        ErrorCode::NotJoined
    );
    assert_eq!(bob.request(ClientMessage::Ping).await?, ServerMessage::Pong);
    // Offers need a room.
    let err = bob
        .request(ClientMessage::Offer {
            sdp: Sdp("v=0".into()),
        })
        .await?;
    assert_eq!(error_code(&err), ErrorCode::NotJoined);
    assert_eq!(h.server.room_size("r1"), 1);
    assert_eq!(h.server.connection_count(), 2);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_rejection_and_server_push() -> Result {
    let mut h = Harness::with(|_| {}).await;
    let mut c = claims("alice", "s1");
    c["rooms"] = json!(["r1", "locked"]);
    let mut alice = h.connect(sign(&c)).await;
    let err = alice
        .request(ClientMessage::Join {
            room: "locked".into(),
        })
        .await?;
    assert!(
        matches!(&err, ServerMessage::Error { code: ErrorCode::Rejected, message } if message == "room is locked")
    );
    assert_eq!(h.server.room_size("locked"), 0);
    // An offer with the join acceptance follows `joined`.
    let mut c = claims("bob", "s2");
    c["rooms"] = json!(["offering"]);
    let mut bob = h.connect(sign(&c)).await;
    assert!(matches!(
        bob.request(ClientMessage::Join {
            room: "offering".into()
        })
        .await?,
        ServerMessage::Joined { .. }
    ));
    assert_eq!(
        recv_message(&mut bob).await,
        ServerMessage::Offer {
            sdp: Sdp("v=0 offer on join".into())
        }
    );
    alice
        .request(ClientMessage::Join { room: "r1".into() })
        .await?;
    let connection = loop {
        if let Seen::Request(peer, Request::Join { room }) = h.next_seen().await
            && room == "r1"
        {
            break peer.connection;
        }
    };
    h.server.send(
        connection,
        ServerMessage::Offer {
            sdp: Sdp("v=0 server offer".into()),
        },
    )?;
    assert_eq!(
        recv_message(&mut alice).await,
        ServerMessage::Offer {
            sdp: Sdp("v=0 server offer".into())
        }
    );
    assert_eq!(
        alice
            .request(ClientMessage::Answer {
                sdp: Sdp("v=0 client answer".into())
            })
            .await?,
        ServerMessage::Ack
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_bad_token_is_refused_with_its_reason() -> Result {
    let h = Harness::with(|_| {}).await;
    let now = common::now();
    let b64 = |v: &serde_json::Value| {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
    };
    let body = b64(&claims("alice", "s1"));
    let with = |k: &str, v: serde_json::Value| {
        let mut c = claims("alice", "s1");
        c[k] = v;
        sign(&c)
    };
    let mut no_sid = claims("alice", "s1");
    no_sid.as_object_mut().unwrap().remove("sid");
    let cases: Vec<(&str, String, u16, &str)> = vec![
        ("malformed", "not-a-token".into(), 4003, "token malformed"),
        (
            "unsigned",
            format!("{}.{body}.", b64(&json!({"alg":"none","typ":"JWT"}))),
            4004,
            "token unsigned",
        ),
        (
            "wrong algorithm",
            jsonwebtoken::encode(
                &Header::new(Algorithm::HS512),
                &claims("alice", "s1"),
                &EncodingKey::from_secret(common::SECRET),
            )?,
            4005,
            "token algorithm not accepted",
        ),
        (
            "bad signature",
            jsonwebtoken::encode(
                &Header::new(Algorithm::HS256),
                &claims("alice", "s1"),
                &EncodingKey::from_secret(b"some other secret of 32 bytes!!!!"),
            )?,
            4006,
            "token signature invalid",
        ),
        (
            "missing claim",
            sign(&no_sid),
            4007,
            "token claim missing or invalid",
        ),
        (
            "expired",
            with("exp", json!(now - 120)),
            4008,
            "token expired",
        ),
        (
            "not yet valid",
            with("nbf", json!(now + 120)),
            4009,
            "token not yet valid",
        ),
        (
            "wrong audience",
            with("aud", json!("someone-else")),
            4010,
            "token audience mismatch",
        ),
    ];
    for (name, tok, code, reason) in cases {
        for placement in [TokenPlacement::Header, TokenPlacement::FirstMessage] {
            let mut cfg = h.client_config(Some(tok.clone()));
            cfg.placement = placement;
            let (got_code, got_reason) = closed_code(Client::connect(&cfg).await);
            assert_eq!(
                (got_code, got_reason.as_str()),
                (code, reason),
                "{name} via {placement:?}"
            );
        }
    }
    // No token: the first message is not `auth`.
    let mut cfg = h.client_config(None);
    cfg.placement = TokenPlacement::FirstMessage;
    let mut c = Client::open(&cfg).await?;
    c.send(ClientMessage::Ping).await?;
    assert_eq!(recv_close(&mut c).await, (4001, "token missing".into()));
    // Token in the URL: refused before the upgrade, whether named or not.
    for path in [
        format!("/?access_token={}", token("alice", "s1")),
        format!("/?t={}", token("alice", "s1")),
        format!("/{}", token("alice", "s1")),
    ] {
        let mut cfg = h.client_config(None);
        cfg.path = path;
        assert!(matches!(
            Client::open(&cfg).await,
            Err(ClientError::Rejected { status: 400 })
        ));
    }
    // The endpoint takes no query at all: an innocent-looking one is refused too (no
    // spelling, encoding or parameter name can carry a token past the check).
    let mut cfg = h.client_config(Some(token("alice", "s1")));
    cfg.path = "/?room=r1&author=alice".into();
    assert!(matches!(
        Client::open(&cfg).await,
        Err(ClientError::Rejected { status: 400 })
    ));
    // And the same token in the header is fine.
    assert!(h.try_connect(token("alice", "s1")).await.is_ok());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn es256_tokens_and_clock_skew() -> Result {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let h = Harness::with(|c| {
        let mut auth = AuthConfig::new(
            TokenKey::Es256 {
                public_key_pem: key.public_key_pem(),
            },
            common::AUDIENCE,
        );
        auth.leeway = Duration::from_secs(120);
        c.auth = auth;
    })
    .await;
    let signing = EncodingKey::from_ec_pem(key.serialize_pem().as_bytes())?;
    let es = |c: &serde_json::Value| {
        jsonwebtoken::encode(&Header::new(Algorithm::ES256), c, &signing).unwrap()
    };
    assert!(h.try_connect(es(&claims("alice", "s1"))).await.is_ok());
    // Expired 60 s ago is inside the 120 s leeway; 200 s ago is not.
    let mut c = claims("alice", "s1");
    c["exp"] = json!(common::now() - 60);
    assert!(h.try_connect(es(&c)).await.is_ok());
    c["exp"] = json!(common::now() - 200);
    assert_eq!(closed_code(h.try_connect(es(&c)).await).0, 4008);
    // An HS256 token (even one "signed" with the public key) is the wrong algorithm.
    let confused = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims("alice", "s1"),
        &EncodingKey::from_secret(key.public_key_pem().as_bytes()),
    )?;
    assert_eq!(closed_code(h.try_connect(confused).await).0, 4005);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issuer_is_checked_when_configured() -> Result {
    let h = Harness::with(|c| c.auth.issuer = Some("https://host.example".into())).await;
    let mut c = claims("alice", "s1");
    assert_eq!(
        closed_code(h.try_connect(sign(&c)).await),
        (4011, "token issuer mismatch".into())
    );
    c["iss"] = json!("https://evil.example");
    assert_eq!(closed_code(h.try_connect(sign(&c)).await).0, 4011);
    c["iss"] = json!("https://host.example");
    assert!(h.try_connect(sign(&c)).await.is_ok());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_of_another_room_is_refused() -> Result {
    let h = Harness::with(|_| {}).await;
    let mut alice = h.connect(token("alice", "s1")).await;
    alice
        .send(ClientMessage::Join { room: "r2".into() })
        .await?;
    assert_eq!(
        recv_close(&mut alice).await,
        (4013, "token not valid for room".into())
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_session_is_closed_within_a_second_and_stays_out_after_restart() -> Result {
    let store = common::temp_store();
    let mut h = Harness::start(common::config(store.clone())).await;
    let mut alice = h.connect(token("alice", "s1")).await;
    h.join(&mut alice, "r1").await;
    let mut other = h.connect(token("alice", "s2")).await;

    let start = Instant::now();
    assert_eq!(h.server.revoke_session("s1").await?, 1);
    assert_eq!(
        recv_message(&mut alice).await,
        ServerMessage::SessionRevoked
    );
    assert_eq!(
        recv_close(&mut alice).await,
        (4012, "session revoked".into())
    );
    let (peer, reason) = h.next_disconnect().await;
    let elapsed = start.elapsed();
    assert_eq!(
        (peer.session_id.as_str(), reason),
        ("s1", CloseReason::Revoked)
    );
    assert_eq!(
        peer.room.as_deref(),
        Some("r1"),
        "the calls server learns which room to drop"
    );
    assert!(elapsed < Duration::from_secs(1), "took {elapsed:?}");
    // The other session is untouched.
    assert_eq!(
        other.request(ClientMessage::Ping).await?,
        ServerMessage::Pong
    );
    // Reconnecting with the same token, or a fresh token for the same session, fails.
    assert_eq!(
        closed_code(h.try_connect(token("alice", "s1")).await).0,
        4012
    );

    // Restart on the same store.
    h.server.shutdown().await;
    assert_eq!(recv_close(&mut other).await.0, 1001);
    let h = Harness::start(common::config(store.clone())).await;
    assert_eq!(
        closed_code(h.try_connect(token("alice", "s1")).await).0,
        4012
    );
    assert!(h.try_connect(token("alice", "s3")).await.is_ok());
    std::fs::remove_file(store)?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_user_is_closed_and_old_tokens_refused() -> Result {
    let mut h = Harness::with(|_| {}).await;
    let mut a = h.connect(token("mallory", "m1")).await;
    let mut b = h.connect(token("mallory", "m2")).await;
    let mut carol = h.connect(token("carol", "c1")).await;
    assert_eq!(h.server.revoke_user("mallory").await?, 2);
    assert_eq!(recv_close(&mut a).await.0, 4012);
    assert_eq!(recv_close(&mut b).await.0, 4012);
    for _ in 0..2 {
        let (peer, reason) = h.next_disconnect().await;
        assert_eq!(
            (peer.user_id.as_str(), reason),
            ("mallory", CloseReason::Revoked)
        );
    }
    assert_eq!(
        carol.request(ClientMessage::Ping).await?,
        ServerMessage::Pong
    );
    assert_eq!(
        closed_code(h.try_connect(token("mallory", "m3")).await).0,
        4012
    );
    // A token stamped within the clock-skew leeway (30 s) after the revocation may have
    // been minted before it by an issuer whose clock runs ahead: refused.
    let mut skewed = claims("mallory", "m4");
    skewed["iat"] = json!(common::now() + 20);
    assert_eq!(closed_code(h.try_connect(sign(&skewed)).await).0, 4012);
    // A token issued after that is accepted.
    let mut fresh = claims("mallory", "m5");
    fresh["iat"] = json!(common::now() + 40);
    assert!(h.try_connect(sign(&fresh)).await.is_ok());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_timeout_idle_timeout_and_session_length_fire() -> Result {
    let h = Harness::with(|c| {
        c.limits.auth_timeout = Duration::from_millis(200);
        c.limits.idle_timeout = Duration::from_millis(500);
        c.limits.max_session_length = Duration::from_millis(1300);
    })
    .await;
    // No auth message at all.
    let mut cfg = h.client_config(None);
    cfg.placement = TokenPlacement::FirstMessage;
    let start = Instant::now();
    let mut silent = Client::open(&cfg).await?;
    assert_eq!(
        recv_close(&mut silent).await,
        (4002, "authentication timeout".into())
    );
    assert!(start.elapsed() < Duration::from_millis(2000));

    // Idle: nothing sent after authenticating. The timer starts during the connect, so
    // "not early" is measured from before it and "not late" (with room for a loaded
    // machine) from after it.
    let before = Instant::now();
    let mut idle = h.connect(token("alice", "s1")).await;
    let after = Instant::now();
    assert_eq!(recv_close(&mut idle).await, (4015, "idle timeout".into()));
    let (longest, shortest) = (before.elapsed(), after.elapsed());
    assert!(
        longest >= Duration::from_millis(500) && shortest < Duration::from_millis(2000),
        "{longest:?} {shortest:?}"
    );

    // Pings keep it from idling, but not past the maximum session length.
    let start = Instant::now();
    let mut busy = h.connect(token("bob", "s2")).await;
    let closed = loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        match busy.request(ClientMessage::Ping).await {
            Ok(ServerMessage::Pong) => continue,
            Err(ClientError::Closed { code, reason }) => break (code, reason),
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(closed, (4014, "session length exceeded".into()));
    let e = start.elapsed();
    assert!(
        e >= Duration::from_millis(1250) && e < Duration::from_millis(3000),
        "{e:?}"
    );
    Ok(())
}

/// Liveness without app messages: the client's own WebSocket pings count, and so do its
/// pongs to the server's pings (sent every `ping_interval`; tungstenite answers them while
/// the client reads); a client that does neither is closed with 4015.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_pings_and_pongs_count_as_activity() -> Result {
    let mut h = Harness::with(|c| {
        c.limits.idle_timeout = Duration::from_millis(500);
        c.limits.ping_interval = Duration::from_millis(150);
    })
    .await;
    let mut pinger = h.connect(token("alice", "s1")).await;
    let mut reader = h.connect(token("bob", "s2")).await;
    let deaf = h.connect(token("carol", "s3")).await;
    let start = Instant::now();
    let reading = async {
        // Bob reads for 2 s and gets no message: pings are answered under the hood.
        timeout(Duration::from_secs(2), reader.recv())
            .await
            .is_err()
    };
    let pinging = async {
        while start.elapsed() < Duration::from_secs(2) {
            pinger.send_ping().await.unwrap();
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    };
    let (read_nothing, ()) = tokio::join!(reading, pinging);
    assert!(read_nothing);
    for c in [&mut pinger, &mut reader] {
        assert_eq!(c.request(ClientMessage::Ping).await?, ServerMessage::Pong);
    }
    // Carol neither read nor pinged: closed as idle (her close frame waits unread).
    let (peer, reason) = h.next_disconnect().await;
    assert_eq!(
        (peer.user_id.as_str(), reason),
        ("carol", CloseReason::IdleTimeout)
    );
    drop(deaf);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timers_set_to_duration_max_are_off_not_a_panic() -> Result {
    let h = Harness::with(|c| {
        c.limits.idle_timeout = Duration::MAX;
        c.limits.max_session_length = Duration::MAX;
        c.limits.close_at_token_expiry = true;
        c.auth.leeway = Duration::MAX;
    })
    .await;
    let mut c = claims("alice", "s1");
    c["exp"] = json!(u64::MAX);
    let mut alice = h.connect(sign(&c)).await;
    for _ in 0..2 {
        assert_eq!(
            alice.request(ClientMessage::Ping).await?,
            ServerMessage::Pong
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_rate_limit_answers_then_closes() -> Result {
    let h = Harness::with(|c| {
        c.limits.messages_per_second = 1;
        c.limits.message_burst = 5;
        c.limits.max_rate_violations = 3;
    })
    .await;
    // Within a burst: dropped messages get rate_limited and the limit holds after a pause.
    let mut alice = h.connect(token("alice", "s1")).await;
    for _ in 0..7 {
        alice.send(ClientMessage::Ping).await?;
    }
    let mut replies = Vec::new();
    for _ in 0..7 {
        replies.push(recv_message(&mut alice).await);
    }
    assert_eq!(
        replies
            .iter()
            .filter(|m| **m == ServerMessage::Pong)
            .count(),
        5
    );
    assert_eq!(
        replies
            .iter()
            .filter(|m| matches!(
                m,
                ServerMessage::Error {
                    code: ErrorCode::RateLimited,
                    ..
                }
            ))
            .count(),
        2
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        alice.request(ClientMessage::Ping).await?,
        ServerMessage::Pong
    );
    // Keep flooding: closed with 1008 once violations pass the limit.
    for _ in 0..20 {
        if alice.send(ClientMessage::Ping).await.is_err() {
            break;
        }
    }
    assert_eq!(
        recv_close(&mut alice).await,
        (1008, "rate limit exceeded".into())
    );
    // The server is fine.
    assert!(h.try_connect(token("bob", "s2")).await.is_ok());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_frames_count_against_the_message_rate() -> Result {
    let h = Harness::with(|c| {
        c.limits.messages_per_second = 1;
        c.limits.message_burst = 2;
        c.limits.max_rate_violations = 3;
    })
    .await;
    for pings in [true, false] {
        let mut c = h.connect(token("alice", "s1")).await;
        for _ in 0..20 {
            let sent = if pings {
                c.send_ping().await
            } else {
                c.send_pong().await
            };
            if sent.is_err() {
                break;
            }
        }
        assert_eq!(
            recv_close(&mut c).await,
            (1008, "rate limit exceeded".into()),
            "pings: {pings}"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_limits_per_address_and_total() -> Result {
    let h = Harness::with(|c| c.limits.max_connections_per_address = 2).await;
    let a = h.connect(token("a", "1")).await;
    let _b = h.connect(token("b", "2")).await;
    for _ in 0..3 {
        let r = Client::open(&h.client_config(Some(token("c", "3")))).await;
        assert!(
            matches!(r, Err(ClientError::Rejected { status: 429 })),
            "{r:?}"
        );
    }
    a.close().await?;
    // The slot comes back once the first connection is gone.
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match h.try_connect(token("c", "3")).await {
            Ok(_) => break,
            Err(ClientError::Rejected { status: 429 }) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("{e}"),
        }
    }

    let h = Harness::with(|c| c.limits.max_connections = 2).await;
    let _a = h.connect(token("a", "1")).await;
    let _b = h.connect(token("b", "2")).await;
    let r = Client::open(&h.client_config(Some(token("c", "3")))).await;
    assert!(
        matches!(r, Err(ClientError::Rejected { status: 503 })),
        "{r:?}"
    );
    assert_eq!(h.server.connection_count(), 2);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_timeout_and_pending_handshake_limit() -> Result {
    let h = Harness::with(|c| {
        c.limits.handshake_timeout = Duration::from_secs(1);
        c.limits.max_pending_handshakes = 1;
    })
    .await;
    let addr = h.server.local_addr();
    // A TCP connection that never starts TLS holds the only handshake slot...
    let start = Instant::now();
    let mut stalled = TcpStream::connect(addr).await?;
    tokio::time::sleep(Duration::from_millis(50)).await;
    // ...so the next one is dropped at once...
    let mut dropped = TcpStream::connect(addr).await?;
    let mut buf = [0u8; 16];
    let n = timeout(Duration::from_millis(900), dropped.read(&mut buf))
        .await?
        .unwrap_or(0);
    assert_eq!(n, 0);
    assert!(
        start.elapsed() < Duration::from_millis(950),
        "{:?}",
        start.elapsed()
    );
    // ...and the stalled one is cut at the handshake timeout.
    let n = timeout(Duration::from_secs(2), stalled.read(&mut buf))
        .await?
        .unwrap_or(0);
    assert_eq!(n, 0);
    assert!(
        start.elapsed() >= Duration::from_millis(950),
        "{:?}",
        start.elapsed()
    );
    // Then real clients get in.
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(h.try_connect(token("a", "1")).await.is_ok());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_address_limit_do_not_take_handshake_slots() -> Result {
    let h = Harness::with(|c| {
        c.limits.max_connections_per_address = 2;
        c.limits.max_pending_handshakes = 4;
        c.limits.handshake_timeout = Duration::from_secs(10);
    })
    .await;
    // Another loopback address opens stalled connections, far over its limit of two.
    let mut attacker = Vec::new();
    for _ in 0..12 {
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.bind("127.0.0.2:0".parse()?)?;
        attacker.push(socket.connect(h.server.local_addr()).await?);
    }
    // Those beyond its two admitted ones and the one refusal slot are dropped at once
    // (waiting for all at the same time, so a slow accept loop has the whole second).
    let closed = futures_util::future::join_all(attacker.iter_mut().map(|stream| async {
        let mut buf = [0u8; 1];
        matches!(
            timeout(Duration::from_secs(1), stream.read(&mut buf)).await,
            Ok(Ok(0) | Err(_))
        )
    }))
    .await;
    let dropped = closed.into_iter().filter(|&c| c).count();
    assert!(dropped >= 9, "{dropped} dropped");
    // An honest client from another address still finds a handshake slot.
    let honest = timeout(Duration::from_secs(5), h.try_connect(token("alice", "s1"))).await?;
    assert!(honest.is_ok(), "{honest:?}");
    drop(attacker);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_participant_limit() -> Result {
    let h = Harness::with(|c| c.limits.max_participants_per_room = 2).await;
    let mut clients = Vec::new();
    for i in 0..3 {
        clients.push(h.connect(token(&format!("u{i}"), &format!("s{i}"))).await);
    }
    for c in clients.iter_mut().take(2) {
        assert!(matches!(
            c.request(ClientMessage::Join { room: "r1".into() }).await?,
            ServerMessage::Joined { .. }
        ));
    }
    let full = clients[2]
        .request(ClientMessage::Join { room: "r1".into() })
        .await?;
    assert_eq!(error_code(&full), ErrorCode::RoomFull);
    assert_eq!(h.server.room_size("r1"), 2);
    // The refused peer is still connected, and gets in once someone leaves.
    assert_eq!(
        clients[0].request(ClientMessage::Leave).await?,
        ServerMessage::Left { room: "r1".into() }
    );
    assert!(matches!(
        clients[2]
            .request(ClientMessage::Join { room: "r1".into() })
            .await?,
        ServerMessage::Joined { .. }
    ));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forbidden_origin_is_refused() -> Result {
    let h = Harness::with(|c| c.allowed_origins = vec!["https://app.example".into()]).await;
    let mut cfg = h.client_config(Some(token("alice", "s1")));
    cfg.origin = Some("https://evil.example".into());
    assert!(matches!(
        Client::open(&cfg).await,
        Err(ClientError::Rejected { status: 403 })
    ));
    cfg.origin = Some("https://app.example".into());
    assert!(Client::connect(&cfg).await.is_ok());
    cfg.origin = None; // not a browser
    assert!(Client::connect(&cfg).await.is_ok());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_and_malformed_messages_are_answered_and_the_server_stays_up() -> Result {
    let h = Harness::with(|c| {
        c.limits.max_message_size = 1024;
        c.limits.max_sdp_size = 512;
        c.limits.max_protocol_errors = 6;
    })
    .await;
    let mut alice = h.connect(token("alice", "s1")).await;
    alice
        .request(ClientMessage::Join { room: "r1".into() })
        .await?;
    let cases: Vec<(Vec<u8>, bool, ErrorCode, Option<u64>)> = vec![
        (
            b"{\"v\":1,\"type\":".to_vec(),
            false,
            ErrorCode::MalformedJson,
            None,
        ),
        (
            br#"{"v":1,"id":77,"type":"teleport"}"#.to_vec(),
            false,
            ErrorCode::UnknownType,
            Some(77),
        ),
        (
            b"\xc3\x28 not utf-8".to_vec(),
            true,
            ErrorCode::InvalidUtf8,
            None,
        ),
        (
            format!(
                r#"{{"v":1,"id":5,"type":"offer","sdp":"{}"}}"#,
                "a".repeat(600)
            )
            .into_bytes(),
            false,
            ErrorCode::SdpTooLarge,
            Some(5),
        ),
        (
            format!(r#"{{"v":1,"type":"offer","sdp":"{}"}}"#, "a".repeat(2000)).into_bytes(),
            false,
            ErrorCode::MessageTooLarge,
            None,
        ),
        (
            br#"{"v":9,"id":6,"type":"ping"}"#.to_vec(),
            false,
            ErrorCode::UnsupportedVersion,
            Some(6),
        ),
    ];
    for (payload, binary, code, id) in cases {
        if binary {
            alice.send_binary(payload).await?;
        } else {
            alice.send_text(String::from_utf8(payload).unwrap()).await?;
        }
        match recv(&mut alice).await {
            Incoming::Message(env) => {
                assert_eq!(error_code(&env.message), code);
                assert_eq!(env.id, id);
            }
            other => panic!("{code:?}: {other:?}"),
        }
    }
    // Still connected and useful.
    assert!(matches!(
        alice
            .request(ClientMessage::Offer {
                sdp: Sdp("v=0".into())
            })
            .await?,
        ServerMessage::Answer { .. }
    ));
    // One more bad message passes max_protocol_errors: closed with 1008.
    alice.send_text("nope".into()).await?;
    assert_eq!(
        recv_close(&mut alice).await,
        (1008, "too many invalid messages".into())
    );
    // Far beyond the size limit: closed with 1009 (not read into memory).
    let mut bob = h.connect(token("bob", "s2")).await;
    let _ = bob.send_text("x".repeat(5000)).await;
    assert_eq!(recv_close(&mut bob).await.0, 1009);
    // The server is up.
    let mut carol = h.connect(token("carol", "s3")).await;
    assert_eq!(
        carol.request(ClientMessage::Ping).await?,
        ServerMessage::Pong
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_only_on_loopback_and_pem_files() -> Result {
    let mut c = common::config(common::temp_store());
    c.transport = Transport::PlaintextLoopback;
    c.listen = "0.0.0.0:0".parse()?;
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let r = Server::start(c, common::Recorder::new(tx)).await;
    assert!(matches!(r, Err(StartError::PlaintextNotLoopback(_))));

    let h = Harness::with(|c| c.transport = Transport::PlaintextLoopback).await;
    assert!(h.server.certificate_der().is_none());
    let mut alice = h.connect(token("alice", "s1")).await;
    assert_eq!(
        alice.request(ClientMessage::Ping).await?,
        ServerMessage::Pong
    );

    // Certificate and key from PEM files.
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])?;
    let dir = common::temp_store();
    std::fs::create_dir_all(&dir)?;
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, certified.cert.pem())?;
    std::fs::write(&key_path, certified.signing_key.serialize_pem())?;
    let h = Harness::with(|c| {
        c.transport = Transport::TlsPemFiles {
            cert_chain: cert_path.clone(),
            private_key: key_path.clone(),
        };
    })
    .await;
    let cfg = callsec_signaling::ClientConfig::new(
        h.server.local_addr(),
        callsec_signaling::ClientTls::Trust(vec![certified.cert.der().clone()]),
        Some(token("alice", "s1")),
    );
    assert!(Client::connect(&cfg).await.is_ok());
    // A client that does not trust the certificate fails the TLS handshake.
    let other = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])?;
    let mut untrusting = cfg.clone();
    untrusting.tls = callsec_signaling::ClientTls::Trust(vec![other.cert.der().clone()]);
    assert!(matches!(
        Client::connect(&untrusting).await,
        Err(ClientError::Io(_))
    ));
    std::fs::remove_dir_all(dir)?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_interrupts_a_slow_calls_server() -> Result {
    let mut h = Harness::with(|_| {}).await;
    let mut alice = h.connect(token("alice", "s1")).await;
    h.join(&mut alice, "r1").await;
    alice
        .send(ClientMessage::Offer {
            sdp: Sdp("SLOW".into()),
        })
        .await?;
    // The handler is now busy for 3 s with this connection's offer.
    assert!(matches!(
        h.next_seen().await,
        Seen::Request(_, Request::Offer(_))
    ));
    let start = Instant::now();
    h.server.revoke_session("s1").await?;
    assert_eq!(recv_close(&mut alice).await.0, 4012);
    let (_, reason) = h.next_disconnect().await;
    assert_eq!(reason, CloseReason::Revoked);
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_calls_server_does_not_break_the_connection() -> Result {
    let mut h = Harness::with(|_| {}).await;
    let mut alice = h.connect(token("alice", "s1")).await;
    alice
        .request(ClientMessage::Join { room: "r1".into() })
        .await?;
    let reply = alice
        .request(ClientMessage::Offer {
            sdp: Sdp("PANIC".into()),
        })
        .await?;
    assert_eq!(error_code(&reply), ErrorCode::Internal);
    assert_eq!(
        alice.request(ClientMessage::Ping).await?,
        ServerMessage::Pong
    );
    assert_eq!(h.server.connection_count(), 1);
    alice.close().await?;
    // The registry lets go of the connection before the calls server is told.
    h.next_disconnect().await;
    assert_eq!(h.server.connection_count(), 0);
    assert_eq!(h.server.room_size("r1"), 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_every_connection_and_stops_accepting() -> Result {
    let h = Harness::with(|c| c.limits.auth_timeout = Duration::from_secs(10)).await;
    let mut cfg = h.client_config(None);
    cfg.placement = TokenPlacement::FirstMessage;
    let mut authenticating = Client::open(&cfg).await?;
    let mut joined = h.connect(token("alice", "s1")).await;
    joined
        .request(ClientMessage::Join { room: "r1".into() })
        .await?;
    let start = Instant::now();
    let server = h.server.clone();
    let stopping = tokio::spawn(async move { server.shutdown().await });
    assert_eq!(
        recv_close(&mut authenticating).await,
        (1001, "server shutting down".into())
    );
    assert_eq!(
        recv_close(&mut joined).await,
        (1001, "server shutting down".into())
    );
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
    stopping.await?;
    assert_eq!(h.server.connection_count(), 0);
    assert!(
        Client::open(&h.client_config(Some(token("bob", "s2"))))
            .await
            .is_err()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8_text_frame_fails_the_connection_with_1007() -> Result {
    let h = Harness::with(|_| {}).await;
    let mut alice = h.connect(token("alice", "s1")).await;
    alice
        .send_unchecked_text_frame(b"{\"v\":1,\"type\":\"\xff\"}".to_vec())
        .await?;
    assert_eq!(recv_close(&mut alice).await.0, 1007);
    let mut bob = h.connect(token("bob", "s2")).await;
    assert_eq!(bob.request(ClientMessage::Ping).await?, ServerMessage::Pong);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_does_not_read_is_closed_not_buffered() -> Result {
    let mut h = Harness::with(|c| c.limits.outbound_queue = 4).await;
    let mut alice = h.connect(token("alice", "s1")).await;
    let connection = h.join(&mut alice, "r1").await;
    // Push far more than the queue holds without yielding: the queue fills up.
    let big = Sdp("a".repeat(16 * 1024));
    let mut refused = 0;
    for _ in 0..1000 {
        if h.server
            .send(connection, ServerMessage::Offer { sdp: big.clone() })
            .is_err()
        {
            refused += 1;
        }
    }
    assert!(refused > 0);
    assert_eq!(
        recv_close(&mut alice).await,
        (1013, "outbound queue full".into())
    );
    let (_, reason) = h.next_disconnect().await;
    assert_eq!(reason, CloseReason::SlowConsumer);
    assert_eq!(
        h.server.send(connection, ServerMessage::Pong),
        Err(callsec_signaling::SendError::NotConnected)
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_refuses_bad_configuration() -> Result {
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let mut c = common::config(common::temp_store());
    c.limits.max_connections = 0;
    let r = Server::start(c, common::Recorder::new(tx.clone())).await;
    assert!(matches!(
        r,
        Err(StartError::InvalidLimits("max_connections"))
    ));
    // Limits too large for tokio's semaphore are capped, not a panic.
    let mut c = common::config(common::temp_store());
    c.limits.max_pending_handshakes = usize::MAX;
    assert!(
        Server::start(c, common::Recorder::new(tx.clone()))
            .await
            .is_ok()
    );
    let mut c = common::config(common::temp_store());
    c.auth = AuthConfig::new(
        TokenKey::Hs256 {
            secret: b"short".to_vec(),
        },
        "a",
    );
    assert!(matches!(
        Server::start(c, common::Recorder::new(tx.clone())).await,
        Err(StartError::Key(_))
    ));
    let mut c = common::config(common::temp_store());
    c.auth = AuthConfig::new(
        TokenKey::Es256 {
            public_key_pem: "nope".into(),
        },
        "a",
    );
    assert!(matches!(
        Server::start(c, common::Recorder::new(tx.clone())).await,
        Err(StartError::Key(_))
    ));
    let dir = common::temp_store();
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("corrupt"), b"garbage\n")?;
    let c = common::config(dir.join("corrupt"));
    assert!(matches!(
        Server::start(c, common::Recorder::new(tx)).await,
        Err(StartError::Store(_))
    ));
    std::fs::remove_dir_all(dir)?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_reaches_the_calls_server_even_when_the_peer_stopped_reading() -> Result {
    let mut h = Harness::with(|c| c.limits.outbound_queue = 1000).await;
    let mut alice = h.connect(token("alice", "s1")).await;
    let connection = h.join(&mut alice, "r1").await;
    // 32 MiB towards a peer that never reads: the server's writes block on full
    // socket buffers.
    let big = Sdp("a".repeat(64 * 1024));
    for _ in 0..500 {
        h.server
            .send(connection, ServerMessage::Offer { sdp: big.clone() })?;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let start = Instant::now();
    h.server.revoke_session("s1").await?;
    let (_, reason) = h.next_disconnect().await;
    assert_eq!(reason, CloseReason::Revoked);
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
    drop(alice);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_expiry_closes_unless_refreshed_in_band() -> Result {
    let h = Harness::with(|c| {
        c.auth.leeway = Duration::ZERO;
        c.limits.close_at_token_expiry = true;
    })
    .await;
    let short = |user: &str, session: &str| {
        let mut c = claims(user, session);
        c["exp"] = json!(common::now() + 2);
        sign(&c)
    };
    let start = Instant::now();
    let mut alice = h.connect(short("alice", "s1")).await;
    let mut bob = h.connect(short("bob", "s2")).await;
    // Bob refreshes with a longer-lived token for the same session.
    let refreshed = bob
        .request(ClientMessage::Auth {
            token: callsec_signaling::Token(token("bob", "s2")),
        })
        .await?;
    assert!(matches!(refreshed, ServerMessage::Authenticated { .. }));
    // A token for another session is refused without closing.
    let other = bob
        .request(ClientMessage::Auth {
            token: callsec_signaling::Token(token("bob", "s9")),
        })
        .await?;
    assert_eq!(error_code(&other), ErrorCode::InvalidState);
    // Alice did not refresh: closed at expiry, between one and two seconds from now
    // (exp has whole-second resolution).
    assert_eq!(recv_close(&mut alice).await, (4008, "token expired".into()));
    let e = start.elapsed();
    assert!(
        e >= Duration::from_millis(900) && e < Duration::from_millis(3500),
        "{e:?}"
    );
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(bob.request(ClientMessage::Ping).await?, ServerMessage::Pong);
    // A bad refresh closes like a bad token at connect.
    let mut expired = claims("bob", "s2");
    expired["exp"] = json!(common::now() - 10);
    bob.send(ClientMessage::Auth {
        token: callsec_signaling::Token(sign(&expired)),
    })
    .await?;
    assert_eq!(recv_close(&mut bob).await.0, 4008);
    Ok(())
}

/// Sends a raw HTTP upgrade request (plain ws:// on loopback) and returns the status code.
async fn raw_upgrade(h: &Harness, target: &str, extra_headers: &[&str]) -> u16 {
    use tokio::io::AsyncWriteExt as _;
    let mut tcp = TcpStream::connect(h.server.local_addr()).await.unwrap();
    let mut req = format!(
        "GET {target} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    );
    for h in extra_headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 1024];
    let n = timeout(Duration::from_secs(5), tcp.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let head = String::from_utf8_lossy(&buf[..n]);
    head.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"))
}

/// Sends one raw request and reads the whole response (the server closes after it).
async fn raw_request(h: &Harness, request: &str) -> String {
    use tokio::io::AsyncWriteExt as _;
    let mut tcp = TcpStream::connect(h.server.local_addr()).await.unwrap();
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    timeout(Duration::from_secs(5), tcp.read_to_end(&mut buf))
        .await
        .unwrap()
        .unwrap();
    String::from_utf8(buf).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_requests_reach_the_handler_with_security_headers() -> Result {
    let h = Harness::with(|c| c.transport = Transport::PlaintextLoopback).await;
    let ok = raw_request(&h, "GET /hello?q=1 HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
    assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
    assert!(ok.ends_with("\r\n\r\nhello q=1"), "{ok}");
    for header in [
        "Content-Length: 9\r\n",
        "Content-Type: text/plain\r\n",
        "Content-Security-Policy: default-src 'none'; script-src 'self';",
        "X-Content-Type-Options: nosniff\r\n",
        "Cache-Control: no-store\r\n",
        "X-Frame-Options: DENY\r\n",
    ] {
        assert!(ok.contains(header), "{header} missing in {ok}");
    }
    let head = raw_request(&h, "HEAD /hello HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(
        head.ends_with("\r\n\r\n"),
        "a HEAD response has no body: {head}"
    );
    let missing = raw_request(&h, "GET /nope HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
    assert!(missing.starts_with("HTTP/1.1 404 "), "{missing}");
    let post = raw_request(&h, "POST /hello HTTP/1.1\r\nContent-Length: 0\r\n\r\n").await;
    assert!(post.starts_with("HTTP/1.1 405 "), "{post}");
    assert!(post.contains("Allow: GET, HEAD\r\n"), "{post}");
    for bad in [
        "GET hello HTTP/1.1\r\n\r\n",
        "GET /hello HTTP/2.0\r\n\r\n",
        "GET /hello HTTP/1.1 extra\r\n\r\n",
        "\u{1}\u{2}\r\n\r\n",
    ] {
        let r = raw_request(&h, bad).await;
        assert!(r.starts_with("HTTP/1.1 400 "), "{bad:?}: {r}");
    }
    let long = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(3000));
    let r = raw_request(&h, &long).await;
    assert!(r.starts_with("HTTP/1.1 414 "), "{r}");
    // The same address still upgrades WebSockets.
    assert_eq!(raw_upgrade(&h, "/", &[]).await, 101);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_query_or_fragment_in_the_url_is_refused() -> Result {
    let h = Harness::with(|c| c.transport = Transport::PlaintextLoopback).await;
    assert_eq!(raw_upgrade(&h, "/", &[]).await, 101);
    assert_eq!(raw_upgrade(&h, "/calls", &[]).await, 101);
    for target in [
        "/?room=r1",
        "/?",
        "/?t%6Fken=eyJhbGciOiJIUzI1NiJ9.e30.c2ln",
        "/calls/%65yJhbGciOiJIUzI1NiJ9.e30.c2ln",
        "/calls/eyJhbGciOiJIUzI1NiJ9%252Ee30%252Ec2ln",
        "/#access_token=x",
    ] {
        let status = raw_upgrade(&h, target, &[]).await;
        assert_eq!(status, 400, "{target}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicated_security_headers_are_refused() -> Result {
    let h = Harness::with(|c| {
        c.transport = Transport::PlaintextLoopback;
        c.allowed_origins = vec!["https://app.example".into()];
    })
    .await;
    let good = format!("Authorization: Bearer {}", token("alice", "s1"));
    let other = format!("Authorization: Bearer {}", token("mallory", "s9"));
    assert_eq!(
        raw_upgrade(&h, "/", &[&good, "Origin: https://app.example"]).await,
        101
    );
    for extra in [
        vec![
            "Origin: https://app.example",
            "Origin: https://evil.example",
        ],
        vec![good.as_str(), other.as_str()],
        vec!["Host: evil.example"],
        vec!["Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA=="],
    ] {
        assert_eq!(raw_upgrade(&h, "/", &extra).await, 400, "{extra:?}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8_before_authentication_is_1007() -> Result {
    let h = Harness::with(|_| {}).await;
    let mut c = Client::open(&h.client_config(None)).await?;
    c.send_unchecked_text_frame(b"{\"v\":1,\"type\":\"auth\",\"token\":\"\xff\"}".to_vec())
        .await?;
    assert_eq!(recv_close(&mut c).await.0, 1007);
    let mut c = Client::open(&h.client_config(None)).await?;
    c.send_binary(b"{\"v\":1,\"type\":\"auth\",\"token\":\"\xfe\"}".to_vec())
        .await?;
    assert_eq!(recv_close(&mut c).await.0, 1007);
    // Valid UTF-8 that is not an auth message stays a missing-token refusal.
    let mut c = Client::open(&h.client_config(None)).await?;
    c.send_text("{\"v\":1,\"type\":\"ping\"}".into()).await?;
    assert_eq!(recv_close(&mut c).await.0, 4001);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_limited_per_user_and_per_session() -> Result {
    let h = Harness::with(|c| {
        c.limits.max_connections_per_user = 2;
        c.limits.max_connections_per_session = 1;
    })
    .await;
    let first = h.connect(token("alice", "s1")).await;
    // A second connection of the same session.
    assert_eq!(
        closed_code(h.try_connect(token("alice", "s1")).await),
        (4016, "too many connections for this user or session".into())
    );
    // Another session of the same user, then a third session: over the user limit.
    let _second = h.connect(token("alice", "s2")).await;
    assert_eq!(
        closed_code(h.try_connect(token("alice", "s3")).await).0,
        4016
    );
    // Other users are not affected.
    let _bob = h.connect(token("bob", "s9")).await;
    // The slot comes back when a connection ends.
    first.close().await?;
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match h.try_connect(token("alice", "s1")).await {
            Ok(_) => break,
            Err(ClientError::Closed { code: 4016, .. }) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("{e}"),
        }
    }
    Ok(())
}
