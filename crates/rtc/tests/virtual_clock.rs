//! A participant's transport against a client built from callsec's crates, on a virtual
//! clock with seeded loss and reordering: ICE, then DTLS, then SRTP both ways; spoofed
//! sources never admitted; no sockets, no sleeping.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use callsec_dtls::{Certificate, CipherSuite, Config as DtlsConfig};
use callsec_rtc::client::{Client, write_rtp};
use callsec_rtc::sdp::{Kind, Local, Remote, Session};
use callsec_rtc::{CloseReason, Config, Error, Event, Received, Rtc, random_credentials};
use callsec_srtp::ProtectionProfile;
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};

const SERVER: &str = "127.0.0.1:4000";
const CLIENT: &str = "127.0.0.1:5000";

struct Net {
    rng: ChaCha20Rng,
    loss: u32,
    /// (deliver at, from, to, bytes)
    queue: Vec<(Instant, SocketAddr, SocketAddr, Vec<u8>)>,
}

impl Net {
    fn send(&mut self, now: Instant, from: SocketAddr, to: SocketAddr, bytes: Vec<u8>) {
        if self.rng.next_u32() % 100 < self.loss {
            return;
        }
        let delay = Duration::from_millis(5 + u64::from(self.rng.next_u32() % 40));
        self.queue.push((now + delay, from, to, bytes));
    }

    fn due(&mut self, now: Instant) -> Vec<(SocketAddr, SocketAddr, Vec<u8>)> {
        let (due, rest): (Vec<_>, Vec<_>) = self.queue.drain(..).partition(|q| q.0 <= now);
        self.queue = rest;
        due.into_iter().map(|(_, f, t, b)| (f, t, b)).collect()
    }
}

struct Setup {
    rtc: Rtc,
    session: Session,
    client: Client,
}

fn setup(seed: u64, suite: CipherSuite, profile: ProtectionProfile, now: Instant) -> Setup {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let mut server_dtls = DtlsConfig::new(Certificate::generate(&mut rng));
    server_dtls.cookie_exchange = false;
    server_dtls.cipher_suites = vec![suite];
    server_dtls.srtp_profiles = vec![profile];
    let fingerprint = server_dtls.certificate.fingerprint();
    let config = Arc::new(Config::new(Arc::new(server_dtls)));
    let client_dtls = Arc::new(DtlsConfig::new(Certificate::generate(&mut rng)));
    let local_ice = random_credentials(&mut rng);
    let rtc = Rtc::new(config, local_ice.clone(), now, [seed as u8; 32]);
    let session = Session::new(Local {
        ice: local_ice,
        fingerprint,
        candidate: SERVER.parse().unwrap(),
        session_id: seed,
    });
    let client = Client::new(client_dtls, [seed as u8 ^ 0x55; 32]);
    Setup {
        rtc,
        session,
        client,
    }
}

/// Client offers audio and video, the server answers; both sides learn each other.
fn negotiate(s: &mut Setup) {
    s.client.add_track(Kind::Audio, 0x1111);
    s.client.add_track(Kind::Video, 0x2222);
    let offer = s.client.create_offer();
    let remote = Remote::parse(&offer).unwrap();
    let (answer, changes) = s.session.accept_offer(&remote).unwrap();
    assert_eq!(changes.started.len(), 2);
    s.rtc.set_remote(&remote);
    s.client.accept_answer(&answer).unwrap();
}

/// Moves datagrams and time until `done` or the virtual deadline.
fn run(
    s: &mut Setup,
    net: &mut Net,
    now: &mut Instant,
    until: Duration,
    mut done: impl FnMut(&Setup) -> bool,
) -> bool {
    let (server, client): (SocketAddr, SocketAddr) =
        (SERVER.parse().unwrap(), CLIENT.parse().unwrap());
    let end = *now + until;
    while *now < end {
        s.client.handle_timeout(*now);
        if s.rtc.poll_timeout().is_some_and(|t| t <= *now) {
            s.rtc.handle_timeout(*now);
        }
        while let Some(t) = s.client.poll_transmit() {
            net.send(*now, client, t.destination, t.payload);
        }
        while let Some(t) = s.rtc.poll_transmit() {
            net.send(*now, server, t.destination, t.payload);
        }
        for (from, to, mut bytes) in net.due(*now) {
            if to == server {
                let _ = s.rtc.handle_datagram(*now, from, &mut bytes);
            } else {
                let _ = s.client.handle_datagram(*now, &mut bytes);
            }
        }
        if done(s) {
            return true;
        }
        *now += Duration::from_millis(10);
    }
    false
}

