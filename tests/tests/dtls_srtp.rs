//! One hop end to end: a DTLS 1.2 handshake agrees the keys (callsec-dtls on both sides, in
//! memory), and SRTP/SRTCP contexts built from the `Connected` event carry media both ways.
//! The receiving side is also played by webrtc-srtp and libsrtp2, built from the same key
//! bytes, so the key objects the handshake hands out mean the same to independent stacks.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use callsec_dtls::Connected;
use callsec_srtp::{Context, MasterKey, ProtectionProfile};
use callsec_tests::pair::{Netem, Pair};
use callsec_tests::{RtpShape, rtcp_packet, rtp_packet};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

/// Runs a handshake in memory on the shared simulated network (no loss); returns (client,
/// server) Connected events.
fn handshake(profile: ProtectionProfile, seed: u64) -> (Box<Connected>, Box<Connected>) {
    let mut p = Pair::new(seed, Netem::default(), |c| c.srtp_profiles = vec![profile]);
    p.drive();
    (
        Box::new(p.client_connected().clone()),
        Box::new(p.server_connected().clone()),
    )
}

fn context(key: &MasterKey) -> Context {
    Context::new(key, callsec_srtp::Config::default()).unwrap()
}

#[test]
fn dtls_keys_carry_srtp_both_ways() {
    for (i, profile) in ProtectionProfile::ALL.into_iter().enumerate() {
        let (c, s) = handshake(profile, 40 + i as u64);
        assert_eq!(c.profile, profile);
        assert_eq!(s.profile, profile);
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        // Each side protects with its `local` key; the other unprotects with its `remote`.
        for (from, to, ssrc) in [(&c, &s, 0x1111_1111u32), (&s, &c, 0x2222_2222)] {
            let mut tx = context(&from.srtp.local);
            let mut rx = context(&to.srtp.remote);
            // And a context on the wrong key must refuse the packets.
            let mut wrong = context(&to.srtp.local);
            for seq in 0..200u16 {
                let plain = rtp_packet(&RtpShape::simple(ssrc, seq, 160), &mut rng);
                let mut buf = plain.clone();
                buf.resize(plain.len() + 64, 0);
                let n = tx.protect_rtp(&mut buf, plain.len()).unwrap();
                let mut copy = buf[..n].to_vec();
                assert!(
                    wrong.unprotect_rtp(&mut copy).is_err(),
                    "{profile}: wrong key accepted"
                );
                let m = rx.unprotect_rtp(&mut buf[..n]).unwrap();
                assert_eq!(&buf[..m], &plain[..], "{profile}");
            }
            let report = rtcp_packet(ssrc, 52, &mut rng);
            let mut buf = report.clone();
            buf.resize(report.len() + 64, 0);
            let n = tx.protect_rtcp(&mut buf, report.len()).unwrap();
            let m = rx.unprotect_rtcp(&mut buf[..n]).unwrap();
            assert_eq!(&buf[..m], &report[..]);
        }
    }
}

#[test]
fn dtls_keys_mean_the_same_to_webrtc_srtp_and_libsrtp2() {
    for (i, profile) in ProtectionProfile::ALL.into_iter().enumerate() {
        let (c, s) = handshake(profile, 60 + i as u64);
        let mut rng = ChaCha20Rng::seed_from_u64(8);
        // The client sends with callsec; the server side receives with the two other stacks,
        // keyed from the server's `remote` key bytes.
        let mut tx = context(&c.srtp.local);
        let w_profile = match profile {
            ProtectionProfile::AeadAes128Gcm => {
                webrtc_srtp::protection_profile::ProtectionProfile::AeadAes128Gcm
            }
            ProtectionProfile::Aes128CmHmacSha1_80 => {
                webrtc_srtp::protection_profile::ProtectionProfile::Aes128CmHmacSha1_80
            }
        };
        let mut webrtc = webrtc_srtp::context::Context::new(
            s.srtp.remote.key(),
            s.srtp.remote.salt(),
            w_profile,
            None,
            None,
        )
        .unwrap();
        let l_profile = match profile {
            ProtectionProfile::AeadAes128Gcm => callsec_libsrtp2::Profile::AeadAes128Gcm,
            ProtectionProfile::Aes128CmHmacSha1_80 => {
                callsec_libsrtp2::Profile::Aes128CmHmacSha1_80
            }
        };
        let mut libsrtp = callsec_libsrtp2::Session::new(
            l_profile,
            callsec_libsrtp2::Direction::Inbound,
            s.srtp.remote.key(),
            s.srtp.remote.salt(),
            128,
        )
        .unwrap();
        for seq in 0..100u16 {
            let plain = rtp_packet(&RtpShape::simple(0xabcd, seq, 300), &mut rng);
            let mut buf = plain.clone();
            buf.resize(plain.len() + 64, 0);
            let n = tx.protect_rtp(&mut buf, plain.len()).unwrap();
            let got = webrtc.decrypt_rtp(&buf[..n]).unwrap();
            assert_eq!(&got[..], &plain[..], "webrtc-srtp {profile}");
            let mut lbuf = buf[..n].to_vec();
            let m = libsrtp.unprotect_rtp(&mut lbuf, n).unwrap();
            assert_eq!(&lbuf[..m], &plain[..], "libsrtp2 {profile}");
        }
    }
}
