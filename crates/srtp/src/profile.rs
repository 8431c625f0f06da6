//! The two SRTP protection profiles callsec supports, and nothing else.

use core::fmt;

/// An SRTP protection profile (RFC 5764 §4.1.2, RFC 7714 §14.2).
///
/// callsec implements exactly two; every other code point is refused by
/// [`ProtectionProfile::from_id`] so that a negotiation can reject it explicitly.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProtectionProfile {
    /// `SRTP_AES128_CM_HMAC_SHA1_80` (RFC 3711, RFC 5764): AES-128 counter mode, 80-bit
    /// HMAC-SHA1 tag on RTP and RTCP.
    Aes128CmHmacSha1_80,
    /// `SRTP_AEAD_AES_128_GCM` (RFC 7714): AES-128-GCM with a 16-byte tag.
    AeadAes128Gcm,
}

impl ProtectionProfile {
    /// Every supported profile, in callsec's default order of preference (GCM first).
    pub const ALL: [ProtectionProfile; 2] = [Self::AeadAes128Gcm, Self::Aes128CmHmacSha1_80];

    /// The `use_srtp` code point (RFC 5764 §4.1.2, RFC 7714 §14.2).
    pub const fn id(self) -> u16 {
        match self {
            Self::Aes128CmHmacSha1_80 => 0x0001,
            Self::AeadAes128Gcm => 0x0007,
        }
    }

    /// The profile for a `use_srtp` code point, or `None` for every profile callsec refuses
    /// (the 32-bit tag, NULL cipher and AES-256 profiles among them).
    pub const fn from_id(id: u16) -> Option<Self> {
        match id {
            0x0001 => Some(Self::Aes128CmHmacSha1_80),
            0x0007 => Some(Self::AeadAes128Gcm),
            _ => None,
        }
    }

    /// Master key length in bytes (16 for both profiles).
    pub const fn key_len(self) -> usize {
        16
    }

    /// Master salt length in bytes: 14 for AES-CM (RFC 3711 §8.2), 12 for GCM (RFC 7714 §12).
    pub const fn salt_len(self) -> usize {
        match self {
            Self::Aes128CmHmacSha1_80 => 14,
            Self::AeadAes128Gcm => 12,
        }
    }

    /// Bytes of keying material DTLS-SRTP exports for this profile:
    /// `2 * (key_len + salt_len)` (RFC 5764 §4.2).
    pub const fn keying_material_len(self) -> usize {
        2 * (self.key_len() + self.salt_len())
    }

    /// Bytes an SRTP packet grows by: the authentication tag.
    pub const fn rtp_overhead(self) -> usize {
        match self {
            Self::Aes128CmHmacSha1_80 => 10,
            Self::AeadAes128Gcm => 16,
        }
    }

    /// Bytes an SRTCP packet grows by: the E flag with SRTCP index (4) plus the tag.
    pub const fn rtcp_overhead(self) -> usize {
        4 + self.rtp_overhead()
    }

    /// The profile's name as RFC 5764 and RFC 7714 register it.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Aes128CmHmacSha1_80 => "SRTP_AES128_CM_HMAC_SHA1_80",
            Self::AeadAes128Gcm => "SRTP_AEAD_AES_128_GCM",
        }
    }
}

impl fmt::Display for ProtectionProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
