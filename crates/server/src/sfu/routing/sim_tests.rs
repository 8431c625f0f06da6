//! The route table under an insider: a participant with valid ICE credentials sending
//! checks and its own authentic SRTP from spoofed source addresses, on the virtual clock of
//! [`crate::sim`] (spoofing a source is just naming it here; the loopback tests in
//! `tests/insider.rs` do it over real sockets).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use callsec_dtls::{Certificate, CipherSuite};
use callsec_rtc::client::Client;
use callsec_rtc::sdp::Kind;
use callsec_srtp::ProtectionProfile;
use proptest::prelude::*;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

use crate::metrics::Metrics;
use crate::sfu::{ConnId, Output, Sfu, SfuConfig, Signal};
use crate::sim::{SERVER, SimCall};

#[derive(Default)]
struct Rec(Vec<(SocketAddr, Vec<u8>)>);

impl Output for Rec {
    fn send(&mut self, to: SocketAddr, data: &[u8]) {
        self.0.push((to, data.to_vec()));
    }
}

fn ip(a: u8, b: u8, c: u8, port: u16) -> SocketAddr {
    SocketAddr::from(([10, a, b, c], port))
}

fn is_binding_success(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0x01, 0x01])
}

/// Delivers `bytes` to the server as if from `from`; returns what the server sent.
fn inject(call: &mut SimCall, from: SocketAddr, mut bytes: Vec<u8>) -> Vec<(SocketAddr, Vec<u8>)> {
    let mut rec = Rec::default();
    call.sfu
        .handle_datagram(call.now, from, &mut bytes, &mut rec);
    rec.0
}

fn call(n: usize) -> SimCall {
    let call = SimCall::connected(
        n,
        ProtectionProfile::AeadAes128Gcm,
        CipherSuite::EcdheEcdsaAes128GcmSha256,
        11,
    );
    assert!(call.clients.iter().all(|c| c.media.is_connected()));
    call
}

fn destination(sfu: &Sfu, conn: ConnId) -> Option<SocketAddr> {
    sfu.participants
        .get(&conn)
        .and_then(|p| p.rtc.destination())
}

/// Every routed address is validated by each of its claimants, and every validated
/// address routes to its participant.
fn assert_consistent(sfu: &Sfu) {
    for (addr, route) in &sfu.by_addr.table {
        for c in std::iter::once(route.owner).chain(route.pending) {
            let p = sfu
                .participants
                .get(&c)
                .expect("route to a live participant");
            assert!(
                p.rtc.is_validated(*addr),
                "{addr} routed to {c} unvalidated"
            );
        }
    }
    for p in sfu.participants.values() {
        for a in p.rtc.validated() {
            let r = sfu.by_addr.table.get(&a).expect("validated address routed");
            assert!(
                r.owner == p.conn || r.pending == Some(p.conn),
                "{a} of {}",
                p.conn
            );
        }
    }
}

/// A protected video packet from `sender` arrives from `from`: to whom was it forwarded?
fn forward_from(call: &mut SimCall, sender: usize, from: SocketAddr, seq: u16) -> Vec<SocketAddr> {
    let pkt = call.clients[sender].video_packet(seq, 200);
    inject(call, from, pkt)
        .into_iter()
        .map(|(to, _)| to)
        .collect()
}

/// A participant joining later at `addr`, publishing video.
fn join(call: &mut SimCall, conn: ConnId, addr: SocketAddr, nominate: bool) {
    let mut rng = ChaCha20Rng::seed_from_u64(conn);
    let dtls = Arc::new(callsec_dtls::Config::new(Certificate::generate(&mut rng)));
    let mut media = Client::new(dtls, [conn as u8; 32]);
    media.set_nominate(nominate);
    let video_ssrc = 0x9000 + conn as u32;
    media.add_track(Kind::Video, video_ssrc);
    let mut config = (*call.sfu.config).clone();
    config.max_room_size = 16;
    config.max_participants = 16;
    call.sfu.config = Arc::new(config);
    call.join(conn, addr, media, video_ssrc).unwrap();
}

