//! A WebSocket client for tests, tools and load generation.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::pin::Pin;

use futures_util::{SinkExt as _, StreamExt as _};
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::http::{HeaderValue, header};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use crate::protocol::{
    ClientEnvelope, ClientMessage, ServerEnvelope, ServerMessage, Token, decode_server_message,
};
use crate::tls::{TlsError, client_config};

/// How the client secures the connection.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum ClientTls {
    /// `wss://`, trusting exactly these certificates as roots.
    Trust(Vec<CertificateDer<'static>>),
    /// Plain `ws://` (the server must have enabled it, loopback only).
    Plaintext,
}

/// Where the client puts its token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenPlacement {
    /// `Authorization: Bearer` header on the upgrade request.
    Header,
    /// An `auth` message right after the upgrade (what browsers do).
    FirstMessage,
}

/// Client settings. `Debug` leaves the token out.
#[derive(Clone)]
#[non_exhaustive]
pub struct ClientConfig {
    /// Server address.
    pub addr: SocketAddr,
    /// TLS server name (and `Host`).
    pub server_name: String,
    /// Request path (and query).
    pub path: String,
    /// TLS or plaintext.
    pub tls: ClientTls,
    /// The access token, if any.
    pub token: Option<String>,
    /// Where the token goes.
    pub placement: TokenPlacement,
    /// An `Origin` header, as a browser would send.
    pub origin: Option<String>,
}

impl ClientConfig {
    /// Connects to `addr` as `localhost`, path `/`, token in the header.
    #[must_use]
    pub fn new(addr: SocketAddr, tls: ClientTls, token: Option<String>) -> Self {
        Self {
            addr,
            server_name: "localhost".to_owned(),
            path: "/".to_owned(),
            tls,
            token,
            placement: TokenPlacement::Header,
            origin: None,
        }
    }
}

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("addr", &self.addr)
            .field("server_name", &self.server_name)
            .field("path", &self.path)
            .field("tls", &self.tls)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("placement", &self.placement)
            .field("origin", &self.origin)
            .finish()
    }
}

/// Client failures.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// TCP connect or transport failure.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// TLS setup failed.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The server refused the upgrade with this HTTP status.
    #[error("upgrade refused with HTTP {status}")]
    Rejected {
        /// The HTTP status code.
        status: u16,
    },
    /// The server closed the WebSocket.
    #[error("closed with {code}: {reason}")]
    Closed {
        /// The close code.
        code: u16,
        /// The close reason.
        reason: String,
    },
    /// Any other WebSocket error.
    #[error("websocket: {0}")]
    Ws(#[from] WsError),
    /// The server sent something unexpected.
    #[error("protocol: {0}")]
    Protocol(String),
}

/// What [`Client::recv`] yields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Incoming {
    /// A server message.
    Message(ServerEnvelope),
    /// The server closed the connection (code 1006 when no close frame arrived).
    Closed {
        /// The close code.
        code: u16,
        /// The close reason.
        reason: String,
    },
}

