//! The other end: a sans-IO participant as a browser would be, built from callsec's own
//! crates (a controlling ICE agent that sends checks, a DTLS client, SRTP). It is what the
//! tests, the end-to-end suite and the SFU benchmark join rooms with.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use callsec_dtls::{Connection, Fingerprint};
use callsec_ice::{Credentials, PacketKind, binding_request, classify, is_rtcp};
use callsec_srtp::Context;
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use sdp::description::common::Attribute;
use sdp::description::media::{MediaDescription, MediaName, RangedPort};

use crate::sdp::{Kind, Remote, SdpError};
use crate::{Error, Received, Transmit, random_credentials};

/// How often checks are sent until one succeeds, then as consent refreshes.
const CHECK_INTERVAL: Duration = Duration::from_millis(50);
const CONSENT_INTERVAL: Duration = Duration::from_secs(5);

/// One m-section as the client sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientSection {
    /// The mid.
    pub mid: String,
    /// Audio or video.
    pub kind: Kind,
    /// The SSRC the client sends with, for sections it publishes.
    pub send_ssrc: Option<u32>,
    /// The SSRC announced by the server, for sections it forwards to the client.
    pub recv_ssrc: Option<u32>,
    /// Port 0.
    pub stopped: bool,
}

/// A client participant.
pub struct Client {
    dtls_config: Arc<callsec_dtls::Config>,
    local: Credentials,
    remote: Option<(Credentials, Vec<Fingerprint>, SocketAddr)>,
    sections: Vec<ClientSection>,
    version: u64,
    ice_ok: bool,
    nominate: bool,
    next_check: Option<Instant>,
    tid: u64,
    dtls: Option<Connection>,
    srtp: Option<(Context, Context)>,
    transmits: VecDeque<Transmit>,
    rng: ChaCha20Rng,
    /// Its payload types for Opus and VP8.
    pts: (u8, u8),
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("sections", &self.sections)
            .field("ice_ok", &self.ice_ok)
            .field("connected", &self.srtp.is_some())
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client with its own DTLS config (certificate, suites, profiles) and seed.
    pub fn new(dtls_config: Arc<callsec_dtls::Config>, seed: [u8; 32]) -> Self {
        let mut rng = ChaCha20Rng::from_seed(seed);
        let local = random_credentials(&mut rng);
        Self {
            dtls_config,
            local,
            remote: None,
            sections: Vec::new(),
            version: 1,
            ice_ok: false,
            nominate: true,
            next_check: None,
            tid: 0,
            dtls: None,
            srtp: None,
            transmits: VecDeque::new(),
            rng,
            pts: (crate::sdp::OPUS_PT, crate::sdp::VP8_PT),
        }
    }

    /// Whether checks carry USE-CANDIDATE (they do unless set otherwise; a test sets
    /// `false` to play a peer that never nominates).
    pub fn set_nominate(&mut self, nominate: bool) {
        self.nominate = nominate;
    }

    /// A Binding request with this client's credentials, as its timer would send one: tests
    /// deliver it from any source address (a spoofing insider holds these credentials).
    pub fn check_request(&mut self, nominate: bool) -> Option<Vec<u8>> {
        let (creds, _, _) = self.remote.as_ref()?;
        self.tid += 1;
        let mut tid = [0u8; 12];
        tid[..8].copy_from_slice(&self.tid.to_be_bytes());
        tid[8..].copy_from_slice(&self.rng.next_u32().to_be_bytes());
        let username = format!("{}:{}", creds.ufrag, self.local.ufrag);
        binding_request(&tid, &username, &creds.pwd, nominate).ok()
    }

    /// The client's sections.
    pub fn sections(&self) -> &[ClientSection] {
        &self.sections
    }

