use std::io::Cursor;

use sdp::description::session::SessionDescription;

use callsec_ice::Credentials;

use super::*;

pub(crate) const CHROME_OFFER: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
a=group:BUNDLE 0 1 2\r\na=msid-semantic: WMS s\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111 0\r\nc=IN IP4 0.0.0.0\r\na=rtcp:9 IN IP4 0.0.0.0\r\n\
a=ice-ufrag:AbCd\r\na=ice-pwd:0123456789abcdefghijkl\r\n\
a=fingerprint:sha-256 00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF\r\n\
a=setup:actpass\r\na=mid:0\r\na=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\n\
a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r\n\
a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid\r\na=sendrecv\r\na=msid:s a\r\na=rtcp-mux\r\n\
a=rtpmap:111 opus/48000/2\r\na=fmtp:111 minptime=10;useinbandfec=1\r\na=rtpmap:0 PCMU/8000\r\n\
a=ssrc:1111 cname:x\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 96 97\r\nc=IN IP4 0.0.0.0\r\n\
a=ice-ufrag:AbCd\r\na=ice-pwd:0123456789abcdefghijkl\r\n\
a=fingerprint:sha-256 00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF\r\n\
a=setup:actpass\r\na=mid:1\r\na=extmap:13 urn:3gpp:video-orientation\r\na=sendrecv\r\na=rtcp-mux\r\n\
a=rtpmap:96 VP8/90000\r\na=rtcp-fb:96 nack\r\na=rtpmap:97 rtx/90000\r\na=fmtp:97 apt=96\r\n\
a=ssrc-group:FID 2222 3333\r\na=ssrc:2222 cname:x\r\na=ssrc:3333 cname:x\r\n\
m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 0.0.0.0\r\na=mid:2\r\n\
a=sctp-port:5000\r\n";

fn local() -> Local {
    Local {
            ice: Credentials {
                ufrag: "srv1".into(),
                pwd: "server-password-0123456789".into(),
            },
            fingerprint: "sha-256 AA:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF"
                .parse()
                .unwrap(),
            candidate: "127.0.0.1:4000".parse().unwrap(),
            session_id: 42,
        }
}

#[test]
fn parses_a_browser_offer() {
    let r = Remote::parse(CHROME_OFFER).unwrap();
    assert_eq!(r.ice.ufrag, "AbCd");
    assert_eq!(r.setup, Setup::ActPass);
    assert_eq!(r.media.len(), 3);
    assert_eq!(r.media[0].kind, Some(Kind::Audio));
    assert_eq!(r.media[0].pt, Some(111));
    assert_eq!(r.media[0].ssrcs, vec![1111]);
    assert_eq!(r.media[0].extensions.get(1), Some(Extension::AudioLevel));
    assert_eq!(r.media[0].extensions.get(3), Some(Extension::TransportCc));
    assert_eq!(r.media[0].extensions.get(4), None, "sdes:mid is not ours");
    assert_eq!(r.media[1].pt, Some(96));
    assert_eq!(
        r.media[1].ssrcs,
        vec![2222],
        "the FID repair SSRC is left out"
    );
    assert_eq!(
        r.media[1].extensions.get(13),
        Some(Extension::VideoOrientation)
    );
    assert_eq!(r.media[2].kind, None);
}

#[test]
fn bundle_only_port_zero_is_a_live_section_not_a_stopped_one() {
    // Firefox's first offer: every bundled m-line after the first has port 0 and
    // `a=bundle-only` (RFC 8843 §6).
    let offer = CHROME_OFFER.replacen(
        "m=video 9 UDP/TLS/RTP/SAVPF 96 97\r\n",
        "m=video 0 UDP/TLS/RTP/SAVPF 96 97\r\na=bundle-only\r\n",
        1,
    );
    let r = Remote::parse(&offer).unwrap();
    assert!(!r.media[1].stopped);
    let mut s = Session::new(local());
    let (answer, changes) = s.accept_offer(&r).unwrap();
    assert_eq!(changes.started.len(), 2, "audio and video both publish");
    assert!(answer.contains("a=group:BUNDLE 0 1\r\n"), "{answer}");
    assert!(answer.contains("m=video 4000 "), "{answer}");
    // Without bundle-only, port 0 still stops the section.
    let stopped = CHROME_OFFER.replacen("m=video 9 ", "m=video 0 ", 1);
    assert!(Remote::parse(&stopped).unwrap().media[1].stopped);
}

