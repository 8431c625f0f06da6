//! Renegotiation glare on the virtual clock: the server's offer to a participant is still
//! out when that participant sends its own. The server yields (drops its offer, answers),
//! then offers again, and both new tracks end up forwarded.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::Duration;

use callsec_dtls::CipherSuite;
use callsec_rtc::sdp::Kind;
use callsec_server::sfu::Signal;
use callsec_server::sim::{QueueOutput, SimCall};
use callsec_srtp::ProtectionProfile;

#[test]
fn server_yields_on_glare_and_offers_again() {
    let mut call = SimCall::connected(
        2,
        ProtectionProfile::AeadAes128Gcm,
        CipherSuite::EcdheEcdsaAes128GcmSha256,
        5,
    );
    let (c0, c1) = (call.clients[0].conn, call.clients[1].conn);
    let now = call.now;
    // Participant 0 starts a screen share.
    call.clients[0].media.add_track(Kind::Video, 0x5c0);
    let offer = call.clients[0].media.create_offer();
    let answer = call.sfu.offer(now, c0, &offer).unwrap();
    call.clients[0].media.accept_answer(&answer).unwrap();
    // The server's offer to participant 1 goes out (after the answer-first delay)...
    let mut out = QueueOutput::default();
    call.sfu
        .handle_timeout(now + Duration::from_millis(100), &mut out);
    let server_offer = std::iter::from_fn(|| call.sfu.poll_signal())
        .find(|s| matches!(s, Signal::Offer { conn, .. } if *conn == c1));
    assert!(
        server_offer.is_some(),
        "the server offered participant 1 the screen share"
    );
    // ...but participant 1 offers its own screen share at the same time and ignores it.
    call.clients[1].media.add_track(Kind::Video, 0x5c1);
    let offer = call.clients[1].media.create_offer();
    let answer = call
        .sfu
        .offer(now + Duration::from_millis(100), c1, &offer)
        .unwrap();
    call.clients[1].media.accept_answer(&answer).unwrap();
    // From here the normal exchange runs; both shares get forwarded.
    for _ in 0..400 {
        call.step(Duration::from_millis(10));
        if call.receivers_of(0x5c0) == 1 && call.receivers_of(0x5c1) == 1 {
            break;
        }
    }
    assert_eq!(
        call.receivers_of(0x5c0),
        1,
        "participant 1 gets 0's share: {call:?}"
    );
    assert_eq!(call.receivers_of(0x5c1), 1, "participant 0 gets 1's share");
}