    /// Adds a section that sends `kind` with `ssrc` (like `addTrack`).
    pub fn add_track(&mut self, kind: Kind, ssrc: u32) -> String {
        let mid = format!("c{}", self.sections.len());
        self.sections.push(ClientSection {
            mid: mid.clone(),
            kind,
            send_ssrc: Some(ssrc),
            recv_ssrc: None,
            stopped: false,
        });
        mid
    }

    /// Numbers Opus and VP8 `opus` and `vp8` in its descriptions (the server's by default).
    pub fn set_payload_types(&mut self, opus: u8, vp8: u8) {
        self.pts = (opus, vp8);
    }

    /// Sends `kind` with `ssrc` on a section that receives a forwarded track and never sent,
    /// as W3C `addTrack` reuses such a transceiver (webrtc-pc §5.1); the next offer says
    /// sendrecv. Its mid, or `None` when there is no such section.
    pub fn add_track_reusing(&mut self, kind: Kind, ssrc: u32) -> Option<String> {
        let s = self.sections.iter_mut().find(|s| {
            s.kind == kind && !s.stopped && s.send_ssrc.is_none() && s.recv_ssrc.is_some()
        })?;
        s.send_ssrc = Some(ssrc);
        Some(s.mid.clone())
    }

    /// Stops sending on the section with `ssrc` (like `removeTrack`; the next offer says
    /// recvonly).
    pub fn remove_track(&mut self, ssrc: u32) {
        for s in &mut self.sections {
            if s.send_ssrc == Some(ssrc) {
                s.send_ssrc = None;
            }
        }
    }

    /// Writes an offer of every section.
    pub fn create_offer(&mut self) -> String {
        self.write()
    }

    /// Applies the server's answer to our offer.
    pub fn accept_answer(&mut self, answer: &str) -> Result<(), SdpError> {
        let remote = Remote::parse(answer)?;
        self.take_transport(&remote)?;
        for (s, m) in self.sections.iter_mut().zip(&remote.media) {
            s.stopped |= m.stopped;
        }
        Ok(())
    }

    /// Applies an offer of the server's and writes the answer (forwarded sections are
    /// received; the client's own keep their direction).
    pub fn accept_offer(&mut self, offer: &str) -> Result<String, SdpError> {
        let remote = Remote::parse(offer)?;
        if remote.media.len() < self.sections.len() {
            return Err(SdpError::Mismatch("server offer dropped m-lines"));
        }
        self.take_transport(&remote)?;
        for (i, m) in remote.media.iter().enumerate() {
            let kind = m.kind.ok_or(SdpError::Unsupported("kind"))?;
            // The server recycled a stopped m-line for a new track (RFC 8829 §5.2.2).
            let recycled = self
                .sections
                .get(i)
                .is_some_and(|s| s.stopped && s.mid != m.mid.as_str());
            if recycled {
                self.sections[i] = ClientSection {
                    mid: m.mid.as_str().to_owned(),
                    kind,
                    send_ssrc: None,
                    recv_ssrc: None,
                    stopped: false,
                };
            }
            if let Some(s) = self.sections.get_mut(i) {
                if s.mid != m.mid.as_str() {
                    return Err(SdpError::Mismatch("mid"));
                }
                s.stopped |= m.stopped;
                // What the server sends here (a forwarded or duplex section), or sent before
                // the section ended.
                s.recv_ssrc = if m.direction.sends() || s.stopped {
                    m.ssrcs.first().copied()
                } else {
                    None
                };
            } else {
                self.sections.push(ClientSection {
                    mid: m.mid.as_str().to_owned(),
                    kind,
                    send_ssrc: None,
                    recv_ssrc: m.ssrcs.first().copied(),
                    stopped: m.stopped,
                });
            }
        }
        Ok(self.write())
    }

    fn take_transport(&mut self, remote: &Remote) -> Result<(), SdpError> {
        let addr = remote
            .candidate
            .ok_or(SdpError::Invalid("no host candidate"))?;
        if self.remote.is_none() {
            self.remote = Some((remote.ice.clone(), remote.fingerprints.clone(), addr));
        }
        Ok(())
    }

