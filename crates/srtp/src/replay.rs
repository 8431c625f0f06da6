//! The sliding replay window of RFC 3711 §3.3.2, as a ring of bits.

use crate::Error;

/// Largest replay window callsec accepts, in packets.
pub const MAX_REPLAY_WINDOW: usize = 32768;

/// Remembers the highest authenticated index and which of the `size` indices below it were
/// seen. Bit `i % size` of the ring stands for index `i`, so moving the window forward clears
/// only the bits it passes over: the cost per packet is bounded by `size / 64` word writes and
/// is one or two in the common case (a stream advancing by one).
#[derive(Clone, Debug)]
pub(crate) struct ReplayWindow {
    top: u64,
    mask: u64,
    ring: Vec<u64>,
}

impl ReplayWindow {
    /// A window of `size` packets (a power of two, 64 ..= [`MAX_REPLAY_WINDOW`]) whose first
    /// seen index is `first`.
    pub fn new(size: usize, first: u64) -> Self {
        debug_assert!(size.is_power_of_two() && (64..=MAX_REPLAY_WINDOW).contains(&size));
        let mut w = ReplayWindow {
            top: first,
            mask: size as u64 - 1,
            ring: vec![0; size / 64],
        };
        w.set(first);
        w
    }

    /// The highest index accepted so far.
    pub fn top(&self) -> u64 {
        self.top
    }

    /// Whether `index` may be accepted: newer than the top, or inside the window and unseen.
    pub fn check(&self, index: u64) -> Result<(), Error> {
        if index > self.top {
            return Ok(());
        }
        if self.top - index > self.mask {
            return Err(Error::Replayed);
        }
        let pos = index & self.mask;
        if self.ring[(pos / 64) as usize] & (1 << (pos % 64)) != 0 {
            return Err(Error::Replayed);
        }
        Ok(())
    }

    /// Records `index` as seen; call only after `check` passed and the packet authenticated.
    pub fn accept(&mut self, index: u64) {
        if index > self.top {
            let advance = index - self.top;
            if advance > self.mask {
                self.ring.fill(0);
            } else {
                self.clear_range(self.top + 1, advance);
            }
            self.top = index;
        }
        self.set(index);
    }

    fn set(&mut self, index: u64) {
        let pos = index & self.mask;
        self.ring[(pos / 64) as usize] |= 1 << (pos % 64);
    }

    /// Clears the bits of `count` indices starting at `from`, word by word.
    fn clear_range(&mut self, mut from: u64, mut count: u64) {
        while count > 0 {
            let pos = from & self.mask;
            let bit = pos % 64;
            let n = (64 - bit).min(count);
            let bits = if n == 64 {
                u64::MAX
            } else {
                ((1u64 << n) - 1) << bit
            };
            self.ring[(pos / 64) as usize] &= !bits;
            from += n;
            count -= n;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_duplicates_and_age() {
        let mut w = ReplayWindow::new(64, 1000);
        assert_eq!(w.check(1000), Err(Error::Replayed));
        for i in 1001..1200 {
            assert_eq!(w.check(i), Ok(()));
            w.accept(i);
            assert_eq!(w.check(i), Err(Error::Replayed));
        }
        assert_eq!(w.check(1199 - 63), Err(Error::Replayed)); // seen
        assert_eq!(w.check(1199 - 64), Err(Error::Replayed)); // too old
    }

    #[test]
    fn reordered_and_jumps() {
        let mut w = ReplayWindow::new(128, 0);
        w.accept(100);
        for i in (1..100).rev() {
            assert_eq!(w.check(i), Ok(()), "{i}");
            w.accept(i);
        }
        for i in 0..=100 {
            assert_eq!(w.check(i), Err(Error::Replayed), "{i}");
        }
        w.accept(100 + 127); // everything from 100 stays in the window
        assert_eq!(w.check(100), Err(Error::Replayed));
        assert_eq!(w.check(101), Ok(()));
        assert_eq!(w.check(99), Err(Error::Replayed)); // fell out
        w.accept(10_000); // a jump larger than the window clears it all
        assert_eq!(w.check(10_000 - 127), Ok(()));
        assert_eq!(w.check(10_000 - 128), Err(Error::Replayed));
    }

    /// A model check against a set of seen indices, for a big window and random steps.
    #[test]
    fn matches_model() {
        let size = 4096u64;
        let mut w = ReplayWindow::new(size as usize, 5);
        let mut seen = std::collections::BTreeSet::from([5u64]);
        let mut top = 5u64;
        let mut x = 0x9e3779b97f4a7c15u64;
        for _ in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let step = (x % 9000) as i64 - 4500;
            let idx = (top as i64 + step).max(0) as u64;
            let expect_ok = idx > top || (top - idx < size && !seen.contains(&idx));
            assert_eq!(w.check(idx).is_ok(), expect_ok, "idx {idx} top {top}");
            if expect_ok {
                w.accept(idx);
                seen.insert(idx);
                top = top.max(idx);
            }
        }
    }
}
