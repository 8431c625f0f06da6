//! `cargo xtask bench sfu` (load part): the real server on loopback with one media worker,
//! rooms of one sender and K receivers built from callsec's own crates (signaling, ICE,
//! DTLS, SRTP), 1200-byte SRTP video at a fixed rate. Bounded: a few seconds per step.
//!
//! Reports forwarded packets per second and per second of worker CPU (both legs SRTP),
//! loss, p99 forwarding latency (the server's histogram), the worker heap per idle
//! participant, and worker CPU per participant.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use callsec_dtls::CipherSuite;
use callsec_rtc::client::write_rtp;
use callsec_rtc::sdp::Kind;
use callsec_srtp::ProtectionProfile;
use common::{Participant, metric, server, wait_until};

/// Net heap bytes allocated by media worker threads (their participants' state).
static WORKER_HEAP: AtomicI64 = AtomicI64::new(0);

thread_local! {
    static IS_WORKER: Cell<Option<bool>> = const { Cell::new(None) };
}

fn on_worker() -> bool {
    IS_WORKER
        .try_with(|w| match w.get() {
            Some(v) => v,
            None => {
                let v = std::thread::current()
                    .name()
                    .is_some_and(|n| n.starts_with("callsec-worker"));
                w.set(Some(v));
                v
            }
        })
        .unwrap_or(false)
}

struct WorkerHeap;

// SAFETY: forwards to the system allocator unchanged; only counts bytes on worker threads.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for WorkerHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if on_worker() {
            WORKER_HEAP.fetch_add(layout.size() as i64, Ordering::Relaxed);
        }
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if on_worker() {
            WORKER_HEAP.fetch_sub(layout.size() as i64, Ordering::Relaxed);
        }
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: WorkerHeap = WorkerHeap;

/// CPU seconds used so far by threads whose name starts with `prefix`.
fn thread_cpu(prefix: &str) -> f64 {
    let ticks = 100.0; // USER_HZ on Linux
    let mut total = 0.0;
    for task in std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
    {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if !comm.trim_end().starts_with(&prefix[..prefix.len().min(15)]) {
            continue;
        }
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        let after = stat.rsplit(')').next().unwrap_or("");
        let f: Vec<&str> = after.split_whitespace().collect();
        if f.len() > 13 {
            total +=
                (f[11].parse::<f64>().unwrap_or(0.0) + f[12].parse::<f64>().unwrap_or(0.0)) / ticks;
        }
    }
    total
}

