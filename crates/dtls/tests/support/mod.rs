//! Shared by the integration tests that hand-make DTLS input: the wire framing, and the
//! handshake message bodies a spoofer can forge. Each test crate uses a part of it.
#![allow(dead_code)]

pub mod forge;
pub mod wire;