#[test]
fn publish_answers_leave_transport_cc_out() {
    let mut s = Session::new(local());
    let (answer, _) = s
        .accept_offer(&Remote::parse(CHROME_OFFER).unwrap())
        .unwrap();
    assert!(answer.contains("urn:ietf:params:rtp-hdrext:ssrc-audio-level"));
    assert!(!answer.contains("transport-wide-cc"), "{answer}");
}

#[test]
fn offer_answer_round_trip() {
    let mut s = Session::new(local());
    let (answer, changes) = s
        .accept_offer(&Remote::parse(CHROME_OFFER).unwrap())
        .unwrap();
    assert_eq!(changes.started.len(), 2);
    assert!(answer.contains("a=ice-lite"));
    assert!(answer.contains("a=group:BUNDLE 0 1\r\n"));
    assert!(answer.contains("m=application 0 UDP/DTLS/SCTP webrtc-datachannel"));
    assert!(answer.contains("a=setup:passive"));
    assert!(answer.contains("a=recvonly"));
    // The answer parses back (as the browser would) with our credentials.
    let reparsed = SessionDescription::unmarshal(&mut Cursor::new(answer.as_bytes())).unwrap();
    assert_eq!(reparsed.media_descriptions.len(), 3);

    // The server offers a forwarded track; the participant answers.
    let offer = s
        .create_offer(&[(Kind::Video, 0x5555, (7, 1))], &[])
        .unwrap();
    assert!(offer.contains("a=sendonly"));
    assert!(offer.contains("a=setup:actpass"));
    assert!(offer.contains("a=ssrc:21845 msid:p7 p7-t1"));
    assert!(s.has_pending_offer());
    let answer_text = offer
        .replace("a=sendonly", "a=recvonly")
        .replace("a=ice-lite\r\n", "")
        .replace("srv1", "AbCd")
        .replace("server-password-0123456789", "0123456789abcdefghijkl")
        .replace("a=setup:actpass", "a=setup:active");
    s.accept_answer(&Remote::parse(&answer_text).unwrap())
        .unwrap();
    assert!(!s.has_pending_offer());
    assert!(matches!(&s.sections()[3], Section::Forward(f) if f.negotiated && f.active));
    // Ending it offers the m-line with port 0.
    let offer = s.create_offer(&[], &[(7, 1)]).unwrap();
    assert!(offer.contains("m=video 0 "));
    assert!(
        s.create_offer(&[], &[(7, 1)]).is_some(),
        "pending still differs"
    );
}

/// The forwarded sections the server offers after `offer`, with their extension ids.
fn forwarded_after(offer: &str) -> Vec<Forward> {
    let mut s = Session::new(local());
    s.accept_offer(&Remote::parse(offer).unwrap()).unwrap();
    let add = [(Kind::Audio, 9, (2, 0)), (Kind::Video, 10, (2, 1))];
    let text = s.create_offer(&add, &[]).unwrap();
    let forwards: Vec<Forward> = s
        .pending
        .clone()
        .unwrap()
        .into_iter()
        .filter_map(|x| match x {
            Section::Forward(f) => Some(f),
            _ => None,
        })
        .collect();
    for f in &forwards {
        for (id, e) in f.extensions.iter() {
            assert!(text.contains(&format!("a=extmap:{id} {}\r\n", e.uri())));
        }
    }
    forwards
}

