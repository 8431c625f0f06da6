//! The audit log: one JSON line per security event, never a token or SDP.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use callsec_signaling::audit::{AUDIT_TARGET, json_subscriber};
use callsec_signaling::{
    Client, ClientMessage, Incoming, Sdp, ServerMessage, Token, TokenPlacement,
};
use common::{Harness, claims, sign, token};
use serde_json::{Value, json};
use tokio::io::AsyncReadExt as _;

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

fn audit_lines(capture: &Capture) -> Vec<Value> {
    let bytes = capture.0.lock().unwrap().clone();
    let text = String::from_utf8(bytes).unwrap();
    text.lines()
        .map(|l| {
            serde_json::from_str::<Value>(l)
                .unwrap_or_else(|e| panic!("not one JSON object per line: {e}: {l}"))
        })
        .filter(|v| v["target"] == AUDIT_TARGET)
        .collect()
}

fn has(lines: &[Value], event: &str, field: &str, value: &str) -> bool {
    lines
        .iter()
        .any(|l| l["event"] == event && l[field] == value)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_log_records_events_and_never_secrets() {
    let capture = Capture::default();
    tracing::subscriber::set_global_default(json_subscriber(capture.clone())).unwrap();

    let mut h = Harness::with(|c| {
        c.limits.messages_per_second = 1;
        c.limits.message_burst = 2;
        c.limits.max_participants_per_room = 1;
        c.allowed_origins = vec!["https://app.example".into()];
    })
    .await;
    let good = token("alice", "s1");
    let mut alice = h.connect(good.clone()).await;
    alice
        .request(ClientMessage::Join { room: "r1".into() })
        .await
        .unwrap();
    let secret_sdp = "v=0\r\na=ice-pwd:SDPSECRETPASSWORD0123\r\na=fingerprint:sha-256 AB:CD\r\n";
    alice
        .request(ClientMessage::Offer {
            sdp: Sdp(secret_sdp.into()),
        })
        .await
        .unwrap();
    // Rate limit hit: join and offer took the burst of two.
    alice.send(ClientMessage::Ping).await.unwrap();
    alice.send(ClientMessage::Ping).await.unwrap();
    // Room limit hit, by bob who authenticates with a first message, then refreshes.
    let bob_first = token("bob", "s2");
    let mut cfg = h.client_config(Some(bob_first.clone()));
    cfg.placement = TokenPlacement::FirstMessage;
    let (mut bob, _) = Client::connect(&cfg).await.unwrap();
    bob.request(ClientMessage::Join { room: "r1".into() })
        .await
        .unwrap();
    let mut refreshed = claims("bob", "s2");
    refreshed["exp"] = json!(common::now() + 600);
    let bob_refresh = sign(&refreshed);
    assert!(matches!(
        bob.request(ClientMessage::Auth {
            token: Token(bob_refresh.clone()),
        })
        .await
        .unwrap(),
        ServerMessage::Authenticated { .. }
    ));
    // A forged token in a first message, and a token in the URL.
    let mut forged = token("mallory", "s7");
    forged.replace_range(forged.len() - 4.., "AAAA");
    let mut cfg = h.client_config(Some(forged.clone()));
    cfg.placement = TokenPlacement::FirstMessage;
    assert!(Client::connect(&cfg).await.is_err());
    let in_url = token("mallory", "s8");
    let mut cfg = h.client_config(None);
    cfg.path = format!("/?t={in_url}");
    assert!(Client::open(&cfg).await.is_err());
    // Expired token.
    let mut expired = claims("eve", "s9");
    expired["exp"] = json!(common::now() - 3600);
    let expired = sign(&expired);
    assert!(h.try_connect(expired.clone()).await.is_err());
    // Forbidden origin.
    let mut cfg = h.client_config(Some(good.clone()));
    cfg.origin = Some("https://evil.example".into());
    assert!(Client::open(&cfg).await.is_err());
    // Revocation.
    h.server.revoke_session("s1").await.unwrap();
    loop {
        if let Incoming::Closed { .. } = alice.recv().await.unwrap() {
            break;
        }
    }
    // The `leave` and `disconnect` lines are written before the calls server is told.
    h.next_disconnect().await;

    let lines = audit_lines(&capture);
    assert!(has(&lines, "auth_success", "user", "alice"));
    assert!(has(&lines, "auth_success", "method", "header"));
    assert!(has(&lines, "auth_failure", "reason", "expired"));
    assert!(has(&lines, "auth_failure", "reason", "bad_signature"));
    assert!(has(&lines, "auth_success", "method", "message"));
    assert!(has(&lines, "auth_success", "method", "refresh"));
    assert!(has(&lines, "handshake_refused", "reason", "token_in_url"));
    assert!(has(&lines, "join", "room", "r1"));
    assert!(has(&lines, "limit", "limit", "messages_per_second"));
    assert!(has(&lines, "limit", "limit", "max_participants_per_room"));
    assert!(has(&lines, "handshake_refused", "reason", "origin"));
    assert!(has(&lines, "revocation", "id", "s1"));
    assert!(has(&lines, "disconnect", "reason", "revoked"));
    assert!(has(&lines, "leave", "user", "alice"));

    let all = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    if std::env::var_os("CALLSEC_PRINT_AUDIT").is_some() {
        eprintln!("{all}");
    }
    let tokens = [&good, &expired, &bob_first, &bob_refresh, &forged, &in_url];
    for secret in tokens
        .iter()
        .map(|t| t.as_str())
        .chain(["SDPSECRETPASSWORD0123", "AB:CD"])
    {
        assert!(!all.contains(secret), "audit log leaked a secret");
    }
    // The signature part of the tokens alone must not appear either.
    for tok in tokens {
        let sig = tok.rsplit('.').next().unwrap();
        assert!(!all.contains(sig));
    }
}

/// Connections dropped at accept are audited in one line a second, not one each.
#[tokio::test]
async fn a_connection_flood_is_not_a_log_flood() {
    let capture = Capture::default();
    // This runtime has one thread, so a thread default sees every server task.
    let _default = tracing::subscriber::set_default(json_subscriber(capture.clone()));
    let h = Harness::with(|c| {
        c.limits.max_pending_handshakes = 1;
        c.limits.max_connections_per_address = 1000;
    })
    .await;
    let addr = h.server.local_addr();
    // One stalled connection holds the only handshake slot; fifty more are dropped.
    let _stalled = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut flood = Vec::new();
    for _ in 0..50 {
        flood.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    for mut stream in flood {
        let mut buf = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await;
        assert!(matches!(read, Ok(Ok(0) | Err(_))), "not dropped: {read:?}");
    }
    let lines: Vec<Value> = audit_lines(&capture)
        .into_iter()
        .filter(|l| l["event"] == "limit" && l["limit"] == "pending_handshakes")
        .collect();
    assert!(
        (1..=3).contains(&lines.len()),
        "{} lines for 50 drops",
        lines.len()
    );
    assert!(lines[0]["dropped"].as_u64().is_some_and(|n| n >= 1));
}
