//! Unit tests that need the connection's internals (its state and its keys).

use super::*;
use crate::cert::Certificate;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

fn drain(c: &mut Connection) -> Vec<Vec<u8>> {
    std::iter::from_fn(|| c.poll_transmit()).collect()
}

/// Only the records of `d` in `epoch`.
fn keep_epoch(d: &[u8], epoch: u16) -> Vec<u8> {
    let mut r = Reader::new(d);
    let mut kept = Vec::new();
    while r.remaining() > 0 {
        let start = d.len() - r.remaining();
        let rec = Record::read(&mut r).unwrap();
        if rec.epoch == epoch {
            kept.extend_from_slice(&d[start..d.len() - r.remaining()]);
        }
    }
    kept
}

/// A client and a server (no cookie exchange, only `suite`) that have not started.
fn pair(seed: u64, suite: CipherSuite, now: Instant) -> (Connection, Connection) {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let mut mk = || {
        let mut c = Config::new(Certificate::generate(&mut rng));
        c.cookie_exchange = false;
        c.cipher_suites = vec![suite];
        Arc::new(c)
    };
    let (cc, sc) = (mk(), mk());
    let client =
        Connection::client(cc.clone(), &[sc.certificate.fingerprint()], now, &mut rng).unwrap();
    let server = Connection::server(
        sc,
        &[cc.certificate.fingerprint()],
        ([192, 0, 2, 1], 4444).into(),
        &mut rng,
    )
    .unwrap();
    (client, server)
}

/// A Finished that authenticates at the record layer (sealed with the client's real
/// epoch-1 keys) but carries the wrong verify_data is decrypt_error (RFC 5246 §7.4.9), and
/// no Connected event leaves the server. The tests outside the crate cannot make one.
#[test]
fn a_finished_with_wrong_verify_data_is_decrypt_error() {
    for suite in CipherSuite::ALL {
        let now = Instant::now();
        let (mut client, mut server) = pair(1, suite, now);
        for d in drain(&mut client) {
            server.handle_datagram(now, &d).unwrap();
        }
        for d in drain(&mut server) {
            client.handle_datagram(now, &d).unwrap();
        }
        // Flight 5 without its Finished (the only epoch-1 record).
        for d in drain(&mut client) {
            server.handle_datagram(now, &keep_epoch(&d, 0)).unwrap();
        }
        assert!(matches!(server.state, State::ServerExpectFinished(_)));
        let mut msg = Vec::new();
        let seq = server.reassembler.next_seq();
        transcript_bytes(&mut msg, HandshakeType::FINISHED, seq, &[0; 12]);
        let mut forged = Vec::new();
        client
            .put_record(&mut forged, ContentType::HANDSHAKE, 1, &msg)
            .unwrap();
        let res = server.handle_datagram(now, &forged);
        assert!(
            matches!(res, Err(Error::DecryptError(_))),
            "{suite:?}: {res:?}"
        );
        assert!(server.is_closed());
        // The failed step consumed the state; the alert still goes out, once, in the epoch
        // the server writes in (0: its ChangeCipherSpec is not sent yet).
        let sent = drain(&mut server);
        let [alert] = sent.as_slice() else {
            panic!("{suite:?}: {} datagrams", sent.len());
        };
        let rec = Record::read(&mut Reader::new(alert)).unwrap();
        assert_eq!(
            (rec.content_type, rec.epoch, rec.fragment),
            (
                ContentType::ALERT,
                0,
                &[2, AlertDescription::DECRYPT_ERROR.0][..]
            )
        );
        let events: Vec<Event> = std::iter::from_fn(|| server.poll_event()).collect();
        assert!(!events.iter().any(|e| matches!(e, Event::Connected(_))));
        assert_eq!(
            events
                .iter()
                .filter(|e| matches!(e, Event::Closed { error: Some(_) }))
                .count(),
            1
        );
    }
}

/// An authenticated fatal alert closes the connection once: one `Closed` event carrying the
/// alert, nothing sent back (no alert answers a fatal one, RFC 5246 §7.2.2), and further
/// input is refused.
#[test]
fn an_authenticated_fatal_alert_closes_once_and_silently() {
    let now = Instant::now();
    let (mut client, mut server) = pair(2, CipherSuite::EcdheEcdsaAes128GcmSha256, now);
    for _ in 0..3 {
        for d in drain(&mut client) {
            server.handle_datagram(now, &d).unwrap();
        }
        for d in drain(&mut server) {
            client.handle_datagram(now, &d).unwrap();
        }
    }
    assert!(client.is_connected() && server.is_connected());
    while server.poll_event().is_some() {}
    let mut alert = Vec::new();
    client
        .put_record(
            &mut alert,
            ContentType::ALERT,
            1,
            &[2, AlertDescription::INTERNAL_ERROR.0],
        )
        .unwrap();
    let res = server.handle_datagram(now, &alert);
    assert!(
        matches!(res, Err(Error::AlertReceived(d)) if d == AlertDescription::INTERNAL_ERROR),
        "{res:?}"
    );
    assert!(server.is_closed());
    assert!(drain(&mut server).is_empty());
    let events: Vec<Event> = std::iter::from_fn(|| server.poll_event()).collect();
    assert!(
        matches!(
            events.as_slice(),
            [Event::Closed {
                error: Some(Error::AlertReceived(_))
            }]
        ),
        "{events:?}"
    );
    assert!(matches!(
        server.handle_datagram(now, &alert),
        Err(Error::Closed)
    ));
}
