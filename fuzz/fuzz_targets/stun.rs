//! Arbitrary datagrams into the STUN parser and the ICE-lite agent: no panic, and every
//! response the agent writes parses and verifies.
#![no_main]

use std::net::SocketAddr;
use std::time::Instant;

use callsec_ice::stun::{Message, attr};
use callsec_ice::{Credentials, IceLite};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Message::parse(data) {
        let _ = m.verify_fingerprint();
        let _ = m.verify_integrity(b"pwd");
        let _ = m.attribute(attr::USERNAME);
        for a in m.attributes() {
            let _ = a;
        }
    }
    let mut agent = IceLite::new(Credentials { ufrag: "u".into(), pwd: "pwd".into() });
    let from: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let _ = agent.handle_datagram(Instant::now(), from, data);
    while let Some(t) = agent.poll_transmit() {
        let m = Message::parse(&t.payload).unwrap();
        m.verify_fingerprint().unwrap();
        m.verify_integrity(b"pwd").unwrap();
    }
});
