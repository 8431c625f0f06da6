//! Round trips between callsec and the two implementations users compare it to:
//! webrtc-srtp (pure Rust) and libsrtp2 (the system C library, through `callsec-libsrtp2`).
//! Both directions, both profiles, RTP and RTCP, sizes from a bare 12-byte header to
//! 1500 bytes, with CSRCs, one- and two-byte header extensions, padding, and a 16-bit
//! sequence-number wrap in every run. A missing peer fails the build, never skips.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use callsec_srtp::{Config, Context, MasterKey, ProtectionProfile};
use callsec_tests::{key_material, random_shape, rtcp_packet, rtp_packet};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// One side of a round trip.
trait Peer {
    fn name(&self) -> &'static str;
    fn protect_rtp(&mut self, p: &[u8]) -> Vec<u8>;
    fn protect_rtcp(&mut self, p: &[u8]) -> Vec<u8>;
    fn unprotect_rtp(&mut self, p: &[u8]) -> Result<Vec<u8>, String>;
    fn unprotect_rtcp(&mut self, p: &[u8]) -> Result<Vec<u8>, String>;
}

struct Callsec(Context);
struct WebrtcSrtp(webrtc_srtp::context::Context);
struct Libsrtp(callsec_libsrtp2::Session);

impl Peer for Callsec {
    fn name(&self) -> &'static str {
        "callsec"
    }
    fn protect_rtp(&mut self, p: &[u8]) -> Vec<u8> {
        in_place(p, 64, |b, n| self.0.protect_rtp(b, n)).unwrap()
    }
    fn protect_rtcp(&mut self, p: &[u8]) -> Vec<u8> {
        in_place(p, 64, |b, n| self.0.protect_rtcp(b, n)).unwrap()
    }
    fn unprotect_rtp(&mut self, p: &[u8]) -> Result<Vec<u8>, String> {
        in_place(p, 0, |b, _| self.0.unprotect_rtp(b))
    }
    fn unprotect_rtcp(&mut self, p: &[u8]) -> Result<Vec<u8>, String> {
        in_place(p, 0, |b, _| self.0.unprotect_rtcp(b))
    }
}

impl Peer for WebrtcSrtp {
    fn name(&self) -> &'static str {
        "webrtc-srtp"
    }
    fn protect_rtp(&mut self, p: &[u8]) -> Vec<u8> {
        self.0.encrypt_rtp(p).unwrap().to_vec()
    }
    fn protect_rtcp(&mut self, p: &[u8]) -> Vec<u8> {
        self.0.encrypt_rtcp(p).unwrap().to_vec()
    }
    fn unprotect_rtp(&mut self, p: &[u8]) -> Result<Vec<u8>, String> {
        self.0
            .decrypt_rtp(p)
            .map(|b| b.to_vec())
            .map_err(|e| e.to_string())
    }
    fn unprotect_rtcp(&mut self, p: &[u8]) -> Result<Vec<u8>, String> {
        self.0
            .decrypt_rtcp(p)
            .map(|b| b.to_vec())
            .map_err(|e| e.to_string())
    }
}

impl Peer for Libsrtp {
    fn name(&self) -> &'static str {
        "libsrtp2"
    }
    fn protect_rtp(&mut self, p: &[u8]) -> Vec<u8> {
        let room = callsec_libsrtp2::MAX_TRAILER;
        in_place(p, room, |b, n| self.0.protect_rtp(b, n)).unwrap()
    }
    fn protect_rtcp(&mut self, p: &[u8]) -> Vec<u8> {
        let room = callsec_libsrtp2::MAX_TRAILER;
        in_place(p, room, |b, n| self.0.protect_rtcp(b, n)).unwrap()
    }
    fn unprotect_rtp(&mut self, p: &[u8]) -> Result<Vec<u8>, String> {
        in_place(p, 0, |b, n| self.0.unprotect_rtp(b, n))
    }
    fn unprotect_rtcp(&mut self, p: &[u8]) -> Result<Vec<u8>, String> {
        in_place(p, 0, |b, n| self.0.unprotect_rtcp(b, n))
    }
}

/// Copies `p` into a buffer with `room` spare bytes, runs `f(buffer, p.len())` on it in
/// place, and keeps the first bytes `f` says are the result.
fn in_place<E: std::fmt::Display>(
    p: &[u8],
    room: usize,
    f: impl FnOnce(&mut [u8], usize) -> Result<usize, E>,
) -> Result<Vec<u8>, String> {
    let mut buf = p.to_vec();
    buf.resize(p.len() + room, 0);
    let n = f(&mut buf, p.len()).map_err(|e| e.to_string())?;
    buf.truncate(n);
    Ok(buf)
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    Callsec,
    Webrtc,
    Libsrtp,
}

