//! The calls server as signaling's [`CallHandler`]: requests go to the worker that owns the
//! room (the room name's hash picks it, so there is no room table to keep in step), and
//! answers come back from it. Plain HTTPS `GET`s on the signaling address get the demo page
//! (`web/`, compiled in) and, with the development issuer, tokens for it.

use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
use std::sync::Arc;
use std::time::Duration;

use callsec_signaling::{
    CallHandler, CloseReason, HttpGet, HttpResponse, Peer, Reply, Request, Sdp,
};
use tokio::sync::{mpsc, oneshot};

use crate::admin::DevIssuer;
use crate::worker::Command;

/// The demo page's files, compiled in: (path, content type, body).
const WEB: &[(&str, &str, &str)] = &[
    (
        "/",
        "text/html; charset=utf-8",
        include_str!("../web/index.html"),
    ),
    (
        "/app.js",
        "text/javascript; charset=utf-8",
        include_str!("../web/app.js"),
    ),
    (
        "/style.css",
        "text/css; charset=utf-8",
        include_str!("../web/style.css"),
    ),
];

/// The handler: one command channel per worker.
#[derive(Clone, Debug)]
pub struct Calls {
    workers: Arc<[mpsc::UnboundedSender<Command>]>,
    dev: Option<Arc<DevIssuer>>,
}

impl Calls {
    /// A handler over these workers; `dev` also serves development tokens to the demo page.
    pub fn new(workers: Vec<mpsc::UnboundedSender<Command>>, dev: Option<Arc<DevIssuer>>) -> Self {
        Self {
            workers: workers.into(),
            dev,
        }
    }

    /// `GET /dev/token?user=U&room=R`: a development token, as JSON `{token, session_id}`.
    /// Only with the development issuer, and only to loopback clients: anyone who can
    /// fetch it can join, which is what a demo on one machine wants and nothing more.
    fn dev_token(&self, request: &HttpGet) -> Option<HttpResponse> {
        let dev = self.dev.as_deref()?;
        if !request.remote.ip().is_loopback() {
            return Some(HttpResponse::text(
                403,
                &b"development tokens are for loopback clients only\n"[..],
            ));
        }
        let (status, body) = dev.answer(request.query.as_deref().unwrap_or(""));
        let content_type = if status == 200 {
            "application/json"
        } else {
            "text/plain; charset=utf-8"
        };
        Some(HttpResponse {
            status,
            content_type,
            body: body.into_bytes().into(),
        })
    }

    /// The worker a room lives on: a fixed hash of its name.
    pub fn worker_for(&self, room: &str) -> usize {
        let h = BuildHasherDefault::<DefaultHasher>::default().hash_one(room);
        (h % self.workers.len().max(1) as u64) as usize
    }

    fn send(&self, room: &str, command: Command) {
        if let Some(w) = self.workers.get(self.worker_for(room)) {
            let _ = w.send(command);
        }
    }
}

/// The value of `key` in a query string (`a=1&b=2`).
pub(crate) fn query_value<'a>(query: &'a str, key: &str) -> Option<&'a str> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key).then_some(v)
    })
}

fn rejected(e: impl std::fmt::Display) -> Reply {
    Reply::Reject(e.to_string())
}

impl CallHandler for Calls {
    async fn handle(&self, peer: &Peer, request: Request) -> Reply {
        let conn = peer.connection.0;
        match request {
            Request::Join { room } => {
                let (reply, rx) = oneshot::channel();
                self.send(
                    &room,
                    Command::Join {
                        conn,
                        room: room.clone(),
                        reply,
                    },
                );
                match rx.await {
                    Ok(Ok(())) => Reply::Accept,
                    Ok(Err(e)) => rejected(e),
                    Err(_) => rejected("server stopping"),
                }
            }
            Request::Leave { room } => {
                self.send(&room, Command::Leave { conn });
                Reply::Accept
            }
            Request::Offer(Sdp(sdp)) => {
                let Some(room) = &peer.room else {
                    return rejected("join a room first");
                };
                let (reply, rx) = oneshot::channel();
                self.send(room, Command::Offer { conn, sdp, reply });
                match rx.await {
                    Ok(Ok(answer)) => Reply::Answer(Sdp(answer)),
                    Ok(Err(e)) => rejected(e),
                    Err(_) => rejected("server stopping"),
                }
            }
            Request::Answer(Sdp(sdp)) => {
                let Some(room) = &peer.room else {
                    return rejected("join a room first");
                };
                let (reply, rx) = oneshot::channel();
                self.send(room, Command::Answer { conn, sdp, reply });
                match rx.await {
                    Ok(Ok(())) => Reply::Accept,
                    Ok(Err(e)) => rejected(e),
                    Err(_) => rejected("server stopping"),
                }
            }
            // ICE-lite: the peer's address is learned from its checks, trickled candidates are
            // not needed. Mutes and screen-share notices are signaling's room events.
            _ => Reply::Accept,
        }
    }

