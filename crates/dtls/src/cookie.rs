//! Stateless cookies (RFC 6347 §4.2.1): a server answers a ClientHello without a valid cookie
//! with a HelloVerifyRequest and keeps nothing; only a client that can receive at its claimed
//! address can come back with the cookie.
//!
//! The cookie is HMAC-SHA256 over the client's transport address and the ClientHello fields
//! that sit in its first fragment (client_version, random, session_id). Those are all in the
//! fragment at offset 0 even when a large ClientHello (Chromium's, with a post-quantum key
//! share) arrives in several datagrams, so the check never needs reassembly state.

use std::net::{IpAddr, SocketAddr};

use hmac::{Hmac, Mac};
use rand_core::CryptoRngCore;
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::codec::Reader;
use crate::handshake::{
    HS_HEADER_LEN, HandshakeType, HelloVerifyRequest, HsHeader, transcript_bytes,
};
use crate::record::{ContentType, DTLS10, DTLS12, Record};

/// Cookie length (RFC 6347 §4.2.1 allows up to 255).
pub(crate) const COOKIE_LEN: usize = 32;

/// The first bytes of a ClientHello body the cookie covers.
pub(crate) struct HelloPrefix<'a> {
    pub(crate) client_version: u16,
    pub(crate) random: &'a [u8],
    pub(crate) session_id: &'a [u8],
    pub(crate) cookie: &'a [u8],
}

impl<'a> HelloPrefix<'a> {
    /// Reads `client_version random session_id cookie` from the start of a ClientHello body.
    pub(crate) fn read(body: &'a [u8]) -> Option<Self> {
        let mut r = Reader::new(body);
        let client_version = r.u16().ok()?;
        let random = r.take(32).ok()?;
        let session_id = r.vec8(0).ok()?;
        if session_id.len() > 32 {
            return None;
        }
        let cookie = r.vec8(0).ok()?;
        Some(Self {
            client_version,
            random,
            session_id,
            cookie,
        })
    }
}

/// The canonical encoding of a transport address the cookie is bound to: family (4 or 6),
/// address, port. An IPv4 address seen through a dual-stack socket (`::ffff:a.b.c.d`) is the
/// IPv4 address; IPv6 flow label and scope are not part of it.
fn encode_addr(addr: SocketAddr, out: &mut [u8; 19]) -> &[u8] {
    let n = match addr.ip().to_canonical() {
        IpAddr::V4(ip) => {
            out[0] = 4;
            out[1..5].copy_from_slice(&ip.octets());
            5
        }
        IpAddr::V6(ip) => {
            out[0] = 6;
            out[1..17].copy_from_slice(&ip.octets());
            17
        }
    };
    out[n..n + 2].copy_from_slice(&addr.port().to_be_bytes());
    &out[..n + 2]
}

/// HMAC-SHA256(secret, addr client_version random session_id), `addr` as `encode_addr`
/// writes it (its first byte gives its length).
pub(crate) fn compute(
    secret: &[u8; 32],
    client_addr: SocketAddr,
    p: &HelloPrefix<'_>,
) -> [u8; COOKIE_LEN] {
    let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(secret) else {
        return [0; COOKIE_LEN];
    };
    mac.update(encode_addr(client_addr, &mut [0; 19]));
    mac.update(&p.client_version.to_be_bytes());
    mac.update(p.random);
    mac.update(&[p.session_id.len() as u8]);
    mac.update(p.session_id);
    mac.finalize().into_bytes().into()
}

/// A HelloVerifyRequest datagram (RFC 6347 §4.2.1): server_version DTLS 1.0, the ClientHello's
/// message_seq and record sequence number.
pub(crate) fn hello_verify_request(msg_seq: u16, record_seq: u64, cookie: &[u8]) -> Vec<u8> {
    // RFC 6347 §4.2.1: a DTLS 1.2 server SHOULD say DTLS 1.0 here.
    let body = HelloVerifyRequest {
        server_version: DTLS10,
        cookie: cookie.to_vec(),
    }
    .write();
    let mut rec = Vec::with_capacity(HS_HEADER_LEN + body.len());
    transcript_bytes(
        &mut rec,
        HandshakeType::HELLO_VERIFY_REQUEST,
        msg_seq,
        &body,
    );
    let mut out = Vec::with_capacity(13 + rec.len());
    crate::record::put_header(&mut out, ContentType::HANDSHAKE, 0, record_seq, rec.len());
    out.extend_from_slice(&rec);
    out
}

