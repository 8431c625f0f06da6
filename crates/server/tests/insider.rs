//! An insider on the media port, over loopback against the real server: a participant that
//! holds a join token sends its own valid ICE checks, and SRTP of its own keys, from source
//! addresses other than its own. Every 127.x.y.z address is local, so each test source is a
//! real socket the kernel delivers from; a spoofer could send the same datagrams without
//! receiving anything, and the tests never use what these sockets receive except to observe
//! that a squat is in place. [`spoof`] sends truly spoofed datagrams through a raw socket
//! (root, as CI runs): nothing can come back to those sources.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::time::Duration;

use callsec_dtls::CipherSuite;
use callsec_rtc::client::write_rtp;
use callsec_rtc::sdp::Kind;
use callsec_server::Settings;
use callsec_srtp::ProtectionProfile;
use common::{Participant, metric, server, wait_until};

const SECS: Duration = Duration::from_secs(1);
/// `callsec_rtc::Limits::default().capacity`.
const CAPACITY: f64 = 8.0;

async fn call_of_two(running: &callsec_server::Running) -> (Participant, Participant, SocketAddr) {
    let a = Participant::join(running, "alice", "r1", &[(Kind::Audio, 0xa1)], 1).await;
    let m = Participant::join(running, "mallory", "r1", &[(Kind::Audio, 0xe1)], 2).await;
    assert!(
        wait_until(10 * SECS, || a.received(0xe1) >= 5 && m.received(0xa1) >= 5).await,
        "call up"
    );
    let server = m.state.lock().unwrap().media.server_addr().unwrap();
    (a, m, server)
}

fn check_of(p: &Participant, nominate: bool) -> Vec<u8> {
    p.state
        .lock()
        .unwrap()
        .media
        .check_request(nominate)
        .unwrap()
}

fn stun_in(running: &callsec_server::Running) -> f64 {
    metric(running, "packets_total{kind=\"stun\",direction=\"in\"}")
}

/// The server with the GCM profile and suite, its settings changed by `tweak`.
async fn gcm_server(tweak: impl FnOnce(&mut Settings)) -> callsec_server::Running {
    server(
        &[ProtectionProfile::AeadAes128Gcm],
        &[CipherSuite::EcdheEcdsaAes128GcmSha256],
        tweak,
    )
    .await
}

/// Runs `send(i)` for each `i` below `n`, each sending one STUN check, and checks every
/// `every` checks that the route table holds at most two participants' sets; returns whether
/// all `n` checks reached the server within 20 s (loopback does not drop at this rate, but
/// wait for the count rather than assume it).
async fn flood(
    running: &callsec_server::Running,
    n: u32,
    every: u32,
    mut send: impl FnMut(u32),
) -> bool {
    let before = stun_in(running);
    for i in 0..n {
        send(i);
        if i % every == 0 {
            assert!(metric(running, "media_routes") <= 2.0 * CAPACITY);
        }
    }
    wait_until(20 * SECS, || stun_in(running) >= before + f64::from(n)).await
}

/// Whether, within 10 s, Alice receives more than 20 further packets of Mallory's audio
/// and Mallory more than 20 of Alice's.
async fn media_flows_both_ways(a: &Participant, m: &Participant) -> bool {
    let (ra, rm) = (a.received(0xe1), m.received(0xa1));
    wait_until(10 * SECS, || {
        a.received(0xe1) > ra + 20 && m.received(0xa1) > rm + 20
    })
    .await
}

/// Whether, within 10 s, Alice receives more than `n` further packets of Mallory's audio.
async fn alice_receives_more(a: &Participant, n: u64) -> bool {
    let got = a.received(0xe1);
    wait_until(10 * SECS, || a.received(0xe1) > got + n).await
}

/// The USERNAME of the STUN message `check`.
fn username_of(check: &[u8]) -> String {
    callsec_ice::stun::Message::parse(check)
        .unwrap()
        .attribute(callsec_ice::stun::attr::USERNAME)
        .map(|u| String::from_utf8(u.to_vec()).unwrap())
        .unwrap()
}

