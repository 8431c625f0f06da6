//! Negotiation as independent clients do it, on the virtual clock: `addTrack` reusing a
//! forwarded transceiver, payload types numbered per receiver, and tracks coming and going
//! for a long time without the description growing.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::Duration;

use callsec_dtls::CipherSuite;
use callsec_rtc::sdp::Kind;
use callsec_server::sim::SimCall;
use callsec_srtp::ProtectionProfile;

const STEP: Duration = Duration::from_millis(10);

fn call(n: usize, seed: u64) -> SimCall {
    SimCall::connected(
        n,
        ProtectionProfile::AeadAes128Gcm,
        CipherSuite::EcdheEcdsaAes128GcmSha256,
        seed,
    )
}

/// Participant `i` sends `count` video packets with `ssrc`, and they are delivered.
fn send_video(call: &mut SimCall, i: usize, ssrc: u32, first_seq: u16, count: u16) {
    let own = call.clients[i].video_ssrc;
    call.clients[i].video_ssrc = ssrc;
    for seq in first_seq..first_seq + count {
        let pkt = call.clients[i].video_packet(seq, 200);
        call.send_from(i, pkt);
    }
    call.clients[i].video_ssrc = own;
    call.step(STEP);
}

fn received(call: &SimCall, i: usize, ssrc: u32) -> Vec<u8> {
    call.clients[i]
        .received
        .iter()
        .filter(|(s, _)| *s == ssrc)
        .map(|(_, pt)| *pt)
        .collect()
}

#[test]
fn add_track_on_a_forwarded_transceiver_publishes_and_forwarding_goes_on() {
    let mut call = call(2, 11);
    assert_eq!(call.receivers_of(0x1000), 1, "{call:?}");
    // Participant 1 calls addTrack: W3C reuses the transceiver that receives 0's video.
    let mid = call.clients[1]
        .media
        .add_track_reusing(Kind::Video, 0x7777)
        .expect("a forwarded video section to reuse");
    let (conn, now) = (call.clients[1].conn, call.now);
    let offer = call.clients[1].media.create_offer();
    let answer = call.sfu.offer(now, conn, &offer).unwrap();
    let section = answer
        .split("m=")
        .find(|m| m.contains(&format!("a=mid:{mid}\r\n")))
        .unwrap();
    assert!(section.contains("a=sendrecv\r\n"), "{section}");
    assert!(
        section.contains("a=ssrc:4096 "),
        "0's video still goes out here: {section}"
    );
    call.clients[1].media.accept_answer(&answer).unwrap();
    // The room gets it like any publication: participant 0 is offered it and receives it.
    assert!(
        call.run_until(STEP, 300, |c| c.receivers_of(0x7777) == 1),
        "{call:?}"
    );
    send_video(&mut call, 1, 0x7777, 1, 10);
    send_video(&mut call, 0, 0x1000, 1, 10);
    assert_eq!(received(&call, 0, 0x7777).len(), 10, "{call:?}");
    assert_eq!(
        received(&call, 1, 0x1000).len(),
        10,
        "forwarding on the reused section goes on"
    );

    // removeTrack: the publication stops (0's section for it ends), forwarding goes on.
    call.clients[1].media.remove_track(0x7777);
    call.renegotiate(1).unwrap();
    assert!(call.run_until(STEP, 300, |c| c.receivers_of(0x7777) == 0));
    send_video(&mut call, 0, 0x1000, 11, 5);
    assert_eq!(received(&call, 1, 0x1000).len(), 15);
    // addTrack again on the same transceiver (it never stopped receiving).
    call.clients[1].media.remove_track(0x7777);
    let again = call.clients[1].media.add_track_reusing(Kind::Video, 0x7778);
    assert_eq!(again.as_deref(), Some(mid.as_str()));
    call.renegotiate(1).unwrap();
    assert!(call.run_until(STEP, 300, |c| c.receivers_of(0x7778) == 1));

    // Participant 0 leaves: what 1 publishes on the reused section goes on (the server's
    // side says recvonly from then on) instead of the m-line going to port 0.
    call.leave(0);
    assert!(call.run_until(STEP, 300, |c| {
        c.clients[0]
            .media
            .sections()
            .iter()
            .any(|s| s.mid == mid && s.recv_ssrc.is_none())
    }));
    let section = call.clients[0]
        .media
        .sections()
        .iter()
        .find(|s| s.mid == mid)
        .unwrap();
    assert!(
        !section.stopped && section.send_ssrc == Some(0x7778),
        "{section:?}"
    );
}

#[test]
fn each_receiver_gets_its_own_payload_type_numbers() {
    let mut call = SimCall::connected_with(
        3,
        ProtectionProfile::AeadAes128Gcm,
        CipherSuite::EcdheEcdsaAes128GcmSha256,
        12,
        |i, client| {
            if i == 1 {
                client.set_payload_types(109, 120);
            }
        },
    );
    assert_eq!(call.receivers_of(0x1000), 2, "{call:?}");
    send_video(&mut call, 0, 0x1000, 1, 5);
    assert_eq!(
        received(&call, 1, 0x1000),
        vec![120; 5],
        "receiver 1 numbers VP8 120"
    );
    assert_eq!(
        received(&call, 2, 0x1000),
        vec![96; 5],
        "receiver 2 uses the server's 96"
    );
    // And from the participant that numbers VP8 120 to one that uses 96.
    send_video(&mut call, 1, 0x1001, 1, 5);
    assert_eq!(received(&call, 0, 0x1001), vec![96; 5]);
}

#[test]
fn fifty_share_cycles_after_a_leave_keep_the_description_bounded() {
    let mut call = call(3, 13);
    assert_eq!(call.receivers_of(0x1000), 2, "{call:?}");
    // Someone leaves first: every later server offer carries its port-0 sections.
    call.leave(2);
    assert!(call.run_until(STEP, 300, |c| c.receivers_of(0x1002) == 0));
    for cycle in 0..50u32 {
        let ssrc = 0x5000 + cycle;
        call.clients[0].media.add_track(Kind::Video, ssrc);
        call.renegotiate(0).unwrap();
        assert!(
            call.run_until(STEP, 300, |c| c.receivers_of(ssrc) == 1),
            "cycle {cycle}: {call:?}"
        );
        send_video(&mut call, 0, ssrc, 1, 2);
        assert_eq!(received(&call, 1, ssrc).len(), 2, "cycle {cycle}");
        call.clients[0].media.remove_track(ssrc);
        call.renegotiate(0).unwrap();
        assert!(
            call.run_until(STEP, 300, |c| c.receivers_of(ssrc) == 0),
            "cycle {cycle}"
        );
        let lines = call.clients[1].media.sections().len();
        assert!(
            lines <= 5,
            "cycle {cycle}: participant 1 has {lines} m-lines"
        );
    }
    // Forwarding of the first track went on throughout.
    send_video(&mut call, 0, 0x1000, 1, 3);
    assert_eq!(received(&call, 1, 0x1000).len(), 3);
}