/// What a [`HelloVerifier`] says about a datagram from an address with no connection yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HelloCheck {
    /// A ClientHello (first fragment) with a valid cookie: create a connection with
    /// [`Connection::server_verified`](crate::Connection::server_verified) and feed it this
    /// datagram and the ones that follow.
    Accept,
    /// Send this HelloVerifyRequest back and keep nothing. It is never larger than the
    /// datagram that asked for it.
    Reply(Vec<u8>),
    /// Not the first fragment of a DTLS 1.2 ClientHello: drop it.
    Drop,
}

/// An endpoint-wide stateless cookie checker with a rotating secret: the current secret and
/// the one before it are accepted, so rotating (say every minute) never breaks a handshake in
/// progress.
pub struct HelloVerifier {
    current: Zeroizing<[u8; 32]>,
    previous: Option<Zeroizing<[u8; 32]>>,
}

impl std::fmt::Debug for HelloVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HelloVerifier").finish_non_exhaustive()
    }
}

impl HelloVerifier {
    /// A verifier with a fresh secret.
    pub fn new(rng: &mut impl CryptoRngCore) -> Self {
        let mut current = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(&mut current[..]);
        Self {
            current,
            previous: None,
        }
    }

    /// Starts a new secret; cookies made with the one before still pass until the next
    /// rotation.
    pub fn rotate(&mut self, rng: &mut impl CryptoRngCore) {
        let mut next = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(&mut next[..]);
        self.previous = Some(std::mem::replace(&mut self.current, next));
    }

    /// Checks the first record of a datagram from `client_addr`.
    pub fn check(&self, client_addr: SocketAddr, datagram: &[u8]) -> HelloCheck {
        match verify(
            &self.current,
            self.previous.as_deref(),
            client_addr,
            datagram,
        ) {
            Verdict::Accept { .. } => HelloCheck::Accept,
            Verdict::Reply(hvr) => HelloCheck::Reply(hvr),
            Verdict::Drop => HelloCheck::Drop,
        }
    }
}

/// [`HelloCheck`] with what a [`Connection`](crate::Connection) needs to go on.
pub(crate) enum Verdict {
    /// A ClientHello first fragment with a valid cookie, with this message_seq.
    Accept {
        msg_seq: u16,
    },
    Reply(Vec<u8>),
    Drop,
}

/// The stateless check of RFC 6347 §4.2.1 on a datagram's first record: a ClientHello first
/// fragment whose cookie one of the secrets made is accepted; any other ClientHello first
/// fragment gets a HelloVerifyRequest no larger than the datagram; anything else is dropped.
pub(crate) fn verify(
    current: &[u8; 32],
    previous: Option<&[u8; 32]>,
    client_addr: SocketAddr,
    datagram: &[u8],
) -> Verdict {
    let Some((msg_seq, record_seq, prefix)) = first_hello_fragment(datagram) else {
        return Verdict::Drop;
    };
    let valid =
        |secret: &[u8; 32]| bool::from(compute(secret, client_addr, &prefix).ct_eq(prefix.cookie));
    if valid(current) || previous.is_some_and(valid) {
        return Verdict::Accept { msg_seq };
    }
    let hvr = hello_verify_request(msg_seq, record_seq, &compute(current, client_addr, &prefix));
    if hvr.len() > datagram.len() {
        return Verdict::Drop;
    }
    Verdict::Reply(hvr)
}

