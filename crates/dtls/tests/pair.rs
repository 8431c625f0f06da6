#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Two callsec peers on a virtual clock: both suites, both SRTP profiles, loss, reordering,
//! duplication, fragmentation.

use std::time::Duration;

use callsec_dtls::{CipherSuite, Event};
use callsec_srtp::ProtectionProfile;
use callsec_tests::pair::{Netem, Pair};

fn assert_keys_agree(p: &Pair) {
    let c = p.client_connected();
    let s = p.server_connected();
    assert_eq!(c.cipher_suite, s.cipher_suite);
    assert_eq!(c.profile, s.profile);
    assert_eq!(c.srtp.local.key(), s.srtp.remote.key());
    assert_eq!(c.srtp.local.salt(), s.srtp.remote.salt());
    assert_eq!(c.srtp.remote.key(), s.srtp.local.key());
    assert_eq!(c.srtp.remote.salt(), s.srtp.local.salt());
    assert_ne!(c.srtp.local.key(), c.srtp.remote.key());
    assert_eq!(c.srtp.local.key().len(), c.profile.key_len());
    assert_eq!(c.srtp.local.salt().len(), c.profile.salt_len());
    let mut a = [0u8; 64];
    let mut b = [0u8; 64];
    p.client
        .export_keying_material(b"EXPORTER-test", Some(b"ctx"), &mut a)
        .unwrap();
    p.server
        .export_keying_material(b"EXPORTER-test", Some(b"ctx"), &mut b)
        .unwrap();
    assert_eq!(a, b);
    // RFC 5764 §4.2: the SRTP keys are the exporter output split in four.
    let mut km = vec![0u8; c.profile.keying_material_len()];
    p.client
        .export_keying_material(b"EXTRACTOR-dtls_srtp", None, &mut km)
        .unwrap();
    let (k, s_) = (c.profile.key_len(), c.profile.salt_len());
    assert_eq!(c.srtp.local.key(), &km[..k]);
    assert_eq!(s.srtp.local.key(), &km[k..2 * k]);
    assert_eq!(c.srtp.local.salt(), &km[2 * k..2 * k + s_]);
    assert_eq!(s.srtp.local.salt(), &km[2 * k + s_..]);
}

#[test]
fn every_suite_and_profile() {
    for suite in CipherSuite::ALL {
        for profile in ProtectionProfile::ALL {
            for cookie in [true, false] {
                let mut p = Pair::new(1, Netem::default(), |c| {
                    c.cipher_suites = vec![suite];
                    c.srtp_profiles = vec![profile];
                    c.cookie_exchange = cookie;
                });
                p.drive();
                assert!(
                    p.client.is_connected() && p.server.is_connected(),
                    "{suite:?} {profile:?} {cookie}"
                );
                assert_eq!(p.client_connected().cipher_suite, suite);
                assert_eq!(p.client_connected().profile, profile);
                assert!(p.client_connected().extended_master_secret);
                assert_keys_agree(&p);
                assert_eq!(
                    p.server.stats().repeats_answered + p.client.stats().repeats_answered,
                    0
                );
                assert_eq!(
                    p.client.stats().retransmissions,
                    0,
                    "{suite:?} {profile:?} {cookie} {:?} {:?}",
                    p.client.stats(),
                    p.server.stats()
                );
                assert_eq!(p.server.stats().hello_verify_requests, u64::from(cookie));
                assert_eq!(p.client.stats().hello_verify_requests, u64::from(cookie));
                assert_eq!(p.elapsed(), Duration::ZERO);
            }
        }
    }
}

#[test]
fn defaults_prefer_gcm_and_aead_profile() {
    let mut p = Pair::new(2, Netem::default(), |_| {});
    p.drive();
    assert_eq!(
        p.client_connected().cipher_suite,
        CipherSuite::EcdheEcdsaAes128GcmSha256
    );
    assert_eq!(
        p.client_connected().profile,
        ProtectionProfile::AeadAes128Gcm
    );
    let cfp = p.client_connected().peer_fingerprint;
    assert_eq!(cfp.to_string().len(), "sha-256 ".len() + 95);
}

#[test]
fn server_preference_picks_profile() {
    let (cc, sc) = callsec_tests::pair::configs(3, |_| {});
    let mut sc2 = (*sc).clone();
    sc2.srtp_profiles = vec![
        ProtectionProfile::Aes128CmHmacSha1_80,
        ProtectionProfile::AeadAes128Gcm,
    ];
    let mut p = Pair::with_configs(3, Netem::default(), cc, std::sync::Arc::new(sc2));
    p.drive();
    assert_eq!(
        p.client_connected().profile,
        ProtectionProfile::Aes128CmHmacSha1_80
    );
}

