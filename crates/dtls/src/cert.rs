//! Self-signed ECDSA P-256 certificates and their SHA-256 fingerprints (RFC 8122 §5).
//!
//! WebRTC authenticates peers by the fingerprint of a self-signed certificate carried in SDP
//! (RFC 8827 §6.5), so callsec needs no PKI: it writes a minimal X.509 v3 certificate itself
//! (RFC 5280 §4.1) and, for the peer's certificate, only finds the subjectPublicKeyInfo.

use std::fmt;
use std::str::FromStr;

use p256::ecdsa::signature::Signer;
use p256::ecdsa::{DerSignature, SigningKey, VerifyingKey};
use p256::pkcs8::DecodePublicKey;
use rand_core::CryptoRngCore;
use sha2::{Digest, Sha256};

use crate::error::Error;

/// A SHA-256 certificate fingerprint, shown and parsed in SDP form (RFC 8122 §5):
/// `sha-256 AB:CD:...` (32 upper-case hex pairs separated by colons).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    /// The fingerprint of a DER certificate: SHA-256 over its bytes (RFC 8122 §5).
    pub fn of_der(der: &[u8]) -> Self {
        Self(Sha256::digest(der).into())
    }

    /// Wraps raw digest bytes.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The raw digest.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The value alone, without the `sha-256 ` prefix: `AB:CD:...`.
    pub fn hex(&self) -> String {
        let mut s = String::with_capacity(95);
        for (i, b) in self.0.iter().enumerate() {
            if i > 0 {
                s.push(':');
            }
            s.push_str(&format!("{b:02X}"));
        }
        s
    }
}

impl fmt::Display for Fingerprint {
    /// SDP form, as in `a=fingerprint:sha-256 AB:CD:...`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha-256 {}", self.hex())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Fingerprint {
    type Err = Error;

    /// Parses `sha-256 AB:CD:...` (hash name case-insensitive, RFC 8122 §5) or the bare value.
    fn from_str(s: &str) -> Result<Self, Error> {
        let s = s.trim();
        let value = match s.split_once(' ') {
            Some((alg, value)) => {
                if !alg.eq_ignore_ascii_case("sha-256") {
                    return Err(Error::Config("only sha-256 fingerprints are supported"));
                }
                value.trim()
            }
            None => s,
        };
        let mut out = [0u8; 32];
        let mut n = 0;
        for pair in value.split(':') {
            if n == 32 || pair.len() != 2 {
                return Err(Error::Config("malformed fingerprint"));
            }
            out[n] =
                u8::from_str_radix(pair, 16).map_err(|_| Error::Config("malformed fingerprint"))?;
            n += 1;
        }
        if n != 32 {
            return Err(Error::Config("malformed fingerprint"));
        }
        Ok(Self(out))
    }
}

/// A certificate with its private key: what this side presents in the handshake.
///
/// The key is usable by every crypto provider: `p256` holds it, and with the `ring` feature
/// ring holds a copy for the handshake's signatures under [`Provider::Ring`].
///
/// [`Provider::Ring`]: crate::Provider
#[derive(Clone)]
pub struct Certificate {
    der: Vec<u8>,
    key: SigningKey,
    fingerprint: Fingerprint,
    #[cfg(feature = "ring")]
    ring: Option<std::sync::Arc<ring::signature::EcdsaKeyPair>>,
}

impl fmt::Debug for Certificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Certificate")
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

