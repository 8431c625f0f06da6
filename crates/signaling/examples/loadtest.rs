//! Loopback load test: N concurrent authenticated TLS WebSocket connections (default
//! 5,000) held open at once, each joining a room and exchanging offer/answer rounds.
//!
//! The server runs in this process; the clients run in a child process (this same binary
//! with `--client`), so the peak memory reported for the server (VmHWM) is the server's
//! alone. The two talk over the child's stdin/stdout:
//!
//! ```text
//! parent: start server, write its certificate, spawn child
//! child:  connect + authenticate + join all N           -> "READY"
//! parent: check the server holds N connections          -> "GO"
//! child:  every connection does R offer/answer rounds    -> "RESULT ..." lines, "DONE"
//! parent: check the server still holds N                 -> "RELEASE"
//! child:  closes everything and exits
//! ```
//!
//! Bounded: fixed counts and an overall deadline after which it exits non-zero (the
//! child is killed with it). Traffic goes to 127.0.0.1 only.
//!
//! ```text
//! cargo run --release -p callsec-signaling --example loadtest -- [connections] [rounds]
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use callsec_signaling::{
    AuthConfig, CallHandler, Client, ClientConfig, ClientMessage, ClientTls, Peer, Reply, Request,
    Sdp, Server, ServerConfig, ServerMessage, TokenKey,
};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rustls_pki_types::CertificateDer;
use serde_json::json;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::sync::{Semaphore, mpsc, watch};

