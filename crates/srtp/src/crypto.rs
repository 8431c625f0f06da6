//! Session keys (RFC 3711 §4.3) and the two per-packet transforms. Every key schedule
//! (AES round keys, GHASH key, HMAC inner and outer state) is computed here once per session
//! key; per packet the transforms only clone a few hundred bytes of state, if anything.

use aes::Aes128Enc;
use aes::cipher::{KeyInit, KeyIvInit, StreamCipher};
use hmac::{Hmac, Mac};
use sha1::Sha1;
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, Zeroizing};

use crate::provider::{Aes128GcmKey, Provider};
use crate::{Error, MasterKey, ProtectionProfile};

type Aes128Ctr = ctr::Ctr128BE<Aes128Enc>;
type HmacSha1 = Hmac<Sha1>;

/// RFC 3711 §4.3.1 key derivation labels.
#[derive(Clone, Copy)]
pub(crate) enum Labels {
    /// Labels 0x00, 0x01, 0x02: SRTP encryption, authentication and salt keys.
    Rtp,
    /// Labels 0x03, 0x04, 0x05: the SRTCP ones.
    Rtcp,
}

/// The AES-CM PRF of RFC 3711 §4.3.3 with a key derivation rate of zero (RFC 7714 §11 uses
/// the same PRF for GCM, with the 96-bit master salt padded with zeros to 112 bits):
/// `out = AES-CM(master_key, IV = (master_salt XOR (label << 48)) * 2^16)`.
pub(crate) fn derive(master: &MasterKey, label: u8, out: &mut [u8]) {
    let mut iv = Zeroizing::new([0u8; 16]);
    iv[..master.salt().len()].copy_from_slice(master.salt());
    // key_id = label || r, r = 0 (kdr = 0); the label lands 7 bytes from the salt's end.
    iv[7] ^= label;
    out.fill(0);
    Aes128Ctr::new(master.key().into(), (&*iv).into()).apply_keystream(out);
}

/// One direction's session keys for RTP or for RTCP, ready for use.
pub(crate) enum Transform {
    /// AES-128 counter mode with HMAC-SHA1-80.
    Cm(CmTransform),
    /// AES-128-GCM.
    Gcm(GcmTransform),
}

pub(crate) struct CmTransform {
    aes: Aes128Enc,
    /// The 112-bit session salt times 2^16, as the IV's base.
    salt: u128,
    mac: HmacSha1,
}

pub(crate) struct GcmTransform {
    aead: Aes128GcmKey,
    /// The 96-bit session salt.
    salt: u128,
}

impl Drop for CmTransform {
    fn drop(&mut self) {
        self.salt.zeroize();
        // hmac 0.12 offers no zeroize; overwrite the keyed inner/outer SHA-1 states with those
        // of an all-zero key, and keep the store from being optimised away (best effort).
        self.mac = <HmacSha1 as KeyInit>::new(&[0u8; 64].into());
        std::hint::black_box(&mut self.mac);
        // The AES round keys zeroize themselves (the `aes` crate's `zeroize` feature).
    }
}

impl Drop for GcmTransform {
    fn drop(&mut self) {
        self.salt.zeroize();
    }
}

/// Tag length of both SRTP and SRTCP for AES128_CM_HMAC_SHA1_80.
pub(crate) const CM_TAG: usize = 10;
/// Tag length of AEAD_AES_128_GCM.
pub(crate) const GCM_TAG: usize = 16;

impl Transform {
    pub(crate) fn new(master: &MasterKey, labels: Labels, provider: Provider) -> Self {
        let base = match labels {
            Labels::Rtp => 0,
            Labels::Rtcp => 3,
        };
        let mut enc = Zeroizing::new([0u8; 16]);
        derive(master, base, &mut enc[..]);
        match master.profile() {
            ProtectionProfile::Aes128CmHmacSha1_80 => {
                // HMAC pads keys shorter than SHA-1's 64-byte block with zeros (RFC 2104 §2),
                // so the 20-byte authentication key goes in as a zero-padded block.
                let mut auth = Zeroizing::new([0u8; 64]);
                derive(master, base + 1, &mut auth[..20]);
                let mut salt = Zeroizing::new([0u8; 16]);
                derive(master, base + 2, &mut salt[..14]);
                Transform::Cm(CmTransform {
                    aes: Aes128Enc::new((&*enc).into()),
                    salt: u128::from_be_bytes(*salt),
                    mac: <HmacSha1 as KeyInit>::new((&*auth).into()),
                })
            }
            ProtectionProfile::AeadAes128Gcm => {
                let mut salt = Zeroizing::new([0u8; 16]);
                derive(master, base + 2, &mut salt[4..]);
                Transform::Gcm(GcmTransform {
                    aead: Aes128GcmKey::new(provider, &enc),
                    salt: u128::from_be_bytes(*salt),
                })
            }
        }
    }

