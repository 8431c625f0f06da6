//! Handshake message reassembly (RFC 6347 §4.2.3) with hard limits. (Outgoing messages are
//! fragmented to the MTU by `Connection`'s flight sender.)
//!
//! Fragments are kept per `(epoch, message_seq)`: a message that must arrive encrypted (the
//! Finished) is only ever taken from its epoch, so plaintext bytes claiming its
//! message_seq sit in a slot of their own and can never take its place.
//!
//! Fragments are *trusted* when a conflict among them can only be the peer's fault: records
//! that authenticated (epoch 1), or the ClientHello of a server that demands no cookie from
//! this address. Then a conflict (a length that changes, overlapping bytes that disagree) or a
//! limit is a protocol error. Plaintext fragments during the handshake can come from anyone
//! who spoofs the peer's address: they never fail the handshake and never block the genuine
//! ones. A conflicting fragment replaces what was buffered (the peer's retransmission
//! replaces a spoofer's bytes in turn), and when the buffer is full, plaintext fragments
//! further ahead are evicted first.
//!
//! Every fragment is tagged with the datagram it came in ([`Reassembler::begin_datagram`]).
//! When the connection takes the first message of a peer flight, plaintext messages of that
//! flight buffered from earlier datagrams are dropped ([`Reassembler::drop_earlier`]): a
//! flight's later messages are tied to the datagrams that carry its first message or follow
//! it, so that nothing planted ahead of the flight at a predictable message_seq can stand in
//! for the genuine message. Every buffered fragment thrown away (replaced, evicted, dropped
//! so) is counted once ([`Reassembler::superseded`]).

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
    /// Dropped: too far ahead, or untrusted and malformed or over a limit.
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
    /// The datagram that brought its first fragment.
    datagram: u64,
}

impl Partial {
    fn new(h: &HsHeader, epoch: u16, datagram: u64) -> Self {
        let length = h.length as usize;
        Self {
            msg_type: h.msg_type,
            seq: h.message_seq,
            epoch,
            body: vec![0; length],
            have: vec![0; length.div_ceil(64)],
            filled: 0,
            fragments: 0,
            datagram,
        }
    }

    fn complete(&self) -> bool {
        self.filled == self.body.len()
    }

    /// Copies a fragment in; `false` when it disagrees with bytes already there.
    fn fill(&mut self, offset: usize, data: &[u8]) -> bool {
        for (i, &b) in data.iter().enumerate() {
            let at = offset + i;
            let (word, bit) = (at / 64, 1u64 << (at % 64));
            if self.have[word] & bit == 0 {
                self.have[word] |= bit;
                self.filled += 1;
                self.body[at] = b;
            } else if self.body[at] != b {
                return false;
            }
        }
        true
    }
}

/// Buffers fragments until whole messages can be handed out in message_seq order.
#[derive(Debug, Default)]
pub(crate) struct Reassembler {
    next_seq: u16,
    partial: Vec<Partial>,
    buffered: usize,
    /// The datagram being read (a counter).
    datagram: u64,
    /// Fragments buffered and later thrown away without being delivered.
    superseded: u64,
}

impl Reassembler {
    /// The lowest message_seq that can still be delivered.
    pub(crate) fn next_seq(&self) -> u16 {
        self.next_seq
    }

    /// Fragments that were buffered and then thrown away undelivered: replaced by a
    /// conflicting plaintext fragment, evicted to make room, dropped because they came before
    /// the first message of their flight ([`drop_earlier`](Self::drop_earlier)), or left in
    /// the slot of a message_seq delivered from the other epoch. Each counts once.
    pub(crate) fn superseded(&self) -> u64 {
        self.superseded
    }

    /// Fragments inserted from now on came in a new datagram.
    pub(crate) fn begin_datagram(&mut self) {
        self.datagram = self.datagram.wrapping_add(1);
    }

