//! Stateless cookies (RFC 6347 §4.2.1): a server answers a ClientHello without a valid cookie
//! with a HelloVerifyRequest and keeps nothing; only a client that can receive at its claimed
//! address can come back with the cookie.
//!
//! The cookie is HMAC-SHA256 over the client's transport address and the ClientHello fields
//! that sit in its first fragment (client_version, random, session_id). Those are all in the
//! fragment at offset 0 even when a large ClientHello (Chromium's, with a post-quantum key
//! share) arrives in several datagrams, so the check never needs reassembly state.

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

/// HMAC-SHA256(secret, len(addr) addr client_version random session_id).
pub(crate) fn compute(
    secret: &[u8; 32],
    client_addr: &[u8],
    p: &HelloPrefix<'_>,
) -> [u8; COOKIE_LEN] {
    let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(secret) else {
        return [0; COOKIE_LEN];
    };
    mac.update(&(client_addr.len() as u64).to_be_bytes());
    mac.update(client_addr);
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

    /// Checks the first record of a datagram from `client_addr` (any stable encoding of the
    /// transport address).
    pub fn check(&self, client_addr: &[u8], datagram: &[u8]) -> HelloCheck {
        let Some((msg_seq, record_seq, prefix)) = first_hello_fragment(datagram) else {
            return HelloCheck::Drop;
        };
        let valid = |secret: &[u8; 32]| {
            bool::from(compute(secret, client_addr, &prefix).ct_eq(prefix.cookie))
        };
        if valid(&self.current) || self.previous.as_ref().is_some_and(|p| valid(p)) {
            return HelloCheck::Accept;
        }
        let hvr = hello_verify_request(
            msg_seq,
            record_seq,
            &compute(&self.current, client_addr, &prefix),
        );
        if hvr.len() > datagram.len() {
            return HelloCheck::Drop;
        }
        HelloCheck::Reply(hvr)
    }
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
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let mut v = HelloVerifier::new(&mut rng);
        let HelloCheck::Reply(hvr) = v.check(b"a", &hello(&[], 0)) else {
            panic!("no HVR")
        };
        assert!(hvr.len() <= hello(&[], 0).len());
        let cookie = cookie_of(&hvr);
        assert_eq!(v.check(b"a", &hello(&cookie, 0)), HelloCheck::Accept);
        // Another address, a forged cookie: a fresh HelloVerifyRequest, nothing accepted.
        assert!(matches!(
            v.check(b"b", &hello(&cookie, 0)),
            HelloCheck::Reply(_)
        ));
        assert!(matches!(
            v.check(b"a", &hello(&[0; 32], 0)),
            HelloCheck::Reply(_)
        ));
        // One rotation: still accepted. Two: refused.
        v.rotate(&mut rng);
        assert_eq!(v.check(b"a", &hello(&cookie, 0)), HelloCheck::Accept);
        v.rotate(&mut rng);
        assert!(matches!(
            v.check(b"a", &hello(&cookie, 0)),
            HelloCheck::Reply(_)
        ));
        // Not a first fragment, not a hello, garbage: dropped.
        assert_eq!(v.check(b"a", &hello(&cookie, 100)), HelloCheck::Drop);
        assert_eq!(
            v.check(b"a", &[23, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            HelloCheck::Drop
        );
        assert_eq!(v.check(b"a", &[]), HelloCheck::Drop);
    }
}