/// A connected signaling client.
pub struct Client {
    ws: WebSocketStream<Pin<Box<dyn Io>>>,
    next_id: u64,
    buffered: VecDeque<ServerEnvelope>,
    /// The request id of a first-message `auth`, which `authenticated` must echo.
    auth_request: Option<u64>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("next_id", &self.next_id)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Opens the transport and the WebSocket (with the header token when placed there),
    /// without waiting for the server's `authenticated`.
    ///
    /// # Errors
    /// Connection, TLS or upgrade failure.
    pub async fn open(config: &ClientConfig) -> Result<Self, ClientError> {
        let tcp = TcpStream::connect(config.addr).await?;
        tcp.set_nodelay(true)?;
        let (scheme, io): (&str, Pin<Box<dyn Io>>) = match &config.tls {
            ClientTls::Trust(roots) => {
                let connector = TlsConnector::from(client_config(roots)?);
                let name = ServerName::try_from(config.server_name.clone())
                    .map_err(|e| ClientError::Protocol(format!("server name: {e}")))?;
                ("wss", Box::pin(connector.connect(name, tcp).await?))
            }
            ClientTls::Plaintext => ("ws", Box::pin(tcp)),
        };
        let url = format!(
            "{scheme}://{}:{}{}",
            config.server_name,
            config.addr.port(),
            config.path
        );
        let mut request = url.into_client_request()?;
        let header_value = |v: &str| {
            HeaderValue::from_str(v).map_err(|e| ClientError::Protocol(format!("header: {e}")))
        };
        if let (Some(token), TokenPlacement::Header) = (&config.token, config.placement) {
            request.headers_mut().insert(
                header::AUTHORIZATION,
                header_value(&format!("Bearer {token}"))?,
            );
        }
        if let Some(origin) = &config.origin {
            request
                .headers_mut()
                .insert(header::ORIGIN, header_value(origin)?);
        }
        let ws_config = WebSocketConfig::default()
            .read_buffer_size(8 * 1024)
            .write_buffer_size(0)
            .max_message_size(Some(4 << 20));
        let (ws, _response) =
            match tokio_tungstenite::client_async_with_config(request, io, Some(ws_config)).await {
                Ok(pair) => pair,
                Err(WsError::Http(response)) => {
                    return Err(ClientError::Rejected {
                        status: response.status().as_u16(),
                    });
                }
                Err(e) => return Err(e.into()),
            };
        let mut client = Self {
            ws,
            next_id: 1,
            buffered: VecDeque::new(),
            auth_request: None,
        };
        if let (Some(token), TokenPlacement::FirstMessage) = (&config.token, config.placement) {
            let id = client
                .send(ClientMessage::Auth {
                    token: Token(token.clone()),
                })
                .await?;
            client.auth_request = Some(id);
        }
        Ok(client)
    }

    /// Opens and waits for `authenticated`; returns the client and that message.
    ///
    /// # Errors
    /// As [`Client::open`], or [`ClientError::Closed`] with the server's code and reason
    /// when authentication is refused.
    pub async fn connect(config: &ClientConfig) -> Result<(Self, ServerMessage), ClientError> {
        let mut client = Self::open(config).await?;
        match client.recv().await? {
            Incoming::Message(env)
                if matches!(env.message, ServerMessage::Authenticated { .. }) =>
            {
                if env.id != client.auth_request {
                    return Err(ClientError::Protocol(format!(
                        "authenticated echoes request id {:?}, not {:?}",
                        env.id, client.auth_request
                    )));
                }
                Ok((client, env.message))
            }
            Incoming::Message(env) => Err(ClientError::Protocol(format!(
                "expected authenticated, got {env:?}"
            ))),
            Incoming::Closed { code, reason } => Err(ClientError::Closed { code, reason }),
        }
    }

    /// Sends `message` with a fresh request id; returns the id.
    ///
    /// # Errors
    /// Transport failure.
    pub async fn send(&mut self, message: ClientMessage) -> Result<u64, ClientError> {
        let id = self.next_id;
        self.next_id += 1;
        self.send_envelope(&ClientEnvelope::new(Some(id), message))
            .await?;
        Ok(id)
    }

    /// Sends an envelope as a text message.
    ///
    /// # Errors
    /// Transport failure.
    pub async fn send_envelope(&mut self, env: &ClientEnvelope) -> Result<(), ClientError> {
        self.send_text(env.encode()).await
    }

    /// Sends raw text (tests of malformed input).
    ///
    /// # Errors
    /// Transport failure.
    pub async fn send_text(&mut self, text: String) -> Result<(), ClientError> {
        Ok(self.ws.send(Message::text(text)).await?)
    }

    /// Sends a raw binary message.
    ///
    /// # Errors
    /// Transport failure.
    pub async fn send_binary(&mut self, bytes: Vec<u8>) -> Result<(), ClientError> {
        Ok(self.ws.send(Message::binary(bytes)).await?)
    }

