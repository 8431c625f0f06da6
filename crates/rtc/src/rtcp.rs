//! The RTCP an SFU reads and writes (RFC 3550 §6, RFC 4585, RFC 5104, REMB): a zero-copy
//! iterator over a compound packet, and writers into caller buffers. Nothing allocates.

/// SR (RFC 3550 §6.4.1).
pub const SR: u8 = 200;
/// RR (RFC 3550 §6.4.2).
pub const RR: u8 = 201;
/// Transport-layer feedback (RFC 4585 §6.2): FMT 1 is generic NACK.
pub const RTPFB: u8 = 205;
/// Payload-specific feedback (RFC 4585 §6.3): FMT 1 PLI, FMT 4 FIR (RFC 5104), FMT 15 REMB.
pub const PSFB: u8 = 206;

/// One packet of a compound RTCP packet, classified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Packet<'a> {
    /// A sender report from `ssrc`: its NTP timestamp's middle 32 bits (for LSR).
    SenderReport {
        /// The sender.
        ssrc: u32,
        /// NTP timestamp, middle 32 bits.
        ntp_mid: u32,
    },
    /// A receiver report.
    ReceiverReport {
        /// The reporter.
        ssrc: u32,
    },
    /// Picture loss indication for `media_ssrc`.
    Pli {
        /// The stream that needs a key frame.
        media_ssrc: u32,
    },
    /// Full intra request for `media_ssrc` (the first FCI entry's SSRC).
    Fir {
        /// The stream that needs a key frame.
        media_ssrc: u32,
    },
    /// Generic NACK for `media_ssrc`; `fci` holds (PID, BLP) pairs, 4 bytes each.
    Nack {
        /// The stream with losses.
        media_ssrc: u32,
        /// The FCI entries.
        fci: &'a [u8],
    },
    /// Anything else (SDES, BYE, REMB, transport-cc, ...).
    Other {
        /// Its packet type.
        packet_type: u8,
    },
}

impl Packet<'_> {
    /// The lost sequence numbers of a NACK's FCI (RFC 4585 §6.2.1), in order.
    pub fn nacked(fci: &[u8]) -> impl Iterator<Item = u16> + '_ {
        fci.chunks_exact(4).flat_map(|e| {
            let pid = u16::from_be_bytes([e[0], e[1]]);
            let blp = u16::from_be_bytes([e[2], e[3]]);
            std::iter::once(pid).chain(
                (0..16)
                    .filter(move |i| blp & (1 << i) != 0)
                    .map(move |i| pid.wrapping_add(i + 1)),
            )
        })
    }
}

/// Iterates over the packets of a compound RTCP packet: `(packet, its bytes)`. Stops at the
/// first malformed packet.
pub fn packets(compound: &[u8]) -> impl Iterator<Item = (Packet<'_>, &[u8])> {
    let mut rest = compound;
    std::iter::from_fn(move || {
        let header: &[u8; 4] = rest.first_chunk()?;
        if header[0] >> 6 != 2 {
            return None;
        }
        let len = 4 * (usize::from(u16::from_be_bytes([header[2], header[3]])) + 1);
        if len > rest.len() {
            return None;
        }
        let (pkt, tail) = rest.split_at(len);
        rest = tail;
        Some((classify(pkt), pkt))
    })
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(*b.get(at..at + 4)?.first_chunk()?))
}

fn classify(pkt: &[u8]) -> Packet<'_> {
    let fmt = pkt[0] & 0x1f;
    let pt = pkt[1];
    let other = Packet::Other { packet_type: pt };
    match (pt, fmt) {
        (SR, _) => match (u32_at(pkt, 4), u32_at(pkt, 10)) {
            (Some(ssrc), Some(ntp_mid)) if pkt.len() >= 28 => {
                Packet::SenderReport { ssrc, ntp_mid }
            }
            _ => other,
        },
        (RR, _) => u32_at(pkt, 4).map_or(other, |ssrc| Packet::ReceiverReport { ssrc }),
        (PSFB, 1) => u32_at(pkt, 8).map_or(other, |media_ssrc| Packet::Pli { media_ssrc }),
        (PSFB, 4) => u32_at(pkt, 12).map_or(other, |media_ssrc| Packet::Fir { media_ssrc }),
        (RTPFB, 1) => match u32_at(pkt, 8) {
            Some(media_ssrc) if pkt.len() >= 16 => Packet::Nack {
                media_ssrc,
                fci: &pkt[12..],
            },
            _ => other,
        },
        _ => other,
    }
}