    /// The first message of a peer flight, `seq`, was taken from the current datagram: drops
    /// the plaintext messages after it that started in earlier datagrams. The genuine flight
    /// brings its later messages with or after its first one (a genuine flight that was
    /// reordered is resent whole by the peer, RFC 6347 §4.2.4); bytes that came before it at
    /// a predictable message_seq are, at best, a planted guess.
    pub(crate) fn drop_earlier(&mut self, seq: u16) {
        let mut i = 0;
        while i < self.partial.len() {
            let p = &self.partial[i];
            if p.epoch == 0 && p.seq > seq && p.datagram != self.datagram {
                self.discard(i);
            } else {
                i += 1;
            }
        }
    }

    /// Expects `seq` next again: the messages from `seq` on that the handshake took were
    /// undone (a later message of their flight was refused), so their slots are open for the
    /// genuine ones (which come again with the peer's retransmission).
    pub(crate) fn rewind(&mut self, seq: u16) {
        self.next_seq = seq;
    }

    /// Forgets everything and expects `seq` next (a server whose ClientHello with a valid
    /// cookie has this message_seq).
    pub(crate) fn resync(&mut self, seq: u16) {
        self.next_seq = seq;
        while !self.partial.is_empty() {
            self.discard(0);
        }
    }

    /// Adds one fragment. Errors (only for `trusted` fragments) are protocol violations:
    /// fragment beyond the message length, a length or type that changes between fragments,
    /// overlapping bytes that disagree, an oversize message, too many fragments, too many
    /// buffered bytes. Untrusted fragments that would be errors are dropped or replace what
    /// they conflict with.
    pub(crate) fn insert(
        &mut self,
        h: &HsHeader,
        epoch: u16,
        data: &[u8],
        trusted: bool,
    ) -> Result<Inserted, Error> {
        let refuse = |e: Error| {
            if trusted {
                Err(e)
            } else {
                Ok(Inserted::Dropped)
            }
        };
        let length = h.length as usize;
        let offset = h.fragment_offset as usize;
        // RFC 6347 §4.2.3: fragment_offset + fragment_length must not exceed length.
        if offset
            .checked_add(data.len())
            .is_none_or(|end| end > length)
        {
            return refuse(Error::Decode("fragment beyond message length"));
        }
        if h.message_seq < self.next_seq {
            return Ok(Inserted::Old);
        }
        if h.message_seq - self.next_seq > MAX_AHEAD {
            return Ok(Inserted::Dropped);
        }
        if length > MAX_MESSAGE_LEN {
            return refuse(Error::LimitExceeded("handshake message too long"));
        }
        let found = self
            .partial
            .iter()
            .position(|p| p.seq == h.message_seq && p.epoch == epoch);
        let idx = match found {
            Some(i)
                if self.partial[i].msg_type == h.msg_type
                    && self.partial[i].body.len() == length =>
            {
                Some(i)
            }
            Some(_) if trusted => {
                return Err(Error::IllegalParameter(
                    "handshake message changed between fragments",
                ));
            }
            Some(i) => {
                // Plaintext that contradicts plaintext: the latest wins, so a genuine
                // retransmission always displaces a spoofer's bytes.
                self.discard(i);
                self.add(h, epoch, trusted)?
            }
            None => self.add(h, epoch, trusted)?,
        };
        let Some(idx) = idx else {
            return Ok(Inserted::Dropped);
        };
        let p = &mut self.partial[idx];
        p.fragments += 1;
        if p.fragments > MAX_FRAGMENTS {
            if trusted {
                return Err(Error::LimitExceeded("too many fragments"));
            }
            // This fragment is the caller's to count (`Dropped`); the others are counted here.
            let p = self.remove(idx);
            self.superseded += u64::from(p.fragments - 1);
            return Ok(Inserted::Dropped);
        }
        if !p.fill(offset, data) {
            // Overlapping fragments must agree (RFC 6347 §4.2.3 reassembly).
            if trusted {
                return Err(Error::IllegalParameter("overlapping fragments disagree"));
            }
            // The earlier fragments are replaced; this one starts the message anew.
            let p = self.remove(idx);
            self.superseded += u64::from(p.fragments - 1);
            let Some(idx) = self.add(h, epoch, trusted)? else {
                return Ok(Inserted::Dropped);
            };
            let p = &mut self.partial[idx];
            p.fragments = 1;
            p.fill(offset, data);
        }
        Ok(Inserted::Buffered)
    }

