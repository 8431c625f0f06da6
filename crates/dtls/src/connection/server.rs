//! The server side of the handshake: the stateless cookie exchange, flights 4 and 6.

#[allow(clippy::wildcard_imports)]
use super::*;

/// Server, before the ClientHello it answers, its cookie (if one was demanded) seen.
#[derive(Clone)]
pub(super) struct ServerStart {
    pub(super) server_random: [u8; 32],
    pub(super) ecdh: EcdhSeed,
}

/// Server, demanding a cookie ([`Config::cookie_exchange`], unless a
/// [`HelloVerifier`](crate::HelloVerifier) checked it already): stateless until a ClientHello
/// carries ours; it answers ClientHellos with HelloVerifyRequests and drops the rest. The
/// cookie exchange belongs to this state alone.
#[derive(Clone)]
pub(super) struct ExpectCookie {
    pub(super) start: ServerStart,
    /// The client's transport address, which the cookie is bound to.
    pub(super) client_addr: SocketAddr,
    pub(super) cookie_secret: Zeroizing<[u8; 32]>,
}

/// RFC 5246 §7.4.1.4 / RFC 5246 §7.2.2: no suite in common. insufficient_security when the
/// client offers only suites without forward secrecy or with weaker ciphers; else
/// handshake_failure.
pub(super) fn no_common_suite(offered: &[u16]) -> Error {
    // TLS_RSA_* (static RSA, no forward secrecy) and legacy 3DES/RC4/NULL suites.
    const WEAK: [u16; 12] = [
        0x0001, 0x0002, 0x0004, 0x0005, 0x000a, 0x002f, 0x0035, 0x003c, 0x003d, 0x009c, 0x009d,
        0xc008,
    ];
    let real: Vec<u16> = offered
        .iter()
        .copied()
        .filter(|s| *s != TLS_EMPTY_RENEGOTIATION_INFO_SCSV)
        .collect();
    if !real.is_empty() && real.iter().all(|s| WEAK.contains(s)) {
        Error::InsufficientSecurity("only weak cipher suites offered")
    } else {
        Error::PeerIncompatible("no common cipher suite")
    }
}

/// Checks both hellos share: extended_master_secret when required (RFC 7627 §5.3), an empty
/// renegotiation_info (RFC 5746 §3.4, §3.6: this is never a renegotiation), and uncompressed
/// points if point formats are listed at all (RFC 8422 §5.1.2).
pub(super) fn check_hello_extensions(ext: &Extensions, config: &Config) -> Result<(), Error> {
    if !ext.extended_master_secret
        && config.extended_master_secret == ExtendedMasterSecret::Required
    {
        return Err(Error::PeerIncompatible("no extended_master_secret"));
    }
    if ext
        .renegotiation_info
        .as_ref()
        .is_some_and(|ri| !ri.is_empty())
    {
        return Err(Error::PeerIncompatible("non-empty renegotiation_info"));
    }
    if ext
        .point_formats
        .as_ref()
        .is_some_and(|f| !f.contains(&POINT_UNCOMPRESSED))
    {
        return Err(Error::IllegalParameter("no uncompressed point format"));
    }
    Ok(())
}

impl Connection {
    /// RFC 6347 §4.2.1, before the server keeps any state: a ClientHello (first fragment,
    /// first record) with our cookie ends the stateless phase (`ServerExpectClientHello`
    /// next); another ClientHello gets a HelloVerifyRequest; anything else is dropped.
    /// Returns whether the datagram is to be processed.
    pub(super) fn check_cookie(&mut self, datagram: &[u8]) -> bool {
        let State::ServerExpectCookie(w) = &self.state else {
            return true;
        };
        match cookie::verify(&w.cookie_secret, None, w.client_addr, datagram) {
            Verdict::Accept { msg_seq } => {
                // The copy's secrets are wiped with the state it replaces (`Zeroizing`).
                let start = w.start.clone();
                self.reassembler.resync(msg_seq);
                self.state = State::ServerExpectClientHello(Box::new(start));
                true
            }
            Verdict::Reply(hvr) => {
                self.transmits.push_back(hvr);
                self.stats.hello_verify_requests += 1;
                false
            }
            Verdict::Drop => {
                self.stats.dropped_records += 1;
                false
            }
        }
    }

