//! The calls server as signaling's [`CallHandler`]: requests go to the worker that owns the
//! room (the room name's hash picks it, so there is no room table to keep in step), and
//! answers come back from it.

use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
use std::sync::Arc;

use callsec_signaling::{CallHandler, CloseReason, Peer, Reply, Request, Sdp};
use tokio::sync::{mpsc, oneshot};

use crate::worker::Command;

/// The handler: one command channel per worker.
#[derive(Clone, Debug)]
pub struct Calls {
    workers: Arc<[mpsc::UnboundedSender<Command>]>,
}

impl Calls {
    /// A handler over these workers.
    pub fn new(workers: Vec<mpsc::UnboundedSender<Command>>) -> Self {
        Self {
            workers: workers.into(),
        }
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