/// p99 from the cumulative latency buckets.
fn p99_latency(running: &callsec_server::Running) -> f64 {
    let text = running.metrics.encode();
    let mut buckets: Vec<(f64, f64)> = text
        .lines()
        .filter(|l| l.starts_with("callsec_forwarding_latency_seconds_bucket"))
        .filter_map(|l| {
            let le = l.split("le=\"").nth(1)?.split('"').next()?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, l.rsplit(' ').next()?.parse().ok()?))
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total = buckets.last().map_or(0.0, |b| b.1);
    buckets
        .iter()
        .find(|(_, c)| *c >= 0.99 * total)
        .map_or(f64::NAN, |b| b.0)
}

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1)?.parse().ok())
        .unwrap_or(default)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let rooms = arg("--rooms", 2) as usize;
    let receivers = arg("--receivers", 8) as usize;
    let seconds = arg("--seconds", 3);
    let idle = arg("--idle", 10) as usize; // signaling allows 32 connections per address by default
    let rates: Vec<u64> = vec![5000, 12500, 25000];
    let running = server(
        &[ProtectionProfile::AeadAes128Gcm],
        &[CipherSuite::EcdheEcdsaAes128GcmSha256],
        |s| {
            s.workers = 1;
            s.max_room_size = 64;
            s.max_participants_per_worker = 10_000;
        },
    )
    .await;

    // Memory: idle participants (joined, ICE+DTLS done, no media), worker heap delta.
    let heap0 = WORKER_HEAP.load(Ordering::Relaxed);
    let mut idlers = Vec::new();
    for i in 0..idle {
        let p = Participant::join(
            &running,
            &format!("idle{i}"),
            &format!("idle{}", i / 16),
            &[(Kind::Audio, 0x10_0000 + i as u32)],
            1000 + i as u64,
        )
        .await;
        p.state.lock().unwrap().mute_media = true;
        idlers.push(p);
    }
    assert!(
        wait_until(Duration::from_secs(30), || idlers
            .iter()
            .all(Participant::connected))
        .await
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let per_idle = (WORKER_HEAP.load(Ordering::Relaxed) - heap0) as f64 / idle.max(1) as f64;

    // Load rooms: one video sender and `receivers` count-only receivers each.
    let mut senders = Vec::new();
    let mut sinks = Vec::new();
    for r in 0..rooms {
        let room = format!("load{r}");
        let s = Participant::join(
            &running,
            &format!("sender{r}"),
            &room,
            &[(Kind::Video, 0x2000 + r as u32)],
            5000 + r as u64,
        )
        .await;
        s.state.lock().unwrap().mute_media = true;
        senders.push(s);
        for k in 0..receivers {
            let p = Participant::join(
                &running,
                &format!("rx{r}-{k}"),
                &room,
                &[(Kind::Audio, 0x3000 + (r * 100 + k) as u32)],
                6000 + (r * 100 + k) as u64,
            )
            .await;
            p.state.lock().unwrap().mute_media = true;
            sinks.push(p);
        }
    }
    let all_forwarded = wait_until(Duration::from_secs(30), || {
        senders.iter().all(Participant::connected)
            && sinks.iter().all(|p| {
                p.connected()
                    && p.state.lock().unwrap().media.sections().iter().any(|s| {
                        s.recv_ssrc
                            .is_some_and(|ssrc| (0x2000..0x2000 + rooms as u32).contains(&ssrc))
                    })
            })
    })
    .await;
    assert!(all_forwarded, "load rooms did not negotiate");
    for p in &sinks {
        p.state.lock().unwrap().count_only = true;
    }
    let participants = idle + rooms * (receivers + 1);

    println!(
        "\nsfu load: 1 worker, {rooms} rooms x (1 sender -> {receivers} receivers), 1200-byte SRTP (AEAD_AES_128_GCM both legs), {idle} idle participants"
    );
    println!(
        "{:>12} {:>14} {:>16} {:>10} {:>12} {:>14}",
        "input pps", "forwarded pps", "fwd / cpu-s", "loss", "p99 latency", "worker cpu"
    );
    let mut seq = 1u16;
    for rate in rates {
        let per_sender = rate / rooms as u64;
        let sent0: u64 = 0;
        let counted0: u64 = sinks
            .iter()
            .map(|p| p.state.lock().unwrap().counted.0)
            .sum();
        let fwd0 = metric(&running, "rtp_forwarded_total");
        let cpu0 = thread_cpu("callsec-worker");
        let start = Instant::now();
        let mut sent = sent0;
        let tick = Duration::from_millis(10);
        let mut next = start;
        while start.elapsed() < Duration::from_secs(seconds) {
            next += tick;
            let batch = (per_sender * tick.as_millis() as u64 / 1000).max(1);
            for (r, s) in senders.iter().enumerate() {
                let ssrc = 0x2000 + r as u32;
                let mut st = s.state.lock().unwrap();
                for i in 0..batch {
                    let seq = seq.wrapping_add(i as u16);
                    let mut buf = [0u8; 1500];
                    let n = write_rtp(&mut buf, 96, seq, u32::from(seq) * 90, ssrc, &[0x5a; 1188]);
                    let n = st.media.protect_rtp(&mut buf, n).unwrap();
                    st.outbox.push(buf[..n].to_vec());
                }
                sent += batch;
            }
            seq = seq.wrapping_add(batch as u16);
            tokio::time::sleep_until(next.into()).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let elapsed = start.elapsed().as_secs_f64() - 0.3;
        let cpu = thread_cpu("callsec-worker") - cpu0;
        let fwd = metric(&running, "rtp_forwarded_total") - fwd0;
        let counted: u64 = sinks
            .iter()
            .map(|p| p.state.lock().unwrap().counted.0)
            .sum::<u64>()
            - counted0;
        let expected = sent * receivers as u64;
        let loss = 1.0 - counted as f64 / expected.max(1) as f64;
        println!(
            "{:>12.0} {:>14.0} {:>16.0} {:>9.2}% {:>10.1}µs {:>13.0}%",
            sent as f64 / elapsed,
            fwd / elapsed,
            fwd / cpu.max(1e-9),
            loss * 100.0,
            p99_latency(&running) * 1e6,
            cpu / elapsed * 100.0
        );
        if rate == 12500 {
            println!(
                "worker CPU per participant at this rate: {:.2}% of a core ({participants} participants)",
                cpu / elapsed * 100.0 / participants as f64
            );
        }
    }
    println!(
        "worker heap per idle participant: {:.1} KiB",
        per_idle / 1024.0
    );
    running.shutdown().await;
}