    pub(super) fn server_client_hello(
        &mut self,
        now: Instant,
        s: ServerStart,
        msg: &Message,
        record_seq: u64,
    ) -> Result<State, Error> {
        let ch = ClientHello::read(&msg.body)?;
        // DTLS versions count down: FEFF is 1.0, FEFD is 1.2 (RFC 6347 §4.1). Anything older
        // than 1.2 is refused; a newer client falls back to 1.2.
        if ch.client_version > DTLS12 {
            return Err(Error::ProtocolVersion);
        }
        // The cookie, when one is demanded, was checked on the first fragment
        // (`check_cookie`, in `ServerExpectCookie`).
        let ext = &ch.extensions;
        let suite = self
            .config
            .cipher_suites
            .iter()
            .copied()
            .find(|s| ch.cipher_suites.contains(&s.id()))
            .ok_or_else(|| no_common_suite(&ch.cipher_suites))?;
        // RFC 5246 §7.4.1.2: null compression must be offered.
        if !ch.compression_methods.contains(&0) {
            return Err(Error::IllegalParameter("null compression not offered"));
        }
        // RFC 8422 §5.1: the client must support P-256 if it says which groups it supports.
        if ext
            .supported_groups
            .as_ref()
            .is_some_and(|g| !g.contains(&SECP256R1))
        {
            return Err(Error::PeerIncompatible("secp256r1 not offered"));
        }
        if ext
            .signature_algorithms
            .as_ref()
            .is_some_and(|a| !a.contains(&ECDSA_SECP256R1_SHA256))
        {
            return Err(Error::PeerIncompatible(
                "ecdsa_secp256r1_sha256 not offered",
            ));
        }
        // RFC 5764 §4.1.1: the server picks one of the client's profiles.
        let Some((offered, _mki)) = &ext.use_srtp else {
            return Err(Error::PeerIncompatible("no use_srtp"));
        };
        let profile = self
            .config
            .srtp_profiles
            .iter()
            .copied()
            .find(|p| offered.contains(&p.id()))
            .ok_or(Error::PeerIncompatible("no common SRTP profile"))?;
        check_hello_extensions(ext, &self.config)?;
        let ems = ext.extended_master_secret;
        let secure_reneg = ext.renegotiation_info.is_some()
            || ch
                .cipher_suites
                .contains(&TLS_EMPTY_RENEGOTIATION_INFO_SCSV);

        let ServerStart {
            server_random,
            ecdh,
        } = s;
        // The cookie is valid: only now is the ECDHE key made.
        let ecdh = ecdh.key(self.config.provider);
        let mut hs = Hs {
            client_random: ch.random,
            server_random,
            transcript: Vec::new(),
        };
        hs.add(msg.msg_type, msg.seq, &msg.body);
        // Our message_seq follows the ClientHello's (RFC 6347 §4.2.2, stateless cookie), and
        // our record sequence numbers continue from its record's, so that none repeats one
        // used by a HelloVerifyRequest (RFC 6347 §4.2.1).
        self.next_send_seq = msg.seq;
        self.write[0].next_seq = self.write[0].next_seq.max(record_seq);

        let mut flight = Vec::new();
        let sh = ServerHello {
            server_version: DTLS12,
            random: server_random,
            session_id: Vec::new(),
            cipher_suite: suite.id(),
            compression_method: 0,
            extensions: Extensions {
                supported_groups: None,
                point_formats: ext.point_formats.as_ref().map(|_| vec![POINT_UNCOMPRESSED]),
                signature_algorithms: None,
                use_srtp: Some((vec![profile.id()], Vec::new())),
                extended_master_secret: ems,
                renegotiation_info: secure_reneg.then(Vec::new),
                types: Vec::new(),
            },
        };
        self.push_msg(
            &mut flight,
            &mut hs,
            HandshakeType::SERVER_HELLO,
            0,
            sh.write(),
        );
        let cert = write_certificate(&[self.config.certificate.der()]);
        self.push_msg(&mut flight, &mut hs, HandshakeType::CERTIFICATE, 0, cert);
        let public = ecdh_public(&ecdh);
        let params = ServerKeyExchange::params(SECP256R1, &public);
        let sig = crate::crypto::sign(
            &self.config.certificate,
            self.config.provider,
            &hs.server_params_signed(&params),
        );
        let ske = ServerKeyExchange {
            named_curve: SECP256R1,
            public: public.to_vec(),
            scheme: ECDSA_SECP256R1_SHA256,
            signature: sig.as_bytes().to_vec(),
        };
        self.push_msg(
            &mut flight,
            &mut hs,
            HandshakeType::SERVER_KEY_EXCHANGE,
            0,
            ske.write(),
        );
        // RFC 8827 §6.5: WebRTC authenticates both ends, so always ask for a certificate.
        let cr = CertificateRequest {
            certificate_types: vec![ECDSA_SIGN],
            signature_algorithms: vec![ECDSA_SECP256R1_SHA256],
        };
        self.push_msg(
            &mut flight,
            &mut hs,
            HandshakeType::CERTIFICATE_REQUEST,
            0,
            cr.write(),
        );
        self.push_msg(
            &mut flight,
            &mut hs,
            HandshakeType::SERVER_HELLO_DONE,
            0,
            Vec::new(),
        );
        self.flight = flight;
        self.rto = self.config.initial_retransmit_timeout;
        // The handshake timeout already runs: `handle_datagram` started it when this
        // datagram reached `ServerExpectClientHello`.
        self.send_flight(now, true);
        Ok(State::ServerExpectCertificate(Box::new(Negotiated {
            peer_flight_start: msg.seq,
            hs,
            ecdh,
            suite,
            profile,
            ems,
        })))
    }

