//! The wire protocol: one versioned JSON message per WebSocket message.
//!
//! ```text
//! every message is a JSON object:
//! {
//!   "v":    1,              protocol version, required, must equal PROTOCOL_VERSION
//!   "id":   7,              optional request id (u64), echoed in the reply
//!   "type": "offer",        message type, snake_case, required
//!   ...                     fields of that type
//! }
//! ```
//!
//! Client to server ([`ClientMessage`]): `auth`, `join`, `leave`, `offer`, `answer`,
//! `candidate`, `mute`, `unmute`, `screen_share_on`, `screen_share_off`, `ping`.
//! Server to client ([`ServerMessage`]): `authenticated`, `joined`, `left`, `offer`,
//! `answer`, `candidate`, `ack`, `pong`, `participant_joined`, `participant_left`,
//! `participant_muted`, `participant_screen_share`, `session_revoked`, `error`.
//!
//! Every reply echoes its request's `id`, the `authenticated` reply to a first-message
//! `auth` included.
//!
//! # Liveness: what keeps a connection open
//! A client never has to send anything to stay connected during a call:
//! - the server sends a WebSocket ping after `Limits::ping_interval` (20 s by default) of
//!   its own silence; the client's WebSocket library answers with a pong (RFC 6455 §5.5.2
//!   makes that automatic: browsers and every mainstream library do it), and any frame the
//!   client sends, pongs, its own pings and messages, counts as activity;
//! - when nothing at all came for `Limits::idle_timeout` (60 s by default), the calls
//!   server is asked whether the client's media is alive (`callsec serve`: DTLS up and an
//!   authenticated ICE check, SRTP or SRTCP packet within that time); if so the connection
//!   stays open;
//! - otherwise it is closed with code 4015 `idle timeout`: the client stopped reading its
//!   socket and its media stopped too. The app-level `ping` (answered `pong`) also counts,
//!   for clients that want a round trip of their own.
//!
//! Decoding is strict about the envelope (version, type, field types, sizes) and reports
//! each failure as an [`ErrorCode`] that the server sends back in an `error` message.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The protocol version this crate speaks; every message carries it as `"v"`.
pub const PROTOCOL_VERSION: u32 = 1;

/// Longest accepted room id, in bytes.
pub const MAX_ROOM_ID_LEN: usize = 64;

/// Longest accepted ICE candidate line or `sdpMid`, in bytes.
pub const MAX_CANDIDATE_LEN: usize = 1024;

/// An SDP body. Its `Debug` shows only the length: SDP carries `a=ice-pwd` and the
/// DTLS fingerprint, which must never reach a log.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Sdp(pub String);

impl fmt::Debug for Sdp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sdp({} bytes)", self.0.len())
    }
}

/// An access token as carried in an `auth` message. Its `Debug` is redacted.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Token(pub String);

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// A media track kind, for mute and unmute.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Track {
    /// The microphone.
    Audio,
    /// The camera.
    Video,
}

/// A trickled ICE candidate, shaped like the browser's `RTCIceCandidateInit`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IceCandidate {
    /// The `candidate:` attribute line (empty string means end of candidates).
    pub candidate: String,
    /// The media stream identification tag the candidate belongs to.
    #[serde(rename = "sdpMid", default, skip_serializing_if = "Option::is_none")]
    pub sdp_mid: Option<String>,
    /// The index of the m-line the candidate belongs to.
    #[serde(
        rename = "sdpMLineIndex",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub sdp_m_line_index: Option<u16>,
}

