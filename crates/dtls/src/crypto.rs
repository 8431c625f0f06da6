//! Crypto providers for DTLS: the record layer's AES-128-GCM, ECDHE on P-256, and ECDSA
//! P-256 signing and verification come from the [`Provider`] in [`Config::provider`].
//!
//! | provider | GCM records | ECDHE | ECDSA sign / verify | randomness |
//! | --- | --- | --- | --- | --- |
//! | `ring` (feature `ring`, default) | ring | ring | ring | ECDHE keys and ECDSA nonces from the OS (ring's RNG trait is sealed) |
//! | RustCrypto | `aes-gcm` | `p256` | `p256` (RFC 6979 nonces) | the caller's RNG only: seeded handshakes are byte-for-byte reproducible |
//!
//! Both providers share everything else: the PRF and transcript hash (`sha2`), the CBC suite
//! (`aes`, `cbc`, `hmac`, `sha1`), parsing and validating peer points and certificates
//! (`p256`), and certificate generation. A [`Certificate`] draws its key from the caller's
//! RNG and signs itself with `p256` under either provider, so a seeded RNG gives the same
//! certificate and fingerprint; the `ring` provider is handed that key for the handshake's
//! signatures.
//!
//! AES-128-GCM for records is `callsec_srtp::provider::Aes128GcmKey`, the same keyed type SRTP
//! uses. Dispatch is an enum match per operation (once per record, a few per handshake), never a
//! `dyn` call.
//!
//! `ring` clears what it decrypted when a GCM record fails authentication; the record layer
//! opens a copy of the fragment, so a failed record leaves nothing behind with either
//! provider. `ring` does not wipe its key schedules on drop.
//!
//! [`Config::provider`]: crate::Config::provider
//! [`Certificate`]: crate::Certificate

#[cfg(feature = "ring")]
use std::sync::{Arc, Mutex};

pub use callsec_srtp::Provider;
use p256::ecdsa::signature::{Signer, Verifier};
use p256::ecdsa::{DerSignature, VerifyingKey};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::cert::Certificate;
use crate::error::Error;
use crate::handshake::ECDSA_SECP256R1_SHA256;

/// The default provider of this build of callsec-dtls: `ring` when its feature is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Backend {
    #[cfg(feature = "ring")]
    Ring,
    RustCrypto,
}

impl Backend {
    fn of(provider: Provider) -> Self {
        match provider {
            #[cfg(feature = "ring")]
            Provider::Ring => Self::Ring,
            // RustCrypto, and any provider this build lacks (refused by `Config::validate`).
            _ => Self::RustCrypto,
        }
    }
}

/// Our ephemeral ECDHE key (RFC 8422 §5.4).
///
/// Under `ring` the key can be used for one agreement only, and ring never hands out its
/// scalar. Handshake states are cloned (to roll back refused plaintext), so the key sits
/// in a shared slot: every copy of a state refers to the one key, and the agreement
/// empties the slot for all of them. Agreement happens once per handshake, on a share that
/// has already been validated; a second agreement fails with `UnexpectedMessage`.
#[derive(Clone)]
pub(crate) enum EcdhKey {
    #[cfg(feature = "ring")]
    Ring {
        key: Arc<Mutex<Option<ring::agreement::EphemeralPrivateKey>>>,
        public: Vec<u8>,
    },
    RustCrypto(p256::SecretKey),
}

impl EcdhKey {
    /// A fresh key: RustCrypto makes it from `seed` (32 bytes of the caller's RNG); `ring`
    /// draws its own from the OS, and falls back to `seed` should the OS RNG fail.
    pub(crate) fn generate(provider: Provider, seed: &[u8; 32]) -> Self {
        #[cfg(feature = "ring")]
        if Backend::of(provider) == Backend::Ring {
            let rng = ring::rand::SystemRandom::new();
            let key =
                ring::agreement::EphemeralPrivateKey::generate(&ring::agreement::ECDH_P256, &rng);
            if let Ok((key, public)) =
                key.and_then(|k| k.compute_public_key().map(|p| (k, p.as_ref().to_vec())))
            {
                return Self::Ring {
                    public,
                    key: Arc::new(Mutex::new(Some(key))),
                };
            }
        }
        let _ = provider;
        // The bytes as a scalar, re-hashed in the negligible case that they are zero or not
        // below the group order.
        let mut b = Zeroizing::new(*seed);
        loop {
            if let Ok(k) = p256::SecretKey::from_bytes((&*b).into()) {
                return Self::RustCrypto(k);
            }
            *b = Sha256::digest(&b[..]).into();
        }
    }
}

/// Our ECDHE share as an uncompressed point (RFC 8422 §5.4.1).
pub(crate) fn ecdh_public(key: &EcdhKey) -> Vec<u8> {
    match key {
        #[cfg(feature = "ring")]
        EcdhKey::Ring { public, .. } => public.clone(),
        EcdhKey::RustCrypto(k) => {
            use p256::elliptic_curve::sec1::ToEncodedPoint;
            k.public_key().to_encoded_point(false).as_bytes().to_vec()
        }
    }
}

