//! Per-packet SRTP cost: callsec against webrtc-srtp, libsrtp2 and the `floor` (the bare
//! primitives of the default crypto provider over the same bytes, with no SRTP logic at
//! all), in one binary so that every figure comes from the same run.
//!
//! Groups `srtp-protect` and `srtp-unprotect`; function ids `callsec` (default provider,
//! `ring` for GCM), `callsec-rustcrypto`, `webrtc-srtp`, `libsrtp2`, `floor` (ring's
//! AES-128-GCM; RustCrypto AES-CTR + HMAC-SHA1 for CM, which every provider uses) and
//! `floor-rustcrypto` (aes-gcm); parameters `<profile>-<payload bytes>`. The `-rustcrypto`
//! ids exist for GCM only: for CM they would time the same code. Unprotect is timed on
//! fresh, valid packets that pass the replay check. Each input is a fresh buffer made
//! outside the timed loop, for every id alike.
//!
//! `srtp-forward`: unprotect once, protect per receiver (1 and 8), per provider.
//! `hmac-sha1`: the CM profile's MAC from ring and from RustCrypto `sha1`, the measurement
//! behind keeping RustCrypto for CM.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use aes::Aes128Enc;
use aes::cipher::{InnerIvInit, KeyInit, StreamCipher};
use aes_gcm::{AeadInPlace, Aes128Gcm};
use callsec_srtp::{Config, Context, MasterKey, ProtectionProfile, Provider};
use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use hmac::{Hmac, Mac};
use sha1::Sha1;

const KEY: [u8; 16] = [0x11; 16];
const SALT: [u8; 14] = [0x22; 14];
const SSRC: u32 = 0xcafe_f00d;
const PAYLOADS: [usize; 2] = [160, 1200];
const ROOM: usize = callsec_libsrtp2::MAX_TRAILER;

fn param(profile: ProtectionProfile, payload: usize) -> String {
    let name = match profile {
        ProtectionProfile::AeadAes128Gcm => "aead-aes-128-gcm",
        ProtectionProfile::Aes128CmHmacSha1_80 => "aes128-cm-hmac-sha1-80",
    };
    format!("{name}-{payload}")
}

/// A plain RTP packet (12-byte header) with `payload` bytes, in a buffer with spare room.
fn rtp(seq: u16, payload: usize) -> Vec<u8> {
    let mut p = vec![0u8; 12 + payload + ROOM];
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

fn salt(profile: ProtectionProfile) -> &'static [u8] {
    &SALT[..profile.salt_len()]
}

fn callsec_with(profile: ProtectionProfile, provider: Provider) -> Context {
    let key = MasterKey::new(profile, &KEY, salt(profile)).unwrap();
    let mut config = Config::default();
    config.provider = provider;
    Context::new(&key, config).unwrap()
}

/// The benchmark ids of callsec and of the floor for a provider, if it is timed for
/// `profile` (the non-default providers differ only for GCM).
fn ids(profile: ProtectionProfile, provider: Provider) -> Option<(&'static str, &'static str)> {
    match provider {
        Provider::Ring => Some(("callsec", "floor")),
        Provider::RustCrypto if profile == ProtectionProfile::AeadAes128Gcm => {
            Some(("callsec-rustcrypto", "floor-rustcrypto"))
        }
        _ => None,
    }
}

fn webrtc(profile: ProtectionProfile) -> webrtc_srtp::context::Context {
    use webrtc_srtp::protection_profile::ProtectionProfile as P;
    let p = match profile {
        ProtectionProfile::AeadAes128Gcm => P::AeadAes128Gcm,
        ProtectionProfile::Aes128CmHmacSha1_80 => P::Aes128CmHmacSha1_80,
    };
    webrtc_srtp::context::Context::new(&KEY, salt(profile), p, None, None).unwrap()
}

fn libsrtp(
    profile: ProtectionProfile,
    dir: callsec_libsrtp2::Direction,
) -> callsec_libsrtp2::Session {
    let p = match profile {
        ProtectionProfile::AeadAes128Gcm => callsec_libsrtp2::Profile::AeadAes128Gcm,
        ProtectionProfile::Aes128CmHmacSha1_80 => callsec_libsrtp2::Profile::Aes128CmHmacSha1_80,
    };
    callsec_libsrtp2::Session::new(p, dir, &KEY, salt(profile), 128).unwrap()
}

