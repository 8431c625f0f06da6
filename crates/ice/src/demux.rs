//! RFC 7983 §7: which protocol a datagram on a shared port belongs to, by its first byte.

/// What a datagram on the media port carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PacketKind {
    /// 0..=3: STUN.
    Stun,
    /// 20..=63: DTLS.
    Dtls,
    /// 128..=191: RTP or RTCP (tell them apart with [`is_rtcp`]).
    Rtp,
    /// Anything else (ZRTP, TURN channels, garbage): drop it.
    Other,
}

/// Classifies a datagram by its first byte (RFC 7983 §7); an empty datagram is `Other`.
pub fn classify(datagram: &[u8]) -> PacketKind {
    match datagram.first() {
        Some(0..=3) => PacketKind::Stun,
        Some(20..=63) => PacketKind::Dtls,
        Some(128..=191) => PacketKind::Rtp,
        _ => PacketKind::Other,
    }
}

/// RFC 5761 §4: with RTP and RTCP multiplexed, RTCP packet types 192..=223 (which would be
/// RTP payload types 64..=95 with the marker bit) mark RTCP.
pub fn is_rtcp(datagram: &[u8]) -> bool {
    matches!(datagram.get(1), Some(192..=223))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7983_ranges() {
        for b in 0..=255u8 {
            let expect = match b {
                0..=3 => PacketKind::Stun,
                20..=63 => PacketKind::Dtls,
                128..=191 => PacketKind::Rtp,
                _ => PacketKind::Other,
            };
            assert_eq!(classify(&[b, 0]), expect, "{b}");
        }
        assert_eq!(classify(&[]), PacketKind::Other);
        assert!(is_rtcp(&[0x80, 200]));
        assert!(!is_rtcp(&[0x80, 111]));
        assert!(!is_rtcp(&[0x80]));
    }
}
