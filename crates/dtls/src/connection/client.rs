//! The client side of the handshake: flights 1, 3 and 5 and what answers them.

#[allow(clippy::wildcard_imports)]
use super::*;

/// Client, before the ServerHello.
#[derive(Clone)]
pub(super) struct ClientStart {
    pub(super) hs: Hs,
    pub(super) ecdh: EcdhKey,
    pub(super) hello: ClientHello,
    pub(super) hello_seq: u16,
    pub(super) hello_verifies: u8,
    /// The cookie of each ClientHello sent, by message_seq: the ServerHello
    /// carries the message_seq of the ClientHello it answers (RFC 6347 §4.2.2), which
    /// need not be the last one if a HelloVerifyRequest was forged (at most
    /// [`MAX_HELLO_VERIFY`] + 1 entries).
    pub(super) cookies: Vec<(u16, Vec<u8>)>,
}

pub(super) fn client_server_key_exchange(
    mut c: Box<Certified>,
    msg: &Message,
) -> Result<Box<SignedShare>, Error> {
    let ske = ServerKeyExchange::read(&msg.body)?;
    if ske.named_curve != SECP256R1 {
        return Err(Error::IllegalParameter("ECDHE group not offered"));
    }
    let share = parse_share(&ske.public)?;
    let key = &c.peer_key;
    let params = ServerKeyExchange::params(ske.named_curve, &ske.public);
    verify_signature(
        key,
        ske.scheme,
        &ske.signature,
        &c.n.hs.server_params_signed(&params),
    )?;
    c.n.hs.add(msg.msg_type, msg.seq, &msg.body);
    Ok(Box::new(SignedShare {
        c: *c,
        server_share: share,
    }))
}

impl Connection {
    pub(super) fn client_hello_verify(
        &mut self,
        now: Instant,
        mut c: Box<ClientStart>,
        msg: &Message,
    ) -> Result<State, Error> {
        let hvr = HelloVerifyRequest::read(&msg.body)?;
        if hvr.server_version != DTLS12 && hvr.server_version != DTLS10 {
            return Err(Error::ProtocolVersion);
        }
        // HelloVerifyRequests take no message_seq (`Connection::accepted`), so the
        // ServerHello answering any ClientHello sent can still come; one with the cookie
        // already sent is a copy: nothing new to send (RFC 6347 §4.2.1).
        if hvr.cookie == c.hello.cookie {
            return Ok(State::ClientHelloSent(c));
        }
        if c.hello_verifies >= MAX_HELLO_VERIFY {
            return Err(Error::UnexpectedMessage("too many HelloVerifyRequests"));
        }
        c.hello_verifies += 1;
        self.stats.hello_verify_requests += 1;
        // RFC 6347 §4.2.1: resend the same ClientHello with the cookie, as a new message.
        c.hello.cookie = hvr.cookie;
        c.hello_seq = self.take_send_seq();
        c.cookies.push((c.hello_seq, c.hello.cookie.clone()));
        self.flight = vec![OutMsg::Handshake {
            msg_type: HandshakeType::CLIENT_HELLO,
            seq: c.hello_seq,
            epoch: 0,
            body: c.hello.write(),
        }];
        self.rto = self.config.initial_retransmit_timeout;
        self.send_flight(now, true);
        Ok(State::ClientHelloSent(c))
    }