#[test]
fn forwarded_extension_ids_never_remap_an_id_of_the_bundle() {
    // Chromium's ids: audio-level 1, video-orientation 13, as the server's own.
    let f = forwarded_after(CHROME_OFFER);
    assert_eq!(f[0].extensions.id_of(Extension::AudioLevel), Some(1));
    assert_eq!(f[1].extensions.id_of(Extension::VideoOrientation), Some(13));
    assert!(f.iter().all(|f| f.extension_rewrite().is_none()));
    // A participant whose 13 is another URI and whose audio-level is 5: the server takes
    // its 5, and for video-orientation the lowest id nobody in the group uses.
    let other = CHROME_OFFER
        .replace(
            "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level",
            "a=extmap:5 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\na=extmap:1 urn:example:one",
        )
        .replace(
            "a=extmap:13 urn:3gpp:video-orientation",
            "a=extmap:13 urn:example:thirteen\r\na=extmap:2/recvonly urn:example:two",
        );
    let f = forwarded_after(&other);
    assert_eq!(f[0].extensions.id_of(Extension::AudioLevel), Some(5));
    assert_eq!(f[1].extensions.id_of(Extension::VideoOrientation), Some(6));
    let audio = f[0].extension_rewrite().unwrap();
    assert_eq!(audio[1], 5, "the server's 1 becomes the participant's 5");
    let video = f[1].extension_rewrite().unwrap();
    assert_eq!(video[13], 6);
    // What the SFU does with the table on a receiver's copy: audio-level (server id 1)
    // goes out as 5, anything else the server does not forward is blanked.
    let mut pkt = vec![0x90, 111, 0, 1, 0, 0, 0, 1, 0, 0, 0, 9];
    pkt.extend_from_slice(&[0xBE, 0xDE, 0, 2, 0x10, 0x7f, 0x30, 0xaa, 0, 0, 0, 0]);
    let mut view = callsec_srtp::view::RtpView::new(&mut pkt).unwrap();
    view.map_extension_ids(|id| audio.get(usize::from(id)).copied());
    assert_eq!(pkt[16..20], [0x50, 0x7f, 0, 0]);
}

#[test]
fn glare_drops_the_server_offer() {
    let mut s = Session::new(local());
    s.accept_offer(&Remote::parse(CHROME_OFFER).unwrap())
        .unwrap();
    s.create_offer(&[(Kind::Audio, 9, (2, 0))], &[]).unwrap();
    // The participant offers at the same time (it does not know the server's m-line).
    s.accept_offer(&Remote::parse(CHROME_OFFER).unwrap())
        .unwrap();
    assert!(!s.has_pending_offer());
    assert_eq!(s.sections().len(), 3);
    assert!(s.create_offer(&[(Kind::Audio, 9, (2, 0))], &[]).is_some());
}

#[test]
fn refuses_bad_descriptions() {
    let bad = |from: &str, to: &str| Remote::parse(&CHROME_OFFER.replace(from, to));
    assert_eq!(
        bad("a=ice-ufrag:AbCd", "a=ice-ufrag:A\u{7f}cd").unwrap_err(),
        SdpError::Invalid("ice-ufrag")
    );
    assert_eq!(
        bad("a=mid:0", "a=mid:0 evil").unwrap_err(),
        SdpError::Invalid("mid")
    );
    let passive = bad("a=setup:actpass", "a=setup:passive").unwrap();
    assert_eq!(
        Session::new(local()).accept_offer(&passive).unwrap_err(),
        SdpError::Unsupported("the server is the DTLS server")
    );
    assert_eq!(
        bad("sha-256 00:11", "sha-1 00:11").unwrap_err(),
        SdpError::Unsupported("no sha-256 fingerprint")
    );
    assert_eq!(
        bad("a=mid:1", "a=mid:0").unwrap_err(),
        SdpError::Invalid("duplicate mid")
    );
    assert!(Remote::parse("garbage").is_err());
    assert!(Remote::parse("").is_err());
}

/// A video m-section of the participant's, as Chromium writes one.
fn video_section(mid: &str, port: u16, direction: &str, ssrc: Option<u32>) -> String {
    let mut m = format!(
        "m=video {port} UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\n\
a=ice-ufrag:AbCd\r\na=ice-pwd:0123456789abcdefghijkl\r\n\
a=fingerprint:sha-256 00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF\r\n\
a=setup:actpass\r\na=mid:{mid}\r\na=extmap:13 urn:3gpp:video-orientation\r\na={direction}\r\n\
a=rtcp-mux\r\na=rtpmap:96 VP8/90000\r\n"
    );
    if let Some(ssrc) = ssrc {
        m.push_str(&format!("a=ssrc:{ssrc} cname:x\r\n"));
    }
    m
}

/// Chromium's offer with `extra` m-sections after its three (mids `bundled` added to the
/// BUNDLE group).
fn offer_with(extra: &str, bundled: &str) -> String {
    CHROME_OFFER.replace(
        "a=group:BUNDLE 0 1 2",
        &format!("a=group:BUNDLE 0 1 2 {bundled}"),
    ) + extra
}

/// The participant's answer to a server offer: receives what the server sends, keeps the
/// rest.
fn answer_to(offer: &str) -> Remote {
    let text = offer
        .replace("a=sendonly", "a=recvonly")
        .replace("a=ice-lite\r\n", "")
        .replace("srv1", "AbCd")
        .replace("server-password-0123456789", "0123456789abcdefghijkl")
        .replace("a=setup:actpass", "a=setup:active");
    Remote::parse(&text).unwrap()
}

