//! What arrives: the record layer's dispatch (RFC 6347 §4.1: version, epoch, replay window,
//! record protection), alerts, and handshake records handed to the state machine in the
//! epoch and message_seq range the current state allows (`State::expects`).

#[allow(clippy::wildcard_imports)]
use super::*;

/// A peer flight taken in plaintext so far: the state before its first message, and that
/// message's message_seq.
pub(super) struct Provisional {
    state: State,
    seq: u16,
}

impl Connection {
    pub(super) fn handle_record(&mut self, now: Instant, rec: &Record<'_>) -> Result<(), Error> {
        // RFC 6347 §4.1: version FEFD, or FEFF in a first ClientHello.
        if rec.version != DTLS12 && rec.version != DTLS10 {
            self.stats.dropped_records += 1;
            return Ok(());
        }
        let plaintext = match (rec.epoch, self.state.read_epoch()) {
            (0, _) => {
                if rec.fragment.len() > MAX_PLAINTEXT {
                    self.stats.dropped_records += 1;
                    return Ok(());
                }
                rec.fragment.to_vec()
            }
            (1, Some(read)) => {
                if !read.window.check(rec.seq) {
                    self.stats.replayed_records += 1;
                    return Ok(());
                }
                // RFC 5246 §6.2.3: a plaintext over 2^14 bytes is record_overflow; in DTLS
                // the record is dropped like any other invalid one.
                match read.cipher.open(rec) {
                    Ok(p) if p.len() <= MAX_PLAINTEXT => {
                        // RFC 6347 §4.1.2.6: the window moves only for records that
                        // authenticated.
                        read.window.update(rec.seq);
                        p
                    }
                    _ => {
                        self.stats.dropped_records += 1;
                        return Ok(());
                    }
                }
            }
            // A future epoch (RFC 6347 §4.1: may be discarded) or one that never exists.
            _ => {
                self.stats.dropped_records += 1;
                return Ok(());
            }
        };
        let authenticated = rec.epoch == 1;
        let connected = self.is_connected();
        match rec.content_type {
            ContentType::HANDSHAKE => {
                self.handle_handshake_record(now, rec.epoch, rec.seq, &plaintext)
            }
            // RFC 5246 §7.1: one byte, value 1. The epoch in each record header says which
            // keys protect it, so a ChangeCipherSpec carries no information callsec needs:
            // it may be lost or reordered (RFC 6347 §4.1) and, in plaintext, forged. It is
            // only checked when authenticated and premature. Zero-length and other malformed
            // ones are dropped (RFC 6347 §4.1.2.7).
            ContentType::CHANGE_CIPHER_SPEC => {
                if plaintext != [1] {
                    self.stats.dropped_records += 1;
                } else if authenticated && !connected {
                    return Err(Error::UnexpectedMessage("ChangeCipherSpec in epoch 1"));
                } else {
                    self.stats.ignored_change_cipher_specs += 1;
                }
                Ok(())
            }
            // Plaintext alerts are never acted on at once: anyone who can spoof the peer's
            // address could end a handshake or an association with one. During the handshake
            // a fatal one is kept as the reason the handshake may end with (`Stall`).
            // Zero-length alerts are dropped as malformed records.
            ContentType::ALERT => {
                if plaintext.is_empty() {
                    self.stats.dropped_records += 1;
                    Ok(())
                } else if !authenticated {
                    self.stats.discarded_messages += 1;
                    if let [2, desc] = plaintext[..]
                        && !connected
                    {
                        self.stall.alert(AlertDescription(desc));
                    }
                    Ok(())
                } else {
                    self.handle_alert(&plaintext)
                }
            }
            ContentType::APPLICATION_DATA => {
                if connected && authenticated {
                    self.events.push_back(Event::ApplicationData(plaintext));
                } else {
                    // Plaintext or premature application data (RFC 6347 §4.1: dropped).
                    self.stats.dropped_records += 1;
                }
                Ok(())
            }
            _ => {
                self.stats.dropped_records += 1;
                Ok(())
            }
        }
    }

