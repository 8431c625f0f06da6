//! The DTLS 1.2 record layer (RFC 6347 §4.1): headers, epochs, 48-bit sequence numbers, the
//! replay window, and record protection for the two suites.
//!
//! ```text
//!  0        1        2        3        4        5        6        7
//! +--------+--------+--------+--------+--------+--------+--------+--------+
//! | type   | version (FEFD)  | epoch           | sequence_number (48 bit)
//! +--------+--------+--------+--------+--------+--------+--------+--------+
//!                            | length          | fragment ...
//! +--------+--------+--------+--------+--------+
//! ```

use aes::Aes256;
use aes::cipher::KeyInit;
use aes::cipher::{BlockEncrypt, InnerIvInit};
use cbc::cipher::block_padding::NoPadding;
use cbc::cipher::{BlockDecryptMut, BlockEncryptMut};
use hmac::{Hmac, Mac};
use sha1::{Digest, Sha1};
use subtle::{ConstantTimeEq, ConstantTimeLess};
use zeroize::Zeroizing;

use crate::codec::{Reader, put_u48};
use callsec_srtp::provider::Aes128GcmKey;

use crate::crypto::Provider;
use crate::error::Error;

/// DTLS 1.2 on the wire (RFC 6347 §4.1: the one's complement of 1.2).
pub(crate) const DTLS12: u16 = 0xfefd;
/// DTLS 1.0, accepted as the record version of a first ClientHello (RFC 6347 §4.1).
pub(crate) const DTLS10: u16 = 0xfeff;

/// Record header length.
pub(crate) const HEADER_LEN: usize = 13;
/// Largest plaintext fragment (RFC 5246 §6.2.1).
pub(crate) const MAX_PLAINTEXT: usize = 1 << 14;
/// Largest protected fragment accepted (RFC 5246 §6.2.3: 2^14 + 2048).
pub(crate) const MAX_CIPHERTEXT: usize = MAX_PLAINTEXT + 2048;
/// Largest sequence number (RFC 6347 §4.1: 48 bits).
pub(crate) const MAX_SEQ: u64 = (1 << 48) - 1;

/// Record content types (RFC 5246 §6.2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ContentType(pub(crate) u8);

impl ContentType {
    pub(crate) const CHANGE_CIPHER_SPEC: Self = Self(20);
    pub(crate) const ALERT: Self = Self(21);
    pub(crate) const HANDSHAKE: Self = Self(22);
    pub(crate) const APPLICATION_DATA: Self = Self(23);
}

/// One record as it sits in a datagram.
#[derive(Debug, Clone)]
pub(crate) struct Record<'a> {
    pub(crate) content_type: ContentType,
    pub(crate) version: u16,
    pub(crate) epoch: u16,
    pub(crate) seq: u64,
    pub(crate) fragment: &'a [u8],
}

impl<'a> Record<'a> {
    /// Parses the next record from `r` (RFC 6347 §4.1). A record that runs past the datagram
    /// or is longer than 2^14 + 2048 is an error; the caller drops the rest of the datagram
    /// (RFC 6347 §4.1.2.7).
    pub(crate) fn read(r: &mut Reader<'a>) -> Result<Self, Error> {
        let content_type = ContentType(r.u8()?);
        let version = r.u16()?;
        let epoch = r.u16()?;
        let seq = r.u48()?;
        let len = usize::from(r.u16()?);
        if len > MAX_CIPHERTEXT {
            return Err(Error::Decode("record too long"));
        }
        let fragment = r.take(len)?;
        Ok(Self {
            content_type,
            version,
            epoch,
            seq,
            fragment,
        })
    }

    /// Splits a datagram into records, stopping at the first malformed one.
    #[cfg(test)]
    pub(crate) fn split(datagram: &'a [u8]) -> impl Iterator<Item = Record<'a>> + 'a {
        let mut r = Reader::new(datagram);
        std::iter::from_fn(move || {
            if r.remaining() == 0 {
                None
            } else {
                Record::read(&mut r).ok()
            }
        })
    }
}

/// Writes a record header.
pub(crate) fn put_header(out: &mut Vec<u8>, ct: ContentType, epoch: u16, seq: u64, len: usize) {
    out.push(ct.0);
    out.extend_from_slice(&DTLS12.to_be_bytes());
    out.extend_from_slice(&epoch.to_be_bytes());
    put_u48(out, seq);
    out.extend_from_slice(&(len as u16).to_be_bytes());
}

