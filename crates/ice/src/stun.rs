//! The STUN wire format (RFC 8489), as much of it as an ICE-lite agent needs: parsing any
//! message with bounds-checked attributes, verifying MESSAGE-INTEGRITY (HMAC-SHA1) and
//! FINGERPRINT (CRC-32), and writing Binding success responses into caller buffers.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |0 0|     STUN Message Type     |         Message Length        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                         Magic Cookie                          |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                     Transaction ID (96 bits)                  |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |  Attribute Type               |  Length (value bytes)         |  × n, each value
//! |  Value ... padded to a multiple of 4 bytes                    |  padded to 4
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use hmac::{Hmac, Mac};
use sha1::Sha1;
use subtle::ConstantTimeEq;

/// RFC 8489 §5: the fixed magic cookie.
pub const MAGIC_COOKIE: u32 = 0x2112_a442;
/// Bytes of the fixed header.
pub const HEADER_LEN: usize = 20;

/// Message types (method and class combined) used here.
pub mod msg_type {
    /// Binding request.
    pub const BINDING_REQUEST: u16 = 0x0001;
    /// Binding success response.
    pub const BINDING_SUCCESS: u16 = 0x0101;
    /// Binding error response.
    pub const BINDING_ERROR: u16 = 0x0111;
    /// Binding indication (keep-alive).
    pub const BINDING_INDICATION: u16 = 0x0011;
}

/// Attribute types used here (RFC 8489 §18.3, RFC 8445 §16.1).
pub mod attr {
    /// USERNAME.
    pub const USERNAME: u16 = 0x0006;
    /// MESSAGE-INTEGRITY (HMAC-SHA1, 20 bytes).
    pub const MESSAGE_INTEGRITY: u16 = 0x0008;
    /// ERROR-CODE.
    pub const ERROR_CODE: u16 = 0x0009;
    /// XOR-MAPPED-ADDRESS.
    pub const XOR_MAPPED_ADDRESS: u16 = 0x0020;
    /// PRIORITY (ICE).
    pub const PRIORITY: u16 = 0x0024;
    /// USE-CANDIDATE (ICE).
    pub const USE_CANDIDATE: u16 = 0x0025;
    /// SOFTWARE.
    pub const SOFTWARE: u16 = 0x8022;
    /// FINGERPRINT (CRC-32 XOR 0x5354554e).
    pub const FINGERPRINT: u16 = 0x8028;
    /// ICE-CONTROLLED.
    pub const ICE_CONTROLLED: u16 = 0x8029;
    /// ICE-CONTROLLING.
    pub const ICE_CONTROLLING: u16 = 0x802a;
}

/// Why a datagram was not accepted as STUN, or not answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// Shorter than the header, top bits set, no magic cookie, length not a multiple of 4
    /// or not matching the datagram, or an attribute running past the end.
    Malformed,
    /// A MESSAGE-INTEGRITY or FINGERPRINT attribute is missing where it is required.
    MissingAttribute(u16),
    /// FINGERPRINT does not match.
    BadFingerprint,
    /// MESSAGE-INTEGRITY does not verify with our password.
    BadIntegrity,
    /// USERNAME is not `<our ufrag>:<their ufrag>`.
    UnknownUsername,
    /// The caller's buffer cannot hold the response.
    BufferTooSmall,
    /// A well-formed STUN message this agent does not answer (responses, other methods).
    Unhandled,
    /// A valid check from a new address while the peer's budget of new addresses is spent
    /// ([`crate::Limits`]): not answered, nothing validated.
    RateLimited,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Malformed => f.write_str("malformed STUN message"),
            Error::MissingAttribute(t) => write!(f, "STUN attribute {t:#06x} missing"),
            Error::BadFingerprint => f.write_str("STUN FINGERPRINT mismatch"),
            Error::BadIntegrity => f.write_str("STUN MESSAGE-INTEGRITY mismatch"),
            Error::UnknownUsername => f.write_str("STUN USERNAME unknown"),
            Error::BufferTooSmall => f.write_str("buffer too small for STUN response"),
            Error::Unhandled => f.write_str("STUN message not handled"),
            Error::RateLimited => f.write_str("too many new addresses from this peer"),
        }
    }
}

impl std::error::Error for Error {}

/// A parsed STUN message borrowing the datagram.
#[derive(Clone, Copy, Debug)]
pub struct Message<'a> {
    raw: &'a [u8],
}