/// A session with Chromium's offer answered and a forwarded video (source (7, 1), SSRC
/// 0x5555) negotiated on mid `s1`, m-line 3.
fn forwarding_session() -> Session {
    let mut s = Session::new(local());
    s.accept_offer(&Remote::parse(CHROME_OFFER).unwrap())
        .unwrap();
    let offer = s
        .create_offer(&[(Kind::Video, 0x5555, (7, 1))], &[])
        .unwrap();
    s.accept_answer(&answer_to(&offer)).unwrap();
    assert_eq!(s.sections()[3].mid().as_str(), "s1");
    s
}

/// The text of m-section `index` (0-based) of `sdp`.
fn m_section(sdp: &str, index: usize) -> &str {
    let starts: Vec<usize> = sdp.match_indices("m=").map(|(i, _)| i).collect();
    let end = starts.get(index + 1).copied().unwrap_or(sdp.len());
    &sdp[starts[index]..end]
}

#[test]
fn add_track_on_a_forwarded_section_publishes_and_keeps_forwarding() {
    let mut s = forwarding_session();
    // `addTrack` reused the forwarded transceiver: sendrecv with the participant's SSRC.
    let offer = offer_with(&video_section("s1", 9, "sendrecv", Some(7777)), "s1");
    let (answer, changes) = s.accept_offer(&Remote::parse(&offer).unwrap()).unwrap();
    assert_eq!(changes.started.len(), 1, "{changes:?}");
    assert_eq!(changes.started[0].mid.as_str(), "s1");
    assert_eq!(changes.started[0].ssrcs, vec![7777]);
    let section = m_section(&answer, 3);
    assert!(section.contains("a=sendrecv\r\n"), "{section}");
    assert!(
        section.contains("a=ssrc:21845 "),
        "still forwards: {section}"
    );
    let Section::Duplex(d) = &s.sections()[3] else {
        panic!("{:?}", s.sections()[3]);
    };
    assert!(d.forward.active && d.forward.negotiated && d.publish.sending);
    assert_eq!(s.sections()[3].forward().map(|f| f.ssrc), Some(0x5555));
    // The same offer again changes nothing.
    let (_, changes) = s.accept_offer(&Remote::parse(&offer).unwrap()).unwrap();
    assert_eq!(changes, PublishChanges::default());

    // The forwarded source ends: the section keeps publishing (recvonly, port kept).
    let offer = s.create_offer(&[], &[(7, 1)]).unwrap();
    let section = m_section(&offer, 3);
    assert!(section.starts_with("m=video 4000 "), "{section}");
    assert!(section.contains("a=recvonly\r\n"), "{section}");
    assert!(!section.contains("a=ssrc:21845"), "{section}");
    let changes = s.accept_answer(&answer_to(&offer)).unwrap();
    assert_eq!(changes, PublishChanges::default());
    assert!(matches!(&s.sections()[3], Section::Publish(p) if p.sending));
}

#[test]
fn a_duplex_section_that_stops_sending_is_a_plain_forward_again() {
    let mut s = forwarding_session();
    let offer = offer_with(&video_section("s1", 9, "sendrecv", Some(7777)), "s1");
    s.accept_offer(&Remote::parse(&offer).unwrap()).unwrap();
    // `removeTrack`: recvonly, no SSRC.
    let offer = offer_with(&video_section("s1", 9, "recvonly", None), "s1");
    let (answer, changes) = s.accept_offer(&Remote::parse(&offer).unwrap()).unwrap();
    assert_eq!(changes.stopped, vec![Mid::new("s1").unwrap()]);
    assert!(m_section(&answer, 3).contains("a=sendonly\r\n"), "{answer}");
    assert!(matches!(&s.sections()[3], Section::Forward(f) if f.active && f.negotiated));
    // Stopping the transceiver (port 0) on a duplex section ends both directions.
    let offer = offer_with(&video_section("s1", 9, "sendrecv", Some(7777)), "s1");
    s.accept_offer(&Remote::parse(&offer).unwrap()).unwrap();
    let offer = offer_with(&video_section("s1", 0, "sendrecv", Some(7777)), "");
    let (answer, changes) = s.accept_offer(&Remote::parse(&offer).unwrap()).unwrap();
    assert_eq!(changes.stopped, vec![Mid::new("s1").unwrap()]);
    assert!(m_section(&answer, 3).starts_with("m=video 0 "), "{answer}");
    assert!(s.sections()[3].is_ended());
}