    #[cfg(test)]
    pub(crate) fn gcm_from_session_keys(
        key: &[u8; 16],
        salt: &[u8; 12],
        provider: Provider,
    ) -> Self {
        let mut s = [0u8; 16];
        s[4..].copy_from_slice(salt);
        Transform::Gcm(GcmTransform {
            aead: Aes128GcmKey::new(provider, key),
            salt: u128::from_be_bytes(s),
        })
    }

    pub(crate) fn tag_len(&self) -> usize {
        match self {
            Transform::Cm(_) => CM_TAG,
            Transform::Gcm(_) => GCM_TAG,
        }
    }
}

impl CmTransform {
    /// RFC 3711 §4.1.1: `IV = (k_s * 2^16) XOR (SSRC * 2^64) XOR (i * 2^16)`, where `i` is
    /// the 48-bit SRTP index or the 31-bit SRTCP index.
    fn iv(&self, ssrc: u32, index: u64) -> [u8; 16] {
        (self.salt ^ (u128::from(ssrc) << 64) ^ (u128::from(index) << 16)).to_be_bytes()
    }

    /// Encrypts (or decrypts) `data` with the AES-CM keystream for `(ssrc, index)`.
    pub(crate) fn apply_keystream(&self, ssrc: u32, index: u64, data: &mut [u8]) {
        use aes::cipher::InnerIvInit;
        let iv = self.iv(ssrc, index);
        // Borrow the expanded key: no copy of the round keys per packet.
        let core = ctr::CtrCore::<&Aes128Enc, ctr::flavors::Ctr128BE>::inner_iv_init(
            &self.aes,
            &iv.into(),
        );
        let mut ctr = ctr::cipher::StreamCipherCoreWrapper::from_core(core);
        ctr.apply_keystream(data);
    }

    /// HMAC-SHA1 over `data || trailer`, truncated to 80 bits (RFC 3711 §4.2).
    pub(crate) fn tag(&self, data: &[u8], trailer: &[u8]) -> [u8; CM_TAG] {
        let mut mac = self.mac.clone();
        mac.update(data);
        mac.update(trailer);
        let full = mac.finalize().into_bytes();
        let mut tag = [0u8; CM_TAG];
        tag.copy_from_slice(&full[..CM_TAG]);
        tag
    }

    /// Checks `tag` against the HMAC of `data || trailer` in constant time.
    pub(crate) fn verify(&self, data: &[u8], trailer: &[u8], tag: &[u8]) -> Result<(), Error> {
        if bool::from(self.tag(data, trailer).ct_eq(tag)) {
            Ok(())
        } else {
            Err(Error::AuthenticationFailed)
        }
    }
}

impl GcmTransform {
    /// RFC 7714 §8.1: `IV = (0x0000 || SSRC || ROC || SEQ) XOR salt`; §9.1 for SRTCP:
    /// `IV = (0x0000 || SSRC || 0x0000 || 0 || SRTCP index) XOR salt`. Both are this function
    /// with `index` the 48-bit SRTP index or the 31-bit SRTCP index.
    fn nonce(&self, ssrc: u32, index: u64) -> [u8; 12] {
        let iv = (self.salt ^ (u128::from(ssrc) << 48) ^ u128::from(index)).to_be_bytes();
        let mut nonce = [0u8; 12];
        nonce.copy_from_slice(&iv[4..]);
        nonce
    }

    /// Encrypts `data` in place with `aad`; returns the tag.
    pub(crate) fn seal(&self, ssrc: u32, index: u64, aad: &[u8], data: &mut [u8]) -> [u8; 16] {
        self.aead.seal(&self.nonce(ssrc, index), aad, data)
    }