    /// Sends one text frame whose payload is not checked for UTF-8 (for testing how a
    /// server handles invalid text frames, RFC 6455 §8.1).
    ///
    /// # Errors
    /// Transport failure.
    pub async fn send_unchecked_text_frame(&mut self, payload: Vec<u8>) -> Result<(), ClientError> {
        let frame = Frame::message(payload, OpCode::Data(Data::Text), true);
        Ok(self.ws.send(Message::Frame(frame)).await?)
    }

    /// Sends a WebSocket ping.
    ///
    /// # Errors
    /// Transport failure.
    pub async fn send_ping(&mut self) -> Result<(), ClientError> {
        Ok(self.ws.send(Message::Ping(Vec::new().into())).await?)
    }

    /// Sends an unsolicited WebSocket pong (a one-way heartbeat, RFC 6455 §5.5.3).
    ///
    /// # Errors
    /// Transport failure.
    pub async fn send_pong(&mut self) -> Result<(), ClientError> {
        Ok(self.ws.send(Message::Pong(Vec::new().into())).await?)
    }

    /// Sends `message` and waits for the reply carrying its id; messages without that id
    /// are kept for [`Client::recv`].
    ///
    /// # Errors
    /// Transport failure, or [`ClientError::Closed`] if the server closes first.
    pub async fn request(&mut self, message: ClientMessage) -> Result<ServerMessage, ClientError> {
        let id = self.send(message).await?;
        loop {
            match self.next_incoming().await? {
                Incoming::Message(env) if env.id == Some(id) => return Ok(env.message),
                Incoming::Message(env) => self.buffered.push_back(env),
                Incoming::Closed { code, reason } => {
                    return Err(ClientError::Closed { code, reason });
                }
            }
        }
    }

    /// The next message from the server, or its close.
    ///
    /// # Errors
    /// Transport failure or an undecodable server message.
    pub async fn recv(&mut self) -> Result<Incoming, ClientError> {
        if let Some(env) = self.buffered.pop_front() {
            return Ok(Incoming::Message(env));
        }
        self.next_incoming().await
    }

    async fn next_incoming(&mut self) -> Result<Incoming, ClientError> {
        loop {
            let closed_abruptly = Incoming::Closed {
                code: 1006,
                reason: String::new(),
            };
            return match self.ws.next().await {
                None => Ok(closed_abruptly),
                Some(Ok(Message::Text(text))) => decode_server_message(&text)
                    .map(Incoming::Message)
                    .map_err(|e| ClientError::Protocol(e.to_string())),
                Some(Ok(Message::Close(frame))) => Ok(frame.map_or(
                    Incoming::Closed {
                        code: 1005,
                        reason: String::new(),
                    },
                    |f| Incoming::Closed {
                        code: u16::from(f.code),
                        reason: f.reason.to_string(),
                    },
                )),
                Some(Ok(Message::Binary(_))) => Err(ClientError::Protocol("binary message".into())),
                Some(Ok(_)) => continue,
                Some(Err(
                    WsError::ConnectionClosed
                    | WsError::AlreadyClosed
                    | WsError::Io(_)
                    | WsError::Protocol(_),
                )) => Ok(closed_abruptly),
                Some(Err(e)) => Err(e.into()),
            };
        }
    }

    /// Closes the connection normally (1000).
    ///
    /// # Errors
    /// Transport failure.
    pub async fn close(mut self) -> Result<(), ClientError> {
        self.ws.close(None).await?;
        while let Some(Ok(_)) = self.ws.next().await {}
        Ok(())
    }
}

/// The byte stream under the WebSocket: TLS or plain TCP.
trait Io: AsyncRead + AsyncWrite + Send {}
impl<T: AsyncRead + AsyncWrite + Send> Io for T {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_debug_leaves_the_token_out() {
        let config = ClientConfig::new(
            SocketAddr::from(([127, 0, 0, 1], 443)),
            ClientTls::Plaintext,
            Some("eyJhbGciOiJIUzI1NiJ9.e30.c2VjcmV0".into()),
        );
        let debug = format!("{config:?}");
        assert!(
            !debug.contains("eyJ") && !debug.contains("c2VjcmV0"),
            "{debug}"
        );
        assert!(debug.contains("<redacted>"), "{debug}");
    }
}