/// A message a participant sends to the server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ClientMessage {
    /// Authenticate with an access token: as the first message when no
    /// `Authorization: Bearer` header was sent, or later to replace the token with a fresh
    /// one for the same user and session (see `Limits::close_at_token_expiry`); the reply
    /// is `authenticated` again.
    Auth {
        /// The access token (a JWS compact serialization, RFC 7515 §7.1).
        token: Token,
    },
    /// Join a room the token allows.
    Join {
        /// The room id.
        room: String,
    },
    /// Leave the current room.
    Leave,
    /// An SDP offer (RFC 8829 §5.2).
    Offer {
        /// The offer.
        sdp: Sdp,
    },
    /// An SDP answer to an offer the server sent (RFC 8829 §5.3).
    Answer {
        /// The answer.
        sdp: Sdp,
    },
    /// A trickled ICE candidate (RFC 8838).
    Candidate(IceCandidate),
    /// Mute a track.
    Mute {
        /// Which track.
        track: Track,
    },
    /// Unmute a track.
    Unmute {
        /// Which track.
        track: Track,
    },
    /// Start sharing the screen.
    ScreenShareOn,
    /// Stop sharing the screen.
    ScreenShareOff,
    /// Application-level keepalive; answered with `pong`. Resets the idle timer.
    Ping,
}

/// A message the server sends to a participant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ServerMessage {
    /// Authentication succeeded.
    Authenticated {
        /// The user id from the token (`sub`).
        user_id: String,
        /// The session id from the token (`sid`).
        session_id: String,
        /// The rooms the token allows.
        rooms: Vec<String>,
    },
    /// The participant is now in the room.
    Joined {
        /// The room id.
        room: String,
        /// The user ids of the other participants already there.
        participants: Vec<String>,
    },
    /// The participant left the room.
    Left {
        /// The room id.
        room: String,
    },
    /// An SDP offer from the calls server (renegotiation).
    Offer {
        /// The offer.
        sdp: Sdp,
    },
    /// The calls server's SDP answer to the participant's offer.
    Answer {
        /// The answer.
        sdp: Sdp,
    },
    /// A trickled ICE candidate from the calls server.
    Candidate(IceCandidate),
    /// The request with this envelope's `id` was accepted.
    Ack,
    /// Reply to `ping`.
    Pong,
    /// Another participant joined the room.
    ParticipantJoined {
        /// The room id.
        room: String,
        /// Who joined.
        user_id: String,
    },
    /// Another participant left the room.
    ParticipantLeft {
        /// The room id.
        room: String,
        /// Who left.
        user_id: String,
    },
    /// Another participant muted or unmuted a track.
    ParticipantMuted {
        /// The room id.
        room: String,
        /// Who.
        user_id: String,
        /// Which track.
        track: Track,
        /// Muted (true) or unmuted (false).
        muted: bool,
    },
    /// Another participant started or stopped sharing the screen.
    ParticipantScreenShare {
        /// The room id.
        room: String,
        /// Who.
        user_id: String,
        /// Sharing (true) or stopped (false).
        on: bool,
    },
    /// This session was revoked; the socket closes right after this message.
    SessionRevoked,
    /// A request failed, or a message could not be decoded.
    Error {
        /// Machine-readable code.
        code: ErrorCode,
        /// Human-readable detail (never contains the offending input).
        message: String,
    },
}

/// Machine-readable error codes of the `error` message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorCode {
    /// The payload is not UTF-8 (binary frame with invalid UTF-8).
    InvalidUtf8,
    /// The payload is not JSON.
    MalformedJson,
    /// `"v"` is missing or not [`PROTOCOL_VERSION`].
    UnsupportedVersion,
    /// `"type"` names no known message.
    UnknownType,
    /// The JSON is well-formed but fields are missing, of the wrong type or out of range.
    InvalidMessage,
    /// The message exceeds the configured maximum message size.
    MessageTooLarge,
    /// The SDP exceeds the configured maximum SDP size.
    SdpTooLarge,
    /// Too many messages per second; this message was dropped unread, so the `error`
    /// carries no `id`.
    RateLimited,
    /// The message is not valid in the current state (e.g. `auth` twice, `join` twice).
    InvalidState,
    /// The request needs a joined room.
    NotJoined,
    /// The room has reached its participant limit.
    RoomFull,
    /// The calls server refused the request.
    Rejected,
    /// The calls server did not answer in time, or failed.
    Internal,
    /// A code this version does not know (only produced when decoding server messages).
    #[serde(other)]
    Unknown,
}

