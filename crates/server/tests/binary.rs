//! The `callsec` binary: `callsec serve` starts on embedded defaults (here with its
//! listeners on free ports), prints where everything is and ready-to-use tokens, serves
//! `/metrics`, and exits cleanly on SIGTERM.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn serve_prints_tokens_serves_metrics_and_exits_on_sigterm() {
    let dir = std::env::temp_dir().join(format!("callsec-bin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_callsec"))
        .args([
            "serve",
            "--signaling",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
            "--log",
            "json",
        ])
        .env("CALLSEC_REVOCATIONS", dir.join("revocations.log"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut printed = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let Some(Ok(line)) = lines.next() else { break };
        let done = line.contains("revoke:");
        printed.push(line);
        if done {
            break;
        }
    }
    let text = printed.join("\n");
    assert!(text.contains("signaling   wss://127.0.0.1:"), "{text}");
    assert!(text.contains("media       udp 127.0.0.1:"), "{text}");
    assert!(text.contains("DTLS        certificate sha-256 "), "{text}");
    let token = printed
        .iter()
        .find_map(|l| l.trim().strip_prefix("alice"))
        .unwrap()
        .trim();
    assert_eq!(token.split('.').count(), 3, "a compact JWS: {token}");
    let metrics = printed
        .iter()
        .find_map(|l| l.trim().strip_prefix("metrics     http://"))
        .unwrap()
        .trim_end_matches("/metrics")
        .to_owned();
    let mut http = std::net::TcpStream::connect(&metrics).unwrap();
    write!(http, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut body = String::new();
    http.read_to_string(&mut body).unwrap();
    assert!(body.starts_with("HTTP/1.1 200 OK"), "{body}");
    assert!(
        body.contains("callsec_dtls_handshakes_completed_total 0"),
        "{body}"
    );

    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let end = Instant::now() + Duration::from_secs(5);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < end,
            "callsec did not exit within 5 s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");
    let _ = std::fs::remove_dir_all(dir);
}