/// The anti-replay window of one epoch (RFC 6347 §4.1.2.6): the highest sequence number
/// authenticated so far and a 64-record bitmap below it.
#[derive(Debug, Clone, Default)]
pub(crate) struct ReplayWindow {
    top: Option<u64>,
    bits: u64,
}

impl ReplayWindow {
    /// Width of the window.
    const WIDTH: u64 = 64;

    /// Whether `seq` may be new: not seen, not too old. Checked before authentication.
    pub(crate) fn check(&self, seq: u64) -> bool {
        match self.top {
            None => true,
            Some(top) if seq > top => true,
            Some(top) => {
                let back = top - seq;
                back < Self::WIDTH && self.bits & (1 << back) == 0
            }
        }
    }

    /// Marks `seq` as received. Call only after the record authenticated.
    pub(crate) fn update(&mut self, seq: u64) {
        match self.top {
            None => {
                self.top = Some(seq);
                self.bits = 1;
            }
            Some(top) if seq > top => {
                let shift = seq - top;
                self.bits = if shift >= Self::WIDTH {
                    1
                } else {
                    (self.bits << shift) | 1
                };
                self.top = Some(seq);
            }
            Some(top) => {
                let back = top - seq;
                if back < Self::WIDTH {
                    self.bits |= 1 << back;
                }
            }
        }
    }
}

/// Record protection for one direction of one epoch.
pub(crate) enum RecordCipher {
    /// TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 (RFC 5288 §3, RFC 5289): 4-byte salt from the
    /// key block, 8-byte explicit nonce = epoch + sequence number.
    /// The AEAD comes from the connection's crypto provider.
    Gcm {
        aead: Box<Aes128GcmKey>,
        salt: [u8; 4],
    },
    /// TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA (RFC 4492, RFC 5246 §6.2.3.2): HMAC-SHA1 then
    /// AES-256-CBC with an explicit per-record IV.
    Cbc {
        aes: Box<Aes256>,
        mac_key: Zeroizing<[u8; 20]>,
        iv_gen: Box<Aes256>,
    },
}

impl std::fmt::Debug for RecordCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Gcm { .. } => "RecordCipher::Gcm",
            Self::Cbc { .. } => "RecordCipher::Cbc",
        })
    }
}

/// GCM explicit nonce + tag.
const GCM_OVERHEAD: usize = 8 + 16;
/// HMAC-SHA1 output.
const MAC_LEN: usize = 20;
/// AES block.
const BLOCK: usize = 16;

/// `seq_num` of RFC 6347 §4.1.2.1: epoch (2 bytes) + sequence number (6 bytes).
fn seq_num(epoch: u16, seq: u64) -> [u8; 8] {
    ((u64::from(epoch) << 48) | seq).to_be_bytes()
}

/// RFC 5288 §3: GCMNonce = salt (4 bytes, implicit) || nonce_explicit (8 bytes).
fn gcm_nonce(salt: &[u8; 4], explicit: &[u8]) -> [u8; 12] {
    let mut nonce = [0u8; 12];
    nonce[..4].copy_from_slice(salt);
    nonce[4..].copy_from_slice(explicit);
    nonce
}

/// The additional data / MAC header of RFC 5246 §6.2.3.3 and §6.2.3.1.
fn pseudo_header(epoch: u16, seq: u64, ct: ContentType, version: u16, len: usize) -> [u8; 13] {
    let mut h = [0u8; 13];
    h[..8].copy_from_slice(&seq_num(epoch, seq));
    h[8] = ct.0;
    h[9..11].copy_from_slice(&version.to_be_bytes());
    h[11..13].copy_from_slice(&(len as u16).to_be_bytes());
    h
}

impl RecordCipher {
    /// A GCM direction from its key and salt, computed by `provider`.
    pub(crate) fn gcm(key: &[u8], salt: &[u8], provider: Provider) -> Result<Self, Error> {
        let key: &[u8; 16] = key.try_into().map_err(|_| Error::Config("bad GCM key"))?;
        let aead = Box::new(Aes128GcmKey::new(provider, key));
        let mut s = [0u8; 4];
        s.copy_from_slice(salt.get(..4).ok_or(Error::Config("bad GCM salt"))?);
        Ok(Self::Gcm { aead, salt: s })
    }

