//! Messages planted ahead of the genuine flight (issue 17): one spoofed plaintext datagram
//! carries a valid-looking handshake message at the predictable message_seq of a message of
//! the peer's next flight, and arrives before that flight. Unauthenticated bytes must never
//! displace what the genuine flight brings: the handshake completes as if nothing happened
//! (a planted first message costs one retransmission), and what was thrown away is counted.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use callsec_dtls::Stats;
use callsec_tests::pair::{Netem, Pair};

mod support;
use support::forge;
use support::wire::{drain, message, record};

/// One planted message: its name, whom it is sent to, its type, message_seq and body.
struct Plant {
    what: &'static str,
    to_server: bool,
    msg_type: u8,
    /// message_seq in a handshake without cookie exchange: the server's flight 4 is numbered
    /// 0 (ServerHello) to 4 (ServerHelloDone), the client's flight 5 from 1 (Certificate)
    /// to 4 (Finished).
    seq: u16,
    body: Vec<u8>,
}

fn plants() -> Vec<Plant> {
    let p = |what, to_server, msg_type, seq, body| Plant {
        what,
        to_server,
        msg_type,
        seq,
        body,
    };
    vec![
        p(
            "CertificateRequest",
            false,
            13,
            3,
            forge::certificate_request(),
        ),
        p("ServerHelloDone", false, 14, 4, Vec::new()),
        p("Certificate (client)", false, 11, 1, forge::certificate(7)),
        p(
            "ServerKeyExchange",
            false,
            12,
            2,
            forge::server_key_exchange(),
        ),
        p(
            "ServerHello",
            false,
            2,
            0,
            forge::server_hello([5; 32], 0xc02b),
        ),
        p(
            "ClientKeyExchange",
            true,
            16,
            2,
            forge::client_key_exchange(),
        ),
        p(
            "CertificateVerify",
            true,
            15,
            3,
            forge::certificate_verify(),
        ),
        p("Certificate (server)", true, 11, 1, forge::certificate(8)),
    ]
}

/// Runs a handshake (no cookie exchange) in which `plant` reaches its target just before the
/// genuine flight it imitates; returns the pair, driven to the end, and the attacked side's
/// counters before the plant.
fn planted_handshake(seed: u64, plant: &Plant) -> (Pair, Stats) {
    let mut p = Pair::new(seed, Netem::default(), |c| c.cookie_exchange = false);
    let now = p.now;
    if plant.to_server {
        // ClientHello to the server, flight 4 to the client: flight 5 waits in the client.
        for d in drain(&mut p.client) {
            p.server.handle_datagram(now, &d).unwrap();
        }
        for d in drain(&mut p.server) {
            p.client.handle_datagram(now, &d).unwrap();
        }
    }
    let target = if plant.to_server {
        &mut p.server
    } else {
        &mut p.client
    };
    let before = target.stats();
    let d = record(22, 0, 40, &message(plant.msg_type, plant.seq, &plant.body));
    target.handle_datagram(now, &d).unwrap();
    assert!(!target.is_closed(), "{}", plant.what);
    p.drive();
    (p, before)
}

