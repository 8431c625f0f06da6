//! The ClientHello Chromium 156 sends (two fragments in two datagrams, offering DTLS 1.3 and
//! 1.2, X25519MLKEM768, x25519, secp256r1, ...) must get a correct DTLS 1.2 answer on P-256.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Instant;

use callsec_dtls::{Certificate, Config, Connection, Fingerprint, HelloCheck, HelloVerifier};
use callsec_tests::pair::records;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/../../tests/fixtures/chromium-156/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Whole handshake messages (type, seq, body) from the datagrams, reassembling fragments.
fn messages(datagrams: &[Vec<u8>]) -> Vec<(u8, u16, Vec<u8>)> {
    let mut out: Vec<(u8, u16, Vec<u8>)> = Vec::new();
    for d in datagrams {
        for (ct, _, _, frag) in records(d) {
            assert_eq!(ct, 22);
            let mut j = 0;
            while j < frag.len() {
                let h = &frag[j..j + 12];
                let ty = h[0];
                let len = u32::from_be_bytes([0, h[1], h[2], h[3]]) as usize;
                let seq = u16::from_be_bytes([h[4], h[5]]);
                let off = u32::from_be_bytes([0, h[6], h[7], h[8]]) as usize;
                let flen = u32::from_be_bytes([0, h[9], h[10], h[11]]) as usize;
                let body = &frag[j + 12..j + 12 + flen];
                match out.iter_mut().find(|m| m.1 == seq) {
                    Some(m) => m.2[off..off + flen].copy_from_slice(body),
                    None => {
                        let mut b = vec![0; len];
                        b[off..off + flen].copy_from_slice(body);
                        out.push((ty, seq, b));
                    }
                }
                j += 12 + flen;
            }
        }
    }
    out
}

/// Extensions of a ServerHello body as (type, data).
fn server_hello_extensions(body: &[u8]) -> (u16, u16, Vec<(u16, Vec<u8>)>) {
    let version = u16::from_be_bytes([body[0], body[1]]);
    let sid = usize::from(body[34]);
    let at = 35 + sid;
    let suite = u16::from_be_bytes([body[at], body[at + 1]]);
    assert_eq!(body[at + 2], 0, "null compression");
    let mut exts = Vec::new();
    let total = usize::from(u16::from_be_bytes([body[at + 3], body[at + 4]]));
    let mut i = at + 5;
    assert_eq!(i + total, body.len());
    while i < body.len() {
        let ty = u16::from_be_bytes([body[i], body[i + 1]]);
        let len = usize::from(u16::from_be_bytes([body[i + 2], body[i + 3]]));
        exts.push((ty, body[i + 4..i + 4 + len].to_vec()));
        i += 4 + len;
    }
    (version, suite, exts)
}

fn server(cookie: bool) -> Connection {
    let mut rng = ChaCha20Rng::seed_from_u64(156);
    let mut config = Config::new(Certificate::generate(&mut rng));
    config.cookie_exchange = cookie;
    let any = Fingerprint::from_bytes([0; 32]);
    Connection::server(
        Arc::new(config),
        &[any],
        ([127, 0, 0, 1], 50000).into(),
        &mut rng,
    )
    .unwrap()
}

