//! The TLS 1.2 PRF (RFC 5246 §5) with SHA-256 and what is derived from it: the master secret
//! (RFC 5246 §8.1, RFC 7627 §4), the key block (RFC 5246 §6.3), Finished (RFC 5246 §7.4.9) and
//! the keying-material exporter (RFC 5705 §4).

use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

type HmacSha256 = Hmac<Sha256>;

/// `PRF(secret, label, seed) = P_SHA256(secret, label + seed)` (RFC 5246 §5), written to `out`.
pub(crate) fn prf(secret: &[u8], label: &[u8], seeds: &[&[u8]], out: &mut [u8]) {
    // A(0) = label + seed; A(i) = HMAC(secret, A(i-1)).
    let Ok(base) = HmacSha256::new_from_slice(secret) else {
        return; // HMAC accepts keys of any length; unreachable.
    };
    let mut mac = base.clone();
    mac.update(label);
    for s in seeds {
        mac.update(s);
    }
    let mut a = mac.finalize().into_bytes();
    let mut filled = 0;
    while filled < out.len() {
        // P_hash output block: HMAC(secret, A(i) + label + seed).
        let mut mac = base.clone();
        mac.update(&a);
        mac.update(label);
        for s in seeds {
            mac.update(s);
        }
        let block = mac.finalize().into_bytes();
        let n = (out.len() - filled).min(block.len());
        out[filled..filled + n].copy_from_slice(&block[..n]);
        filled += n;
        let mut mac = base.clone();
        mac.update(&a);
        a = mac.finalize().into_bytes();
    }
}

/// The 48-byte master secret.
pub(crate) type MasterSecret = Zeroizing<[u8; 48]>;

/// RFC 5246 §8.1: `PRF(pms, "master secret", client_random + server_random)[0..47]`.
pub(crate) fn master_secret(
    pms: &[u8],
    client_random: &[u8; 32],
    server_random: &[u8; 32],
) -> MasterSecret {
    let mut ms = Zeroizing::new([0u8; 48]);
    prf(
        pms,
        b"master secret",
        &[client_random, server_random],
        &mut ms[..],
    );
    ms
}

/// RFC 7627 §4: `PRF(pms, "extended master secret", session_hash)[0..47]`.
pub(crate) fn extended_master_secret(pms: &[u8], session_hash: &[u8; 32]) -> MasterSecret {
    let mut ms = Zeroizing::new([0u8; 48]);
    prf(pms, b"extended master secret", &[session_hash], &mut ms[..]);
    ms
}

/// RFC 5246 §6.3: `key_block = PRF(master_secret, "key expansion", server_random + client_random)`.
pub(crate) fn key_block(
    ms: &[u8; 48],
    client_random: &[u8; 32],
    server_random: &[u8; 32],
    len: usize,
) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(vec![0u8; len]);
    prf(
        ms,
        b"key expansion",
        &[server_random, client_random],
        &mut out,
    );
    out
}

/// RFC 5246 §7.4.9: `verify_data = PRF(master_secret, finished_label, Hash(handshake_messages))[0..11]`.
pub(crate) fn verify_data(ms: &[u8; 48], client: bool, transcript_hash: &[u8; 32]) -> [u8; 12] {
    let label: &[u8] = if client {
        b"client finished"
    } else {
        b"server finished"
    };
    let mut out = [0u8; 12];
    prf(ms, label, &[transcript_hash], &mut out);
    out
}

/// RFC 5705 §4: `PRF(master_secret, label, client_random + server_random
/// [+ context_value_length + context_value])[length]`.
pub(crate) fn export(
    ms: &[u8; 48],
    client_random: &[u8; 32],
    server_random: &[u8; 32],
    label: &[u8],
    context: Option<&[u8]>,
    out: &mut [u8],
) {
    match context {
        None => prf(ms, label, &[client_random, server_random], out),
        Some(ctx) => {
            let len = (ctx.len() as u16).to_be_bytes();
            prf(ms, label, &[client_random, server_random, &len, ctx], out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hex_literal::hex;

    /// The TLS 1.2 PRF (P_SHA256) vector posted to the IETF TLS list (msg03416), widely used
    /// to check RFC 5246 §5 implementations.
    #[test]
    fn prf_sha256_vector() {
        let secret = hex!("9bbe436ba940f017b17652849a71db35");
        let seed = hex!("a0ba9f936cda311827a6f796ffd5198c");
        let expected = hex!(
            "e3f229ba727be17b8d122620557cd453c2aab21d07c3d495329b52d4e61edb5a"
            "6b301791e90d35c9c9a46b4e14baf9af0fa022f7077def17abfd3797c0564bab"
            "4fbc91666e9def9b97fce34f796789baa48082d122ee42c5a72e5a5110fff701"
            "87347b66"
        );
        let mut out = [0u8; 100];
        prf(&secret, b"test label", &[&seed], &mut out);
        assert_eq!(out, expected);
        // Split seeds are the concatenation.
        let mut out2 = [0u8; 100];
        prf(&secret, b"test label", &[&seed[..5], &seed[5..]], &mut out2);
        assert_eq!(out, out2);
    }

    /// RFC 5705 §4: the exporter is the PRF keyed with the master secret over the randoms, and
    /// a context (even an empty one) changes the output.
    #[test]
    fn exporter_definition() {
        let ms = [7u8; 48];
        let cr = [1u8; 32];
        let sr = [2u8; 32];
        let mut a = [0u8; 60];
        export(&ms, &cr, &sr, b"EXTRACTOR-dtls_srtp", None, &mut a);
        let mut b = [0u8; 60];
        prf(&ms, b"EXTRACTOR-dtls_srtp", &[&cr, &sr], &mut b);
        assert_eq!(a, b);
        let mut c = [0u8; 60];
        export(&ms, &cr, &sr, b"EXTRACTOR-dtls_srtp", Some(&[]), &mut c);
        assert_ne!(a, c);
        let mut d = [0u8; 60];
        prf(&ms, b"EXTRACTOR-dtls_srtp", &[&cr, &sr, &[0, 0]], &mut d);
        assert_eq!(c, d);
    }
}
