//! Handshake message reassembly (RFC 6347 §4.2.3) with hard limits. (Outgoing messages are
//! fragmented to the MTU by `Connection`'s flight sender.)

use crate::error::Error;
use crate::handshake::{HandshakeType, HsHeader};

/// Largest handshake message accepted (a certificate chain or a post-quantum ClientHello
/// fits easily).
pub(crate) const MAX_MESSAGE_LEN: usize = 16 * 1024;
/// Most bytes buffered for incomplete or future messages, all messages together.
pub(crate) const MAX_BUFFERED: usize = 48 * 1024;
/// Most fragments (including duplicates and empty ones) accepted for one message.
pub(crate) const MAX_FRAGMENTS: u16 = 128;
/// How far ahead of the next expected message_seq a message may be buffered.
pub(crate) const MAX_AHEAD: u16 = 8;

/// A reassembled handshake message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Message {
    pub(crate) msg_type: HandshakeType,
    pub(crate) seq: u16,
    /// The epoch its fragments arrived in.
    pub(crate) epoch: u16,
    pub(crate) body: Vec<u8>,
}

/// What became of one fragment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Inserted {
    /// Buffered (or completed a message).
    Buffered,
    /// Part of a message already delivered: the peer is retransmitting.
    Old,
    /// Dropped: too far ahead, or from a different epoch than the message's other fragments.
    Dropped,
}

#[derive(Debug)]
struct Partial {
    msg_type: HandshakeType,
    seq: u16,
    epoch: u16,
    body: Vec<u8>,
    /// One bit per byte received.
    have: Vec<u64>,
    filled: usize,
    fragments: u16,
}

impl Partial {
    fn complete(&self) -> bool {
        self.filled == self.body.len()
    }
}

/// Buffers fragments until whole messages can be handed out in message_seq order.
#[derive(Debug, Default)]
pub(crate) struct Reassembler {
    next_seq: u16,
    partial: Vec<Partial>,
    buffered: usize,
}

impl Reassembler {
    /// The message_seq that will be delivered next.
    pub(crate) fn next_seq(&self) -> u16 {
        self.next_seq
    }

    /// Forgets everything and expects `seq` next (a server meeting a new ClientHello, a client
    /// learning the server's first message_seq).
    pub(crate) fn resync(&mut self, seq: u16) {
        self.next_seq = seq;
        self.partial.clear();
        self.buffered = 0;
    }

    /// Whether a message with this seq is partly buffered.
    pub(crate) fn has_partial(&self, seq: u16) -> bool {
        self.partial.iter().any(|p| p.seq == seq)
    }

    /// Adds one fragment. Errors are protocol violations: fragment beyond the message length,
    /// a length or type that changes between fragments, an oversize message, too many
    /// fragments, too many buffered bytes.
    pub(crate) fn insert(
        &mut self,
        h: &HsHeader,
        epoch: u16,
        data: &[u8],
    ) -> Result<Inserted, Error> {
        let length = h.length as usize;
        let offset = h.fragment_offset as usize;
        // RFC 6347 §4.2.3: fragment_offset + fragment_length must not exceed length.
        if offset
            .checked_add(data.len())
            .is_none_or(|end| end > length)
        {
            return Err(Error::Decode("fragment beyond message length"));
        }
        if h.message_seq < self.next_seq {
            return Ok(Inserted::Old);
        }
        if h.message_seq - self.next_seq > MAX_AHEAD {
            return Ok(Inserted::Dropped);
        }
        if length > MAX_MESSAGE_LEN {
            return Err(Error::LimitExceeded("handshake message too long"));
        }
        let idx = match self.partial.iter().position(|p| p.seq == h.message_seq) {
            Some(i) => i,
            None => {
                if self.buffered + length > MAX_BUFFERED {
                    return Err(Error::LimitExceeded("too many buffered handshake bytes"));
                }
                self.buffered += length;
                self.partial.push(Partial {
                    msg_type: h.msg_type,
                    seq: h.message_seq,
                    epoch,
                    body: vec![0; length],
                    have: vec![0; length.div_ceil(64)],
                    filled: 0,
                    fragments: 0,
                });
                self.partial.len() - 1
            }
        };
        let p = &mut self.partial[idx];
        if p.msg_type != h.msg_type || p.body.len() != length {
            return Err(Error::IllegalParameter(
                "handshake message changed between fragments",
            ));
        }
        if p.epoch != epoch {
            return Ok(Inserted::Dropped);
        }
        p.fragments += 1;
        if p.fragments > MAX_FRAGMENTS {
            return Err(Error::LimitExceeded("too many fragments"));
        }
        for (i, &b) in data.iter().enumerate() {
            let at = offset + i;
            let (word, bit) = (at / 64, 1u64 << (at % 64));
            if p.have[word] & bit == 0 {
                p.have[word] |= bit;
                p.filled += 1;
                p.body[at] = b;
            } else if p.body[at] != b {
                // Overlapping fragments must agree (RFC 6347 §4.2.3 reassembly).
                return Err(Error::IllegalParameter("overlapping fragments disagree"));
            }
        }
        Ok(Inserted::Buffered)
    }