    fn write(&mut self) -> String {
        self.version += 1;
        let mut session =
            crate::sdp::skeleton("-", 7, self.version, std::net::Ipv4Addr::LOCALHOST.into());
        let live: Vec<&str> = self
            .sections
            .iter()
            .filter(|s| !s.stopped)
            .map(|s| s.mid.as_str())
            .collect();
        session.attributes.push(Attribute::new(
            "group".into(),
            Some(format!("BUNDLE {}", live.join(" "))),
        ));
        let fingerprint = self.dtls_config.certificate.fingerprint().to_string();
        for s in &self.sections {
            let (pt, codec) = match s.kind {
                Kind::Audio => (self.pts.0, "opus/48000/2"),
                Kind::Video => (self.pts.1, "VP8/90000"),
            };
            let mut m = MediaDescription {
                media_name: MediaName {
                    media: match s.kind {
                        Kind::Audio => "audio".into(),
                        Kind::Video => "video".into(),
                    },
                    port: RangedPort {
                        value: if s.stopped { 0 } else { 9 },
                        range: None,
                    },
                    protos: ["UDP", "TLS", "RTP", "SAVPF"].map(String::from).to_vec(),
                    formats: vec![pt.to_string()],
                },
                ..Default::default()
            };
            let mut a = |k: &str, v: Option<String>| m.attributes.push(Attribute::new(k.into(), v));
            a("mid", Some(s.mid.clone()));
            a("ice-ufrag", Some(self.local.ufrag.clone()));
            a("ice-pwd", Some(self.local.pwd.clone()));
            a("fingerprint", Some(fingerprint.clone()));
            a(
                "setup",
                Some(
                    if self.remote.is_some() {
                        "active"
                    } else {
                        "actpass"
                    }
                    .into(),
                ),
            );
            a("rtcp-mux", None);
            a(
                match (s.send_ssrc.is_some(), s.recv_ssrc.is_some()) {
                    (true, _) => "sendrecv",
                    (false, true) => "recvonly",
                    (false, false) => "inactive",
                },
                None,
            );
            a("rtpmap", Some(format!("{pt} {codec}")));
            if s.kind == Kind::Audio {
                a(
                    "extmap",
                    Some("5 urn:ietf:params:rtp-hdrext:ssrc-audio-level".into()),
                );
            }
            if let Some(ssrc) = s.send_ssrc {
                a("ssrc", Some(format!("{ssrc} cname:client")));
            }
            session.media_descriptions.push(m);
        }
        session.marshal()
    }

    /// The server's media address, once an answer or offer named it.
    pub fn server_addr(&self) -> Option<SocketAddr> {
        self.remote.as_ref().map(|r| r.2)
    }

    /// Whether SRTP keys are in place.
    pub fn is_connected(&self) -> bool {
        self.srtp.is_some()
    }

    /// The DTLS connection, once started.
    pub fn dtls(&self) -> Option<&Connection> {
        self.dtls.as_ref()
    }

    /// Sends checks (USE-CANDIDATE from the first), and starts DTLS after the first success.
    pub fn handle_timeout(&mut self, now: Instant) {
        let Some((_, fps, addr)) = self.remote.clone() else {
            return;
        };
        if self.next_check.is_none_or(|t| t <= now) {
            if let Some(payload) = self.check_request(self.nominate) {
                self.transmits.push_back(Transmit {
                    destination: addr,
                    payload,
                });
            }
            let interval = if self.ice_ok {
                CONSENT_INTERVAL
            } else {
                CHECK_INTERVAL
            };
            self.next_check = Some(now + interval);
        }
        if self.ice_ok && self.dtls.is_none() {
            match Connection::client(self.dtls_config.clone(), &fps, now, &mut self.rng) {
                Ok(c) => self.dtls = Some(c),
                Err(_) => return,
            }
        }
        if let Some(c) = &mut self.dtls
            && c.poll_timeout().is_some_and(|t| t <= now)
        {
            let _ = c.handle_timeout(now);
        }
        self.drain_dtls();
    }