/// The floor: the primitives SRTP is made of, keyed once (the AES key borrowed, never copied,
/// per packet), with nothing around them.
enum Floor {
    GcmRing(ring::aead::LessSafeKey),
    GcmRustCrypto(Aes128Gcm),
    Cm(Aes128Enc, Hmac<Sha1>),
}

impl Floor {
    fn new(profile: ProtectionProfile, provider: Provider) -> Self {
        match (profile, provider) {
            (ProtectionProfile::AeadAes128Gcm, Provider::Ring) => {
                let key = ring::aead::UnboundKey::new(&ring::aead::AES_128_GCM, &KEY).unwrap();
                Floor::GcmRing(ring::aead::LessSafeKey::new(key))
            }
            (ProtectionProfile::AeadAes128Gcm, _) => {
                Floor::GcmRustCrypto(Aes128Gcm::new(&KEY.into()))
            }
            (ProtectionProfile::Aes128CmHmacSha1_80, _) => Floor::Cm(
                Aes128Enc::new(&KEY.into()),
                <Hmac<Sha1> as Mac>::new_from_slice(&[0x33; 20]).unwrap(),
            ),
        }
    }

    fn seal(&self, buf: &mut [u8], len: usize) -> usize {
        let (packet, tail) = buf.split_at_mut(len);
        let (header, payload) = packet.split_at_mut(12);
        match self {
            Floor::GcmRing(key) => {
                let nonce = ring::aead::Nonce::assume_unique_for_key([7u8; 12]);
                let tag = key
                    .seal_in_place_separate_tag(nonce, ring::aead::Aad::from(&*header), payload)
                    .unwrap();
                tail[..16].copy_from_slice(tag.as_ref());
                len + 16
            }
            Floor::GcmRustCrypto(aead) => {
                let nonce = [7u8; 12];
                let tag = aead
                    .encrypt_in_place_detached(&nonce.into(), header, payload)
                    .unwrap();
                tail[..16].copy_from_slice(&tag);
                len + 16
            }
            Floor::Cm(aes, mac) => {
                let iv = [9u8; 16];
                keystream(aes, iv, payload);
                let mut m = mac.clone();
                m.update(header);
                m.update(payload);
                m.update(&[0, 0, 0, 0]);
                tail[..10].copy_from_slice(&m.finalize().into_bytes()[..10]);
                len + 10
            }
        }
    }

    fn open(&self, buf: &mut [u8]) -> usize {
        match self {
            Floor::GcmRing(key) => {
                let len = buf.len() - 16;
                let (packet, tag) = buf.split_at_mut(len);
                let (header, payload) = packet.split_at_mut(12);
                let nonce = ring::aead::Nonce::assume_unique_for_key([7u8; 12]);
                let tag = ring::aead::Tag::try_from(&*tag).unwrap();
                key.open_in_place_separate_tag(
                    nonce,
                    ring::aead::Aad::from(&*header),
                    tag,
                    payload,
                    0..,
                )
                .unwrap();
                len
            }
            Floor::GcmRustCrypto(aead) => {
                let len = buf.len() - 16;
                let (packet, tag) = buf.split_at_mut(len);
                let (header, payload) = packet.split_at_mut(12);
                let nonce = [7u8; 12];
                aead.decrypt_in_place_detached(&nonce.into(), header, payload, (&*tag).into())
                    .unwrap();
                len
            }
            Floor::Cm(aes, mac) => {
                let len = buf.len() - 10;
                let (packet, tag) = buf.split_at_mut(len);
                let mut m = mac.clone();
                m.update(packet);
                m.update(&[0, 0, 0, 0]);
                m.verify_truncated_left(tag).unwrap();
                let iv = [9u8; 16];
                keystream(aes, iv, &mut packet[12..]);
                len
            }
        }
    }
}

/// Fresh protected packets in sequence order, made by `protect(buf, len) -> new len`, for
/// the untimed setup of the unprotect benchmarks.
fn sender(
    payload: usize,
    mut protect: impl FnMut(&mut [u8], usize) -> usize,
) -> impl FnMut() -> Vec<u8> {
    let mut seq = 0u16;
    move || {
        seq = seq.wrapping_add(1);
        let mut p = rtp(seq, payload);
        let n = protect(&mut p, 12 + payload);
        p.truncate(n);
        p
    }
}

