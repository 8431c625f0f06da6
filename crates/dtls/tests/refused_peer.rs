//! A wrong certificate (issue 17): a misconfiguration, not an attack. The side that refuses
//! the peer's certificate sees the same refused flight at every retransmission; the side
//! whose certificate is refused gets a bad_certificate alert. Both must end well before the
//! total handshake timeout (60 s), each with a reason: the refusing side
//! `Error::BadCertificate`, the refused side `Error::AlertReceived(bad_certificate)`. Two
//! callsec peers on the simulated network's virtual clock.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use callsec_dtls::{AlertDescription, Connection, Error, Event, Fingerprint};
use callsec_tests::pair::{Netem, PEER_ADDR, Pair, configs};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

/// Which side expects the wrong fingerprint (and so refuses the other's certificate).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Refuser {
    Client,
    Server,
}

/// How each side ended: its `Closed` error and the virtual time it closed at.
#[derive(Debug)]
struct Ends {
    client: (Option<Error>, Duration),
    server: (Option<Error>, Duration),
}

/// A pair (cookie exchange on or off) in which `refuser` expects another certificate than
/// the peer's, run until both sides closed; when each closed and why.
fn refused_handshake(seed: u64, refuser: Refuser, cookie: bool) -> Ends {
    refused_handshake_on(seed, refuser, cookie, Netem::default())
}

