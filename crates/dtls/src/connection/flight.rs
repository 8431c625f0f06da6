//! Our flights: building, fragmenting into records, retransmitting (RFC 6347 §4.2.4).

#[allow(clippy::wildcard_imports)]
use super::*;

#[derive(Clone)]
pub(super) enum OutMsg {
    Handshake {
        msg_type: HandshakeType,
        seq: u16,
        epoch: u16,
        body: Vec<u8>,
    },
    ChangeCipherSpec,
}

/// Whether half an initial retransmission timeout passed since `last` (or nothing was sent):
/// the pace at which unauthenticated input may make us send anything.
pub(super) fn quiet_since(last: Option<Instant>, now: Instant, config: &Config) -> bool {
    let quiet = config.initial_retransmit_timeout / 2;
    last.is_none_or(|t| now.saturating_duration_since(t) >= quiet)
}

impl Connection {
    /// Resends our flight because the peer repeated its own, at most once per half initial
    /// timeout: copies of one repeated flight (or a peer replaying an old fragment) cannot
    /// make us send our flight again and again.
    pub(super) fn answer_repeat(&mut self, now: Instant) {
        if self.flight.is_empty() || !quiet_since(self.last_repeat_answer, now, &self.config) {
            return;
        }
        self.stats.repeats_answered += 1;
        self.last_repeat_answer = Some(now);
        self.send_flight(now, false);
    }

    pub(super) fn take_send_seq(&mut self) -> u16 {
        let s = self.next_send_seq;
        self.next_send_seq = self.next_send_seq.wrapping_add(1);
        s
    }

    /// Adds a message to a flight being built, and to the transcript.
    pub(super) fn push_msg(
        &mut self,
        flight: &mut Vec<OutMsg>,
        hs: &mut Hs,
        msg_type: HandshakeType,
        epoch: u16,
        body: Vec<u8>,
    ) {
        let seq = self.take_send_seq();
        hs.add(msg_type, seq, &body);
        flight.push(OutMsg::Handshake {
            msg_type,
            seq,
            epoch,
            body,
        });
    }

    /// Sends the current flight, fragmenting messages to the MTU and packing records into
    /// datagrams (RFC 6347 §4.1.1, §4.2.3). Every send uses fresh record sequence numbers.
    pub(super) fn send_flight(&mut self, now: Instant, arm_timer: bool) {
        let flight = std::mem::take(&mut self.flight);
        let mtu = self.config.mtu;
        let mut dgram = Vec::with_capacity(mtu);
        for item in &flight {
            match item {
                OutMsg::ChangeCipherSpec => {
                    if dgram.len() + HEADER_LEN + 1 > mtu {
                        self.flush(&mut dgram);
                    }
                    let _ = self.put_record(&mut dgram, ContentType::CHANGE_CIPHER_SPEC, 0, &[1]);
                    self.write_epoch = 1;
                }
                OutMsg::Handshake {
                    msg_type,
                    seq,
                    epoch,
                    body,
                } => {
                    let overhead = HEADER_LEN
                        + HS_HEADER_LEN
                        + self.write[usize::from(*epoch)]
                            .cipher
                            .as_ref()
                            .map_or(0, RecordCipher::overhead);
                    let mut offset = 0;
                    loop {
                        let left = body.len() - offset;
                        let space = mtu.saturating_sub(dgram.len() + overhead);
                        if space < left && space < 64 && !dgram.is_empty() {
                            self.flush(&mut dgram);
                            continue;
                        }
                        let n = left.min(space.max(1));
                        let mut rec = Vec::with_capacity(HS_HEADER_LEN + n);
                        HsHeader {
                            msg_type: *msg_type,
                            length: body.len() as u32,
                            message_seq: *seq,
                            fragment_offset: offset as u32,
                            fragment_length: n as u32,
                        }
                        .write(&mut rec);
                        rec.extend_from_slice(&body[offset..offset + n]);
                        let _ = self.put_record(&mut dgram, ContentType::HANDSHAKE, *epoch, &rec);
                        offset += n;
                        if offset >= body.len() {
                            break;
                        }
                    }
                }
            }
        }
        self.flush(&mut dgram);
        self.flight = flight;
        if arm_timer {
            // A new flight (retransmissions do not arm the timer here): the peer's answer
            // starts with the next message the handshake takes.
            self.retransmit_at = Some(now + self.rto);
            self.awaiting_flight = true;
        }
    }

    pub(super) fn flush(&mut self, dgram: &mut Vec<u8>) {
        if !dgram.is_empty() {
            self.transmits.push_back(std::mem::take(dgram));
        }
    }

    /// Appends one record in `epoch` to `out`.
    pub(super) fn put_record(
        &mut self,
        out: &mut Vec<u8>,
        ct: ContentType,
        epoch: u16,
        data: &[u8],
    ) -> Result<(), Error> {
        let w = &mut self.write[usize::from(epoch)];
        if w.next_seq > MAX_SEQ {
            // RFC 6347 §4.1: sequence numbers must not wrap.
            return Err(Error::Closed);
        }
        let seq = w.next_seq;
        w.next_seq += 1;
        match &w.cipher {
            Some(c) => c.seal(out, ct, epoch, seq, data),
            None => {
                crate::record::put_header(out, ct, epoch, seq, data.len());
                out.extend_from_slice(data);
            }
        }
        Ok(())
    }

    pub(super) fn send_alert(&mut self, level: AlertLevel, desc: AlertDescription) {
        let lvl = match level {
            AlertLevel::Warning => 1,
            AlertLevel::Fatal => 2,
        };
        let mut out = Vec::new();
        if self
            .put_record(
                &mut out,
                ContentType::ALERT,
                self.write_epoch,
                &[lvl, desc.0],
            )
            .is_ok()
        {
            self.transmits.push_back(out);
        }
    }
}