#[test]
fn planted_messages_never_displace_the_genuine_flight() {
    for (i, plant) in plants().iter().enumerate() {
        let (p, before) = planted_handshake(300 + i as u64, plant);
        let what = plant.what;
        assert!(
            p.client.is_connected() && p.server.is_connected(),
            "{what}: client {:?} {:?}, server {:?} {:?}",
            p.client.last_discarded(),
            p.client_errors,
            p.server.last_discarded(),
            p.server_errors
        );
        assert!(
            p.client_errors.is_empty() && p.server_errors.is_empty(),
            "{what}"
        );
        let (c, s) = (p.client_connected(), p.server_connected());
        assert_eq!(c.srtp.local.key(), s.srtp.remote.key(), "{what}");
        assert_eq!(c.srtp.remote.key(), s.srtp.local.key(), "{what}");
        let attacked = if plant.to_server {
            &p.server
        } else {
            &p.client
        };
        let after = attacked.stats();
        if plant.msg_type == 2 {
            // The first message of the flight: taken, then undone when the genuine
            // ServerKeyExchange's signature fails over its server_random (the SKE refused,
            // the ServerHello and Certificate before it undone), the rest of the flight
            // dropped and taken again from the server's next copy of its flight: here at
            // once, since the genuine ServerHello, which came as a repeat of a message
            // already taken, made the client resend its ClientHello (RFC 6347 §4.2.4).
            assert!(p.elapsed() <= Duration::from_secs(1), "{what}");
            assert_eq!(
                after.discarded_messages - before.discarded_messages,
                3,
                "{what}"
            );
            assert_eq!(after.superseded_fragments - before.superseded_fragments, 2);
        } else if plant.msg_type == 3 {
            // Followed (a HelloVerifyRequest is stateless: nothing tells a forged one), so
            // the client sends a second ClientHello, which the server, past its hello,
            // discards. The ServerHello answering the first, at the same message_seq as the
            // forgery, is still taken: HelloVerifyRequests take no message_seq.
            assert_eq!(p.elapsed(), Duration::ZERO, "{what}");
            assert_eq!(p.client.stats().hello_verify_requests, 1);
            assert_eq!(p.server.stats().discarded_messages, 1);
        } else if plant.to_server && plant.msg_type == 11 {
            // The first message of flight 5, of someone else's certificate: refused at once
            // (discarded, the slot open for the genuine one).
            assert_eq!(p.elapsed(), Duration::ZERO, "{what}");
            assert_eq!(after.discarded_messages - before.discarded_messages, 1);
            assert_eq!(after.superseded_fragments, before.superseded_fragments);
        } else {
            // Dropped when the flight's first message came: no retransmission needed.
            assert_eq!(p.elapsed(), Duration::ZERO, "{what}");
            assert_eq!(
                after.superseded_fragments - before.superseded_fragments,
                1,
                "{what}"
            );
            assert_eq!(
                after.discarded_messages, before.discarded_messages,
                "{what}"
            );
        }
    }
}

/// The forged bodies are valid-looking: delivered in place of the genuine message (the
/// genuine one never arriving), each is taken or refused for a semantic reason, never for
/// not parsing. Otherwise the test above would prove little.
#[test]
fn the_forgeries_parse() {
    for (i, plant) in plants().iter().enumerate() {
        let mut p = Pair::new(400 + i as u64, Netem::default(), |c| {
            c.cookie_exchange = false
        });
        let now = p.now;
        for d in drain(&mut p.client) {
            p.server.handle_datagram(now, &d).unwrap();
        }
        let mut flight: Vec<Vec<u8>> = drain(&mut p.server);
        if plant.to_server {
            for d in &flight {
                p.client.handle_datagram(now, d).unwrap();
            }
            flight = drain(&mut p.client);
        }
        // Replace the genuine message by the forgery, in place.
        let forged: Vec<u8> = flight
            .iter()
            .flat_map(|d| callsec_tests::pair::records(d))
            .flat_map(|(ct, epoch, rseq, frag)| {
                let ours = ct == 22
                    && epoch == 0
                    && frag[0] == plant.msg_type
                    && u16::from_be_bytes([frag[4], frag[5]]) == plant.seq;
                let frag = if ours {
                    message(plant.msg_type, plant.seq, &plant.body)
                } else {
                    frag
                };
                record(ct, epoch, rseq, &frag)
            })
            .collect();
        let target = if plant.to_server {
            &mut p.server
        } else {
            &mut p.client
        };
        target.handle_datagram(now, &forged).unwrap();
        let why = target.last_discarded().cloned();
        assert!(
            !matches!(why, Some(callsec_dtls::Error::Decode(_))),
            "{}: {why:?}",
            plant.what
        );
    }
}