/// AES-128-CTR over `data` with a borrowed, already expanded key.
fn keystream(aes: &Aes128Enc, iv: [u8; 16], data: &mut [u8]) {
    type Core<'a> = ctr::CtrCore<&'a Aes128Enc, ctr::flavors::Ctr128BE>;
    let core = Core::inner_iv_init(aes, &iv.into());
    ctr::cipher::StreamCipherCoreWrapper::from_core(core).apply_keystream(data);
}

fn protect(c: &mut Criterion) {
    let mut g = c.benchmark_group("srtp-protect");
    for profile in ProtectionProfile::ALL {
        for payload in PAYLOADS {
            let len = 12 + payload;
            let id = param(profile, payload);
            g.throughput(Throughput::Bytes(len as u64));
            let mut seq = 0u16;
            let mut fresh = move || {
                seq = seq.wrapping_add(1);
                rtp(seq, payload)
            };

            for &provider in Provider::ALL {
                let Some((name, _)) = ids(profile, provider) else {
                    continue;
                };
                let mut ctx = callsec_with(profile, provider);
                g.bench_function(BenchmarkId::new(name, &id), |b| {
                    b.iter_batched_ref(
                        &mut fresh,
                        |p| ctx.protect_rtp(black_box(p), len).unwrap(),
                        BatchSize::SmallInput,
                    )
                });
            }
            let mut ctx = webrtc(profile);
            g.bench_function(BenchmarkId::new("webrtc-srtp", &id), |b| {
                b.iter_batched_ref(
                    &mut fresh,
                    |p| ctx.encrypt_rtp(black_box(&p[..len])).unwrap(),
                    BatchSize::SmallInput,
                )
            });
            let mut ctx = libsrtp(profile, callsec_libsrtp2::Direction::Outbound);
            g.bench_function(BenchmarkId::new("libsrtp2", &id), |b| {
                b.iter_batched_ref(
                    &mut fresh,
                    |p| ctx.protect_rtp(black_box(p), len).unwrap(),
                    BatchSize::SmallInput,
                )
            });
            for &provider in Provider::ALL {
                let Some((_, name)) = ids(profile, provider) else {
                    continue;
                };
                let floor = Floor::new(profile, provider);
                g.bench_function(BenchmarkId::new(name, &id), |b| {
                    b.iter_batched_ref(
                        &mut fresh,
                        |p| floor.seal(black_box(p), len),
                        BatchSize::SmallInput,
                    )
                });
            }
        }
    }
    g.finish();
}

fn unprotect(c: &mut Criterion) {
    let mut g = c.benchmark_group("srtp-unprotect");
    for profile in ProtectionProfile::ALL {
        for payload in PAYLOADS {
            let len = 12 + payload;
            let id = param(profile, payload);
            g.throughput(Throughput::Bytes(len as u64));

            // Each implementation receives what its own sender made, in sequence order.
            for &provider in Provider::ALL {
                let Some((name, _)) = ids(profile, provider) else {
                    continue;
                };
                let mut tx = callsec_with(profile, provider);
                let mut fresh = sender(payload, |p, n| tx.protect_rtp(p, n).unwrap());
                let mut rx = callsec_with(profile, provider);
                g.bench_function(BenchmarkId::new(name, &id), |b| {
                    b.iter_batched_ref(
                        &mut fresh,
                        |p| rx.unprotect_rtp(black_box(p)).unwrap(),
                        BatchSize::SmallInput,
                    )
                });
            }

            let mut tx = webrtc(profile);
            let mut fresh = sender(payload, |p, n| {
                let out = tx.encrypt_rtp(&p[..n]).unwrap();
                p[..out.len()].copy_from_slice(&out);
                out.len()
            });
            let mut rx = webrtc(profile);
            g.bench_function(BenchmarkId::new("webrtc-srtp", &id), |b| {
                b.iter_batched_ref(
                    &mut fresh,
                    |p| rx.decrypt_rtp(black_box(p)).unwrap(),
                    BatchSize::SmallInput,
                )
            });

            let mut tx = libsrtp(profile, callsec_libsrtp2::Direction::Outbound);
            let mut fresh = sender(payload, |p, n| tx.protect_rtp(p, n).unwrap());
            let mut rx = libsrtp(profile, callsec_libsrtp2::Direction::Inbound);
            g.bench_function(BenchmarkId::new("libsrtp2", &id), |b| {
                b.iter_batched_ref(
                    &mut fresh,
                    |p| {
                        let n = p.len();
                        rx.unprotect_rtp(black_box(p), n).unwrap()
                    },
                    BatchSize::SmallInput,
                )
            });

            for &provider in Provider::ALL {
                let Some((_, name)) = ids(profile, provider) else {
                    continue;
                };
                let floor = Floor::new(profile, provider);
                let mut fresh = sender(payload, |p, n| floor.seal(p, n));
                g.bench_function(BenchmarkId::new(name, &id), |b| {
                    b.iter_batched_ref(
                        &mut fresh,
                        |p| floor.open(black_box(p)),
                        BatchSize::SmallInput,
                    )
                });
            }
        }
    }
    g.finish();
}