    /// Hands out the next message if it is complete.
    pub(crate) fn pop(&mut self) -> Option<Message> {
        let idx = self
            .partial
            .iter()
            .position(|p| p.seq == self.next_seq && p.complete())?;
        let p = self.partial.swap_remove(idx);
        self.buffered -= p.body.len();
        self.next_seq = self.next_seq.wrapping_add(1);
        Some(Message {
            msg_type: p.msg_type,
            seq: p.seq,
            epoch: p.epoch,
            body: p.body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hdr(seq: u16, length: usize, offset: usize, frag: usize) -> HsHeader {
        HsHeader {
            msg_type: HandshakeType::CERTIFICATE,
            length: length as u32,
            message_seq: seq,
            fragment_offset: offset as u32,
            fragment_length: frag as u32,
        }
    }

    #[test]
    fn reassembles_out_of_order_and_overlapping() {
        let msg: Vec<u8> = (0..100u8).collect();
        let mut r = Reassembler::default();
        r.insert(&hdr(0, 100, 50, 50), 0, &msg[50..]).unwrap();
        assert!(r.pop().is_none());
        r.insert(&hdr(0, 100, 10, 60), 0, &msg[10..70]).unwrap();
        assert!(r.pop().is_none());
        r.insert(&hdr(0, 100, 0, 20), 0, &msg[..20]).unwrap();
        let m = r.pop().unwrap();
        assert_eq!(m.body, msg);
        assert_eq!(r.next_seq(), 1);
        assert_eq!(
            r.insert(&hdr(0, 100, 0, 10), 0, &msg[..10]).unwrap(),
            Inserted::Old
        );
    }

    #[test]
    fn messages_come_out_in_order() {
        let mut r = Reassembler::default();
        r.insert(&hdr(1, 3, 0, 3), 0, b"bcd").unwrap();
        assert!(r.pop().is_none());
        r.insert(&hdr(0, 1, 0, 1), 0, b"a").unwrap();
        assert_eq!(r.pop().unwrap().body, b"a");
        assert_eq!(r.pop().unwrap().body, b"bcd");
        assert!(r.pop().is_none());
        // Zero-length messages complete at once.
        r.insert(&hdr(2, 0, 0, 0), 0, b"").unwrap();
        assert_eq!(r.pop().unwrap().body, b"");
    }

    #[test]
    fn limits() {
        let mut r = Reassembler::default();
        // offset + length beyond the message.
        assert!(r.insert(&hdr(0, 10, 8, 3), 0, b"abc").is_err());
        assert!(
            r.insert(&hdr(0, 10, u32::MAX as usize >> 8, 1), 0, b"a")
                .is_err()
        );
        // Enormous announced length.
        assert!(matches!(
            r.insert(&hdr(0, 0xff_ffff, 0, 1), 0, b"a"),
            Err(Error::LimitExceeded(_))
        ));
        // A length that changes between fragments.
        r.insert(&hdr(0, 10, 0, 2), 0, b"ab").unwrap();
        assert!(r.insert(&hdr(0, 11, 2, 2), 0, b"cd").is_err());
        // Endless empty fragments.
        let mut r = Reassembler::default();
        let mut failed = false;
        for _ in 0..1000 {
            if r.insert(&hdr(0, 10, 0, 0), 0, b"").is_err() {
                failed = true;
                break;
            }
        }
        assert!(failed);
        // Too far ahead is dropped, not buffered.
        let mut r = Reassembler::default();
        assert_eq!(
            r.insert(&hdr(MAX_AHEAD + 1, 10, 0, 1), 0, b"a").unwrap(),
            Inserted::Dropped
        );
        // Total buffered bytes are bounded.
        let mut r = Reassembler::default();
        let mut hit = false;
        for seq in 0..=MAX_AHEAD {
            if r.insert(&hdr(seq, MAX_MESSAGE_LEN, 0, 1), 0, b"a").is_err() {
                hit = true;
            }
        }
        assert!(hit);
        // Fragments of one message from two epochs do not mix.
        let mut r = Reassembler::default();
        r.insert(&hdr(0, 4, 0, 2), 0, b"ab").unwrap();
        assert_eq!(
            r.insert(&hdr(0, 4, 2, 2), 1, b"cd").unwrap(),
            Inserted::Dropped
        );
    }
}

#[cfg(test)]
mod props {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Any split of a message into (possibly overlapping, duplicated) fragments, delivered
        /// in any order, reassembles to the message exactly once.
        #[test]
        fn any_fragmentation_reassembles(
            body in proptest::collection::vec(any::<u8>(), 0..3000),
            cuts in proptest::collection::vec(any::<u16>(), 0..20),
            order in proptest::collection::vec(any::<u32>(), 0..40),
        ) {
            let len = body.len();
            let mut points: Vec<usize> = cuts.iter().map(|c| usize::from(*c) % (len + 1)).collect();
            points.extend([0, len]);
            points.sort_unstable();
            points.dedup();
            let mut frags: Vec<(usize, usize)> = points.windows(2).map(|w| (w[0], w[1])).collect();
            if frags.is_empty() {
                frags.push((0, 0));
            }
            // Duplicates and overlaps: widen some fragments by a few bytes.
            let extra: Vec<(usize, usize)> = frags.iter().take(3).map(|&(a, b)| (a.saturating_sub(3), (b + 3).min(len))).collect();
            frags.extend(extra);
            // Shuffle by the random keys.
            let mut keyed: Vec<(u32, (usize, usize))> = frags.iter().enumerate().map(|(i, f)| (order.get(i).copied().unwrap_or(i as u32), *f)).collect();
            keyed.sort_by_key(|k| k.0);
            let mut r = Reassembler::default();
            let mut out = Vec::new();
            for (_, (a, b)) in keyed {
                let h = HsHeader {
                    msg_type: HandshakeType::CERTIFICATE,
                    length: len as u32,
                    message_seq: 0,
                    fragment_offset: a as u32,
                    fragment_length: (b - a) as u32,
                };
                let got = r.insert(&h, 0, &body[a..b]);
                prop_assert!(got.is_ok());
                while let Some(m) = r.pop() {
                    out.push(m.body);
                }
            }
            prop_assert_eq!(out, vec![body]);
        }
    }
}
