//! Bad input: every malformed, truncated, forged, replayed or oversized packet gets a typed
//! error, never a panic, and leaves the context exactly as usable as before.

mod common;

use callsec_srtp::{Config, Context, Error, Malformed, MasterKey, ProtectionProfile, Provider};
use common::{pair, protect_rtcp, protect_rtp, rtcp, rtp};

#[test]
fn malformed_rtp_is_refused_on_both_paths() {
    for profile in ProtectionProfile::ALL {
        let (mut tx, mut rx) = pair(profile, 1, Config::default());
        let mut cases: Vec<(Vec<u8>, Malformed)> = vec![
            (vec![], Malformed::TooShort),
            (vec![0x80; 11], Malformed::TooShort),
            (vec![0x00; 40], Malformed::BadVersion),
            (vec![0xc0; 40], Malformed::BadVersion),
        ];
        // CSRC count 15 needs 72 bytes of header.
        let mut csrc = rtp(1, 1, 30);
        csrc[0] = 0x8f;
        cases.push((csrc, Malformed::CsrcPastEnd));
        // Extension bit set but no room for the extension header.
        let mut ext = rtp(1, 1, 2);
        ext[0] = 0x90;
        cases.push((ext, Malformed::ExtensionPastEnd));
        // Extension length past the end (0xffff words).
        let mut ext_len = rtp(1, 1, 40);
        ext_len[0] = 0x90;
        ext_len[12..16].copy_from_slice(&[0xbe, 0xde, 0xff, 0xff]);
        cases.push((ext_len, Malformed::ExtensionPastEnd));

        for (packet, why) in cases {
            let mut buf = packet.clone();
            buf.resize(packet.len() + 64, 0);
            assert_eq!(
                tx.protect_rtp(&mut buf, packet.len()),
                Err(why.into()),
                "{profile} {packet:02x?}"
            );
            let mut buf = packet.clone();
            assert_eq!(
                rx.unprotect_rtp(&mut buf),
                Err(why.into()),
                "{profile} {packet:02x?}"
            );
        }
        // A well-formed header with no room for the tag.
        let mut short = rtp(1, 1, 0);
        short.extend_from_slice(&[0; 5]);
        assert_eq!(
            rx.unprotect_rtp(&mut short),
            Err(Malformed::TooShort.into())
        );

        // Both contexts still work.
        let plain = rtp(9, 100, 50);
        let mut p = protect_rtp(&mut tx, &plain);
        assert_eq!(rx.unprotect_rtp(&mut p), Ok(plain.len()));
    }
}

#[test]
fn malformed_rtcp_is_refused() {
    for profile in ProtectionProfile::ALL {
        let (mut tx, mut rx) = pair(profile, 2, Config::default());
        for len in 0..8 {
            let mut buf = vec![0x80; 64];
            assert_eq!(
                tx.protect_rtcp(&mut buf, len),
                Err(Malformed::TooShort.into())
            );
            let mut buf = vec![0x80; len];
            assert_eq!(rx.unprotect_rtcp(&mut buf), Err(Malformed::TooShort.into()));
        }
        // Header present but shorter than header + E/index + tag.
        for len in 8..8 + 4 + profile.rtp_overhead() {
            let mut buf = rtcp(5, 8);
            buf.resize(len, 0);
            assert_eq!(
                rx.unprotect_rtcp(&mut buf),
                Err(Malformed::TrailerPastEnd.into()),
                "{len}"
            );
        }
        let mut bad_version = rtcp(5, 8);
        bad_version[0] = 0x40;
        bad_version.resize(40, 0);
        assert_eq!(
            rx.unprotect_rtcp(&mut bad_version),
            Err(Malformed::BadVersion.into())
        );
        let plain = rtcp(5, 28);
        let mut p = protect_rtcp(&mut tx, &plain);
        assert_eq!(rx.unprotect_rtcp(&mut p), Ok(28));
    }
}

