//! Hostile and broken input: no panic, no unbounded buffering. Input whose sender is known (a
//! ClientHello at a server that vouched for the address, authenticated records) is refused
//! with an error and an alert, and the connection stays closed and harmless. Plaintext input
//! during the handshake, which anyone who spoofs the peer's address can send, is discarded
//! without an alert, and the attacked endpoint itself still completes the handshake.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::type_complexity)]

use std::sync::Arc;
use std::time::Instant;

use callsec_dtls::{
    AlertDescription, AlertLevel, Certificate, Config, Connection, Error, Event,
    ExtendedMasterSecret, Fingerprint,
};
use callsec_tests::pair::{Netem, Pair, records};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

mod support;
use support::wire::{drain, events, extensions, fragment, message, record};

// ------------------------------------------------------------------ wire helpers ----------

/// Plaintext alerts in datagrams: (level, description).
fn plaintext_alerts(ds: &[Vec<u8>]) -> Vec<(u8, u8)> {
    ds.iter()
        .flat_map(|d| records(d))
        .filter(|r| r.0 == 21 && r.1 == 0)
        .map(|r| (r.3[0], r.3[1]))
        .collect()
}

/// A ClientHello body with the given fields.
fn client_hello(
    version: u16,
    suites: &[u16],
    compression: &[u8],
    exts: &[(u16, Vec<u8>)],
) -> Vec<u8> {
    let mut b = version.to_be_bytes().to_vec();
    b.extend_from_slice(&[7; 32]);
    b.push(0); // session_id
    b.push(0); // cookie
    b.extend_from_slice(&((suites.len() * 2) as u16).to_be_bytes());
    for s in suites {
        b.extend_from_slice(&s.to_be_bytes());
    }
    b.push(compression.len() as u8);
    b.extend_from_slice(compression);
    b.extend_from_slice(&extensions(exts.iter().map(|(t, d)| (*t, d.as_slice()))));
    b
}

/// The extensions a WebRTC client sends.
fn good_exts() -> Vec<(u16, Vec<u8>)> {
    vec![
        (10, vec![0, 2, 0, 23]),
        (11, vec![1, 0]),
        (13, vec![0, 2, 4, 3]),
        (14, vec![0, 2, 0, 7, 0]),
        (23, vec![]),
        (0xff01, vec![0]),
    ]
}

fn server_with(tweak: impl Fn(&mut Config)) -> Connection {
    let mut rng = ChaCha20Rng::seed_from_u64(11);
    let mut config = Config::new(Certificate::generate(&mut rng));
    config.cookie_exchange = false;
    tweak(&mut config);
    Connection::server(
        Arc::new(config),
        &[Fingerprint::from_bytes([1; 32])],
        callsec_tests::pair::PEER_ADDR,
        &mut rng,
    )
    .unwrap()
}

/// Feeds a ClientHello body to a fresh server; returns the result and what it sent.
fn offer(
    body: &[u8],
    tweak: impl Fn(&mut Config),
) -> (Result<(), Error>, Vec<Vec<u8>>, Connection) {
    let mut s = server_with(tweak);
    let r = s.handle_datagram(Instant::now(), &record(22, 0, 0, &message(1, 0, body)));
    let out = drain(&mut s);
    (r, out, s)
}

/// After a fatal error the connection stays closed and harmless: no more input, output,
/// timers or data.
fn closed_and_harmless(mut dead: Connection) {
    assert!(dead.is_closed());
    let _alert = drain(&mut dead);
    assert_eq!(
        dead.handle_datagram(Instant::now(), &[22, 0xfe, 0xfd]),
        Err(Error::Closed)
    );
    assert!(dead.handle_timeout(Instant::now()).is_ok());
    assert!(dead.send(b"x").is_err());
    assert!(dead.poll_timeout().is_none());
    assert!(dead.poll_transmit().is_none());
}

/// Plaintext input during the handshake that was refused: dropped without an alert or a
/// close (anyone who spoofs the peer's address could have sent it), counted, the reason kept.
fn assert_discarded(c: &mut Connection, res: Result<(), Error>, why: impl Fn(&Error) -> bool) {
    assert_eq!(res, Ok(()));
    assert!(!c.is_closed());
    let reason = c.last_discarded().expect("a reason for the discard");
    assert!(why(reason), "{reason:?}");
    assert!(c.stats().discarded_messages >= 1);
    assert!(plaintext_alerts(&drain(c)).is_empty(), "no alert");
}

/// The attacked endpoint itself still completes: the genuine datagrams reach it, then the
/// pair runs on (retransmitting what was drained), and both sides agree on the keys.
fn still_works(mut p: Pair, attacked_client: bool, genuine: &[Vec<u8>]) {
    for d in genuine {
        let side = if attacked_client {
            &mut p.client
        } else {
            &mut p.server
        };
        side.handle_datagram(p.now, d).unwrap();
    }
    p.drive();
    assert!(p.client.is_connected() && p.server.is_connected());
    let (c, s) = (p.client_connected(), p.server_connected());
    assert_eq!(c.srtp.local.key(), s.srtp.remote.key());
    assert_eq!(c.srtp.remote.key(), s.srtp.local.key());
    assert!(
        p.elapsed() <= std::time::Duration::from_secs(3),
        "within two retransmissions: {:?}",
        p.elapsed()
    );
}

fn expect_refusal(body: &[u8], tweak: impl Fn(&mut Config), alert: AlertDescription) {
    let (r, out, s) = offer(body, tweak);
    let err = r.expect_err("refused");
    assert_eq!(err.alert(), Some(alert), "{err:?}");
    assert_eq!(plaintext_alerts(&out), vec![(2, alert.0)], "{err:?}");
    closed_and_harmless(s);
}

// ------------------------------------------------------------------ negotiation -----------

#[test]
fn a_good_client_hello_is_accepted() {
    let (r, out, s) = offer(&client_hello(0xfefd, &[0xc02b], &[0], &good_exts()), |_| {});
    r.unwrap();
    assert!(!out.is_empty());
    assert!(!s.is_closed());
}

