//! Sans-IO DTLS 1.2 (RFC 6347) for WebRTC media keys.
//!
//! Exactly two cipher suites (`TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256`, preferred, and
//! `TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA`), ECDHE and ECDSA on P-256, SHA-256 signatures,
//! `use_srtp` (RFC 5764), extended master secret (RFC 7627), self-signed certificates checked
//! by fingerprint (RFC 8122, RFC 8827). No sockets, no clock, no async runtime: datagrams and
//! `Instant`s go in; datagrams, events and deadlines come out.
//!
//! # Driving a server
//!
//! An endpoint that meets unknown addresses puts a [`HelloVerifier`] in front: it answers a
//! ClientHello without a valid cookie with a HelloVerifyRequest and keeps nothing (RFC 6347
//! §4.2.1). Once it says [`HelloCheck::Accept`], a [`Connection`] is made for that address
//! and every later datagram from it goes there. (Alternatively, [`Connection::server`] does
//! the cookie exchange itself, with [`Config::cookie_exchange`] on by default.)
//!
//! ```no_run
//! # use std::{sync::Arc, time::Instant};
//! # use callsec_dtls::*;
//! # fn run(rng: &mut (impl rand_core::CryptoRngCore), peer_fp: Fingerprint, addr: std::net::SocketAddr, datagram: &[u8]) -> Result<(), Error> {
//! let config = Arc::new(Config::new(Certificate::generate(rng)));
//! // `config.certificate.fingerprint()` goes into SDP: `a=fingerprint:sha-256 AB:CD:...`;
//! // `peer_fp` is what the peer's SDP said (`"sha-256 AB:..".parse()?`).
//! let verifier = HelloVerifier::new(rng); // rotate() it every minute or so
//! let mut conn = match verifier.check(addr, datagram) {
//!     HelloCheck::Reply(hvr) => { /* send `hvr` to `addr` */ return Ok(()) }
//!     HelloCheck::Drop => return Ok(()),
//!     HelloCheck::Accept => Connection::server_verified(config, &[peer_fp], addr, rng)?,
//! };
//! // For this and every later datagram from `addr`:
//! conn.handle_datagram(Instant::now(), datagram)?;
//! while let Some(out) = conn.poll_transmit() { /* send `out` to `addr` */ }
//! while let Some(event) = conn.poll_event() {
//!     match event {
//!         // The peer certificate matched `peer_fp`; `srtp.local` protects what we send.
//!         Event::Connected(c) => { let _ = (c.profile, c.srtp.local, c.srtp.remote); }
//!         Event::ApplicationData(_) | Event::Alert { .. } | Event::Closed { .. } => {}
//!         _ => {}
//!     }
//! }
//! // Call `conn.handle_timeout(now)` at this instant, unless a datagram comes first.
//! let _wake_at = conn.poll_timeout();
//! # Ok(()) }
//! ```
//!
//! A client is [`Connection::client`]; its first flight is ready at once.
//!
//! # Spoofed datagrams
//!
//! Until the Finished messages, a handshake travels in plaintext that anyone who can spoof
//! the peer's address can forge. One such datagram never ends a handshake (RFC 6347
//! §4.1.2.7: invalid records are discarded, preserving the association): a plaintext message
//! that does not parse, comes out of order or is refused is discarded, its message_seq stays
//! open for the genuine one ([`Connection::last_discarded`] says why); plaintext alerts and
//! ChangeCipherSpecs are not acted on; only authenticated records move a replay window; a
//! message that must come encrypted is only taken from its epoch. Forgeries cannot displace
//! the genuine flight: messages buffered before the first message of their flight are
//! dropped when it comes, and a flight taken in plaintext is undone if the signature that
//! covers it fails. Refusals with an alert at once are kept for input whose sender is known:
//! a server's ClientHello (its cookie proved the address, or the caller vouched for it) and
//! authenticated records.
//!
//! A genuinely refused peer (a certificate that does not match the SDP fingerprint, an
//! incompatible hello) repeats its refused flight at every retransmission: once refusals came
//! in three distinct retransmission rounds, with nothing new from the peer in between, the
//! handshake fails with the refusal as its error (for a wrong certificate
//! [`Error::BadCertificate`], about 3 s after the first refusal with the default timers) and
//! the refusal's fatal alert goes to the peer. The refused side keeps a plaintext fatal alert
//! as its reason and ends, with [`Error::AlertReceived`], once silence followed it and the
//! handshake made no progress for three rounds (about 7 s). A handshake that reaches its total
//! timeout fails with the reason seen, if any ([`Connection::failure_reason`]), else
//! [`Error::Timeout`].
#![forbid(unsafe_code)]

mod cert;
mod codec;
mod config;
mod connection;
mod cookie;
pub mod crypto;
mod error;
mod fragment;
#[doc(hidden)]
pub mod fuzzing;
mod handshake;
mod prf;
mod record;

pub use cert::{Certificate, Fingerprint};
pub use config::{CipherSuite, Config, ExtendedMasterSecret};
pub use connection::{Connected, Connection, Event, Role, SrtpKeys, Stats};
pub use cookie::{HelloCheck, HelloVerifier};
pub use crypto::Provider;
pub use error::{AlertDescription, AlertLevel, Error};