#[test]
fn thousands_of_spoofed_addresses_stay_bounded_and_the_call_goes_on() {
    let mut call = call(3);
    let (victim, sender, insider) = (0, 1, 2);
    let capacity = call.sfu.config.rtc.ice.capacity;
    let limits = call.sfu.config.rtc.ice;
    let start = call.now;
    let mut answered = 0u64;
    for i in 0..3000u32 {
        let from = ip(9, (i >> 8) as u8, i as u8, 7000 + (i % 50) as u16);
        let check = call.clients[insider]
            .media
            .check_request(i % 2 == 0)
            .unwrap();
        answered += inject(&mut call, from, check)
            .iter()
            .filter(|(to, b)| *to == from && is_binding_success(b))
            .count() as u64;
        assert!(call.sfu.route_count() <= 3 * capacity);
        if i % 10 == 0 {
            call.step(Duration::from_millis(100));
            assert_consistent(&call.sfu);
        }
    }
    let elapsed = call.now.duration_since(start).as_secs();
    assert!(
        answered <= u64::from(limits.burst) + elapsed / limits.refill.as_secs(),
        "{answered} new addresses answered in {elapsed} s"
    );
    assert!(answered > 0, "the insider's own budget was used, not zero");
    // Nobody's media path moved, media still flows, the insider's included.
    for c in 0..3 {
        let conn = call.clients[c].conn;
        assert_eq!(destination(&call.sfu, conn), Some(call.clients[c].addr));
    }
    let from = call.clients[sender].addr;
    let to = forward_from(&mut call, sender, from, 10);
    assert!(to.contains(&call.clients[victim].addr), "{to:?}");
    assert!(to.contains(&call.clients[insider].addr), "{to:?}");
}

#[test]
fn a_squat_by_checks_and_spoofed_srtp_does_not_stop_a_later_participant() {
    let mut call = call(2);
    let insider = 1;
    let future = ip(1, 0, 99, 5000);
    // Before the victim joins, the insider validates the victim's future address, nominates
    // it and authenticates it with SRTP of its own keys: its media path moves there, so it
    // holds the address.
    let check = call.clients[insider].media.check_request(true).unwrap();
    inject(&mut call, future, check);
    let _ = forward_from(&mut call, insider, future, 500);
    let insider_conn = call.clients[insider].conn;
    assert_eq!(destination(&call.sfu, insider_conn), Some(future));

    join(&mut call, 50, future, true);
    let ok = call.run_until(Duration::from_millis(5), 2000, |c| {
        let v = &c.clients[2].media;
        v.is_connected()
            && c.receivers_of(c.clients[2].video_ssrc) >= 2
            && v.sections()
                .iter()
                .filter(|s| s.recv_ssrc.is_some())
                .count()
                >= 2
    });
    assert!(
        ok,
        "victim connected and its video negotiated: {:?}",
        call.sfu
    );
    assert_consistent(&call.sfu);
    // The victim owns its address now: its media reaches both others, and the others'
    // reach it there.
    assert_eq!(destination(&call.sfu, 50), Some(future));
    assert!(
        !call.sfu.participants[&insider_conn]
            .rtc
            .is_validated(future)
    );
    let to = forward_from(&mut call, 2, future, 1);
    assert!(to.contains(&call.clients[0].addr), "{to:?}");
    let from0 = call.clients[0].addr;
    let to = forward_from(&mut call, 0, from0, 1000);
    assert!(to.contains(&future), "{to:?}");
    // The insider's spoofed SRTP from the victim's address now reaches the victim's
    // context and fails there; nothing is forwarded.
    let claimants = call.sfu.by_addr.claimants(future);
    let pkt = call.clients[insider].video_packet(501, 200);
    let out = inject(&mut call, future, pkt);
    assert!(
        out.is_empty(),
        "{claimants:?} {:?}",
        out.iter()
            .map(|(t, b)| (t, b.len(), b[0], b[1]))
            .collect::<Vec<_>>()
    );
}

#[test]
fn connected_without_nominating_loses_its_routes_and_closes() {
    let mut call = call(2);
    let addr = ip(1, 0, 77, 5000);
    join(&mut call, 60, addr, false);
    assert!(call.run_until(Duration::from_millis(5), 1000, |c| {
        c.clients[2].media.is_connected()
    }));
    assert_eq!(destination(&call.sfu, 60), None, "nothing nominated");
    // The client keeps checking without USE-CANDIDATE; within two lifetimes it is gone.
    let lifetime = call.sfu.config.rtc.ice.lifetime;
    let mut closed = false;
    let end = call.now + 2 * lifetime + Duration::from_secs(1);
    while call.now < end && !closed {
        call.step(Duration::from_millis(250));
        closed = !call.sfu.participants.contains_key(&60);
    }
    assert!(closed, "closed for want of a media path");
    assert_eq!(
        call.sfu.route_count(),
        2,
        "only the two others' addresses remain"
    );
    assert_consistent(&call.sfu);
}