#[test]
fn refuses_offers_without_bundle_or_rtcp_mux() {
    let unsupported = |offer: &str| {
        let r = Remote::parse(offer).unwrap();
        Session::new(local()).accept_offer(&r).unwrap_err()
    };
    let no_bundle = CHROME_OFFER.replace("a=group:BUNDLE 0 1 2\r\n", "");
    assert!(matches!(unsupported(&no_bundle), SdpError::Unsupported(w) if w.contains("BUNDLE")));
    let partial = CHROME_OFFER.replace("a=group:BUNDLE 0 1 2", "a=group:BUNDLE 0 2");
    assert!(matches!(unsupported(&partial), SdpError::Unsupported(w) if w.contains("BUNDLE")));
    let two_groups = CHROME_OFFER.replace(
        "a=group:BUNDLE 0 1 2",
        "a=group:BUNDLE 0\r\na=group:BUNDLE 1",
    );
    assert!(matches!(unsupported(&two_groups), SdpError::Unsupported(w) if w.contains("BUNDLE")));
    let no_mux = CHROME_OFFER.replacen(
        "a=sendrecv\r\na=rtcp-mux\r\na=rtpmap:96",
        "a=sendrecv\r\na=rtpmap:96",
        1,
    );
    assert_ne!(no_mux, CHROME_OFFER);
    assert!(matches!(unsupported(&no_mux), SdpError::Unsupported(w) if w.contains("rtcp-mux")));
    // A stopped m-line needs neither (it carries nothing).
    let stopped = CHROME_OFFER
        .replace("a=group:BUNDLE 0 1 2", "a=group:BUNDLE 0 2")
        .replacen("m=video 9 ", "m=video 0 ", 1)
        .replacen(
            "a=sendrecv\r\na=rtcp-mux\r\na=rtpmap:96",
            "a=sendrecv\r\na=rtpmap:96",
            1,
        );
    let r = Remote::parse(&stopped).unwrap();
    assert!(Session::new(local()).accept_offer(&r).is_ok());
}

#[test]
fn port_zero_sections_carry_transport_attributes() {
    let mut s = forwarding_session();
    let offer = s.create_offer(&[], &[(7, 1)]).unwrap();
    let count = offer.matches("m=").count();
    assert_eq!(count, 4);
    for i in 0..count {
        let m = m_section(&offer, i);
        for attr in [
            "a=ice-ufrag:srv1",
            "a=ice-pwd:",
            "a=fingerprint:",
            "a=setup:actpass",
            "a=mid:",
        ] {
            assert!(m.contains(attr), "{attr} missing in {m}");
        }
    }
    assert!(m_section(&offer, 2).starts_with("m=application 0 "));
    assert!(m_section(&offer, 3).starts_with("m=video 0 "));
    // Answers too (setup passive), and they still parse.
    s.rollback();
    let offer = offer_with(&video_section("s1", 9, "recvonly", None), "s1");
    let (answer, _) = s.accept_offer(&Remote::parse(&offer).unwrap()).unwrap();
    assert!(
        m_section(&answer, 2).contains("a=ice-ufrag:srv1"),
        "{answer}"
    );
    assert!(
        m_section(&answer, 2).contains("a=setup:passive"),
        "{answer}"
    );
    SessionDescription::unmarshal(&mut Cursor::new(answer.as_bytes())).unwrap();
}

#[test]
fn ended_sections_are_recycled_so_share_cycles_stay_bounded() {
    let mut s = forwarding_session();
    let mut mids = std::collections::HashSet::new();
    for cycle in 0..50u32 {
        let source = (7, 100 + cycle);
        let offer = s
            .create_offer(
                &[(Kind::Video, 0x9000 + cycle, source)],
                &[(7, 1), (7, 99 + cycle)],
            )
            .unwrap();
        let r = answer_to(&offer);
        assert!(
            r.media.len() <= 5,
            "cycle {cycle}: {} m-lines",
            r.media.len()
        );
        s.accept_answer(&r).unwrap();
        let live: Vec<&Forward> = s
            .sections()
            .iter()
            .filter_map(Section::forward)
            .filter(|f| f.active)
            .collect();
        assert_eq!(live.len(), 1, "cycle {cycle}");
        assert!(
            mids.insert(live[0].mid.clone()),
            "a recycled section takes a new mid"
        );
    }
    assert!(s.sections().len() <= 5, "{}", s.sections().len());
}

