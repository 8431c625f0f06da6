//! Instruction counts under Valgrind's callgrind (gungraun): the one deterministic performance
//! signal. The same binary on the same machine gives the same count, so `cargo xtask ci`
//! compares them with `benches/instructions.baseline` and fails on growth over 5%.
//!
//! Each case runs once, in its own process; its setup (keys, certificates, the packet, and a
//! few packets through the context first, so that per-SSRC state, replay windows and the CPU
//! feature probes of the crypto are in place) is not counted, and neither is dropping the
//! state, which the benchmark hands back instead of dropping:
//! - `srtp::protect` / `srtp::unprotect`: one RTP packet (12-byte header + 160 or 1200 bytes),
//!   per profile;
//! - `srtp::forward`: what the SFU does per packet and receiver (unprotect a 1200-byte packet
//!   from the sender, protect a copy for one receiver), per profile;
//! - `dtls::handshake`: one full handshake per suite, both sides in memory on the shared
//!   simulated network (`callsec_tests::pair::Pair`, lossless), as in `dtls.rs`.
//!
//! Cases use the default crypto provider (ring); the `_rustcrypto` cases repeat the GCM ones
//! with RustCrypto (CM is RustCrypto under every provider).
//!
//! Randomness is a seeded ChaCha20 and nothing reads the clock except `Instant::now()` as an
//! opaque argument, so every RustCrypto run follows the same path; under ring the ECDHE keys
//! and signature nonces come from the OS, which moves a handshake's count by a few
//! instructions at most (ring's P-256 is constant-time).
// gungraun's `#[library_benchmark]`/`#[bench]` macros expand to fully qualified paths of
// the names they are given, which `unused_qualifications` (a workspace lint) reports at
// every use.
#![allow(
    missing_docs,
    unused_qualifications,
    clippy::unwrap_used,
    clippy::expect_used
)]

use std::hint::black_box;
use std::sync::Arc;

use callsec_dtls::{Certificate, CipherSuite, Config as DtlsConfig};
use callsec_srtp::{Config, Context, MasterKey, ProtectionProfile, Provider};
use callsec_tests::pair::{Netem, Pair};
use gungraun::{
    Callgrind, LibraryBenchmarkConfig, library_benchmark, library_benchmark_group, main,
};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

const KEY: [u8; 16] = [0x11; 16];
const SALT: [u8; 14] = [0x22; 14];
const SSRC: u32 = 0xcafe_f00d;
/// Packets through a context before the counted one.
const WARM: u16 = 8;
const GCM: ProtectionProfile = ProtectionProfile::AeadAes128Gcm;
const CM: ProtectionProfile = ProtectionProfile::Aes128CmHmacSha1_80;

/// The default crypto provider (ring) and the portable one.
const DEFAULT: Provider = Provider::DEFAULT;
const RUSTCRYPTO: Provider = Provider::RustCrypto;

fn context(profile: ProtectionProfile, provider: Provider) -> Context {
    let key = MasterKey::new(profile, &KEY, &SALT[..profile.salt_len()]).unwrap();
    let mut config = Config::default();
    config.provider = provider;
    Context::new(&key, config).unwrap()
}

/// A plain RTP packet (12-byte header) with `payload` bytes, in a buffer with room for a tag.
fn rtp(seq: u16, payload: usize) -> Vec<u8> {
    let mut p = vec![0u8; 12 + payload + 64];
    p[0] = 0x80;
    p[1] = 111;
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p[4..8].copy_from_slice(&(u32::from(seq) * 960).to_be_bytes());
    p[8..12].copy_from_slice(&SSRC.to_be_bytes());
    for (i, b) in p[12..12 + payload].iter_mut().enumerate() {
        *b = i as u8;
    }
    p
}

/// A sender context that has protected `WARM` packets, and the next plain packet.
fn protect_setup(
    profile: ProtectionProfile,
    payload: usize,
    provider: Provider,
) -> (Context, Vec<u8>, usize) {
    let mut tx = context(profile, provider);
    for seq in 1..=WARM {
        tx.protect_rtp(&mut rtp(seq, payload), 12 + payload)
            .unwrap();
    }
    (tx, rtp(WARM + 1, payload), 12 + payload)
}

/// A receiver context that has unprotected `WARM` packets, and the next protected packet.
fn unprotect_setup(
    profile: ProtectionProfile,
    payload: usize,
    provider: Provider,
) -> (Context, Vec<u8>) {
    let mut tx = context(profile, provider);
    let mut rx = context(profile, provider);
    let mut next = |seq| {
        let mut p = rtp(seq, payload);
        let n = tx.protect_rtp(&mut p, 12 + payload).unwrap();
        p.truncate(n);
        p
    };
    for seq in 1..=WARM {
        rx.unprotect_rtp(&mut next(seq)).unwrap();
    }
    (rx, next(WARM + 1))
}