impl ErrorCode {
    /// The wire spelling of the code.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidUtf8 => "invalid_utf8",
            Self::MalformedJson => "malformed_json",
            Self::UnsupportedVersion => "unsupported_version",
            Self::UnknownType => "unknown_type",
            Self::InvalidMessage => "invalid_message",
            Self::MessageTooLarge => "message_too_large",
            Self::SdpTooLarge => "sdp_too_large",
            Self::RateLimited => "rate_limited",
            Self::InvalidState => "invalid_state",
            Self::NotJoined => "not_joined",
            Self::RoomFull => "room_full",
            Self::Rejected => "rejected",
            Self::Internal => "internal",
            Self::Unknown => "unknown",
        }
    }
}

/// A client message with its envelope.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ClientEnvelope {
    /// Protocol version.
    pub v: u32,
    /// Optional request id, echoed in the reply.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<u64>,
    /// The message.
    #[serde(flatten)]
    pub message: ClientMessage,
}

impl ClientEnvelope {
    /// Wraps `message` in an envelope of the current version.
    #[must_use]
    pub fn new(id: Option<u64>, message: ClientMessage) -> Self {
        Self {
            v: PROTOCOL_VERSION,
            id,
            message,
        }
    }

    /// Encodes the envelope as JSON text.
    #[must_use]
    pub fn encode(&self) -> String {
        // Serialising these plain types to a String cannot fail (no maps with
        // non-string keys, no fallible Serialize impls).
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// A server message with its envelope.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerEnvelope {
    /// Protocol version.
    pub v: u32,
    /// The id of the request this replies to, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u64>,
    /// The message.
    #[serde(flatten)]
    pub message: ServerMessage,
}

impl ServerEnvelope {
    /// Wraps `message` in an envelope of the current version.
    #[must_use]
    pub fn new(id: Option<u64>, message: ServerMessage) -> Self {
        Self {
            v: PROTOCOL_VERSION,
            id,
            message,
        }
    }

    /// An `error` reply.
    #[must_use]
    pub fn error(id: Option<u64>, code: ErrorCode, message: impl Into<String>) -> Self {
        Self::new(
            id,
            ServerMessage::Error {
                code,
                message: message.into(),
            },
        )
    }

    /// Encodes the envelope as JSON text.
    #[must_use]
    pub fn encode(&self) -> String {
        // See ClientEnvelope::encode: cannot fail for these types.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Size limits applied while decoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Maximum message size in bytes.
    pub max_message_size: usize,
    /// Maximum SDP size in bytes.
    pub max_sdp_size: usize,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        Self {
            max_message_size: 64 * 1024,
            max_sdp_size: 32 * 1024,
        }
    }
}

/// Why a client message could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeError {
    /// The request id, when the envelope was readable enough to find it.
    pub id: Option<u64>,
    /// The error code to send back.
    pub code: ErrorCode,
    /// Detail for the peer; never echoes the input.
    pub detail: &'static str,
}

impl DecodeError {
    fn new(id: Option<u64>, code: ErrorCode, detail: &'static str) -> Self {
        Self { id, code, detail }
    }

    /// The `error` reply for this failure.
    #[must_use]
    pub fn to_reply(&self) -> ServerEnvelope {
        ServerEnvelope::error(self.id, self.code, self.detail)
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.detail)
    }
}

impl std::error::Error for DecodeError {}