    /// A CBC direction from its encryption key, MAC key and a secret for IV generation.
    pub(crate) fn cbc(key: &[u8], mac_key: &[u8], iv_secret: &[u8; 32]) -> Result<Self, Error> {
        let aes = Aes256::new_from_slice(key).map_err(|_| Error::Config("bad CBC key"))?;
        let mut mk = Zeroizing::new([0u8; 20]);
        mk.copy_from_slice(mac_key.get(..20).ok_or(Error::Config("bad MAC key"))?);
        let iv_gen =
            Aes256::new_from_slice(iv_secret).map_err(|_| Error::Config("bad IV secret"))?;
        Ok(Self::Cbc {
            aes: Box::new(aes),
            mac_key: mk,
            iv_gen: Box::new(iv_gen),
        })
    }

    /// Appends the protected record (header and fragment) for `plaintext` to `out`.
    pub(crate) fn seal(
        &self,
        out: &mut Vec<u8>,
        ct: ContentType,
        epoch: u16,
        seq: u64,
        plaintext: &[u8],
    ) {
        // On an (unreachable) cipher failure nothing is appended: never a record whose
        // payload went out unencrypted.
        let base = out.len();
        match self {
            Self::Gcm { aead, salt } => {
                // RFC 5288 §3: nonce = salt || explicit; explicit = seq_num (never random).
                let explicit = seq_num(epoch, seq);
                let nonce = gcm_nonce(salt, &explicit);
                let aad = pseudo_header(epoch, seq, ct, DTLS12, plaintext.len());
                put_header(out, ct, epoch, seq, plaintext.len() + GCM_OVERHEAD);
                out.extend_from_slice(&explicit);
                let start = out.len();
                out.extend_from_slice(plaintext);
                // Fails only past GCM's length limit (records are ≤ 2^14): then the tag is
                // zero and the record fails at the peer, still encrypted.
                let tag = aead.seal(&nonce, &aad, &mut out[start..]);
                out.extend_from_slice(&tag);
            }
            Self::Cbc {
                aes,
                mac_key,
                iv_gen,
            } => {
                // RFC 5246 §6.2.3.1: MAC over seq_num + type + version + length + content.
                let Ok(mut mac) = <Hmac<Sha1> as Mac>::new_from_slice(&mac_key[..]) else {
                    return; // HMAC takes keys of any length
                };
                mac.update(&pseudo_header(epoch, seq, ct, DTLS12, plaintext.len()));
                mac.update(plaintext);
                let tag = mac.finalize().into_bytes();
                // RFC 5246 §6.2.3.2: the IV must be unpredictable; it is the encryption of the
                // record's seq_num under a random per-connection key (NIST SP 800-38A App. C).
                let mut iv = [0u8; BLOCK];
                iv[..8].copy_from_slice(&seq_num(epoch, seq));
                iv_gen.encrypt_block((&mut iv).into());
                let body = plaintext.len() + MAC_LEN;
                let pad = BLOCK - 1 - body % BLOCK;
                let total = BLOCK + body + pad + 1;
                put_header(out, ct, epoch, seq, total);
                out.extend_from_slice(&iv);
                let start = out.len();
                out.extend_from_slice(plaintext);
                out.extend_from_slice(&tag);
                out.extend(std::iter::repeat_n(pad as u8, pad + 1));
                let len = out.len() - start;
                let enc = cbc::Encryptor::<Aes256>::inner_iv_init((**aes).clone(), (&iv).into());
                if enc
                    .encrypt_padded_mut::<NoPadding>(&mut out[start..], len)
                    .is_err()
                {
                    // Only for a length that is not whole blocks, which the padding rules out.
                    out.truncate(base);
                }
            }
        }
    }