/// DER of the AlgorithmIdentifier `ecdsa-with-SHA256` (1.2.840.10045.4.3.2, RFC 5758 §3.2).
const ECDSA_WITH_SHA256: &[u8] = &[
    0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02,
];
/// DER prefix of a P-256 subjectPublicKeyInfo (RFC 5480 §2: id-ecPublicKey, secp256r1),
/// followed by the 65-byte uncompressed point.
const P256_SPKI_PREFIX: &[u8] = &[
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

impl Certificate {
    /// Generates a fresh P-256 key and a self-signed X.509 v3 certificate for it, subject and
    /// issuer `CN=callsec`, valid 2000-01-01 to 2049-12-31 (WebRTC peers check the
    /// fingerprint, not dates or names).
    ///
    /// The key and serial number come from `rng` whatever the provider (pass the OS RNG in
    /// production; a seeded RNG gives the same certificate and fingerprint every time). Only
    /// the per-handshake keys and signature nonces come from ring's own OS RNG under the
    /// `ring` provider.
    pub fn generate(rng: &mut impl CryptoRngCore) -> Self {
        let key = SigningKey::random(rng);
        let mut serial = [0u8; 16];
        rng.fill_bytes(&mut serial);
        serial[0] = (serial[0] & 0x7f) | 0x40; // positive, no leading zero (RFC 5280 §4.1.2.2)
        let point = key.verifying_key().to_encoded_point(false);
        let name = der(
            0x30,
            &der(
                0x31,
                &der(
                    0x30,
                    &[der(0x06, &[0x55, 0x04, 0x03]), der(0x0c, b"callsec")].concat(),
                ),
            ),
        );
        let validity = der(
            0x30,
            &[der(0x17, b"000101000000Z"), der(0x17, b"491231235959Z")].concat(),
        );
        let spki = [P256_SPKI_PREFIX, point.as_bytes()].concat();
        // RFC 5280 §4.1.2: TBSCertificate.
        let tbs = der(
            0x30,
            &[
                der(0xa0, &der(0x02, &[2])), // version v3
                der(0x02, &serial),
                ECDSA_WITH_SHA256.to_vec(),
                name.clone(),
                validity,
                name,
                spki,
            ]
            .concat(),
        );
        let sig: DerSignature = key.sign(&tbs);
        let mut bits = vec![0u8];
        bits.extend_from_slice(sig.as_bytes());
        let cert = der(
            0x30,
            &[tbs, ECDSA_WITH_SHA256.to_vec(), der(0x03, &bits)].concat(),
        );
        Self::with_key(cert, key)
    }

    /// The certificate `der` with its key; with the `ring` feature, ring gets the key too.
    fn with_key(der: Vec<u8>, key: SigningKey) -> Self {
        #[cfg(feature = "ring")]
        let ring = {
            let private = zeroize::Zeroizing::new(key.to_bytes());
            let public = key.verifying_key().to_encoded_point(false);
            ring::signature::EcdsaKeyPair::from_private_key_and_public_key(
                &ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
                &private,
                public.as_bytes(),
                &ring::rand::SystemRandom::new(),
            )
            .ok()
            .map(std::sync::Arc::new)
        };
        Self {
            fingerprint: Fingerprint::of_der(&der),
            der,
            key,
            #[cfg(feature = "ring")]
            ring,
        }
    }

    /// Uses an existing DER certificate and its PKCS#8 DER private key (P-256 only).
    pub fn from_der(cert_der: Vec<u8>, pkcs8_key_der: &[u8]) -> Result<Self, Error> {
        use p256::pkcs8::DecodePrivateKey;
        let key = SigningKey::from_pkcs8_der(pkcs8_key_der)
            .map_err(|_| Error::Config("not a P-256 PKCS#8 key"))?;
        let public =
            public_key_of(&cert_der).map_err(|_| Error::Config("not a P-256 certificate"))?;
        if public != *key.verifying_key() {
            return Err(Error::Config("key does not match certificate"));
        }
        Ok(Self::with_key(cert_der, key))
    }

    /// The certificate's DER bytes.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// The SHA-256 fingerprint to put in SDP.
    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    pub(crate) fn signing_key(&self) -> &SigningKey {
        &self.key
    }

    /// ring's copy of the key (absent only if ring refused it, when `p256` signs instead).
    #[cfg(feature = "ring")]
    pub(crate) fn ring_key(&self) -> Option<&ring::signature::EcdsaKeyPair> {
        self.ring.as_deref()
    }
}

/// One DER TLV with a definite length (X.690 §8.1).
fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let n = content.len();
    if n < 0x80 {
        out.push(n as u8);
    } else if n < 0x100 {
        out.extend_from_slice(&[0x81, n as u8]);
    } else {
        out.extend_from_slice(&[0x82, (n >> 8) as u8, n as u8]);
    }
    out.extend_from_slice(content);
    out
}

