//! The admin listener (loopback by default): `GET /metrics` (Prometheus text format), and
//! with the development issuer `GET /token?user=..&room=..` (a fresh join token) and
//! `POST /revoke?session=..` (revokes a session: its sockets close and its media stops).
//!
//! A deliberately tiny HTTP/1.1 responder: one request per connection, request head capped
//! at 4 KiB, no body.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{EncodingKey, Header};
use rand_core::{OsRng, RngCore};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::metrics::Metrics;

/// Lifetime of development tokens.
pub const DEV_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

/// Issues HS256 join tokens with a random secret, for development and tests.
pub struct DevIssuer {
    secret: [u8; 32],
    audience: String,
}

impl std::fmt::Debug for DevIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevIssuer")
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct Claims<'a> {
    sub: &'a str,
    sid: String,
    rooms: [&'a str; 1],
    aud: &'a str,
    iat: u64,
    nbf: u64,
    exp: u64,
}

/// A token and the session id inside it.
#[derive(Debug, Clone)]
pub struct DevToken {
    /// The compact JWS.
    pub token: String,
    /// Its `sid`.
    pub session_id: String,
}

impl DevIssuer {
    /// A fresh random secret.
    pub fn new(audience: &str) -> Self {
        let mut secret = [0u8; 32];
        OsRng.fill_bytes(&mut secret);
        Self {
            secret,
            audience: audience.to_owned(),
        }
    }

    /// The HMAC secret (for the validator).
    pub fn secret(&self) -> &[u8] {
        &self.secret
    }

    /// Answers a token request whose query string is `query` (`user=U&room=R`): the
    /// status code and body, JSON `{token, session_id}` on success. Shared by the admin
    /// listener's `/token` and the demo page's `/dev/token`.
    pub(crate) fn answer(&self, query: &str) -> (u16, String) {
        let value = |key| crate::calls::query_value(query, key);
        let (Some(user), Some(room)) = (value("user"), value("room")) else {
            return (400, "user and room required\n".into());
        };
        if !valid_id(user) || !valid_id(room) {
            return (400, "bad user or room\n".into());
        }
        match self.issue(user, room) {
            Some(t) => (
                200,
                serde_json::json!({"token": t.token, "session_id": t.session_id}).to_string(),
            ),
            None => (500, String::new()),
        }
    }

    /// A token for `user` to join `room`, valid for [`DEV_TOKEN_LIFETIME`].
    pub fn issue(&self, user: &str, room: &str) -> Option<DevToken> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_secs();
        let sid = format!("dev-{:016x}", OsRng.next_u64());
        let claims = Claims {
            sub: user,
            sid: sid.clone(),
            rooms: [room],
            aud: &self.audience,
            iat: now,
            nbf: now.saturating_sub(5),
            exp: now + DEV_TOKEN_LIFETIME.as_secs(),
        };
        let token = jsonwebtoken::encode(
            &Header::new(jsonwebtoken::Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(&self.secret),
        )
        .ok()?;
        Some(DevToken {
            token,
            session_id: sid,
        })
    }
}

/// Serves the admin listener until the task is aborted.
pub async fn serve(
    listener: TcpListener,
    metrics: Metrics,
    signaling: callsec_signaling::Server,
    dev: Option<std::sync::Arc<DevIssuer>>,
) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            continue;
        };
        let (metrics, signaling, dev) = (metrics.clone(), signaling.clone(), dev.clone());
        tokio::spawn(async move {
            let mut head = Vec::with_capacity(512);
            let mut buf = [0u8; 1024];
            let read = tokio::time::timeout(Duration::from_secs(5), async {
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 4096 {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return false,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                true
            })
            .await;
            if !matches!(read, Ok(true)) {
                return;
            }
            let line = String::from_utf8_lossy(&head);
            let line = line.lines().next().unwrap_or("");
            let (status, content_type, body) =
                route(line, &metrics, &signaling, dev.as_deref()).await;
            let response = format!(
                "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
            let _ = stream.shutdown().await;
        });
    }
}

fn query<'a>(target: &'a str, key: &str) -> Option<&'a str> {
    let (_, q) = target.split_once('?')?;
    crate::calls::query_value(q, key)
}

fn valid_id(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

async fn route(
    line: &str,
    metrics: &Metrics,
    signaling: &callsec_signaling::Server,
    dev: Option<&DevIssuer>,
) -> (&'static str, &'static str, String) {
    let mut parts = line.split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    const TEXT: &str = "text/plain; charset=utf-8";
    match (method, path, dev) {
        ("GET", "/metrics", _) => (
            "200 OK",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            metrics.encode(),
        ),
        ("GET", "/token", Some(dev)) => {
            match dev.answer(target.split_once('?').map_or("", |(_, q)| q)) {
                (200, body) => ("200 OK", "application/json", body),
                (400, body) => ("400 Bad Request", TEXT, body),
                (_, body) => ("500 Internal Server Error", TEXT, body),
            }
        }
        ("POST", "/revoke", Some(_)) => {
            let Some(session) = query(target, "session").filter(|s| valid_id(s)) else {
                return ("400 Bad Request", TEXT, "session required\n".into());
            };
            match signaling.revoke_session(session).await {
                Ok(n) => ("200 OK", TEXT, format!("closed {n}\n")),
                Err(e) => ("500 Internal Server Error", TEXT, format!("{e}\n")),
            }
        }
        _ => ("404 Not Found", TEXT, String::new()),
    }
}
