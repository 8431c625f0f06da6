//! Crypto providers: which library computes AES-128-GCM.
//!
//! Like rustls' `CryptoProvider`, the primitive behind a transform is chosen once, when a
//! [`Context`](crate::Context) is made ([`Config::provider`](crate::Config::provider)), and
//! the cargo features decide which providers are compiled in. Unlike rustls there is no
//! `dyn` on the hot path: a transform holds the provider's own key type in an enum, and each
//! packet takes one well-predicted branch to a statically known function.
//!
//! | provider | AES-128-GCM | compiled in by |
//! | --- | --- | --- |
//! | [`Provider::Ring`] | `ring` 0.17 (AES-NI, VAES and VPCLMULQDQ assembly) | feature `ring` (default) |
//! | [`Provider::RustCrypto`] | `aes-gcm` 0.10 (pure Rust, portable) | always |
//!
//! AES128_CM_HMAC_SHA1_80 and the key derivation always use RustCrypto `aes` and `sha1`:
//! they were the fastest measured (ring offers no raw AES-CTR, and its HMAC-SHA1 is slower
//! than `sha1` with SHA-NI; `cargo xtask bench srtp -- hmac-sha1` shows both).
//!
//! # Authentication failures
//!
//! Both providers leave a buffer that failed authentication without plaintext: `aes-gcm`
//! checks the tag before it decrypts (the payload stays ciphertext), `ring` decrypts and
//! authenticates in one pass and overwrites the payload with zeros when the tag is wrong.
//! Either way a failed unprotect changes no context state; what the payload bytes hold
//! afterwards is unspecified (ciphertext or zeros), never unauthenticated plaintext.
//!
//! # Key wiping
//!
//! Session keys pass through zeroized buffers and RustCrypto's key schedules wipe
//! themselves on drop. `ring` does not wipe its AES key schedule when dropped, and offers no
//! way to; that is the price of its speed.

use aes_gcm::{AeadInPlace, Aes128Gcm, KeyInit};

/// A crypto library that provides the primitives (see the [module docs](self)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Provider {
    /// `ring`: assembly for AES-GCM and P-256; keys it generates come from the operating
    /// system's RNG (its RNG trait is sealed).
    #[cfg(feature = "ring")]
    Ring,
    /// RustCrypto: pure Rust and portable; every random value comes from the caller's RNG,
    /// so seeded tests and fuzzing are deterministic.
    RustCrypto,
}

impl Provider {
    /// The default: `ring` when compiled in, else RustCrypto.
    #[cfg(feature = "ring")]
    pub const DEFAULT: Provider = Provider::Ring;
    /// The default: `ring` when compiled in, else RustCrypto.
    #[cfg(not(feature = "ring"))]
    pub const DEFAULT: Provider = Provider::RustCrypto;

    /// Every provider compiled in, the default first.
    pub const ALL: &'static [Provider] = &[
        #[cfg(feature = "ring")]
        Provider::Ring,
        Provider::RustCrypto,
    ];

    /// A short lower-case name: `ring`, `rustcrypto`.
    pub const fn name(self) -> &'static str {
        match self {
            #[cfg(feature = "ring")]
            Provider::Ring => "ring",
            Provider::RustCrypto => "rustcrypto",
        }
    }
}

impl Default for Provider {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl std::fmt::Display for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A keyed AES-128-GCM from one provider: SRTP's GCM transform, and the DTLS record layer's
/// (which uses this one rather than a second copy). Large (a key schedule and GHASH
/// tables), so it lives inside a context, never on a per-packet path by value.
pub struct Aes128GcmKey(GcmInner);

impl std::fmt::Debug for Aes128GcmKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Aes128GcmKey").finish_non_exhaustive()
    }
}

enum GcmInner {
    #[cfg(feature = "ring")]
    Ring(ring::aead::LessSafeKey),
    RustCrypto(Aes128Gcm),
}

/// GCM's authentication tag length.
pub(crate) const GCM_TAG_LEN: usize = 16;

impl Aes128GcmKey {
    /// Keys AES-128-GCM with `provider`.
    pub fn new(provider: Provider, key: &[u8; 16]) -> Self {
        match provider {
            #[cfg(feature = "ring")]
            Provider::Ring => {
                // `UnboundKey::new` fails only for a key of the wrong length, and 16 bytes is
                // AES-128's; should it ever fail, RustCrypto computes the same function.
                match ring::aead::UnboundKey::new(&ring::aead::AES_128_GCM, key) {
                    Ok(k) => Self(GcmInner::Ring(ring::aead::LessSafeKey::new(k))),
                    Err(_) => Self(GcmInner::RustCrypto(Aes128Gcm::new(key.into()))),
                }
            }
            Provider::RustCrypto => Self(GcmInner::RustCrypto(Aes128Gcm::new(key.into()))),
        }
    }