/// Every event `rtc` has to report.
fn events(rtc: &mut Rtc) -> Vec<Event> {
    std::iter::from_fn(|| rtc.poll_event()).collect()
}

/// A pair with the GCM suite and profile, set up at `now`.
fn gcm_setup(seed: u64, now: Instant) -> Setup {
    setup(
        seed,
        CipherSuite::EcdheEcdsaAes128GcmSha256,
        ProtectionProfile::AeadAes128Gcm,
        now,
    )
}

/// Connects the negotiated `s` over a lossless network seeded with `net_seed` (asserting
/// that both sides connect within 20 virtual seconds); returns the network.
fn connect(s: &mut Setup, net_seed: u64, now: &mut Instant) -> Net {
    let mut net = Net {
        rng: ChaCha20Rng::seed_from_u64(net_seed),
        loss: 0,
        queue: Vec::new(),
    };
    assert!(run(s, &mut net, now, Duration::from_secs(20), |s| {
        s.rtc.is_connected() && s.client.is_connected()
    }));
    net
}

/// A negotiated pair (GCM suite and profile) connected over a lossless network.
fn connected(seed: u64) -> (Setup, Net, Instant) {
    let mut now = Instant::now();
    let mut s = gcm_setup(seed, now);
    negotiate(&mut s);
    let net = connect(&mut s, seed, &mut now);
    (s, net, now)
}

#[test]
fn ice_then_dtls_then_media_both_ways_at_30_percent_loss() {
    for (seed, suite, profile) in [
        (
            1,
            CipherSuite::EcdheEcdsaAes128GcmSha256,
            ProtectionProfile::AeadAes128Gcm,
        ),
        (
            2,
            CipherSuite::EcdheEcdsaAes256CbcSha,
            ProtectionProfile::Aes128CmHmacSha1_80,
        ),
        (
            3,
            CipherSuite::EcdheEcdsaAes128GcmSha256,
            ProtectionProfile::Aes128CmHmacSha1_80,
        ),
    ] {
        let mut now = Instant::now();
        let mut s = setup(seed, suite, profile, now);
        negotiate(&mut s);
        let mut net = Net {
            rng: ChaCha20Rng::seed_from_u64(seed * 7),
            loss: 30,
            queue: Vec::new(),
        };
        let connected = run(&mut s, &mut net, &mut now, Duration::from_secs(60), |s| {
            s.rtc.is_connected() && s.client.is_connected()
        });
        assert!(connected, "seed {seed}: {:?} {:?}", s.rtc, s.client);
        let events = events(&mut s.rtc);
        assert!(
            events.contains(&Event::Connected { suite, profile }),
            "{events:?}"
        );
        assert!(events.iter().any(|e| matches!(e, Event::IceSelected(_))));

        // Media both ways: 300 packets each, 30% lost on the way.
        let (server, client): (SocketAddr, SocketAddr) =
            (SERVER.parse().unwrap(), CLIENT.parse().unwrap());
        let mut got_at_server = 0u32;
        for i in 0..300u16 {
            let mut buf = [0u8; 1500];
            let payload = [i as u8; 100];
            let n = write_rtp(&mut buf, 96, i, u32::from(i) * 3000, 0x2222, &payload);
            let n = s.client.protect_rtp(&mut buf, n).unwrap();
            net.send(now, client, server, buf[..n].to_vec());
            let mut buf = [0u8; 1500];
            let n = write_rtp(&mut buf, 96, i, u32::from(i) * 3000, 0x7777, &payload);
            let n = s.rtc.protect_rtp(&mut buf, n).unwrap();
            net.send(now, server, client, buf[..n].to_vec());
            now += Duration::from_millis(1);
        }
        let mut got_at_client = 0u32;
        now += Duration::from_millis(100);
        for (_, to, mut bytes) in net.due(now) {
            if to == server {
                if let Ok(Received::Rtp(n)) = s.rtc.handle_datagram(now, client, &mut bytes) {
                    let seq = u16::from_be_bytes([bytes[2], bytes[3]]);
                    assert_eq!(&bytes[12..n], &[seq as u8; 100][..], "payload intact");
                    got_at_server += 1;
                }
            } else if let Ok(Received::Rtp(n)) = s.client.handle_datagram(now, &mut bytes) {
                let seq = u16::from_be_bytes([bytes[2], bytes[3]]);
                assert_eq!(&bytes[12..n], &[seq as u8; 100][..]);
                got_at_client += 1;
            }
        }
        assert!((150..=250).contains(&got_at_server), "{got_at_server}");
        assert!((150..=250).contains(&got_at_client), "{got_at_client}");
    }
}