/// A plaintext DTLS 1.2 handshake record header and 17 zero bytes (where a ClientHello
/// would begin).
fn client_hello_header() -> Vec<u8> {
    let mut hello = vec![22u8, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    hello.extend_from_slice(&[0; 17]);
    hello
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_source_addresses_leave_a_bounded_route_table() {
    let running = gcm_server(|_| {}).await;
    let (a, m, server) = call_of_two(&running).await;
    let all = flood(&running, 3000, 100, |i| {
        let src = Ipv4Addr::new(127, 20 + (i >> 16) as u8, (i >> 8) as u8, i as u8);
        let sock = UdpSocket::bind((src, 0)).unwrap();
        sock.send_to(&check_of(&m, i % 2 == 0), server).unwrap();
    })
    .await;
    let routes = metric(&running, "media_routes");
    assert!(routes <= 2.0 * CAPACITY, "{routes} routes");
    assert!(
        routes >= 2.0,
        "the two real addresses stay routed: {routes}"
    );
    // The call goes on both ways.
    assert!(
        media_flows_both_ways(&a, &m).await,
        "media flows after the flood (all checks counted: {all})"
    );
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_squatted_future_address_still_connects_its_rightful_user() {
    let running = gcm_server(|_| {}).await;
    let (a, m, server) = call_of_two(&running).await;
    // Mallory squats the address the victim will use: a nominated check, then SRTP of its
    // own keys (an SSRC of its own), from that address.
    let squat = UdpSocket::bind("127.0.0.55:0").unwrap();
    squat.set_read_timeout(Some(SECS)).unwrap();
    let future = squat.local_addr().unwrap();
    squat.send_to(&check_of(&m, true), server).unwrap();
    squat.send_to(&own_srtp(&m, 0xe2, 1), server).unwrap();
    // The squat is in place: media for Mallory now goes to the squatted address.
    assert!(
        receives_media(&squat),
        "Mallory's media path moved to the squatted address"
    );
    drop(squat);

    // The victim joins the same room (the same worker's port) from that very address.
    let v = Participant::join_from(
        &running,
        "victim",
        "r1",
        &[(Kind::Audio, 0xb1)],
        3,
        future,
        true,
    )
    .await;
    assert_eq!(v.udp_addr, future);
    assert!(
        wait_until(15 * SECS, || v.connected()
            && v.received(0xa1) >= 20
            && a.received(0xb1) >= 20)
        .await,
        "victim connected and media flows both ways: connected {}, got {}, gave {}\n{}",
        v.connected(),
        v.received(0xa1),
        a.received(0xb1),
        running.metrics.encode()
    );
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn off_path_datagrams_without_credentials_get_no_reply_and_leave_no_route() {
    let running = gcm_server(|_| {}).await;
    let (_a, m, server) = call_of_two(&running).await;
    let routes = metric(&running, "media_routes");
    let dropped = metric(&running, "dropped_unknown_source_total")
        + metric(&running, "dropped_invalid_total");
    let stranger = UdpSocket::bind("127.0.0.66:0").unwrap();
    stranger
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    // Mallory's USERNAME with a wrong password, a made-up USERNAME, a DTLS ClientHello
    // header, and an SRTP packet (Mallory's, replayed from elsewhere).
    let username = username_of(&check_of(&m, true));
    let wrong = callsec_ice::binding_request(&[1; 12], &username, "wrong-password", true).unwrap();
    let nobody =
        callsec_ice::binding_request(&[2; 12], "nobody:x", "wrong-password", true).unwrap();
    let sent = [wrong, nobody, client_hello_header(), own_srtp(&m, 0xe3, 9)];
    for d in &sent {
        stranger.send_to(d, server).unwrap();
    }
    assert!(
        wait_until(5 * SECS, || {
            metric(&running, "dropped_unknown_source_total")
                + metric(&running, "dropped_invalid_total")
                >= dropped + sent.len() as f64
        })
        .await,
        "every datagram refused and counted"
    );
    let mut buf = [0u8; 2048];
    assert!(stranger.recv_from(&mut buf).is_err(), "no reply");
    assert_eq!(metric(&running, "media_routes"), routes, "no state");
    running.shutdown().await;
}

/// Protected RTP of `p`'s keys on an SSRC of its own that it does not publish.
fn own_srtp(p: &Participant, ssrc: u32, seq: u16) -> Vec<u8> {
    let mut buf = [0u8; 1500];
    let mut s = p.state.lock().unwrap();
    let len = write_rtp(&mut buf, 111, seq, 0, ssrc, &[5; 100]);
    let len = s.media.protect_rtp(&mut buf, len).unwrap();
    buf[..len].to_vec()
}

/// Whether `sock` receives an RTP-looking datagram (forwarded media) within a few reads.
fn receives_media(sock: &UdpSocket) -> bool {
    let mut buf = [0u8; 2048];
    (0..20).any(|_| matches!(sock.recv_from(&mut buf), Ok((n, _)) if n > 12 && buf[0] >> 6 == 2))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connected_without_nominating_loses_its_routes_and_is_closed() {
    let lifetime = 2 * SECS;
    let running = gcm_server(|s| s.ice_limits.lifetime = lifetime).await;
    let a = Participant::join(&running, "alice", "r1", &[(Kind::Audio, 0xa1)], 1).await;
    let bind = "127.0.0.1:0".parse().unwrap();
    let m = Participant::join_from(
        &running,
        "mallory",
        "r1",
        &[(Kind::Audio, 0xe1)],
        2,
        bind,
        false,
    )
    .await;
    assert!(wait_until(10 * SECS, || m.connected() && a.connected()).await);
    // Mallory also validates spoofed addresses, never nominating any.
    let server = m.state.lock().unwrap().media.server_addr().unwrap();
    for i in 0..5u8 {
        let sock = UdpSocket::bind((Ipv4Addr::new(127, 30, 0, i + 1), 0)).unwrap();
        sock.send_to(&check_of(&m, false), server).unwrap();
    }
    // Its routes expire and, with no media path, the server closes it (its participant
    // state is freed): only Alice's route remains, though Mallory's client keeps checking
    // from its own address.
    assert_eq!(metric(&running, "participants"), 2.0);
    let gone = wait_until(6 * lifetime, || {
        metric(&running, "participants") == 1.0 && metric(&running, "media_routes") == 1.0
    })
    .await;
    assert!(gone, "{}", running.metrics.encode());
    assert!(a.connected());
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checks_from_other_addresses_never_move_or_evict_the_media_path() {
    let running = gcm_server(|_| {}).await;
    let (a, _m, server) = call_of_two(&running).await;
    // Alice's own credentials (an insider holding them, or her other interfaces), nominating,
    // from ten other addresses: more than the set holds.
    for i in 0..10u8 {
        let sock = UdpSocket::bind((Ipv4Addr::new(127, 40, 0, i + 1), 0)).unwrap();
        sock.send_to(&check_of(&a, true), server).unwrap();
    }
    assert!(
        alice_receives_more(&a, 50).await,
        "media keeps reaching Alice's own address"
    );
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_moves_to_a_new_address_only_with_authentic_srtp_from_it() {
    let running = gcm_server(|_| {}).await;
    let (a, _m, server) = call_of_two(&running).await;
    let new = UdpSocket::bind("127.0.0.78:0").unwrap();
    new.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    // A nominated check from the new address is answered but moves nothing.
    new.send_to(&check_of(&a, true), server).unwrap();
    let mut buf = [0u8; 2048];
    let answered = (0..30)
        .any(|_| matches!(new.recv_from(&mut buf), Ok((n, _)) if n >= 20 && buf[..2] == [1, 1]));
    assert!(answered, "the check is answered");
    assert!(alice_receives_more(&a, 20).await, "media stays");
    assert!(
        !receives_media(&new),
        "nothing forwarded to the new address yet"
    );
    // Authentic SRTP of Alice's keys from the new address: media follows it.
    new.send_to(&own_srtp(&a, 0xa9, 1), server).unwrap();
    assert!(receives_media(&new), "media moved to the new address");
    running.shutdown().await;
}

/// Sends `payload` to `to` over UDP with the forged source `from`, through a raw socket that
/// writes its own IPv4 header (IPPROTO_RAW implies IP_HDRINCL). The kernel fills in the
/// header checksum and id; a zero UDP checksum means none (RFC 768).
fn spoof(raw: &socket2::Socket, from: SocketAddrV4, to: SocketAddr, payload: &[u8]) {
    let SocketAddr::V4(to) = to else {
        panic!("IPv4 only")
    };
    let total = 20 + 8 + payload.len();
    let mut p = Vec::with_capacity(total);
    p.extend_from_slice(&[0x45, 0]);
    p.extend_from_slice(&(total as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0, 0x40, 0, 64, 17, 0, 0]);
    p.extend_from_slice(&from.ip().octets());
    p.extend_from_slice(&to.ip().octets());
    p.extend_from_slice(&from.port().to_be_bytes());
    p.extend_from_slice(&to.port().to_be_bytes());
    p.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(payload);
    raw.send_to(&p, &SocketAddr::V4(to).into()).unwrap();
}

fn raw_socket() -> socket2::Socket {
    socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::RAW,
        Some(socket2::Protocol::from(255)),
    )
    .expect("a raw socket (these tests run as root, as CI does)")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truly_spoofed_checks_from_thousands_of_sources_leave_a_bounded_route_table() {
    let running = gcm_server(|_| {}).await;
    let (a, m, server) = call_of_two(&running).await;
    let raw = raw_socket();
    let reached = flood(&running, 5000, 250, |i| {
        let from = SocketAddrV4::new(
            Ipv4Addr::new(127, 50 + (i >> 16) as u8, (i >> 8) as u8, i as u8),
            10_000 + (i % 40_000) as u16,
        );
        spoof(&raw, from, server, &check_of(&m, i % 3 == 0));
    })
    .await;
    assert!(reached, "the spoofed checks reached the server");
    let routes = metric(&running, "media_routes");
    assert!((2.0..=2.0 * CAPACITY).contains(&routes), "{routes} routes");
    assert!(
        media_flows_both_ways(&a, &m).await,
        "media flows both ways after the flood"
    );
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truly_spoofed_datagrams_without_credentials_change_nothing() {
    let running = gcm_server(|_| {}).await;
    let (a, m, server) = call_of_two(&running).await;
    let raw = raw_socket();
    let routes = metric(&running, "media_routes");
    let refused = || {
        metric(&running, "dropped_unknown_source_total")
            + metric(&running, "dropped_invalid_total")
            + metric(&running, "srtp_auth_failures_total")
    };
    let before = refused();
    // From Alice's own address and from strangers: a check with Alice's USERNAME and a
    // guessed password, a ClientHello header, and SRTP that is not Alice's.
    let username = username_of(&check_of(&a, true));
    let guess = callsec_ice::binding_request(&[7; 12], &username, "guessed", true).unwrap();
    let hello = client_hello_header();
    let forged = {
        let mut b = own_srtp(&m, 0xa1, 999);
        let n = b.len();
        b[n - 1] ^= 0x55;
        b
    };
    let SocketAddr::V4(alice) = a.udp_addr else {
        panic!()
    };
    // (A bad DTLS record on Alice's own association is the DTLS layer's to discard
    // silently, RFC 6347 §4.1.2.7; it is sent from the stranger only.)
    let stranger = SocketAddrV4::new(Ipv4Addr::new(127, 60, 0, 1), 4444);
    let sent = [
        (alice, &guess),
        (alice, &forged),
        (stranger, &guess),
        (stranger, &hello),
        (stranger, &forged),
    ];
    for (from, d) in sent {
        spoof(&raw, from, server, d);
    }
    let sent = sent.len() as f64;
    assert!(
        wait_until(5 * SECS, || refused() >= before + sent).await,
        "each refused and counted"
    );
    assert_eq!(metric(&running, "media_routes"), routes, "no state");
    assert!(alice_receives_more(&a, 20).await, "call unaffected");
    running.shutdown().await;
}