    pub(super) fn server_client_key_exchange(
        &mut self,
        mut c: Box<Certified>,
        msg: &Message,
    ) -> Result<State, Error> {
        let public = read_client_key_exchange(&msg.body)?;
        let client_share = parse_share(&public)?;
        c.n.hs.add(msg.msg_type, msg.seq, &msg.body);
        Ok(State::ServerExpectCertificateVerify(Box::new(
            ExpectCertificateVerify {
                c: *c,
                client_share,
            },
        )))
    }

    /// RFC 5246 §7.4.8: the signature covers every handshake message so far, so it
    /// authenticates the client's Certificate and ClientKeyExchange too; only then is the
    /// ECDHE agreement made and the keys installed (the master secret's session hash runs
    /// through the ClientKeyExchange, RFC 7627 §4).
    pub(super) fn server_certificate_verify(
        &mut self,
        cv: Box<ExpectCertificateVerify>,
        msg: &Message,
    ) -> Result<State, Error> {
        let (scheme, sig) = read_digitally_signed(&msg.body)?;
        verify_signature(&cv.c.peer_key, scheme, &sig, &cv.c.n.hs.transcript)?;
        let ExpectCertificateVerify {
            c:
                Certified {
                    mut n,
                    peer_key: _,
                    peer_fingerprint,
                },
            client_share,
        } = *cv;
        let pms = ecdh_shared(&n.ecdh, &client_share)?;
        let master = derive_master(&pms, &n.hs, n.ems);
        let read = self.install_keys(n.suite, &master, &n.hs)?;
        n.hs.add(msg.msg_type, msg.seq, &msg.body);
        Ok(State::ServerExpectFinished(Box::new(Keyed::after(
            n,
            read,
            master,
            peer_fingerprint,
        ))))
    }

    pub(super) fn server_finished(
        &mut self,
        now: Instant,
        mut k: Box<Keyed>,
        msg: &Message,
    ) -> Result<State, Error> {
        check_finished(&k, true, &msg.body)?;
        // Flight 5: Certificate, ClientKeyExchange, CertificateVerify, Finished.
        let client_flight_start = msg.seq.wrapping_sub(3);
        k.hs.add(msg.msg_type, msg.seq, &msg.body);
        let vd = prf::verify_data(&k.master, false, &k.hs.hash());
        let mut flight = vec![OutMsg::ChangeCipherSpec];
        self.push_msg(
            &mut flight,
            &mut k.hs,
            HandshakeType::FINISHED,
            1,
            vd.to_vec(),
        );
        self.flight = flight;
        // The final flight has no timer: it is resent when the client repeats its flight
        // (RFC 6347 §4.2.4).
        self.send_flight(now, false);
        Ok(self.establish(*k, Some(client_flight_start)))
    }
}
