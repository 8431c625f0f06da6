//! The audit log: one JSON line per security event, through `tracing`.
//!
//! Every event is emitted at INFO (or WARN for refusals and limit hits) with target
//! [`AUDIT_TARGET`] and a field `event` naming it:
//!
//! | `event`           | fields |
//! | ----------------- | ------ |
//! | `auth_success`    | `remote`, `user`, `session`, `method` (`header` or `message`) |
//! | `auth_failure`    | `remote`, `reason` (a [`crate::CloseReason::as_str`] name) |
//! | `handshake_refused` | `remote`, `reason` (`origin`, `token_in_url`, `bad_authorization`) |
//! | `revocation`      | `kind` (`session`/`user`), `id`, `closed` (live sockets closed) |
//! | `limit`           | `remote`, `limit` (which), `user` when known; for `pending_handshakes`, `dropped`: connections dropped since the previous such line (one a second at most) |
//! | `join`, `leave`   | `remote`, `user`, `session`, `room` |
//! | `disconnect`      | `remote`, `user`, `session`, `reason`, `code` |
//!
//! Tokens and SDP are never logged: [`crate::protocol::Token`] and [`crate::protocol::Sdp`]
//! redact themselves in `Debug`, and no event records a message body.
//!
//! One hazard outside this crate: `tungstenite` logs the client's upgrade request
//! (`Authorization` header included) and every frame's payload (`auth` messages, SDP) at
//! TRACE through the `log` crate. This crate therefore turns on the `log` crate's
//! `max_level_debug` and `release_max_level_debug` features, which compile every `log`
//! TRACE record out of any binary that links it: those payloads cannot reach a log even
//! where an application bridges `log` into `tracing`.

use tracing::Subscriber;
use tracing_subscriber::fmt::MakeWriter;

/// The `tracing` target of every audit event.
pub const AUDIT_TARGET: &str = "callsec_signaling::audit";

/// A subscriber writing every event as one JSON line to `writer` (flattened fields,
/// RFC 3339 timestamps, target included). Install it with
/// `tracing::subscriber::set_global_default` or scope it with `with_default`.
pub fn json_subscriber<W>(writer: W) -> impl Subscriber + Send + Sync
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_target(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_writer(writer)
        .finish()
}

#[cfg(test)]
mod tests {
    /// tungstenite's TRACE records carry bearer tokens and SDP: they must be compiled out.
    #[test]
    fn log_trace_is_compiled_out() {
        assert!(log::STATIC_MAX_LEVEL <= log::LevelFilter::Debug);
    }
}