#[test]
fn buffer_too_small_writes_nothing() {
    for profile in ProtectionProfile::ALL {
        let (mut tx, mut rx) = pair(profile, 3, Config::default());
        let plain = rtp(1, 1, 100);
        let mut buf = plain.clone();
        buf.resize(plain.len() + profile.rtp_overhead() - 1, 0);
        let before = buf.clone();
        assert_eq!(
            tx.protect_rtp(&mut buf, plain.len()),
            Err(Error::BufferTooSmall {
                needed: plain.len() + profile.rtp_overhead()
            })
        );
        assert_eq!(buf, before);
        // `len` past the buffer's end.
        assert!(matches!(
            tx.protect_rtp(&mut buf, 5000),
            Err(Error::BufferTooSmall { .. })
        ));
        let mut r = rtcp(1, 20);
        r.resize(20 + profile.rtcp_overhead() - 1, 0);
        assert!(matches!(
            tx.protect_rtcp(&mut r, 20),
            Err(Error::BufferTooSmall { .. })
        ));
        // The failed calls consumed nothing: sequence 1 is still the stream's first packet.
        let mut p = protect_rtp(&mut tx, &plain);
        assert_eq!(rx.unprotect_rtp(&mut p), Ok(plain.len()));
    }
}

/// Forged packets (wrong key) never create per-SSRC state, never use up stream slots and
/// never move a replay window.
#[test]
fn forgeries_change_no_state() {
    for profile in ProtectionProfile::ALL {
        let mut config = Config::default();
        config.max_streams = 1;
        let (mut tx, _) = pair(profile, 4, Config::default());
        let (_, mut rx) = pair(profile, 4, config);
        let (mut forger, _) = pair(profile, 99, Config::default());

        // A forged first packet for SSRC 1 must not take the only stream slot…
        let mut forged = protect_rtp(&mut forger, &rtp(1, 10, 40));
        assert_eq!(
            rx.unprotect_rtp(&mut forged),
            Err(Error::AuthenticationFailed)
        );
        // …so SSRC 2's genuine stream gets it.
        let mut genuine = protect_rtp(&mut tx, &rtp(2, 10, 40));
        assert_eq!(rx.unprotect_rtp(&mut genuine), Ok(52));
        // A forged packet far ahead must not move SSRC 2's window.
        let mut ahead = protect_rtp(&mut forger, &rtp(2, 30_000, 40));
        assert_eq!(
            rx.unprotect_rtp(&mut ahead),
            Err(Error::AuthenticationFailed)
        );
        let mut next = protect_rtp(&mut tx, &rtp(2, 11, 40));
        assert_eq!(rx.unprotect_rtp(&mut next), Ok(52));
        // Now the table is full: a genuine new SSRC is refused with a typed error.
        let mut other = protect_rtp(&mut tx, &rtp(3, 1, 40));
        assert_eq!(rx.unprotect_rtp(&mut other), Err(Error::TooManyStreams));
        // Same for RTCP.
        let mut forged = protect_rtcp(&mut forger, &rtcp(7, 20));
        assert_eq!(
            rx.unprotect_rtcp(&mut forged),
            Err(Error::AuthenticationFailed)
        );
        let mut ok = protect_rtcp(&mut tx, &rtcp(8, 20));
        assert_eq!(rx.unprotect_rtcp(&mut ok), Ok(20));
    }
}

