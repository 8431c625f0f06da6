//! Why a connection ended, and the WebSocket close code and reason sent for it.
//!
//! Codes 1000–1015 are RFC 6455 §7.4.1; 4000–4999 are reserved for private use
//! (RFC 6455 §7.4.2) and used here for authentication and session ends:
//!
//! | code | reason text                    | when |
//! | ---- | ------------------------------ | ---- |
//! | 1000 | `normal closure`               | the peer closed |
//! | 1001 | `server shutting down`         | [`crate::Server::shutdown`] |
//! | 1007 | `invalid utf-8 in text frame`  | RFC 6455 §8.1 |
//! | 1008 | `rate limit exceeded`, `too many invalid messages` | abuse limits |
//! | 1009 | `message too big`              | message beyond 4 × `max_message_size` |
//! | 1011 | `internal error`               | |
//! | 1013 | `outbound queue full`          | the peer reads too slowly |
//! | 4001 | `token missing`                | no header and first message was not `auth` |
//! | 4002 | `authentication timeout`       | no `auth` within `auth_timeout` |
//! | 4003 | `token malformed`              | |
//! | 4004 | `token unsigned`               | `alg: none` or empty signature |
//! | 4005 | `token algorithm not accepted` | |
//! | 4006 | `token signature invalid`      | |
//! | 4007 | `token claim missing or invalid` | |
//! | 4008 | `token expired`                | at connect, or at expiry with `close_at_token_expiry` |
//! | 4009 | `token not yet valid`          | |
//! | 4010 | `token audience mismatch`      | |
//! | 4011 | `token issuer mismatch`        | |
//! | 4012 | `session revoked`              | revoked at connect or while connected |
//! | 4013 | `token not valid for room`     | `join` of a room not in `rooms` |
//! | 4014 | `session length exceeded`      | `max_session_length` |
//! | 4015 | `idle timeout`                 | `idle_timeout` |

use crate::token::TokenError;

/// Why a connection ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// The peer closed the socket or the transport ended.
    PeerClosed,
    /// The server is shutting down.
    Shutdown,
    /// A text frame held invalid UTF-8.
    InvalidUtf8,
    /// Too many messages dropped for rate.
    RateLimited,
    /// Too many undecodable messages.
    TooManyErrors,
    /// A message beyond the hard size cap.
    MessageTooBig,
    /// An internal failure.
    Internal,
    /// The peer did not read its messages fast enough.
    SlowConsumer,
    /// Authentication failed.
    Auth(TokenError),
    /// No `auth` message in time.
    AuthTimeout,
    /// `join` of a room the token does not allow.
    WrongRoom,
    /// The session or its user was revoked.
    Revoked,
    /// `max_session_length` reached.
    SessionExpired,
    /// `idle_timeout` reached.
    IdleTimeout,
    /// The user or the session already holds `max_connections_per_user` or
    /// `max_connections_per_session` authenticated connections.
    TooManyConnections,
}

impl CloseReason {
    /// The close code (RFC 6455 §7.4).
    #[must_use]
    pub fn code(self) -> u16 {
        match self {
            Self::PeerClosed => 1000,
            Self::Shutdown => 1001,
            Self::InvalidUtf8 => 1007,
            Self::RateLimited | Self::TooManyErrors => 1008,
            Self::MessageTooBig => 1009,
            Self::Internal => 1011,
            Self::SlowConsumer => 1013,
            Self::Auth(e) => match e {
                TokenError::Missing => 4001,
                TokenError::Malformed => 4003,
                TokenError::Unsigned => 4004,
                TokenError::WrongAlgorithm => 4005,
                TokenError::BadSignature => 4006,
                TokenError::MissingClaim => 4007,
                TokenError::Expired => 4008,
                TokenError::NotYetValid => 4009,
                TokenError::WrongAudience => 4010,
                TokenError::WrongIssuer => 4011,
                TokenError::Revoked => 4012,
            },
            Self::AuthTimeout => 4002,
            Self::Revoked => 4012,
            Self::WrongRoom => 4013,
            Self::SessionExpired => 4014,
            Self::IdleTimeout => 4015,
            Self::TooManyConnections => 4016,
        }
    }

    /// The close reason text (at most 123 bytes, RFC 6455 §5.5).
    #[must_use]
    pub fn text(self) -> &'static str {
        match self {
            Self::PeerClosed => "normal closure",
            Self::Shutdown => "server shutting down",
            Self::InvalidUtf8 => "invalid utf-8 in text frame",
            Self::RateLimited => "rate limit exceeded",
            Self::TooManyErrors => "too many invalid messages",
            Self::MessageTooBig => "message too big",
            Self::Internal => "internal error",
            Self::SlowConsumer => "outbound queue full",
            Self::Auth(TokenError::Missing) => "token missing",
            Self::Auth(TokenError::Malformed) => "token malformed",
            Self::Auth(TokenError::Unsigned) => "token unsigned",
            Self::Auth(TokenError::WrongAlgorithm) => "token algorithm not accepted",
            Self::Auth(TokenError::BadSignature) => "token signature invalid",
            Self::Auth(TokenError::MissingClaim) => "token claim missing or invalid",
            Self::Auth(TokenError::Expired) => "token expired",
            Self::Auth(TokenError::NotYetValid) => "token not yet valid",
            Self::Auth(TokenError::WrongAudience) => "token audience mismatch",
            Self::Auth(TokenError::WrongIssuer) => "token issuer mismatch",
            Self::Auth(TokenError::Revoked) | Self::Revoked => "session revoked",
            Self::AuthTimeout => "authentication timeout",
            Self::WrongRoom => "token not valid for room",
            Self::SessionExpired => "session length exceeded",
            Self::IdleTimeout => "idle timeout",
            Self::TooManyConnections => "too many connections for this user or session",
        }
    }

    /// A short stable name for the audit log.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PeerClosed => "peer_closed",
            Self::Shutdown => "shutdown",
            Self::InvalidUtf8 => "invalid_utf8",
            Self::RateLimited => "rate_limited",
            Self::TooManyErrors => "too_many_errors",
            Self::MessageTooBig => "message_too_big",
            Self::Internal => "internal",
            Self::SlowConsumer => "slow_consumer",
            Self::Auth(e) => e.as_str(),
            Self::AuthTimeout => "auth_timeout",
            Self::WrongRoom => "wrong_room",
            Self::Revoked => "revoked",
            Self::SessionExpired => "session_expired",
            Self::IdleTimeout => "idle_timeout",
            Self::TooManyConnections => "too_many_connections",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_codes_are_distinct_and_texts_short() {
        let all = [
            TokenError::Missing,
            TokenError::Malformed,
            TokenError::Unsigned,
            TokenError::WrongAlgorithm,
            TokenError::BadSignature,
            TokenError::MissingClaim,
            TokenError::Expired,
            TokenError::NotYetValid,
            TokenError::WrongAudience,
            TokenError::WrongIssuer,
            TokenError::Revoked,
        ];
        let mut codes: Vec<u16> = all.iter().map(|&e| CloseReason::Auth(e).code()).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), all.len());
        for e in all {
            let r = CloseReason::Auth(e);
            assert!((4000..5000).contains(&r.code()));
            assert!(r.text().len() <= 123);
            assert_eq!(r.text(), e.to_string());
        }
    }
}
