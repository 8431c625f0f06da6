//! A participant on the `webrtc` crate (webrtc-rs): a whole independent stack with its own
//! SDP, ICE agent, DTLS and SRTP. It joins a room through our signaling, answers the
//! server's renegotiation offer, and exchanges media both ways with a callsec participant.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use callsec_dtls::CipherSuite;
use callsec_rtc::sdp::{Kind, Local, Remote, Section, Session};
use callsec_signaling::{
    Client, ClientConfig, ClientMessage, ClientTls, Incoming, Sdp, ServerMessage,
};
use callsec_srtp::ProtectionProfile;
use common::{Participant, payload, server, wait_until};
use rustls_pki_types::CertificateDer;
use webrtc::api::APIBuilder;
use webrtc::api::interceptor_registry::register_default_interceptors;
use webrtc::api::media_engine::{MIME_TYPE_OPUS, MIME_TYPE_VP8, MediaEngine};
use webrtc::api::setting_engine::SettingEngine;
use webrtc::ice::network_type::NetworkType;
use webrtc::interceptor::registry::Registry;
use webrtc::peer_connection::configuration::RTCConfiguration;
use webrtc::peer_connection::sdp::session_description::RTCSessionDescription;
use webrtc::rtp_transceiver::rtp_codec::RTCRtpCodecCapability;
use webrtc::track::track_local::TrackLocalWriter;
use webrtc::track::track_local::track_local_static_rtp::TrackLocalStaticRTP;

const SECS: Duration = Duration::from_secs(1);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webrtc_rs_participant_exchanges_media_both_ways() {
    for profile in ProtectionProfile::ALL {
        run(profile, None).await;
    }
}

/// A call of six idle timeouts (1 s here) in which nobody sends an app message: the server's
/// WebSocket pings (answered by tungstenite under our signaling client) and webrtc-rs's
/// SRTP keep it open, and media flows to the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webrtc_rs_call_outlives_the_signaling_idle_timeout() {
    run(ProtectionProfile::AeadAes128Gcm, Some(SECS)).await;
}