/// Flipping any single bit of a protected packet makes it fail (tag, header, payload, SRTCP
/// index and E flag are all authenticated), with every provider. A failed unprotect leaves
/// the bytes as they were, except that `ring` clears a GCM payload it decrypted: never
/// plaintext either way.
#[test]
fn every_bit_flip_fails() {
    for &provider in Provider::ALL {
        for profile in ProtectionProfile::ALL {
            for encrypt_rtcp in [true, false] {
                let mut config = Config::default();
                config.encrypt_rtcp = encrypt_rtcp;
                config.provider = provider;
                let (mut tx, mut rx) = pair(profile, 5, config);
                let p = protect_rtp(&mut tx, &rtp(11, 500, 24));
                let r = protect_rtcp(&mut tx, &rtcp(11, 24));
                for bit in 0..p.len() * 8 {
                    let mut bad = p.clone();
                    bad[bit / 8] ^= 1 << (bit % 8);
                    assert!(
                        rx.unprotect_rtp(&mut bad).is_err(),
                        "{provider} {profile} rtp bit {bit}"
                    );
                }
                for bit in 0..r.len() * 8 {
                    let mut bad = r.clone();
                    bad[bit / 8] ^= 1 << (bit % 8);
                    let before = bad.clone();
                    assert!(
                        rx.unprotect_rtcp(&mut bad).is_err(),
                        "{provider} {profile} rtcp bit {bit}"
                    );
                    if bad[0] >> 6 == 2 {
                        // Only the encrypted part (after the 8-byte header, before tag and
                        // trailer) may have changed, and only to zeros.
                        let payload = 8..r.len() - profile.rtcp_overhead();
                        for (i, (&now, &was)) in bad.iter().zip(&before).enumerate() {
                            assert!(
                                now == was || (payload.contains(&i) && now == 0),
                                "{provider} {profile} rtcp bit {bit}: byte {i} changed"
                            );
                        }
                    }
                }
                let mut p2 = p.clone();
                assert!(rx.unprotect_rtp(&mut p2).is_ok());
                let mut r2 = r.clone();
                assert_eq!(rx.unprotect_rtcp(&mut r2), Ok(24));
            }
        }
    }
}

/// A packet that fails authentication changes no state and leaves no plaintext in the
/// buffer, with every provider (`ring` zeroes a GCM payload it decrypted before the tag
/// check failed; RustCrypto checks first and leaves the ciphertext): the genuine packet is
/// accepted afterwards, and its plaintext appears only then.
#[test]
fn failed_unprotect_leaves_no_plaintext_and_no_state() {
    for &provider in Provider::ALL {
        for profile in ProtectionProfile::ALL {
            let mut config = Config::default();
            config.provider = provider;
            let (mut tx, mut rx) = pair(profile, 8, config);
            let plain = rtp(21, 7, 300);
            let p = protect_rtp(&mut tx, &plain);
            let plain_rtcp = rtcp(21, 64);
            let r = protect_rtcp(&mut tx, &plain_rtcp);
            let payload = &plain[12..];
            let tag_at = p.len() - 1;
            for flip in [20, tag_at] {
                let mut bad = p.clone();
                bad[flip] ^= 0x10;
                assert_eq!(
                    rx.unprotect_rtp(&mut bad),
                    Err(Error::AuthenticationFailed),
                    "{provider} {profile}"
                );
                assert!(
                    !bad.windows(16).any(|w| payload.windows(16).any(|x| x == w)),
                    "{provider} {profile}: plaintext left in the buffer"
                );
            }
            let mut bad = r.clone();
            let at = bad.len() - profile.rtcp_overhead() + 4;
            bad[at] ^= 1;
            assert!(rx.unprotect_rtcp(&mut bad).is_err());
            assert!(
                !bad[8..]
                    .windows(16)
                    .any(|w| plain_rtcp[8..].windows(16).any(|x| x == w)),
                "{provider} {profile}: RTCP plaintext left in the buffer"
            );
            // No state moved: the genuine packets are the first ones seen.
            let mut good = p.clone();
            assert_eq!(rx.unprotect_rtp(&mut good), Ok(plain.len()));
            assert_eq!(good[..plain.len()], plain[..]);
            let mut good = r.clone();
            assert_eq!(rx.unprotect_rtcp(&mut good), Ok(plain_rtcp.len()));
            assert_eq!(good[..plain_rtcp.len()], plain_rtcp[..]);
        }
    }
}

