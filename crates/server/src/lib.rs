//! callsec's calls SFU: `callsec serve`.
//!
//! - Signaling over TLS WebSockets with token authentication ([`callsec_signaling`]);
//!   the server plugs in as its [`CallHandler`](callsec_signaling::CallHandler) ([`calls`]).
//! - Media on one UDP socket per worker ([`worker`]); each participant is a sans-IO
//!   [`callsec_rtc::Rtc`] (ICE-lite, DTLS 1.2 server, SRTP) inside the worker's [`sfu::Sfu`].
//! - Prometheus metrics and development tools on a loopback admin listener ([`admin`]).
//!
//! Room membership has one owner: the signaling server decides who is in which room (join
//! admission, room size, leave, revocation) and tells the calls handler; a room's media
//! state lives only on the worker the room's name hashes to, and exists exactly while
//! signaling has the participant in the room.
#![forbid(unsafe_code)]

pub mod admin;
pub mod calls;
pub mod config;
pub mod metrics;
pub mod names;
pub mod sfu;
pub mod sim;
pub mod worker;

use std::net::SocketAddr;
use std::sync::Arc;

use callsec_dtls::{Certificate, Fingerprint};
use callsec_signaling::{ServerConfig, Transport};
use rand_core::{OsRng, RngCore};
use tokio::sync::mpsc;

pub use config::Settings;

use crate::admin::DevIssuer;
use crate::calls::Calls;
use crate::metrics::Metrics;
use crate::sfu::{SfuConfig, Signal};
use crate::worker::Worker;

/// Why the server did not start.
#[derive(Debug)]
pub enum StartError {
    /// A media socket could not be bound.
    Media(std::io::Error),
    /// Signaling did not start.
    Signaling(callsec_signaling::StartError),
    /// The admin listener could not be bound.
    Admin(std::io::Error),
    /// A setting is invalid.
    Config(String),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Media(e) => write!(f, "media socket: {e}"),
            Self::Signaling(e) => write!(f, "signaling: {e}"),
            Self::Admin(e) => write!(f, "admin listener: {e}"),
            Self::Config(e) => write!(f, "config: {e}"),
        }
    }
}

impl std::error::Error for StartError {}

/// A running calls server.
pub struct Running {
    /// Signaling (wss://) address.
    pub signaling_addr: SocketAddr,
    /// Admin (metrics, dev tokens, revocation) address.
    pub admin_addr: SocketAddr,
    /// Each worker's media socket.
    pub media_addrs: Vec<SocketAddr>,
    /// The DTLS certificate's fingerprint (what browsers verify).
    pub dtls_fingerprint: Fingerprint,
    /// The signaling server (revocation, shutdown).
    pub signaling: callsec_signaling::Server,
    /// The development token issuer, when enabled.
    pub dev: Option<Arc<DevIssuer>>,
    /// Metrics.
    pub metrics: Metrics,
    workers: Vec<Worker>,
    admin_task: tokio::task::JoinHandle<()>,
    pump_task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running")
            .field("signaling_addr", &self.signaling_addr)
            .field("admin_addr", &self.admin_addr)
            .field("media_addrs", &self.media_addrs)
            .finish_non_exhaustive()
    }
}

impl Running {
    /// The signaling TLS certificate (self-signed by default) for clients to trust.
    pub fn signaling_certificate(&self) -> Option<Vec<u8>> {
        self.signaling.certificate_der().map(|c| c.to_vec())
    }

    /// Sends close_notify to every participant, closes signaling and stops the workers.
    pub async fn shutdown(mut self) {
        for w in &self.workers {
            w.send(worker::Command::Shutdown);
        }
        let workers = std::mem::take(&mut self.workers);
        let _ = tokio::task::spawn_blocking(move || {
            for mut w in workers {
                w.shutdown();
            }
        })
        .await;
        self.signaling.shutdown().await;
        self.admin_task.abort();
        self.pump_task.abort();
    }
}