/// A receiver context and one outgoing context, both warm, the sender's next protected
/// packet and a buffer for the receiver's copy.
fn forward_setup(
    profile: ProtectionProfile,
    provider: Provider,
) -> (Context, Context, Vec<u8>, Vec<u8>) {
    let payload = 1200;
    let (rx, packet) = unprotect_setup(profile, payload, provider);
    let (out, _, _) = protect_setup(profile, payload, provider);
    (rx, out, packet, vec![0u8; 12 + payload + 64])
}

#[library_benchmark]
#[bench::gcm_160(args = (GCM, 160, DEFAULT), setup = protect_setup)]
#[bench::gcm_1200(args = (GCM, 1200, DEFAULT), setup = protect_setup)]
#[bench::cm_160(args = (CM, 160, DEFAULT), setup = protect_setup)]
#[bench::cm_1200(args = (CM, 1200, DEFAULT), setup = protect_setup)]
#[bench::gcm_160_rustcrypto(args = (GCM, 160, RUSTCRYPTO), setup = protect_setup)]
#[bench::gcm_1200_rustcrypto(args = (GCM, 1200, RUSTCRYPTO), setup = protect_setup)]
fn protect(state: (Context, Vec<u8>, usize)) -> (Context, Vec<u8>, usize) {
    let (mut ctx, mut buf, len) = state;
    let n = ctx.protect_rtp(black_box(&mut buf), len).unwrap();
    (ctx, buf, black_box(n))
}

#[library_benchmark]
#[bench::gcm_160(args = (GCM, 160, DEFAULT), setup = unprotect_setup)]
#[bench::gcm_1200(args = (GCM, 1200, DEFAULT), setup = unprotect_setup)]
#[bench::cm_160(args = (CM, 160, DEFAULT), setup = unprotect_setup)]
#[bench::cm_1200(args = (CM, 1200, DEFAULT), setup = unprotect_setup)]
#[bench::gcm_160_rustcrypto(args = (GCM, 160, RUSTCRYPTO), setup = unprotect_setup)]
#[bench::gcm_1200_rustcrypto(args = (GCM, 1200, RUSTCRYPTO), setup = unprotect_setup)]
fn unprotect(state: (Context, Vec<u8>)) -> (Context, Vec<u8>, usize) {
    let (mut ctx, mut buf) = state;
    let n = ctx.unprotect_rtp(black_box(&mut buf)).unwrap();
    (ctx, buf, black_box(n))
}

#[library_benchmark]
#[bench::gcm_1200(args = (GCM, DEFAULT), setup = forward_setup)]
#[bench::cm_1200(args = (CM, DEFAULT), setup = forward_setup)]
#[bench::gcm_1200_rustcrypto(args = (GCM, RUSTCRYPTO), setup = forward_setup)]
fn forward(state: (Context, Context, Vec<u8>, Vec<u8>)) -> (Context, Context, Vec<u8>, Vec<u8>) {
    let (mut rx, mut out, mut packet, mut copy) = state;
    let m = rx.unprotect_rtp(black_box(&mut packet)).unwrap();
    copy[..m].copy_from_slice(&packet[..m]);
    black_box(out.protect_rtp(&mut copy, m).unwrap());
    (rx, out, packet, copy)
}

/// Client and server configurations offering only `suite`, with certificates made here
/// (not counted), and the seed of the RNG the handshake draws from.
fn handshake_setup(
    suite: CipherSuite,
    provider: Provider,
) -> (Arc<DtlsConfig>, Arc<DtlsConfig>, u64) {
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let mut mk = || {
        let mut c = DtlsConfig::new(Certificate::generate(&mut rng));
        c.cipher_suites = vec![suite];
        c.provider = provider;
        Arc::new(c)
    };
    let (cc, sc) = (mk(), mk());
    (cc, sc, 2)
}

#[library_benchmark]
#[bench::ecdhe_ecdsa_aes128_gcm(
    args = (CipherSuite::EcdheEcdsaAes128GcmSha256, DEFAULT),
    setup = handshake_setup
)]
#[bench::ecdhe_ecdsa_aes256_cbc(
    args = (CipherSuite::EcdheEcdsaAes256CbcSha, DEFAULT),
    setup = handshake_setup
)]
#[bench::ecdhe_ecdsa_aes128_gcm_rustcrypto(
    args = (CipherSuite::EcdheEcdsaAes128GcmSha256, RUSTCRYPTO),
    setup = handshake_setup
)]
fn handshake(state: (Arc<DtlsConfig>, Arc<DtlsConfig>, u64)) -> Pair {
    let (cc, sc, seed) = state;
    let mut p = Pair::with_configs(seed, Netem::default(), cc, sc);
    p.drive();
    assert!(p.client.is_connected() && p.server.is_connected());
    black_box(p)
}

library_benchmark_group!(name = srtp, benchmarks = [protect, unprotect, forward]);
library_benchmark_group!(name = dtls, benchmarks = [handshake]);

main!(
    config = LibraryBenchmarkConfig::default().tool(Callgrind::default());
    library_benchmark_groups = srtp, dtls
);