    /// Takes the complete message with the lowest message_seq in `next_seq..=max_seq` that
    /// arrived in `epoch`, without moving `next_seq`: call [`accept`](Self::accept) once the
    /// handshake took it. A message that is not accepted is simply gone, and its slot is free
    /// for the genuine one.
    pub(crate) fn take(&mut self, epoch: u16, max_seq: u16) -> Option<Message> {
        let idx = self
            .partial
            .iter()
            .enumerate()
            .filter(|(_, p)| {
                p.epoch == epoch && (self.next_seq..=max_seq).contains(&p.seq) && p.complete()
            })
            .min_by_key(|(_, p)| p.seq)
            .map(|(i, _)| i)?;
        let p = self.remove(idx);
        Some(Message {
            msg_type: p.msg_type,
            seq: p.seq,
            epoch: p.epoch,
            body: p.body,
        })
    }

    /// The handshake took message `seq`: deliver from `seq + 1` on, forget anything older.
    pub(crate) fn accept(&mut self, seq: u16) {
        self.next_seq = seq.wrapping_add(1);
        let mut i = 0;
        while i < self.partial.len() {
            if self.partial[i].seq <= seq {
                self.discard(i);
            } else {
                i += 1;
            }
        }
    }

    fn remove(&mut self, idx: usize) -> Partial {
        let p = self.partial.swap_remove(idx);
        self.buffered -= p.body.len();
        p
    }

    /// Removes a partial message undelivered, counting its fragments as superseded.
    fn discard(&mut self, idx: usize) {
        let p = self.remove(idx);
        self.superseded += u64::from(p.fragments);
    }