/// Starts everything: workers, signaling, the signal pump and the admin listener.
pub async fn start(settings: Settings) -> Result<Running, StartError> {
    let mut dtls = callsec_dtls::Config::new(Certificate::generate(&mut OsRng));
    dtls.cipher_suites = settings.dtls_suites.clone();
    dtls.srtp_profiles = settings.srtp_profiles.clone();
    // The ICE check (MESSAGE-INTEGRITY with the participant's password from the 5-tuple)
    // already proves the address; a second cookie round trip adds nothing.
    dtls.cookie_exchange = false;
    let dtls_fingerprint = dtls.certificate.fingerprint();
    let mut rtc = callsec_rtc::Config::new(Arc::new(dtls));
    rtc.connect_timeout = settings.connect_timeout;
    rtc.ice = settings.ice_limits;
    let sfu_config = Arc::new(SfuConfig {
        rtc: Arc::new(rtc),
        max_room_size: settings.max_room_size,
        max_participants: settings.max_participants_per_worker,
        max_bitrate: settings.max_bitrate,
    });
    let metrics = Metrics::new();
    let (signal_tx, mut signal_rx) = mpsc::unbounded_channel::<Signal>();
    let mut workers = Vec::with_capacity(settings.workers);
    for i in 0..settings.workers {
        let port = if settings.media_port == 0 {
            0
        } else {
            settings.media_port.saturating_add(i as u16)
        };
        let mut seed = [0u8; 32];
        OsRng.fill_bytes(&mut seed);
        let w = Worker::spawn(
            i as u32,
            sfu_config.clone(),
            SocketAddr::new(settings.media_ip, port),
            settings.public_ip,
            metrics.worker(i as u32),
            signal_tx.clone(),
            seed,
        )
        .map_err(StartError::Media)?;
        workers.push(w);
    }
    let media_addrs: Vec<SocketAddr> = workers.iter().map(|w| w.local_addr).collect();

    let dev = settings.dev_issuer().map(Arc::new);
    let mut config = ServerConfig::new(
        settings.signaling,
        settings.auth(dev.as_deref()),
        settings.revocations.clone(),
    );
    config.transport = match (&settings.tls_cert, &settings.tls_key) {
        (Some(cert_chain), Some(private_key)) => Transport::TlsPemFiles {
            cert_chain: cert_chain.clone(),
            private_key: private_key.clone(),
        },
        _ => Transport::TlsSelfSigned {
            names: vec!["localhost".into(), settings.signaling.ip().to_string()],
        },
    };
    config.allowed_origins = settings.allowed_origins.clone();
    config.limits.max_participants_per_room = settings.max_room_size;
    config.limits.idle_timeout = settings.idle_timeout;
    config.limits.ping_interval = settings.ping_interval;
    let calls = Calls::new(workers.iter().map(Worker::sender).collect(), dev.clone());
    let signaling = callsec_signaling::Server::start(config, calls)
        .await
        .map_err(StartError::Signaling)?;

    let pump = signaling.clone();
    let pump_task = tokio::spawn(async move {
        while let Some(signal) = signal_rx.recv().await {
            match signal {
                Signal::Offer { conn, sdp } => {
                    let msg = callsec_signaling::ServerMessage::Offer {
                        sdp: callsec_signaling::Sdp(sdp),
                    };
                    if let Err(e) = pump.send(callsec_signaling::ConnectionId(conn), msg) {
                        tracing::debug!(conn, error = ?e, "offer not delivered");
                    }
                }
                Signal::MediaClosed { conn, reason } => {
                    tracing::info!(conn, reason, "participant media closed");
                }
            }
        }
    });

    let admin_listener = tokio::net::TcpListener::bind(settings.admin)
        .await
        .map_err(StartError::Admin)?;
    let admin_addr = admin_listener.local_addr().map_err(StartError::Admin)?;
    let admin_task = tokio::spawn(admin::serve(
        admin_listener,
        metrics.clone(),
        signaling.clone(),
        dev.clone(),
    ));

    Ok(Running {
        signaling_addr: signaling.local_addr(),
        admin_addr,
        media_addrs,
        dtls_fingerprint,
        signaling,
        dev,
        metrics,
        workers,
        admin_task,
        pump_task,
    })
}