    async fn media_alive(&self, peer: &Peer, within: Duration) -> bool {
        let Some(room) = &peer.room else {
            return false;
        };
        let (reply, rx) = oneshot::channel();
        self.send(
            room,
            Command::MediaAlive {
                conn: peer.connection.0,
                within,
                reply,
            },
        );
        rx.await.unwrap_or(false)
    }

    async fn http_get(&self, request: &HttpGet) -> Option<HttpResponse> {
        if request.path == "/dev/token" {
            return self.dev_token(request);
        }
        let path = if request.path == "/index.html" {
            "/"
        } else {
            request.path.as_str()
        };
        WEB.iter()
            .find(|(p, ..)| *p == path)
            .map(|&(_, content_type, body)| HttpResponse::ok(content_type, body.as_bytes()))
    }

    async fn disconnected(&self, peer: &Peer, reason: CloseReason) {
        if let Some(room) = &peer.room {
            tracing::info!(
                conn = peer.connection.0,
                ?reason,
                "participant disconnected"
            );
            self.send(
                room,
                Command::Leave {
                    conn: peer.connection.0,
                },
            );
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn get(path: &str, query: Option<&str>, remote: &str) -> HttpGet {
        HttpGet {
            path: path.into(),
            query: query.map(Into::into),
            remote: remote.parse().unwrap(),
        }
    }

    #[tokio::test]
    async fn demo_page_and_development_tokens() {
        let dev = Calls::new(Vec::new(), Some(Arc::new(DevIssuer::new("callsec"))));
        let page = dev.http_get(&get("/", None, "127.0.0.1:1")).await.unwrap();
        assert_eq!(
            (page.status, page.content_type),
            (200, "text/html; charset=utf-8")
        );
        assert!(String::from_utf8_lossy(&page.body).contains("/app.js"));
        for path in ["/app.js", "/style.css", "/index.html"] {
            let r = dev.http_get(&get(path, None, "127.0.0.1:1")).await.unwrap();
            assert_eq!(r.status, 200, "{path}");
        }
        assert!(
            dev.http_get(&get("/../Cargo.toml", None, "127.0.0.1:1"))
                .await
                .is_none()
        );
        let q = Some("user=alice&room=demo");
        let token = dev
            .http_get(&get("/dev/token", q, "127.0.0.1:1"))
            .await
            .unwrap();
        assert_eq!(token.status, 200);
        let v: serde_json::Value = serde_json::from_slice(&token.body).unwrap();
        assert!(v["token"].as_str().unwrap().split('.').count() == 3, "{v}");
        assert!(v["session_id"].as_str().unwrap().starts_with("dev-"));
        // Only loopback clients, only valid ids, only with the development issuer.
        let far = dev
            .http_get(&get("/dev/token", q, "192.0.2.7:1"))
            .await
            .unwrap();
        assert_eq!(far.status, 403);
        let bad = Some("user=al%20ice&room=demo");
        let r = dev
            .http_get(&get("/dev/token", bad, "127.0.0.1:1"))
            .await
            .unwrap();
        assert_eq!(r.status, 400);
        let r = dev
            .http_get(&get("/dev/token", None, "127.0.0.1:1"))
            .await
            .unwrap();
        assert_eq!(r.status, 400);
        let production = Calls::new(Vec::new(), None);
        assert!(
            production
                .http_get(&get("/dev/token", q, "127.0.0.1:1"))
                .await
                .is_none()
        );
        assert!(
            production
                .http_get(&get("/", None, "127.0.0.1:1"))
                .await
                .is_some()
        );
    }
}
