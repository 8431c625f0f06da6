//! Once a stream exists, protecting and unprotecting allocate nothing: a counting global
//! allocator watches thousands of calls. (One test per binary: the counter is global.)

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

use callsec_srtp::{Config, ProtectionProfile, Provider};
use common::{pair, rtcp, rtp};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// Whether this thread's allocations count: only the test's own thread, not the test
    /// harness printing on its main thread at the same time.
    static COUNTED: Cell<bool> = const { Cell::new(false) };
}

fn count() {
    if COUNTED.try_with(Cell::get).unwrap_or(false) {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: forwards to the system allocator unchanged, only counting calls.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn no_allocation_per_packet() {
    COUNTED.with(|c| c.set(true));
    for (&provider, profile) in Provider::ALL
        .iter()
        .flat_map(|p| ProtectionProfile::ALL.map(|q| (p, q)))
    {
        let mut config = Config::default();
        config.replay_window = 4096;
        config.provider = provider;
        let (mut tx, mut rx) = pair(profile, 1, config);
        let ssrcs = [1u32, 2, 3, 0xdead_beef];
        let plain: Vec<Vec<u8>> = (0..8).map(|i| rtp(0, 0, 100 + i * 150)).collect();
        let report = rtcp(0, 80);
        let mut buf = vec![0u8; 2048];
        let mut spare = vec![0u8; 2048];
        // Warm up: create every stream (this may allocate).
        for &ssrc in &ssrcs {
            for seq in [0u16, 1] {
                let p = &plain[0];
                buf[..p.len()].copy_from_slice(p);
                buf[2..4].copy_from_slice(&seq.to_be_bytes());
                buf[8..12].copy_from_slice(&ssrc.to_be_bytes());
                let n = tx.protect_rtp(&mut buf, p.len()).unwrap();
                rx.unprotect_rtp(&mut buf[..n]).unwrap();
            }
            buf[..report.len()].copy_from_slice(&report);
            buf[4..8].copy_from_slice(&ssrc.to_be_bytes());
            let n = tx.protect_rtcp(&mut buf, report.len()).unwrap();
            rx.unprotect_rtcp(&mut buf[..n]).unwrap();
        }

        let before = ALLOCATIONS.load(Ordering::Relaxed);
        let mut failures = 0;
        for i in 0..20_000u32 {
            let ssrc = ssrcs[i as usize % ssrcs.len()];
            let seq = (2 + i / 4) as u16; // crosses no wrap but exercises the window
            let p = &plain[i as usize % plain.len()];
            buf[..p.len()].copy_from_slice(p);
            buf[2..4].copy_from_slice(&seq.to_be_bytes());
            buf[8..12].copy_from_slice(&ssrc.to_be_bytes());
            let n = tx.protect_rtp(&mut buf, p.len()).unwrap();
            if i % 7 == 0 {
                // The error paths allocate nothing either: a tampered copy (a failed GCM
                // unprotect may clear the payload), then a replay.
                spare[..n].copy_from_slice(&buf[..n]);
                spare[n - 1] ^= 1;
                failures += usize::from(rx.unprotect_rtp(&mut spare[..n]).is_err());
            }
            let m = rx.unprotect_rtp(&mut buf[..n]).unwrap();
            assert_eq!(m, p.len());
            failures += usize::from(rx.unprotect_rtp(&mut buf[..n]).is_err());
            if i % 10 == 0 {
                buf[..report.len()].copy_from_slice(&report);
                buf[4..8].copy_from_slice(&ssrc.to_be_bytes());
                let n = tx.protect_rtcp(&mut buf, report.len()).unwrap();
                rx.unprotect_rtcp(&mut buf[..n]).unwrap();
            }
        }
        let after = ALLOCATIONS.load(Ordering::Relaxed);
        assert!(
            failures > 20_000,
            "{provider} {profile}: error paths were exercised ({failures})"
        );
        assert_eq!(
            after - before,
            0,
            "{provider} {profile}: allocations on the hot path"
        );
    }
}