    /// Authenticates and decrypts one record's fragment; returns the plaintext. Every failure
    /// is the same opaque `bad_record_mac` (RFC 5246 §6.2.3.2): the caller drops the record.
    pub(crate) fn open(&self, rec: &Record<'_>) -> Result<Vec<u8>, Error> {
        let bad = Error::Decode("bad_record_mac");
        match self {
            Self::Gcm { aead, salt } => {
                if rec.fragment.len() < GCM_OVERHEAD {
                    return Err(bad);
                }
                let (explicit, rest) = rec.fragment.split_at(8);
                let (body, tag) = rest.split_at(rest.len() - 16);
                let nonce = gcm_nonce(salt, explicit);
                let aad = pseudo_header(
                    rec.epoch,
                    rec.seq,
                    rec.content_type,
                    rec.version,
                    body.len(),
                );
                let tag: &[u8; 16] = tag.try_into().map_err(|_| bad.clone())?;
                // A copy: the received fragment stays as it was, and a failed copy holds no
                // plaintext (ring clears it, RustCrypto never decrypted it).
                let mut out = body.to_vec();
                aead.open(&nonce, &aad, &mut out, tag).map_err(|_| bad)?;
                Ok(out)
            }
            Self::Cbc { aes, mac_key, .. } => open_cbc(aes, mac_key, rec),
        }
    }

    /// Bytes a record adds beyond its plaintext, at most.
    pub(crate) fn overhead(&self) -> usize {
        match self {
            Self::Gcm { .. } => GCM_OVERHEAD,
            Self::Cbc { .. } => BLOCK + MAC_LEN + BLOCK,
        }
    }
}

/// SHA-1 compression calls for an HMAC inner hash over `n` bytes of message (64-byte ipad
/// block, then the message, then ≥ 9 bytes of Merkle–Damgård padding).
fn sha1_blocks(n: usize) -> usize {
    (64 + n + 9).div_ceil(64)
}

/// CBC + HMAC-SHA1 record opening with the Lucky13 counter-measures (AlFardan–Paterson 2013;
/// RFC 5246 §6.2.3.2 implementation note): padding checked in constant time, the MAC always
/// computed (over a zero-length pad when the padding is bad), the same number of SHA-1
/// compressions whatever the padding length, the MAC extracted and compared in constant time.
fn open_cbc(aes: &Aes256, mac_key: &[u8; 20], rec: &Record<'_>) -> Result<Vec<u8>, Error> {
    let bad = Error::Decode("bad_record_mac");
    let frag = rec.fragment;
    // IV + at least one block holding MAC and padding; whole blocks only.
    if frag.len() < BLOCK + MAC_LEN + 1 || !frag.len().is_multiple_of(BLOCK) {
        return Err(bad);
    }
    let (iv, body) = frag.split_at(BLOCK);
    let mut buf = Zeroizing::new(body.to_vec());
    let dec = cbc::Decryptor::<Aes256>::inner_iv_init(aes.clone(), iv.into());
    dec.decrypt_padded_mut::<NoPadding>(&mut buf)
        .map_err(|_| bad.clone())?;
    let n = buf.len();
    let pad = usize::from(buf[n - 1]);
    // good = pad + 1 + MAC_LEN <= n, computed without branches on secret data.
    let mut good = !((n as u64).ct_lt(&((pad + 1 + MAC_LEN) as u64)));
    // Check every byte that could be padding (up to 256) against the pad value.
    let check = n.min(256);
    for i in 0..check {
        let b = buf[n - 1 - i];
        let in_pad = (i as u64).ct_lt(&((pad + 1) as u64));
        good &= !in_pad | b.ct_eq(&(pad as u8));
    }
    // Length of the content: with a bad pad, as if the pad were zero-length.
    let pad_len = select_usize(pad + 1, 1, good.into());
    let content_len = n.saturating_sub(MAC_LEN + pad_len);
    let max_content = n - MAC_LEN - 1;

    let Ok(mut mac) = <Hmac<Sha1> as Mac>::new_from_slice(mac_key) else {
        return Err(bad);
    };
    mac.update(&pseudo_header(
        rec.epoch,
        rec.seq,
        rec.content_type,
        rec.version,
        content_len,
    ));
    mac.update(&buf[..content_len]);
    let expected = mac.finalize().into_bytes();
    // Equalise SHA-1 work with the longest possible content: `extra` more compressions, and
    // one for the dummy's own padding block every time, so that the total is
    // `sha1_blocks(13 + max_content) + 1` whatever the padding said (no branch on `extra`,
    // which depends on the secret padding length).
    let extra = sha1_blocks(13 + max_content) - sha1_blocks(13 + content_len);
    let mut dummy = Sha1::new();
    for _ in 0..extra {
        dummy.update([0u8; 64]);
    }
    let _ = std::hint::black_box(dummy.finalize());
    // Extract the received MAC from its secret-dependent position in constant time.
    let lowest = n.saturating_sub(MAC_LEN + 256);
    let mut received = [0u8; MAC_LEN];
    for start in lowest..=(n - MAC_LEN) {
        let here = (start as u64).ct_eq(&(content_len as u64));
        let mask = 0u8.wrapping_sub(here.unwrap_u8());
        for (j, r) in received.iter_mut().enumerate() {
            *r |= buf[start + j] & mask;
        }
    }
    let ok = good & expected.as_slice().ct_eq(&received);
    if bool::from(ok) {
        buf.truncate(content_len);
        Ok(buf.to_vec())
    } else {
        Err(bad)
    }
}