async fn run(profile: ProtectionProfile, idle: Option<Duration>) {
    let running = server(&[profile], &CipherSuite::ALL, |s| {
        if let Some(idle) = idle {
            s.idle_timeout = idle;
            s.ping_interval = idle / 3;
        }
    })
    .await;
    let ours = Participant::join(
        &running,
        "alice",
        "rw",
        &[(Kind::Audio, 0xa1), (Kind::Video, 0xa2)],
        51,
    )
    .await;

    // The webrtc-rs peer: default codecs and interceptors (NACK, RTCP reports, TWCC).
    let mut media = MediaEngine::default();
    media.register_default_codecs().unwrap();
    let registry = register_default_interceptors(Registry::new(), &mut media).unwrap();
    let mut settings = SettingEngine::default();
    settings.set_include_loopback_candidate(true);
    settings.set_network_types(vec![NetworkType::Udp4]);
    settings.set_ip_filter(Box::new(|ip| ip.is_loopback()));
    let api = APIBuilder::new()
        .with_media_engine(media)
        .with_interceptor_registry(registry)
        .with_setting_engine(settings)
        .build();
    let pc = Arc::new(
        api.new_peer_connection(RTCConfiguration::default())
            .await
            .unwrap(),
    );
    let audio = Arc::new(TrackLocalStaticRTP::new(
        RTCRtpCodecCapability {
            mime_type: MIME_TYPE_OPUS.into(),
            clock_rate: 48000,
            channels: 2,
            ..Default::default()
        },
        "audio".into(),
        "webrtc-rs".into(),
    ));
    let video = Arc::new(TrackLocalStaticRTP::new(
        RTCRtpCodecCapability {
            mime_type: MIME_TYPE_VP8.into(),
            clock_rate: 90000,
            ..Default::default()
        },
        "video".into(),
        "webrtc-rs".into(),
    ));
    pc.add_track(audio.clone()).await.unwrap();
    pc.add_track(video.clone()).await.unwrap();

    // What webrtc-rs receives from alice, payload checked.
    let received = Arc::new(AtomicU64::new(0));
    let corrupt = Arc::new(AtomicU64::new(0));
    {
        let (received, corrupt) = (received.clone(), corrupt.clone());
        pc.on_track(Box::new(move |track, _, _| {
            let (received, corrupt) = (received.clone(), corrupt.clone());
            Box::pin(async move {
                while let Ok((pkt, _)) = track.read_rtp().await {
                    let want = payload(
                        pkt.header.ssrc,
                        pkt.header.sequence_number,
                        pkt.payload.len(),
                    );
                    if pkt.payload[..] == want[..] {
                        received.fetch_add(1, Ordering::Relaxed);
                    } else {
                        corrupt.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        }));
    }

    // Signaling: join, offer (after gathering), answer.
    let token = running
        .dev
        .as_ref()
        .unwrap()
        .issue("webrtc-rs", "rw")
        .unwrap();
    let cert = CertificateDer::from(running.signaling_certificate().unwrap());
    let config = ClientConfig::new(
        running.signaling_addr,
        ClientTls::Trust(vec![cert]),
        Some(token.token),
    );
    let (mut sig, _) = Client::connect(&config).await.unwrap();
    sig.request(ClientMessage::Join { room: "rw".into() })
        .await
        .unwrap();
    let offer = pc.create_offer(None).await.unwrap();
    let mut gathered = pc.gathering_complete_promise().await;
    pc.set_local_description(offer).await.unwrap();
    let _ = gathered.recv().await;
    let offer = pc.local_description().await.unwrap().sdp;
    // The SSRCs webrtc-rs will send with, from its own offer.
    let their_ssrcs: Vec<u32> = Remote::parse(&offer)
        .unwrap()
        .media
        .iter()
        .filter_map(|m| m.ssrcs.first().copied())
        .collect();
    assert_eq!(their_ssrcs.len(), 2, "{offer}");
    let reply = sig
        .request(ClientMessage::Offer { sdp: Sdp(offer) })
        .await
        .unwrap();
    let ServerMessage::Answer { sdp } = reply else {
        panic!("{reply:?}")
    };
    pc.set_remote_description(RTCSessionDescription::answer(sdp.0).unwrap())
        .await
        .unwrap();

    // Answer the server's offers (alice's tracks) as they come.
    let pc2 = pc.clone();
    let signaling = tokio::spawn(async move {
        loop {
            match sig.recv().await {
                Ok(Incoming::Message(env)) => {
                    if std::env::var("CALLSEC_DEBUG").is_ok() {
                        eprintln!("webrtc-rs got {:?}", env.message);
                    }
                    if let ServerMessage::Offer { sdp } = env.message {
                        pc2.set_remote_description(RTCSessionDescription::offer(sdp.0).unwrap())
                            .await
                            .unwrap();
                        let answer = pc2.create_answer(None).await.unwrap();
                        pc2.set_local_description(answer).await.unwrap();
                        let answer = pc2.local_description().await.unwrap().sdp;
                        if std::env::var("CALLSEC_DEBUG").is_ok() {
                            eprintln!("webrtc-rs answers {answer}");
                        }
                        sig.send(ClientMessage::Answer { sdp: Sdp(answer) })
                            .await
                            .unwrap();
                    }
                }
                _ => return,
            }
        }
    });

    // webrtc-rs sends media with our payload pattern (its SSRCs, our sequence numbers).
    let writer = {
        let (audio, video, ssrcs) = (audio.clone(), video.clone(), their_ssrcs.clone());
        tokio::spawn(async move {
            for seq in 1..=2000u16 {
                for (track, ssrc, pt) in [(&audio, ssrcs[0], 111u8), (&video, ssrcs[1], 96u8)] {
                    let pkt = webrtc::rtp::packet::Packet {
                        header: webrtc::rtp::header::Header {
                            version: 2,
                            payload_type: pt,
                            sequence_number: seq,
                            timestamp: u32::from(seq) * 960,
                            ssrc,
                            ..Default::default()
                        },
                        payload: payload(ssrc, seq, 200).into(),
                    };
                    let _ = track.write_rtp(&pkt).await;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };

    let both_ways = wait_until(20 * SECS, || {
        their_ssrcs.iter().all(|s| ours.received(*s) >= 20)
            && received.load(Ordering::Relaxed) >= 40
    })
    .await;
    assert!(
        both_ways,
        "{profile:?}: alice got {:?}, webrtc-rs got {} (corrupt {}), pc {:?}\n{}",
        ours.seen(|s| format!("{s:?}")),
        received.load(Ordering::Relaxed),
        corrupt.load(Ordering::Relaxed),
        pc.connection_state(),
        running.metrics.encode()
    );
    if let Some(idle) = idle {
        let start = std::time::Instant::now();
        while start.elapsed() < 6 * idle {
            let before = (
                received.load(Ordering::Relaxed),
                ours.received(their_ssrcs[0]),
            );
            tokio::time::sleep(idle / 2).await;
            let after = (
                received.load(Ordering::Relaxed),
                ours.received(their_ssrcs[0]),
            );
            assert!(
                after.0 > before.0 && after.1 > before.1,
                "media stopped after {:?}: {before:?} -> {after:?}",
                start.elapsed()
            );
            assert!(!signaling.is_finished(), "webrtc-rs's signaling closed");
            assert_eq!(ours.state.lock().unwrap().closed, None, "alice closed");
        }
        assert_eq!(common::metric(&running, "participants"), 2.0);
    }
    assert_eq!(ours.seen(|s| s.corrupt), 0);
    assert_eq!(corrupt.load(Ordering::Relaxed), 0);
    writer.abort();
    signaling.abort();
    let _ = pc.close().await;
    running.shutdown().await;
}

/// A webrtc-rs peer that offered one VP8 track, and the server's session that answered it.
async fn sdp_only_peer() -> (Arc<webrtc::peer_connection::RTCPeerConnection>, Session) {
    let mut media = MediaEngine::default();
    media.register_default_codecs().unwrap();
    let api = APIBuilder::new().with_media_engine(media).build();
    let pc = Arc::new(
        api.new_peer_connection(RTCConfiguration::default())
            .await
            .unwrap(),
    );
    pc.add_track(vp8_track("video")).await.unwrap();
    let offer = pc.create_offer(None).await.unwrap();
    pc.set_local_description(offer.clone()).await.unwrap();
    let mut rng = <rand_chacha::ChaCha20Rng as rand_core::SeedableRng>::seed_from_u64(9);
    let mut session = Session::new(Local {
        ice: callsec_rtc::random_credentials(&mut rng),
        fingerprint: callsec_dtls::Certificate::generate(&mut rng).fingerprint(),
        candidate: "127.0.0.1:4000".parse().unwrap(),
        session_id: 7,
    });
    let (answer, changes) = session
        .accept_offer(&Remote::parse(&offer.sdp).unwrap())
        .unwrap();
    assert_eq!(changes.started.len(), 1);
    pc.set_remote_description(RTCSessionDescription::answer(answer).unwrap())
        .await
        .unwrap();
    (pc, session)
}

fn vp8_track(id: &str) -> Arc<TrackLocalStaticRTP> {
    Arc::new(TrackLocalStaticRTP::new(
        RTCRtpCodecCapability {
            mime_type: MIME_TYPE_VP8.into(),
            clock_rate: 90000,
            ..Default::default()
        },
        id.into(),
        "webrtc-rs".into(),
    ))
}

/// The server offers `add`/`end`; webrtc-rs applies the offer and answers; the session
/// takes the answer. Returns webrtc-rs's answer.
async fn server_offer(
    pc: &webrtc::peer_connection::RTCPeerConnection,
    session: &mut Session,
    add: &[(Kind, u32, (u64, u32))],
    end: &[(u64, u32)],
) -> String {
    let offer = session.create_offer(add, end).unwrap();
    pc.set_remote_description(RTCSessionDescription::offer(offer.clone()).unwrap())
        .await
        .unwrap_or_else(|e| panic!("{e}\n{offer}"));
    let answer = pc.create_answer(None).await.unwrap();
    pc.set_local_description(answer.clone()).await.unwrap();
    session
        .accept_answer(&Remote::parse(&answer.sdp).unwrap())
        .unwrap_or_else(|e| panic!("{e}\n{}", answer.sdp));
    answer.sdp
}

/// webrtc-rs, as an independent SDP stack, applies every server offer of a long call in
/// which forwarded tracks come and go: ended sections (port 0, with ICE, DTLS and setup
/// attributes written) and sections recycled for new tracks with new mids (RFC 8829
/// §5.2.2). No media: descriptions only, against the server's [`Session`].
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webrtc_rs_applies_ended_and_recycled_sections() {
    let (pc, mut session) = sdp_only_peer().await;
    for cycle in 0..50u32 {
        let add = [(Kind::Video, 0x9000 + cycle, (7, cycle))];
        let end = [(7, cycle.wrapping_sub(1))];
        let answer = server_offer(&pc, &mut session, &add, &end).await;
        let live = session
            .sections()
            .iter()
            .filter_map(Section::forward)
            .filter(|f| f.active && f.negotiated)
            .count();
        assert_eq!(
            live, 1,
            "cycle {cycle}: webrtc-rs took the new track\n{answer}"
        );
        assert!(
            session.sections().len() <= 3,
            "cycle {cycle}: {} m-lines",
            session.sections().len()
        );
    }
    let _ = pc.close().await;
}
