//! The ICE-lite agent (RFC 8445 §2.5): it never sends checks, only answers the peer's
//! Binding requests, learns the peer's addresses from them (bounded: see
//! [`crate::candidates`]), and follows consent (RFC 7675).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::candidates::{Candidates, Change, Limits, RouteChange};
use crate::stun::{Error, Message, Writer, attr, msg_type};

/// RFC 7675 §5.1: consent expires 30 s after the last successful check.
pub const CONSENT_TIMEOUT: Duration = Duration::from_secs(30);

/// Largest STUN response this agent writes (header, XOR-MAPPED-ADDRESS for IPv6,
/// MESSAGE-INTEGRITY, FINGERPRINT).
pub const MAX_RESPONSE: usize = 20 + 24 + 24 + 8;

/// At most this many responses wait in the queue; older ones are dropped (the peer retries).
const MAX_QUEUED: usize = 16;

/// ICE credentials as SDP carries them (`a=ice-ufrag`, `a=ice-pwd`).
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The username fragment.
    pub ufrag: String,
    /// The password (the MESSAGE-INTEGRITY key).
    pub pwd: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("ufrag", &self.ufrag)
            .finish_non_exhaustive()
    }
}

/// A datagram to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// Where to.
    pub destination: SocketAddr,
    /// The bytes (a STUN response).
    pub payload: Vec<u8>,
}

/// What the agent tells its driver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// Media goes to this address from now on: the controlling peer nominated it
    /// (USE-CANDIDATE) and it is authenticated ([`IceLite::authenticate`]).
    Selected(SocketAddr),
    /// No valid check from the selected address for [`Limits::consent`]: stop sending.
    ConsentExpired(SocketAddr),
}

/// What a STUN datagram turned out to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handled {
    /// A Binding request with valid credentials from this address: it is answered, and the
    /// 5-tuple is validated (the basis for admitting DTLS and SRTP) until it expires.
    Check {
        /// Whether the request carried USE-CANDIDATE.
        nominated: bool,
    },
    /// A Binding indication (keep-alive): nothing proved, nothing answered.
    Indication,
}

/// The local ufrag a Binding request addresses: the part of its USERNAME before the colon
/// (RFC 8445 §7.2.2), so that one UDP port can find the agent a first check is for. Nothing
/// is verified here; the agent found this way checks integrity itself.
pub fn local_ufrag(datagram: &[u8]) -> Option<&[u8]> {
    let message = Message::parse(datagram).ok()?;
    if message.msg_type() != msg_type::BINDING_REQUEST {
        return None;
    }
    let username = message.attribute(attr::USERNAME)?;
    let colon = username.iter().position(|&b| b == b':')?;
    Some(&username[..colon])
}

/// An ICE-lite agent for one peer (one BUNDLE transport).
#[derive(Debug)]
pub struct IceLite {
    local: Credentials,
    remote_ufrag: Option<String>,
    candidates: Candidates,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
}

impl IceLite {
    /// An agent answering checks made with our `local` credentials, with default [`Limits`].
    pub fn new(local: Credentials) -> Self {
        Self::with_limits(local, Limits::default())
    }

