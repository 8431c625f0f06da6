//! SRTP and SRTCP for WebRTC: exactly two profiles, AEAD_AES_128_GCM (RFC 7714) and
//! AES128_CM_HMAC_SHA1_80 (RFC 3711), protecting packets in place in caller buffers.
//!
//! ```
//! use callsec_srtp::{Config, Context, MasterKey, ProtectionProfile};
//!
//! let profile = ProtectionProfile::AeadAes128Gcm;
//! let key = MasterKey::new(profile, &[7; 16], &[9; 12])?;
//! let mut sender = Context::new(&key, Config::default())?;
//! let mut receiver = Context::new(&key, Config::default())?;
//!
//! let rtp = [0x80, 0x6f, 0x00, 0x01, 0, 0, 0, 0, 0x12, 0x34, 0x56, 0x78, 1, 2, 3, 4];
//! let mut buf = [0u8; 1500];
//! buf[..rtp.len()].copy_from_slice(&rtp);
//! let n = sender.protect_rtp(&mut buf, rtp.len())?;
//! assert_eq!(n, rtp.len() + profile.rtp_overhead());
//! let m = receiver.unprotect_rtp(&mut buf[..n])?;
//! assert_eq!(&buf[..m], &rtp);
//! # Ok::<(), callsec_srtp::Error>(())
//! ```
//!
//! The crate is sans-IO: no sockets, clocks or threads, only functions on buffers.
//!
//! AES-128-GCM comes from a [crypto provider](provider): `ring` (feature `ring`, on by
//! default) or RustCrypto (always available), chosen per context by [`Config::provider`].
#![forbid(unsafe_code)]

mod context;
mod crypto;
mod error;
mod key;
mod packet;
mod profile;
pub mod provider;
mod replay;
#[cfg(test)]
mod vectors;
pub mod view;

pub use context::{Config, Context, MAX_SRTCP_PACKETS, MAX_SRTP_PACKETS};
pub use error::{Error, Malformed};
pub use key::MasterKey;
pub use profile::ProtectionProfile;
pub use provider::Provider;
pub use replay::MAX_REPLAY_WINDOW;
