//! The audit log: one JSON line per security event, never a token or SDP.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use callsec_signaling::audit::{AUDIT_TARGET, json_subscriber};
use callsec_signaling::{Client, ClientMessage, Incoming, Sdp};
use common::{Harness, claims, sign, token};
use serde_json::{Value, json};

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

    let h = Harness::with(|c| {
        c.limits.messages_per_second = 1;
        c.limits.message_burst = 1;
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
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let secret_sdp = "v=0\r\na=ice-pwd:SDPSECRETPASSWORD0123\r\na=fingerprint:sha-256 AB:CD\r\n";
    alice
        .request(ClientMessage::Offer {
            sdp: Sdp(secret_sdp.into()),
        })
        .await
        .unwrap();
    // Rate limit hit.
    alice.send(ClientMessage::Ping).await.unwrap();
    alice.send(ClientMessage::Ping).await.unwrap();
    // Room limit hit.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut bob = h.connect(token("bob", "s2")).await;
    bob.request(ClientMessage::Join { room: "r1".into() })
        .await
        .unwrap();
    // Expired token.
    let mut expired = claims("eve", "s9");
    expired["exp"] = json!(common::now() - 3600);
    let expired = sign(&expired);
    assert!(
        Client::connect(&h.client_config(Some(expired.clone())))
            .await
            .is_err()
    );
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
    tokio::time::sleep(Duration::from_millis(200)).await;

    let lines = audit_lines(&capture);
    assert!(has(&lines, "auth_success", "user", "alice"));
    assert!(has(&lines, "auth_success", "method", "header"));
    assert!(has(&lines, "auth_failure", "reason", "expired"));
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
    for secret in [
        good.as_str(),
        expired.as_str(),
        "SDPSECRETPASSWORD0123",
        "AB:CD",
    ] {
        assert!(!all.contains(secret), "audit log leaked a secret");
    }
    // The signature part of the tokens alone must not appear either.
    for tok in [&good, &expired] {
        let sig = tok.rsplit('.').next().unwrap();
        assert!(!all.contains(sig));
    }
}
