//! A handshake that makes no progress: why, and when it ends before its total timeout.
//!
//! Plaintext handshake input can come from anyone who spoofs the peer's address, so a refused
//! plaintext message, or a plaintext fatal alert, never ends a handshake by itself (RFC 6347
//! §4.1.2.7). But a peer that really is refused (a certificate that does not match the SDP
//! fingerprint, an incompatible hello) sends the same refused flight again at every
//! retransmission, and a peer that refused us sends one fatal alert and then nothing. Waiting
//! for the total timeout ([`Config::handshake_timeout`], 60 s) then only delays the failure
//! and hides its reason. So a handshake also ends, with the refusal (or the alert) as its
//! error, on evidence spread over several of our retransmission rounds (a round runs from
//! one firing of our retransmission timer to the next; RFC 6347 §4.2.4.1 doubles it from
//! 1 s), with nothing new from the peer taken in between:
//!
//! - **refused**: plaintext messages of the peer refused in [`STALL_ROUNDS`] distinct rounds
//!   (the genuine peer resends its flight in each; with the default timers this ends a
//!   handshake about 3 s after the first refusal). A fatal alert for the refusal goes to the
//!   peer (for a fingerprint mismatch, bad_certificate), so that it learns why.
//! - **alerted**: a plaintext fatal alert, then silence (no datagram at all, a straggler
//!   only restarts it) for at least the initial retransmission timeout, checked when our
//!   retransmission timer fires at least
//!   [`STALL_ROUNDS`] rounds after the peer's last new message (about 7 s with the default
//!   timers): a peer that sent a fatal alert has closed, while a live peer in a handshake
//!   keeps retransmitting.
//!
//! Why this keeps "a spoofed datagram never ends a handshake" meaningful: one datagram
//! falls in one round, so it never makes a refusal count reach [`STALL_ROUNDS`]; a spoofer
//! must inject in three distinct rounds, more than a whole round (at least the initial
//! retransmission timeout) apart, or follow its one forged alert with a second or more in
//! which the genuine peer, though mid-handshake, gets nothing through. Either way the genuine peer
//! made no progress for three rounds: its new messages reset everything
//! ([`Stall::progress`]), and a forgery that would be taken in place of a genuine message is
//! kept from doing so (`Reassembler::drop_earlier`, the provisional flight in
//! `Connection::refused`). A spoofer who can inject into every round, or drop the peer's
//! datagrams for a round, could already stall the handshake until its total timeout; now it
//! ends sooner, with the spoofer's reason. When the total timeout comes first, the recorded
//! reason is its error too, instead of [`Error::Timeout`].
//!
//! [`Config::handshake_timeout`]: crate::Config::handshake_timeout

#[allow(clippy::wildcard_imports)]
use super::*;

/// Rounds of evidence after which a handshake that makes no progress ends.
pub(super) const STALL_ROUNDS: u8 = 3;

/// Evidence, since the peer's last new message, that the handshake will not complete.
#[derive(Debug, Default)]
pub(super) struct Stall {
    /// The highest message_seq of the peer the handshake took: taking a higher one is
    /// progress (taking one again after a provisional flight was undone is not).
    high: Option<u16>,
    /// The last refusal of a plaintext message, or the last plaintext fatal alert, since.
    reason: Option<Error>,
    /// Our retransmission rounds that ended since.
    rounds: u8,
    /// Rounds in which plaintext messages were refused since (the current one included).
    refused_rounds: u8,
    /// Whether the current round already counted in `refused_rounds`.
    refused_this_round: bool,
    /// When the last datagram arrived.
    last_heard: Option<Instant>,
}

impl Stall {
    /// Why the handshake would fail now, if there is evidence.
    pub(super) fn reason(&self) -> Option<&Error> {
        self.reason.as_ref()
    }

    /// The handshake took the peer's message `seq`.
    pub(super) fn progress(&mut self, seq: u16) {
        if self.high.is_none_or(|h| seq > h) {
            *self = Self {
                high: Some(seq),
                last_heard: self.last_heard,
                ..Self::default()
            };
        }
    }

    /// A datagram arrived at `now` (from the peer or from whoever spoofs it).
    pub(super) fn heard(&mut self, now: Instant) {
        self.last_heard = Some(now);
    }

    /// A plaintext message was refused with `e`; returns the error that ends the handshake
    /// once refusals came in [`STALL_ROUNDS`] distinct rounds.
    pub(super) fn refused(&mut self, e: Error) -> Option<Error> {
        if !self.refused_this_round {
            self.refused_this_round = true;
            self.refused_rounds = self.refused_rounds.saturating_add(1);
        }
        let end = (self.refused_rounds >= STALL_ROUNDS).then(|| e.clone());
        self.reason = Some(e);
        end
    }

    /// A plaintext fatal alert arrived during the handshake.
    pub(super) fn alert(&mut self, description: AlertDescription) {
        self.reason = Some(Error::AlertReceived(description));
    }

    /// Our retransmission timer fired at `now`; returns the error that ends the handshake
    /// when the peer made no progress for [`STALL_ROUNDS`] rounds, a fatal alert is the
    /// reason, and nothing arrived for at least `quiet` (datagrams delayed past the alert
    /// only move the silence later).
    pub(super) fn round_ended(&mut self, now: Instant, quiet: Duration) -> Option<Error> {
        self.rounds = self.rounds.saturating_add(1);
        self.refused_this_round = false;
        let alerted = matches!(self.reason, Some(Error::AlertReceived(_)));
        let silent = self
            .last_heard
            .is_some_and(|t| now.saturating_duration_since(t) >= quiet);
        if alerted && silent && self.rounds >= STALL_ROUNDS {
            return self.reason.clone();
        }
        None
    }
}
