//! Loopback load test: N concurrent authenticated TLS WebSocket connections (default
//! 5,000) held open at once, each joining a room and exchanging offer/answer rounds.
//! Prints connect and offer/answer round-trip percentiles and peak memory.
//!
//! Bounded: a fixed number of connections and rounds, and an overall deadline after which
//! it gives up and exits non-zero. Traffic goes to 127.0.0.1 only.
//!
//! ```text
//! cargo run --release -p callsec-signaling --example loadtest -- [connections] [rounds]
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use callsec_signaling::{
    AuthConfig, CallHandler, Client, ClientConfig, ClientMessage, ClientTls, Peer, Reply, Request,
    Sdp, Server, ServerConfig, ServerMessage, TokenKey,
};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use tokio::sync::{Semaphore, mpsc, watch};

const SECRET: &[u8] = b"load test secret, thirty-two bytes or more";
const ROOM_SIZE: usize = 10;
const CONNECT_CONCURRENCY: usize = 128;
const DEADLINE: Duration = Duration::from_secs(180);

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

/// An SDP of realistic size (audio + video + data, ~2.5 KB).
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

fn token(i: usize, now: u64) -> String {
    let claims = json!({
        "sub": format!("user-{i}"), "sid": format!("session-{i}"),
        "rooms": [format!("room-{}", i / ROOM_SIZE)], "aud": "callsec-load",
        "exp": now + 3600, "nbf": now - 5, "iat": now - 5,
    });
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(SECRET),
    )
    .unwrap()
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

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(5000);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(2);
    match tokio::time::timeout(DEADLINE, run(n, rounds)).await {
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

async fn run(n: usize, rounds: usize) -> Result<(), String> {
    // Each connection costs two descriptors here (client and server side).
    let want = (2 * n + 512) as u64;
    let got = rlimit::increase_nofile_limit(want).map_err(|e| format!("setrlimit: {e}"))?;
    if got < want {
        return Err(format!("open file limit {got} < {want} needed"));
    }
    let store = std::env::temp_dir().join(format!("callsec-loadtest-{}", std::process::id()));
    let _ = std::fs::remove_file(&store);
    let auth = AuthConfig::new(
        TokenKey::Hs256 {
            secret: SECRET.to_vec(),
        },
        "callsec-load",
    );
    let mut config = ServerConfig::new("127.0.0.1:0".parse().unwrap(), auth, &store);
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
    let client_config = ClientConfig::new(
        server.local_addr(),
        ClientTls::Trust(vec![server.certificate_der().unwrap()]),
        None,
    );
    println!(
        "signaling load test: {n} connections, {rounds} offer/answer rounds each, server {}",
        server.local_addr()
    );

    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let started = Instant::now();
    let connect_gate = Arc::new(Semaphore::new(CONNECT_CONCURRENCY));
    let ready = Arc::new(AtomicUsize::new(0));
    let (go_tx, go_rx) = watch::channel(false);
    let (release_tx, release_rx) = watch::channel(false);
    let (report_tx, mut report_rx) =
        mpsc::unbounded_channel::<Result<(Duration, Vec<Duration>), String>>();
    let offer = sample_sdp("cli");

    for i in 0..n {
        let mut cfg = client_config.clone();
        cfg.token = Some(token(i, now));
        let gate = Arc::clone(&connect_gate);
        let ready = Arc::clone(&ready);
        let (mut go, mut release, report) = (go_rx.clone(), release_rx.clone(), report_tx.clone());
        let offer = offer.clone();
        tokio::spawn(async move {
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
                    // Hold the connection until every client has finished.
                    let _ = release.wait_for(|&r| r).await;
                    drop(client);
                }
                Err(e) => {
                    let _ = report.send(Err(e));
                }
            }
        });
    }
    drop(report_tx);

    // Wait until every connection is up and joined (or something failed).
    loop {
        let r = ready.load(Ordering::Relaxed);
        if r == n {
            break;
        }
        if let Ok(Err(e)) = report_rx.try_recv() {
            return Err(e);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ramp = started.elapsed();
    let held = server.connection_count();
    let rss_held = proc_status("VmRSS:");
    println!(
        "ramp-up: {n} connected and joined in {:.2} s; server holds {held} authenticated connections; VmRSS {rss_held}",
        ramp.as_secs_f64()
    );
    if held < n {
        return Err(format!("server holds only {held} of {n} connections"));
    }

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
            None => return Err("clients vanished".into()),
        }
    }
    let exchange = exchange_start.elapsed();
    let still_held = server.connection_count();
    release_tx.send_replace(true);

    connects.sort_unstable();
    rtts.sort_unstable();
    println!(
        "all {n} connections held concurrently during the exchange: {}",
        still_held == n
    );
    println!(
        "connect (TCP+TLS+upgrade+auth) latency: p50 {} p99 {} max {}",
        ms(percentile(&connects, 0.50)),
        ms(percentile(&connects, 0.99)),
        ms(*connects.last().unwrap_or(&Duration::ZERO))
    );
    println!(
        "offer/answer round trip ({} exchanges, {:.2} s): p50 {} p99 {} max {}",
        rtts.len(),
        exchange.as_secs_f64(),
        ms(percentile(&rtts, 0.50)),
        ms(percentile(&rtts, 0.99)),
        ms(*rtts.last().unwrap_or(&Duration::ZERO))
    );
    println!(
        "peak memory (VmHWM, client and server in one process): {}",
        proc_status("VmHWM:")
    );
    println!("total duration: {:.2} s", started.elapsed().as_secs_f64());
    server.shutdown().await;
    let _ = std::fs::remove_file(&store);
    Ok(())
}