    /// When to call [`Client::handle_timeout`] next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.next_check,
            self.dtls.as_ref().and_then(Connection::poll_timeout),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Handles a datagram from the server; SRTP is unprotected in place.
    pub fn handle_datagram(&mut self, now: Instant, buf: &mut [u8]) -> Result<Received, Error> {
        match classify(buf) {
            PacketKind::Stun => {
                // A success response to one of our checks.
                let ok = callsec_ice::stun::Message::parse(buf).is_ok_and(|m| {
                    m.msg_type() == callsec_ice::stun::msg_type::BINDING_SUCCESS
                        && self
                            .remote
                            .as_ref()
                            .is_some_and(|(c, _, _)| m.verify_integrity(c.pwd.as_bytes()).is_ok())
                });
                if ok && !self.ice_ok {
                    self.ice_ok = true;
                    self.handle_timeout(now);
                }
                Ok(Received::Control)
            }
            PacketKind::Dtls => {
                let c = self.dtls.as_mut().ok_or(Error::NotConnected)?;
                let r = c.handle_datagram(now, buf).map_err(Error::Dtls);
                self.drain_dtls();
                r.map(|()| Received::Control)
            }
            PacketKind::Rtp => {
                let (rx, _) = self.srtp.as_mut().ok_or(Error::NotConnected)?;
                if is_rtcp(buf) {
                    rx.unprotect_rtcp(buf)
                        .map(Received::Rtcp)
                        .map_err(Error::Srtp)
                } else {
                    rx.unprotect_rtp(buf)
                        .map(Received::Rtp)
                        .map_err(Error::Srtp)
                }
            }
            PacketKind::Other => Err(Error::Unknown),
        }
    }

    /// Protects RTP `buf[..len]` in place.
    pub fn protect_rtp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, Error> {
        let (_, tx) = self.srtp.as_mut().ok_or(Error::NotConnected)?;
        tx.protect_rtp(buf, len).map_err(Error::Srtp)
    }

    /// Protects RTCP `buf[..len]` in place.
    pub fn protect_rtcp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, Error> {
        let (_, tx) = self.srtp.as_mut().ok_or(Error::NotConnected)?;
        tx.protect_rtcp(buf, len).map_err(Error::Srtp)
    }

    /// Sends close_notify.
    pub fn close(&mut self) {
        if let Some(c) = &mut self.dtls {
            c.close();
        }
        self.drain_dtls();
    }

    /// The next datagram to send.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    fn drain_dtls(&mut self) {
        let (Some(c), Some((_, _, addr))) = (&mut self.dtls, &self.remote) else {
            return;
        };
        while let Some(d) = c.poll_transmit() {
            self.transmits.push_back(Transmit {
                destination: *addr,
                payload: d,
            });
        }
        while let Some(e) = c.poll_event() {
            if let callsec_dtls::Event::Connected(k) = e {
                let rx = Context::new(&k.srtp.remote, callsec_srtp::Config::default());
                let tx = Context::new(&k.srtp.local, callsec_srtp::Config::default());
                if let (Ok(rx), Ok(tx)) = (rx, tx) {
                    self.srtp = Some((rx, tx));
                }
            }
        }
    }
}

/// Writes a plain RTP packet (12-byte header, `payload`) into `buf`; returns its length.
pub fn write_rtp(buf: &mut [u8], pt: u8, seq: u16, ts: u32, ssrc: u32, payload: &[u8]) -> usize {
    buf[0] = 0x80;
    buf[1] = pt & 0x7f;
    buf[2..4].copy_from_slice(&seq.to_be_bytes());
    buf[4..8].copy_from_slice(&ts.to_be_bytes());
    buf[8..12].copy_from_slice(&ssrc.to_be_bytes());
    buf[12..12 + payload.len()].copy_from_slice(payload);
    12 + payload.len()
}
