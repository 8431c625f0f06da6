//! Shared helpers for the integration tests: token minting, a recording handler, server
//! and client setup on loopback.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use callsec_signaling::{
    AuthConfig, CallHandler, Client, ClientConfig, ClientError, ClientMessage, ClientTls,
    CloseReason, ConnectionId, HttpGet, HttpResponse, Peer, Reply, Request, Sdp, Server,
    ServerConfig, ServerMessage, TokenKey,
};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tokio::sync::mpsc;

pub const SECRET: &[u8] = b"test secret of at least 32 bytes!!";
pub const AUDIENCE: &str = "callsec-test";

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Claims for `user`/`session` allowed into room `r1`, valid now for five minutes.
pub fn claims(user: &str, session: &str) -> Value {
    let now = now();
    json!({
        "sub": user, "sid": session, "rooms": ["r1"], "aud": AUDIENCE,
        "exp": now + 300, "nbf": now - 5, "iat": now - 5,
    })
}

pub fn sign(claims: &Value) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(SECRET),
    )
    .unwrap()
}

pub fn token(user: &str, session: &str) -> String {
    sign(&claims(user, session))
}

/// What the recording handler saw.
#[derive(Debug)]
pub enum Seen {
    Request(Peer, Request),
    Disconnected(Peer, CloseReason),
}

/// A calls server stand-in: answers offers, refuses room "locked", sends an offer on
/// joining room "offering", records everything.
#[derive(Clone)]
pub struct Recorder {
    tx: mpsc::UnboundedSender<Seen>,
}

impl Recorder {
    pub fn new(tx: mpsc::UnboundedSender<Seen>) -> Self {
        Self { tx }
    }
}

impl CallHandler for Recorder {
    async fn handle(&self, peer: &Peer, request: Request) -> Reply {
        let reply = match &request {
            Request::Offer(sdp) if sdp.0 == "SLOW" => {
                let _ = self.tx.send(Seen::Request(peer.clone(), request.clone()));
                tokio::time::sleep(Duration::from_secs(3)).await;
                return Reply::Accept;
            }
            Request::Offer(sdp) if sdp.0 == "PANIC" => panic!("calls server bug"),
            Request::Offer(sdp) => {
                Reply::Answer(Sdp(format!("v=0 answer to {} bytes", sdp.0.len())))
            }
            Request::Join { room } if room == "locked" => Reply::Reject("room is locked".into()),
            Request::Join { room } if room == "offering" => {
                Reply::Offer(Sdp("v=0 offer on join".into()))
            }
            _ => Reply::Accept,
        };
        let _ = self.tx.send(Seen::Request(peer.clone(), request));
        reply
    }

    async fn disconnected(&self, peer: &Peer, reason: CloseReason) {
        let _ = self.tx.send(Seen::Disconnected(peer.clone(), reason));
    }

    async fn http_get(&self, request: &HttpGet) -> Option<HttpResponse> {
        (request.path == "/hello").then(|| {
            let body = format!("hello {}", request.query.as_deref().unwrap_or("-"));
            HttpResponse::ok("text/plain", body.into_bytes())
        })
    }
}

pub fn temp_store() -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let path = std::env::temp_dir().join(format!(
        "callsec-signaling-test-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_file(&path);
    path
}

pub fn config(store: PathBuf) -> ServerConfig {
    let auth = AuthConfig::new(
        TokenKey::Hs256 {
            secret: SECRET.to_vec(),
        },
        AUDIENCE,
    );
    ServerConfig::new("127.0.0.1:0".parse().unwrap(), auth, store)
}

pub struct Harness {
    pub server: Server,
    pub seen: mpsc::UnboundedReceiver<Seen>,
}

impl Harness {
    pub async fn start(config: ServerConfig) -> Self {
        let (tx, seen) = mpsc::unbounded_channel();
        let server = Server::start(config, Recorder { tx }).await.unwrap();
        Self { server, seen }
    }

    pub async fn with(f: impl FnOnce(&mut ServerConfig)) -> Self {
        let mut c = config(temp_store());
        f(&mut c);
        Self::start(c).await
    }

    pub fn client_config(&self, token: Option<String>) -> ClientConfig {
        let tls = match self.server.certificate_der() {
            Some(cert) => ClientTls::Trust(vec![cert]),
            None => ClientTls::Plaintext,
        };
        ClientConfig::new(self.server.local_addr(), tls, token)
    }

    /// Connects with `token` in the header and waits for `authenticated` or a refusal.
    pub async fn try_connect(&self, token: String) -> Result<(Client, ServerMessage), ClientError> {
        Client::connect(&self.client_config(Some(token))).await
    }

    pub async fn connect(&self, token: String) -> Client {
        self.try_connect(token).await.unwrap().0
    }

    /// Next thing the handler saw. The timeout only bounds a hang; tests assert their
    /// timing claims (such as revocation within a second) separately.
    pub async fn next_seen(&mut self) -> Seen {
        tokio::time::timeout(Duration::from_secs(5), self.seen.recv())
            .await
            .expect("handler saw nothing within 5 s")
            .unwrap()
    }

    /// Joins `client` to `room` and returns its connection id, as the handler saw it.
    pub async fn join(&mut self, client: &mut Client, room: &str) -> ConnectionId {
        let joined = client
            .request(ClientMessage::Join { room: room.into() })
            .await
            .unwrap();
        assert!(matches!(joined, ServerMessage::Joined { .. }), "{joined:?}");
        match self.next_seen().await {
            Seen::Request(peer, Request::Join { room: r }) if r == room => peer.connection,
            other => panic!("expected the join, got {other:?}"),
        }
    }

    /// Waits for a disconnect notification.
    pub async fn next_disconnect(&mut self) -> (Peer, CloseReason) {
        loop {
            if let Seen::Disconnected(p, r) = self.next_seen().await {
                return (p, r);
            }
        }
    }
}

/// Expects the connection attempt to be closed with `code`; returns the reason.
pub fn closed_code(result: Result<(Client, ServerMessage), ClientError>) -> (u16, String) {
    match result {
        Err(ClientError::Closed { code, reason }) => (code, reason),
        Err(other) => panic!("expected a close, got error {other}"),
        Ok(_) => panic!("expected a close, got authenticated"),
    }
}
