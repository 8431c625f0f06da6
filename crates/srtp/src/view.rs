//! Public, zero-copy views of RTP and RTCP headers for routers and SFUs: read the SSRC,
//! payload type, sequence number and timestamp, rewrite them in place, and remap or blank
//! RTP header extensions (RFC 8285) without moving a byte of payload.
//!
//! ```
//! use callsec_srtp::view::RtpView;
//!
//! let mut pkt = [0x90, 0x6f, 0, 7, 0, 0, 0, 1, 0, 0, 0, 9, 0xbe, 0xde, 0, 1, 0x30, 0xaa, 0, 0, 1, 2];
//! let mut rtp = RtpView::new(&mut pkt)?;
//! assert_eq!((rtp.payload_type(), rtp.sequence_number(), rtp.ssrc()), (111, 7, 9));
//! rtp.set_payload_type(100);
//! // Extension id 3 becomes 5; anything else would become padding.
//! rtp.map_extension_ids(|id| (id == 3).then_some(5));
//! assert_eq!(rtp.extension(5), Some(&[0xaa][..]));
//! # Ok::<(), callsec_srtp::Malformed>(())
//! ```

use crate::Malformed;
use crate::packet::{rtcp_ssrc, rtp_header};

/// RFC 8285 §4.2: the one-byte header form's "defined by profile" value.
const ONE_BYTE_PROFILE: u16 = 0xbede;
/// RFC 8285 §4.3: the two-byte form's profile, low four bits are "appbits".
const TWO_BYTE_PROFILE_MASK: u16 = 0xfff0;
const TWO_BYTE_PROFILE: u16 = 0x1000;

/// A validated RTP packet (fixed header, CSRCs and extension within bounds) over a mutable
/// buffer. Only the header is ever read or written.
#[derive(Debug)]
pub struct RtpView<'a> {
    buf: &'a mut [u8],
    header_len: usize,
}

impl<'a> RtpView<'a> {
    /// Checks the header of `buf` (version 2, CSRC list and extension inside the buffer).
    pub fn new(buf: &'a mut [u8]) -> Result<Self, Malformed> {
        let header_len = rtp_header(buf)?.len;
        Ok(Self { buf, header_len })
    }

    /// Bytes of fixed header, CSRC list and extension.
    pub fn header_len(&self) -> usize {
        self.header_len
    }

    /// The marker bit.
    pub fn marker(&self) -> bool {
        self.buf[1] & 0x80 != 0
    }

    /// The payload type (7 bits).
    pub fn payload_type(&self) -> u8 {
        self.buf[1] & 0x7f
    }

    /// Rewrites the payload type, keeping the marker bit. Values above 127 are masked.
    pub fn set_payload_type(&mut self, pt: u8) {
        self.buf[1] = (self.buf[1] & 0x80) | (pt & 0x7f);
    }

    /// The sequence number.
    pub fn sequence_number(&self) -> u16 {
        u16::from_be_bytes([self.buf[2], self.buf[3]])
    }

    /// Rewrites the sequence number.
    pub fn set_sequence_number(&mut self, seq: u16) {
        self.buf[2..4].copy_from_slice(&seq.to_be_bytes());
    }

    /// The RTP timestamp.
    pub fn timestamp(&self) -> u32 {
        u32::from_be_bytes([self.buf[4], self.buf[5], self.buf[6], self.buf[7]])
    }

    /// Rewrites the RTP timestamp.
    pub fn set_timestamp(&mut self, ts: u32) {
        self.buf[4..8].copy_from_slice(&ts.to_be_bytes());
    }

    /// The SSRC.
    pub fn ssrc(&self) -> u32 {
        u32::from_be_bytes([self.buf[8], self.buf[9], self.buf[10], self.buf[11]])
    }

    /// Rewrites the SSRC.
    pub fn set_ssrc(&mut self, ssrc: u32) {
        self.buf[8..12].copy_from_slice(&ssrc.to_be_bytes());
    }

