//! One worker per core: its own thread, its own UDP socket and port, its own rooms. A room
//! lives on one worker and its participants' candidates name that worker's port, so no
//! packet crosses workers (no SO_REUSEPORT hashing of 5-tuples to arbitrary sockets).
//!
//! The thread runs a current-thread tokio runtime around the sans-IO [`Sfu`]: it reads
//! batches with recvmmsg (and GRO where the kernel has it) through `quinn-udp`, takes
//! commands from signaling over a channel, and sleeps until the core's next deadline.

use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use callsec_ice::{PacketKind, classify, is_rtcp};
use quinn_udp::{RecvMeta, Transmit, UdpSocketState};
use tokio::io::Interest;
use tokio::sync::{mpsc, oneshot};

use crate::metrics::WorkerMetrics;
use crate::sfu::{ConnId, Output, Sfu, SfuConfig, SfuError, Signal};

/// Largest receive buffer per batch entry (a GRO super-datagram).
const RECV_BUF: usize = 64 * 1024;

/// What signaling asks of a worker.
#[derive(Debug)]
pub enum Command {
    /// Join a room.
    Join {
        /// The participant.
        conn: ConnId,
        /// The room.
        room: String,
        /// The result.
        reply: oneshot::Sender<Result<(), SfuError>>,
    },
    /// The participant's offer.
    Offer {
        /// The participant.
        conn: ConnId,
        /// The SDP.
        sdp: String,
        /// The answer.
        reply: oneshot::Sender<Result<String, SfuError>>,
    },
    /// The participant's answer.
    Answer {
        /// The participant.
        conn: ConnId,
        /// The SDP.
        sdp: String,
        /// The result.
        reply: oneshot::Sender<Result<(), SfuError>>,
    },
    /// Whether the participant's media is alive ([`Sfu::media_alive`]).
    MediaAlive {
        /// The participant.
        conn: ConnId,
        /// How recent its last authenticated media must be.
        within: std::time::Duration,
        /// The answer.
        reply: oneshot::Sender<bool>,
    },
    /// The participant left or disconnected.
    Leave {
        /// The participant.
        conn: ConnId,
    },
    /// Close everyone (close_notify) and stop.
    Shutdown,
}

/// A running worker.
#[derive(Debug)]
pub struct Worker {
    /// Where its socket listens (the address in its participants' candidates unless a public
    /// address is configured).
    pub local_addr: SocketAddr,
    commands: mpsc::UnboundedSender<Command>,
    thread: Option<JoinHandle<()>>,
}

impl Worker {
    /// Binds `bind` and starts the thread. `advertise` replaces the socket's IP in
    /// candidates (a public address in front of NAT).
    pub fn spawn(
        index: u32,
        config: Arc<SfuConfig>,
        bind: SocketAddr,
        advertise: Option<std::net::IpAddr>,
        metrics: WorkerMetrics,
        signals: mpsc::UnboundedSender<Signal>,
        seed: [u8; 32],
    ) -> io::Result<Self> {
        let socket = std::net::UdpSocket::bind(bind)?;
        socket.set_nonblocking(true)?;
        let local_addr = socket.local_addr()?;
        let candidate = SocketAddr::new(advertise.unwrap_or(local_addr.ip()), local_addr.port());
        let (tx, rx) = mpsc::unbounded_channel();
        let thread = std::thread::Builder::new()
            .name(format!("callsec-worker-{index}"))
            .spawn(move || {
                let sfu = Sfu::new(config, candidate, metrics.clone(), seed);
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build();
                match rt {
                    Ok(rt) => rt.block_on(run(socket, sfu, rx, signals, metrics)),
                    Err(e) => tracing::error!(error = %e, "worker runtime"),
                }
            })?;
        Ok(Self {
            local_addr,
            commands: tx,
            thread: Some(thread),
        })
    }

    /// A handle for sending commands.
    pub fn sender(&self) -> mpsc::UnboundedSender<Command> {
        self.commands.clone()
    }

    /// Sends a command (dropped if the worker stopped).
    pub fn send(&self, command: Command) {
        let _ = self.commands.send(command);
    }

    /// Asks the worker to close everyone and waits for its thread.
    pub fn shutdown(&mut self) {
        self.send(Command::Shutdown);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.shutdown();
    }
}

