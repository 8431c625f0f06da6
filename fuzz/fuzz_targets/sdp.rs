//! SDP from a participant: parsing, then offer/answer negotiation against a session.
#![no_main]

use callsec_rtc::sdp::{Local, Remote, Session};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(remote) = Remote::parse(text) else { return };
    let local = Local {
        ice: callsec_ice::Credentials { ufrag: "fuzz".into(), pwd: "fuzz-password-0123456789".into() },
        fingerprint: "sha-256 AA:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF"
            .parse()
            .expect("constant fingerprint"),
        candidate: "127.0.0.1:4000".parse().expect("constant address"),
        session_id: 1,
    };
    let mut session = Session::new(local);
    if let Ok((answer, _)) = session.accept_offer(&remote) {
        let _ = Remote::parse(&answer);
        let _ = session.create_offer(&[(callsec_rtc::sdp::Kind::Video, 7, (1, 0))], &[]);
        let _ = session.accept_answer(&remote);
    }
});
