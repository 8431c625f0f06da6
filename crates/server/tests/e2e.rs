//! End to end over loopback UDP against the real server (`callsec_server::start`, the same
//! code `callsec serve` runs), with participants built from callsec's own crates: signaling
//! client over TLS with a token, ICE checks, DTLS client, SRTP. Payload bytes are checked
//! after decryption.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::time::{Duration, Instant};

use callsec_dtls::CipherSuite;
use callsec_rtc::rtcp;
use callsec_rtc::sdp::Kind;
use callsec_srtp::ProtectionProfile;
use common::{Cmd, Participant, metric, send_rtcp, sender_report, server, wait_until};

const SECS: Duration = Duration::from_secs(1);

async fn three_party_call(profile: ProtectionProfile, suite: CipherSuite) {
    let running = server(&[profile], &[suite], |_| {}).await;
    let a = Participant::join(
        &running,
        "alice",
        "r1",
        &[(Kind::Audio, 0xa1), (Kind::Video, 0xa2)],
        1,
    )
    .await;
    let b = Participant::join(
        &running,
        "bob",
        "r1",
        &[(Kind::Audio, 0xb1), (Kind::Video, 0xb2)],
        2,
    )
    .await;
    let c = Participant::join(
        &running,
        "carol",
        "r1",
        &[(Kind::Audio, 0xc1), (Kind::Video, 0xc2)],
        3,
    )
    .await;
    let all = [(&a, [0xa1, 0xa2]), (&b, [0xb1, 0xb2]), (&c, [0xc1, 0xc2])];
    let everyone_hears_everyone = || {
        all.iter().all(|(p, _)| {
            all.iter()
                .filter(|(q, _)| q.name != p.name)
                .all(|(_, ssrcs)| ssrcs.iter().all(|s| p.received(*s) >= 20))
        })
    };
    let ok = wait_until(15 * SECS, everyone_hears_everyone).await;
    let report: Vec<String> = all
        .iter()
        .map(|(p, _)| {
            format!(
                "{}: connected {} {:?}",
                p.name,
                p.connected(),
                p.seen(|s| format!("{s:?}"))
            )
        })
        .collect();
    assert!(
        ok,
        "{profile:?} {suite:?}: {report:#?}\n{}",
        running.metrics.encode()
    );
    for (p, own) in &all {
        p.seen(|s| {
            assert_eq!(s.corrupt, 0, "{}: payload intact", p.name);
            for ssrc in own {
                assert_eq!(
                    s.rtp.get(ssrc),
                    None,
                    "{} never gets its own stream",
                    p.name
                );
            }
        });
        // The server reports on what it receives (RR) and invites bitrate up (REMB).
        assert!(
            wait_until(3 * SECS, || p.seen(|s| s.rr > 0 && s.remb > 0)).await,
            "{}",
            p.name
        );
    }
    assert_eq!(metric(&running, "srtp_auth_failures_total"), 0.0);
    assert!(metric(&running, "dtls_handshakes_completed_total") >= 3.0);
    assert!(metric(&running, "rtp_forwarded_total") > 100.0);
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_participants_gcm_profile_gcm_suite() {
    three_party_call(
        ProtectionProfile::AeadAes128Gcm,
        CipherSuite::EcdheEcdsaAes128GcmSha256,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_participants_cm_profile_cbc_suite() {
    three_party_call(
        ProtectionProfile::Aes128CmHmacSha1_80,
        CipherSuite::EcdheEcdsaAes256CbcSha,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_participants_gcm_profile_cbc_suite() {
    three_party_call(
        ProtectionProfile::AeadAes128Gcm,
        CipherSuite::EcdheEcdsaAes256CbcSha,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_participants_cm_profile_gcm_suite() {
    three_party_call(
        ProtectionProfile::Aes128CmHmacSha1_80,
        CipherSuite::EcdheEcdsaAes128GcmSha256,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pli_reaches_the_sender_nack_is_answered_and_sr_is_forwarded() {
    let running = server(&ProtectionProfile::ALL, &CipherSuite::ALL, |_| {}).await;
    let a = Participant::join(&running, "alice", "r2", &[(Kind::Video, 0xa2)], 11).await;
    let b = Participant::join(&running, "bob", "r2", &[(Kind::Audio, 0xb1)], 12).await;
    assert!(wait_until(10 * SECS, || b.received(0xa2) >= 10).await);

    // PLI from bob for alice's video reaches alice.
    let mut pli = [0u8; 12];
    rtcp::write_pli(&mut pli, 0xb1, 0xa2).unwrap();
    send_rtcp(&b, &pli);
    assert!(
        wait_until(2 * SECS, || a.seen(|s| s.plis >= 1)).await,
        "PLI reached the sender"
    );

    // Bob "loses" the next two packets of alice's video, NACKs them and gets them again
    // from the server's retransmission cache.
    let next = {
        let s = a.state.lock().unwrap();
        s.sending[&0xa2].1
    };
    let lost = [next.wrapping_add(5), next.wrapping_add(6)];
    b.state
        .lock()
        .unwrap()
        .drop_once
        .extend(lost.map(|s| (0xa2u32, s)));
    assert!(
        wait_until(3 * SECS, || {
            let s = b.state.lock().unwrap();
            s.drop_once.is_empty() && s.accepted[&0xa2].contains(&lost[1].wrapping_add(2))
        })
        .await
    );
    let got_before = b.state.lock().unwrap().accepted[&0xa2].clone();
    assert!(!got_before.contains(&lost[0]) && !got_before.contains(&lost[1]));
    let mut nack = [0u8; 64];
    let n = rtcp::write_nack(&mut nack, 0xb1, 0xa2, &lost).unwrap();
    send_rtcp(&b, &nack[..n]);
    assert!(
        wait_until(2 * SECS, || {
            let s = b.state.lock().unwrap();
            s.accepted[&0xa2].contains(&lost[0]) && s.accepted[&0xa2].contains(&lost[1])
        })
        .await,
        "the NACKed packets arrived"
    );
    assert!(metric(&running, "nack_retransmissions_total") >= 2.0);
    assert_eq!(
        a.seen(|s| s.nacks),
        0,
        "answered from the cache, not passed on"
    );

    // Alice's sender report reaches bob (lip sync).
    send_rtcp(&a, &sender_report(0xa2));
    assert!(
        wait_until(2 * SECS, || b.seen(|s| s.sr >= 1)).await,
        "SR forwarded"
    );
    assert_eq!(b.seen(|s| s.corrupt), 0);
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn screen_share_starts_and_stops_mid_call() {
    let running = server(&ProtectionProfile::ALL, &CipherSuite::ALL, |_| {}).await;
    let a = Participant::join(&running, "alice", "r3", &[(Kind::Audio, 0xa1)], 21).await;
    let b = Participant::join(&running, "bob", "r3", &[(Kind::Audio, 0xb1)], 22).await;
    assert!(
        wait_until(10 * SECS, || b.received(0xa1) >= 10
            && a.received(0xb1) >= 10)
        .await
    );
    // Alice starts a screen share: her offer adds a video track; bob gets a server offer.
    a.commands.send(Cmd::Publish(Kind::Video, 0x5c)).unwrap();
    assert!(
        wait_until(5 * SECS, || b.received(0x5c) >= 10).await,
        "bob receives the screen share: {:?}",
        b.seen(|s| format!("{s:?}"))
    );
    // And stops it: bob's forwarded section ends (port 0) and packets stop.
    a.commands.send(Cmd::Unpublish(0x5c)).unwrap();
    assert!(
        wait_until(5 * SECS, || {
            b.state
                .lock()
                .unwrap()
                .media
                .sections()
                .iter()
                .any(|s| s.recv_ssrc == Some(0x5c) && s.stopped)
        })
        .await,
        "bob's screen-share section ended"
    );
    let count = b.received(0x5c);
    tokio::time::sleep(SECS / 2).await;
    assert_eq!(b.received(0x5c), count);
    assert!(b.received(0xa1) > 10, "audio continues");
    running.shutdown().await;
}

/// Time from `cut` until `p` stopped getting `ssrc` (last packet seen after it).
fn stopped_within(p: &Participant, ssrc: u32, cut: Instant) -> Duration {
    p.seen(|s| {
        s.last_rtp
            .get(&ssrc)
            .map_or(Duration::ZERO, |t| t.saturating_duration_since(cut))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_and_leave_cut_media_within_a_second() {
    let running = server(&ProtectionProfile::ALL, &CipherSuite::ALL, |_| {}).await;
    let a = Participant::join(&running, "alice", "r4", &[(Kind::Audio, 0xa1)], 31).await;
    let b = Participant::join(&running, "bob", "r4", &[(Kind::Audio, 0xb1)], 32).await;
    let c = Participant::join(&running, "carol", "r4", &[(Kind::Audio, 0xc1)], 33).await;
    assert!(
        wait_until(10 * SECS, || {
            a.received(0xb1) >= 10 && a.received(0xc1) >= 10 && b.received(0xa1) >= 10
        })
        .await
    );
    // Revoke bob's session.
    let cut = Instant::now();
    running
        .signaling
        .revoke_session(&b.session_id)
        .await
        .unwrap();
    tokio::time::sleep(SECS + SECS / 2).await;
    assert!(
        stopped_within(&a, 0xb1, cut) < SECS,
        "bob's media reached alice after revocation"
    );
    assert!(
        stopped_within(&b, 0xa1, cut) < SECS,
        "alice's media reached bob after revocation"
    );
    assert!(
        b.state.lock().unwrap().closed.is_some(),
        "bob's signaling closed"
    );
    // Bob cannot come back with the same token's session.
    let again = callsec_signaling::Client::connect(&callsec_signaling::ClientConfig::new(
        running.signaling_addr,
        callsec_signaling::ClientTls::Trust(vec![running.signaling_certificate().unwrap().into()]),
        Some(b.token.clone()),
    ))
    .await;
    // Refused for the revocation itself (4012), not for some other failure.
    assert!(
        matches!(
            again,
            Err(callsec_signaling::ClientError::Closed { code: 4012, .. })
        ),
        "{:?}",
        again.map(|(_, hello)| hello)
    );

    // Carol leaves.
    let cut = Instant::now();
    c.commands.send(Cmd::Leave).unwrap();
    tokio::time::sleep(SECS + SECS / 2).await;
    assert!(
        stopped_within(&a, 0xc1, cut) < SECS,
        "carol's media reached alice after leaving"
    );
    let before = a.received(0xc1);
    tokio::time::sleep(SECS / 2).await;
    assert_eq!(a.received(0xc1), before);
    // Alice is unaffected and the server freed the others' state.
    assert!(a.connected());
    assert!(wait_until(2 * SECS, || metric(&running, "participants") == 1.0).await);
    // Shutdown (what SIGTERM does) sends alice close_notify.
    running.shutdown().await;
    assert!(
        wait_until(SECS, || a
            .state
            .lock()
            .unwrap()
            .media
            .dtls()
            .is_some_and(|d| d.is_closed()))
        .await,
        "close_notify reached alice"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn participants_that_never_connect_are_bounded_and_cleaned_up() {
    // Ten that join and offer through signaling but never send a check or a ClientHello.
    let running = server(&ProtectionProfile::ALL, &CipherSuite::ALL, |s| {
        s.connect_timeout = Duration::from_secs(2);
    })
    .await;
    let mut sigs = Vec::new();
    for i in 0..10 {
        sigs.push(common::offer_only(&running, &format!("ghost{i}"), "r6", 0x900 + i).await);
    }
    assert_eq!(metric(&running, "participants"), 10.0);
    assert!(
        wait_until(4 * SECS, || metric(&running, "participants") == 0.0).await,
        "ghosts dropped after the connect deadline"
    );
    assert!(metric(&running, "dtls_handshakes_failed_total") >= 10.0);
    drop(sigs);
    running.shutdown().await;
}

/// An offer the server cannot honour (no BUNDLE group, or an m-line without rtcp-mux) is
/// refused with a signaling error that says why, not answered as if it were bundled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offers_without_bundle_or_rtcp_mux_are_refused_with_a_clear_error() {
    use callsec_signaling::{ClientMessage, ErrorCode, Sdp, ServerMessage};
    let running = server(
        &[ProtectionProfile::AeadAes128Gcm],
        &CipherSuite::ALL,
        |_| {},
    )
    .await;
    let mut sig = common::signaling(&running, "dave", "nobundle").await;
    let mut rng = <rand_chacha::ChaCha20Rng as rand_core::SeedableRng>::seed_from_u64(5);
    let dtls = std::sync::Arc::new(callsec_dtls::Config::new(
        callsec_dtls::Certificate::generate(&mut rng),
    ));
    let mut media = callsec_rtc::client::Client::new(dtls, [5; 32]);
    media.add_track(Kind::Audio, 0xd1);
    media.add_track(Kind::Video, 0xd2);
    let offer = media.create_offer();
    let group = offer
        .lines()
        .find(|l| l.starts_with("a=group:BUNDLE"))
        .unwrap()
        .to_owned();
    let no_bundle = offer.replace(&format!("{group}\r\n"), "");
    let no_mux = offer.replacen("a=rtcp-mux\r\n", "", 1);
    for (sdp, why) in [(no_bundle, "BUNDLE"), (no_mux, "rtcp-mux")] {
        let reply = sig
            .request(ClientMessage::Offer { sdp: Sdp(sdp) })
            .await
            .unwrap();
        assert!(
            matches!(&reply, ServerMessage::Error { code: ErrorCode::Rejected, message }
                if message.contains(why)),
            "{reply:?}"
        );
    }
    // The participant is still there and may offer properly.
    let reply = sig
        .request(ClientMessage::Offer { sdp: Sdp(offer) })
        .await
        .unwrap();
    assert!(matches!(reply, ServerMessage::Answer { .. }), "{reply:?}");
    running.shutdown().await;
}