/// Reads one DER TLV from `buf`: (tag, content, rest). Low tag numbers and lengths below
/// 16 MiB only.
fn read_tlv(buf: &[u8]) -> Result<(u8, &[u8], &[u8]), Error> {
    let bad = Error::BadCertificate("malformed DER");
    let (&tag, rest) = buf.split_first().ok_or(bad.clone())?;
    if tag & 0x1f == 0x1f {
        return Err(bad);
    }
    let (&first, mut rest) = rest.split_first().ok_or(bad.clone())?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 3 || rest.len() < count {
            return Err(bad);
        }
        let mut len = 0usize;
        for &b in &rest[..count] {
            len = (len << 8) | usize::from(b);
        }
        rest = &rest[count..];
        len
    };
    if rest.len() < len {
        return Err(bad);
    }
    Ok((tag, &rest[..len], &rest[len..]))
}

/// Finds the P-256 public key in a DER certificate (RFC 5280 §4.1: Certificate ->
/// tbsCertificate -> subjectPublicKeyInfo). Anything else is `bad_certificate`.
pub(crate) fn public_key_of(cert: &[u8]) -> Result<VerifyingKey, Error> {
    let (tag, body, trailing) = read_tlv(cert)?;
    if tag != 0x30 || !trailing.is_empty() {
        return Err(Error::BadCertificate("not a certificate"));
    }
    let (tag, tbs, _) = read_tlv(body)?;
    if tag != 0x30 {
        return Err(Error::BadCertificate("no tbsCertificate"));
    }
    let mut rest = tbs;
    let (tag, _, after) = read_tlv(rest)?;
    if tag == 0xa0 {
        rest = after; // explicit version
    }
    // serialNumber, signature, issuer, validity, subject.
    for _ in 0..5 {
        let (_, _, after) = read_tlv(rest)?;
        rest = after;
    }
    let (tag, _, after) = read_tlv(rest)?;
    if tag != 0x30 {
        return Err(Error::BadCertificate("no subjectPublicKeyInfo"));
    }
    let spki = &rest[..rest.len() - after.len()];
    let key = p256::PublicKey::from_public_key_der(spki)
        .map_err(|_| Error::BadCertificate("not a P-256 key"))?;
    Ok(VerifyingKey::from(key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::Signature;
    use p256::ecdsa::signature::Verifier;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    #[test]
    fn generated_certificate_parses_and_self_verifies() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let cert = Certificate::generate(&mut rng);
        let key = public_key_of(cert.der()).unwrap();
        assert_eq!(key, *cert.signing_key().verifying_key());
        // The signature over tbsCertificate verifies with the embedded key.
        let (_, body, _) = read_tlv(cert.der()).unwrap();
        let (_, _, after_tbs) = read_tlv(body).unwrap();
        let tbs = &body[..body.len() - after_tbs.len()];
        let (_, _, after_alg) = read_tlv(after_tbs).unwrap();
        let (tag, bits, _) = read_tlv(after_alg).unwrap();
        assert_eq!(tag, 0x03);
        let sig = Signature::from_der(&bits[1..]).unwrap();
        key.verify(tbs, &sig).unwrap();
    }

    #[test]
    fn fingerprint_sdp_form_round_trips() {
        let fp = Fingerprint::from_bytes([0xab; 32]);
        let s = fp.to_string();
        assert!(s.starts_with("sha-256 AB:AB:"));
        assert_eq!(s.len(), 8 + 95);
        assert_eq!(s.parse::<Fingerprint>().unwrap(), fp);
        assert_eq!("SHA-256 ab:AB:ab:AB:ab:AB:ab:AB:ab:AB:ab:AB:ab:AB:ab:AB:ab:AB:ab:AB:ab:AB:ab:AB:ab:AB:ab:AB:ab:AB:ab:AB".parse::<Fingerprint>().unwrap(), fp);
        assert!("sha-1 AB".parse::<Fingerprint>().is_err());
        assert!("sha-256 AB:CD".parse::<Fingerprint>().is_err());
        assert!(fp.hex().parse::<Fingerprint>().is_ok());
    }

    #[test]
    fn junk_certificates_are_bad_certificate() {
        for junk in [
            &[][..],
            &[0x30],
            &[0x30, 0x84, 1, 1, 1, 1],
            &[0x30, 0x02, 0x30, 0x00],
            &[0x1f, 0, 0],
        ] {
            assert!(matches!(public_key_of(junk), Err(Error::BadCertificate(_))));
        }
    }
}
