//! The DTLS record layer: headers, GCM and CBC+HMAC opening, on arbitrary bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    callsec_dtls::fuzzing::record_layer(data);
});
