//! The SFU's forwarding cost per packet, against the crypto floor of the same work, in one
//! run: `callsec` is the whole server path (`Sfu::handle_datagram`: demultiplex, find the
//! participant by 5-tuple, unprotect, map header extensions, then per receiver copy, set the
//! payload type, protect into its retransmission slot and hand to the output); `floor` is a
//! bare unprotect plus N protects with `callsec-srtp` contexts over the same bytes.
//! 1200-byte payloads, AEAD_AES_128_GCM and AES128_CM_HMAC_SHA1_80.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use callsec_dtls::CipherSuite;
use callsec_rtc::client::write_rtp;
use callsec_server::sim::{CountOutput, SimCall};
use callsec_srtp::{Config, Context, MasterKey, ProtectionProfile};
use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

const PAYLOAD: usize = 1200;

fn profile_name(p: ProtectionProfile) -> &'static str {
    match p {
        ProtectionProfile::AeadAes128Gcm => "gcm",
        ProtectionProfile::Aes128CmHmacSha1_80 => "cm",
    }
}

fn context(profile: ProtectionProfile) -> Context {
    let key = MasterKey::new(profile, &[7; 16], &vec![9; profile.salt_len()]).unwrap();
    Context::new(&key, Config::default()).unwrap()
}

fn forward(c: &mut Criterion) {
    let mut g = c.benchmark_group("sfu-forward");
    for profile in ProtectionProfile::ALL {
        for receivers in [1usize, 4, 8] {
            g.throughput(Throughput::Elements(receivers as u64));
            let id = format!("{}-1200-to-{receivers}", profile_name(profile));

            // The whole server path.
            let mut call = SimCall::connected(
                receivers + 1,
                profile,
                CipherSuite::EcdheEcdsaAes128GcmSha256,
                7,
            );
            assert_eq!(call.receivers_of(call.clients[0].video_ssrc), receivers);
            let (from, now) = (call.clients[0].addr, call.now);
            let mut seq = 0u16;
            let mut out = CountOutput::default();
            let mut sender = call.clients.remove(0);
            g.bench_function(BenchmarkId::new("callsec", &id), |b| {
                b.iter_batched_ref(
                    || {
                        seq = seq.wrapping_add(1);
                        sender.video_packet(seq, PAYLOAD)
                    },
                    |p| call.sfu.handle_datagram(now, from, black_box(p), &mut out),
                    BatchSize::SmallInput,
                )
            });
            assert!(out.packets > 0);

            // The floor: unprotect once, protect per receiver, nothing else.
            let mut tx = context(profile);
            let mut rx = context(profile);
            let mut outs: Vec<Context> = (0..receivers).map(|_| context(profile)).collect();
            let mut copy = vec![0u8; 1500];
            let mut fseq = 0u16;
            g.bench_function(BenchmarkId::new("floor", &id), |b| {
                b.iter_batched_ref(
                    || {
                        fseq = fseq.wrapping_add(1);
                        let mut buf = vec![0u8; 1500];
                        let n = write_rtp(
                            &mut buf,
                            96,
                            fseq,
                            u32::from(fseq) * 3000,
                            0x1000,
                            &[1; PAYLOAD],
                        );
                        let n = tx.protect_rtp(&mut buf, n).unwrap();
                        buf.truncate(n);
                        buf
                    },
                    |p| {
                        let m = rx.unprotect_rtp(black_box(p)).unwrap();
                        for o in outs.iter_mut() {
                            copy[..m].copy_from_slice(&p[..m]);
                            black_box(o.protect_rtp(&mut copy, m).unwrap());
                        }
                    },
                    BatchSize::SmallInput,
                )
            });
        }
    }
    g.finish();
}

criterion_group! { name = benches; config = callsec_benches::criterion(); targets = forward }
criterion_main!(benches);