/// A reception report block (RFC 3550 §6.4.1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReportBlock {
    /// The stream reported on.
    pub ssrc: u32,
    /// Fraction lost since the last report, in 1/256.
    pub fraction_lost: u8,
    /// Cumulative packets lost (24 bits, clamped).
    pub cumulative_lost: i32,
    /// Extended highest sequence number received.
    pub highest_seq: u32,
    /// Interarrival jitter (timestamp units).
    pub jitter: u32,
    /// Middle 32 bits of the last SR's NTP timestamp.
    pub lsr: u32,
    /// Delay since that SR, in 1/65536 s.
    pub dlsr: u32,
}

/// Writes a receiver report with up to 31 blocks into `buf`; returns its length, or `None`
/// when `buf` is too small.
pub fn write_rr(buf: &mut [u8], sender_ssrc: u32, blocks: &[ReportBlock]) -> Option<usize> {
    let blocks = &blocks[..blocks.len().min(31)];
    let len = 8 + 24 * blocks.len();
    let out = buf.get_mut(..len)?;
    out[0] = 0x80 | blocks.len() as u8;
    out[1] = RR;
    out[2..4].copy_from_slice(&((len / 4 - 1) as u16).to_be_bytes());
    out[4..8].copy_from_slice(&sender_ssrc.to_be_bytes());
    for (b, chunk) in blocks.iter().zip(out[8..].chunks_exact_mut(24)) {
        chunk[0..4].copy_from_slice(&b.ssrc.to_be_bytes());
        let lost = b.cumulative_lost.clamp(-0x80_0000, 0x7f_ffff) as u32 & 0x00ff_ffff;
        chunk[4..8].copy_from_slice(&(lost | (u32::from(b.fraction_lost) << 24)).to_be_bytes());
        chunk[8..12].copy_from_slice(&b.highest_seq.to_be_bytes());
        chunk[12..16].copy_from_slice(&b.jitter.to_be_bytes());
        chunk[16..20].copy_from_slice(&b.lsr.to_be_bytes());
        chunk[20..24].copy_from_slice(&b.dlsr.to_be_bytes());
    }
    Some(len)
}

/// Writes a REMB (draft-alvestrand-rmcat-remb-03) for `ssrcs` at `bitrate` bits/s.
pub fn write_remb(buf: &mut [u8], sender_ssrc: u32, bitrate: u64, ssrcs: &[u32]) -> Option<usize> {
    let ssrcs = &ssrcs[..ssrcs.len().min(255)];
    let len = 20 + 4 * ssrcs.len();
    let out = buf.get_mut(..len)?;
    out[0] = 0x80 | 15;
    out[1] = PSFB;
    out[2..4].copy_from_slice(&((len / 4 - 1) as u16).to_be_bytes());
    out[4..8].copy_from_slice(&sender_ssrc.to_be_bytes());
    out[8..12].fill(0);
    out[12..16].copy_from_slice(b"REMB");
    // 6-bit exponent, 18-bit mantissa.
    let mut exp = 0u32;
    let mut mantissa = bitrate;
    while mantissa >= 1 << 18 {
        mantissa >>= 1;
        exp += 1;
    }
    out[16] = ssrcs.len() as u8;
    let v = (exp.min(63) << 18) | mantissa as u32;
    out[17] = (v >> 16) as u8;
    out[18] = (v >> 8) as u8;
    out[19] = v as u8;
    for (s, chunk) in ssrcs.iter().zip(out[20..].chunks_exact_mut(4)) {
        chunk.copy_from_slice(&s.to_be_bytes());
    }
    Some(len)
}

/// Writes a PLI (RFC 4585 §6.3.1) asking `media_ssrc` for a key frame.
pub fn write_pli(buf: &mut [u8], sender_ssrc: u32, media_ssrc: u32) -> Option<usize> {
    let out = buf.get_mut(..12)?;
    out[..4].copy_from_slice(&[0x81, PSFB, 0, 2]);
    out[4..8].copy_from_slice(&sender_ssrc.to_be_bytes());
    out[8..12].copy_from_slice(&media_ssrc.to_be_bytes());
    Some(12)
}