fn make(
    kind: Kind,
    profile: ProtectionProfile,
    key: &[u8],
    salt: &[u8],
    sending: bool,
) -> Box<dyn Peer> {
    match kind {
        Kind::Callsec => {
            let master = MasterKey::new(profile, key, salt).unwrap();
            Box::new(Callsec(Context::new(&master, Config::default()).unwrap()))
        }
        Kind::Webrtc => {
            let p = match profile {
                ProtectionProfile::AeadAes128Gcm => {
                    webrtc_srtp::protection_profile::ProtectionProfile::AeadAes128Gcm
                }
                ProtectionProfile::Aes128CmHmacSha1_80 => {
                    webrtc_srtp::protection_profile::ProtectionProfile::Aes128CmHmacSha1_80
                }
            };
            Box::new(WebrtcSrtp(
                webrtc_srtp::context::Context::new(key, salt, p, None, None).unwrap(),
            ))
        }
        Kind::Libsrtp => {
            let p = match profile {
                ProtectionProfile::AeadAes128Gcm => callsec_libsrtp2::Profile::AeadAes128Gcm,
                ProtectionProfile::Aes128CmHmacSha1_80 => {
                    callsec_libsrtp2::Profile::Aes128CmHmacSha1_80
                }
            };
            let dir = if sending {
                callsec_libsrtp2::Direction::Outbound
            } else {
                callsec_libsrtp2::Direction::Inbound
            };
            Box::new(Libsrtp(
                callsec_libsrtp2::Session::new(p, dir, key, salt, 128).unwrap(),
            ))
        }
    }
}

/// Sends RTP across a sequence-number wrap and RTCP of many sizes from `from` to `to`.
fn round_trip(from: Kind, to: Kind, profile: ProtectionProfile, seed: u64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (key, salt) = key_material(&mut rng, profile.salt_len());
    let mut tx = make(from, profile, &key, &salt, true);
    let mut rx = make(to, profile, &key, &salt, false);
    let what = format!("{} -> {} {profile}", tx.name(), rx.name());

    for ssrc in [0x1234_5678u32, rng.r#gen()] {
        let start: u16 = 65_400;
        for i in 0..300u16 {
            let seq = start.wrapping_add(i);
            let shape = match i {
                0 => callsec_tests::RtpShape::simple(ssrc, seq, 0), // bare 12-byte header
                1 => callsec_tests::RtpShape::simple(ssrc, seq, 1500 - 12),
                _ => random_shape(&mut rng, ssrc, seq, 1500),
            };
            let plain = rtp_packet(&shape, &mut rng);
            let protected = tx.protect_rtp(&plain);
            assert_eq!(
                protected.len(),
                plain.len() + profile.rtp_overhead(),
                "{what} {shape:?}"
            );
            if shape.payload >= 4 {
                assert_ne!(
                    protected[..plain.len()],
                    plain[..],
                    "{what}: payload not encrypted"
                );
            }
            let back = rx
                .unprotect_rtp(&protected)
                .unwrap_or_else(|e| panic!("{what} {shape:?}: {e}"));
            assert_eq!(back, plain, "{what} {shape:?}");
        }
        for len in (8..=1500).step_by(4 * 17).chain([1500]) {
            let plain = rtcp_packet(ssrc, len, &mut rng);
            let protected = tx.protect_rtcp(&plain);
            assert_eq!(
                protected.len(),
                plain.len() + profile.rtcp_overhead(),
                "{what} rtcp {len}"
            );
            let back = rx
                .unprotect_rtcp(&protected)
                .unwrap_or_else(|e| panic!("{what} rtcp {len}: {e}"));
            assert_eq!(back, plain, "{what} rtcp {len}");
        }
    }
}

macro_rules! pairs {
    ($($name:ident: $from:ident -> $to:ident,)*) => {$(
        #[test]
        fn $name() {
            for (i, profile) in ProtectionProfile::ALL.into_iter().enumerate() {
                round_trip(Kind::$from, Kind::$to, profile, 7 + i as u64);
            }
        }
    )*};
}

pairs! {
    callsec_to_callsec: Callsec -> Callsec,
    callsec_to_webrtc_srtp: Callsec -> Webrtc,
    webrtc_srtp_to_callsec: Webrtc -> Callsec,
    callsec_to_libsrtp2: Callsec -> Libsrtp,
    libsrtp2_to_callsec: Libsrtp -> Callsec,
}

/// A packet libsrtp2 protected and then tampered with is refused by callsec; the genuine one
/// still passes afterwards (failed authentication changed no state).
#[test]
fn libsrtp2_tampered_packets_fail() {
    for profile in ProtectionProfile::ALL {
        let mut rng = ChaCha8Rng::seed_from_u64(99);
        let (key, salt) = key_material(&mut rng, profile.salt_len());
        let mut tx = make(Kind::Libsrtp, profile, &key, &salt, true);
        let mut rx = make(Kind::Callsec, profile, &key, &salt, false);
        let plain = rtp_packet(&callsec_tests::RtpShape::simple(5, 10, 160), &mut rng);
        let protected = tx.protect_rtp(&plain);
        for at in [1, 20, protected.len() - 1] {
            let mut bad = protected.clone();
            bad[at] ^= 0x04;
            assert!(rx.unprotect_rtp(&bad).is_err(), "{profile} byte {at}");
        }
        assert_eq!(rx.unprotect_rtp(&protected).unwrap(), plain);
        assert!(
            rx.unprotect_rtp(&protected).is_err(),
            "{profile}: replay accepted"
        );
    }
}
