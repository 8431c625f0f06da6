//! Sans-IO DTLS 1.2 (RFC 6347) for WebRTC media keys.
//!
//! Exactly two cipher suites (`TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256`, preferred, and
//! `TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA`), ECDHE and ECDSA on P-256, SHA-256 signatures,
//! `use_srtp` (RFC 5764), extended master secret (RFC 7627), self-signed certificates checked
//! by fingerprint (RFC 8122, RFC 8827). No sockets, no clock, no async runtime: datagrams and
//! `Instant`s go in; datagrams, events and deadlines come out.
//!
//! ```no_run
//! # use std::{sync::Arc, time::Instant};
//! # use callsec_dtls::*;
//! # fn run(rng: &mut (impl rand_core::CryptoRngCore), peer_fp: Fingerprint, datagram: &[u8]) -> Result<(), Error> {
//! let config = Arc::new(Config::new(Certificate::generate(rng)));
//! // config.certificate.fingerprint() goes into SDP as `a=fingerprint:sha-256 AB:CD:...`.
//! let mut conn = Connection::server(config, &[peer_fp], b"198.51.100.7:5000", rng)?;
//! let now = Instant::now();
//! conn.handle_datagram(now, datagram)?;
//! while let Some(out) = conn.poll_transmit() { /* send `out` */ }
//! while let Some(event) = conn.poll_event() {
//!     if let Event::Connected(c) = event { let _ = (c.srtp.local, c.srtp.remote); }
//! }
//! let _next_wakeup = conn.poll_timeout();
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]

mod cert;
mod codec;
mod config;
mod connection;
mod cookie;
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
pub use error::{AlertDescription, AlertLevel, Error};