    /// An agent whose peer may validate addresses within `limits`.
    pub fn with_limits(local: Credentials, limits: Limits) -> Self {
        IceLite {
            local,
            remote_ufrag: None,
            candidates: Candidates::new(limits),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// The peer's ufrag from its SDP; once set, USERNAME must be exactly `ours:theirs`.
    pub fn set_remote_ufrag(&mut self, ufrag: &str) {
        self.remote_ufrag = Some(ufrag.to_owned());
    }

    /// The address media goes to: nominated and authenticated, while consent holds.
    pub fn selected(&self) -> Option<SocketAddr> {
        self.candidates.selected()
    }

    /// Whether `addr` is validated now (DTLS and SRTP may be admitted from it).
    pub fn is_validated(&self, addr: SocketAddr) -> bool {
        self.candidates.contains(addr)
    }

    /// The validated addresses.
    pub fn validated(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        self.candidates.addresses()
    }

    /// DTLS completed on `addr`, or an SRTP/SRTCP packet from it passed authentication: if
    /// the peer nominated it, media moves there ([`Event::Selected`]). A nominated check
    /// alone never moves media: a spoofed source can send checks, not authenticated media of
    /// this peer's keys without holding them. One compare when `addr` is already selected.
    pub fn authenticate(&mut self, addr: SocketAddr) {
        let events = &mut self.events;
        self.candidates
            .authenticate(addr, &mut |c| push_change(events, c));
    }

    /// Drops `addr` from the validated set without reporting a [`RouteChange`] (the driver
    /// decided another peer owns it).
    pub fn forget(&mut self, addr: SocketAddr) {
        self.candidates.forget(addr);
    }

    /// The next change of the validated set, for a driver that routes by 5-tuple.
    #[must_use]
    pub fn poll_route(&mut self) -> Option<RouteChange> {
        self.candidates.poll_route()
    }

    /// Handles a datagram that [`crate::classify`] called STUN. A valid Binding request is
    /// answered (see [`IceLite::poll_transmit`]); anything else is refused with a typed error
    /// and changes nothing. Binding indications (keep-alives) are accepted silently.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        from: SocketAddr,
        datagram: &[u8],
    ) -> Result<Handled, Error> {
        let message = Message::parse(datagram)?;
        match message.msg_type() {
            msg_type::BINDING_REQUEST => {}
            msg_type::BINDING_INDICATION => return Ok(Handled::Indication),
            _ => return Err(Error::Unhandled),
        }
        // RFC 8445 §7.3: FINGERPRINT, then USERNAME, then MESSAGE-INTEGRITY.
        message.verify_fingerprint()?;
        let username = message
            .attribute(attr::USERNAME)
            .ok_or(Error::MissingAttribute(attr::USERNAME))?;
        if !self.username_ok(username) {
            return Err(Error::UnknownUsername);
        }
        message.verify_integrity(self.local.pwd.as_bytes())?;

        // The address is validated (or refreshed) before it is answered: a check from a new
        // address beyond the rate limit gets no answer and changes nothing.
        let nominate = message.attribute(attr::USE_CANDIDATE).is_some();
        let events = &mut self.events;
        self.candidates
            .check(now, from, nominate, &mut |c| push_change(events, c))
            .map_err(|_| Error::RateLimited)?;

        let mut payload = vec![0u8; MAX_RESPONSE];
        let mut w = Writer::new(
            &mut payload,
            msg_type::BINDING_SUCCESS,
            &message.transaction_id(),
        )?;
        w.xor_mapped_address(from)?;
        w.message_integrity(self.local.pwd.as_bytes())?;
        let n = w.fingerprint()?;
        payload.truncate(n);
        if self.transmits.len() >= MAX_QUEUED {
            self.transmits.pop_front();
        }
        self.transmits.push_back(Transmit {
            destination: from,
            payload,
        });

        Ok(Handled::Check {
            nominated: nominate,
        })
    }

    /// Expires addresses at `now`: consent of the selected address and the nominee,
    /// lifetime of the others.
    pub fn handle_timeout(&mut self, now: Instant) {
        let events = &mut self.events;
        self.candidates.expire(now, &mut |c| push_change(events, c));
    }

    /// The next response to send.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When to call [`IceLite::handle_timeout`] next.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.candidates.next_expiry()
    }

    fn username_ok(&self, username: &[u8]) -> bool {
        let Some(rest) = username.strip_prefix(self.local.ufrag.as_bytes()) else {
            return false;
        };
        let Some(theirs) = rest.strip_prefix(b":") else {
            return false;
        };
        match &self.remote_ufrag {
            Some(expected) => theirs == expected.as_bytes(),
            None => !theirs.is_empty(),
        }
    }
}

fn push_change(events: &mut VecDeque<Event>, change: Change) {
    if events.len() >= MAX_QUEUED {
        events.pop_front();
    }
    events.push_back(match change {
        Change::Selected(a) => Event::Selected(a),
        Change::ConsentExpired(a) => Event::ConsentExpired(a),
    });
}

