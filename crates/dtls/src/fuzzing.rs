//! Entry points for the cargo-fuzz targets in `fuzz/`: they reach the internal parsers
//! without making them part of the API. Not for applications.

use crate::codec::Reader;
use crate::fragment::Reassembler;
use crate::handshake::{
    CertificateRequest, ClientHello, HandshakeType, HelloVerifyRequest, HsHeader, ServerHello,
    ServerKeyExchange, read_certificate, read_client_key_exchange, read_digitally_signed,
    read_finished,
};
use crate::record::{Record, RecordCipher};

/// Parses every record of `data` and tries to open each with fixed GCM and CBC keys.
pub fn record_layer(data: &[u8]) {
    let gcm = RecordCipher::gcm(&[1; 16], &[2; 4], crate::Provider::DEFAULT);
    let cbc = RecordCipher::cbc(&[3; 32], &[4; 20], &[5; 32]);
    let mut r = Reader::new(data);
    while r.remaining() > 0 {
        let Ok(rec) = Record::read(&mut r) else { break };
        for c in [&gcm, &cbc].into_iter().flatten() {
            let _ = c.open(&rec);
        }
    }
}

/// Parses `data` as handshake fragments, feeds them to a reassembler, and parses every
/// completed message with the parser for its type; hellos that parse must round-trip.
pub fn handshake_messages(data: &[u8]) {
    let mut r = Reader::new(data);
    let mut re = Reassembler::default();
    // Plaintext fragments during a handshake: never an error, whatever they say.
    let mut untrusted = Reassembler::default();
    let mut trusted_ok = true;
    while r.remaining() > 0 {
        let Ok((h, frag)) = HsHeader::read(&mut r) else {
            break;
        };
        assert!(untrusted.insert(&h, 0, frag, false).is_ok());
        while let Some(m) = untrusted.take(0, untrusted.next_seq().saturating_add(2)) {
            untrusted.accept(m.seq);
        }
        trusted_ok = trusted_ok && re.insert(&h, 0, frag, true).is_ok();
        while let Some(m) = re.take(0, re.next_seq()).filter(|_| trusted_ok) {
            re.accept(m.seq);
            parse_body(m.msg_type, &m.body);
        }
    }
    // Also every parser on the raw input.
    for t in [1u8, 2, 3, 11, 12, 13, 15, 16, 20] {
        parse_body(HandshakeType(t), data);
    }
}

fn parse_body(t: HandshakeType, body: &[u8]) {
    match t {
        HandshakeType::CLIENT_HELLO => {
            if let Ok(ch) = ClientHello::read(body) {
                // Unknown extensions are not re-encoded; known fields must survive.
                if let Ok(again) = ClientHello::read(&ch.write()) {
                    assert_eq!(again.cipher_suites, ch.cipher_suites);
                    assert_eq!(again.cookie, ch.cookie);
                    assert_eq!(again.extensions.use_srtp, ch.extensions.use_srtp);
                } else {
                    panic!("re-encoded ClientHello does not parse");
                }
            }
        }
        HandshakeType::SERVER_HELLO => {
            if let Ok(sh) = ServerHello::read(body) {
                assert!(ServerHello::read(&sh.write()).is_ok());
            }
        }
        HandshakeType::HELLO_VERIFY_REQUEST => {
            if let Ok(h) = HelloVerifyRequest::read(body) {
                assert_eq!(HelloVerifyRequest::read(&h.write()).ok(), Some(h));
            }
        }
        HandshakeType::CERTIFICATE => {
            if let Ok(chain) = read_certificate(body) {
                for c in chain {
                    let _ = crate::cert::public_key_of(&c);
                }
            }
        }
        HandshakeType::SERVER_KEY_EXCHANGE => {
            let _ = ServerKeyExchange::read(body);
        }
        HandshakeType::CERTIFICATE_REQUEST => {
            let _ = CertificateRequest::read(body);
        }
        HandshakeType::CERTIFICATE_VERIFY => {
            let _ = read_digitally_signed(body);
        }
        HandshakeType::CLIENT_KEY_EXCHANGE => {
            let _ = read_client_key_exchange(body);
        }
        HandshakeType::FINISHED => {
            let _ = read_finished(body);
        }
        _ => {}
    }
}