    /// The extension block (after its 4-byte profile/length word), its profile and where
    /// it starts, if the X bit is set.
    fn extension_block(&self) -> Option<(u16, usize, usize)> {
        if self.buf[0] & 0x10 == 0 {
            return None;
        }
        let at = 12 + 4 * usize::from(self.buf[0] & 0x0f);
        let profile = u16::from_be_bytes([self.buf[at], self.buf[at + 1]]);
        Some((profile, at + 4, self.header_len))
    }

    /// The data of the first extension element with this id, in either RFC 8285 form.
    pub fn extension(&self, id: u8) -> Option<&[u8]> {
        let (profile, start, end) = self.extension_block()?;
        let block = &self.buf[start..end];
        let mut i = 0;
        while let Some(el) = next_element(block, profile, i) {
            if el.id == id {
                return Some(&block[el.data]);
            }
            i = el.data.end;
        }
        None
    }

    /// Gives every extension element a new id, `map(old)`, or turns it into padding when
    /// `map` returns `None` (RFC 8285 §4.2: zero bytes between elements are padding). The
    /// packet keeps its length. A new id the element's form cannot carry (0, or above 14 in
    /// the one-byte form) blanks the element too.
    pub fn map_extension_ids(&mut self, mut map: impl FnMut(u8) -> Option<u8>) {
        let Some((profile, start, end)) = self.extension_block() else {
            return;
        };
        let two_byte = profile & TWO_BYTE_PROFILE_MASK == TWO_BYTE_PROFILE;
        let block = &mut self.buf[start..end];
        let mut i = 0;
        while let Some(el) = next_element(block, profile, i) {
            let new = map(el.id).filter(|&new| {
                if two_byte {
                    new != 0
                } else {
                    (1..=14).contains(&new)
                }
            });
            match new {
                None => block[el.at..el.data.end].fill(0),
                Some(new) if two_byte => block[el.at] = new,
                Some(new) => block[el.at] = (new << 4) | (block[el.at] & 0x0f),
            }
            i = el.data.end;
        }
    }
}

/// One extension element: where its header starts, its id and its data.
struct Element {
    at: usize,
    id: u8,
    data: std::ops::Range<usize>,
}

/// The next element of an extension block at or after `i`, skipping padding; `None` at the
/// end, for an unknown profile, or at the first malformed element (the rest is left alone).
fn next_element(block: &[u8], profile: u16, mut i: usize) -> Option<Element> {
    let two_byte = profile & TWO_BYTE_PROFILE_MASK == TWO_BYTE_PROFILE;
    if profile != ONE_BYTE_PROFILE && !two_byte {
        return None;
    }
    while *block.get(i)? == 0 {
        i += 1; // padding
    }
    let b = block[i];
    let (id, len, header) = if two_byte {
        (b, usize::from(*block.get(i + 1)?), 2)
    } else if b >> 4 == 15 {
        return None; // RFC 8285 §4.2: id 15 stops processing
    } else {
        (b >> 4, usize::from(b & 0x0f) + 1, 1)
    };
    let data = i + header..i + header + len;
    (data.end <= block.len()).then_some(Element { at: i, id, data })
}

/// The first 8 bytes of an RTCP packet: its type, count and sender SSRC (RFC 3550 §6.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RtcpHeader {
    /// Packet type (200 SR, 201 RR, 205 RTPFB, 206 PSFB, ...).
    pub packet_type: u8,
    /// The 5-bit count / format field.
    pub count: u8,
    /// Length of this packet in bytes (from the length field).
    pub len: usize,
    /// The sender SSRC.
    pub ssrc: u32,
}