/// Branch-free select for lengths: `a` if `choose_a`, else `b`.
fn select_usize(a: usize, b: usize, choose_a: bool) -> usize {
    let mask = 0usize.wrapping_sub(usize::from(choose_a));
    (a & mask) | (b & !mask)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(bytes: &[u8]) -> Record<'_> {
        Record::read(&mut Reader::new(bytes)).unwrap()
    }

    #[test]
    fn header_round_trip() {
        let mut out = Vec::new();
        put_header(
            &mut out,
            ContentType::HANDSHAKE,
            1,
            0x0000_1234_5678_9abc,
            3,
        );
        out.extend_from_slice(b"abc");
        let rec = parse(&out);
        assert_eq!(rec.content_type, ContentType::HANDSHAKE);
        assert_eq!(
            (rec.version, rec.epoch, rec.seq),
            (DTLS12, 1, 0x1234_5678_9abc)
        );
        assert_eq!(rec.fragment, b"abc");
        // Truncated and overlong records are errors.
        assert!(Record::read(&mut Reader::new(&out[..out.len() - 1])).is_err());
        let mut long = out.clone();
        long[11..13].copy_from_slice(&(MAX_CIPHERTEXT as u16 + 1).to_be_bytes());
        assert!(Record::read(&mut Reader::new(&long)).is_err());
        // Split stops at the first bad record.
        let mut two = out.clone();
        two.extend_from_slice(&out);
        two.extend_from_slice(&[22, 0xfe]);
        assert_eq!(Record::split(&two).count(), 2);
    }

    #[test]
    fn replay_window() {
        let mut w = ReplayWindow::default();
        assert!(w.check(5));
        w.update(5);
        assert!(!w.check(5));
        assert!(w.check(4));
        assert!(w.check(100));
        w.update(100);
        assert!(!w.check(5)); // too old: 95 behind
        assert!(w.check(37)); // 63 behind, inside
        assert!(!w.check(36)); // 64 behind, outside
        w.update(37);
        assert!(!w.check(37));
        w.update(1000);
        assert!(!w.check(100));
        assert!(w.check(999));
        // Checking does not update: only authenticated records move the window.
        assert!(w.check(2000));
        assert!(w.check(2000));
    }

    fn round_trip(c: &RecordCipher, pt: &[u8]) {
        let mut out = Vec::new();
        c.seal(&mut out, ContentType::APPLICATION_DATA, 1, 42, pt);
        let rec = parse(&out);
        assert!(rec.fragment.len() <= pt.len() + c.overhead());
        assert_eq!(c.open(&rec).unwrap(), pt);
        // Any flipped bit, in the header or the body, fails.
        for i in [0, 5, 12, 13, out.len() - 1, out.len() / 2 + 7] {
            let mut t = out.clone();
            t[i] ^= 0x01;
            if let Ok(rec) = Record::read(&mut Reader::new(&t)) {
                assert!(c.open(&rec).is_err(), "flip at {i}");
            }
        }
    }

    #[test]
    fn gcm_round_trip_and_tamper() {
        for &p in Provider::ALL {
            let c = RecordCipher::gcm(&[7; 16], &[1, 2, 3, 4], p).unwrap();
            for len in [0, 1, 15, 16, 100, 1000] {
                round_trip(&c, &vec![0x5a; len]);
            }
        }
        let c = RecordCipher::gcm(&[7; 16], &[1, 2, 3, 4], Provider::DEFAULT).unwrap();
        // The explicit nonce is the epoch and sequence number, never random.
        let mut out = Vec::new();
        c.seal(&mut out, ContentType::APPLICATION_DATA, 1, 42, b"x");
        assert_eq!(&out[13..21], &[0, 1, 0, 0, 0, 0, 0, 42]);
    }

    #[test]
    fn cbc_round_trip_and_tamper() {
        let c = RecordCipher::cbc(&[9; 32], &[3; 20], &[4; 32]).unwrap();
        for len in [0, 1, 11, 12, 13, 27, 28, 100, 1000, 4000] {
            round_trip(&c, &vec![0xa5; len]);
        }
    }

    /// Decrypts a sealed CBC record, lets `edit` change the padded plaintext (content, MAC,
    /// padding), and encrypts it again under the same IV: a record whose MAC is still right
    /// over the content but whose padding was tampered with.
    fn repad(c: &RecordCipher, sealed: &[u8], edit: impl Fn(&mut Vec<u8>)) -> Vec<u8> {
        let RecordCipher::Cbc { aes, .. } = c else {
            panic!("not CBC")
        };
        let (iv, body) = sealed[HEADER_LEN..].split_at(BLOCK);
        let mut buf = body.to_vec();
        cbc::Decryptor::<Aes256>::inner_iv_init((**aes).clone(), iv.into())
            .decrypt_padded_mut::<NoPadding>(&mut buf)
            .unwrap();
        edit(&mut buf);
        let len = buf.len();
        cbc::Encryptor::<Aes256>::inner_iv_init((**aes).clone(), iv.into())
            .encrypt_padded_mut::<NoPadding>(&mut buf, len)
            .unwrap();
        let mut out = sealed[..HEADER_LEN].to_vec();
        out[11..13].copy_from_slice(&((BLOCK + len) as u16).to_be_bytes());
        out.extend_from_slice(iv);
        out.extend_from_slice(&buf);
        out
    }

    /// MAC-then-encrypt leaves the padding outside the MAC (RFC 5246 §6.2.3.2): it must be
    /// checked on its own, every byte, and a longer (up to 255 bytes) padding is valid.
    #[test]
    fn cbc_padding_is_checked_apart_from_the_mac() {
        let c = RecordCipher::cbc(&[9; 32], &[3; 20], &[4; 32]).unwrap();
        let mut sealed = Vec::new();
        // 5 + 20 bytes of MAC: 7 bytes of padding, each 6.
        c.seal(&mut sealed, ContentType::APPLICATION_DATA, 1, 9, b"hello");
        assert_eq!(c.open(&parse(&sealed)).unwrap(), b"hello");
        // One padding byte changed (not the length byte): refused.
        for at in 2..=7 {
            let bad = repad(&c, &sealed, |b| {
                let n = b.len();
                b[n - at] ^= 0x40;
            });
            assert!(c.open(&parse(&bad)).is_err(), "padding byte -{at}");
        }
        // Two more blocks of padding (value 6 + 32 = 38): still valid, same content.
        let long = repad(&c, &sealed, |b| {
            let n = b.len();
            b.truncate(n - 7);
            b.extend(std::iter::repeat_n(38u8, 39));
        });
        assert_eq!(c.open(&parse(&long)).unwrap(), b"hello");
        // A padding length pointing into the MAC or beyond the record: refused.
        for pad in [7u8, 27, 200, 255] {
            let bad = repad(&c, &sealed, |b| {
                let n = b.len();
                b[n - 1] = pad;
            });
            assert!(c.open(&parse(&bad)).is_err(), "pad length {pad}");
        }
    }

    #[test]
    fn cbc_bad_padding_and_short_records_fail() {
        let c = RecordCipher::cbc(&[9; 32], &[3; 20], &[4; 32]).unwrap();
        for frag_len in [0, 16, 32, 47, 48] {
            let mut out = Vec::new();
            put_header(&mut out, ContentType::APPLICATION_DATA, 1, 1, frag_len);
            out.extend(std::iter::repeat_n(0xff, frag_len));
            assert!(c.open(&parse(&out)).is_err());
        }
    }
}