#[test]
fn application_data_and_close() {
    for suite in CipherSuite::ALL {
        let mut p = Pair::new(4, Netem::default(), |c| c.cipher_suites = vec![suite]);
        p.drive();
        p.client.send(b"hello server").unwrap();
        p.server.send(&[0x42; 3000]).unwrap();
        p.deliver();
        assert!(
            p.server_events
                .iter()
                .any(|e| matches!(e, Event::ApplicationData(d) if d == b"hello server"))
        );
        assert!(
            p.client_events
                .iter()
                .any(|e| matches!(e, Event::ApplicationData(d) if d == &[0x42; 3000]))
        );
        p.client.close();
        p.deliver();
        assert!(p.client.is_closed() && p.server.is_closed());
        assert!(
            p.server_events
                .iter()
                .any(|e| matches!(e, Event::Closed { error: None }))
        );
        assert!(p.client.send(b"x").is_err());
    }
}

#[test]
fn fragmented_flights_with_small_mtu() {
    for suite in CipherSuite::ALL {
        let mut p = Pair::new(5, Netem::default(), |c| {
            c.mtu = 256;
            c.cipher_suites = vec![suite];
        });
        p.drive();
        assert_keys_agree(&p);
    }
}

/// RFC 6347 §4.2.4 timers: 1 s, doubling. Under heavy loss the handshake still completes,
/// and no side retransmits more often than the timers (plus one answer per repeat of the
/// peer's flight) allow.
#[test]
fn completes_under_loss_reorder_and_duplication() {
    let mut worst = Duration::ZERO;
    let mut slow = Vec::new();
    for seed in 0..1000u64 {
        let netem = Netem {
            loss: 0.3,
            duplicate: 0.1,
            reorder: 0.3,
        };
        let mtu = if seed % 3 == 0 { 300 } else { 1200 };
        let suite = CipherSuite::ALL[(seed % 2) as usize];
        let mut p = Pair::new(seed, netem, |c| {
            c.mtu = mtu;
            c.cipher_suites = vec![suite];
            c.handshake_timeout = Duration::from_secs(600);
        });
        p.drive();
        assert!(
            p.client.is_connected() && p.server.is_connected(),
            "seed {seed}: {:?} {:?} {:?} {:?}",
            p.client,
            p.server,
            p.client_errors,
            p.server_errors
        );
        assert_keys_agree(&p);
        worst = worst.max(p.elapsed());
        if p.elapsed() > Duration::from_secs(60) {
            slow.push((seed, mtu, p.elapsed().as_secs()));
        }
        // RFC 6347 §4.2.4.1 timers: each flight's timer starts at 1 s and doubles up to 60 s,
        // so within the elapsed time only so many timeouts fit; the client restarts its timer
        // for three flights (ClientHello, ClientHello with cookie, flight 5), the server for
        // one (flight 4; its final flight has no timer).
        let fits = timeouts_within(p.elapsed());
        let (c, s) = (p.client.stats(), p.server.stats());
        assert!(
            c.retransmissions <= 3 * fits,
            "seed {seed}: {c:?} in {:?}",
            p.elapsed()
        );
        assert!(
            s.retransmissions <= fits,
            "seed {seed}: {s:?} in {:?}",
            p.elapsed()
        );
        // A repeat of the peer's flight is answered once per copy received: at most twice
        // (duplication) per time the peer sent that flight.
        assert!(
            c.repeats_answered <= 2 * (1 + s.retransmissions + s.repeats_answered),
            "seed {seed}: {c:?} {s:?}"
        );
        assert!(
            s.repeats_answered <= 2 * (1 + c.retransmissions + c.repeats_answered),
            "seed {seed}: {c:?} {s:?}"
        );
    }
    // No bound on the time itself: `connected` above already implies "before the 600 s
    // handshake timeout"; the retransmission counts are what the schedule bounds.
    eprintln!("worst handshake time under 30% loss: {worst:?}; over 60 s: {slow:?}");
}

#[test]
fn handshake_times_out_when_nothing_arrives() {
    let mut p = Pair::new(
        6,
        Netem {
            loss: 1.0,
            ..Netem::default()
        },
        |c| c.handshake_timeout = Duration::from_secs(30),
    );
    p.drive();
    assert!(p.client.is_closed());
    assert!(matches!(
        p.client_errors.last(),
        Some(callsec_dtls::Error::Timeout)
    ));
    // 1 + 2 + 4 + 8 + 16 = 31 s > 30 s: four timer retransmissions.
    assert_eq!(p.client.stats().retransmissions, 4);
    assert!(p.elapsed() <= Duration::from_secs(30));
}

