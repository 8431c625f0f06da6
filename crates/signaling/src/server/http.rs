//! Plain HTTP requests on the signaling address (no WebSocket upgrade): `GET`/`HEAD`
//! answered by [`CallHandler::http_get`] with fixed security headers, one request per
//! connection.

use std::fmt::Write as _;

use tokio::io::AsyncWriteExt as _;

#[allow(clippy::wildcard_imports)]
use super::*;
use crate::handler::{HttpGet, HttpResponse};

/// Longest request target served.
const MAX_TARGET: usize = 2048;

/// Headers on every plain HTTP response: the page may load scripts, styles and images
/// only from its own origin, connect only to its own origin (the WebSocket included), and
/// never be framed, cached or sniffed.
const SECURITY_HEADERS: &str = "Content-Security-Policy: default-src 'none'; script-src 'self'; \
style-src 'self'; img-src 'self' data:; media-src 'self' blob: mediastream:; \
connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'\r\n\
X-Content-Type-Options: nosniff\r\n\
Cache-Control: no-store\r\n\
Referrer-Policy: no-referrer\r\n\
X-Frame-Options: DENY\r\n\
Cross-Origin-Opener-Policy: same-origin\r\n\
Connection: close\r\n";

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        414 => "URI Too Long",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

/// Answers one plain request whose head is `head`, then shuts the stream down.
pub(super) async fn serve<H: CallHandler>(
    io: &mut BoxIo,
    head: &[u8],
    handler: &H,
    remote: SocketAddr,
    refusal: Option<Refusal>,
) {
    let line = request_line(head);
    let mut parts = line.trim_ascii().split(|&b| b == b' ');
    let (method, target, version) = (parts.next(), parts.next(), parts.next());
    let head_only = method == Some(b"HEAD");
    let response = match (refusal, method, target, version, parts.next()) {
        (Some(Refusal::Total), ..) => HttpResponse::text(503, &b"too many connections\n"[..]),
        (Some(Refusal::PerAddress), ..) => {
            HttpResponse::text(429, &b"too many connections from this address\n"[..])
        }
        (None, Some(m), Some(t), Some(b"HTTP/1.1" | b"HTTP/1.0"), None) if t.starts_with(b"/") => {
            if m != b"GET" && m != b"HEAD" {
                HttpResponse::text(405, &b"only GET and HEAD\n"[..])
            } else if t.len() > MAX_TARGET {
                HttpResponse::text(414, &b""[..])
            } else {
                let target = String::from_utf8_lossy(t);
                let (path, query) = match target.split_once('?') {
                    Some((p, q)) => (p.to_owned(), Some(q.to_owned())),
                    None => (target.into_owned(), None),
                };
                let request = HttpGet {
                    path,
                    query,
                    remote,
                };
                debug!(remote = %remote, path = %request.path, "http get");
                handler
                    .http_get(&request)
                    .await
                    .unwrap_or_else(|| HttpResponse::text(404, &b"not found\n"[..]))
            }
        }
        _ => HttpResponse::text(400, &b"bad request\n"[..]),
    };
    write(io, &response, head_only).await;
}

/// Writes `response` (the head alone for `HEAD`) and closes.
pub(super) async fn write(io: &mut BoxIo, response: &HttpResponse, head_only: bool) {
    let mut head = String::with_capacity(1024);
    let _ = write!(
        head,
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n{SECURITY_HEADERS}",
        response.status,
        reason(response.status),
        response.content_type,
        response.body.len()
    );
    if response.status == 405 {
        head.push_str("Allow: GET, HEAD\r\n");
    }
    head.push_str("\r\n");
    let _ = io.write_all(head.as_bytes()).await;
    if !head_only {
        let _ = io.write_all(&response.body).await;
    }
    let _ = io.flush().await;
    let _ = io.shutdown().await;
}