/// The SFU's per-packet path: unprotect what one sender sent, then protect a copy for each
/// of `n` receivers with their own contexts (callsec only; no rival offers this as a unit),
/// per provider: the throughput counts every receiver's bytes, so MB/s shows the effect per
/// receiver.
fn forward(c: &mut Criterion) {
    let mut g = c.benchmark_group("srtp-forward");
    for profile in ProtectionProfile::ALL {
        for receivers in [1usize, 8] {
            for &provider in Provider::ALL {
                let Some((name, _)) = ids(profile, provider) else {
                    continue;
                };
                let payload = 1200;
                let len = 12 + payload;
                g.throughput(Throughput::Bytes((len * receivers) as u64));
                let mut tx = callsec_with(profile, provider);
                let mut fresh = sender(payload, |p, n| tx.protect_rtp(p, n).unwrap());
                let mut rx = callsec_with(profile, provider);
                let mut outs: Vec<Context> = (0..receivers)
                    .map(|_| callsec_with(profile, provider))
                    .collect();
                let mut copy = vec![0u8; len + 64];
                let id = format!("{}-to-{receivers}", param(profile, payload));
                g.bench_function(BenchmarkId::new(name, id), |b| {
                    b.iter_batched_ref(
                        &mut fresh,
                        |p| {
                            let m = rx.unprotect_rtp(black_box(p)).unwrap();
                            for out in outs.iter_mut() {
                                copy[..m].copy_from_slice(&p[..m]);
                                black_box(out.protect_rtp(&mut copy, m).unwrap());
                            }
                        },
                        BatchSize::SmallInput,
                    )
                });
            }
        }
    }
    g.finish();
}

/// HMAC-SHA1 over an RTP packet plus ROC (the CM profile's tag), keyed once, from ring and
/// from RustCrypto `sha1` (SHA-NI where the CPU has it): which one the CM profile uses.
fn hmac_sha1(c: &mut Criterion) {
    let mut g = c.benchmark_group("hmac-sha1");
    for payload in PAYLOADS {
        let data = rtp(1, payload);
        let n = 12 + payload;
        g.throughput(Throughput::Bytes(n as u64));
        let id = format!("{payload}");
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, &[0x33; 20]);
        g.bench_function(BenchmarkId::new("ring", &id), |b| {
            b.iter(|| {
                let mut m = ring::hmac::Context::with_key(&key);
                m.update(black_box(&data[..n]));
                m.update(&[0, 0, 0, 0]);
                black_box(m.sign())
            })
        });
        let mac = <Hmac<Sha1> as Mac>::new_from_slice(&[0x33; 20]).unwrap();
        g.bench_function(BenchmarkId::new("rustcrypto", &id), |b| {
            b.iter(|| {
                let mut m = mac.clone();
                m.update(black_box(&data[..n]));
                m.update(&[0, 0, 0, 0]);
                black_box(m.finalize().into_bytes())
            })
        });
    }
    g.finish();
}

criterion_group! { name = benches; config = callsec_benches::criterion(); targets = protect, unprotect, forward, hmac_sha1 }
criterion_main!(benches);
