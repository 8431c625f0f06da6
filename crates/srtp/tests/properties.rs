//! Property tests: random keys, SSRCs and sequence orders with loss, reordering and
//! duplication across 16-bit sequence wraps. Every first delivery of a packet unprotects to
//! the original; every repeated delivery is refused as a replay.

mod common;

use callsec_srtp::{Config, Error, ProtectionProfile};
use common::{pair, protect_rtcp, protect_rtp, rtcp, rtp};
use proptest::prelude::*;

/// A channel: the sent packets' order after loss, bounded reordering and duplication.
fn channel(n: usize, loss: u8, reorder: usize, dup: u8, seed: u64) -> Vec<usize> {
    let mut x = seed | 1;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut order: Vec<usize> = (0..n).filter(|_| (next() % 100) as u8 >= loss).collect();
    // Reorder: each packet may move back by up to `reorder` places.
    for i in 0..order.len() {
        if reorder > 0 {
            let j = i.saturating_sub((next() % (reorder as u64 + 1)) as usize);
            order.swap(i, j);
        }
    }
    let mut out = Vec::with_capacity(order.len() * 2);
    for i in order {
        out.push(i);
        if (next() % 100) as u8 <= dup {
            out.push(i);
        }
    }
    // And a few late duplicates of early packets.
    for k in 0..n.min(5) {
        out.push(k * 3 % n.max(1));
    }
    out
}

fn profiles() -> impl Strategy<Value = ProtectionProfile> {
    prop_oneof![
        Just(ProtectionProfile::AeadAes128Gcm),
        Just(ProtectionProfile::Aes128CmHmacSha1_80)
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, .. ProptestConfig::default() })]

    #[test]
    fn rtp_survives_loss_reorder_and_wraps(
        profile in profiles(),
        seed in any::<u8>(),
        ssrc in any::<u32>(),
        near_wrap in any::<bool>(),
        start in any::<u16>(),
        n in 200usize..2500,
        loss in 0u8..40,
        reorder in 0usize..60,
        dup in 0u8..10,
        window_log2 in 7u32..13,
        chan_seed in any::<u64>(),
    ) {
        let start = if near_wrap { 65535 - (start % 300) } else { start };
        let window = 1usize << window_log2;
        let mut config = Config::default();
        config.replay_window = window;
        let (mut tx, mut rx) = pair(profile, seed, config);

        let mut sent = Vec::with_capacity(n);
        let mut plains = Vec::with_capacity(n);
        for i in 0..n {
            let plain = rtp(ssrc, start.wrapping_add(i as u16), 20 + i % 200);
            sent.push(protect_rtp(&mut tx, &plain));
            plains.push(plain);
        }
        let mut delivered = vec![false; n];
        let mut highest: Option<usize> = None;
        for i in channel(n, loss, reorder, dup, chan_seed) {
            let mut buf = sent[i].clone();
            let result = rx.unprotect_rtp(&mut buf);
            let too_old = highest.is_some_and(|h| h >= i + window);
            if delivered[i] || too_old {
                prop_assert_eq!(result, Err(Error::Replayed), "packet {} again", i);
                continue;
            }
            // RFC 3711 §3.3.1: a receiver without state takes ROC 0, so a packet sent after
            // the wrap that arrives before anything else cannot authenticate (and leaves no
            // state behind: it passes later, once the stream is established).
            if highest.is_none() && u32::from(start) + i as u32 > 65535 {
                prop_assert_eq!(result, Err(Error::AuthenticationFailed));
                continue;
            }
            let m = result.map_err(|e| TestCaseError::fail(format!("packet {i}: {e}")))?;
            prop_assert_eq!(&buf[..m], &plains[i][..]);
            delivered[i] = true;
            highest = highest.max(Some(i));
        }
    }

    #[test]
    fn rtcp_survives_loss_reorder(
        profile in profiles(),
        seed in any::<u8>(),
        ssrc in any::<u32>(),
        n in 50usize..600,
        loss in 0u8..40,
        reorder in 0usize..60,
        encrypt in any::<bool>(),
        chan_seed in any::<u64>(),
    ) {
        let mut config = Config::default();
        config.encrypt_rtcp = encrypt;
        let (mut tx, mut rx) = pair(profile, seed, config);
        let plains: Vec<_> = (0..n).map(|i| rtcp(ssrc, 8 + 4 * (i % 40))).collect();
        let sent: Vec<_> = plains.iter().map(|p| protect_rtcp(&mut tx, p)).collect();
        let mut delivered = vec![false; n];
        let mut highest: Option<usize> = None;
        for i in channel(n, loss, reorder, 5, chan_seed) {
            let mut buf = sent[i].clone();
            let result = rx.unprotect_rtcp(&mut buf);
            if delivered[i] || highest.is_some_and(|h| h >= i + 128) {
                prop_assert_eq!(result, Err(Error::Replayed));
                continue;
            }
            let m = result.map_err(|e| TestCaseError::fail(format!("rtcp {i}: {e}")))?;
            prop_assert_eq!(&buf[..m], &plains[i][..]);
            if encrypt && plains[i].len() > 12 {
                prop_assert_ne!(&sent[i][8..plains[i].len()], &plains[i][8..]);
            }
            delivered[i] = true;
            highest = highest.max(Some(i));
        }
    }
}

/// A long run in order across many wraps: the rollover counter follows, both ways.
#[test]
fn many_wraps_in_order() {
    for profile in ProtectionProfile::ALL {
        let (mut tx, mut rx) = pair(profile, 3, Config::default());
        for i in 0..(3 * 65536 + 100u32) {
            let plain = rtp(42, i as u16, 4);
            let mut buf = protect_rtp(&mut tx, &plain);
            let m = rx.unprotect_rtp(&mut buf).unwrap();
            assert_eq!(&buf[..m], &plain[..], "{profile} packet {i}");
        }
    }
}

/// Losing a whole burst of up to 32767 packets across a wrap still decodes (RFC 3711 §3.3.1
/// guesses the ROC within half the sequence space).
#[test]
fn large_loss_burst_across_wrap() {
    for profile in ProtectionProfile::ALL {
        let (mut tx, mut rx) = pair(profile, 4, Config::default());
        let mut send = |seq: u16| protect_rtp(&mut tx, &rtp(7, seq, 10));
        let mut first = send(60_000);
        rx.unprotect_rtp(&mut first).unwrap();
        let mut skipped = Vec::new();
        for s in 60_001..=65_535u16 {
            skipped.push(send(s));
        }
        for s in 0..20_000u16 {
            skipped.push(send(s));
        }
        let mut after_wrap = send(20_000);
        assert!(rx.unprotect_rtp(&mut after_wrap).is_ok(), "{profile}");
    }
}
