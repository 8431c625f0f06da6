//! Just enough RTP and RTCP header parsing to protect packets: where the header ends (the
//! authenticated-only part), the SSRC and the sequence number. Payloads are never parsed.

use crate::Malformed;

/// The fields of an RTP header that SRTP needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RtpHeader {
    /// Bytes of fixed header, CSRC list and header extension: the AAD / the unencrypted part.
    pub len: usize,
    pub ssrc: u32,
    pub seq: u16,
}

/// Parses the RTP header at the start of `packet` (RFC 3550 §5.1, RFC 8285 for extensions).
///
/// ```text
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |V=2|P|X|  CC   |M|     PT      |       sequence number         |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                           timestamp                           |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                             SSRC                              |
/// +=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+
/// |                   CSRC list (CC × 32 bits)                    |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |  profile (0xBEDE / 0x100x)    |     length (32-bit words)     |  if X
/// |                     extension data ...                        |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
///
/// One-byte (0xBEDE) and two-byte (0x100x) extensions share this outer framing, so both are
/// carried opaquely; padding (P) belongs to the encrypted payload and needs no handling here.
pub(crate) fn rtp_header(packet: &[u8]) -> Result<RtpHeader, Malformed> {
    let fixed: &[u8; 12] = packet.first_chunk().ok_or(Malformed::TooShort)?;
    if fixed[0] >> 6 != 2 {
        return Err(Malformed::BadVersion);
    }
    let csrc_count = usize::from(fixed[0] & 0x0f);
    let mut len = 12 + 4 * csrc_count;
    if len > packet.len() {
        return Err(Malformed::CsrcPastEnd);
    }
    if fixed[0] & 0x10 != 0 {
        let ext = packet
            .get(len..len + 4)
            .ok_or(Malformed::ExtensionPastEnd)?;
        let words = usize::from(u16::from_be_bytes([ext[2], ext[3]]));
        len += 4 + 4 * words;
        if len > packet.len() {
            return Err(Malformed::ExtensionPastEnd);
        }
    }
    Ok(RtpHeader {
        len,
        ssrc: u32::from_be_bytes([fixed[8], fixed[9], fixed[10], fixed[11]]),
        seq: u16::from_be_bytes([fixed[2], fixed[3]]),
    })
}

/// Length of the RTCP part SRTCP never encrypts: the first header word and the sender SSRC.
pub(crate) const RTCP_HEADER_LEN: usize = 8;

/// Parses the first 8 bytes of a (compound) RTCP packet (RFC 3550 §6.4) and returns the
/// sender SSRC, the one SRTCP keys its index and replay state on (RFC 3711 §3.4).
///
/// ```text
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |V=2|P|    RC   |   PT          |             length            |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                         SSRC of sender                        |
/// +=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+
/// ```
pub(crate) fn rtcp_ssrc(packet: &[u8]) -> Result<u32, Malformed> {
    let fixed: &[u8; 8] = packet.first_chunk().ok_or(Malformed::TooShort)?;
    if fixed[0] >> 6 != 2 {
        return Err(Malformed::BadVersion);
    }
    Ok(u32::from_be_bytes([fixed[4], fixed[5], fixed[6], fixed[7]]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_header() {
        let p = [
            0x80, 0x60, 0x12, 0x34, 0, 0, 0, 1, 0xde, 0xad, 0xbe, 0xef, 9, 9,
        ];
        assert_eq!(
            rtp_header(&p),
            Ok(RtpHeader {
                len: 12,
                ssrc: 0xdeadbeef,
                seq: 0x1234
            })
        );
    }

    #[test]
    fn csrcs_and_extension() {
        let mut p = vec![0x92, 0x60, 0, 1, 0, 0, 0, 0, 0, 0, 0, 7];
        p.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]); // two CSRCs
        p.extend_from_slice(&[0xbe, 0xde, 0, 1, 0x10, 0xaa, 0, 0]); // one-byte ext, 1 word
        p.extend_from_slice(b"payload");
        assert_eq!(rtp_header(&p).map(|h| h.len), Ok(12 + 8 + 8));
        p[20] = 0x10; // two-byte profile 0x1000
        p[21] = 0x00;
        assert_eq!(rtp_header(&p).map(|h| h.len), Ok(12 + 8 + 8));
    }

    #[test]
    fn malformed() {
        assert_eq!(rtp_header(&[0x80; 11]), Err(Malformed::TooShort));
        assert_eq!(rtp_header(&[0x40; 12]), Err(Malformed::BadVersion));
        let mut p = [0u8; 16];
        p[0] = 0x82; // two CSRCs need 20 bytes
        assert_eq!(rtp_header(&p), Err(Malformed::CsrcPastEnd));
        p[0] = 0x90; // extension header needs 16 bytes: fits, but says 1 word more
        p[14] = 0;
        p[15] = 1;
        assert_eq!(rtp_header(&p), Err(Malformed::ExtensionPastEnd));
        assert_eq!(rtp_header(&p[..14]), Err(Malformed::ExtensionPastEnd));
        p[15] = 0;
        assert_eq!(rtp_header(&p).map(|h| h.len), Ok(16));
        assert_eq!(rtcp_ssrc(&[0x80; 7]), Err(Malformed::TooShort));
        assert_eq!(rtcp_ssrc(&[0xc0; 8]), Err(Malformed::BadVersion));
    }
}