#[test]
fn refusals_carry_the_right_alert() {
    let gcm = [0xc02b];
    // DTLS 1.0 only: protocol_version.
    expect_refusal(
        &client_hello(0xfeff, &gcm, &[0], &good_exts()),
        |_| {},
        AlertDescription::PROTOCOL_VERSION,
    );
    // Only static-RSA suites: insufficient_security.
    expect_refusal(
        &client_hello(0xfefd, &[0x002f, 0x0035], &[0], &good_exts()),
        |_| {},
        AlertDescription::INSUFFICIENT_SECURITY,
    );
    // Only suites callsec does not implement (ECDHE_RSA, ChaCha): handshake_failure.
    expect_refusal(
        &client_hello(0xfefd, &[0xc02f, 0xcca9], &[0], &good_exts()),
        |_| {},
        AlertDescription::HANDSHAKE_FAILURE,
    );
    // No null compression: illegal_parameter.
    expect_refusal(
        &client_hello(0xfefd, &gcm, &[1], &good_exts()),
        |_| {},
        AlertDescription::ILLEGAL_PARAMETER,
    );
    // No P-256 among the groups.
    let mut ex = good_exts();
    ex[0] = (10, vec![0, 2, 0, 29]);
    expect_refusal(
        &client_hello(0xfefd, &gcm, &[0], &ex),
        |_| {},
        AlertDescription::HANDSHAKE_FAILURE,
    );
    // No ecdsa_secp256r1_sha256.
    let mut ex = good_exts();
    ex[2] = (13, vec![0, 2, 8, 4]);
    expect_refusal(
        &client_hello(0xfefd, &gcm, &[0], &ex),
        |_| {},
        AlertDescription::HANDSHAKE_FAILURE,
    );
    // Compressed points only.
    let mut ex = good_exts();
    ex[1] = (11, vec![1, 1]);
    expect_refusal(
        &client_hello(0xfefd, &gcm, &[0], &ex),
        |_| {},
        AlertDescription::ILLEGAL_PARAMETER,
    );
    // No use_srtp, or no common profile.
    let ex: Vec<_> = good_exts().into_iter().filter(|e| e.0 != 14).collect();
    expect_refusal(
        &client_hello(0xfefd, &gcm, &[0], &ex),
        |_| {},
        AlertDescription::HANDSHAKE_FAILURE,
    );
    let mut ex = good_exts();
    ex[3] = (14, vec![0, 2, 0, 8, 0]);
    expect_refusal(
        &client_hello(0xfefd, &gcm, &[0], &ex),
        |_| {},
        AlertDescription::HANDSHAKE_FAILURE,
    );
    // No extended_master_secret while it is required ...
    let ex: Vec<_> = good_exts().into_iter().filter(|e| e.0 != 23).collect();
    expect_refusal(
        &client_hello(0xfefd, &gcm, &[0], &ex),
        |_| {},
        AlertDescription::HANDSHAKE_FAILURE,
    );
    // ... but accepted when only preferred.
    let (r, _, _) = offer(&client_hello(0xfefd, &gcm, &[0], &ex), |c| {
        c.extended_master_secret = ExtendedMasterSecret::Preferred
    });
    r.unwrap();
    // Non-empty renegotiation_info (a renegotiation pretending to be initial).
    let mut ex = good_exts();
    ex[5] = (0xff01, vec![12, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
    expect_refusal(
        &client_hello(0xfefd, &gcm, &[0], &ex),
        |_| {},
        AlertDescription::HANDSHAKE_FAILURE,
    );
    // Duplicate extension.
    let mut ex = good_exts();
    ex.push((23, vec![]));
    expect_refusal(
        &client_hello(0xfefd, &gcm, &[0], &ex),
        |_| {},
        AlertDescription::ILLEGAL_PARAMETER,
    );
}

#[test]
fn truncated_and_malformed_client_hellos_are_decode_errors() {
    let body = client_hello(0xfefd, &[0xc02b], &[0], &good_exts());
    // Every truncation that cannot be a hello without extensions.
    let no_ext_at = 2 + 32 + 1 + 1 + 2 + 2 + 2;
    for n in (0..body.len()).step_by(3).filter(|n| *n != no_ext_at) {
        let (r, out, s) = offer(&body[..n], |_| {});
        assert!(matches!(r, Err(Error::Decode(_))), "len {n}: {r:?}");
        assert_eq!(plaintext_alerts(&out), vec![(2, 50)]);
        assert!(s.is_closed());
    }
    // Trailing garbage.
    let mut long = body.clone();
    long.push(0);
    assert!(matches!(offer(&long, |_| {}).0, Err(Error::Decode(_))));
    // An odd cipher suite list length.
    let mut odd = body.clone();
    odd[37] = 3;
    assert!(offer(&odd, |_| {}).0.is_err());
}

// ------------------------------------------------------------------ fragments -------------

#[test]
fn fragment_beyond_message_length() {
    let mut s = server_with(|_| {});
    let d = record(22, 0, 0, &fragment(1, 10, 0, 8, b"abc"));
    assert!(matches!(
        s.handle_datagram(Instant::now(), &d),
        Err(Error::Decode(_))
    ));
    assert_eq!(plaintext_alerts(&drain(&mut s)), vec![(2, 50)]);
    closed_and_harmless(s);
}

#[test]
fn message_length_changing_between_fragments() {
    let body = client_hello(0xfefd, &[0xc02b], &[0], &good_exts());
    let mut s = server_with(|_| {});
    let len = body.len() as u32;
    s.handle_datagram(
        Instant::now(),
        &record(22, 0, 0, &fragment(1, len, 0, 0, &body[..20])),
    )
    .unwrap();
    let r = s.handle_datagram(
        Instant::now(),
        &record(22, 0, 1, &fragment(1, len + 1, 0, 20, &body[20..])),
    );
    assert!(matches!(r, Err(Error::IllegalParameter(_))), "{r:?}");
    assert_eq!(plaintext_alerts(&drain(&mut s)), vec![(2, 47)]);
    closed_and_harmless(s);
}

#[test]
fn zero_length_and_endless_fragments_hit_the_fragment_limit() {
    let mut s = server_with(|_| {});
    let mut failed = None;
    for i in 0..10_000u64 {
        let d = record(22, 0, i, &fragment(1, 100, 0, 0, b""));
        if let Err(e) = s.handle_datagram(Instant::now(), &d) {
            failed = Some((i, e));
            break;
        }
    }
    let (i, e) = failed.expect("endless fragments must fail");
    assert!(i < 200, "failed only after {i}");
    assert!(matches!(e, Error::LimitExceeded(_)));
    closed_and_harmless(s);
}

#[test]
fn enormous_message_length_is_refused_without_allocating_it() {
    let mut s = server_with(|_| {});
    let d = record(22, 0, 0, &fragment(1, 0xff_ffff, 0, 0, b"x"));
    assert!(matches!(
        s.handle_datagram(Instant::now(), &d),
        Err(Error::LimitExceeded(_))
    ));
    closed_and_harmless(s);
}

#[test]
fn far_future_messages_are_dropped_not_buffered() {
    let mut s = server_with(|_| {});
    // After a ClientHello resync, messages far ahead are dropped.
    let body = client_hello(0xfefd, &[0xc02b], &[0], &good_exts());
    s.handle_datagram(Instant::now(), &record(22, 0, 0, &message(1, 0, &body)))
        .unwrap();
    let before = s.stats().dropped_records;
    for seq in 100..200u16 {
        s.handle_datagram(
            Instant::now(),
            &record(22, 0, u64::from(seq), &message(11, seq, &[0; 1000])),
        )
        .unwrap();
    }
    assert_eq!(s.stats().dropped_records, before + 100);
    assert!(!s.is_closed());
}

#[test]
fn garbage_datagrams_never_panic() {
    let mut s = server_with(|_| {});
    let mut rng = ChaCha20Rng::seed_from_u64(3);
    use rand_core::RngCore;
    for i in 0..2000 {
        let mut d = vec![0u8; (rng.next_u32() % 300) as usize];
        rng.fill_bytes(&mut d);
        if i % 2 == 0 && d.len() > 13 {
            d[0] = 22;
            d[1] = 0xfe;
            d[2] = 0xfd;
        }
        let _ = s.handle_datagram(Instant::now(), &d);
        let _ = drain(&mut s);
        if s.is_closed() {
            s = server_with(|_| {});
        }
    }
}

// ------------------------------------------------------------------ flight surgery --------

/// Runs a pair (no cookie) until the server's flight 4 is produced; returns the pair and the
/// flight's records (type, epoch, seq, fragment).
fn pair_at_flight4(seed: u64) -> (Pair, Vec<Rec>) {
    let mut p = Pair::new(seed, Netem::default(), |c| c.cookie_exchange = false);
    let ch = drain(&mut p.client);
    for d in &ch {
        p.server.handle_datagram(p.now, d).unwrap();
    }
    let flight4: Vec<_> = drain(&mut p.server)
        .iter()
        .flat_map(|d| records(d))
        .collect();
    (p, flight4)
}

/// (content type, epoch, record seq, fragment) of one record.
type Rec = (u8, u16, u64, Vec<u8>);

fn hs_type(rec: &Rec) -> u8 {
    rec.3[0]
}

fn reassemble(recs: &[Rec]) -> Vec<u8> {
    recs.iter()
        .flat_map(|r| record(r.0, r.1, r.2, &r.3))
        .collect()
}

/// Which genuine flight an attacker copies, edits and sends first: flight 4 to the client,
/// or flight 5 to the server.
#[derive(Clone, Copy, Debug)]
enum Attacked {
    Client,
    Server,
}

/// One spoofed-flight case: the genuine flight (seed `seed`) is edited by `edit` and reaches
/// the attacked endpoint first; the forgery must be discarded for a reason `why` accepts,
/// with no alert and no Connected event, and the same endpoint must then complete the
/// handshake from the genuine flight ([`still_works`]).
fn spoofed_flight(
    seed: u64,
    attacked: Attacked,
    edit: impl FnOnce(&mut Vec<Rec>),
    why: fn(&Error) -> bool,
) {
    let (mut p, f4) = pair_at_flight4(seed);
    let mut flight = match attacked {
        Attacked::Client => f4,
        Attacked::Server => {
            p.client.handle_datagram(p.now, &reassemble(&f4)).unwrap();
            drain(&mut p.client)
                .iter()
                .flat_map(|d| records(d))
                .collect()
        }
    };
    let genuine = reassemble(&flight);
    edit(&mut flight);
    let c = match attacked {
        Attacked::Client => &mut p.client,
        Attacked::Server => &mut p.server,
    };
    let res = c.handle_datagram(p.now, &reassemble(&flight));
    assert_discarded(c, res, why);
    assert!(
        !events(c).iter().any(|e| matches!(e, Event::Connected(_))),
        "{attacked:?} connected on a forged flight"
    );
    still_works(p, matches!(attacked, Attacked::Client), &[genuine]);
}

/// The plaintext handshake records of message type `ty` in a flight.
fn plaintext_of(ty: u8) -> impl Fn(&&mut Rec) -> bool {
    move |r| r.0 == 22 && r.1 == 0 && hs_type(r) == ty
}

/// The message_seq of a one-fragment handshake record.
fn msg_seq(r: &Rec) -> u16 {
    u16::from_be_bytes([r.3[4], r.3[5]])
}

/// Edit: every plaintext message of type `ty` one byte short.
fn truncate(ty: u8) -> impl FnOnce(&mut Vec<Rec>) {
    move |f| {
        for r in f.iter_mut().filter(plaintext_of(ty)) {
            let body = r.3[12..r.3.len() - 1].to_vec();
            r.3 = message(ty, msg_seq(r), &body);
        }
    }
}

/// Edit: the plaintext message of type `ty` gets the body `body` (same message_seq).
fn rebody(ty: u8, body: &'static [u8]) -> impl FnOnce(&mut Vec<Rec>) {
    move |f| {
        let r = f.iter_mut().find(plaintext_of(ty)).unwrap();
        r.3 = message(ty, msg_seq(r), body);
    }
}

fn is_decode(e: &Error) -> bool {
    matches!(e, Error::Decode(_))
}

fn is_unexpected(e: &Error) -> bool {
    matches!(e, Error::UnexpectedMessage(_))
}

#[test]
fn truncated_handshake_messages_are_discarded() {
    // ServerHello, Certificate, ServerKeyExchange, CertificateRequest one byte short at the
    // client; Certificate, ClientKeyExchange, CertificateVerify at the server.
    for ty in [2u8, 11, 12, 13] {
        spoofed_flight(20, Attacked::Client, truncate(ty), is_decode);
    }
    for ty in [11u8, 16, 15] {
        spoofed_flight(
            70 + u64::from(ty),
            Attacked::Server,
            truncate(ty),
            is_decode,
        );
    }
    // A ServerHelloDone with a body.
    spoofed_flight(21, Attacked::Client, rebody(14, &[0]), is_decode);
}

#[test]
fn forged_flights_are_discarded() {
    // A CertificateRequest where the ServerKeyExchange must be: the later messages take its
    // message_seq.
    let without_ske = |f: &mut Vec<Rec>| {
        f.retain(|r| hs_type(r) != 12);
        for r in f.iter_mut().filter(|r| hs_type(r) > 12) {
            let seq = msg_seq(r) - 1;
            r.3[4..6].copy_from_slice(&seq.to_be_bytes());
        }
    };
    spoofed_flight(22, Attacked::Client, without_ske, is_unexpected);
    // In place of the CertificateVerify (same message_seq), another ClientKeyExchange: the
    // client skipped it. The genuine flight's epoch-1 Finished came with the forgery and
    // waits, authenticated, in its slot.
    let cke_for_cv = |f: &mut Vec<Rec>| {
        let cke = f.iter_mut().find(plaintext_of(16)).unwrap().3[12..].to_vec();
        let cv = f.iter_mut().find(plaintext_of(15)).unwrap();
        cv.3 = message(16, msg_seq(cv), &cke);
    };
    spoofed_flight(26, Attacked::Server, cke_for_cv, is_unexpected);
    // An empty client Certificate: RFC 5246 §7.4.6, refused (but in plaintext, discarded).
    spoofed_flight(27, Attacked::Server, rebody(11, &[0, 0, 0]), |e| {
        matches!(e, Error::PeerIncompatible(_))
    });
    // A CertificateVerify whose signature no longer verifies.
    let tamper_cv = |f: &mut Vec<Rec>| {
        let cv = f.iter_mut().find(plaintext_of(15)).unwrap();
        let last = cv.3.len() - 1;
        cv.3[last] ^= 1;
    };
    spoofed_flight(110, Attacked::Server, tamper_cv, |e| {
        matches!(e, Error::DecryptError(_))
    });
}

// ------------------------------------------------------------------ after the handshake ---

fn connected_pair(seed: u64) -> Pair {
    let mut p = Pair::new(seed, Netem::default(), |_| {});
    p.drive();
    assert!(p.client.is_connected() && p.server.is_connected());
    p
}

fn app_data_events(evs: &[Event]) -> Vec<Vec<u8>> {
    evs.iter()
        .filter_map(|e| match e {
            Event::ApplicationData(d) => Some(d.clone()),
            _ => None,
        })
        .collect()
}

/// The client's next application-data record carrying `data`, not yet delivered.
fn sealed(p: &mut Pair, data: &[u8]) -> Vec<u8> {
    p.client.send(data).unwrap();
    p.client.poll_transmit().unwrap()
}

/// Application data the server delivered since the last call.
fn server_received(p: &mut Pair) -> Vec<Vec<u8>> {
    app_data_events(&events(&mut p.server))
}

/// The association still carries data: a fresh record from the client gets through, once.
fn still_delivers(p: &mut Pair) {
    assert!(p.server.is_connected());
    let d = sealed(p, b"still here");
    p.server.handle_datagram(p.now, &d).unwrap();
    assert_eq!(server_received(p), vec![b"still here".to_vec()]);
}

/// Records the server must drop after the handshake, each counted in `dropped_records`,
/// none delivered, the association intact.
#[test]
fn forged_records_after_the_handshake_are_dropped() {
    type Forge = fn(&mut Pair) -> Vec<Vec<u8>>;
    let cases: [(&str, Forge); 4] = [
        ("plaintext application data", |_| {
            vec![record(23, 0, 1000, b"plaintext!")]
        }),
        ("a plaintext fatal alert", |_| {
            vec![record(21, 0, 1001, &[2, 40])]
        }),
        ("future epochs", |_| {
            [2u16, 3, 0xffff]
                .map(|epoch| record(23, epoch, 1, &[0; 40]))
                .to_vec()
        }),
        ("a tampered record", |p| {
            let mut d = sealed(p, b"data");
            let last = d.len() - 1;
            d[last] ^= 0x80;
            vec![d]
        }),
    ];
    for (seed, (what, forge)) in (32..).zip(cases) {
        let mut p = connected_pair(seed);
        let _ = events(&mut p.server);
        let forged = forge(&mut p);
        let before = p.server.stats();
        for d in &forged {
            p.server.handle_datagram(p.now, d).unwrap();
        }
        let after = p.server.stats();
        assert!(server_received(&mut p).is_empty(), "{what}");
        assert_eq!(
            (after.dropped_records - before.dropped_records)
                + (after.discarded_messages - before.discarded_messages),
            forged.len() as u64,
            "{what}"
        );
        still_delivers(&mut p);
    }
}

#[test]
fn replayed_record_is_dropped() {
    let mut p = connected_pair(30);
    let _ = events(&mut p.server);
    let d = sealed(&mut p, b"once");
    p.server.handle_datagram(p.now, &d).unwrap();
    p.server.handle_datagram(p.now, &d).unwrap();
    assert_eq!(server_received(&mut p), vec![b"once".to_vec()]);
    assert_eq!(p.server.stats().replayed_records, 1);
    still_delivers(&mut p);
}

#[test]
fn a_dropped_forgery_does_not_move_the_replay_window() {
    // A tampered record fails authentication; the genuine record with that sequence
    // number still gets in afterwards.
    let mut p = connected_pair(31);
    let _ = events(&mut p.server);
    let mut d = sealed(&mut p, b"data");
    let last = d.len() - 1;
    d[last] ^= 0x80;
    p.server.handle_datagram(p.now, &d).unwrap();
    assert!(server_received(&mut p).is_empty());
    assert_eq!(p.server.stats().dropped_records, 1);
    d[last] ^= 0x80;
    p.server.handle_datagram(p.now, &d).unwrap();
    assert_eq!(server_received(&mut p), vec![b"data".to_vec()]);
}

#[test]
fn an_epoch_1_record_rewritten_to_another_epoch_is_dropped() {
    let mut p = connected_pair(33);
    let _ = events(&mut p.server);
    let d = sealed(&mut p, b"x");
    for epoch in [0u16, 2] {
        let mut e = d.clone();
        e[3..5].copy_from_slice(&epoch.to_be_bytes());
        p.server.handle_datagram(p.now, &e).unwrap();
    }
    assert!(server_received(&mut p).is_empty());
    assert!(p.server.is_connected());
    p.server.handle_datagram(p.now, &d).unwrap();
    assert_eq!(server_received(&mut p), vec![b"x".to_vec()]);
}

#[test]
fn renegotiation_is_refused_with_a_warning() {
    let mut p = connected_pair(34);
    let _ = events(&mut p.client);
    // A new ClientHello after the handshake.
    let ch = client_hello(0xfefd, &[0xc02b], &[0], &good_exts());
    p.server
        .handle_datagram(p.now, &record(22, 0, 500, &message(1, 9, &ch)))
        .unwrap();
    p.deliver();
    assert!(p.client_events.iter().any(|e| matches!(
        e,
        Event::Alert { level: AlertLevel::Warning, description } if *description == AlertDescription::NO_RENEGOTIATION
    )));
    assert!(p.server.is_connected() && p.client.is_connected());
    // And a HelloRequest to the client.
    p.client
        .handle_datagram(p.now, &record(22, 0, 600, &message(0, 9, &[])))
        .unwrap();
    p.deliver();
    assert!(p.server_events.iter().any(|e| matches!(
        e,
        Event::Alert { description, .. } if *description == AlertDescription::NO_RENEGOTIATION
    )));
    p.client.send(b"still here").unwrap();
    p.deliver();
    assert!(app_data_events(&p.server_events).contains(&b"still here".to_vec()));
}

#[test]
fn retransmitted_final_flight_answers_repeated_client_flight() {
    let mut p = Pair::new(60, Netem::default(), |c| c.cookie_exchange = false);
    // Run until the server sent its final flight, then lose it.
    let ch = drain(&mut p.client);
    for d in &ch {
        p.server.handle_datagram(p.now, d).unwrap();
    }
    for d in drain(&mut p.server) {
        p.client.handle_datagram(p.now, &d).unwrap();
    }
    let f5 = drain(&mut p.client);
    for d in &f5 {
        p.server.handle_datagram(p.now, d).unwrap();
    }
    assert!(p.server.is_connected());
    let lost = drain(&mut p.server);
    assert!(!lost.is_empty());
    // The client's timer fires and it repeats flight 5; the server answers with flight 6.
    let t = p.client.poll_timeout().unwrap();
    p.client.handle_timeout(t).unwrap();
    for d in drain(&mut p.client) {
        p.server.handle_datagram(t, &d).unwrap();
    }
    let again = drain(&mut p.server);
    assert_eq!(again.len(), lost.len());
    for d in again {
        p.client.handle_datagram(t, &d).unwrap();
    }
    assert!(p.client.is_connected());
    assert_eq!(p.server.stats().repeats_answered, 1);
    assert_eq!(p.server.stats().retransmissions, 0);
}

#[test]
fn replayed_old_fragments_do_not_amplify() {
    let mut p = Pair::new(61, Netem::default(), |c| c.cookie_exchange = false);
    let ch = drain(&mut p.client);
    for d in &ch {
        p.server.handle_datagram(p.now, d).unwrap();
    }
    let _flight4 = drain(&mut p.server);
    // The client's ClientHello arrives 100 more times at once (with fresh record numbers,
    // as a peer replaying it would send): the server resends flight 4 once, not 100 times.
    let rec = records(&ch[0]).remove(0);
    for i in 0..100u64 {
        p.server
            .handle_datagram(p.now, &record(rec.0, rec.1, 1000 + i, &rec.3))
            .unwrap();
    }
    assert_eq!(p.server.stats().repeats_answered, 1);
    assert!(!drain(&mut p.server).is_empty());
    // Later (the peer's next retransmission) it answers again.
    let later = p.now + std::time::Duration::from_secs(1);
    p.server
        .handle_datagram(later, &record(rec.0, rec.1, 2000, &rec.3))
        .unwrap();
    assert_eq!(p.server.stats().repeats_answered, 2);
}

#[test]
fn unauthenticated_epoch0_records_cannot_kill_an_established_association() {
    // After the handshake anyone who knows the 5-tuple can send plaintext epoch-0 records:
    // a malformed ChangeCipherSpec, a truncated handshake header, a fragment beyond its
    // message, an overlong message. None of them may close the association (RFC 6347
    // §4.1.2.7: invalid records are dropped), and none is answered with an alert.
    let mut p = connected_pair(35);
    let _ = (events(&mut p.client), events(&mut p.server));
    let hostile: [Vec<u8>; 6] = [
        record(20, 0, 700, &[2]),
        record(20, 0, 701, &[1, 1]),
        record(22, 0, 702, &[1, 0, 0]),
        record(22, 0, 703, &fragment(11, 4, 9, 2, &[0; 8])),
        record(22, 0, 704, &fragment(11, 0xff_ffff, 9, 0, &[0; 8])),
        record(22, 0, 705, &message(20, 3, &[0; 12])),
    ];
    for side in [&mut p.server, &mut p.client] {
        for d in &hostile {
            assert_eq!(side.handle_datagram(p.now, d), Ok(()), "{d:?}");
            assert!(side.is_connected(), "{d:?}");
        }
        assert!(
            drain(side).is_empty(),
            "no alert for unauthenticated records"
        );
        assert!(events(side).is_empty());
    }
    p.client.send(b"alive").unwrap();
    p.server.send(b"alive too").unwrap();
    p.deliver();
    assert!(app_data_events(&p.server_events).contains(&b"alive".to_vec()));
    assert!(app_data_events(&p.client_events).contains(&b"alive too".to_vec()));
}

#[test]
fn plaintext_renegotiation_attempts_do_not_amplify() {
    // One datagram packed with ClientHello fragments (each at offset 0) gets at most one
    // no_renegotiation warning, and a flood of such datagrams at most one per quiet period.
    let mut p = connected_pair(36);
    let _ = events(&mut p.server);
    let mut body = Vec::new();
    for seq in 9..60u16 {
        body.extend_from_slice(&fragment(1, 100, seq, 0, &[]));
    }
    for i in 0..20u64 {
        p.server
            .handle_datagram(p.now, &record(22, 0, 800 + i, &body))
            .unwrap();
    }
    assert_eq!(drain(&mut p.server).len(), 1);
    assert!(p.server.is_connected());
}

/// Flight 4 with its ServerHello body rewritten by `edit`, fed to the client: the result,
/// the pair, and the genuine flight 4.
fn client_meets_server_hello(
    seed: u64,
    tweak: impl Fn(&mut Config),
    edit: impl Fn(&mut Vec<u8>),
) -> (Result<(), Error>, Pair, Vec<u8>) {
    let (cc, sc) = callsec_tests::pair::configs(seed, |c| c.cookie_exchange = false);
    let mut cc = (*cc).clone();
    tweak(&mut cc);
    let mut p = Pair::with_configs(seed, Netem::default(), Arc::new(cc), sc);
    for d in drain(&mut p.client) {
        p.server.handle_datagram(p.now, &d).unwrap();
    }
    let mut f4: Vec<_> = drain(&mut p.server)
        .iter()
        .flat_map(|d| records(d))
        .collect();
    let genuine = reassemble(&f4);
    let sh = f4.iter_mut().find(|r| hs_type(r) == 2).unwrap();
    let seq = u16::from_be_bytes([sh.3[4], sh.3[5]]);
    let mut body = sh.3[12..].to_vec();
    edit(&mut body);
    sh.3 = message(2, seq, &body);
    let res = p.client.handle_datagram(p.now, &reassemble(&f4));
    (res, p, genuine)
}

/// Offset of the extensions block in a ServerHello with an empty session_id.
const SH_EXTENSIONS: usize = 2 + 32 + 1 + 2 + 1;

/// Removes the extension `ty` from a ServerHello body.
fn drop_server_extension(body: &mut Vec<u8>, ty: u16) {
    let mut i = SH_EXTENSIONS + 2;
    while i < body.len() {
        let t = u16::from_be_bytes([body[i], body[i + 1]]);
        let n = usize::from(u16::from_be_bytes([body[i + 2], body[i + 3]]));
        if t == ty {
            body.drain(i..i + 4 + n);
            let total = u16::from_be_bytes([body[SH_EXTENSIONS], body[SH_EXTENSIONS + 1]]);
            let total = total - 4 - n as u16;
            body[SH_EXTENSIONS..SH_EXTENSIONS + 2].copy_from_slice(&total.to_be_bytes());
            return;
        }
        i += 4 + n;
    }
    panic!("no extension {ty}");
}

#[test]
fn client_refuses_a_server_hello_it_did_not_ask_for() {
    let cases: [(&str, Box<dyn Fn(&mut Vec<u8>)>, AlertDescription); 6] = [
        (
            "DTLS 1.0",
            Box::new(|b| b[..2].copy_from_slice(&[0xfe, 0xff])),
            AlertDescription::PROTOCOL_VERSION,
        ),
        (
            "suite not offered (ECDHE_ECDSA_AES_256_GCM)",
            Box::new(|b| b[35..37].copy_from_slice(&[0xc0, 0x2c])),
            AlertDescription::ILLEGAL_PARAMETER,
        ),
        (
            "compression",
            Box::new(|b| b[37] = 1),
            AlertDescription::ILLEGAL_PARAMETER,
        ),
        (
            "no extended_master_secret while required",
            Box::new(|b| drop_server_extension(b, 23)),
            AlertDescription::HANDSHAKE_FAILURE,
        ),
        (
            "no use_srtp",
            Box::new(|b| drop_server_extension(b, 14)),
            AlertDescription::HANDSHAKE_FAILURE,
        ),
        (
            "an extension the client did not offer (session_ticket)",
            Box::new(|b| {
                b.extend_from_slice(&[0, 35, 0, 0]);
                let total = u16::from_be_bytes([b[SH_EXTENSIONS], b[SH_EXTENSIONS + 1]]) + 4;
                b[SH_EXTENSIONS..SH_EXTENSIONS + 2].copy_from_slice(&total.to_be_bytes());
            }),
            AlertDescription::UNSUPPORTED_EXTENSION,
        ),
    ];
    // Each refusal is of a plaintext message, so it is discarded (the reason kept), and the
    // genuine ServerHello still completes the handshake.
    for (i, (what, edit, alert)) in cases.into_iter().enumerate() {
        let (res, mut p, genuine) = client_meets_server_hello(90 + i as u64, |_| {}, edit);
        assert_discarded(&mut p.client, res, |e| e.alert() == Some(alert));
        assert_eq!(
            p.client.last_discarded().and_then(Error::alert),
            Some(alert),
            "{what}"
        );
        still_works(p, true, &[genuine]);
    }
    // Without extended_master_secret, a client that only prefers it carries on.
    let (res, mut p, _) = client_meets_server_hello(
        97,
        |c| c.extended_master_secret = ExtendedMasterSecret::Preferred,
        |b| drop_server_extension(b, 23),
    );
    assert_eq!(res, Ok(()));
    assert!(plaintext_alerts(&drain(&mut p.client)).is_empty() && !p.client.is_closed());
    assert_eq!(p.client.stats().discarded_messages, 0);
}

#[test]
fn a_vouched_server_that_never_gets_a_whole_client_hello_times_out() {
    // A server made after a HelloVerifier accepted the first fragment keeps state from the
    // first datagram on; if the rest of the ClientHello never comes, the total handshake
    // timeout still ends it (it used to have no deadline at all).
    let mut rng = ChaCha20Rng::seed_from_u64(120);
    let config = Arc::new(Config::new(Certificate::generate(&mut rng)));
    let mut s = Connection::server_verified(
        config.clone(),
        &[Fingerprint::from_bytes([1; 32])],
        callsec_tests::pair::PEER_ADDR,
        &mut rng,
    )
    .unwrap();
    assert_eq!(s.poll_timeout(), None);
    let now = Instant::now();
    let ch = client_hello(0xfefd, &[0xc02b], &[0], &good_exts());
    let len = ch.len() as u32;
    s.handle_datagram(now, &record(22, 0, 0, &fragment(1, len, 0, 0, &ch[..40])))
        .unwrap();
    let deadline = s.poll_timeout().expect("a deadline");
    assert_eq!(deadline, now + config.handshake_timeout);
    // More fragments do not push it back.
    let later = now + std::time::Duration::from_secs(30);
    s.handle_datagram(
        later,
        &record(22, 0, 1, &fragment(1, len, 0, 40, &ch[40..50])),
    )
    .unwrap();
    assert_eq!(s.poll_timeout(), Some(deadline));
    assert_eq!(s.handle_timeout(deadline), Err(Error::Timeout));
    assert!(s.is_closed());
}

#[test]
fn forged_epoch0_sequence_numbers_do_not_hide_a_repeated_flight() {
    // The server's final flight is lost. Before the client repeats its flight, someone sends
    // the server a plaintext record numbered 2^48 - 1. The repeat must still be answered:
    // after the handshake epoch-0 records move no replay window.
    let mut p = Pair::new(62, Netem::default(), |c| c.cookie_exchange = false);
    for d in drain(&mut p.client) {
        p.server.handle_datagram(p.now, &d).unwrap();
    }
    for d in drain(&mut p.server) {
        p.client.handle_datagram(p.now, &d).unwrap();
    }
    for d in drain(&mut p.client) {
        p.server.handle_datagram(p.now, &d).unwrap();
    }
    assert!(p.server.is_connected());
    let _lost = drain(&mut p.server);
    p.server
        .handle_datagram(p.now, &record(23, 0, (1 << 48) - 1, b"forged"))
        .unwrap();
    let t = p.client.poll_timeout().unwrap();
    p.client.handle_timeout(t).unwrap();
    for d in drain(&mut p.client) {
        p.server.handle_datagram(t, &d).unwrap();
    }
    assert_eq!(p.server.stats().repeats_answered, 1);
    for d in drain(&mut p.server) {
        p.client.handle_datagram(t, &d).unwrap();
    }
    assert!(p.client.is_connected());
}

#[test]
fn plaintext_change_cipher_spec_and_empty_alerts_are_ignored() {
    // RFC 6347 §4.1.2.7 and §4.1: a ChangeCipherSpec before the key exchange, zero-length
    // ChangeCipherSpec and alert records, and plaintext alerts (even fatal ones) are dropped
    // during the handshake: anyone who spoofs the server's address could send them.
    let (mut p, f4) = pair_at_flight4(24);
    let mut d = record(20, 0, 50, &[1]);
    d.extend_from_slice(&record(20, 0, 51, &[]));
    d.extend_from_slice(&record(21, 0, 52, &[]));
    d.extend_from_slice(&record(21, 0, 53, &[2, 40]));
    d.extend_from_slice(&record(21, 0, 54, &[1, 0]));
    let res = p.client.handle_datagram(p.now, &d);
    assert_eq!(res, Ok(()));
    assert!(!p.client.is_closed());
    assert!(drain(&mut p.client).is_empty());
    assert!(events(&mut p.client).is_empty());
    // The same at the server, before it sent anything and after.
    let mut s = server_with(|_| {});
    assert_eq!(s.handle_datagram(p.now, &d), Ok(()));
    assert!(!s.is_closed() && drain(&mut s).is_empty());
    assert_eq!(p.server.handle_datagram(p.now, &d), Ok(()));
    assert!(!p.server.is_closed() && drain(&mut p.server).is_empty());
    still_works(p, true, &[reassemble(&f4)]);
}

#[test]
fn a_plaintext_finished_never_takes_the_place_of_the_encrypted_one() {
    // Flight 4 then a Finished in epoch 0 at the message_seq the server's Finished will have:
    // it must come encrypted, so the plaintext one waits in a slot of its own and is ignored.
    let (mut p, f4) = pair_at_flight4(25);
    let mut d = reassemble(&f4);
    d.extend_from_slice(&record(22, 0, 60, &message(20, 5, &[0; 12])));
    assert_eq!(p.client.handle_datagram(p.now, &d), Ok(()));
    // And at the server: a plaintext Finished at the client Finished's message_seq (4),
    // before flight 5, of another length.
    let spoof = record(22, 0, 61, &message(20, 4, &[0; 40]));
    assert_eq!(p.server.handle_datagram(p.now, &spoof), Ok(()));
    assert!(!p.server.is_closed() && !p.client.is_closed());
    still_works(p, true, &[]);
}

#[test]
fn repeated_hello_verify_requests() {
    let mut rng = ChaCha20Rng::seed_from_u64(40);
    let config = Arc::new(Config::new(Certificate::generate(&mut rng)));
    let mut c = Connection::client(
        config,
        &[Fingerprint::from_bytes([0; 32])],
        Instant::now(),
        &mut rng,
    )
    .unwrap();
    let _ = drain(&mut c);
    let hvr = |seq: u16| {
        record(
            22,
            0,
            u64::from(seq),
            &message(3, seq, &[0xfe, 0xff, 4, seq as u8, 2, 3, 4]),
        )
    };
    // Each new HelloVerifyRequest gets exactly one new ClientHello (no amplification);
    // a duplicate gets nothing, nor does one at another message_seq with the cookie the
    // last ClientHello carried (HelloVerifyRequests take no message_seq).
    for seq in 0..4u16 {
        c.handle_datagram(Instant::now(), &hvr(seq)).unwrap();
        assert_eq!(drain(&mut c).len(), 1);
        c.handle_datagram(Instant::now(), &hvr(seq)).unwrap();
        assert!(drain(&mut c).is_empty());
        let mut same_cookie = hvr(seq);
        same_cookie[13 + 5] += 1;
        c.handle_datagram(Instant::now(), &same_cookie).unwrap();
        assert!(drain(&mut c).is_empty());
    }
    // The fifth is not followed (nor is the client closed: it could be a spoofer's).
    let r = c.handle_datagram(Instant::now(), &hvr(4));
    assert_discarded(&mut c, r, |e| matches!(e, Error::UnexpectedMessage(_)));
    assert_eq!(c.stats().hello_verify_requests, 4);
}

#[test]
fn truncated_hello_verify_request_is_discarded() {
    let mut rng = ChaCha20Rng::seed_from_u64(80);
    let config = Arc::new(Config::new(Certificate::generate(&mut rng)));
    let mut c = Connection::client(
        config,
        &[Fingerprint::from_bytes([0; 32])],
        Instant::now(),
        &mut rng,
    )
    .unwrap();
    let _ = drain(&mut c);
    // Cookie length 4 announced, 3 present.
    let r = c.handle_datagram(
        Instant::now(),
        &record(22, 0, 0, &message(3, 0, &[0xfe, 0xff, 4, 1, 2, 3])),
    );
    assert_discarded(&mut c, r, |e| matches!(e, Error::Decode(_)));
    // A well-formed one at the same message_seq is still followed.
    c.handle_datagram(
        Instant::now(),
        &record(22, 0, 1, &message(3, 0, &[0xfe, 0xff, 3, 1, 2, 3])),
    )
    .unwrap();
    assert_eq!(drain(&mut c).len(), 1);
    assert_eq!(c.stats().hello_verify_requests, 1);
}

#[test]
fn a_wrong_fingerprint_never_connects_on_either_side() {
    // The certificate arrives in plaintext, so a mismatch could be a spoofer's: it is
    // discarded (bad_certificate kept as the reason), the handshake never completes, no key
    // leaves. (How a refused handshake ends early: tests/refused_peer.rs.)
    for client_side in [true, false] {
        let (cc, sc) = callsec_tests::pair::configs(50, |_| {});
        let mut rng = ChaCha20Rng::seed_from_u64(50);
        let now = Instant::now();
        let wrong = Fingerprint::from_bytes([9; 32]);
        let (to_server, to_client) = if client_side {
            (wrong, cc.certificate.fingerprint())
        } else {
            (sc.certificate.fingerprint(), wrong)
        };
        let mut client = Connection::client(cc.clone(), &[to_server], now, &mut rng).unwrap();
        let mut server =
            Connection::server(sc, &[to_client], callsec_tests::pair::PEER_ADDR, &mut rng).unwrap();
        for _ in 0..10 {
            for d in drain(&mut client) {
                server.handle_datagram(now, &d).unwrap();
            }
            for d in drain(&mut server) {
                client.handle_datagram(now, &d).unwrap();
            }
        }
        let attacked = if client_side {
            &mut client
        } else {
            &mut server
        };
        assert!(
            matches!(attacked.last_discarded(), Some(Error::BadCertificate(_))),
            "{:?}",
            attacked.last_discarded()
        );
        for c in [&mut client, &mut server] {
            assert!(!c.is_connected());
            assert!(!events(c).iter().any(|e| matches!(e, Event::Connected(_))));
            assert!(
                c.export_keying_material(b"EXTRACTOR-dtls_srtp", None, &mut [0; 60])
                    .is_err()
            );
        }
        // All of it in one retransmission round: too little evidence to end early. At the
        // total timeout the side that refused says why; the other, which heard nothing,
        // times out.
        let deadline = now + cc.handshake_timeout;
        let refused = Err(Error::BadCertificate("fingerprint mismatch"));
        let (c, s) = if client_side {
            (refused, Err(Error::Timeout))
        } else {
            (Err(Error::Timeout), refused)
        };
        assert_eq!(client.handle_timeout(deadline), c);
        assert_eq!(server.handle_timeout(deadline), s);
        assert!(client.is_closed() && server.is_closed());
    }
}

/// ServerKeyExchange surgery: the client must verify the signature over both randoms and the
/// ECDHE parameters (RFC 8422 §5.4) and validate the point. Refused messages are plaintext,
/// so they are discarded and the genuine flight still completes.
#[test]
fn server_key_exchange_signature_covers_randoms_and_params() {
    // The P-256 base point: on the curve, but not the point the server signed.
    const G: [u8; 65] = hex_literal::hex!(
        "04 6B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C296
            4FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5"
    );
    type Edit = Box<dyn Fn(&mut [(u8, u16, u64, Vec<u8>)])>;
    fn ske(f4: &mut [(u8, u16, u64, Vec<u8>)]) -> &mut Vec<u8> {
        &mut f4.iter_mut().find(|r| hs_type(r) == 12).unwrap().3
    }
    let cases: [(&str, Edit, AlertDescription); 3] = [
        (
            "last byte of the signature",
            Box::new(|f4| {
                let s = ske(f4);
                let last = s.len() - 1;
                s[last] ^= 1;
            }),
            AlertDescription::DECRYPT_ERROR,
        ),
        (
            "another valid point",
            Box::new(|f4| ske(f4)[12 + 4..12 + 4 + 65].copy_from_slice(&G)),
            AlertDescription::DECRYPT_ERROR,
        ),
        (
            "a point off the curve",
            Box::new(|f4| ske(f4)[12 + 4 + 64] ^= 1),
            AlertDescription::ILLEGAL_PARAMETER,
        ),
    ];
    for (i, (_what, edit, alert)) in cases.into_iter().enumerate() {
        let (mut p, mut f4) = pair_at_flight4(100 + i as u64);
        let genuine = reassemble(&f4);
        edit(&mut f4);
        let res = p.client.handle_datagram(p.now, &reassemble(&f4));
        assert_discarded(&mut p.client, res, |e| e.alert() == Some(alert));
        still_works(p, true, &[genuine]);
    }
    // A ServerHello with another server_random parses and is taken; the signature over the
    // randoms then fails on the ServerKeyExchange. That undoes the flight taken so far
    // (ServerHello, Certificate): the genuine flight, when it comes, is taken whole. (It used
    // to stall the handshake: a spoofer who won the race with a well-formed ServerHello made
    // every genuine ServerKeyExchange fail.)
    let (mut p, mut f4) = pair_at_flight4(103);
    let genuine = reassemble(&f4);
    let sh = f4.iter_mut().find(|r| hs_type(r) == 2).unwrap();
    sh.3[12 + 2 + 7] ^= 1;
    let res = p.client.handle_datagram(p.now, &reassemble(&f4));
    assert_discarded(&mut p.client, res, |e| matches!(e, Error::DecryptError(_)));
    // The ServerKeyExchange refused, the ServerHello and Certificate undone.
    assert_eq!(p.client.stats().discarded_messages, 3);
    still_works(p, true, &[genuine]);
}