fn check_flight4(out: &[Vec<u8>], expect_seq: u16) {
    assert!(out.iter().all(|d| d.len() <= 1200));
    assert!(
        out.iter().all(|d| d[1..3] == [0xfe, 0xfd]),
        "record version DTLS 1.2"
    );
    let msgs = messages(out);
    let types: Vec<u8> = msgs.iter().map(|m| m.0).collect();
    // ServerHello, Certificate, ServerKeyExchange, CertificateRequest, ServerHelloDone.
    assert_eq!(types, [2, 11, 12, 13, 14]);
    assert_eq!(
        msgs[0].1, expect_seq,
        "ServerHello mirrors the ClientHello's message_seq"
    );
    let (version, suite, exts) = server_hello_extensions(&msgs[0].2);
    assert_eq!(version, 0xfefd);
    assert_eq!(suite, 0xc02b);
    let ext = |t: u16| exts.iter().find(|e| e.0 == t).map(|e| e.1.clone());
    // use_srtp: one profile (AEAD_AES_128_GCM, our first choice, which Chromium offers), no MKI.
    assert_eq!(ext(14).unwrap(), [0, 2, 0, 7, 0]);
    assert_eq!(ext(23).unwrap(), Vec::<u8>::new(), "extended_master_secret");
    assert_eq!(ext(0xff01).unwrap(), [0], "empty renegotiation_info");
    assert_eq!(ext(11).unwrap(), [1, 0], "uncompressed points");
    // Nothing from DTLS 1.3 is answered.
    for t in [43u16, 51, 45, 41] {
        assert!(ext(t).is_none(), "extension {t} answered");
    }
    // ServerKeyExchange: named_curve secp256r1, 65-byte point, ecdsa_secp256r1_sha256.
    let ske = &msgs[2].2;
    assert_eq!(&ske[..4], &[3, 0, 23, 65]);
    assert_eq!(ske[4], 4);
    assert_eq!(&ske[69..71], &[4, 3]);
    // CertificateRequest: ecdsa_sign, ecdsa_secp256r1_sha256.
    assert_eq!(msgs[3].2, [1, 64, 0, 2, 4, 3, 0, 0]);
    assert!(msgs[4].2.is_empty());
}

#[test]
fn chromium_client_hello_gets_a_dtls12_p256_answer() {
    let d1 = fixture("client-hello-datagram-1.bin");
    let d2 = fixture("client-hello-datagram-2.bin");
    let now = Instant::now();
    let mut s = server(false);
    s.handle_datagram(now, &d1).unwrap();
    assert!(
        s.poll_transmit().is_none(),
        "nothing before the ClientHello is whole"
    );
    s.handle_datagram(now, &d2).unwrap();
    let out: Vec<Vec<u8>> = std::iter::from_fn(|| s.poll_transmit()).collect();
    check_flight4(&out, 0);
    // The ServerHello's records continue from the ClientHello's record numbers (epoch 0).
    assert!(records(&out[0]).iter().all(|r| r.1 == 0));
}

#[test]
fn chromium_client_hello_in_reverse_order() {
    let now = Instant::now();
    let mut s = server(false);
    s.handle_datagram(now, &fixture("client-hello-datagram-2.bin"))
        .unwrap();
    s.handle_datagram(now, &fixture("client-hello-datagram-1.bin"))
        .unwrap();
    let out: Vec<Vec<u8>> = std::iter::from_fn(|| s.poll_transmit()).collect();
    check_flight4(&out, 0);
}

#[test]
fn chromium_client_hello_with_cookie_exchange() {
    let d1 = fixture("client-hello-datagram-1.bin");
    let d2 = fixture("client-hello-datagram-2.bin");
    let now = Instant::now();
    let mut s = server(true);
    // Stateless (RFC 6347 §4.2.1): the first fragment is answered at once, the second one
    // (which carries no cookie) is dropped, and nothing is kept.
    s.handle_datagram(now, &d1).unwrap();
    let hvr = s.poll_transmit().unwrap();
    s.handle_datagram(now, &d2).unwrap();
    assert!(s.poll_transmit().is_none());
    assert_eq!(s.poll_timeout(), None, "no state, no timer");
    // RFC 6347 §4.2.1: smaller than the datagram it answers; record seq of the ClientHello's
    // first record (0); message_seq 0.
    assert!(hvr.len() < d1.len());
    assert!(hvr.len() < 100);
    let recs = records(&hvr);
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].2, 0);
    let msgs = messages(std::slice::from_ref(&hvr));
    assert_eq!((msgs[0].0, msgs[0].1), (3, 0));
    // RFC 6347 §4.2.1: server_version DTLS 1.0 in HelloVerifyRequest.
    assert_eq!(&msgs[0].2[..2], &[0xfe, 0xff]);
    let cookie = msgs[0].2[3..].to_vec();
    assert_eq!(usize::from(msgs[0].2[2]), cookie.len());

    // Chromium then repeats the ClientHello with the cookie as message_seq 1 (built here from
    // the captured one: the cookie vector follows random and session_id).
    for d in cookie_hello(&[d1, d2], &cookie) {
        s.handle_datagram(now, &d).unwrap();
    }
    let out: Vec<Vec<u8>> = std::iter::from_fn(|| s.poll_transmit()).collect();
    check_flight4(&out, 1);
    // The server's records never reuse a number its HelloVerifyRequest used.
    assert!(records(&out[0])[0].2 >= 2);
    assert_eq!(s.stats().hello_verify_requests, 1);
}