    /// Makes room for and adds an empty partial message; `None` when an untrusted one does
    /// not fit. Room is made by evicting plaintext partials: for a plaintext fragment only
    /// those further ahead than it, for an authenticated one any of them.
    fn add(&mut self, h: &HsHeader, epoch: u16, trusted: bool) -> Result<Option<usize>, Error> {
        let length = h.length as usize;
        while self.buffered + length > MAX_BUFFERED {
            let victim = self
                .partial
                .iter()
                .enumerate()
                .filter(|(_, p)| p.epoch == 0 && (epoch != 0 || p.seq > h.message_seq))
                .max_by_key(|(_, p)| p.seq)
                .map(|(i, _)| i);
            match victim {
                Some(i) if epoch != 0 || !trusted => {
                    self.discard(i);
                }
                _ if trusted => {
                    return Err(Error::LimitExceeded("too many buffered handshake bytes"));
                }
                _ => return Ok(None),
            }
        }
        self.buffered += length;
        self.partial.push(Partial::new(h, epoch, self.datagram));
        Ok(Some(self.partial.len() - 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Takes and accepts the next message of epoch 0.
    pub(super) fn pop(r: &mut Reassembler) -> Option<Message> {
        let m = r.take(0, r.next_seq())?;
        r.accept(m.seq);
        Some(m)
    }

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
        r.insert(&hdr(0, 100, 50, 50), 0, &msg[50..], true).unwrap();
        assert!(pop(&mut r).is_none());
        r.insert(&hdr(0, 100, 10, 60), 0, &msg[10..70], true)
            .unwrap();
        assert!(pop(&mut r).is_none());
        r.insert(&hdr(0, 100, 0, 20), 0, &msg[..20], true).unwrap();
        let m = pop(&mut r).unwrap();
        assert_eq!(m.body, msg);
        assert_eq!(r.next_seq(), 1);
        assert_eq!(
            r.insert(&hdr(0, 100, 0, 10), 0, &msg[..10], true).unwrap(),
            Inserted::Old
        );
    }

    #[test]
    fn messages_come_out_in_order() {
        let mut r = Reassembler::default();
        r.insert(&hdr(1, 3, 0, 3), 0, b"bcd", true).unwrap();
        assert!(pop(&mut r).is_none());
        r.insert(&hdr(0, 1, 0, 1), 0, b"a", true).unwrap();
        assert_eq!(pop(&mut r).unwrap().body, b"a");
        assert_eq!(pop(&mut r).unwrap().body, b"bcd");
        assert!(pop(&mut r).is_none());
        // Zero-length messages complete at once.
        r.insert(&hdr(2, 0, 0, 0), 0, b"", true).unwrap();
        assert_eq!(pop(&mut r).unwrap().body, b"");
    }

    #[test]
    fn limits() {
        let mut r = Reassembler::default();
        // offset + length beyond the message.
        assert!(r.insert(&hdr(0, 10, 8, 3), 0, b"abc", true).is_err());
        assert!(
            r.insert(&hdr(0, 10, u32::MAX as usize >> 8, 1), 0, b"a", true)
                .is_err()
        );
        // Enormous announced length.
        assert!(matches!(
            r.insert(&hdr(0, 0xff_ffff, 0, 1), 0, b"a", true),
            Err(Error::LimitExceeded(_))
        ));
        // A length that changes between fragments.
        r.insert(&hdr(0, 10, 0, 2), 0, b"ab", true).unwrap();
        assert!(r.insert(&hdr(0, 11, 2, 2), 0, b"cd", true).is_err());
        // Endless empty fragments.
        let mut r = Reassembler::default();
        let mut failed = false;
        for _ in 0..1000 {
            if r.insert(&hdr(0, 10, 0, 0), 0, b"", true).is_err() {
                failed = true;
                break;
            }
        }
        assert!(failed);
        // Too far ahead is dropped, not buffered.
        let mut r = Reassembler::default();
        assert_eq!(
            r.insert(&hdr(MAX_AHEAD + 1, 10, 0, 1), 0, b"a", true)
                .unwrap(),
            Inserted::Dropped
        );
        // Total buffered bytes are bounded.
        let mut r = Reassembler::default();
        let mut hit = false;
        for seq in 0..=MAX_AHEAD {
            if r.insert(&hdr(seq, MAX_MESSAGE_LEN, 0, 1), 0, b"a", true)
                .is_err()
            {
                hit = true;
            }
        }
        assert!(hit);
        // Fragments of one message_seq from two epochs do not mix: each epoch has its slot.
        let mut r = Reassembler::default();
        r.insert(&hdr(0, 4, 0, 2), 0, b"ab", true).unwrap();
        assert_eq!(
            r.insert(&hdr(0, 4, 2, 2), 1, b"cd", true).unwrap(),
            Inserted::Buffered
        );
        assert!(r.take(1, 0).is_none());
        assert!(r.take(0, 0).is_none());
    }

    #[test]
    fn plaintext_never_takes_the_slot_of_an_encrypted_message() {
        let mut r = Reassembler::default();
        // A spoofed, complete plaintext message at the seq the Finished will have.
        r.insert(&hdr(0, 3, 0, 3), 0, b"xyz", false).unwrap();
        // The genuine one arrives in epoch 1, of another length: no conflict, own slot.
        r.insert(&hdr(0, 12, 0, 12), 1, &[7; 12], true).unwrap();
        let m = r.take(1, 0).unwrap();
        assert_eq!((m.epoch, m.body), (1, vec![7; 12]));
        r.accept(m.seq);
        assert!(
            r.take(0, 5).is_none(),
            "the plaintext one went with its seq"
        );
    }

    #[test]
    fn untrusted_conflicts_replace_and_never_fail() {
        let mut r = Reassembler::default();
        // A spoofer's fragment claims a length; the genuine message has another.
        r.insert(&hdr(0, 100, 0, 10), 0, &[1; 10], false).unwrap();
        r.insert(&hdr(0, 20, 0, 20), 0, &[2; 20], false).unwrap();
        assert_eq!(pop(&mut r).unwrap().body, vec![2; 20]);
        // Overlapping bytes that disagree: the latest wins.
        r.insert(&hdr(1, 4, 0, 2), 0, b"zz", false).unwrap();
        r.insert(&hdr(1, 4, 0, 4), 0, b"abcd", false).unwrap();
        assert_eq!(pop(&mut r).unwrap().body, b"abcd");
        // Beyond the length, enormous, endless: dropped, never an error.
        assert_eq!(
            r.insert(&hdr(2, 10, 8, 3), 0, b"abc", false).unwrap(),
            Inserted::Dropped
        );
        assert_eq!(
            r.insert(&hdr(2, 0xff_ffff, 0, 1), 0, b"a", false).unwrap(),
            Inserted::Dropped
        );
        for _ in 0..1000 {
            assert!(r.insert(&hdr(2, 10, 0, 0), 0, b"", false).is_ok());
        }
        // A full buffer of spoofed messages further ahead makes room for the next one.
        let mut r = Reassembler::default();
        for seq in 1..=MAX_AHEAD {
            r.insert(&hdr(seq, MAX_MESSAGE_LEN, 0, 1), 0, b"a", false)
                .unwrap();
        }
        r.insert(&hdr(0, 2000, 0, 2000), 0, &[3; 2000], false)
            .unwrap();
        assert_eq!(pop(&mut r).unwrap().body, vec![3; 2000]);
        // And an authenticated one always finds room.
        let mut r = Reassembler::default();
        for seq in 0..=MAX_AHEAD {
            r.insert(&hdr(seq, MAX_MESSAGE_LEN, 0, 1), 0, b"a", false)
                .unwrap();
        }
        r.insert(&hdr(0, 12, 0, 12), 1, &[4; 12], true).unwrap();
        assert_eq!(r.take(1, 0).unwrap().body, vec![4; 12]);
    }

    #[test]
    fn messages_from_before_the_first_of_their_flight_are_dropped_and_counted() {
        let mut r = Reassembler::default();
        // Datagram 1: a planted message at seq 3, and half of one at seq 2.
        r.begin_datagram();
        r.insert(&hdr(3, 4, 0, 4), 0, b"plnt", false).unwrap();
        r.insert(&hdr(2, 4, 0, 2), 0, b"pl", false).unwrap();
        // Datagram 2: the flight's first message (seq 0) and its second (seq 1).
        r.begin_datagram();
        r.insert(&hdr(0, 1, 0, 1), 0, b"a", false).unwrap();
        let first = pop(&mut r).unwrap();
        r.drop_earlier(first.seq);
        assert_eq!(r.superseded(), 2);
        r.insert(&hdr(1, 1, 0, 1), 0, b"b", false).unwrap();
        r.drop_earlier(0);
        assert_eq!(pop(&mut r).unwrap().body, b"b", "same datagram: kept");
        assert!(r.take(0, 5).is_none(), "the planted ones are gone");
        // Their slots take the genuine messages.
        r.insert(&hdr(2, 1, 0, 1), 0, b"c", false).unwrap();
        assert_eq!(pop(&mut r).unwrap().body, b"c");
        // A conflict replaces and counts the replaced fragments (two here).
        r.insert(&hdr(3, 6, 0, 2), 0, b"xx", false).unwrap();
        r.insert(&hdr(3, 6, 2, 2), 0, b"yy", false).unwrap();
        r.insert(&hdr(3, 6, 0, 2), 0, b"zz", false).unwrap();
        assert_eq!(r.superseded(), 4);
        // Rewinding reopens the slots taken since.
        r.rewind(1);
        r.insert(&hdr(1, 1, 0, 1), 0, b"B", false).unwrap();
        assert_eq!(pop(&mut r).unwrap().body, b"B");
    }

    #[test]
    fn take_finds_the_lowest_complete_message_in_a_range() {
        let mut r = Reassembler::default();
        r.insert(&hdr(2, 1, 0, 1), 0, b"c", false).unwrap();
        r.insert(&hdr(1, 2, 0, 1), 0, b"b", false).unwrap();
        assert_eq!(r.take(0, 1), None, "seq 1 incomplete, 2 out of range");
        assert_eq!(r.take(0, 3).unwrap().body, b"c");
        // Not accepted: the next message is still expected from seq 0.
        assert_eq!(r.next_seq(), 0);
    }
}

#[cfg(test)]
mod props {
    use proptest::prelude::*;

    use super::tests::pop;
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
                let got = r.insert(&h, 0, &body[a..b], true);
                prop_assert!(got.is_ok());
                while let Some(m) = pop(&mut r) {
                    out.push(m.body);
                }
            }
            prop_assert_eq!(out, vec![body]);
        }
    }
}