    /// Verifies `tag` (in constant time) and decrypts `data`. On failure `data` holds no
    /// plaintext (see the provider module: ciphertext or zeros).
    pub(crate) fn open(
        &self,
        ssrc: u32,
        index: u64,
        aad: &[u8],
        data: &mut [u8],
        tag: &[u8; 16],
    ) -> Result<(), Error> {
        self.aead.open(&self.nonce(ssrc, index), aad, data, tag)
    }
}

#[cfg(test)]
mod tests {
    use hex_literal::hex;

    use super::*;

    /// RFC 3711 Appendix B.3: key derivation test vectors.
    #[test]
    fn rfc3711_b3_key_derivation() {
        let master = MasterKey::new(
            ProtectionProfile::Aes128CmHmacSha1_80,
            &hex!("E1F97A0D3E018BE0D64FA32C06DE4139"),
            &hex!("0EC675AD498AFEEBB6960B3AABE6"),
        )
        .unwrap();
        let mut enc = [0u8; 16];
        derive(&master, 0, &mut enc);
        assert_eq!(enc, hex!("C61E7A93744F39EE10734AFE3FF7A087"));
        let mut salt = [0u8; 14];
        derive(&master, 2, &mut salt);
        assert_eq!(salt, hex!("30CBBC08863D8C85D49DB34A9AE1"));
        let mut auth = [0u8; 94];
        derive(&master, 1, &mut auth);
        assert_eq!(
            auth,
            hex!(
                "CEBE321F6FF7716B6FD4AB49AF256A15 6D38BAA48F0A0ACF3C34E2359E6CDBCE"
                "E049646C43D9327AD175578EF7227098 6371C10C9A369AC2F94A8C5FBCDDDC25"
                "6D6E919A48B610EF17C2041E47403576 6B68642C59BBFC2F34DB60DBDFB2"
            )
        );
    }

    /// RFC 3711 Appendix B.2: AES-CM keystream for session key 2B7E…, salt F0F1…FD,
    /// SSRC 0 and index 0 (the counter F0F1…FD0000 onwards).
    #[test]
    fn rfc3711_b2_keystream() {
        let t = CmTransform {
            aes: Aes128Enc::new(&hex!("2B7E151628AED2A6ABF7158809CF4F3C").into()),
            salt: u128::from_be_bytes(hex!("F0F1F2F3F4F5F6F7F8F9FAFBFCFD0000")),
            mac: <HmacSha1 as KeyInit>::new(&[0u8; 64].into()),
        };
        let mut ks = vec![0u8; 16 * 0x10000];
        t.apply_keystream(0, 0, &mut ks);
        assert_eq!(ks[..16], hex!("E03EAD0935C95E80E166B16DD92B4EB4"));
        assert_eq!(ks[16..32], hex!("D23513162B02D0F72A43A2FE4A5F97AB"));
        assert_eq!(ks[32..48], hex!("41E95B3BB0A2E8DD477901E4FCA894C0"));
        assert_eq!(
            ks[0xfeff * 16..][..16],
            hex!("EC8CDF7398607CB0F2D21675EA9EA1E4")
        );
        assert_eq!(
            ks[0xff00 * 16..][..16],
            hex!("362B7C3C6773516318A077D7FC5073AE")
        );
        assert_eq!(
            ks[0xff01 * 16..][..16],
            hex!("6A2CC3787889374FBEB4C81B17BA6C44")
        );
    }

    /// RFC 7714 §16 and §17: the IVs printed for the example packets.
    #[test]
    fn rfc7714_ivs() {
        let Transform::Gcm(t) = Transform::gcm_from_session_keys(
            &hex!("000102030405060708090a0b0c0d0e0f"),
            &hex!("517569642070726f2071756f"),
            Provider::DEFAULT,
        ) else {
            unreachable!()
        };
        assert_eq!(
            t.nonce(0x5501a0b2, 0xf17b),
            hex!("51753c6580c2726f20718414")
        );
        assert_eq!(t.nonce(0x4d617273, 0x5d4), hex!("517524055203726f207170bb"));
    }
}
