//! Published test vectors, as tables with their source. Each vector is checked in both
//! directions and again with one bit flipped in the header, the payload and the tag, with
//! every crypto provider compiled in.

use hex_literal::hex;

use crate::crypto::Transform;
use crate::{Config, Context, Error, ProtectionProfile, Provider};

/// An AEAD_AES_128_GCM vector given with session keys (RFC 7714 publishes no master keys).
struct GcmVector {
    source: &'static str,
    key: [u8; 16],
    salt: [u8; 12],
    rtcp: bool,
    /// SRTCP index the sender is at (ignored for RTP).
    rtcp_index: u64,
    plain: &'static [u8],
    protected: &'static [u8],
    /// Byte offsets to tamper with: one in the header, one in the payload, one in the tag.
    tamper_at: [usize; 3],
}

const KEY: [u8; 16] = hex!("000102030405060708090a0b0c0d0e0f");
const SALT: [u8; 12] = hex!("517569642070726f2071756f");

const GCM_VECTORS: &[GcmVector] = &[
    GcmVector {
        source: "RFC 7714 §16.1.1 / §16.1.2 (SRTP AEAD_AES_128_GCM encryption and decryption)",
        key: KEY,
        salt: SALT,
        rtcp: false,
        rtcp_index: 0,
        plain: &hex!(
            "8040f17b 8041f8d3 5501a0b2 47616c6c 69612065 7374206f 6d6e6973 20646976"
            "69736120 696e2070 61727465 73207472 6573"
        ),
        protected: &hex!(
            "8040f17b 8041f8d3 5501a0b2 f24de3a3 fb34de6c acba861c 9d7e4bca be633bd5"
            "0d294e6f 42a5f47a 51c7d19b 36de3adf 8833899d 7f27beb1 6a9152cf 765ee439 0cce"
        ),
        tamper_at: [1, 20, 60],
    },
    GcmVector {
        source: "RFC 7714 §17.1 (SRTCP AEAD_AES_128_GCM encryption and tagging)",
        key: KEY,
        salt: SALT,
        rtcp: true,
        rtcp_index: 0x5d4,
        plain: &hex!(
            "81c8000d 4d617273 4e545031 4e545032 52545020 0000042a 0000e930 4c756e61"
            "deadbeef deadbeef deadbeef deadbeef deadbeef"
        ),
        protected: &hex!(
            "81c8000d 4d617273 63e94885 dcdab67c a727d766 2f6b7e99 7ff5c0f7 6c06f32d"
            "c676a5f1 730d6fda 4ce09b46 86303ded 0bb9275b c84aa458 96cf4d2f c5abf872"
            "45d9eade 800005d4"
        ),
        tamper_at: [5, 30, 60],
    },
];

fn gcm_context(v: &GcmVector, provider: Provider) -> Context {
    Context::with_transforms(
        ProtectionProfile::AeadAes128Gcm,
        Transform::gcm_from_session_keys(&v.key, &v.salt, provider),
        Transform::gcm_from_session_keys(&v.key, &v.salt, provider),
        Config::default(),
    )
}

/// Every GCM vector with every provider.
fn cases() -> impl Iterator<Item = (&'static GcmVector, Provider)> {
    GCM_VECTORS
        .iter()
        .flat_map(|v| Provider::ALL.iter().map(move |&p| (v, p)))
}

#[test]
fn rfc7714_protect() {
    for (v, provider) in cases() {
        let mut ctx = gcm_context(v, provider);
        let mut buf = [0u8; 256];
        buf[..v.plain.len()].copy_from_slice(v.plain);
        let n = if v.rtcp {
            ctx.set_rtcp_index(
                u32::from_be_bytes([v.plain[4], v.plain[5], v.plain[6], v.plain[7]]),
                v.rtcp_index,
            );
            ctx.protect_rtcp(&mut buf, v.plain.len())
        } else {
            ctx.protect_rtp(&mut buf, v.plain.len())
        };
        assert_eq!(&buf[..n.unwrap()], v.protected, "{} ({provider})", v.source);
    }
}

#[test]
fn rfc7714_unprotect_and_tamper() {
    for (v, provider) in cases() {
        let mut ctx = gcm_context(v, provider);
        let unprotect = |ctx: &mut Context, buf: &mut [u8]| {
            if v.rtcp {
                ctx.unprotect_rtcp(buf)
            } else {
                ctx.unprotect_rtp(buf)
            }
        };
        // Every tampered copy fails authentication and leaves no trace.
        for at in v.tamper_at {
            for bit in [0x01, 0x80] {
                let mut bad = v.protected.to_vec();
                bad[at] ^= bit;
                assert_eq!(
                    unprotect(&mut ctx, &mut bad),
                    Err(Error::AuthenticationFailed),
                    "{} ({provider}): byte {at} bit {bit:#x}",
                    v.source
                );
            }
        }
        let mut buf = v.protected.to_vec();
        let n = unprotect(&mut ctx, &mut buf).unwrap();
        assert_eq!(&buf[..n], v.plain, "{} ({provider})", v.source);
        // And a replay of the genuine packet is refused.
        let mut again = v.protected.to_vec();
        assert_eq!(
            unprotect(&mut ctx, &mut again),
            Err(Error::Replayed),
            "{}",
            v.source
        );
    }
}