struct SocketOutput<'a> {
    socket: &'a tokio::net::UdpSocket,
    state: &'a UdpSocketState,
    metrics: &'a WorkerMetrics,
}

impl Output for SocketOutput<'_> {
    fn send(&mut self, to: SocketAddr, data: &[u8]) {
        let t = Transmit {
            destination: to,
            ecn: None,
            contents: data,
            segment_size: None,
            src_ip: None,
        };
        self.metrics.count_out(data);
        // A full send buffer drops the datagram, as the network would.
        if self.state.try_send(self.socket.into(), &t).is_err() {
            self.metrics.send_errors.inc();
        }
    }
}

async fn run(
    socket: std::net::UdpSocket,
    mut sfu: Sfu,
    mut commands: mpsc::UnboundedReceiver<Command>,
    signals: mpsc::UnboundedSender<Signal>,
    metrics: WorkerMetrics,
) {
    let socket = match tokio::net::UdpSocket::from_std(socket) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "worker socket");
            return;
        }
    };
    let state = match UdpSocketState::new((&socket).into()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "worker socket state");
            return;
        }
    };
    let _ = state.set_recv_buffer_size((&socket).into(), 4 << 20);
    let _ = state.set_send_buffer_size((&socket).into(), 4 << 20);
    let batch = quinn_udp::BATCH_SIZE;
    let mut storage = vec![0u8; batch * RECV_BUF];
    let mut metas = [RecvMeta::default(); quinn_udp::BATCH_SIZE];
    loop {
        let deadline = sfu
            .poll_timeout()
            .unwrap_or_else(|| Instant::now() + std::time::Duration::from_secs(1));
        tokio::select! {
            ready = socket.readable() => {
                if ready.is_err() {
                    continue;
                }
                loop {
                    let mut chunks = storage.chunks_mut(RECV_BUF);
                    let mut slices: [IoSliceMut<'_>; quinn_udp::BATCH_SIZE] =
                        std::array::from_fn(|_| IoSliceMut::new(chunks.next().unwrap_or(&mut [])));
                    let got = socket.try_io(Interest::READABLE, || {
                        state.recv((&socket).into(), &mut slices, &mut metas)
                    });
                    let n = match got {
                        Ok(n) => n,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(_) => break,
                    };
                    let now = Instant::now();
                    let mut out = SocketOutput { socket: &socket, state: &state, metrics: &metrics };
                    for (meta, buf) in metas.iter().zip(storage.chunks_mut(RECV_BUF)).take(n) {
                        let stride = meta.stride.max(1);
                        for datagram in buf[..meta.len].chunks_mut(stride) {
                            let media = classify(datagram) == PacketKind::Rtp && !is_rtcp(datagram);
                            sfu.handle_datagram(now, meta.addr, datagram, &mut out);
                            if media {
                                // Arrival (the batch's read) to the last copy handed to the socket.
                                metrics.sample_latency(now);
                            }
                        }
                    }
                }
            }
            command = commands.recv() => {
                let now = Instant::now();
                let mut out = SocketOutput { socket: &socket, state: &state, metrics: &metrics };
                match command {
                    Some(Command::Join { conn, room, reply }) => {
                        let _ = reply.send(sfu.join(now, conn, &room));
                    }
                    Some(Command::Offer { conn, sdp, reply }) => {
                        let _ = reply.send(sfu.offer(now, conn, &sdp));
                    }
                    Some(Command::Answer { conn, sdp, reply }) => {
                        let _ = reply.send(sfu.answer(now, conn, &sdp));
                    }
                    Some(Command::MediaAlive { conn, within, reply }) => {
                        let _ = reply.send(sfu.media_alive(now, conn, within));
                    }
                    Some(Command::Leave { conn }) => sfu.leave(now, conn, &mut out),
                    Some(Command::Shutdown) | None => {
                        sfu.shutdown(now, &mut out);
                        return;
                    }
                }
            }
            () = tokio::time::sleep_until(deadline.into()) => {
                let mut out = SocketOutput { socket: &socket, state: &state, metrics: &metrics };
                sfu.handle_timeout(Instant::now(), &mut out);
            }
        }
        while let Some(s) = sfu.poll_signal() {
            let _ = signals.send(s);
        }
    }
}