#[test]
fn retransmission_timeout_is_capped() {
    let mut p = Pair::new(
        7,
        Netem {
            loss: 1.0,
            ..Netem::default()
        },
        |c| {
            c.handshake_timeout = Duration::from_secs(100);
            c.max_retransmit_timeout = Duration::from_secs(4);
        },
    );
    p.drive();
    // 1, 2, 4, 4, 4, ... within 100 s: 1+2+4*24 = 99.
    assert_eq!(p.client.stats().retransmissions, 26);
}

/// How many retransmission timeouts (1 s, doubling, capped at 60 s) fit in `elapsed`.
fn timeouts_within(elapsed: Duration) -> u64 {
    let (mut t, mut rto, mut n) = (Duration::ZERO, Duration::from_secs(1), 0);
    while t + rto <= elapsed {
        t += rto;
        rto = (rto * 2).min(Duration::from_secs(60));
        n += 1;
    }
    n
}

/// The endpoint flow: a stateless HelloVerifier in front until it accepts, then a connection
/// made with `server_verified`; under loss, duplication and reordering.
#[test]
fn hello_verifier_in_front_under_loss() {
    use callsec_dtls::{Connection, HelloCheck, HelloVerifier};
    use rand_chacha::ChaCha20Rng;
    use rand_core::{RngCore, SeedableRng};
    use std::time::Instant;

    for seed in 0..100u64 {
        let (cc, sc) =
            callsec_tests::pair::configs(seed, |c| c.handshake_timeout = Duration::from_secs(600));
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let mut net = ChaCha20Rng::seed_from_u64(seed ^ 0x5eed);
        let mut lossy = |d: Vec<u8>| -> Vec<Vec<u8>> {
            let r = net.next_u32() % 100;
            match r {
                0..30 => vec![],
                30..40 => vec![d.clone(), d],
                _ => vec![d],
            }
        };
        let start = Instant::now();
        let mut now = start;
        let mut verifier = HelloVerifier::new(&mut rng);
        let addr: std::net::SocketAddr = "192.0.2.9:1234".parse().unwrap();
        let mut client =
            Connection::client(cc.clone(), &[sc.certificate.fingerprint()], now, &mut rng).unwrap();
        let mut server: Option<Connection> = None;
        let mut replies = 0;
        let mut last_rotation = start;
        for _ in 0..10_000 {
            if client.is_connected() && server.as_ref().is_some_and(Connection::is_connected) {
                break;
            }
            let mut to_server = Vec::new();
            while let Some(d) = client.poll_transmit() {
                to_server.extend(lossy(d));
            }
            let mut to_client = Vec::new();
            for d in to_server {
                match server.as_mut() {
                    Some(s) => {
                        let _ = s.handle_datagram(now, &d);
                    }
                    None => match verifier.check(addr, &d) {
                        HelloCheck::Reply(hvr) => {
                            replies += 1;
                            to_client.extend(lossy(hvr));
                        }
                        HelloCheck::Drop => {}
                        HelloCheck::Accept => {
                            let mut s = Connection::server_verified(
                                sc.clone(),
                                &[cc.certificate.fingerprint()],
                                addr,
                                &mut rng,
                            )
                            .unwrap();
                            let _ = s.handle_datagram(now, &d);
                            server = Some(s);
                        }
                    },
                }
            }
            if let Some(s) = server.as_mut() {
                while let Some(d) = s.poll_transmit() {
                    to_client.extend(lossy(d));
                }
            }
            let moved = !to_client.is_empty();
            for d in to_client {
                let _ = client.handle_datagram(now, &d);
            }
            if !moved {
                let next = [
                    client.poll_timeout(),
                    server.as_ref().and_then(Connection::poll_timeout),
                ]
                .into_iter()
                .flatten()
                .min()
                .expect("something pending");
                now = now.max(next);
                let _ = client.handle_timeout(now);
                if let Some(s) = server.as_mut() {
                    let _ = s.handle_timeout(now);
                }
            }
            // Rotating every 30 s never breaks a handshake in progress.
            if now.duration_since(last_rotation) >= Duration::from_secs(30) {
                verifier.rotate(&mut rng);
                last_rotation = now;
            }
        }
        let server = server.expect("accepted");
        assert!(
            client.is_connected() && server.is_connected(),
            "seed {seed}"
        );
        assert!(replies >= 1);
        let mut a = [0u8; 32];
        let mut b = [0u8; 32];
        client
            .export_keying_material(b"EXTRACTOR-dtls_srtp", None, &mut a)
            .unwrap();
        server
            .export_keying_material(b"EXTRACTOR-dtls_srtp", None, &mut b)
            .unwrap();
        assert_eq!(a, b);
    }
}