#[test]
fn spoofed_sources_are_never_admitted() {
    let mut now = Instant::now();
    let mut s = gcm_setup(9, now);
    negotiate(&mut s);
    let attacker: SocketAddr = "127.0.0.1:6666".parse().unwrap();
    let mut rng = ChaCha20Rng::seed_from_u64(1);

    // Before anything: DTLS, SRTP and garbage from the attacker are refused and answered
    // with nothing; a check with a guessed password gets no response either.
    let guess =
        callsec_ice::binding_request(&[1; 12], "x:y", "wrong-password-0123456789", true).unwrap();
    let mut datagrams: Vec<Vec<u8>> = vec![
        guess,
        vec![22, 0xfe, 0xfd, 0, 0],
        vec![0x80, 96, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 9, 9],
    ];
    for _ in 0..200 {
        let mut d = vec![0u8; (rng.next_u32() % 200) as usize + 1];
        rng.fill_bytes(&mut d);
        datagrams.push(d);
    }
    for mut d in datagrams.clone() {
        let r = s.rtc.handle_datagram(now, attacker, &mut d);
        assert!(r.is_err(), "{r:?}");
    }
    assert!(
        s.rtc.poll_transmit().is_none(),
        "nothing is sent to a spoofer"
    );
    assert!(!s.rtc.is_validated(attacker));

    // The real client connects.
    connect(&mut s, 5, &mut now);
    // Genuine client SRTP replayed from the attacker's address is refused before any
    // cryptography; the same bytes from the client's address are accepted.
    let mut buf = [0u8; 1500];
    let n = write_rtp(&mut buf, 96, 1, 1, 0x2222, b"hello");
    let n = s.client.protect_rtp(&mut buf, n).unwrap();
    let mut copy = buf[..n].to_vec();
    assert_eq!(
        s.rtc.handle_datagram(now, attacker, &mut copy),
        Err(Error::NotAdmitted)
    );
    for mut d in datagrams {
        let _ = s.rtc.handle_datagram(now, attacker, &mut d);
    }
    assert!(s.rtc.poll_transmit().is_none());
    let client: SocketAddr = CLIENT.parse().unwrap();
    assert_eq!(
        s.rtc.handle_datagram(now, client, &mut buf[..n]),
        Ok(Received::Rtp(17))
    );
    assert!(s.rtc.is_connected());
}

#[test]
fn never_finishing_participant_is_closed_by_the_connect_deadline() {
    let now = Instant::now();
    let mut s = gcm_setup(4, now);
    negotiate(&mut s);
    let deadline = s.rtc.poll_timeout().unwrap();
    assert!(deadline <= now + Duration::from_secs(30));
    s.rtc.handle_timeout(deadline);
    assert_eq!(
        s.rtc.poll_event(),
        Some(Event::Closed(CloseReason::ConnectTimeout))
    );
    assert!(s.rtc.is_closed());
    assert_eq!(s.rtc.poll_timeout(), None);
}

