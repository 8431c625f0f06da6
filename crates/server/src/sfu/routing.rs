//! Which participant a datagram on a worker's socket is for.
//!
//! - **STUN is routed by the local ufrag in USERNAME only** (RFC 8445 §7.2.2), never by
//!   5-tuple: a participant's checks reach its own agent whatever another participant did
//!   with its source address, so they are always answered.
//! - **DTLS and SRTP are routed by 5-tuple**, through a table holding exactly the addresses
//!   participants currently have validated ([`callsec_rtc::Rtc::poll_route`]). Each
//!   participant validates a bounded number of addresses at a bounded rate and unnominated
//!   ones expire, so the table is bounded by participants × [`callsec_rtc::Limits::capacity`]
//!   and an insider's spoofed checks leave nothing behind for long.
//!
//! # Two participants, one address
//! Any participant holding a join token can spoof checks (and, once it has SRTP keys,
//! authentic SRTP of its own) from any source address, including one another participant
//! will use later. So an address has an **owner** (media from it goes there) and at most one
//! **pending** claimant, the newer one. A participant *holds* an address when its DTLS
//! association runs on it or its media path (nominated and authenticated) is there.
//!
//! - A participant that validates a claimed address becomes the pending claimant. If both
//!   places are taken, the older claimant that does not hold the address is displaced (and
//!   forgets it); if both hold it, the newcomer forgets it (its check was answered, but
//!   nothing else from that address reaches it).
//! - DTLS from the address goes to the claimant whose association runs there, else to the
//!   pending claimant if it has none yet (the newer claim, so a squat made before a victim
//!   joined never receives the victim's ClientHello), else to the owner.
//! - When the pending claimant completes DTLS there it becomes owner and the old owner
//!   forgets the address. Completing a handshake needs the server's flights, which proves
//!   the claimant receives at that address: a spoofer cannot. This is how a participant
//!   gets its address back from an insider that squatted it before it joined, by spoofed
//!   checks or even spoofed SRTP of the insider's own keys.
//! - Media (SRTP, SRTCP) always goes to the owner: one map lookup, nothing else per packet.
//!
//! Races and what they cost, documented rather than hidden:
//! - an insider that learns a victim's address while the victim is between its first check
//!   and its ClientHello can displace it with a fresh join's checks; the victim's next check
//!   claims the address again (checks are routed by ufrag, so they are always answered), and
//!   the insider's re-claims are bounded by its new-address rate limit and signaling's join
//!   rate limit;
//! - a fresh insider participant that starts a handshake from a spoofed address holds it
//!   until its connect timeout closes it (it can never complete);
//! - a participant whose media path moved by SRTP to a new address (DTLS elsewhere) holds it
//!   against spoofed checks; it loses it only to a participant that completes DTLS there,
//!   which needs the address itself;
//! - a ClientHello spoofed from a victim's address and timed before the victim's own reaches
//!   the victim's transport like the real one would; this needs no credentials (an off-path
//!   party that knows the address can do it as well) and is for the DTLS layer to survive,
//!   not for routing;
//! - routes belong to one worker's socket: a squat on one worker's port never affects a
//!   participant on another worker (another port, another 5-tuple).

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::net::SocketAddr;

use callsec_ice::PacketKind;
use callsec_rtc::{RouteChange, local_ufrag};

use super::{ConnId, Sfu};

impl Sfu {
    /// Source addresses routed on this worker (at most participants ×
    /// [`callsec_rtc::Limits::capacity`]).
    pub fn route_count(&self) -> usize {
        self.by_addr.len()
    }

    /// The participant a datagram is for: STUN by the ufrag it names, anything else by
    /// 5-tuple.
    pub(super) fn route(&self, from: SocketAddr, kind: PacketKind, buf: &[u8]) -> Option<ConnId> {
        if kind == PacketKind::Stun {
            let ufrag = std::str::from_utf8(local_ufrag(buf)?).ok()?;
            return self.by_ufrag.get(ufrag).copied();
        }
        self.by_addr.lookup(from, kind, |c| {
            self.participants.get(&c).and_then(|p| p.rtc.dtls_peer())
        })
    }

