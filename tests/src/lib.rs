//! Shared helpers for the cross-crate tests: packet builders, peer adapters, and the
//! simulated network ([`pair::Pair`]: loss, reorder, duplication, virtual clock).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

pub mod pair;

use rand::{Rng, RngCore};

/// How an RTP packet's header extension looks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Extension {
    None,
    /// RFC 8285 one-byte form (0xBEDE).
    OneByte,
    /// RFC 8285 two-byte form (0x1000).
    TwoByte,
}

/// The shape of a test RTP packet.
#[derive(Clone, Copy, Debug)]
pub struct RtpShape {
    pub ssrc: u32,
    pub seq: u16,
    pub csrcs: u8,
    pub extension: Extension,
    /// Extension data length in 32-bit words.
    pub ext_words: u16,
    pub payload: usize,
    /// RTP padding bytes at the end of the payload (P bit).
    pub padding: u8,
}

impl RtpShape {
    pub fn simple(ssrc: u32, seq: u16, payload: usize) -> Self {
        RtpShape {
            ssrc,
            seq,
            csrcs: 0,
            extension: Extension::None,
            ext_words: 0,
            payload,
            padding: 0,
        }
    }

    /// Bytes the packet takes on the wire.
    pub fn wire_len(&self) -> usize {
        let ext = if self.extension == Extension::None {
            0
        } else {
            4 + 4 * self.ext_words as usize
        };
        12 + 4 * self.csrcs as usize + ext + self.payload + self.padding as usize
    }
}

/// Builds the RTP packet `shape` describes, with payload bytes from `rng`.
pub fn rtp_packet(shape: &RtpShape, rng: &mut impl RngCore) -> Vec<u8> {
    let mut p = Vec::with_capacity(shape.wire_len());
    let x = shape.extension != Extension::None;
    let pad = shape.padding > 0;
    p.push(0x80 | (u8::from(pad) << 5) | (u8::from(x) << 4) | shape.csrcs);
    p.push(96 | 0x80);
    p.extend_from_slice(&shape.seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(shape.seq).wrapping_mul(960)).to_be_bytes());
    p.extend_from_slice(&shape.ssrc.to_be_bytes());
    for i in 0..shape.csrcs {
        p.extend_from_slice(&(0x1000_0000 + u32::from(i)).to_be_bytes());
    }
    match shape.extension {
        Extension::None => {}
        Extension::OneByte | Extension::TwoByte => {
            let profile: u16 = if shape.extension == Extension::OneByte {
                0xbede
            } else {
                0x1000
            };
            p.extend_from_slice(&profile.to_be_bytes());
            p.extend_from_slice(&shape.ext_words.to_be_bytes());
            let start = p.len();
            p.resize(start + 4 * shape.ext_words as usize, 0);
            fill_extension_elements(&mut p[start..], shape.extension, rng);
        }
    }
    let start = p.len();
    p.resize(start + shape.payload, 0);
    rng.fill_bytes(&mut p[start..]);
    if pad {
        p.extend(std::iter::repeat_n(0, usize::from(shape.padding) - 1));
        p.push(shape.padding);
    }
    debug_assert_eq!(p.len(), shape.wire_len());
    p
}

/// Fills `area` with well-formed RFC 8285 elements (random ids and data), zero padding after.
fn fill_extension_elements(area: &mut [u8], form: Extension, rng: &mut impl RngCore) {
    let mut at = 0;
    loop {
        let left = area.len() - at;
        let (head, max_data) = match form {
            Extension::OneByte => (1, 16),
            Extension::TwoByte => (2, 255),
            Extension::None => return,
        };
        if left < head + 1 {
            return;
        }
        let data = (rng.next_u32() as usize % max_data.min(left - head)) + 1;
        match form {
            Extension::OneByte => {
                area[at] = ((1 + rng.next_u32() % 14) as u8) << 4 | (data - 1) as u8
            }
            _ => {
                area[at] = 1 + (rng.next_u32() % 254) as u8;
                area[at + 1] = data as u8;
            }
        }
        rng.fill_bytes(&mut area[at + head..at + head + data]);
        at += head + data;
    }
}

/// A random shape of total length at most `max_len`.
pub fn random_shape(rng: &mut impl Rng, ssrc: u32, seq: u16, max_len: usize) -> RtpShape {
    let csrcs = rng.gen_range(0..=15);
    let extension = match rng.gen_range(0..3) {
        0 => Extension::None,
        1 => Extension::OneByte,
        _ => Extension::TwoByte,
    };
    let ext_words = if extension == Extension::None {
        0
    } else {
        rng.gen_range(0..=8)
    };
    let mut shape = RtpShape {
        ssrc,
        seq,
        csrcs,
        extension,
        ext_words,
        payload: 0,
        padding: rng.gen_range(0..3) * 4,
    };
    let room = max_len.saturating_sub(shape.wire_len());
    shape.payload = rng.gen_range(0..=room);
    shape
}

/// A compound-looking RTCP packet (one SR with `blocks` report blocks, then junk words) of
/// `len` bytes (a multiple of 4, at least 8).
pub fn rtcp_packet(ssrc: u32, len: usize, rng: &mut impl RngCore) -> Vec<u8> {
    assert!(len >= 8 && len.is_multiple_of(4));
    let mut p = vec![0u8; len];
    rng.fill_bytes(&mut p[8..]);
    p[0] = 0x80;
    p[1] = 200; // SR
    p[2..4].copy_from_slice(&((len / 4 - 1) as u16).to_be_bytes());
    p[4..8].copy_from_slice(&ssrc.to_be_bytes());
    p
}

/// Test key material: key and salt of the profile's lengths.
pub fn key_material(rng: &mut impl RngCore, salt_len: usize) -> ([u8; 16], Vec<u8>) {
    let mut key = [0u8; 16];
    rng.fill_bytes(&mut key);
    let mut salt = vec![0u8; salt_len];
    rng.fill_bytes(&mut salt);
    (key, salt)
}