/// Decodes one client message from the payload of a WebSocket message.
///
/// Checks, in order: size, UTF-8, JSON syntax, that it is an object, `id` (optional u64),
/// `v` (must be [`PROTOCOL_VERSION`]), `type` (must be known), the fields of that type,
/// then value limits (SDP size, room id shape, candidate size). Never panics.
///
/// # Errors
/// A [`DecodeError`] naming the first check that failed.
pub fn decode_client_message(
    payload: &[u8],
    limits: &DecodeLimits,
) -> Result<ClientEnvelope, DecodeError> {
    if payload.len() > limits.max_message_size {
        return Err(DecodeError::new(
            None,
            ErrorCode::MessageTooLarge,
            "message too large",
        ));
    }
    let text = std::str::from_utf8(payload)
        .map_err(|_| DecodeError::new(None, ErrorCode::InvalidUtf8, "payload is not UTF-8"))?;
    let value: Value = serde_json::from_str(text)
        .map_err(|_| DecodeError::new(None, ErrorCode::MalformedJson, "payload is not JSON"))?;
    let Value::Object(object) = &value else {
        return Err(DecodeError::new(
            None,
            ErrorCode::InvalidMessage,
            "message is not an object",
        ));
    };
    let id = match object.get("id") {
        None | Some(Value::Null) => None,
        Some(v) => Some(v.as_u64().ok_or(DecodeError::new(
            None,
            ErrorCode::InvalidMessage,
            "id must be an unsigned integer",
        ))?),
    };
    match object.get("v").and_then(Value::as_u64) {
        Some(v) if v == u64::from(PROTOCOL_VERSION) => {}
        _ => {
            return Err(DecodeError::new(
                id,
                ErrorCode::UnsupportedVersion,
                "unsupported protocol version",
            ));
        }
    }
    let Some(kind) = object.get("type").and_then(Value::as_str) else {
        return Err(DecodeError::new(
            id,
            ErrorCode::InvalidMessage,
            "type must be a string",
        ));
    };
    if !CLIENT_TYPES.contains(&kind) {
        return Err(DecodeError::new(
            id,
            ErrorCode::UnknownType,
            "unknown message type",
        ));
    }
    let message: ClientMessage = serde_json::from_value(value).map_err(|_| {
        DecodeError::new(id, ErrorCode::InvalidMessage, "missing or invalid fields")
    })?;
    validate(&message, limits).map_err(|(code, detail)| DecodeError::new(id, code, detail))?;
    Ok(ClientEnvelope {
        v: PROTOCOL_VERSION,
        id,
        message,
    })
}

/// Decodes one server message (used by [`crate::Client`]).
///
/// # Errors
/// When the payload is not a server message of this protocol version.
pub fn decode_server_message(payload: &str) -> Result<ServerEnvelope, serde_json::Error> {
    serde_json::from_str(payload)
}

/// Whether `room` is an acceptable room id: 1 to [`MAX_ROOM_ID_LEN`] bytes of
/// `[A-Za-z0-9_.:-]`.
#[must_use]
pub fn is_valid_room_id(room: &str) -> bool {
    !room.is_empty()
        && room.len() <= MAX_ROOM_ID_LEN
        && room
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'))
}

/// The `type` values of [`ClientMessage`], in wire spelling.
const CLIENT_TYPES: &[&str] = &[
    "auth",
    "join",
    "leave",
    "offer",
    "answer",
    "candidate",
    "mute",
    "unmute",
    "screen_share_on",
    "screen_share_off",
    "ping",
];

