//! SRTP and SRTCP for WebRTC: exactly two profiles, AEAD_AES_128_GCM (RFC 7714) and
//! AES128_CM_HMAC_SHA1_80 (RFC 3711), protecting packets in place in caller buffers.
#![forbid(unsafe_code)]

mod error;
mod key;
mod profile;

pub use error::{Error, Malformed};
pub use key::MasterKey;
pub use profile::ProtectionProfile;