    fn handle_alert(&mut self, body: &[u8]) -> Result<(), Error> {
        let [level, desc] = body else {
            return Err(Error::Decode("alert"));
        };
        let description = AlertDescription(*desc);
        if description == AlertDescription::CLOSE_NOTIFY {
            // RFC 5246 §7.2.1: answer with close_notify and close.
            self.send_alert(AlertLevel::Warning, AlertDescription::CLOSE_NOTIFY);
            self.shut(None);
            return Ok(());
        }
        match level {
            1 => {
                self.events.push_back(Event::Alert {
                    level: AlertLevel::Warning,
                    description,
                });
                Ok(())
            }
            // A fatal alert: the caller closes the connection (`fail`; no alert answers one).
            _ => Err(Error::AlertReceived(description)),
        }
    }

    fn handle_handshake_record(
        &mut self,
        now: Instant,
        epoch: u16,
        record_seq: u64,
        body: &[u8],
    ) -> Result<(), Error> {
        if self.is_connected() {
            return self.handle_post_handshake_record(now, epoch, body);
        }
        // Trusted fragments are those whose sender is known: authenticated ones, and a
        // ClientHello at a server that demands no cookie from this address (the caller
        // vouched for it). Only for them is a malformed fragment a protocol error.
        let trusted = epoch == 1 || matches!(self.state, State::ServerExpectClientHello(_));
        let mut r = Reader::new(body);
        let mut resend = false;
        while r.remaining() > 0 {
            let (h, frag) = match HsHeader::read(&mut r) {
                Ok(x) => x,
                Err(e) if trusted => return Err(e),
                Err(_) => {
                    self.stats.dropped_records += 1;
                    break;
                }
            };
            match self.reassembler.insert(&h, epoch, frag, trusted)? {
                Inserted::Old => {
                    // RFC 6347 §4.2.4: a repeat of the peer's last flight means ours was lost.
                    if Some(h.message_seq) == self.state.peer_flight_start()
                        && h.fragment_offset == 0
                    {
                        resend = true;
                    }
                }
                Inserted::Dropped => self.stats.dropped_records += 1,
                Inserted::Buffered => {}
            }
            self.handle_messages(now, record_seq)?;
            if self.is_closed() {
                return Ok(());
            }
        }
        if resend {
            self.answer_repeat(now);
        }
        Ok(())
    }

    /// Hands every message the current state can take to the state machine. A message that
    /// arrived in plaintext and is refused is discarded: the state stays as it was and its
    /// message_seq stays open for the genuine message (RFC 6347 §4.1.2.7: invalid input is
    /// discarded, preserving the association). Only the ClientHello at a server (whose
    /// cookie proved the sender receives at the address, or whose address the caller
    /// vouched for) and authenticated messages are refused with an alert.
    ///
    /// Unauthenticated bytes must not displace what the genuine flight brings. Three rules
    /// keep a forgery taken in place of a genuine message from stalling the handshake:
    /// - the first message of a peer flight ties the flight to its datagram: plaintext
    ///   messages of the flight buffered from earlier datagrams, such as one planted ahead
    ///   at the predictable message_seq of a later message, are dropped
    ///   (`Reassembler::drop_earlier`);
    /// - the messages of a flight taken in plaintext stay provisional until a signature
    ///   covers them ([`State::is_provisional`]); if that signature is refused (a forged
    ///   ServerHello or ClientKeyExchange taken before the genuine one makes the genuine
    ///   signature fail), or has not come when our retransmission timer fires, the whole
    ///   flight is undone and its slots reopen for the peer's retransmission;
    /// - a HelloVerifyRequest takes no message_seq (`accepted`), so a forged one cannot
    ///   keep out the ServerHello that shares it.
    fn handle_messages(&mut self, now: Instant, record_seq: u64) -> Result<(), Error> {
        while let Some((epoch, max_seq)) = self.state.expects(self.reassembler.next_seq()) {
            let Some(msg) = self.reassembler.take(epoch, max_seq) else {
                return Ok(());
            };
            let seq = msg.seq;
            let msg_type = msg.msg_type;
            let trusted = msg.epoch == 1 || matches!(self.state, State::ServerExpectClientHello(_));
            let before = (!trusted).then(|| self.state.clone());
            let starts_flight = std::mem::take(&mut self.awaiting_flight);
            match self.handle_message(now, msg, record_seq) {
                Ok(()) => self.accepted(seq, msg_type, starts_flight, before),
                Err(e) => match before {
                    Some(state) => {
                        self.awaiting_flight = starts_flight;
                        self.refused(state, e)?;
                    }
                    None => return Err(e),
                },
            }
            if self.is_closed() {
                return Ok(());
            }
        }
        Ok(())
    }