#[test]
fn close_notify_and_consent_expiry_close_the_participant() {
    let (mut s, _, now) = connected(5);
    while s.rtc.poll_event().is_some() {}
    // Consent: no check for 30 s (the client is silenced).
    let later = now + Duration::from_secs(31);
    s.rtc.handle_timeout(later);
    assert_eq!(
        s.rtc.poll_event(),
        Some(Event::Closed(CloseReason::ConsentExpired))
    );

    let (mut s, mut net, mut now) = connected(6);
    while s.rtc.poll_event().is_some() {}
    s.client.close();
    assert!(run(
        &mut s,
        &mut net,
        &mut now,
        Duration::from_secs(2),
        |s| s.rtc.is_closed()
    ));
    assert_eq!(
        s.rtc.poll_event(),
        Some(Event::Closed(CloseReason::PeerClosed))
    );
}

/// Delivers the client's queued datagrams to the server as if sent from `from`.
fn deliver_from(s: &mut Setup, now: Instant, from: SocketAddr, mut bytes: Vec<u8>) {
    let _ = s.rtc.handle_datagram(now, from, &mut bytes);
}

#[test]
fn media_path_moves_only_on_authentic_srtp_from_a_nominated_address() {
    let (mut s, _, now) = connected(6);
    let client: SocketAddr = CLIENT.parse().unwrap();
    let new: SocketAddr = "127.0.0.1:5001".parse().unwrap();
    assert_eq!(s.rtc.destination(), Some(client));
    while s.rtc.poll_event().is_some() {}
    // A nominated check from a new address: answered, validated, but media stays.
    let check = s.client.check_request(true).unwrap();
    deliver_from(&mut s, now, new, check);
    assert!(s.rtc.poll_transmit().is_some_and(|t| t.destination == new));
    assert!(s.rtc.is_validated(new));
    assert_eq!(s.rtc.destination(), Some(client));
    // Tampered SRTP from there moves nothing.
    let mut buf = [0u8; 1500];
    let n = write_rtp(&mut buf, 96, 7, 7, 0x2222, b"moved");
    let n = s.client.protect_rtp(&mut buf, n).unwrap();
    let mut bad = buf[..n].to_vec();
    bad[n - 1] ^= 1;
    assert!(s.rtc.handle_datagram(now, new, &mut bad).is_err());
    assert_eq!(s.rtc.destination(), Some(client));
    // Authentic SRTP from there: media follows.
    assert!(s.rtc.handle_datagram(now, new, &mut buf[..n]).is_ok());
    assert_eq!(s.rtc.destination(), Some(new));
    assert_eq!(s.rtc.poll_event(), Some(Event::IceSelected(new)));
    // Checks from many other addresses never evict it.
    for port in 6000..6020 {
        let check = s.client.check_request(port % 2 == 0).unwrap();
        deliver_from(&mut s, now, SocketAddr::new(new.ip(), port), check);
        assert_eq!(s.rtc.destination(), Some(new));
        assert!(s.rtc.validated().count() <= callsec_rtc::Limits::default().capacity);
    }
}

#[test]
fn connected_without_nomination_has_no_media_path_and_closes_after_a_lifetime() {
    let mut now = Instant::now();
    let mut s = gcm_setup(8, now);
    s.client.set_nominate(false);
    negotiate(&mut s);
    let mut net = connect(&mut s, 8, &mut now);
    assert_eq!(s.rtc.destination(), None, "DTLS alone selects nothing");
    // The client keeps checking (without USE-CANDIDATE); within a lifetime and a bit it is
    // closed for want of a media path.
    let closed = run(&mut s, &mut net, &mut now, Duration::from_secs(35), |s| {
        s.rtc.is_closed()
    });
    assert!(closed);
    let events = events(&mut s.rtc);
    assert!(
        events.contains(&Event::Closed(CloseReason::ConsentExpired)),
        "{events:?}"
    );
}
