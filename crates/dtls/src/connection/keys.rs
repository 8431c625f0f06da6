//! The transcript, ECDHE, the master secret, Finished, and the record and SRTP keys.

#[allow(clippy::wildcard_imports)]
use super::*;

/// The randoms and the transcript (RFC 6347 §4.2.6: every message as one fragment, without
/// the first ClientHello and the HelloVerifyRequest).
#[derive(Clone)]
pub(super) struct Hs {
    pub(super) client_random: [u8; 32],
    pub(super) server_random: [u8; 32],
    pub(super) transcript: Vec<u8>,
}

impl Hs {
    pub(super) fn add(&mut self, msg_type: HandshakeType, seq: u16, body: &[u8]) {
        transcript_bytes(&mut self.transcript, msg_type, seq, body);
    }

    pub(super) fn hash(&self) -> [u8; 32] {
        Sha256::digest(&self.transcript).into()
    }

    /// What the ServerKeyExchange signature covers (RFC 8422 §5.4): client_random +
    /// server_random + ServerECDHParams.
    pub(super) fn server_params_signed(&self, params: &[u8]) -> Vec<u8> {
        [&self.client_random[..], &self.server_random, params].concat()
    }
}

/// 32 random bytes an ECDHE key is made from when it is needed: a server derives its key only
/// once a ClientHello with a valid cookie arrives, so spoofed hellos cost no scalar
/// multiplication (RFC 6347 §4.2.1).
#[derive(Clone)]
pub(super) struct EcdhSeed(Zeroizing<[u8; 32]>);

impl EcdhSeed {
    pub(super) fn new(rng: &mut impl CryptoRngCore) -> Self {
        let mut b = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(&mut b[..]);
        Self(b)
    }

    /// The ECDHE key of `provider` (RustCrypto makes it from these bytes; `ring` from the
    /// OS RNG, see `crypto::EcdhKey`).
    pub(super) fn key(&self, provider: crate::Provider) -> EcdhKey {
        EcdhKey::generate(provider, &self.0)
    }
}

/// An uncompressed P-256 point (RFC 8422 §5.4.1; compressed points are not negotiated).
pub(super) fn parse_share(public: &[u8]) -> Result<p256::PublicKey, Error> {
    if public.len() != 65 || public[0] != 4 {
        return Err(Error::IllegalParameter(
            "ECDHE share is not an uncompressed P-256 point",
        ));
    }
    p256::PublicKey::from_sec1_bytes(public)
        .map_err(|_| Error::IllegalParameter("ECDHE share not on P-256"))
}

/// RFC 7627 §4 (session hash up to and including ClientKeyExchange) or RFC 5246 §8.1.
pub(super) fn derive_master(pms: &[u8], hs: &Hs, ems: bool) -> MasterSecret {
    if ems {
        prf::extended_master_secret(pms, &hs.hash())
    } else {
        prf::master_secret(pms, &hs.client_random, &hs.server_random)
    }
}

/// RFC 5246 §7.4.9: compare verify_data in constant time.
pub(super) fn check_finished(k: &Keyed, from_client: bool, body: &[u8]) -> Result<(), Error> {
    let got = read_finished(body)?;
    let want = prf::verify_data(&k.master, from_client, &k.hs.hash());
    if bool::from(got.ct_eq(&want)) {
        Ok(())
    } else {
        Err(Error::DecryptError("Finished verify_data"))
    }
}

impl Connection {
    /// The handshake completed: `Connected` event, and the state that answers repeats of the
    /// peer flight starting at `peer_flight_start` (server) or none (client).
    pub(super) fn establish(&mut self, k: Keyed, peer_flight_start: Option<u16>) -> State {
        self.retransmit_at = None;
        self.handshake_deadline = None;
        let Keyed {
            read,
            peer_flight_start: _,
            hs,
            suite,
            profile,
            ems,
            master,
            peer_fingerprint,
        } = k;
        let est = Established {
            read,
            peer_flight_start,
            last_no_renegotiation: None,
            client_random: hs.client_random,
            server_random: hs.server_random,
            master,
        };
        match self.srtp_keys(&est, profile) {
            Ok(srtp) => self.events.push_back(Event::Connected(Box::new(Connected {
                cipher_suite: suite,
                profile,
                srtp,
                peer_fingerprint,
                extended_master_secret: ems,
            }))),
            Err(e) => {
                self.shut(Some(e));
                return State::Closed;
            }
        }
        State::Connected(Box::new(est))
    }

    /// RFC 5764 §4.2: export `2 * (key + salt)` bytes and split them into client_write_key,
    /// server_write_key, client_write_salt, server_write_salt.
    pub(super) fn srtp_keys(
        &self,
        est: &Established,
        p: ProtectionProfile,
    ) -> Result<SrtpKeys, Error> {
        let (k, s) = (p.key_len(), p.salt_len());
        let mut km = Zeroizing::new(vec![0u8; p.keying_material_len()]);
        prf::export(
            &est.master,
            &est.client_random,
            &est.server_random,
            SRTP_EXPORTER_LABEL,
            None,
            &mut km,
        );
        let bad = |_| Error::Config("SRTP key length");
        let client = MasterKey::new(p, &km[..k], &km[2 * k..2 * k + s]).map_err(bad)?;
        let server = MasterKey::new(p, &km[k..2 * k], &km[2 * k + s..]).map_err(bad)?;
        let (local, remote) = match self.role {
            Role::Client => (client, server),
            Role::Server => (server, client),
        };
        Ok(SrtpKeys {
            profile: p,
            local,
            remote,
        })
    }

    /// RFC 5246 §6.3: key block, split into both directions' record protection. Our epoch 1
    /// is installed for writing; the peer's is returned for the next state to hold.
    pub(super) fn install_keys(
        &mut self,
        suite: CipherSuite,
        master: &MasterSecret,
        hs: &Hs,
    ) -> Result<ReadEpoch, Error> {
        let (client, server) = match suite {
            CipherSuite::EcdheEcdsaAes128GcmSha256 => {
                // client_write_key[16] server_write_key[16] client_write_IV[4] server_write_IV[4]
                let kb = prf::key_block(master, &hs.client_random, &hs.server_random, 40);
                (
                    RecordCipher::gcm(&kb[0..16], &kb[32..36], self.config.provider)?,
                    RecordCipher::gcm(&kb[16..32], &kb[36..40], self.config.provider)?,
                )
            }
            CipherSuite::EcdheEcdsaAes256CbcSha => {
                // client_write_MAC_key[20] server_write_MAC_key[20] client_write_key[32]
                // server_write_key[32] (no IVs in TLS 1.1+: explicit per record).
                let kb = prf::key_block(master, &hs.client_random, &hs.server_random, 104);
                (
                    RecordCipher::cbc(&kb[40..72], &kb[0..20], &self.iv_secret)?,
                    RecordCipher::cbc(&kb[72..104], &kb[20..40], &self.iv_secret)?,
                )
            }
        };
        let (mine, theirs) = match self.role {
            Role::Client => (client, server),
            Role::Server => (server, client),
        };
        self.write[1] = WriteEpoch {
            cipher: Some(mine),
            next_seq: 0,
        };
        Ok(ReadEpoch {
            cipher: Arc::new(theirs),
            window: ReplayWindow::default(),
        })
    }
}