    /// The handshake took the peer's message `seq` of type `msg_type`; `starts_flight`: it is
    /// the first of the peer's flight, `before`: the state before it, if it came in
    /// plaintext.
    fn accepted(
        &mut self,
        seq: u16,
        msg_type: HandshakeType,
        starts_flight: bool,
        before: Option<State>,
    ) {
        // A HelloVerifyRequest is stateless and outside the transcript (RFC 6347 §4.2.1): it
        // takes no message_seq, which the ServerHello answering the same ClientHello
        // shares. A forged one taken first then cannot keep the genuine ServerHello out.
        if msg_type != HandshakeType::HELLO_VERIFY_REQUEST {
            self.reassembler.accept(seq);
        }
        if starts_flight {
            self.reassembler.drop_earlier(seq);
            self.provisional = before.map(|state| Box::new(Provisional { state, seq }));
        }
        if !self.state.is_provisional() {
            self.provisional = None;
        }
        self.stall.progress(seq);
    }

    /// A plaintext message was refused with `e` in state `before`: discarded, the
    /// state restored (and a provisional flight undone if a signature over it failed);
    /// ends the handshake if the refusals show it cannot complete (`Stall`).
    fn refused(&mut self, before: State, e: Error) -> Result<(), Error> {
        self.stats.discarded_messages += 1;
        self.state = before;
        if matches!(e, Error::DecryptError(_)) {
            self.undo_provisional();
        }
        self.last_discarded = Some(e.clone());
        match self.stall.refused(e) {
            Some(end) => Err(end),
            None => Ok(()),
        }
    }

    /// Undoes the peer flight taken so far in plaintext, if its signature has not come yet:
    /// back to the state before its first message, whose message_seq is expected again (the
    /// peer's retransmission brings the flight again, RFC 6347 §4.2.4). Called when the
    /// signature over it failed, and when our retransmission timer fires before it came: a
    /// forged first message (a ServerHello planted before a HelloVerifyRequest, say) then
    /// holds the handshake for one round at most.
    pub(super) fn undo_provisional(&mut self) {
        let Some(p) = self.provisional.take() else {
            return;
        };
        // The messages taken from `p.seq` on are discarded.
        let taken = self.reassembler.next_seq().wrapping_sub(p.seq);
        self.stats.discarded_messages += u64::from(taken);
        self.state = p.state;
        self.reassembler.rewind(p.seq);
        self.awaiting_flight = true;
    }

    /// A handshake record after the handshake: repeats of the peer's last flight make the
    /// server resend its final flight; a new ClientHello or HelloRequest is a renegotiation
    /// attempt, refused with a no_renegotiation warning (RFC 5746 §4.4, RFC 5246 §7.2.2).
    /// Epoch-0 records are unauthenticated here: a malformed one is dropped, never fatal
    /// (RFC 6347 §4.1.2.7), and the answers they cause are rate-limited like repeats.
    fn handle_post_handshake_record(
        &mut self,
        now: Instant,
        epoch: u16,
        body: &[u8],
    ) -> Result<(), Error> {
        let next = self.reassembler.next_seq();
        let mut r = Reader::new(body);
        let (mut resend, mut reneg) = (false, false);
        while r.remaining() > 0 {
            let h = match HsHeader::read(&mut r) {
                Ok((h, _)) => h,
                Err(_) if epoch == 0 => {
                    self.stats.dropped_records += 1;
                    return Ok(());
                }
                Err(e) => return Err(e),
            };
            if h.message_seq < next {
                resend |=
                    Some(h.message_seq) == self.state.peer_flight_start() && h.fragment_offset == 0;
                continue;
            }
            reneg |= h.fragment_offset == 0
                && match self.role {
                    Role::Server => h.msg_type == HandshakeType::CLIENT_HELLO,
                    Role::Client => h.msg_type == HandshakeType::HELLO_REQUEST,
                };
        }
        if resend {
            self.answer_repeat(now);
        }
        if reneg {
            // Only a connection in `Connected` comes here.
            if let State::Connected(est) = &mut self.state
                && quiet_since(est.last_no_renegotiation, now, &self.config)
            {
                est.last_no_renegotiation = Some(now);
                self.send_alert(AlertLevel::Warning, AlertDescription::NO_RENEGOTIATION);
            }
            self.stats.dropped_records += 1;
        }
        Ok(())
    }
}
