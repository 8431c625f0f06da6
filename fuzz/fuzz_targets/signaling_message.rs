//! Fuzzes what a signaling peer controls before and after authentication: the message
//! decoder (arbitrary bytes must never panic, and any message that decodes must survive
//! an encode/decode round trip unchanged), the access-token validator (must refuse,
//! never panic, on arbitrary text), and the client's server-message decoder.
#![no_main]

use std::sync::LazyLock;

use callsec_signaling::{
    AuthConfig, DecodeLimits, TokenKey, TokenValidator, decode_client_message,
};
use libfuzzer_sys::fuzz_target;

/// An HS256 validator; a fuzzer cannot forge its MAC, so every input is refused, but
/// only after the header (base64url, JSON, `alg`, `crit`) has been parsed.
static VALIDATOR: LazyLock<TokenValidator> = LazyLock::new(|| {
    let auth = AuthConfig::new(TokenKey::Hs256 { secret: vec![7; 32] }, "fuzz");
    TokenValidator::new(&auth).unwrap_or_else(|e| panic!("validator: {e}"))
});

fuzz_target!(|data: &[u8]| {
    let limits = DecodeLimits {
        max_message_size: 16 * 1024,
        max_sdp_size: 8 * 1024,
    };
    if let Ok(envelope) = decode_client_message(data, &limits) {
        let encoded = envelope.encode();
        let again = decode_client_message(
            encoded.as_bytes(),
            &DecodeLimits {
                max_message_size: usize::MAX,
                max_sdp_size: limits.max_sdp_size,
            },
        );
        assert_eq!(again.as_ref(), Ok(&envelope));
    }
    if let Ok(text) = std::str::from_utf8(data) {
        assert!(VALIDATOR.validate_at(text, 1_800_000_000).is_err());
        // The client's decoder of server messages must not panic either.
        let _ = callsec_signaling::protocol::decode_server_message(text);
    }
});