#[test]
fn key_lifetime_is_enforced() {
    for profile in ProtectionProfile::ALL {
        let mut config = Config::default();
        config.max_srtp_packets = 3;
        config.max_srtcp_packets = 2;
        let (mut tx, mut rx) = pair(profile, 6, config);
        for seq in 0..3 {
            let mut p = protect_rtp(&mut tx, &rtp(1, seq, 8));
            rx.unprotect_rtp(&mut p).unwrap();
        }
        let plain = rtp(1, 3, 8);
        let mut buf = plain.clone();
        buf.resize(64, 0);
        assert_eq!(
            tx.protect_rtp(&mut buf, plain.len()),
            Err(Error::KeyExhausted)
        );
        for _ in 0..2 {
            let mut r = protect_rtcp(&mut tx, &rtcp(1, 8));
            rx.unprotect_rtcp(&mut r).unwrap();
        }
        let mut buf = rtcp(1, 8);
        buf.resize(64, 0);
        assert_eq!(tx.protect_rtcp(&mut buf, 8), Err(Error::KeyExhausted));
    }
}

#[test]
fn config_and_key_validation() {
    let profile = ProtectionProfile::AeadAes128Gcm;
    assert_eq!(
        MasterKey::new(profile, &[0; 15], &[0; 12]).err(),
        Some(Error::InvalidKeyLength {
            expected: 16,
            actual: 15
        })
    );
    assert_eq!(
        MasterKey::new(profile, &[0; 16], &[0; 14]).err(),
        Some(Error::InvalidKeyLength {
            expected: 12,
            actual: 14
        })
    );
    let key = MasterKey::new(profile, &[0; 16], &[0; 12]).unwrap();
    assert!(
        !format!("{key:?}").contains('0'),
        "Debug must not print key bytes: {key:?}"
    );
    for window in [0, 32, 100, 65536] {
        let mut c = Config::default();
        c.replay_window = window;
        assert!(
            matches!(Context::new(&key, c), Err(Error::InvalidConfig(_))),
            "{window}"
        );
    }
    let mut c = Config::default();
    c.replay_window = 4096;
    assert!(Context::new(&key, c).is_ok());
    let mut c = Config::default();
    c.max_srtp_packets = (1 << 48) + 1;
    assert!(Context::new(&key, c).is_err());
    // Every profile code point other than the two is refused.
    for id in 0..=u16::MAX {
        let ok = ProtectionProfile::from_id(id).is_some();
        assert_eq!(ok, id == 1 || id == 7, "{id:#06x}");
    }
}

/// Random garbage of every length never panics either way, never authenticates, and
/// leaves the receiving context as usable as before (genuine packets, sent between the
/// garbage, keep being accepted).
#[test]
fn garbage_never_panics_nor_authenticates_nor_disturbs_the_receiver() {
    let mut x = 0x243f_6a88_85a3_08d3u64;
    for profile in ProtectionProfile::ALL {
        let (mut genuine, mut rx) = pair(profile, 7, Config::default());
        let (mut tx, _) = pair(profile, 8, Config::default());
        for len in 0..400 {
            for _ in 0..20 {
                let mut buf: Vec<u8> = (0..len)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        x as u8
                    })
                    .collect();
                if len > 0 && x.is_multiple_of(2) {
                    buf[0] = 0x80 | (buf[0] & 0x3f);
                }
                assert!(rx.unprotect_rtp(&mut buf.clone()).is_err(), "{profile}");
                assert!(rx.unprotect_rtcp(&mut buf.clone()).is_err(), "{profile}");
                let n = buf.len();
                buf.resize(n + 40, 0);
                // Garbage to protect may be valid RTP by chance: only no panic here.
                let _ = tx.protect_rtp(&mut buf.clone(), n);
                let _ = tx.protect_rtcp(&mut buf, n);
            }
            // The attacked receiver still takes the genuine stream (on a sender of its
            // own, so garbage the sender happened to protect does not interfere).
            let seq = u16::try_from(len).unwrap_or(u16::MAX);
            let plain = rtp(0x1234, seq, 20);
            let mut p = protect_rtp(&mut genuine, &plain);
            assert_eq!(rx.unprotect_rtp(&mut p), Ok(plain.len()), "{profile} {len}");
            let plain = rtcp(0x1234, 28);
            let mut p = protect_rtcp(&mut genuine, &plain);
            assert_eq!(
                rx.unprotect_rtcp(&mut p),
                Ok(plain.len()),
                "{profile} {len}"
            );
        }
    }
}