impl<'a> Message<'a> {
    /// Parses `datagram` as one STUN message, checking the header and that every attribute
    /// lies inside the message. Attribute values are not interpreted.
    pub fn parse(datagram: &'a [u8]) -> Result<Self, Error> {
        let header: &[u8; HEADER_LEN] = datagram.first_chunk().ok_or(Error::Malformed)?;
        if header[0] & 0xc0 != 0 {
            return Err(Error::Malformed);
        }
        let len = usize::from(u16::from_be_bytes([header[2], header[3]]));
        if len % 4 != 0 || HEADER_LEN + len != datagram.len() {
            return Err(Error::Malformed);
        }
        if u32::from_be_bytes([header[4], header[5], header[6], header[7]]) != MAGIC_COOKIE {
            return Err(Error::Malformed);
        }
        let message = Message { raw: datagram };
        for item in message.attributes() {
            item?;
        }
        Ok(message)
    }

    /// The message type (method and class).
    pub fn msg_type(&self) -> u16 {
        u16::from_be_bytes([self.raw[0], self.raw[1]])
    }

    /// The 96-bit transaction id.
    pub fn transaction_id(&self) -> [u8; 12] {
        let mut id = [0u8; 12];
        id.copy_from_slice(&self.raw[8..20]);
        id
    }

    /// Attributes in order, as `(type, offset of the attribute header, value)`; an item is an
    /// error where an attribute runs past the end (after which iteration stops).
    pub fn attributes(&self) -> Attributes<'a> {
        Attributes {
            raw: self.raw,
            at: HEADER_LEN,
        }
    }

    /// The first attribute of type `t` before MESSAGE-INTEGRITY (or FINGERPRINT, for those
    /// two themselves): RFC 8489 §14.5 says what follows them is to be ignored.
    pub fn attribute(&self, t: u16) -> Option<&'a [u8]> {
        self.find(t).map(|(_, value)| value)
    }

    fn find(&self, t: u16) -> Option<(usize, &'a [u8])> {
        for (typ, at, value) in self.attributes().flatten() {
            if typ == t {
                return Some((at, value));
            }
            if typ == attr::FINGERPRINT
                || (typ == attr::MESSAGE_INTEGRITY && t != attr::FINGERPRINT)
            {
                return None;
            }
        }
        None
    }

    /// Checks FINGERPRINT (RFC 8489 §14.7), which must be the last attribute.
    pub fn verify_fingerprint(&self) -> Result<(), Error> {
        let (at, value) = self
            .find(attr::FINGERPRINT)
            .ok_or(Error::MissingAttribute(attr::FINGERPRINT))?;
        if at + 8 != self.raw.len() || value.len() != 4 {
            return Err(Error::BadFingerprint);
        }
        let expected = u32::from_be_bytes([value[0], value[1], value[2], value[3]]);
        if fingerprint(self.raw, at) == expected {
            Ok(())
        } else {
            Err(Error::BadFingerprint)
        }
    }

    /// Checks MESSAGE-INTEGRITY (RFC 8489 §14.5) with the short-term credential `key` (the
    /// ICE password), in constant time.
    pub fn verify_integrity(&self, key: &[u8]) -> Result<(), Error> {
        let (at, value) = self
            .find(attr::MESSAGE_INTEGRITY)
            .ok_or(Error::MissingAttribute(attr::MESSAGE_INTEGRITY))?;
        if value.len() != 20 {
            return Err(Error::BadIntegrity);
        }
        if bool::from(integrity(self.raw, at, key).ct_eq(value)) {
            Ok(())
        } else {
            Err(Error::BadIntegrity)
        }
    }
}

/// Iterator over a message's attributes.
#[derive(Clone, Debug)]
pub struct Attributes<'a> {
    raw: &'a [u8],
    at: usize,
}

impl<'a> Iterator for Attributes<'a> {
    type Item = Result<(u16, usize, &'a [u8]), Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.at >= self.raw.len() {
            return None;
        }
        let at = self.at;
        let Some(head) = self.raw.get(at..at + 4) else {
            self.at = self.raw.len();
            return Some(Err(Error::Malformed));
        };
        let typ = u16::from_be_bytes([head[0], head[1]]);
        let len = usize::from(u16::from_be_bytes([head[2], head[3]]));
        let padded = (len + 3) & !3;
        let Some(value) = self
            .raw
            .get(at + 4..at + 4 + len)
            .filter(|_| at + 4 + padded <= self.raw.len())
        else {
            self.at = self.raw.len();
            return Some(Err(Error::Malformed));
        };
        self.at = at + 4 + padded;
        Some(Ok((typ, at, value)))
    }
}

