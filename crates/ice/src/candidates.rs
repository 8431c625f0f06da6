//! The remote addresses one peer has validated by ICE checks, bounded in number, rate and
//! lifetime, and which of them media goes to.
//!
//! An ICE-lite agent learns the peer's candidates only from the source addresses of its
//! Binding requests (RFC 8445 §7.3.1.3, peer-reflexive). A peer that holds the ICE password
//! (any participant with a join token) and can spoof source addresses could otherwise make a
//! server accept DTLS and SRTP from, and route to it, any number of addresses. So:
//!
//! - at most [`Limits::capacity`] addresses are validated at once; a new one evicts the
//!   unprotected entry closest to expiry, never the selected address or the nominee;
//! - new addresses are admitted at most [`Limits::burst`] at once and then one per
//!   [`Limits::refill`] (a token bucket on the caller's clock); a check from an address that
//!   finds the bucket empty is not answered (the peer retries, RFC 8489 §6.2.1);
//! - an address that was never nominated lives [`Limits::lifetime`] from its validation,
//!   however often it is checked again, and whether or not DTLS or SRTP arrived on it;
//! - the nominee (the last address with USE-CANDIDATE) and the selected address live while
//!   checks keep arriving from them (RFC 7675 consent: [`Limits::consent`]);
//! - media moves to an address only when it is both nominated and *authenticated*: the DTLS
//!   handshake completed on it or an SRTP/SRTCP packet from it passed authentication
//!   ([`crate::IceLite::authenticate`]). A nominated check alone moves nothing: the old address
//!   stays selected until then.
//!
//! Every change of the set is reported as a [`RouteChange`], so a driver routing datagrams by
//! 5-tuple can hold exactly the addresses its peers currently have validated.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Bounds on the addresses one peer may validate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Most addresses validated at once (at least 3: the selected address and the nominee are
    /// never evicted, so a third slot always remains for a new address).
    pub capacity: usize,
    /// How long an address that is neither nominated nor selected stays validated after the
    /// check that validated it.
    pub lifetime: Duration,
    /// How long the nominee and the selected address stay validated after their last check
    /// (RFC 7675 §5.1: 30 s).
    pub consent: Duration,
    /// New addresses admitted at once (the token bucket's depth).
    pub burst: u32,
    /// One more new address is admitted per this much time (the bucket's refill).
    pub refill: Duration,
}

impl Default for Limits {
    /// Eight addresses (a browser's host, IPv6 and relay candidates), all of them at once
    /// and then one per second, unnominated ones for 30 s, consent 30 s.
    fn default() -> Self {
        Self {
            capacity: 8,
            lifetime: Duration::from_secs(30),
            consent: crate::CONSENT_TIMEOUT,
            burst: 8,
            refill: Duration::from_secs(1),
        }
    }
}

/// A change of the validated set, for a driver's route table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouteChange {
    /// The address passed a check and is validated.
    Added(SocketAddr),
    /// The address is no longer validated (expired or evicted).
    Removed(SocketAddr),
}

/// Why a valid check did not validate its address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RateLimited;

/// What the set tells the agent after a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Change {
    /// Media goes to this address now.
    Selected(SocketAddr),
    /// The selected address went without a check for [`Limits::consent`].
    ConsentExpired(SocketAddr),
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    addr: SocketAddr,
    validated: Instant,
    last_check: Instant,
    /// DTLS completed on it, or SRTP/SRTCP from it authenticated.
    authenticated: bool,
}

/// A token bucket on the caller's clock.
#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: u32,
    /// When the last token was added (or the bucket first used).
    since: Option<Instant>,
}

impl Bucket {
    fn take(&mut self, now: Instant, limits: &Limits) -> bool {
        if limits.refill.is_zero() {
            return true;
        }
        let since = *self.since.get_or_insert(now);
        if self.tokens >= limits.burst {
            // A full bucket earns nothing: its refill clock starts at the first take.
            self.since = Some(now);
        } else {
            let elapsed = now.saturating_duration_since(since);
            let earned =
                u32::try_from(elapsed.as_nanos() / limits.refill.as_nanos()).unwrap_or(u32::MAX);
            if earned > 0 {
                self.tokens = self.tokens.saturating_add(earned).min(limits.burst);
                self.since = Some(if self.tokens == limits.burst {
                    now
                } else {
                    since + limits.refill * earned
                });
            }
        }
        if self.tokens == 0 {
            return false;
        }
        self.tokens -= 1;
        true
    }
}

