//! Master keys as DTLS-SRTP exports them.

use core::fmt;

use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::{Error, ProtectionProfile};

/// An SRTP master key and master salt for one direction of one profile.
///
/// The bytes are zeroized on drop; `Debug` never prints them.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct MasterKey {
    #[zeroize(skip)]
    profile: ProtectionProfile,
    key: [u8; 16],
    salt: [u8; 14],
}

impl MasterKey {
    /// A master key for `profile`; `key` and `salt` must have exactly the profile's lengths
    /// ([`ProtectionProfile::key_len`], [`ProtectionProfile::salt_len`]).
    pub fn new(profile: ProtectionProfile, key: &[u8], salt: &[u8]) -> Result<Self, Error> {
        if key.len() != profile.key_len() {
            return Err(Error::InvalidKeyLength {
                expected: profile.key_len(),
                actual: key.len(),
            });
        }
        if salt.len() != profile.salt_len() {
            return Err(Error::InvalidKeyLength {
                expected: profile.salt_len(),
                actual: salt.len(),
            });
        }
        let mut k = MasterKey {
            profile,
            key: [0; 16],
            salt: [0; 14],
        };
        k.key.copy_from_slice(key);
        k.salt[..salt.len()].copy_from_slice(salt);
        Ok(k)
    }

    /// The profile this key is for.
    pub fn profile(&self) -> ProtectionProfile {
        self.profile
    }

    /// The master key bytes.
    pub fn key(&self) -> &[u8] {
        &self.key
    }

    /// The master salt bytes (14 for AES-CM, 12 for GCM).
    pub fn salt(&self) -> &[u8] {
        &self.salt[..self.profile.salt_len()]
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MasterKey")
            .field("profile", &self.profile)
            .finish_non_exhaustive()
    }
}