/// The premaster secret: the x-coordinate of the shared point (RFC 8422 §5.10). `peer` was
/// validated (on the curve, not the identity) when it was parsed.
pub(crate) fn ecdh_shared(
    key: &EcdhKey,
    peer: &p256::PublicKey,
) -> Result<Zeroizing<Vec<u8>>, Error> {
    match key {
        #[cfg(feature = "ring")]
        EcdhKey::Ring { key, .. } => {
            use p256::elliptic_curve::sec1::ToEncodedPoint;
            let used = Error::UnexpectedMessage("ECDHE key already used");
            let private = key.lock().map_err(|_| used.clone())?.take().ok_or(used)?;
            let point = peer.to_encoded_point(false);
            let peer = ring::agreement::UnparsedPublicKey::new(
                &ring::agreement::ECDH_P256,
                point.as_bytes(),
            );
            ring::agreement::agree_ephemeral(private, &peer, |shared| {
                Zeroizing::new(shared.to_vec())
            })
            .map_err(|_| Error::IllegalParameter("ECDHE share not on P-256"))
        }
        EcdhKey::RustCrypto(k) => {
            let shared = p256::ecdh::diffie_hellman(k.to_nonzero_scalar(), peer.as_affine());
            Ok(Zeroizing::new(shared.raw_secret_bytes().to_vec()))
        }
    }
}

/// A DER ECDSA signature.
pub(crate) struct Signature(Vec<u8>);

impl Signature {
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// Signs `msg` with ecdsa_secp256r1_sha256 under `cert`'s key: `ring` (random nonces from
/// the OS) or `p256` (deterministic RFC 6979 nonces).
pub(crate) fn sign(cert: &Certificate, provider: Provider, msg: &[u8]) -> Signature {
    #[cfg(feature = "ring")]
    if Backend::of(provider) == Backend::Ring {
        let rng = ring::rand::SystemRandom::new();
        if let Some(Ok(sig)) = cert.ring_key().map(|key| key.sign(&rng, msg)) {
            return Signature(sig.as_ref().to_vec());
        }
    }
    let _ = provider;
    let sig: DerSignature = cert.signing_key().sign(msg);
    Signature(sig.as_bytes().to_vec())
}

/// The peer's certificate key, with the provider that verifies its signatures.
#[derive(Clone)]
pub(crate) struct PeerKey {
    key: VerifyingKey,
    provider: Provider,
}

impl PeerKey {
    pub(crate) fn new(key: VerifyingKey, provider: Provider) -> Self {
        Self { key, provider }
    }
}

/// Verifies a `DigitallySigned` (its scheme and signature) over `signed` with
/// ecdsa_secp256r1_sha256.
pub(crate) fn verify_signature(
    key: &PeerKey,
    scheme: u16,
    sig: &[u8],
    signed: &[u8],
) -> Result<(), Error> {
    if scheme != ECDSA_SECP256R1_SHA256 {
        return Err(Error::IllegalParameter("signature scheme not offered"));
    }
    match Backend::of(key.provider) {
        #[cfg(feature = "ring")]
        Backend::Ring => {
            let point = key.key.to_encoded_point(false);
            ring::signature::UnparsedPublicKey::new(
                &ring::signature::ECDSA_P256_SHA256_ASN1,
                point.as_bytes(),
            )
            .verify(signed, sig)
            .map_err(|_| Error::DecryptError("bad signature"))
        }
        Backend::RustCrypto => {
            let sig = p256::ecdsa::Signature::from_der(sig)
                .map_err(|_| Error::DecryptError("malformed ECDSA signature"))?;
            key.key
                .verify(signed, &sig)
                .map_err(|_| Error::DecryptError("bad signature"))
        }
    }
}

#[cfg(test)]
mod tests {
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    use super::*;

    /// Every pair of providers agrees: shared secrets, and signatures one makes and the
    /// other verifies.
    #[test]
    fn providers_interoperate() {
        let cert = Certificate::generate(&mut ChaCha20Rng::seed_from_u64(9));
        for &a in Provider::ALL {
            for &b in Provider::ALL {
                let ka = EcdhKey::generate(a, &[1; 32]);
                let kb = EcdhKey::generate(b, &[2; 32]);
                let pa = p256::PublicKey::from_sec1_bytes(&ecdh_public(&ka)).unwrap();
                let pb = p256::PublicKey::from_sec1_bytes(&ecdh_public(&kb)).unwrap();
                let sa = ecdh_shared(&ka, &pb).unwrap();
                let sb = ecdh_shared(&kb, &pa).unwrap();
                assert_eq!(*sa, *sb, "{a} with {b}");
                let sig = sign(&cert, a, b"signed");
                let key = PeerKey::new(*cert.signing_key().verifying_key(), b);
                verify_signature(&key, ECDSA_SECP256R1_SHA256, sig.as_bytes(), b"signed").unwrap();
                assert!(
                    verify_signature(&key, ECDSA_SECP256R1_SHA256, sig.as_bytes(), b"other")
                        .is_err()
                );
            }
        }
    }

    /// `ring`'s key is single-use and shared by clones of a state: a second agreement
    /// fails instead of silently using another key.
    #[test]
    fn an_ecdhe_key_agrees_once() {
        for &p in Provider::ALL {
            let k = EcdhKey::generate(p, &[3; 32]);
            let copy = k.clone();
            let peer = EcdhKey::generate(Provider::RustCrypto, &[4; 32]);
            let peer = p256::PublicKey::from_sec1_bytes(&ecdh_public(&peer)).unwrap();
            assert!(ecdh_shared(&k, &peer).is_ok());
            #[cfg(feature = "ring")]
            if p == Provider::Ring {
                assert!(ecdh_shared(&copy, &peer).is_err());
                continue;
            }
            assert!(ecdh_shared(&copy, &peer).is_ok());
        }
    }
}