/// HMAC-SHA1 over the message up to the MESSAGE-INTEGRITY attribute at `at`, with the header
/// length set as if that attribute ended the message (RFC 8489 §14.5).
fn integrity(raw: &[u8], at: usize, key: &[u8]) -> [u8; 20] {
    let Ok(mut mac) = <Hmac<Sha1> as Mac>::new_from_slice(key) else {
        return [0; 20]; // HMAC takes keys of any length: unreachable
    };
    let len = (at + 24 - HEADER_LEN) as u16;
    mac.update(&raw[..2]);
    mac.update(&len.to_be_bytes());
    mac.update(&raw[4..at]);
    mac.finalize().into_bytes().into()
}

/// CRC-32 of the message up to the FINGERPRINT attribute at `at`, with the header length
/// covering that attribute, XOR 0x5354554e (RFC 8489 §14.7).
fn fingerprint(raw: &[u8], at: usize) -> u32 {
    let len = (at + 8 - HEADER_LEN) as u16;
    let mut h = crc32fast::Hasher::new();
    h.update(&raw[..2]);
    h.update(&len.to_be_bytes());
    h.update(&raw[4..at]);
    h.finalize() ^ 0x5354_554e
}

/// Writes a STUN message into a caller buffer.
pub struct Writer<'b> {
    buf: &'b mut [u8],
    len: usize,
}

impl<'b> Writer<'b> {
    /// Starts a message of `msg_type` with `transaction_id` in `buf`.
    pub fn new(buf: &'b mut [u8], msg_type: u16, transaction_id: &[u8; 12]) -> Result<Self, Error> {
        let header = buf.get_mut(..HEADER_LEN).ok_or(Error::BufferTooSmall)?;
        header[..2].copy_from_slice(&msg_type.to_be_bytes());
        header[2..4].fill(0);
        header[4..8].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
        header[8..20].copy_from_slice(transaction_id);
        Ok(Writer {
            buf,
            len: HEADER_LEN,
        })
    }

    /// Appends an attribute, padding its value to 4 bytes with zeros.
    pub fn attribute(&mut self, typ: u16, value: &[u8]) -> Result<&mut Self, Error> {
        let padded = (value.len() + 3) & !3;
        let len = u16::try_from(value.len()).map_err(|_| Error::BufferTooSmall)?;
        let out = self
            .buf
            .get_mut(self.len..self.len + 4 + padded)
            .ok_or(Error::BufferTooSmall)?;
        out[..2].copy_from_slice(&typ.to_be_bytes());
        out[2..4].copy_from_slice(&len.to_be_bytes());
        out[4..4 + value.len()].copy_from_slice(value);
        out[4 + value.len()..].fill(0);
        self.len += 4 + padded;
        self.set_length(self.len);
        Ok(self)
    }

    /// Appends XOR-MAPPED-ADDRESS for `addr` (RFC 8489 §14.2).
    pub fn xor_mapped_address(&mut self, addr: SocketAddr) -> Result<&mut Self, Error> {
        let mut value = [0u8; 20];
        let port = addr.port() ^ (MAGIC_COOKIE >> 16) as u16;
        value[2..4].copy_from_slice(&port.to_be_bytes());
        let n = match addr.ip() {
            IpAddr::V4(ip) => {
                value[1] = 0x01;
                let x = u32::from(ip) ^ MAGIC_COOKIE;
                value[4..8].copy_from_slice(&x.to_be_bytes());
                8
            }
            IpAddr::V6(ip) => {
                value[1] = 0x02;
                let mut mask = [0u8; 16];
                mask[..4].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
                mask[4..].copy_from_slice(&self.buf[8..20]);
                for (i, b) in ip.octets().iter().enumerate() {
                    value[4 + i] = b ^ mask[i];
                }
                20
            }
        };
        self.attribute(attr::XOR_MAPPED_ADDRESS, &value[..n])
    }