    /// Applies a participant's changes of its validated set to the route table. Per packet
    /// this is one empty-queue check.
    pub(super) fn sync_routes(&mut self, conn: ConnId) {
        let mut changed = false;
        while let Some(change) = self
            .participants
            .get_mut(&conn)
            .and_then(|p| p.rtc.poll_route())
        {
            changed = true;
            match change {
                RouteChange::Added(addr) => {
                    let participants = &self.participants;
                    let loser = self.by_addr.claim(addr, conn, |c| {
                        participants.get(&c).is_some_and(|q| {
                            q.rtc.dtls_peer() == Some(addr) || q.rtc.destination() == Some(addr)
                        })
                    });
                    if let Some(q) = loser.and_then(|l| self.participants.get_mut(&l)) {
                        q.rtc.forget(addr);
                    }
                }
                RouteChange::Removed(addr) => self.by_addr.release(addr, conn),
            }
        }
        if changed {
            self.metrics.routes.set(self.by_addr.len() as i64);
        }
    }

    /// `conn` completed DTLS on `addr`: it owns the address from now on.
    pub(super) fn established(&mut self, conn: ConnId, addr: SocketAddr) {
        if let Some(q) = self
            .by_addr
            .established(addr, conn)
            .and_then(|old| self.participants.get_mut(&old))
        {
            q.rtc.forget(addr);
        }
    }

    /// Drops every route of a participant that left.
    pub(super) fn forget_routes(&mut self, conn: ConnId) {
        self.by_addr.remove(conn);
        self.metrics.routes.set(self.by_addr.len() as i64);
    }
}

/// Who datagrams from one address are for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Route {
    owner: ConnId,
    pending: Option<ConnId>,
}

/// The 5-tuple route table of one worker (see the module documentation).
#[derive(Debug, Default)]
pub(crate) struct Routes {
    table: HashMap<SocketAddr, Route>,
}

impl Routes {
    /// Addresses routed.
    pub(crate) fn len(&self) -> usize {
        self.table.len()
    }

    /// The participant a DTLS or SRTP datagram from `from` is for. `dtls_peer` tells where a
    /// participant's DTLS association runs; it is asked only for DTLS to an address with a
    /// pending claimant (never on the media path).
    pub(crate) fn lookup(
        &self,
        from: SocketAddr,
        kind: PacketKind,
        dtls_peer: impl Fn(ConnId) -> Option<SocketAddr>,
    ) -> Option<ConnId> {
        let route = self.table.get(&from)?;
        let Some(pending) = route.pending else {
            return Some(route.owner);
        };
        if kind != PacketKind::Dtls || dtls_peer(route.owner) == Some(from) {
            return Some(route.owner);
        }
        match dtls_peer(pending) {
            Some(p) if p != from => Some(route.owner),
            _ => Some(pending),
        }
    }

    /// `conn` validated `addr`. Returns the participant that must forget `addr` (it lost
    /// it), if any; `holds` tells whether a participant holds `addr`.
    pub(crate) fn claim(
        &mut self,
        addr: SocketAddr,
        conn: ConnId,
        holds: impl Fn(ConnId) -> bool,
    ) -> Option<ConnId> {
        let route = match self.table.entry(addr) {
            Entry::Vacant(v) => {
                v.insert(Route {
                    owner: conn,
                    pending: None,
                });
                return None;
            }
            Entry::Occupied(o) => o.into_mut(),
        };
        if route.owner == conn || route.pending == Some(conn) {
            return None;
        }
        let Some(pending) = route.pending else {
            route.pending = Some(conn);
            return None;
        };
        if !holds(route.owner) {
            // The older claimant that does not hold it goes; the newer moves up.
            route.pending = Some(conn);
            return Some(std::mem::replace(&mut route.owner, pending));
        }
        if !holds(pending) {
            route.pending = Some(conn);
            return Some(pending);
        }
        Some(conn)
    }

    /// `conn` no longer has `addr` validated.
    pub(crate) fn release(&mut self, addr: SocketAddr, conn: ConnId) {
        let Entry::Occupied(mut o) = self.table.entry(addr) else {
            return;
        };
        let route = o.get_mut();
        if route.owner == conn {
            match route.pending.take() {
                Some(pending) => route.owner = pending,
                None => {
                    o.remove();
                }
            }
        } else if route.pending == Some(conn) {
            route.pending = None;
        }
    }