#[test]
fn checks_from_other_addresses_never_evict_the_selected_one() {
    let mut call = call(2);
    let (receiver, sender) = (0, 1);
    let home = call.clients[receiver].addr;
    let conn = call.clients[receiver].conn;
    for i in 0..20u8 {
        let check = call.clients[receiver].media.check_request(true).unwrap();
        inject(&mut call, ip(7, 0, i, 6000), check);
        call.step(Duration::from_millis(200));
        assert_eq!(destination(&call.sfu, conn), Some(home));
        let from = call.clients[sender].addr;
        let to = forward_from(&mut call, sender, from, 100 + u16::from(i));
        assert!(to.contains(&home), "media keeps going home: {to:?}");
    }
    assert_consistent(&call.sfu);
}

#[test]
fn media_moves_only_with_authentic_srtp_from_the_new_address() {
    let mut call = call(2);
    let (mover, sender) = (0, 1);
    let old = call.clients[mover].addr;
    let new = ip(1, 0, 200, 5001);
    let conn = call.clients[mover].conn;
    let check = call.clients[mover].media.check_request(true).unwrap();
    let out = inject(&mut call, new, check);
    assert!(
        out.iter()
            .any(|(to, b)| *to == new && is_binding_success(b))
    );
    assert_eq!(
        destination(&call.sfu, conn),
        Some(old),
        "a nominated check moves nothing"
    );
    let from = call.clients[sender].addr;
    assert!(forward_from(&mut call, sender, from, 300).contains(&old));
    // Garbage and a replay from the new address move nothing either.
    let mut pkt = call.clients[mover].video_packet(40, 100);
    let replay = pkt.clone();
    let n = pkt.len();
    pkt[n - 1] ^= 1;
    inject(&mut call, new, pkt);
    assert_eq!(destination(&call.sfu, conn), Some(old));
    inject(&mut call, old, replay.clone());
    inject(&mut call, new, replay);
    assert_eq!(
        destination(&call.sfu, conn),
        Some(old),
        "a replay is not authentic"
    );
    // Authentic SRTP from the new address: media follows.
    let to = forward_from(&mut call, mover, new, 41);
    assert!(!to.is_empty());
    assert_eq!(destination(&call.sfu, conn), Some(new));
    assert!(forward_from(&mut call, sender, from, 301).contains(&new));
    assert_consistent(&call.sfu);
}

#[test]
fn off_path_without_credentials_gets_nothing_and_leaves_nothing() {
    let mut call = call(2);
    let routes = call.sfu.route_count();
    let stranger = ip(66, 6, 6, 6666);
    // A check naming a participant's ufrags with the wrong password, one naming nobody,
    // DTLS and SRTP from an unknown source, and SRTP spoofed from a participant's address.
    let real = call.clients[1].media.check_request(true).unwrap();
    let username = callsec_ice::stun::Message::parse(&real)
        .unwrap()
        .attribute(callsec_ice::stun::attr::USERNAME)
        .map(|u| String::from_utf8(u.to_vec()).unwrap())
        .unwrap();
    let wrong =
        callsec_ice::binding_request(&[3; 12], &username, "not-the-password-at-all", true).unwrap();
    let nobody =
        callsec_ice::binding_request(&[4; 12], "nobody:x", "not-the-password-at-all", true)
            .unwrap();
    let mut dtls = vec![22u8, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0];
    dtls.extend_from_slice(&[0; 16]);
    let srtp = call.clients[0].video_packet(900, 100);
    for (from, bytes) in [
        (stranger, wrong.clone()),
        (call.clients[1].addr, wrong),
        (stranger, nobody),
        (stranger, dtls),
        (stranger, srtp.clone()),
    ] {
        assert!(inject(&mut call, from, bytes).is_empty());
    }
    assert_eq!(call.sfu.route_count(), routes);
    assert_consistent(&call.sfu);
    // The participants are unaffected.
    let from = call.clients[0].addr;
    assert!(forward_from(&mut call, 0, from, 901).contains(&call.clients[1].addr));
}