#[test]
fn a_participant_may_recycle_an_ended_section_with_a_new_mid() {
    let mut s = forwarding_session();
    let offer = s.create_offer(&[], &[(7, 1)]).unwrap();
    s.accept_answer(&answer_to(&offer)).unwrap();
    // Its next `addTrack` takes m-line 3 with its own new mid (RFC 8829 §5.2.2).
    let offer = offer_with(&video_section("c9", 9, "sendrecv", Some(4242)), "c9");
    let (answer, changes) = s.accept_offer(&Remote::parse(&offer).unwrap()).unwrap();
    assert_eq!(changes.started.len(), 1);
    assert_eq!(changes.started[0].mid.as_str(), "c9");
    assert!(m_section(&answer, 3).contains("a=mid:c9"), "{answer}");
    // A live section's mid may not change.
    let offer = offer_with(&video_section("c10", 9, "sendrecv", Some(4242)), "c10");
    assert_eq!(
        s.accept_offer(&Remote::parse(&offer).unwrap()).unwrap_err(),
        SdpError::Mismatch("m-lines reordered")
    );
}

#[test]
fn forwarded_payload_types_are_the_receivers() {
    // A receiver numbering Opus 109 and VP8 120: its numbers are offered back.
    let offer = CHROME_OFFER
        .replace("UDP/TLS/RTP/SAVPF 111 0", "UDP/TLS/RTP/SAVPF 109 0")
        .replace("111 opus", "109 opus")
        .replace("fmtp:111", "fmtp:109")
        .replace("UDP/TLS/RTP/SAVPF 96 97", "UDP/TLS/RTP/SAVPF 120 97")
        .replace("rtpmap:96 VP8", "rtpmap:120 VP8")
        .replace("rtcp-fb:96", "rtcp-fb:120")
        .replace("apt=96", "apt=120");
    let f = forwarded_after(&offer);
    assert_eq!((f[0].pt, f[1].pt), (109, 120));
    // One that sends no video and uses 96 for something else: VP8 takes a free number,
    // never its 96 (one number names one codec in a BUNDLE group).
    let audio_only = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111 96 97\r\nc=IN IP4 0.0.0.0\r\n\
a=ice-ufrag:AbCd\r\na=ice-pwd:0123456789abcdefghijkl\r\n\
a=fingerprint:sha-256 00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF\r\n\
a=setup:actpass\r\na=mid:0\r\na=sendrecv\r\na=rtcp-mux\r\n\
a=rtpmap:111 opus/48000/2\r\na=rtpmap:96 red/48000/2\r\na=rtpmap:97 CN/48000\r\n";
    let mut s = Session::new(local());
    s.accept_offer(&Remote::parse(audio_only).unwrap()).unwrap();
    let text = s
        .create_offer(&[(Kind::Audio, 9, (2, 0)), (Kind::Video, 10, (2, 1))], &[])
        .unwrap();
    let pts: Vec<u8> = s
        .pending
        .clone()
        .unwrap()
        .iter()
        .filter_map(|x| x.forward().map(|f| f.pt))
        .collect();
    assert_eq!(pts, vec![111, 98]);
    assert!(text.contains("a=rtpmap:98 VP8/90000"), "{text}");
    // The answer with the receiver's numbers negotiates; forwarding uses them.
    s.accept_answer(&answer_to(&text)).unwrap();
    assert!(
        s.sections()
            .iter()
            .filter_map(Section::forward)
            .all(|f| f.active && f.negotiated)
    );
}

#[test]
fn forwarded_payload_type_choice() {
    use super::write::forward_pt;
    let all = |range: std::ops::RangeInclusive<u8>| range.fold(0u128, |t, pt| t | 1 << pt);
    assert_eq!(forward_pt(Some(120), all(0..=127), Kind::Video), Some(120));
    assert_eq!(forward_pt(None, 0, Kind::Video), Some(VP8_PT));
    assert_eq!(forward_pt(None, 1 << 111, Kind::Audio), Some(96));
    assert_eq!(forward_pt(None, all(96..=127), Kind::Audio), Some(35));
    assert_eq!(
        forward_pt(None, all(35..=63) | all(96..=127), Kind::Audio),
        None
    );
}
