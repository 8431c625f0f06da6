//! Errors, whose fault they are, and the one mapping from an error to its DTLS alert.

use std::fmt;

/// An alert description (RFC 5246 §7.2), an open code point: unknown values survive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AlertDescription(pub u8);

impl AlertDescription {
    /// close_notify (RFC 5246 §7.2.1).
    pub const CLOSE_NOTIFY: Self = Self(0);
    /// unexpected_message.
    pub const UNEXPECTED_MESSAGE: Self = Self(10);
    /// bad_record_mac.
    pub const BAD_RECORD_MAC: Self = Self(20);
    /// record_overflow.
    pub const RECORD_OVERFLOW: Self = Self(22);
    /// handshake_failure.
    pub const HANDSHAKE_FAILURE: Self = Self(40);
    /// bad_certificate.
    pub const BAD_CERTIFICATE: Self = Self(42);
    /// unsupported_certificate.
    pub const UNSUPPORTED_CERTIFICATE: Self = Self(43);
    /// illegal_parameter.
    pub const ILLEGAL_PARAMETER: Self = Self(47);
    /// decode_error.
    pub const DECODE_ERROR: Self = Self(50);
    /// decrypt_error.
    pub const DECRYPT_ERROR: Self = Self(51);
    /// protocol_version.
    pub const PROTOCOL_VERSION: Self = Self(70);
    /// insufficient_security.
    pub const INSUFFICIENT_SECURITY: Self = Self(71);
    /// internal_error.
    pub const INTERNAL_ERROR: Self = Self(80);
    /// no_renegotiation (RFC 5246 §7.2.2, a warning).
    pub const NO_RENEGOTIATION: Self = Self(100);
    /// unsupported_extension.
    pub const UNSUPPORTED_EXTENSION: Self = Self(110);
}

/// Alert level (RFC 5246 §7.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AlertLevel {
    /// warning (1).
    Warning,
    /// fatal (2).
    Fatal,
}

/// Everything that can go wrong. Variants say whose fault it was: the peer sent bytes that do
/// not parse (`Decode`), broke the protocol (`UnexpectedMessage`, `IllegalParameter`), wants
/// something callsec refuses (`PeerIncompatible`), failed authentication, or the local side
/// misused the API.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// A message or record did not parse (decode_error).
    Decode(&'static str),
    /// The peer sent a message that is not allowed now (unexpected_message).
    UnexpectedMessage(&'static str),
    /// The peer sent a parameter that is not allowed (illegal_parameter).
    IllegalParameter(&'static str),
    /// The peer offers nothing callsec accepts: suites, groups, signature schemes, SRTP
    /// profiles, extended master secret (handshake_failure).
    PeerIncompatible(&'static str),
    /// The peer wants a DTLS version other than 1.2 (protocol_version).
    ProtocolVersion,
    /// The peer offers only cipher suites weaker than callsec accepts (insufficient_security).
    InsufficientSecurity(&'static str),
    /// The peer's certificate does not match the expected fingerprint or is not a P-256
    /// ECDSA certificate (bad_certificate).
    BadCertificate(&'static str),
    /// A signature or Finished value did not verify (decrypt_error).
    DecryptError(&'static str),
    /// The peer answered with an extension callsec did not offer (unsupported_extension).
    UnsupportedExtension,
    /// A hard limit on buffered or announced bytes was hit (internal_error is not sent; the
    /// input is dropped or the handshake fails with decode_error).
    LimitExceeded(&'static str),
    /// The peer sent a fatal alert.
    AlertReceived(AlertDescription),
    /// The handshake did not finish before the configured total timeout.
    Timeout,
    /// The connection is closed; nothing more can be sent.
    Closed,
    /// Application data or key export was requested before the handshake completed.
    NotConnected,
    /// The local configuration is unusable.
    Config(&'static str),
}

impl Error {
    /// The alert that tells the peer about this error, if one is sent (RFC 5246 §7.2.2).
    pub fn alert(&self) -> Option<AlertDescription> {
        Some(match self {
            Self::Decode(_) | Self::LimitExceeded(_) => AlertDescription::DECODE_ERROR,
            Self::UnexpectedMessage(_) => AlertDescription::UNEXPECTED_MESSAGE,
            Self::IllegalParameter(_) => AlertDescription::ILLEGAL_PARAMETER,
            Self::PeerIncompatible(_) => AlertDescription::HANDSHAKE_FAILURE,
            Self::ProtocolVersion => AlertDescription::PROTOCOL_VERSION,
            Self::InsufficientSecurity(_) => AlertDescription::INSUFFICIENT_SECURITY,
            Self::BadCertificate(_) => AlertDescription::BAD_CERTIFICATE,
            Self::DecryptError(_) => AlertDescription::DECRYPT_ERROR,
            Self::UnsupportedExtension => AlertDescription::UNSUPPORTED_EXTENSION,
            Self::AlertReceived(_)
            | Self::Timeout
            | Self::Closed
            | Self::NotConnected
            | Self::Config(_) => return None,
        })
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Decode(what) => write!(f, "malformed input: {what}"),
            Self::UnexpectedMessage(what) => write!(f, "unexpected message: {what}"),
            Self::IllegalParameter(what) => write!(f, "illegal parameter: {what}"),
            Self::PeerIncompatible(what) => write!(f, "peer incompatible: {what}"),
            Self::ProtocolVersion => write!(f, "peer does not speak DTLS 1.2"),
            Self::InsufficientSecurity(what) => write!(f, "insufficient security: {what}"),
            Self::BadCertificate(what) => write!(f, "bad certificate: {what}"),
            Self::DecryptError(what) => write!(f, "verification failed: {what}"),
            Self::UnsupportedExtension => write!(f, "peer answered an extension not offered"),
            Self::LimitExceeded(what) => write!(f, "limit exceeded: {what}"),
            Self::AlertReceived(a) => write!(f, "peer sent fatal alert {}", a.0),
            Self::Timeout => write!(f, "handshake timed out"),
            Self::Closed => write!(f, "connection closed"),
            Self::NotConnected => write!(f, "handshake not complete"),
            Self::Config(what) => write!(f, "bad configuration: {what}"),
        }
    }
}

impl std::error::Error for Error {}