    /// Appends MESSAGE-INTEGRITY keyed with `key`.
    pub fn message_integrity(&mut self, key: &[u8]) -> Result<&mut Self, Error> {
        let at = self.len;
        self.attribute(attr::MESSAGE_INTEGRITY, &[0; 20])?;
        let mac = integrity(self.buf, at, key);
        self.buf[at + 4..at + 24].copy_from_slice(&mac);
        Ok(self)
    }

    /// Appends FINGERPRINT and returns the message length: nothing may follow it.
    pub fn fingerprint(mut self) -> Result<usize, Error> {
        let at = self.len;
        self.attribute(attr::FINGERPRINT, &[0; 4])?;
        let crc = fingerprint(self.buf, at);
        self.buf[at + 4..at + 8].copy_from_slice(&crc.to_be_bytes());
        Ok(self.len)
    }

    fn set_length(&mut self, total: usize) {
        let len = (total - HEADER_LEN) as u16;
        self.buf[2..4].copy_from_slice(&len.to_be_bytes());
    }
}

/// Decodes an XOR-MAPPED-ADDRESS value (RFC 8489 §14.2) of a message with `transaction_id`.
pub fn read_xor_mapped_address(value: &[u8], transaction_id: &[u8; 12]) -> Option<SocketAddr> {
    let port = u16::from_be_bytes([*value.get(2)?, *value.get(3)?]) ^ (MAGIC_COOKIE >> 16) as u16;
    match (value.get(1)?, value.len()) {
        (0x01, 8) => {
            let x = u32::from_be_bytes([value[4], value[5], value[6], value[7]]) ^ MAGIC_COOKIE;
            Some(SocketAddr::new(IpAddr::V4(x.into()), port))
        }
        (0x02, 20) => {
            let mut mask = [0u8; 16];
            mask[..4].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
            mask[4..].copy_from_slice(transaction_id);
            let mut ip = [0u8; 16];
            for i in 0..16 {
                ip[i] = value[4 + i] ^ mask[i];
            }
            Some(SocketAddr::new(IpAddr::V6(ip.into()), port))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use hex_literal::hex;

    use super::*;

    /// RFC 5769 §2.1: Sample Request (short-term credentials).
    const REQUEST: [u8; 108] = hex!(
        "00 01 00 58 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae"
        "80 22 00 10 53 54 55 4e 20 74 65 73 74 20 63 6c 69 65 6e 74"
        "00 24 00 04 6e 00 01 ff"
        "80 29 00 08 93 2f f9 b1 51 26 3b 36"
        "00 06 00 09 65 76 74 6a 3a 68 36 76 59 20 20 20"
        "00 08 00 14 9a ea a7 0c bf d8 cb 56 78 1e f2 b5 b2 d3 f2 49 c1 b5 71 a2"
        "80 28 00 04 e5 7a 3b cf"
    );
    /// RFC 5769 §2.2: Sample IPv4 Response, XOR-MAPPED-ADDRESS 192.0.2.1:32853.
    const IPV4_RESPONSE: [u8; 80] = hex!(
        "01 01 00 3c 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae"
        "80 22 00 0b 74 65 73 74 20 76 65 63 74 6f 72 20"
        "00 20 00 08 00 01 a1 47 e1 12 a6 43"
        "00 08 00 14 2b 91 f5 99 fd 9e 90 c3 8c 74 89 f9 2a f9 ba 53 f0 6b e7 d7"
        "80 28 00 04 c0 7d 4c 96"
    );
    /// RFC 5769 §2.3: Sample IPv6 Response, [2001:db8:1234:5678:11:2233:4455:6677]:32853.
    const IPV6_RESPONSE: [u8; 92] = hex!(
        "01 01 00 48 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae"
        "80 22 00 0b 74 65 73 74 20 76 65 63 74 6f 72 20"
        "00 20 00 14 00 02 a1 47 01 13 a9 fa a5 d3 f1 79 bc 25 f4 b5 be d2 b9 d9"
        "00 08 00 14 a3 82 95 4e 4b e6 7b f1 17 84 c9 7c 82 92 c2 75 bf e3 ed 41"
        "80 28 00 04 c8 fb 0b 4c"
    );
    const PASSWORD: &[u8] = b"VOkJxbRl1RmTxUk/WvJxBt";
    const TID: [u8; 12] = hex!("b7 e7 a7 01 bc 34 d6 86 fa 87 df ae");

    #[test]
    fn rfc5769_request() {
        let m = Message::parse(&REQUEST).unwrap();
        assert_eq!(m.msg_type(), msg_type::BINDING_REQUEST);
        assert_eq!(m.transaction_id(), TID);
        assert_eq!(m.attribute(attr::USERNAME), Some(&b"evtj:h6vY"[..]));
        assert_eq!(m.attribute(attr::PRIORITY), Some(&hex!("6e0001ff")[..]));
        m.verify_fingerprint().unwrap();
        m.verify_integrity(PASSWORD).unwrap();
        assert_eq!(m.verify_integrity(b"wrong"), Err(Error::BadIntegrity));
        for i in 0..REQUEST.len() {
            let mut bad = REQUEST;
            bad[i] ^= 0x10;
            let ok = Message::parse(&bad).is_ok_and(|m| m.verify_fingerprint().is_ok());
            assert!(!ok, "flip at {i} still verified");
        }
    }

    #[test]
    fn rfc5769_responses() {
        for (raw, addr) in [
            (&IPV4_RESPONSE[..], "192.0.2.1:32853"),
            (
                &IPV6_RESPONSE[..],
                "[2001:db8:1234:5678:11:2233:4455:6677]:32853",
            ),
        ] {
            let m = Message::parse(raw).unwrap();
            assert_eq!(m.msg_type(), msg_type::BINDING_SUCCESS);
            m.verify_fingerprint().unwrap();
            m.verify_integrity(PASSWORD).unwrap();
            let value = m.attribute(attr::XOR_MAPPED_ADDRESS).unwrap();
            assert_eq!(
                read_xor_mapped_address(value, &TID),
                Some(addr.parse().unwrap())
            );
        }
    }

    /// Writing the RFC 5769 §2.2 response from its parts gives its exact bytes.
    #[test]
    fn writer_reproduces_rfc5769_ipv4_response() {
        for (expected, addr) in [
            (&IPV4_RESPONSE[..], "192.0.2.1:32853"),
            (
                &IPV6_RESPONSE[..],
                "[2001:db8:1234:5678:11:2233:4455:6677]:32853",
            ),
        ] {
            let mut buf = [0xffu8; 128];
            let mut w = Writer::new(&mut buf, msg_type::BINDING_SUCCESS, &TID).unwrap();
            // The RFC pads SOFTWARE with spaces, not zeros: write the padded value and fix
            // the length field to the unpadded 11.
            w.attribute(attr::SOFTWARE, b"test vector ").unwrap();
            w.buf[22..24].copy_from_slice(&11u16.to_be_bytes());
            w.xor_mapped_address(addr.parse().unwrap()).unwrap();
            w.message_integrity(PASSWORD).unwrap();
            let n = w.fingerprint().unwrap();
            assert_eq!(&buf[..n], expected);
        }
    }

    #[test]
    fn malformed_messages() {
        assert_eq!(Message::parse(&[]).err(), Some(Error::Malformed));
        assert_eq!(Message::parse(&REQUEST[..19]).err(), Some(Error::Malformed));
        assert_eq!(
            Message::parse(&REQUEST[..100]).err(),
            Some(Error::Malformed)
        );
        let mut top_bits = REQUEST;
        top_bits[0] = 0x40;
        assert_eq!(Message::parse(&top_bits).err(), Some(Error::Malformed));
        let mut cookie = REQUEST;
        cookie[4] = 0;
        assert_eq!(Message::parse(&cookie).err(), Some(Error::Malformed));
        // An attribute length running past the end.
        let mut long_attr = REQUEST;
        long_attr[22..24].copy_from_slice(&0x0400u16.to_be_bytes());
        assert_eq!(Message::parse(&long_attr).err(), Some(Error::Malformed));
        // A header-only message is fine and has no attributes.
        let m = Message::parse(&REQUEST[..20]).err();
        assert_eq!(m, Some(Error::Malformed)); // length field still says 0x58
        let mut empty = [0u8; 20];
        empty[..20].copy_from_slice(&REQUEST[..20]);
        empty[2] = 0;
        empty[3] = 0;
        let m = Message::parse(&empty).unwrap();
        assert_eq!(m.attributes().count(), 0);
        assert_eq!(
            m.verify_integrity(PASSWORD),
            Err(Error::MissingAttribute(attr::MESSAGE_INTEGRITY))
        );
        assert_eq!(
            m.verify_fingerprint(),
            Err(Error::MissingAttribute(attr::FINGERPRINT))
        );
    }
}
