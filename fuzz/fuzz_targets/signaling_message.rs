//! Fuzzes the signaling message decoder: arbitrary bytes must never panic, and any
//! message that decodes must survive an encode/decode round trip unchanged.
#![no_main]

use callsec_signaling::{DecodeLimits, decode_client_message};
use libfuzzer_sys::fuzz_target;

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
    // The server-bound decoder of the client must not panic either.
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = callsec_signaling::protocol::decode_server_message(text);
    }
});
