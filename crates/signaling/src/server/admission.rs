//! Accepting TCP connections: the connection limits (total, per address), the
//! handshake slots, TLS and the WebSocket upgrade.

#[allow(clippy::wildcard_imports)]
use super::*;

/// Handshakes at once of connections refused over the connection limits: an eighth of
/// `max_pending_handshakes`, at least one.
pub(super) fn refusal_slots(limits: &Limits) -> usize {
    (limits.max_pending_handshakes / 8).clamp(1, Semaphore::MAX_PERMITS)
}
/// Counts one admitted TCP connection against the limits until dropped.
pub(super) struct Admission {
    pub(super) shared: Arc<Shared>,
    pub(super) ip: IpAddr,
}
#[derive(Clone, Copy)]
pub(super) enum Refusal {
    Total,
    PerAddress,
}
/// What connections are counted under for `max_connections_per_address`: the IPv4
/// address, or the IPv6 /64 prefix (the smallest block one subscriber gets, RFC 6177 §2,
/// so a host cannot step around the limit by cycling through its interface ids). An
/// IPv4-mapped IPv6 address counts as its IPv4 address.
pub(super) fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !u128::from(u64::MAX))),
        },
    }
}
impl Admission {
    pub(super) fn try_new(shared: &Arc<Shared>, ip: IpAddr) -> Result<Self, Refusal> {
        let ip = address_key(ip);
        let mut state = lock(&shared.state);
        if state.open >= shared.limits.max_connections {
            return Err(Refusal::Total);
        }
        let n = state.per_address.entry(ip).or_insert(0);
        if *n >= shared.limits.max_connections_per_address {
            return Err(Refusal::PerAddress);
        }
        *n += 1;
        state.open += 1;
        Ok(Self {
            shared: Arc::clone(shared),
            ip,
        })
    }
}
impl Drop for Admission {
    fn drop(&mut self) {
        let mut state = lock(&self.shared.state);
        state.open = state.open.saturating_sub(1);
        if let Some(n) = state.per_address.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                state.per_address.remove(&self.ip);
            }
        }
    }
}
/// The byte stream under the WebSocket: TLS or (loopback only) plain TCP.
pub(super) trait Io: AsyncRead + AsyncWrite + Send {}
impl<T: AsyncRead + AsyncWrite + Send> Io for T {}
pub(super) type BoxIo = Pin<Box<dyn Io>>;
pub(super) type Ws = WebSocketStream<BoxIo>;
pub(super) async fn accept_loop<H: CallHandler>(
    shared: Arc<Shared>,
    handler: Arc<H>,
    listener: TcpListener,
    mut shutdown: watch::Receiver<bool>,
) {
    // Drops cost an attacker one TCP handshake each: audit them in one line per second
    // at most, with the count, so a connection flood is not also a log flood.
    let mut dropped: u64 = 0;
    let mut last_drop_line: Option<Instant> = None;
    loop {
        let (tcp, remote) = tokio::select! {
            _ = shutdown.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning; never exit.
                    warn!(error = %e, "accept failed");
                    sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let admission = Admission::try_new(&shared, remote.ip());
        // Connections over the connection limits get their HTTP refusal from a small pool
        // of their own: they must never hold the handshake slots admitted clients need
        // (else one address could starve everyone by opening stalled connections).
        let slots = if admission.is_ok() {
            &shared.pending
        } else {
            &shared.refusing
        };
        let Ok(permit) = Arc::clone(slots).try_acquire_owned() else {
            drop(tcp);
            dropped += 1;
            if last_drop_line.is_none_or(|t| t.elapsed() >= DROP_LINE_INTERVAL) {
                warn!(
                    target: AUDIT_TARGET, event = "limit", remote = %remote,
                    limit = "pending_handshakes", dropped
                );
                dropped = 0;
                last_drop_line = Some(Instant::now());
            }
            continue;
        };
        // Best effort: latency matters more than packet count for signaling.
        let _ = tcp.set_nodelay(true);
        tokio::spawn(run_connection(
            Arc::clone(&shared),
            Arc::clone(&handler),
            tcp,
            remote,
            admission,
            permit,
        ));
    }
}
pub(super) async fn run_connection<H: CallHandler>(
    shared: Arc<Shared>,
    handler: Arc<H>,
    tcp: TcpStream,
    remote: SocketAddr,
    admission: Result<Admission, Refusal>,
    permit: OwnedSemaphorePermit,
) {
    let refusal = admission.as_ref().err().copied();
    let handshake = timeout(
        shared.limits.handshake_timeout,
        handshake(&shared, &*handler, tcp, remote, refusal),
    )
    .await;
    drop(permit);
    let (ws, bearer) = match handshake {
        Ok(Ok(Some(pair))) => pair,
        Ok(Ok(None)) => return,
        Ok(Err(e)) => {
            debug!(remote = %remote, error = %e, "handshake failed");
            return;
        }
        Err(_) => {
            warn!(target: AUDIT_TARGET, event = "limit", remote = %remote, limit = "handshake_timeout");
            return;
        }
    };
    // A refused admission never completes the upgrade, so this holds.
    let Ok(admission) = admission else { return };
    session(shared, handler, ws, remote, bearer).await;
    drop(admission);
}
#[derive(Debug, thiserror::Error)]
pub(super) enum HandshakeError {
    #[error("tls: {0}")]
    Tls(std::io::Error),
    #[error("request: {0}")]
    Read(std::io::Error),
    #[error("websocket: {0}")]
    Ws(#[from] WsError),
}
/// TLS, then the request head: a WebSocket upgrade (checked, then accepted) or a plain
/// `GET` for the handler's page (answered, then `None`).
// tungstenite's callback signature fixes the error type (an HTTP response).
#[allow(clippy::result_large_err)]
pub(super) async fn handshake<H: CallHandler>(
    shared: &Shared,
    handler: &H,
    tcp: TcpStream,
    remote: SocketAddr,
    refusal: Option<Refusal>,
) -> Result<Option<(Ws, Option<String>)>, HandshakeError> {
    let mut io: BoxIo = match &shared.acceptor {
        Some(acceptor) => Box::pin(acceptor.accept(tcp).await.map_err(HandshakeError::Tls)?),
        None => Box::pin(tcp),
    };
    let Some(head) = read_head(&mut io).await.map_err(HandshakeError::Read)? else {
        let too_large = crate::handler::HttpResponse::text(431, &b"request head too large\n"[..]);
        http::write(&mut io, &too_large, false).await;
        return Ok(None);
    };
    if !wants_upgrade(&head) {
        http::serve(&mut io, &head, handler, remote, refusal).await;
        return Ok(None);
    }
    let line = request_line(&head).to_vec();
    let io: BoxIo = Box::pin(Replay::new(head, io));
    let mut bearer = None;
    let callback = |request: &HttpRequest, response: Response| {
        check_upgrade(
            shared,
            remote,
            refusal,
            &line,
            request,
            response,
            &mut bearer,
        )
    };
    let ws = tokio_tungstenite::accept_hdr_async_with_config(io, callback, Some(shared.ws_config))
        .await?;
    Ok(Some((ws, bearer)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_counted_per_ipv4_address_and_ipv6_64() {
        let key = |s: &str| address_key(s.parse().unwrap_or_else(|e| panic!("{s}: {e}")));
        assert_eq!(key("192.0.2.7"), key("192.0.2.7"));
        assert_ne!(key("192.0.2.7"), key("192.0.2.8"));
        assert_eq!(
            key("2001:db8:1:2::1"),
            key("2001:db8:1:2:ffff:ffff:ffff:ffff")
        );
        assert_eq!(
            key("2001:db8:1:2:abcd::9"),
            "2001:db8:1:2::".parse::<IpAddr>().unwrap()
        );
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_eq!(key("::ffff:192.0.2.7"), key("192.0.2.7"));
    }
}