fn validate(
    message: &ClientMessage,
    limits: &DecodeLimits,
) -> Result<(), (ErrorCode, &'static str)> {
    match message {
        ClientMessage::Offer { sdp } | ClientMessage::Answer { sdp }
            if sdp.0.len() > limits.max_sdp_size =>
        {
            Err((ErrorCode::SdpTooLarge, "sdp too large"))
        }
        ClientMessage::Join { room } if !is_valid_room_id(room) => {
            Err((ErrorCode::InvalidMessage, "invalid room id"))
        }
        ClientMessage::Candidate(c)
            if c.candidate.len() > MAX_CANDIDATE_LEN
                || c.sdp_mid
                    .as_ref()
                    .is_some_and(|m| m.len() > MAX_CANDIDATE_LEN) =>
        {
            Err((ErrorCode::InvalidMessage, "candidate too large"))
        }
        ClientMessage::Auth { token } if token.0.is_empty() => {
            Err((ErrorCode::InvalidMessage, "empty token"))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(s: &str) -> Result<ClientEnvelope, DecodeError> {
        decode_client_message(s.as_bytes(), &DecodeLimits::default())
    }

    #[test]
    fn decodes_every_client_type() {
        let cases: &[(&str, ClientMessage)] = &[
            (
                r#"{"v":1,"type":"auth","token":"abc"}"#,
                ClientMessage::Auth {
                    token: Token("abc".into()),
                },
            ),
            (
                r#"{"v":1,"type":"join","room":"r-1"}"#,
                ClientMessage::Join { room: "r-1".into() },
            ),
            (r#"{"v":1,"type":"leave"}"#, ClientMessage::Leave),
            (
                r#"{"v":1,"type":"offer","sdp":"v=0"}"#,
                ClientMessage::Offer {
                    sdp: Sdp("v=0".into()),
                },
            ),
            (
                r#"{"v":1,"type":"answer","sdp":"v=0"}"#,
                ClientMessage::Answer {
                    sdp: Sdp("v=0".into()),
                },
            ),
            (
                r#"{"v":1,"type":"candidate","candidate":"candidate:1 1 udp 1 1.2.3.4 5 typ host","sdpMid":"0","sdpMLineIndex":0}"#,
                ClientMessage::Candidate(IceCandidate {
                    candidate: "candidate:1 1 udp 1 1.2.3.4 5 typ host".into(),
                    sdp_mid: Some("0".into()),
                    sdp_m_line_index: Some(0),
                }),
            ),
            (
                r#"{"v":1,"type":"mute","track":"audio"}"#,
                ClientMessage::Mute {
                    track: Track::Audio,
                },
            ),
            (
                r#"{"v":1,"type":"unmute","track":"video"}"#,
                ClientMessage::Unmute {
                    track: Track::Video,
                },
            ),
            (
                r#"{"v":1,"type":"screen_share_on"}"#,
                ClientMessage::ScreenShareOn,
            ),
            (
                r#"{"v":1,"type":"screen_share_off"}"#,
                ClientMessage::ScreenShareOff,
            ),
            (r#"{"v":1,"type":"ping"}"#, ClientMessage::Ping),
        ];
        for (json, expected) in cases {
            let env = decode(json).unwrap_or_else(|e| panic!("{json}: {e}"));
            assert_eq!(&env.message, expected, "{json}");
            // Round trip through the encoder.
            let again = decode(&env.encode()).unwrap();
            assert_eq!(again, env);
        }
        assert_eq!(CLIENT_TYPES.len(), cases.len());
    }

    #[test]
    fn id_is_carried() {
        let env = decode(r#"{"v":1,"id":42,"type":"ping"}"#).unwrap();
        assert_eq!(env.id, Some(42));
    }

    #[test]
    fn error_codes_for_bad_input() {
        let cases: &[(&[u8], ErrorCode, Option<u64>)] = &[
            (b"\xff\xfe{}", ErrorCode::InvalidUtf8, None),
            (b"{not json", ErrorCode::MalformedJson, None),
            (b"", ErrorCode::MalformedJson, None),
            (b"[1,2]", ErrorCode::InvalidMessage, None),
            (
                br#"{"v":1,"id":-1,"type":"ping"}"#,
                ErrorCode::InvalidMessage,
                None,
            ),
            (
                br#"{"id":3,"type":"ping"}"#,
                ErrorCode::UnsupportedVersion,
                Some(3),
            ),
            (
                br#"{"v":2,"type":"ping"}"#,
                ErrorCode::UnsupportedVersion,
                None,
            ),
            (
                br#"{"v":1,"id":4,"type":"teleport"}"#,
                ErrorCode::UnknownType,
                Some(4),
            ),
            (br#"{"v":1,"type":7}"#, ErrorCode::InvalidMessage, None),
            (
                br#"{"v":1,"type":"offer"}"#,
                ErrorCode::InvalidMessage,
                None,
            ),
            (
                br#"{"v":1,"type":"offer","sdp":5}"#,
                ErrorCode::InvalidMessage,
                None,
            ),
            (
                br#"{"v":1,"type":"mute","track":"smell"}"#,
                ErrorCode::InvalidMessage,
                None,
            ),
            (
                br#"{"v":1,"type":"join","room":""}"#,
                ErrorCode::InvalidMessage,
                None,
            ),
            (
                br#"{"v":1,"type":"join","room":"a b"}"#,
                ErrorCode::InvalidMessage,
                None,
            ),
            (
                br#"{"v":1,"type":"auth","token":""}"#,
                ErrorCode::InvalidMessage,
                None,
            ),
        ];
        for (input, code, id) in cases {
            let err = decode_client_message(input, &DecodeLimits::default()).unwrap_err();
            assert_eq!(err.code, *code, "{}", String::from_utf8_lossy(input));
            assert_eq!(err.id, *id, "{}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn size_limits() {
        let limits = DecodeLimits {
            max_message_size: 200,
            max_sdp_size: 10,
        };
        let big = format!(r#"{{"v":1,"type":"offer","sdp":"{}"}}"#, "a".repeat(300));
        assert_eq!(
            decode_client_message(big.as_bytes(), &limits)
                .unwrap_err()
                .code,
            ErrorCode::MessageTooLarge
        );
        let sdp = r#"{"v":1,"id":1,"type":"offer","sdp":"0123456789A"}"#;
        let err = decode_client_message(sdp.as_bytes(), &limits).unwrap_err();
        assert_eq!((err.code, err.id), (ErrorCode::SdpTooLarge, Some(1)));
        let ok = r#"{"v":1,"type":"offer","sdp":"0123456789"}"#;
        assert!(decode_client_message(ok.as_bytes(), &limits).is_ok());
    }

    #[test]
    fn secrets_are_redacted_in_debug() {
        let m = ClientMessage::Auth {
            token: Token("secret-token".into()),
        };
        assert!(!format!("{m:?}").contains("secret-token"));
        let m = ClientMessage::Offer {
            sdp: Sdp("a=ice-pwd:hunter2".into()),
        };
        assert!(!format!("{m:?}").contains("hunter2"));
    }

    #[test]
    fn server_messages_round_trip() {
        let msgs = [
            ServerMessage::Authenticated {
                user_id: "u".into(),
                session_id: "s".into(),
                rooms: vec!["r".into()],
            },
            ServerMessage::Joined {
                room: "r".into(),
                participants: vec!["a".into()],
            },
            ServerMessage::Answer {
                sdp: Sdp("v=0".into()),
            },
            ServerMessage::ParticipantMuted {
                room: "r".into(),
                user_id: "a".into(),
                track: Track::Audio,
                muted: true,
            },
            ServerMessage::SessionRevoked,
            ServerMessage::Error {
                code: ErrorCode::RoomFull,
                message: "full".into(),
            },
        ];
        for m in msgs {
            let env = ServerEnvelope::new(Some(9), m);
            assert_eq!(decode_server_message(&env.encode()).unwrap(), env);
        }
        let unknown = r#"{"v":1,"type":"error","code":"from_the_future","message":""}"#;
        let env = decode_server_message(unknown).unwrap();
        assert!(matches!(
            env.message,
            ServerMessage::Error {
                code: ErrorCode::Unknown,
                ..
            }
        ));
    }
}