/// A worker with `n` participants that have answered offers (STUN answered, no DTLS).
fn stun_only(n: usize, limits: callsec_rtc::Limits) -> (Sfu, Vec<Client>, Instant) {
    let mut rng = ChaCha20Rng::seed_from_u64(3);
    let dtls = callsec_dtls::Config::new(Certificate::generate(&mut rng));
    let mut rtc = callsec_rtc::Config::new(Arc::new(dtls));
    rtc.ice = limits;
    rtc.connect_timeout = Duration::from_secs(1 << 20);
    let config = Arc::new(SfuConfig {
        rtc: Arc::new(rtc),
        max_room_size: 16,
        max_participants: 16,
        max_bitrate: 1_000_000,
    });
    let now = Instant::now();
    let mut sfu = Sfu::new(config, SERVER, Metrics::new().worker(0), [3; 32]);
    let client_dtls = Arc::new(callsec_dtls::Config::new(Certificate::generate(&mut rng)));
    let clients = (0..n)
        .map(|i| {
            let conn = i as ConnId + 1;
            let mut c = Client::new(client_dtls.clone(), [i as u8 + 1; 32]);
            c.add_track(Kind::Audio, 100 + i as u32);
            sfu.join(now, conn, "r").unwrap();
            let offer = c.create_offer();
            let answer = sfu.offer(now, conn, &offer).unwrap();
            c.accept_answer(&answer).unwrap();
            c
        })
        .collect();
    (sfu, clients, now)
}

#[derive(Clone, Debug)]
enum Op {
    /// Insider `who` (1..) checks from address `addr` (0 is the victim's).
    Check(usize, u8, bool),
    Advance(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1usize..4, 0u8..10, any::<bool>()).prop_map(|(w, a, n)| Op::Check(w, a, n)),
        1 => (0u64..6000).prop_map(Op::Advance),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Three insiders check from random addresses (the victim's among them), nominating at
    /// random, with time passing at random. After every step: the route table holds at most
    /// participants × capacity addresses and exactly the validated ones; the victim's check
    /// from its address is answered and makes it a claimant of that address.
    #[test]
    fn route_table_is_bounded_and_mirrors_validation(ops in proptest::collection::vec(op(), 1..120)) {
        let limits = callsec_rtc::Limits {
            capacity: 3,
            lifetime: Duration::from_secs(4),
            consent: Duration::from_secs(8),
            burst: 3,
            refill: Duration::from_millis(500),
        };
        let (mut sfu, mut clients, mut now) = stun_only(4, limits);
        let victim_addr = ip(0, 0, 0, 5000);
        let addr = |a: u8| if a == 0 { victim_addr } else { ip(8, 0, a, 5000) };
        let mut seen: HashSet<SocketAddr> = HashSet::new();
        for op in ops {
            let mut rec = Rec::default();
            match op {
                Op::Check(who, a, nominate) => {
                    let mut check = clients[who].check_request(nominate).unwrap();
                    sfu.handle_datagram(now, addr(a), &mut check, &mut rec);
                    seen.insert(addr(a));
                }
                Op::Advance(ms) => {
                    now += Duration::from_millis(ms);
                    sfu.handle_timeout(now, &mut rec);
                }
            }
            prop_assert!(sfu.route_count() <= 4 * limits.capacity);
            assert_consistent(&sfu);
            let mut check = clients[0].check_request(false).unwrap();
            let mut rec = Rec::default();
            sfu.handle_datagram(now, victim_addr, &mut check, &mut rec);
            prop_assert!(
                rec.0.iter().any(|(to, b)| *to == victim_addr && is_binding_success(b)),
                "victim's check unanswered"
            );
            let route = sfu.by_addr.table.get(&victim_addr).copied();
            prop_assert!(
                route.is_some_and(|r| r.owner == 1 || r.pending == Some(1)),
                "victim not a claimant: {:?}", route
            );
            assert_consistent(&sfu);
            while let Some(s) = sfu.poll_signal() {
                prop_assert!(!matches!(s, Signal::MediaClosed { .. }), "{:?}", s);
            }
        }
        prop_assert!(sfu.route_count() <= seen.len() + 1);
    }
}
