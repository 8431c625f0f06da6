//! The one error type of the crate.

use core::fmt;

/// Why an SRTP or SRTCP operation failed.
///
/// A failed operation changes no stream state: the context stays usable for the next packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// A key or salt of the wrong length for the profile (caller's fault).
    InvalidKeyLength {
        /// Length the profile needs.
        expected: usize,
        /// Length given.
        actual: usize,
    },
    /// A configuration value out of range (caller's fault), e.g. a replay window over 4096.
    InvalidConfig(&'static str),
    /// The caller's buffer cannot hold the protected packet (caller's fault): it needs
    /// `needed` bytes of capacity. Nothing was written.
    BufferTooSmall {
        /// Total buffer length the operation needs.
        needed: usize,
    },
    /// The packet is not a well-formed RTP or RTCP packet: too short for its fixed header, a
    /// version other than 2, a CSRC list or header extension running past the end, or an
    /// SRTCP packet shorter than its trailer (peer's fault).
    Malformed(Malformed),
    /// Authentication failed: the tag does not verify. Deliberately says nothing more
    /// (peer's fault or an attack). No state changed.
    AuthenticationFailed,
    /// The packet's index was already received or lies behind the replay window
    /// (RFC 3711 §3.3.2). No state changed.
    Replayed,
    /// The master key has protected as many packets as its profile allows (2^48 SRTP,
    /// 2^31 SRTCP, RFC 3711 §9.2): re-key before sending or receiving more.
    KeyExhausted,
    /// A packet for a new SSRC arrived but the context already tracks its configured
    /// maximum number of streams.
    TooManyStreams,
}

/// The ways a packet can be malformed, for diagnostics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Malformed {
    /// Shorter than the 12-byte RTP (or 8-byte RTCP) fixed header plus what the profile adds.
    TooShort,
    /// The version field is not 2.
    BadVersion,
    /// The CSRC list runs past the end of the packet.
    CsrcPastEnd,
    /// The header extension runs past the end of the packet.
    ExtensionPastEnd,
    /// An SRTCP packet is shorter than its header plus E/index and tag.
    TrailerPastEnd,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidKeyLength { expected, actual } => {
                write!(
                    f,
                    "key material of {actual} bytes where {expected} are needed"
                )
            }
            Error::InvalidConfig(what) => write!(f, "invalid SRTP configuration: {what}"),
            Error::BufferTooSmall { needed } => {
                write!(f, "buffer too small: {needed} bytes needed")
            }
            Error::Malformed(m) => write!(f, "malformed packet: {m:?}"),
            Error::AuthenticationFailed => f.write_str("authentication failed"),
            Error::Replayed => f.write_str("replayed or too old packet"),
            Error::KeyExhausted => f.write_str("master key lifetime exhausted"),
            Error::TooManyStreams => f.write_str("too many SSRCs for this context"),
        }
    }
}

impl std::error::Error for Error {}

impl From<Malformed> for Error {
    fn from(m: Malformed) -> Self {
        Error::Malformed(m)
    }
}