impl RtcpHeader {
    /// Reads the header of the first packet of a (compound) RTCP packet.
    pub fn parse(packet: &[u8]) -> Result<Self, Malformed> {
        let ssrc = rtcp_ssrc(packet)?;
        Ok(Self {
            packet_type: packet[1],
            count: packet[0] & 0x1f,
            len: 4 * (usize::from(u16::from_be_bytes([packet[2], packet[3]])) + 1),
            ssrc,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_byte_packet() -> Vec<u8> {
        let mut p = vec![0x90, 0x60, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3];
        // 0xBEDE, 3 words: id1 len1 [aa], pad, id2 len2 [bb cc dd], id3 len0 [ee], pad...
        p.extend_from_slice(&[0xbe, 0xde, 0, 3]);
        p.extend_from_slice(&[
            0x10, 0xaa, 0x00, 0x22, 0xbb, 0xcc, 0xdd, 0x30, 0xee, 0, 0, 0,
        ]);
        p.extend_from_slice(b"payload");
        p
    }

    #[test]
    fn reads_and_rewrites_fields() {
        let mut p = one_byte_packet();
        let mut v = RtpView::new(&mut p).unwrap();
        assert_eq!(v.header_len(), 28);
        assert_eq!(v.payload_type(), 0x60);
        assert!(!v.marker());
        v.set_payload_type(0xff);
        assert_eq!(v.payload_type(), 0x7f);
        v.set_sequence_number(0xabcd);
        v.set_ssrc(0x01020304);
        v.set_timestamp(77);
        assert_eq!(
            (v.sequence_number(), v.ssrc(), v.timestamp()),
            (0xabcd, 0x01020304, 77)
        );
        assert_eq!(v.extension(1), Some(&[0xaa][..]));
        assert_eq!(v.extension(2), Some(&[0xbb, 0xcc, 0xdd][..]));
        assert_eq!(v.extension(3), Some(&[0xee][..]));
        assert_eq!(v.extension(4), None);
        assert!(p.ends_with(b"payload"));
    }

    #[test]
    fn maps_and_blanks_one_byte_elements() {
        let mut p = one_byte_packet();
        let before = p.clone();
        let mut v = RtpView::new(&mut p).unwrap();
        v.map_extension_ids(|id| match id {
            1 => Some(9),
            3 => Some(15), // not representable: blanked
            _ => None,
        });
        assert_eq!(v.extension(9), Some(&[0xaa][..]));
        assert_eq!(v.extension(1), None);
        assert_eq!(v.extension(2), None);
        assert_eq!(v.extension(3), None);
        assert_eq!(p.len(), before.len());
        assert_eq!(&p[16..28], &[0x90, 0xaa, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(p[28..], before[28..]);
    }

    #[test]
    fn maps_two_byte_elements() {
        let mut p = vec![0x90, 0x60, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3];
        p.extend_from_slice(&[0x10, 0x00, 0, 2, 20, 2, 1, 2, 0, 7, 0, 0]);
        let mut v = RtpView::new(&mut p).unwrap();
        assert_eq!(v.extension(20), Some(&[1, 2][..]));
        assert_eq!(v.extension(7), Some(&[][..]));
        v.map_extension_ids(|id| (id == 20).then_some(200));
        assert_eq!(v.extension(200), Some(&[1, 2][..]));
        assert_eq!(v.extension(7), None);
    }

    #[test]
    fn malformed_elements_stop_the_walk_without_panicking() {
        for len_byte in 0..=255u8 {
            let mut p = vec![0x90, 0x60, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0xbe, 0xde, 0, 1];
            p.extend_from_slice(&[len_byte, 1, 2, 3]);
            let mut v = RtpView::new(&mut p).unwrap();
            let _ = v.extension(len_byte >> 4);
            v.map_extension_ids(Some);
            v.map_extension_ids(|_| None);
        }
        assert_eq!(
            RtpView::new(&mut [0x80; 11]).err(),
            Some(Malformed::TooShort)
        );
    }

    #[test]
    fn rtcp_header() {
        let h = RtcpHeader::parse(&[0x81, 206, 0, 2, 0, 0, 0, 5, 0, 0, 0, 6]).unwrap();
        assert_eq!(
            h,
            RtcpHeader {
                packet_type: 206,
                count: 1,
                len: 12,
                ssrc: 5
            }
        );
    }
}