    pub(super) fn client_server_hello(
        &mut self,
        c: Box<ClientStart>,
        msg: &Message,
    ) -> Result<State, Error> {
        let sh = ServerHello::read(&msg.body)?;
        // RFC 6347 §4.1: only 1.2.
        if sh.server_version != DTLS12 {
            return Err(Error::ProtocolVersion);
        }
        let suite = CipherSuite::from_id(sh.cipher_suite)
            .filter(|s| self.config.cipher_suites.contains(s))
            .ok_or(Error::IllegalParameter("cipher suite not offered"))?;
        if sh.compression_method != 0 {
            return Err(Error::IllegalParameter("compression method not offered"));
        }
        let ext = &sh.extensions;
        // RFC 5246 §7.4.1.4: only extensions the client offered.
        const OFFERED: [u16; 6] = [
            crate::handshake::ext::SUPPORTED_GROUPS,
            crate::handshake::ext::EC_POINT_FORMATS,
            crate::handshake::ext::SIGNATURE_ALGORITHMS,
            crate::handshake::ext::USE_SRTP,
            crate::handshake::ext::EXTENDED_MASTER_SECRET,
            crate::handshake::ext::RENEGOTIATION_INFO,
        ];
        if ext.types.iter().any(|t| !OFFERED.contains(t)) {
            return Err(Error::UnsupportedExtension);
        }
        // RFC 5764 §4.1.1: exactly one of the offered profiles, and no MKI we did not offer.
        let Some((profiles, mki)) = &ext.use_srtp else {
            return Err(Error::PeerIncompatible("no use_srtp"));
        };
        let profile = match profiles.as_slice() {
            [id] => ProtectionProfile::from_id(*id)
                .filter(|p| self.config.srtp_profiles.contains(p))
                .ok_or(Error::IllegalParameter("SRTP profile not offered"))?,
            _ => return Err(Error::IllegalParameter("use_srtp must select one profile")),
        };
        if !mki.is_empty() {
            return Err(Error::IllegalParameter("SRTP MKI not offered"));
        }
        check_hello_extensions(ext, &self.config)?;
        let ClientStart {
            mut hs,
            ecdh,
            mut hello,
            mut hello_seq,
            cookies,
            ..
        } = *c;
        hs.server_random = sh.random;
        // The transcript starts at the ClientHello that got this answer (RFC 6347 §4.2.6),
        // the one whose message_seq it carries (a server that does not echo it answered the
        // last); our messages continue after it.
        if let Some((seq, cookie)) = cookies.into_iter().find(|(seq, _)| *seq == msg.seq) {
            hello.cookie = cookie;
            hello_seq = seq;
            self.next_send_seq = seq.wrapping_add(1);
        }
        hs.add(HandshakeType::CLIENT_HELLO, hello_seq, &hello.write());
        hs.add(msg.msg_type, msg.seq, &msg.body);
        Ok(State::ClientExpectCertificate(Box::new(Negotiated {
            peer_flight_start: msg.seq,
            hs,
            ecdh,
            suite,
            profile,
            ems: ext.extended_master_secret,
        })))
    }

    pub(super) fn client_flight5(
        &mut self,
        now: Instant,
        shared: Box<SignedShare>,
        msg: &Message,
    ) -> Result<State, Error> {
        if !msg.body.is_empty() {
            return Err(Error::Decode("ServerHelloDone not empty"));
        }
        let SignedShare {
            c:
                Certified {
                    mut n,
                    peer_key: _,
                    peer_fingerprint,
                },
            server_share: share,
        } = *shared;
        n.hs.add(msg.msg_type, msg.seq, &msg.body);
        let mut flight = Vec::new();
        let body = write_certificate(&[self.config.certificate.der()]);
        self.push_msg(&mut flight, &mut n.hs, HandshakeType::CERTIFICATE, 0, body);
        let public = ecdh_public(&n.ecdh);
        self.push_msg(
            &mut flight,
            &mut n.hs,
            HandshakeType::CLIENT_KEY_EXCHANGE,
            0,
            write_client_key_exchange(&public),
        );
        let pms = ecdh_shared(&n.ecdh, &share)?;
        let master = derive_master(&pms, &n.hs, n.ems);
        let sig = crate::crypto::sign(
            &self.config.certificate,
            self.config.provider,
            &n.hs.transcript,
        );
        let body = write_digitally_signed(ECDSA_SECP256R1_SHA256, sig.as_bytes());
        self.push_msg(
            &mut flight,
            &mut n.hs,
            HandshakeType::CERTIFICATE_VERIFY,
            0,
            body,
        );
        let read = self.install_keys(n.suite, &master, &n.hs)?;
        flight.push(OutMsg::ChangeCipherSpec);
        let vd = prf::verify_data(&master, true, &n.hs.hash());
        self.push_msg(
            &mut flight,
            &mut n.hs,
            HandshakeType::FINISHED,
            1,
            vd.to_vec(),
        );
        self.flight = flight;
        self.rto = self.config.initial_retransmit_timeout;
        self.send_flight(now, true);
        Ok(State::ClientExpectFinished(Box::new(Keyed::after(
            n,
            read,
            master,
            peer_fingerprint,
        ))))
    }

    pub(super) fn client_finished(&mut self, k: Box<Keyed>, msg: &Message) -> Result<State, Error> {
        check_finished(&k, false, &msg.body)?;
        // The client's last flight is done with: nothing of ours answers a repeat now.
        self.flight.clear();
        Ok(self.establish(*k, None))
    }
}