/// The validated addresses of one peer (see the module documentation).
#[derive(Debug)]
pub(crate) struct Candidates {
    limits: Limits,
    entries: Vec<Entry>,
    nominee: Option<SocketAddr>,
    selected: Option<SocketAddr>,
    bucket: Bucket,
    routes: VecDeque<RouteChange>,
}

impl Candidates {
    pub(crate) fn new(mut limits: Limits) -> Self {
        limits.capacity = limits.capacity.max(3);
        Self {
            entries: Vec::with_capacity(limits.capacity),
            nominee: None,
            selected: None,
            bucket: Bucket {
                tokens: limits.burst,
                since: None,
            },
            routes: VecDeque::with_capacity(2 * limits.capacity),
            limits,
        }
    }

    pub(crate) fn selected(&self) -> Option<SocketAddr> {
        self.selected
    }

    pub(crate) fn contains(&self, addr: SocketAddr) -> bool {
        self.selected == Some(addr) || self.entries.iter().any(|e| e.addr == addr)
    }

    pub(crate) fn addresses(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        self.entries.iter().map(|e| e.addr)
    }

    /// A check with valid credentials from `addr` (`nominated`: it carried USE-CANDIDATE).
    pub(crate) fn check(
        &mut self,
        now: Instant,
        addr: SocketAddr,
        nominated: bool,
        changes: &mut impl FnMut(Change),
    ) -> Result<(), RateLimited> {
        self.expire(now, changes);
        if let Some(e) = self.entries.iter_mut().find(|e| e.addr == addr) {
            e.last_check = now;
        } else {
            if !self.bucket.take(now, &self.limits) {
                return Err(RateLimited);
            }
            if self.entries.len() >= self.limits.capacity {
                self.evict_one();
            }
            self.entries.push(Entry {
                addr,
                validated: now,
                last_check: now,
                authenticated: false,
            });
            self.push_route(RouteChange::Added(addr));
        }
        if nominated && self.nominee != Some(addr) {
            self.nominee = Some(addr);
            self.try_select(addr, changes);
        }
        Ok(())
    }

    /// DTLS completed on `addr`, or an SRTP/SRTCP packet from it passed authentication. Media
    /// moves there if it is also the nominee. Called per media packet: one compare when
    /// `addr` is already selected.
    pub(crate) fn authenticate(&mut self, addr: SocketAddr, changes: &mut impl FnMut(Change)) {
        if self.selected == Some(addr) {
            return;
        }
        let Some(e) = self.entries.iter_mut().find(|e| e.addr == addr) else {
            return;
        };
        e.authenticated = true;
        self.try_select(addr, changes);
    }

    /// Drops `addr` at the driver's request (another peer claimed it). Not reported as a
    /// [`RouteChange`]: the driver already knows. The token its validation cost is given
    /// back: losing an address to someone else must not use up a peer's budget, or an insider
    /// could keep a victim's own checks unanswered by displacing it again and again.
    pub(crate) fn forget(&mut self, addr: SocketAddr) {
        let before = self.entries.len();
        self.entries.retain(|e| e.addr != addr);
        if self.entries.len() < before {
            self.bucket.tokens = self.bucket.tokens.saturating_add(1).min(self.limits.burst);
        }
        self.routes.retain(|c| *c != RouteChange::Added(addr));
        if self.selected == Some(addr) {
            self.selected = None;
        }
        if self.nominee == Some(addr) {
            self.nominee = None;
        }
    }

    /// Removes every address whose time is up.
    pub(crate) fn expire(&mut self, now: Instant, changes: &mut impl FnMut(Change)) {
        let mut i = 0;
        while i < self.entries.len() {
            let e = self.entries[i];
            if now >= self.expiry(&e) {
                self.entries.swap_remove(i);
                self.removed(e.addr);
                if self.selected == Some(e.addr) {
                    self.selected = None;
                    changes(Change::ConsentExpired(e.addr));
                }
            } else {
                i += 1;
            }
        }
    }

    /// The earliest expiry.
    pub(crate) fn next_expiry(&self) -> Option<Instant> {
        self.entries.iter().map(|e| self.expiry(e)).min()
    }

    pub(crate) fn poll_route(&mut self) -> Option<RouteChange> {
        self.routes.pop_front()
    }

    fn expiry(&self, e: &Entry) -> Instant {
        if self.selected == Some(e.addr) || self.nominee == Some(e.addr) {
            e.last_check + self.limits.consent
        } else {
            e.validated + self.limits.lifetime
        }
    }