/// Chromium's second ClientHello: the captured one with `cookie`, message_seq 1, in two
/// fragments (records 2 and 3).
fn cookie_hello(captured: &[Vec<u8>], cookie: &[u8]) -> Vec<Vec<u8>> {
    let ch = messages(captured).remove(0).2;
    let sid = usize::from(ch[34]);
    let at = 35 + sid;
    assert_eq!(ch[at], 0, "captured cookie is empty");
    let mut with_cookie = ch[..at].to_vec();
    with_cookie.push(cookie.len() as u8);
    with_cookie.extend_from_slice(cookie);
    with_cookie.extend_from_slice(&ch[at + 1..]);
    let frag = |seq: u64, off: usize, len: usize| {
        let mut d = vec![22, 0xfe, 0xfd, 0, 0];
        d.extend_from_slice(&seq.to_be_bytes()[2..]);
        d.extend_from_slice(&((12 + len) as u16).to_be_bytes());
        d.push(1);
        d.extend_from_slice(&(with_cookie.len() as u32).to_be_bytes()[1..]);
        d.extend_from_slice(&1u16.to_be_bytes());
        d.extend_from_slice(&(off as u32).to_be_bytes()[1..]);
        d.extend_from_slice(&(len as u32).to_be_bytes()[1..]);
        d.extend_from_slice(&with_cookie[off..off + len]);
        d
    };
    vec![frag(2, 0, 1000), frag(3, 1000, with_cookie.len() - 1000)]
}

/// An endpoint-wide HelloVerifier answers Chromium's fragmented ClientHello from its first
/// fragment alone, keeping nothing; the cookie'd hello is accepted and a connection made then
/// completes the flight.
#[test]
fn chromium_client_hello_through_the_stateless_verifier() {
    let d1 = fixture("client-hello-datagram-1.bin");
    let d2 = fixture("client-hello-datagram-2.bin");
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let verifier = HelloVerifier::new(&mut rng);
    let addr: std::net::SocketAddr = "203.0.113.5:40000".parse().unwrap();
    let HelloCheck::Reply(hvr) = verifier.check(addr, &d1) else {
        panic!("no HelloVerifyRequest")
    };
    assert!(hvr.len() < d1.len());
    assert_eq!(
        verifier.check(addr, &d2),
        HelloCheck::Drop,
        "later fragments are not checked"
    );
    let cookie = messages(std::slice::from_ref(&hvr)).remove(0).2[3..].to_vec();
    let again = cookie_hello(&[d1, d2], &cookie);
    assert_eq!(verifier.check(addr, &again[0]), HelloCheck::Accept);
    assert!(matches!(
        verifier.check("198.51.100.1:1".parse().unwrap(), &again[0]),
        HelloCheck::Reply(_)
    ));

    let mut config = Config::new(Certificate::generate(&mut rng));
    config.cookie_exchange = true;
    let any = Fingerprint::from_bytes([0; 32]);
    let mut s = Connection::server_verified(Arc::new(config), &[any], addr, &mut rng).unwrap();
    let now = Instant::now();
    for d in &again {
        s.handle_datagram(now, d).unwrap();
    }
    let out: Vec<Vec<u8>> = std::iter::from_fn(|| s.poll_transmit()).collect();
    check_flight4(&out, 1);
    assert_eq!(s.stats().hello_verify_requests, 0);
}