    /// Encrypts `data` in place, authenticating `aad` too; returns the tag.
    #[inline]
    pub fn seal(&self, nonce: &[u8; 12], aad: &[u8], data: &mut [u8]) -> [u8; 16] {
        // Both APIs fail only for inputs longer than GCM allows (2^36 bytes), which no packet
        // reaches. Should one ever fail, the all-zero tag makes the packet fail at the
        // receiver rather than pass unauthenticated.
        match &self.0 {
            #[cfg(feature = "ring")]
            GcmInner::Ring(key) => {
                let nonce = ring::aead::Nonce::assume_unique_for_key(*nonce);
                match key.seal_in_place_separate_tag(nonce, ring::aead::Aad::from(aad), data) {
                    Ok(tag) => {
                        let mut out = [0u8; GCM_TAG_LEN];
                        out.copy_from_slice(tag.as_ref());
                        out
                    }
                    Err(_) => [0; GCM_TAG_LEN],
                }
            }
            GcmInner::RustCrypto(aead) => {
                match aead.encrypt_in_place_detached(nonce.into(), aad, data) {
                    Ok(tag) => tag.into(),
                    Err(_) => [0; GCM_TAG_LEN],
                }
            }
        }
    }

    /// Authenticates `aad` and `data` against `tag` (in constant time) and decrypts `data`
    /// in place. On failure `data` holds no plaintext: ciphertext (RustCrypto checks before
    /// decrypting) or zeros (ring clears what it decrypted).
    #[inline]
    pub fn open(
        &self,
        nonce: &[u8; 12],
        aad: &[u8],
        data: &mut [u8],
        tag: &[u8; 16],
    ) -> Result<(), crate::Error> {
        match &self.0 {
            #[cfg(feature = "ring")]
            GcmInner::Ring(key) => {
                let nonce = ring::aead::Nonce::assume_unique_for_key(*nonce);
                key.open_in_place_separate_tag(
                    nonce,
                    ring::aead::Aad::from(aad),
                    ring::aead::Tag::from(*tag),
                    data,
                    0..,
                )
                .map(|_| ())
                .map_err(|_| crate::Error::AuthenticationFailed)
            }
            GcmInner::RustCrypto(aead) => aead
                .decrypt_in_place_detached(nonce.into(), aad, data, tag.into())
                .map_err(|_| crate::Error::AuthenticationFailed),
        }
    }
}

#[cfg(test)]
mod tests {
    use hex_literal::hex;

    use super::*;

    /// Test case 4 of the GCM specification (McGrew–Viega, "The Galois/Counter Mode of
    /// Operation", 2005, App. B: AES-128, 60-byte plaintext, 20-byte AAD): every provider
    /// computes the same bytes.
    #[test]
    fn every_provider_computes_gcm_test_case_4() {
        let key = hex!("feffe9928665731c6d6a8f9467308308");
        let nonce = hex!("cafebabefacedbaddecaf888");
        let aad = hex!("feedfacedeadbeeffeedfacedeadbeefabaddad2");
        let pt = hex!(
            "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
            "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39"
        );
        let ct = hex!(
            "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e"
            "21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091"
        );
        let tag = hex!("5bc94fbc3221a5db94fae95ae7121a47");
        for &p in Provider::ALL {
            let k = Aes128GcmKey::new(p, &key);
            let mut buf = pt;
            assert_eq!(k.seal(&nonce, &aad, &mut buf), tag, "{p}");
            assert_eq!(buf, ct, "{p}");
            k.open(&nonce, &aad, &mut buf, &tag).unwrap();
            assert_eq!(buf, pt, "{p}");
        }
    }

    /// A wrong tag leaves no plaintext behind, with either provider.
    #[test]
    fn failed_open_leaves_no_plaintext() {
        let nonce = [3u8; 12];
        for &p in Provider::ALL {
            let k = Aes128GcmKey::new(p, &[9; 16]);
            let pt = [0x41u8; 100];
            let mut buf = pt;
            let mut tag = k.seal(&nonce, b"aad", &mut buf);
            let ct = buf;
            tag[15] ^= 1;
            assert!(k.open(&nonce, b"aad", &mut buf, &tag).is_err(), "{p}");
            assert!(buf == ct || buf == [0; 100], "{p}: {buf:02x?}");
            assert_ne!(buf, pt, "{p}");
        }
    }
}