    fn try_select(&mut self, addr: SocketAddr, changes: &mut impl FnMut(Change)) {
        let authenticated = self
            .entries
            .iter()
            .any(|e| e.addr == addr && e.authenticated);
        if authenticated && self.nominee == Some(addr) && self.selected != Some(addr) {
            self.selected = Some(addr);
            changes(Change::Selected(addr));
        }
    }

    /// Evicts the entry closest to expiry that is neither selected nor the nominee (one
    /// always exists: capacity is at least 3).
    fn evict_one(&mut self) {
        let victim = self
            .entries
            .iter()
            .enumerate()
            .filter(|(_, e)| Some(e.addr) != self.selected && Some(e.addr) != self.nominee)
            .min_by_key(|(_, e)| self.expiry(e))
            .map(|(i, _)| i);
        if let Some(i) = victim {
            let e = self.entries.swap_remove(i);
            self.removed(e.addr);
        }
    }

    fn removed(&mut self, addr: SocketAddr) {
        if self.nominee == Some(addr) {
            self.nominee = None;
        }
        self.push_route(RouteChange::Removed(addr));
    }

    /// Queues a change, cancelling its opposite if that is still queued, so the queue holds
    /// the net change since the driver last drained it (at most twice the capacity).
    fn push_route(&mut self, change: RouteChange) {
        let opposite = match change {
            RouteChange::Added(a) => RouteChange::Removed(a),
            RouteChange::Removed(a) => RouteChange::Added(a),
        };
        if let Some(i) = self.routes.iter().position(|c| *c == opposite) {
            self.routes.remove(i);
        } else {
            self.routes.push_back(change);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use proptest::prelude::*;

    use super::*;

    fn addr(n: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, (n >> 8) as u8, n as u8], 5000 + n))
    }

    fn limits() -> Limits {
        Limits {
            capacity: 4,
            lifetime: Duration::from_secs(10),
            consent: Duration::from_secs(30),
            burst: 4,
            refill: Duration::from_secs(1),
        }
    }

    fn check(c: &mut Candidates, now: Instant, a: SocketAddr, nominated: bool) -> Vec<Change> {
        let mut out = Vec::new();
        let _ = c.check(now, a, nominated, &mut |x| out.push(x));
        out
    }

    #[test]
    fn new_addresses_are_rate_limited_known_ones_never() {
        let mut c = Candidates::new(limits());
        let t0 = Instant::now();
        for n in 0..4 {
            assert_eq!(c.check(t0, addr(n), false, &mut |_| {}), Ok(()));
        }
        assert_eq!(c.check(t0, addr(9), false, &mut |_| {}), Err(RateLimited));
        for n in 0..4 {
            assert_eq!(c.check(t0, addr(n), false, &mut |_| {}), Ok(()));
        }
        // One second refills one token: a fifth address evicts the oldest unprotected one.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(c.check(t1, addr(9), false, &mut |_| {}), Ok(()));
        assert_eq!(c.check(t1, addr(10), false, &mut |_| {}), Err(RateLimited));
        assert_eq!(c.addresses().count(), 4);
    }

    #[test]
    fn media_moves_only_to_a_nominated_authenticated_address_and_is_never_evicted() {
        let mut c = Candidates::new(limits());
        let mut t = Instant::now();
        assert!(check(&mut c, t, addr(1), true).is_empty());
        let mut changes = Vec::new();
        c.authenticate(addr(1), &mut |x| changes.push(x));
        assert_eq!(changes, [Change::Selected(addr(1))]);
        // A nominated check from elsewhere moves nothing.
        assert!(check(&mut c, t, addr(2), true).is_empty());
        assert_eq!(c.selected(), Some(addr(1)));
        // Checks from many other addresses never evict the selected address.
        for n in 3..40 {
            t += Duration::from_secs(1);
            check(&mut c, t, addr(n), n % 2 == 0);
            check(&mut c, t, addr(1), false);
            assert_eq!(c.selected(), Some(addr(1)));
            assert!(c.contains(addr(1)));
            assert!(c.addresses().count() <= 4);
        }
        // Authentic media from the nominee moves the path.
        check(&mut c, t, addr(7), true);
        let mut changes = Vec::new();
        c.authenticate(addr(7), &mut |x| changes.push(x));
        assert_eq!(changes, [Change::Selected(addr(7))]);
        assert_eq!(c.selected(), Some(addr(7)));
    }

    #[test]
    fn unnominated_addresses_expire_even_when_checked_and_authenticated() {
        let mut c = Candidates::new(limits());
        let t0 = Instant::now();
        check(&mut c, t0, addr(1), false);
        c.authenticate(addr(1), &mut |_| {});
        for s in 1..10 {
            check(&mut c, t0 + Duration::from_secs(s), addr(1), false);
        }
        assert_eq!(c.next_expiry(), Some(t0 + Duration::from_secs(10)));
        c.expire(t0 + Duration::from_secs(10), &mut |_| {});
        assert!(!c.contains(addr(1)));
        assert_eq!(
            c.poll_route(),
            None,
            "added and removed before the driver looked"
        );
    }

    #[derive(Clone, Debug)]
    enum Op {
        Check(u16, bool),
        Authenticate(u16),
        Forget(u16),
        Advance(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (0u16..24, any::<bool>()).prop_map(|(a, n)| Op::Check(a, n)),
            2 => (0u16..24).prop_map(Op::Authenticate),
            1 => (0u16..24).prop_map(Op::Forget),
            3 => (0u64..8000).prop_map(Op::Advance),
        ]
    }

    proptest! {
        /// Over any sequence of valid checks from random addresses, authentications,
        /// forgets and time: the set never exceeds its capacity; the routes a driver builds
        /// from the changes always equal the set; new addresses never exceed the bucket;
        /// known addresses are never refused; the selected address leaves only by consent
        /// expiry or forget, and media moves only to an address that authenticated.
        #[test]
        fn bounded_mirrored_and_selected_never_evicted(ops in proptest::collection::vec(op(), 1..300)) {
            let l = limits();
            let mut c = Candidates::new(l);
            let t0 = Instant::now();
            let mut now = t0;
            let mut routes: HashSet<SocketAddr> = HashSet::new();
            let mut admitted = 0u64;
            let mut forgotten = 0u64;
            let mut last_check: std::collections::HashMap<SocketAddr, Instant> = Default::default();
            let mut authenticated: HashSet<SocketAddr> = HashSet::new();
            for op in ops {
                let before = c.selected();
                let op_kind = op.clone();
                let mut changes = Vec::new();
                match op {
                    Op::Check(n, nominated) => {
                        let a = addr(n);
                        let known = c.selected() == Some(a) && now < last_check[&a] + l.consent;
                        let r = c.check(now, a, nominated, &mut |x| changes.push(x));
                        if known {
                            prop_assert_eq!(r, Ok(()));
                        }
                        if r.is_ok() {
                            last_check.insert(a, now);
                        }
                    }
                    Op::Authenticate(n) => {
                        let a = addr(n);
                        if c.contains(a) {
                            authenticated.insert(a);
                        }
                        c.authenticate(a, &mut |x| changes.push(x));
                    }
                    Op::Forget(n) => {
                        forgotten += u64::from(c.addresses().any(|a| a == addr(n)));
                        c.forget(addr(n));
                        routes.remove(&addr(n));
                        authenticated.remove(&addr(n));
                    }
                    Op::Advance(ms) => {
                        now += Duration::from_millis(ms);
                        c.expire(now, &mut |x| changes.push(x));
                    }
                }
                // The selected address is never evicted, nor expired while consent holds: it
                // leaves only when media moves (an authenticated nominee) or when forgotten.
                if let Some(sel) = before
                    && now < last_check[&sel] + l.consent
                    && !matches!(op_kind, Op::Forget(n) if addr(n) == sel)
                {
                    let moved = changes.iter().any(|x| matches!(x, Change::Selected(_)));
                    prop_assert!(c.selected() == Some(sel) || moved, "selected lost");
                    prop_assert!(c.selected().is_some());
                }
                for ch in &changes {
                    if let Change::Selected(a) = ch {
                        prop_assert!(authenticated.contains(a), "selected without authentication");
                    }
                }
                while let Some(r) = c.poll_route() {
                    match r {
                        RouteChange::Added(a) => {
                            admitted += 1;
                            prop_assert!(routes.insert(a));
                        }
                        RouteChange::Removed(a) => {
                            prop_assert!(routes.remove(&a));
                            authenticated.remove(&a);
                        }
                    }
                }
                let set: HashSet<SocketAddr> = c.addresses().collect();
                prop_assert_eq!(&routes, &set);
                prop_assert!(set.len() <= l.capacity);
                if let Some(sel) = c.selected() {
                    prop_assert!(set.contains(&sel));
                }
                let elapsed = now.duration_since(t0).as_secs();
                prop_assert!(admitted <= u64::from(l.burst) + elapsed + 1 + forgotten);
            }
        }
    }
}