    /// `conn` completed DTLS on `addr`: if it was the pending claimant it becomes owner, and
    /// the old owner (returned) must forget `addr`.
    pub(crate) fn established(&mut self, addr: SocketAddr, conn: ConnId) -> Option<ConnId> {
        let route = self.table.get_mut(&addr)?;
        if route.pending != Some(conn) {
            return None;
        }
        route.pending = None;
        Some(std::mem::replace(&mut route.owner, conn))
    }

    /// Removes every route of a participant that left.
    pub(crate) fn remove(&mut self, conn: ConnId) {
        self.table.retain(|_, route| {
            if route.pending == Some(conn) {
                route.pending = None;
            }
            if route.owner == conn {
                match route.pending.take() {
                    Some(pending) => route.owner = pending,
                    None => return false,
                }
            }
            true
        });
    }

    /// The claimants of `addr` (owner first), for tests.
    #[cfg(test)]
    pub(crate) fn claimants(&self, addr: SocketAddr) -> Option<(ConnId, Option<ConnId>)> {
        self.table.get(&addr).map(|r| (r.owner, r.pending))
    }
}

#[cfg(test)]
mod sim_tests;

#[cfg(test)]
mod tests {
    use super::*;

    fn a(n: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], n))
    }

    #[test]
    fn claims_by_holding() {
        let mut r = Routes::default();
        let none = |_| None;
        assert_eq!(r.claim(a(1), 1, |_| false), None);
        assert_eq!(r.claim(a(1), 1, |_| false), None);
        // 2 claims too: pending, and DTLS goes to the newer claim while neither runs DTLS.
        assert_eq!(r.claim(a(1), 2, |_| false), None);
        assert_eq!(r.claimants(a(1)), Some((1, Some(2))));
        assert_eq!(r.lookup(a(1), PacketKind::Dtls, none), Some(2));
        assert_eq!(r.lookup(a(1), PacketKind::Rtp, none), Some(1));
        // The owner's association runs there: its DTLS stays with it.
        assert_eq!(
            r.lookup(a(1), PacketKind::Dtls, |c| (c == 1).then_some(a(1))),
            Some(1)
        );
        // The pending claimant's association runs elsewhere: the owner gets it.
        assert_eq!(
            r.lookup(a(1), PacketKind::Dtls, |c| (c == 2).then_some(a(9))),
            Some(1)
        );
        // 3 claims while neither holds: the older (1) goes, 2 owns, 3 pending.
        assert_eq!(r.claim(a(1), 3, |_| false), Some(1));
        assert_eq!(r.claimants(a(1)), Some((2, Some(3))));
        // Owner holds: the pending claimant that does not hold is displaced.
        assert_eq!(r.claim(a(1), 4, |c| c == 2), Some(3));
        // Both hold: the newcomer loses.
        assert_eq!(r.claim(a(1), 5, |c| c == 2 || c == 4), Some(5));
        // 4 completes DTLS there: owner, and 2 forgets.
        assert_eq!(r.established(a(1), 4), Some(2));
        assert_eq!(r.claimants(a(1)), Some((4, None)));
        assert_eq!(r.established(a(1), 4), None);
        r.release(a(1), 4);
        assert_eq!(r.len(), 0);
    }

    #[test]
    fn release_and_remove_promote_the_pending_claimant() {
        let mut r = Routes::default();
        r.claim(a(1), 1, |_| true);
        r.claim(a(1), 2, |_| true);
        r.claim(a(2), 1, |_| true);
        r.release(a(1), 1);
        assert_eq!(r.claimants(a(1)), Some((2, None)));
        r.release(a(1), 7);
        assert_eq!(r.claimants(a(1)), Some((2, None)));
        r.claim(a(1), 1, |_| true);
        r.remove(2);
        assert_eq!(r.claimants(a(1)), Some((1, None)));
        r.remove(1);
        assert_eq!(r.len(), 0);
        assert_eq!(r.lookup(a(1), PacketKind::Rtp, |_| None), None);
    }
}