/// The message_seq, record sequence number and prefix of a ClientHello's first fragment, if
/// the datagram's first record carries one.
fn first_hello_fragment(datagram: &[u8]) -> Option<(u16, u64, HelloPrefix<'_>)> {
    let rec = Record::read(&mut Reader::new(datagram)).ok()?;
    if rec.content_type != ContentType::HANDSHAKE
        || rec.epoch != 0
        || !(rec.version == DTLS12 || rec.version == DTLS10)
    {
        return None;
    }
    let (h, body) = HsHeader::read(&mut Reader::new(rec.fragment)).ok()?;
    if h.msg_type != HandshakeType::CLIENT_HELLO || h.fragment_offset != 0 {
        return None;
    }
    Some((h.message_seq, rec.seq, HelloPrefix::read(body)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    fn hello(cookie: &[u8], offset: u32) -> Vec<u8> {
        let mut body = vec![0xfe, 0xfd];
        body.extend_from_slice(&[9; 32]);
        body.push(0);
        body.push(cookie.len() as u8);
        body.extend_from_slice(cookie);
        body.extend_from_slice(&[0, 2, 0xc0, 0x2b, 1, 0]);
        let mut rec = Vec::new();
        HsHeader {
            msg_type: HandshakeType::CLIENT_HELLO,
            length: body.len() as u32 + offset,
            message_seq: 0,
            fragment_offset: offset,
            fragment_length: body.len() as u32,
        }
        .write(&mut rec);
        rec.extend_from_slice(&body);
        let mut d = Vec::new();
        crate::record::put_header(&mut d, ContentType::HANDSHAKE, 0, 7, rec.len());
        d.extend_from_slice(&rec);
        d
    }

    fn cookie_of(hvr: &[u8]) -> Vec<u8> {
        let rec = Record::read(&mut Reader::new(hvr)).unwrap();
        assert_eq!(rec.seq, 7, "record sequence number of the ClientHello");
        let (_, body) = HsHeader::read(&mut Reader::new(rec.fragment)).unwrap();
        HelloVerifyRequest::read(body).unwrap().cookie
    }

    #[test]
    fn cookie_round_trip_rotation_and_address_binding() {
        let a: SocketAddr = "192.0.2.1:5000".parse().unwrap();
        let b: SocketAddr = "192.0.2.1:5001".parse().unwrap();
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let mut v = HelloVerifier::new(&mut rng);
        let HelloCheck::Reply(hvr) = v.check(a, &hello(&[], 0)) else {
            panic!("no HVR")
        };
        assert!(hvr.len() <= hello(&[], 0).len());
        let cookie = cookie_of(&hvr);
        assert_eq!(v.check(a, &hello(&cookie, 0)), HelloCheck::Accept);
        // Another address, a forged cookie: a fresh HelloVerifyRequest, nothing accepted.
        assert!(matches!(
            v.check(b, &hello(&cookie, 0)),
            HelloCheck::Reply(_)
        ));
        assert!(matches!(
            v.check(a, &hello(&[0; 32], 0)),
            HelloCheck::Reply(_)
        ));
        // One rotation: still accepted. Two: refused.
        v.rotate(&mut rng);
        assert_eq!(v.check(a, &hello(&cookie, 0)), HelloCheck::Accept);
        v.rotate(&mut rng);
        assert!(matches!(
            v.check(a, &hello(&cookie, 0)),
            HelloCheck::Reply(_)
        ));
        // Not a first fragment, not a hello, garbage: dropped.
        assert_eq!(v.check(a, &hello(&cookie, 100)), HelloCheck::Drop);
        assert_eq!(
            v.check(a, &[23, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            HelloCheck::Drop
        );
        assert_eq!(v.check(a, &[]), HelloCheck::Drop);
    }

    #[test]
    fn the_address_is_encoded_canonically() {
        let p = HelloPrefix {
            client_version: 0xfefd,
            random: &[1; 32],
            session_id: &[],
            cookie: &[],
        };
        let c = |a: &str| compute(&[5; 32], a.parse().unwrap(), &p);
        // An IPv4 peer on a dual-stack socket is the same peer.
        assert_eq!(c("192.0.2.1:5000"), c("[::ffff:192.0.2.1]:5000"));
        // Port, address and family all count.
        assert_ne!(c("192.0.2.1:5000"), c("192.0.2.1:5001"));
        assert_ne!(c("192.0.2.1:5000"), c("192.0.2.2:5000"));
        assert_ne!(c("192.0.2.1:5000"), c("[::c000:201]:5000"));
    }
}