/// Builds a Binding request as a controlling full agent (a browser) sends it: for tests and
/// tools. `username` is `<their ufrag>:<our ufrag>`, `pwd` their password.
pub fn binding_request(
    transaction_id: &[u8; 12],
    username: &str,
    pwd: &str,
    use_candidate: bool,
) -> Result<Vec<u8>, Error> {
    let mut buf = vec![0u8; 20 + 4 + username.len() + 3 + 8 + 12 + 4 + 24 + 8];
    let mut w = Writer::new(&mut buf, msg_type::BINDING_REQUEST, transaction_id)?;
    w.attribute(attr::USERNAME, username.as_bytes())?;
    w.attribute(attr::PRIORITY, &0x6e00_01ffu32.to_be_bytes())?;
    w.attribute(
        attr::ICE_CONTROLLING,
        &0x1234_5678_9abc_def0u64.to_be_bytes(),
    )?;
    if use_candidate {
        w.attribute(attr::USE_CANDIDATE, &[])?;
    }
    w.message_integrity(pwd.as_bytes())?;
    let n = w.fingerprint()?;
    buf.truncate(n);
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stun;

    fn agent() -> IceLite {
        let mut a = IceLite::new(Credentials {
            ufrag: "srv1".into(),
            pwd: "server-password-0123456789".into(),
        });
        a.set_remote_ufrag("brws");
        a
    }

    #[test]
    fn answers_a_valid_check_and_follows_nomination_and_consent() {
        let mut a = agent();
        let t0 = Instant::now();
        let peer: SocketAddr = "127.0.0.1:50000".parse().unwrap();
        let tid = [7u8; 12];
        let req = binding_request(&tid, "srv1:brws", "server-password-0123456789", false).unwrap();
        assert_eq!(
            a.handle_datagram(t0, peer, &req),
            Ok(Handled::Check { nominated: false })
        );
        assert_eq!(local_ufrag(&req), Some(&b"srv1"[..]));
        assert_eq!(local_ufrag(b"\x00\x01garbage"), None);
        let tx = a.poll_transmit().unwrap();
        assert_eq!(tx.destination, peer);
        let resp = Message::parse(&tx.payload).unwrap();
        assert_eq!(resp.msg_type(), msg_type::BINDING_SUCCESS);
        assert_eq!(resp.transaction_id(), tid);
        resp.verify_fingerprint().unwrap();
        resp.verify_integrity(b"server-password-0123456789")
            .unwrap();
        let mapped = resp.attribute(attr::XOR_MAPPED_ADDRESS).unwrap();
        assert_eq!(stun::read_xor_mapped_address(mapped, &tid), Some(peer));
        assert_eq!(a.poll_event(), None, "no nomination without USE-CANDIDATE");

        assert_eq!(a.poll_route(), Some(RouteChange::Added(peer)));
        assert!(a.is_validated(peer));

        // Nominated, but media moves only once the address is authenticated.
        let req =
            binding_request(&[8; 12], "srv1:brws", "server-password-0123456789", true).unwrap();
        a.handle_datagram(t0, peer, &req).unwrap();
        assert_eq!(a.poll_event(), None);
        assert_eq!(a.selected(), None);
        a.authenticate(peer);
        assert_eq!(a.poll_event(), Some(Event::Selected(peer)));
        assert_eq!(a.selected(), Some(peer));
        assert_eq!(a.poll_timeout(), Some(t0 + CONSENT_TIMEOUT));

        // A check 20 s later refreshes consent; 30 s after that it expires.
        let t1 = t0 + Duration::from_secs(20);
        let req =
            binding_request(&[9; 12], "srv1:brws", "server-password-0123456789", false).unwrap();
        a.handle_datagram(t1, peer, &req).unwrap();
        a.handle_timeout(t0 + CONSENT_TIMEOUT);
        assert_eq!(a.poll_event(), None);
        assert_eq!(a.poll_route(), None);
        a.handle_timeout(t1 + CONSENT_TIMEOUT);
        assert_eq!(a.poll_event(), Some(Event::ConsentExpired(peer)));
        assert_eq!(a.poll_route(), Some(RouteChange::Removed(peer)));
        assert!(!a.is_validated(peer));
        assert_eq!(a.selected(), None);
    }

    #[test]
    fn refuses_bad_checks_without_answering() {
        let mut a = agent();
        let now = Instant::now();
        let peer: SocketAddr = "[::1]:4000".parse().unwrap();
        let cases = [
            (
                binding_request(&[1; 12], "srv1:brws", "wrong-password", true).unwrap(),
                Error::BadIntegrity,
            ),
            (
                binding_request(&[1; 12], "srv1:evil", "server-password-0123456789", true).unwrap(),
                Error::UnknownUsername,
            ),
            (
                binding_request(&[1; 12], "other:brws", "server-password-0123456789", true)
                    .unwrap(),
                Error::UnknownUsername,
            ),
        ];
        for (req, err) in cases {
            assert_eq!(a.handle_datagram(now, peer, &req), Err(err));
        }
        let mut req =
            binding_request(&[1; 12], "srv1:brws", "server-password-0123456789", true).unwrap();
        let n = req.len();
        req[n - 1] ^= 1;
        assert_eq!(
            a.handle_datagram(now, peer, &req),
            Err(Error::BadFingerprint)
        );
        assert_eq!(
            a.handle_datagram(now, peer, b"\x00\x01garbage"),
            Err(Error::Malformed)
        );
        assert_eq!(a.poll_transmit(), None);
        assert_eq!(a.poll_event(), None);
        assert_eq!(a.selected(), None);
        // IPv6 peers get an IPv6 XOR-MAPPED-ADDRESS.
        let req =
            binding_request(&[2; 12], "srv1:brws", "server-password-0123456789", true).unwrap();
        a.handle_datagram(now, peer, &req).unwrap();
        let tx = a.poll_transmit().unwrap();
        let resp = Message::parse(&tx.payload).unwrap();
        let mapped = resp.attribute(attr::XOR_MAPPED_ADDRESS).unwrap();
        assert_eq!(stun::read_xor_mapped_address(mapped, &[2; 12]), Some(peer));
    }

    #[test]
    fn queue_is_bounded() {
        let mut a = agent();
        let now = Instant::now();
        let peer: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let req =
            binding_request(&[1; 12], "srv1:brws", "server-password-0123456789", false).unwrap();
        for _ in 0..1000 {
            a.handle_datagram(now, peer, &req).unwrap();
        }
        assert_eq!(std::iter::from_fn(|| a.poll_transmit()).count(), MAX_QUEUED);
    }
}
