//! ICE-lite for a WebRTC server: the STUN codec (RFC 8489), the binding responder an ICE-lite
//! agent is (RFC 8445 §2.5, RFC 7675 consent freshness), and the first-byte demultiplexing of
//! one UDP port between STUN, DTLS and SRTP (RFC 7983 §7).
//!
//! Sans-IO: datagrams and `Instant`s in; responses, events and deadlines out.
#![forbid(unsafe_code)]

mod agent;
pub mod candidates;
mod demux;
pub mod stun;

pub use agent::{
    CONSENT_TIMEOUT, Credentials, Event, Handled, IceLite, Transmit, binding_request, local_ufrag,
};
pub use candidates::{Limits, RouteChange};
pub use demux::{PacketKind, classify, is_rtcp};
pub use stun::Error;