/// As [`refused_handshake`], on a network that behaves as `netem` says.
fn refused_handshake_on(seed: u64, refuser: Refuser, cookie: bool, netem: Netem) -> Ends {
    let (cc, sc) = configs(seed, |c| c.cookie_exchange = cookie);
    let mut p = Pair::with_configs(seed, netem, cc.clone(), sc.clone());
    let wrong = Fingerprint::from_bytes([9; 32]);
    let mut rng = ChaCha20Rng::seed_from_u64(seed ^ 0x5eed);
    match refuser {
        Refuser::Client => {
            p.client = Connection::client(cc, &[wrong], p.now, &mut rng).unwrap();
        }
        Refuser::Server => {
            p.server = Connection::server(sc, &[wrong], PEER_ADDR, &mut rng).unwrap();
        }
    }
    let (mut client_end, mut server_end) = (None, None);
    for _ in 0..10_000 {
        if client_end.is_none() && p.client.is_closed() {
            client_end = Some(p.elapsed());
        }
        if server_end.is_none() && p.server.is_closed() {
            server_end = Some(p.elapsed());
        }
        if client_end.is_some() && server_end.is_some() {
            break;
        }
        if !p.deliver() && !p.advance() {
            break;
        }
    }
    p.deliver();
    let closed = |events: &[Event]| {
        assert!(
            !events.iter().any(|e| matches!(e, Event::Connected(_))),
            "connected with a wrong certificate"
        );
        let closes: Vec<_> = events
            .iter()
            .filter_map(|e| match e {
                Event::Closed { error } => Some(error.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(closes.len(), 1, "{events:?}");
        closes[0].clone()
    };
    Ends {
        client: (closed(&p.client_events), client_end.expect("client closed")),
        server: (closed(&p.server_events), server_end.expect("server closed")),
    }
}

/// Both sides end with a reason, well before the 60 s handshake timeout: the refusing side
/// after refusals in three retransmission rounds (1 + 2 s with the default 1 s initial
/// timeout), the refused side once silence followed the peer's bad_certificate alert for
/// three rounds (1 + 2 + 4 s).
#[test]
fn a_wrong_certificate_ends_both_sides_early_with_a_reason() {
    for (i, refuser) in [Refuser::Client, Refuser::Server].into_iter().enumerate() {
        for cookie in [true, false] {
            let ends = refused_handshake(500 + i as u64, refuser, cookie);
            let case = format!("{refuser:?} refuses, cookie {cookie}: {ends:?}");
            let (refusing, refused) = match refuser {
                Refuser::Client => (&ends.client, &ends.server),
                Refuser::Server => (&ends.server, &ends.client),
            };
            assert_eq!(
                refusing.0,
                Some(Error::BadCertificate("fingerprint mismatch")),
                "{case}"
            );
            assert_eq!(
                refused.0,
                Some(Error::AlertReceived(AlertDescription::BAD_CERTIFICATE)),
                "{case}"
            );
            assert_eq!(refusing.1, Duration::from_secs(3), "{case}");
            assert_eq!(refused.1, Duration::from_secs(7), "{case}");
        }
    }
}

/// Refusals within one retransmission round are one piece of evidence, however many: the
/// refused flight delivered again and again at one instant (as a spoofer could send it)
/// never ends the handshake. Only the total timeout does, then with the refusal as its error.
#[test]
fn refusals_in_one_round_never_end_a_handshake() {
    let (cc, sc) = configs(520, |c| c.cookie_exchange = false);
    let mut rng = ChaCha20Rng::seed_from_u64(520);
    let now = std::time::Instant::now();
    let wrong = Fingerprint::from_bytes([9; 32]);
    let mut client = Connection::client(cc.clone(), &[wrong], now, &mut rng).unwrap();
    let mut server =
        Connection::server(sc, &[cc.certificate.fingerprint()], PEER_ADDR, &mut rng).unwrap();
    let ch: Vec<_> = std::iter::from_fn(|| client.poll_transmit()).collect();
    for d in &ch {
        server.handle_datagram(now, d).unwrap();
    }
    let flight4: Vec<_> = std::iter::from_fn(|| server.poll_transmit()).collect();
    for _ in 0..50 {
        for d in &flight4 {
            client.handle_datagram(now, d).unwrap();
        }
    }
    assert!(!client.is_closed());
    assert_eq!(
        client.failure_reason(),
        Some(&Error::BadCertificate("fingerprint mismatch"))
    );
    assert_eq!(client.stats().discarded_messages, 50);
    // The retransmission timer alone (nothing more arrives) does not end it either.
    let mut t = now;
    while let Some(next) = client.poll_timeout() {
        if next >= now + cc.handshake_timeout {
            break;
        }
        t = next;
        client.handle_timeout(t).unwrap();
    }
    assert!(!client.is_closed() && t > now + Duration::from_secs(30));
    let end = client.handle_timeout(now + cc.handshake_timeout);
    assert_eq!(end, Err(Error::BadCertificate("fingerprint mismatch")));
    // The refusal's alert goes out at the end.
    let sent: Vec<_> = std::iter::from_fn(|| client.poll_transmit()).collect();
    let last = sent.last().expect("an alert");
    assert_eq!(&last[..3], &[21, 0xfe, 0xfd]);
    assert_eq!(&last[13..], &[2, AlertDescription::BAD_CERTIFICATE.0]);
}

/// One plaintext fatal alert, which anyone can forge, while the genuine peer keeps going:
/// the handshake completes, and the alert is forgotten once the peer's next message is taken.
#[test]
fn a_forged_fatal_alert_is_forgotten_when_the_peer_progresses() {
    let mut p = Pair::new(530, Netem::default(), |c| c.cookie_exchange = false);
    let alert = [21, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 9, 0, 2, 2, 42];
    p.client.handle_datagram(p.now, &alert).unwrap();
    assert_eq!(
        p.client.failure_reason(),
        Some(&Error::AlertReceived(AlertDescription::BAD_CERTIFICATE))
    );
    p.drive();
    assert!(p.client.is_connected() && p.server.is_connected());
    assert!(p.client_errors.is_empty() && p.server_errors.is_empty());
    assert_eq!(p.client.failure_reason(), None);
}

/// On a lossy network (20 % loss, duplication, reordering) the refusing side still ends with
/// bad_certificate before the total timeout in every seed, and in most well before 30 s
/// (lost copies of the refused flight move the third refused round later: the rounds double);
/// the refused side ends with the alert as its reason when it got through, else with a bare
/// timeout (there is nothing else to go by).
#[test]
fn a_wrong_certificate_on_a_lossy_network() {
    let netem = Netem {
        loss: 0.2,
        duplicate: 0.1,
        reorder: 0.2,
    };
    let mut under_30s = 0;
    for seed in 0..100u64 {
        let refuser = if seed % 2 == 0 {
            Refuser::Client
        } else {
            Refuser::Server
        };
        let ends = refused_handshake_on(700 + seed, refuser, seed % 4 < 2, netem);
        let (refusing, refused) = match refuser {
            Refuser::Client => (&ends.client, &ends.server),
            Refuser::Server => (&ends.server, &ends.client),
        };
        let case = format!("seed {seed}: {ends:?}");
        assert_eq!(
            refusing.0,
            Some(Error::BadCertificate("fingerprint mismatch")),
            "{case}"
        );
        assert!(refusing.1 < Duration::from_secs(60), "{case}");
        if refusing.1 < Duration::from_secs(30) {
            under_30s += 1;
        }
        // With the alert as the reason if it got through, else at its total timeout (60 s
        // from when it started keeping state, which under loss can be some seconds late).
        match &refused.0 {
            Some(Error::AlertReceived(AlertDescription::BAD_CERTIFICATE)) => {}
            Some(Error::Timeout) => assert!(refused.1 >= Duration::from_secs(60), "{case}"),
            other => panic!("{case}: {other:?}"),
        }
    }
    eprintln!("{under_30s} of 100 refusing sides ended within 30 s");
    assert!(under_30s >= 90, "{under_30s}");
}
