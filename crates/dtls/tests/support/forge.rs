//! Valid-looking handshake message bodies a spoofer can make without any secret (RFC 5246
//! §7.4, RFC 8422 §5), for the tests that plant them ahead of the genuine flight.

use callsec_dtls::Certificate;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

use super::wire::extensions;

/// The P-256 base point: a valid ECDHE share nobody in the handshake uses.
const G: [u8; 65] = hex_literal::hex!(
    "04 6B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C296
    4FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5"
);

/// A ServerHello the client accepts if it offered `suite`: DTLS 1.2, AEAD_AES_128_GCM,
/// extended master secret, empty renegotiation_info, uncompressed points.
pub fn server_hello(random: [u8; 32], suite: u16) -> Vec<u8> {
    let mut b = vec![0xfe, 0xfd];
    b.extend_from_slice(&random);
    b.push(0);
    b.extend_from_slice(&suite.to_be_bytes());
    b.push(0);
    let exts: [(u16, &[u8]); 4] = [
        (14, &[0, 2, 0, 7, 0]),
        (23, &[]),
        (0xff01, &[0]),
        (11, &[1, 0]),
    ];
    b.extend_from_slice(&extensions(exts));
    b
}

/// A Certificate message carrying someone else's certificate.
pub fn certificate(seed: u64) -> Vec<u8> {
    let cert = Certificate::generate(&mut ChaCha20Rng::seed_from_u64(seed));
    let der = cert.der();
    let one = (der.len() as u32).to_be_bytes();
    let all = (der.len() as u32 + 3).to_be_bytes();
    let mut b = all[1..].to_vec();
    b.extend_from_slice(&one[1..]);
    b.extend_from_slice(der);
    b
}

/// A ServerKeyExchange with a valid point and a signature that cannot verify.
pub fn server_key_exchange() -> Vec<u8> {
    let mut b = vec![3, 0, 23, 65];
    b.extend_from_slice(&G);
    b.extend_from_slice(&[4, 3, 0, 8, 0x30, 6, 2, 1, 1, 2, 1, 1]);
    b
}

/// A CertificateRequest the client accepts, unlike the server's: RSA and ECDSA, two
/// signature algorithms.
pub fn certificate_request() -> Vec<u8> {
    vec![2, 1, 64, 0, 4, 4, 3, 8, 4, 0, 0]
}

/// A ClientKeyExchange with a valid point the client did not choose.
pub fn client_key_exchange() -> Vec<u8> {
    let mut b = vec![65];
    b.extend_from_slice(&G);
    b
}

/// A CertificateVerify whose signature cannot verify.
pub fn certificate_verify() -> Vec<u8> {
    vec![4, 3, 0, 8, 0x30, 6, 2, 1, 1, 2, 1, 1]
}

/// A HelloVerifyRequest with a cookie the server never made.
pub fn hello_verify_request(cookie: &[u8]) -> Vec<u8> {
    let mut b = vec![0xfe, 0xff, cookie.len() as u8];
    b.extend_from_slice(cookie);
    b
}
