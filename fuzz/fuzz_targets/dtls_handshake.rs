//! Handshake fragment reassembly and every handshake message parser, on arbitrary bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    callsec_dtls::fuzzing::handshake_messages(data);
});