const SECRET: &[u8] = b"load test secret, thirty-two bytes or more";
const AUDIENCE: &str = "callsec-load";
const ROOM_SIZE: usize = 10;
const CONNECT_CONCURRENCY: usize = 128;
const DEADLINE: Duration = Duration::from_secs(180);

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = if args.first().map(String::as_str) == Some("--client") {
        tokio::time::timeout(DEADLINE, client_main(&args[1..])).await
    } else {
        let n = args.first().and_then(|a| a.parse().ok()).unwrap_or(5000);
        let rounds = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(2);
        tokio::time::timeout(DEADLINE, server_main(n, rounds)).await
    };
    match result {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            eprintln!("load test failed: {e}");
            std::process::exit(1);
        }
        Err(_) => {
            eprintln!("load test did not finish within {DEADLINE:?}");
            std::process::exit(1);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Server side (parent process)

/// Answers every offer with a fixed-size answer, like an SFU would.
struct Answerer {
    answer: Sdp,
}

impl CallHandler for Answerer {
    async fn handle(&self, _peer: &Peer, request: Request) -> Reply {
        match request {
            Request::Offer(_) => Reply::Answer(self.answer.clone()),
            _ => Reply::Accept,
        }
    }
}

async fn server_main(n: usize, rounds: usize) -> Result<(), String> {
    raise_fd_limit(n)?;
    let started = Instant::now();
    let dir = std::env::temp_dir().join(format!("callsec-loadtest-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let auth = AuthConfig::new(
        TokenKey::Hs256 {
            secret: SECRET.to_vec(),
        },
        AUDIENCE,
    );
    let mut config = ServerConfig::new(
        "127.0.0.1:0".parse().unwrap(),
        auth,
        dir.join("revocations"),
    );
    config.limits.max_connections = n + 100;
    config.limits.max_connections_per_address = n + 100;
    config.limits.max_pending_handshakes = 1024;
    config.limits.handshake_timeout = Duration::from_secs(30);
    config.limits.idle_timeout = Duration::from_secs(300);
    config.limits.max_participants_per_room = ROOM_SIZE;
    let server = Server::start(
        config,
        Answerer {
            answer: sample_sdp("srv"),
        },
    )
    .await
    .map_err(|e| e.to_string())?;
    let cert_path = dir.join("cert.der");
    std::fs::write(&cert_path, server.certificate_der().unwrap().as_ref())
        .map_err(|e| e.to_string())?;
    println!(
        "signaling load test: {n} connections, {rounds} offer/answer rounds each, server {} (pid {}), clients in a child process",
        server.local_addr(),
        std::process::id()
    );
    println!("server at rest: VmRSS {}", proc_status("VmRSS:"));

    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut child = tokio::process::Command::new(exe)
        .arg("--client")
        .arg(server.local_addr().to_string())
        .arg(&cert_path)
        .arg(n.to_string())
        .arg(rounds.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("spawning the client process: {e}"))?;
    let mut to_child = child.stdin.take().unwrap();
    let mut from_child = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut expect = async |what: &str| -> Result<Vec<String>, String> {
        let mut lines = Vec::new();
        loop {
            match from_child.next_line().await.map_err(|e| e.to_string())? {
                Some(line) if line == what => return Ok(lines),
                Some(line) if line.starts_with("ERROR") => return Err(line),
                Some(line) => lines.push(line),
                None => return Err(format!("client process ended before {what}")),
            }
        }
    };

    expect("READY").await?;
    let ramp = started.elapsed();
    let held = server.connection_count();
    let rss_held = proc_status("VmRSS:");
    println!(
        "ramp-up: {held} authenticated connections held by the server after {:.2} s; server VmRSS {rss_held}",
        ramp.as_secs_f64()
    );
    if held != n {
        return Err(format!("server holds {held} of {n} connections"));
    }
    to_child
        .write_all(b"GO\n")
        .await
        .map_err(|e| e.to_string())?;
    let results = expect("DONE").await?;
    let still_held = server.connection_count();
    to_child
        .write_all(b"RELEASE\n")
        .await
        .map_err(|e| e.to_string())?;
    for line in results {
        println!("{}", line.trim_start_matches("RESULT "));
    }
    println!(
        "all {n} connections still held after the exchange: {}",
        still_held == n
    );
    println!("server peak memory (VmHWM): {}", proc_status("VmHWM:"));
    let status = child.wait().await.map_err(|e| e.to_string())?;
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    println!("total duration: {:.2} s", started.elapsed().as_secs_f64());
    if !status.success() || still_held != n {
        return Err(format!("client process exit {status}, held {still_held}"));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Client side (child process)

async fn client_main(args: &[String]) -> Result<(), String> {
    let [addr, cert, n, rounds] = args else {
        return Err("usage: --client ADDR CERT_DER N ROUNDS".into());
    };
    let n: usize = n.parse().map_err(|_| "bad N")?;
    let rounds: usize = rounds.parse().map_err(|_| "bad ROUNDS")?;
    raise_fd_limit(n)?;
    let cert = CertificateDer::from(std::fs::read(cert).map_err(|e| e.to_string())?);
    let base = ClientConfig::new(
        addr.parse().map_err(|_| "bad ADDR")?,
        ClientTls::Trust(vec![cert]),
        None,
    );
    let result = run_clients(base, n, rounds).await;
    if let Err(e) = &result {
        println!("ERROR {e}");
    }
    result
}

async fn run_clients(base: ClientConfig, n: usize, rounds: usize) -> Result<(), String> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let connect_gate = Arc::new(Semaphore::new(CONNECT_CONCURRENCY));
    let ready = Arc::new(AtomicUsize::new(0));
    let (go_tx, go_rx) = watch::channel(false);
    let (release_tx, release_rx) = watch::channel(false);
    let (report_tx, mut report_rx) =
        mpsc::unbounded_channel::<Result<(Duration, Vec<Duration>), String>>();
    let offer = sample_sdp("cli");
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let mut cfg = base.clone();
        cfg.token = Some(token(i, now));
        let gate = Arc::clone(&connect_gate);
        let ready = Arc::clone(&ready);
        let (mut go, mut release, report) = (go_rx.clone(), release_rx.clone(), report_tx.clone());
        let offer = offer.clone();
        tasks.push(tokio::spawn(async move {
            let result = async {
                let permit = gate.acquire().await.map_err(|e| e.to_string())?;
                let t0 = Instant::now();
                let (mut client, _) = Client::connect(&cfg)
                    .await
                    .map_err(|e| format!("connect {i}: {e}"))?;
                let connect_time = t0.elapsed();
                let joined = client
                    .request(ClientMessage::Join {
                        room: format!("room-{}", i / ROOM_SIZE),
                    })
                    .await
                    .map_err(|e| format!("join {i}: {e}"))?;
                if !matches!(joined, ServerMessage::Joined { .. }) {
                    return Err(format!("join {i}: {joined:?}"));
                }
                drop(permit);
                ready.fetch_add(1, Ordering::Relaxed);
                go.wait_for(|&g| g).await.map_err(|e| e.to_string())?;
                // Spread the offers over a second so this measures latency, not one burst.
                tokio::time::sleep(Duration::from_micros((i as u64 * 7919) % 1_000_000)).await;
                let mut rtts = Vec::with_capacity(rounds);
                for _ in 0..rounds {
                    let t = Instant::now();
                    let reply = client
                        .request(ClientMessage::Offer { sdp: offer.clone() })
                        .await
                        .map_err(|e| format!("offer {i}: {e}"))?;
                    rtts.push(t.elapsed());
                    if !matches!(reply, ServerMessage::Answer { .. }) {
                        return Err(format!("offer {i}: {reply:?}"));
                    }
                }
                Ok((connect_time, rtts, client))
            }
            .await;
            match result {
                Ok((connect_time, rtts, client)) => {
                    let _ = report.send(Ok((connect_time, rtts)));
                    // Hold the connection until the server has counted it.
                    let _ = release.wait_for(|&r| r).await;
                    let _ = client.close().await;
                }
                Err(e) => {
                    let _ = report.send(Err(e));
                }
            }
        }));
    }
    drop(report_tx);

    let ramp_start = Instant::now();
    while ready.load(Ordering::Relaxed) < n {
        if let Ok(Err(e)) = report_rx.try_recv() {
            return Err(e);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ramp = ramp_start.elapsed();
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    println!("READY");
    wait_line(&mut stdin, "GO").await?;
    let exchange_start = Instant::now();
    go_tx.send_replace(true);
    let mut connects = Vec::with_capacity(n);
    let mut rtts = Vec::with_capacity(n * rounds);
    for _ in 0..n {
        match report_rx.recv().await {
            Some(Ok((c, r))) => {
                connects.push(c);
                rtts.extend(r);
            }
            Some(Err(e)) => return Err(e),
            None => return Err("client tasks vanished".into()),
        }
    }
    let exchange = exchange_start.elapsed();
    connects.sort_unstable();
    rtts.sort_unstable();
    println!(
        "RESULT connect (TCP+TLS+upgrade+auth, {CONNECT_CONCURRENCY} at a time): {n} in {:.2} s, p50 {} p99 {} max {}",
        ramp.as_secs_f64(),
        ms(percentile(&connects, 0.50)),
        ms(percentile(&connects, 0.99)),
        ms(*connects.last().unwrap_or(&Duration::ZERO))
    );
    println!(
        "RESULT offer/answer round trip ({} exchanges over {:.2} s, SDP {} bytes): p50 {} p99 {} max {}",
        rtts.len(),
        exchange.as_secs_f64(),
        offer_len(),
        ms(percentile(&rtts, 0.50)),
        ms(percentile(&rtts, 0.99)),
        ms(*rtts.last().unwrap_or(&Duration::ZERO))
    );
    println!(
        "RESULT client process peak memory (VmHWM): {}",
        proc_status("VmHWM:")
    );
    println!("DONE");
    wait_line(&mut stdin, "RELEASE").await?;
    release_tx.send_replace(true);
    for t in tasks {
        let _ = t.await;
    }
    Ok(())
}

async fn wait_line(
    lines: &mut tokio::io::Lines<BufReader<tokio::io::Stdin>>,
    want: &str,
) -> Result<(), String> {
    loop {
        match lines.next_line().await.map_err(|e| e.to_string())? {
            Some(l) if l == want => return Ok(()),
            Some(_) => {}
            None => return Err(format!("parent went away before {want}")),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Helpers

fn raise_fd_limit(n: usize) -> Result<(), String> {
    let want = (n + 512) as u64;
    let got = rlimit::increase_nofile_limit(want).map_err(|e| format!("setrlimit: {e}"))?;
    if got < want {
        return Err(format!("open file limit {got} < {want} needed"));
    }
    Ok(())
}

fn token(i: usize, now: u64) -> String {
    let claims = json!({
        "sub": format!("user-{i}"), "sid": format!("session-{i}"),
        "rooms": [format!("room-{}", i / ROOM_SIZE)], "aud": AUDIENCE,
        "exp": now + 3600, "nbf": now - 5, "iat": now - 5,
    });
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(SECRET),
    )
    .unwrap()
}

/// An SDP of realistic size (audio + video + data).
fn sample_sdp(tag: &str) -> Sdp {
    let mut s =
        String::from("v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n");
    s.push_str("a=group:BUNDLE 0 1 2\r\na=msid-semantic: WMS\r\n");
    for (mid, kind) in [(0, "audio"), (1, "video"), (2, "application")] {
        s.push_str(&format!(
            "m={kind} 9 UDP/TLS/RTP/SAVPF 111 96 97 98 99 100 101\r\n"
        ));
        s.push_str("c=IN IP4 0.0.0.0\r\na=rtcp:9 IN IP4 0.0.0.0\r\n");
        s.push_str(&format!(
            "a=ice-ufrag:{tag}uf\r\na=ice-pwd:{tag}pwdpwdpwdpwdpwdpwdpwd\r\n"
        ));
        s.push_str("a=fingerprint:sha-256 ");
        s.push_str(&"AB:".repeat(31));
        s.push_str("AB\r\na=setup:actpass\r\n");
        s.push_str(&format!("a=mid:{mid}\r\na=sendrecv\r\na=rtcp-mux\r\n"));
        for pt in [111, 96, 97, 98, 99, 100, 101] {
            s.push_str(&format!(
                "a=rtpmap:{pt} codec{pt}/90000\r\na=rtcp-fb:{pt} nack\r\n"
            ));
        }
    }
    Sdp(s)
}

fn offer_len() -> usize {
    sample_sdp("cli").0.len()
}

fn proc_status(field: &str) -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .map(|l| l.split_whitespace().skip(1).collect::<Vec<_>>().join(" "))
        })
        .unwrap_or_else(|| "n/a".into())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}
