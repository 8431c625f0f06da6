//! The HTTP request head, and the WebSocket upgrade (RFC 6455 §4.2): admission refusals,
//! the request target, the security headers, the bearer token.

use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, ReadBuf};
use tokio_tungstenite::tungstenite::handshake::server::{
    ErrorResponse, Request as HttpRequest, Response,
};
use tokio_tungstenite::tungstenite::http::{StatusCode, header};
use tracing::warn;

use super::{Refusal, Shared};
use crate::audit::AUDIT_TARGET;

/// Longest HTTP request head (request line and headers) accepted; longer ones get 431.
pub(super) const MAX_HEAD: usize = 8 * 1024;

/// Reads the HTTP request head, up to and including the blank line, and what arrived with
/// it. `None` when the head exceeds [`MAX_HEAD`]; an `UnexpectedEof` error when the peer
/// closed first.
pub(super) async fn read_head<T: AsyncRead + Unpin>(
    io: &mut T,
) -> std::io::Result<Option<Vec<u8>>> {
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let searched = head.len().saturating_sub(3);
        let n = io.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        head.extend_from_slice(&chunk[..n]);
        if let Some(end) = head[searched..].windows(4).position(|w| w == b"\r\n\r\n") {
            return Ok((searched + end + 4 <= MAX_HEAD).then_some(head));
        }
        if head.len() > MAX_HEAD {
            return Ok(None);
        }
    }
}

/// The byte stream with the request head already read put back in front of it, for the
/// WebSocket handshake to parse.
pub(super) struct Replay<T> {
    head: Vec<u8>,
    at: usize,
    inner: T,
}

impl<T> Replay<T> {
    pub(super) fn new(head: Vec<u8>, inner: T) -> Self {
        Self { head, at: 0, inner }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Replay<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.at < self.head.len() {
            let n = buf.remaining().min(self.head.len() - self.at);
            let at = self.at;
            buf.put_slice(&self.head[at..at + n]);
            self.at += n;
            if self.at == self.head.len() {
                self.head = Vec::new();
                self.at = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Replay<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Whether the request head asks for a WebSocket upgrade (`Upgrade: websocket`, RFC 6455
/// §4.1). Anything else is a plain HTTP request for the page handler.
pub(super) fn wants_upgrade(head: &[u8]) -> bool {
    head.split(|&b| b == b'\n').skip(1).any(|line| {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            return false;
        };
        let (name, value) = line.split_at(colon);
        name.trim_ascii().eq_ignore_ascii_case(b"upgrade")
            && value[1..]
                .split(|&b| b == b',')
                .any(|v| v.trim_ascii().eq_ignore_ascii_case(b"websocket"))
    })
}

/// The request line of a head, with its line ending.
pub(super) fn request_line(head: &[u8]) -> &[u8] {
    let end = head
        .iter()
        .position(|&b| b == b'\n')
        .map_or(head.len(), |e| e + 1);
    &head[..end]
}

pub(super) fn refuse(status: StatusCode, body: &str) -> ErrorResponse {
    let mut response = ErrorResponse::new(Some(body.to_owned()));
    *response.status_mut() = status;
    response
}

/// The HTTP upgrade request checks (RFC 6455 §4.2.1 lets the server refuse with any
/// HTTP status): admission, no credentials in the URL, Origin allow-list (RFC 6455
/// §10.2), `Authorization: Bearer` (RFC 6750 §2.1).
// tungstenite's callback signature fixes the error type (an HTTP response).
#[allow(clippy::result_large_err)]
pub(super) fn check_upgrade(
    shared: &Shared,
    remote: SocketAddr,
    refusal: Option<Refusal>,
    request_line: &[u8],
    request: &HttpRequest,
    response: Response,
    bearer: &mut Option<String>,
) -> Result<Response, ErrorResponse> {
    match refusal {
        Some(Refusal::Total) => {
            warn!(target: AUDIT_TARGET, event = "limit", remote = %remote, limit = "max_connections");
            return Err(refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "too many connections",
            ));
        }
        Some(Refusal::PerAddress) => {
            warn!(target: AUDIT_TARGET, event = "limit", remote = %remote, limit = "max_connections_per_address");
            return Err(refuse(
                StatusCode::TOO_MANY_REQUESTS,
                "too many connections from this address",
            ));
        }
        None => {}
    }
    if carries_credentials(request.uri()) || raw_target_carries_more(request_line) {
        warn!(target: AUDIT_TARGET, event = "handshake_refused", remote = %remote, reason = "token_in_url");
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "no query, fragment or credentials are accepted in the URL",
        ));
    }
    // A security header sent twice is ambiguous (which copy did a proxy check, which one
    // does the server read?): refused rather than letting the first copy win.
    let duplicated = [
        header::ORIGIN,
        header::AUTHORIZATION,
        header::HOST,
        header::SEC_WEBSOCKET_KEY,
    ]
    .into_iter()
    .find(|name| request.headers().get_all(name).iter().nth(1).is_some());
    if let Some(name) = duplicated {
        warn!(target: AUDIT_TARGET, event = "handshake_refused", remote = %remote, reason = "duplicate_header", header = %name);
        return Err(refuse(StatusCode::BAD_REQUEST, "duplicated header"));
    }
    if let Some(origin) = request.headers().get(header::ORIGIN) {
        let allowed = origin.to_str().is_ok_and(|o| {
            shared
                .allowed_origins
                .iter()
                .any(|a| a.eq_ignore_ascii_case(o))
        });
        if !allowed {
            warn!(target: AUDIT_TARGET, event = "handshake_refused", remote = %remote, reason = "origin");
            return Err(refuse(StatusCode::FORBIDDEN, "origin not allowed"));
        }
    }
    if let Some(value) = request.headers().get(header::AUTHORIZATION) {
        // RFC 6750 §2.1: credentials = "Bearer" 1*SP b64token; the scheme is
        // case-insensitive (RFC 9110 §11.1).
        let token = value.to_str().ok().and_then(|v| {
            let (scheme, rest) = v.split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| rest.trim().to_owned())
        });
        match token {
            Some(t) if !t.is_empty() => *bearer = Some(t),
            _ => {
                warn!(target: AUDIT_TARGET, event = "handshake_refused", remote = %remote, reason = "bad_authorization");
                return Err(refuse(
                    StatusCode::BAD_REQUEST,
                    "Authorization must be a Bearer token",
                ));
            }
        }
    }
    Ok(response)
}