/// Writes a generic NACK (RFC 4585 §6.2.1) for `lost` (ascending, within one 17-packet
/// window per entry; up to 16 entries).
pub fn write_nack(
    buf: &mut [u8],
    sender_ssrc: u32,
    media_ssrc: u32,
    lost: &[u16],
) -> Option<usize> {
    let mut entries: [(u16, u16); 16] = [(0, 0); 16];
    let mut n = 0;
    for &seq in lost {
        if n > 0 {
            let (pid, blp) = &mut entries[n - 1];
            let d = seq.wrapping_sub(*pid);
            if (1..=16).contains(&d) {
                *blp |= 1 << (d - 1);
                continue;
            }
        }
        if n == entries.len() {
            break;
        }
        entries[n] = (seq, 0);
        n += 1;
    }
    if n == 0 {
        return None;
    }
    let len = 12 + 4 * n;
    let out = buf.get_mut(..len)?;
    out[0] = 0x81;
    out[1] = RTPFB;
    out[2..4].copy_from_slice(&((len / 4 - 1) as u16).to_be_bytes());
    out[4..8].copy_from_slice(&sender_ssrc.to_be_bytes());
    out[8..12].copy_from_slice(&media_ssrc.to_be_bytes());
    for ((pid, blp), chunk) in entries[..n].iter().zip(out[12..].chunks_exact_mut(4)) {
        chunk[..2].copy_from_slice(&pid.to_be_bytes());
        chunk[2..].copy_from_slice(&blp.to_be_bytes());
    }
    Some(len)
}

/// Writes a sender report with no report blocks.
pub fn write_sr(
    buf: &mut [u8],
    ssrc: u32,
    ntp: u64,
    rtp_ts: u32,
    packets: u32,
    octets: u32,
) -> Option<usize> {
    let out = buf.get_mut(..28)?;
    out[..4].copy_from_slice(&[0x80, SR, 0, 6]);
    out[4..8].copy_from_slice(&ssrc.to_be_bytes());
    out[8..16].copy_from_slice(&ntp.to_be_bytes());
    out[16..20].copy_from_slice(&rtp_ts.to_be_bytes());
    out[20..24].copy_from_slice(&packets.to_be_bytes());
    out[24..28].copy_from_slice(&octets.to_be_bytes());
    Some(28)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_and_reads_a_compound() {
        let mut buf = [0u8; 256];
        let mut n = write_rr(
            &mut buf,
            1,
            &[ReportBlock {
                ssrc: 9,
                highest_seq: 100,
                ..Default::default()
            }],
        )
        .unwrap();
        n += write_remb(&mut buf[n..], 1, 2_500_000, &[9, 10]).unwrap();
        n += write_pli(&mut buf[n..], 1, 9).unwrap();
        n += write_nack(&mut buf[n..], 1, 9, &[10, 11, 26, 27, 100]).unwrap();
        n += write_sr(&mut buf[n..], 5, 0x0102_0304_0506_0708, 3, 4, 5).unwrap();
        let got: Vec<Packet<'_>> = packets(&buf[..n]).map(|(p, _)| p).collect();
        assert_eq!(got[0], Packet::ReceiverReport { ssrc: 1 });
        assert_eq!(got[1], Packet::Other { packet_type: PSFB });
        assert_eq!(got[2], Packet::Pli { media_ssrc: 9 });
        let Packet::Nack { media_ssrc, fci } = got[3] else {
            panic!("{:?}", got[3])
        };
        assert_eq!(media_ssrc, 9);
        assert_eq!(
            Packet::nacked(fci).collect::<Vec<_>>(),
            vec![10, 11, 26, 27, 100]
        );
        assert_eq!(
            got[4],
            Packet::SenderReport {
                ssrc: 5,
                ntp_mid: 0x0304_0506
            }
        );
        assert_eq!(got.len(), 5);
    }

    #[test]
    fn malformed_input_ends_iteration_without_panicking() {
        for len in 0..40 {
            for fill in [0u8, 0x80, 0xff] {
                let mut b = vec![fill; len];
                if len > 1 {
                    b[1] = PSFB;
                }
                let _ = packets(&b).count();
            }
        }
        assert_eq!(packets(&[0x81, 206, 0, 9, 0, 0, 0, 0]).count(), 0);
    }
}
