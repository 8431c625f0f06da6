//! Forwarding allocates nothing and takes no lock per packet: one unprotect with the
//! sender's context, then per receiver a copy, a header rewrite, a protect and a send.
//! Counted with a global allocator over a whole call on the virtual clock (`sim`).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use callsec_dtls::CipherSuite;
use callsec_rtc::rtcp;
use callsec_server::sim::{CountOutput, SimCall};
use callsec_srtp::ProtectionProfile;

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator unchanged, only counting calls.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn forwarding_and_rtcp_routing_allocate_nothing() {
    for profile in ProtectionProfile::ALL {
        let mut call = SimCall::connected(4, profile, CipherSuite::EcdheEcdsaAes128GcmSha256, 3);
        let sender = 0;
        let ssrc = call.clients[sender].video_ssrc;
        assert_eq!(call.receivers_of(ssrc), 3, "{profile:?}: {call:?}");
        // Protected 1200-byte packets, made before counting.
        let mut packets: Vec<Vec<u8>> = (0..200u16)
            .map(|seq| call.clients[sender].video_packet(seq, 1188))
            .collect();
        // A receiver's NACK and PLI, protected, also made before counting.
        let receiver = 1;
        let mut feedback: Vec<Vec<u8>> = (0..50u16)
            .map(|i| {
                let mut buf = vec![0u8; 1500];
                let mut n = rtcp::write_nack(&mut buf, 9, ssrc, &[100 + i, 101 + i]).unwrap();
                n += rtcp::write_pli(&mut buf[n..], 9, ssrc).unwrap();
                let n = call.clients[receiver]
                    .media
                    .protect_rtcp(&mut buf, n)
                    .unwrap();
                buf.truncate(n);
                buf
            })
            .collect();
        let (from, rx_addr, now) = (
            call.clients[sender].addr,
            call.clients[receiver].addr,
            call.now,
        );
        let mut out = CountOutput::default();
        // Warm-up: the first packet of a stream creates its per-SSRC SRTP state (once per
        // stream, not per packet).
        let (warm, packets) = packets.split_at_mut(5);
        let (warm_fb, feedback) = feedback.split_at_mut(2);
        for p in warm.iter_mut() {
            call.sfu.handle_datagram(now, from, p, &mut out);
        }
        for f in warm_fb.iter_mut() {
            call.sfu.handle_datagram(now, rx_addr, f, &mut out);
        }
        let mut out = CountOutput::default();
        let before = ALLOCATIONS.load(Ordering::Relaxed);
        for p in packets.iter_mut() {
            call.sfu.handle_datagram(now, from, p, &mut out);
        }
        for f in feedback.iter_mut() {
            call.sfu.handle_datagram(now, rx_addr, f, &mut out);
        }
        let allocations = ALLOCATIONS.load(Ordering::Relaxed) - before;
        assert_eq!(
            allocations, 0,
            "{profile:?}: allocations on the forwarding path"
        );
        // 200 packets to 3 receivers, plus 100 retransmissions from the cache and the PLI.
        assert!(out.packets >= 195 * 3 + 2 * 48, "{profile:?}: {out:?}");
    }
}