/// Whether the request target could carry a credential: any query or fragment at all (the
/// WebSocket endpoint takes no parameters, so no spelling of a parameter name, no
/// percent-encoding and no `#` can slip one past), or a JWS compact serialization (`eyJ…`
/// with a `.`) in the path once percent-decoded. Tokens in URLs end up in access logs and
/// proxies, so such upgrades are refused even though the token would never be read.
fn carries_credentials(uri: &tokio_tungstenite::tungstenite::http::Uri) -> bool {
    let path = uri.path();
    uri.query().is_some()
        || path.contains(['#', '?'])
        || looks_like_jws(&String::from_utf8_lossy(&percent_decode(path.as_bytes())))
}

/// RFC 3986 §2.1 percent-decoding, repeated until nothing changes (so `%2565` is `e`, as
/// a proxy that decodes twice would see it); malformed escapes stay as they are.
fn percent_decode(s: &[u8]) -> Vec<u8> {
    let mut cur = s.to_vec();
    loop {
        let mut out = Vec::with_capacity(cur.len());
        let mut i = 0;
        while i < cur.len() {
            let hex = |b: Option<&u8>| b.and_then(|&b| (b as char).to_digit(16));
            match (cur[i], hex(cur.get(i + 1)), hex(cur.get(i + 2))) {
                (b'%', Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                }
                (b, _, _) => {
                    out.push(b);
                    i += 1;
                }
            }
        }
        if out.len() == cur.len() {
            return out;
        }
        cur = out;
    }
}

/// Whether the raw request line (`GET <target> HTTP/1.1`) has a target with a query or a
/// fragment, or is not a whole line: what the parsed URI may no longer show.
fn raw_target_carries_more(line: &[u8]) -> bool {
    let target = line.split(|&b| b == b' ').nth(1).unwrap_or_default();
    !line.ends_with(b"\n") || target.contains(&b'#') || target.contains(&b'?')
}

/// Whether `s` holds a base64url run starting `eyJ` (a JSON object) that contains a `.`.
fn looks_like_jws(s: &str) -> bool {
    s.match_indices("eyJ").any(|(at, _)| {
        s.get(at..).is_some_and(|rest| {
            rest.split(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
                .next()
                .is_some_and(|run| run.contains('.'))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_in_the_url_are_recognised() {
        let jws = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln";
        for (target, carries) in [
            ("/", false),
            ("/calls/r1", false),
            ("/calls/eyJfoo", false),
            // Any query at all, whatever the parameter is called or however encoded.
            ("/?room=r1&author=bob&authenticated=1", true),
            ("/?", true),
            ("/?t%6Fken=x", true),
            (&format!("/?x={}", jws.replace('.', "%2E")) as &str, true),
            // A JWS in the path, percent-encoded once or twice.
            (
                &format!("/calls/{}", jws.replace("eyJ", "%65yJ")) as &str,
                true,
            ),
            (
                &format!("/calls/{}", jws.replace(".", "%252E")) as &str,
                true,
            ),
            ("/?access_token=x", true),
            ("/?room=r1&TOKEN", true),
            ("/?Authorization=Bearer%20x", true),
            (&format!("/?t={jws}") as &str, true),
            (&format!("/calls/{jws}"), true),
        ] {
            let uri = target.parse().unwrap_or_else(|e| panic!("{target}: {e}"));
            assert_eq!(carries_credentials(&uri), carries, "{target}");
        }
    }

    #[test]
    fn a_fragment_in_the_raw_request_line_is_seen() {
        assert!(!raw_target_carries_more(b"GET /calls HTTP/1.1\r\n"));
        assert!(raw_target_carries_more(b"GET /#t=x HTTP/1.1\r\n"));
        assert!(raw_target_carries_more(b"GET /?t=x HTTP/1.1\r\n"));
        assert!(raw_target_carries_more(b"GET /calls HTTP/1.1"));
    }
}
