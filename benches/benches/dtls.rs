//! DTLS handshake cost: one full handshake in memory (both sides, no network, no loss) for
//! callsec and for webrtc-dtls, in one binary; plus a callsec server's cost to answer a
//! ClientHello with a stateless HelloVerifyRequest.
//!
//! callsec's full handshake runs on the workspace's simulated network
//! (`callsec_tests::pair::Pair`) with no loss, reordering or duplication: the datagrams of
//! each flight are delivered at once and the clock never has to advance. Timing only the
//! server's calls needs its own loop (`server_handshake`), which Pair does not split.
//!
//! Group `dtls-handshake`; ids `callsec/<suite>` (the default crypto provider, ring),
//! `callsec-rustcrypto/<suite>`, `webrtc-dtls/<suite>`, `callsec-server/<suite>` and
//! `callsec-rustcrypto-server/<suite>` (the same handshake, timing only the server's calls:
//! its cost per handshake), `callsec/hello-verify-request` (a fresh server `Connection`
//! answers) and `callsec/hello-verifier` (the endpoint's `HelloVerifier` answers).
//! Certificates are made outside the timed loop for both.
//! webrtc-dtls needs an async runtime and a transport: it runs on a current-thread tokio
//! runtime over webrtc-util's in-memory pipe, the cheapest transport it offers.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use callsec_dtls::{
    Certificate, CipherSuite, Config, Connection, Fingerprint, HelloCheck, HelloVerifier, Provider,
};
use callsec_tests::pair::{Netem, Pair};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use webrtc_dtls::cipher_suite::CipherSuiteId;
use webrtc_dtls::config::{ClientAuthType, Config as WConfig, ExtendedMasterSecretType};
use webrtc_dtls::conn::DTLSConn;
use webrtc_dtls::extension::extension_use_srtp::SrtpProtectionProfile;

fn suite_name(s: CipherSuite) -> &'static str {
    match s {
        CipherSuite::EcdheEcdsaAes128GcmSha256 => "ecdhe-ecdsa-aes128-gcm",
        CipherSuite::EcdheEcdsaAes256CbcSha => "ecdhe-ecdsa-aes256-cbc",
    }
}

/// One complete callsec handshake between two peers on the simulated network, lossless.
fn callsec_handshake(cc: &Arc<Config>, sc: &Arc<Config>, seed: u64) {
    let mut p = Pair::with_configs(seed, Netem::default(), cc.clone(), sc.clone());
    p.drive();
    assert!(p.client.is_connected() && p.server.is_connected());
    black_box((p.client_events, p.server_events));
}

/// One complete callsec handshake between two in-memory peers, driven by hand; returns the
/// time spent in the server's calls.
fn server_handshake(cc: &Arc<Config>, sc: &Arc<Config>, seed: u64) -> Duration {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let now = Instant::now();
    let mut client =
        Connection::client(cc.clone(), &[sc.certificate.fingerprint()], now, &mut rng).unwrap();
    let t = Instant::now();
    let mut server = Connection::server(
        sc.clone(),
        &[cc.certificate.fingerprint()],
        ([192, 0, 2, 1], 4444).into(),
        &mut rng,
    )
    .unwrap();
    let mut in_server = t.elapsed();
    let mut to_server = Vec::new();
    while !(client.is_connected() && server.is_connected()) {
        while let Some(d) = client.poll_transmit() {
            to_server.push(d);
        }
        let t = Instant::now();
        for d in to_server.drain(..) {
            server.handle_datagram(now, &d).unwrap();
        }
        let mut out = Vec::new();
        while let Some(d) = server.poll_transmit() {
            out.push(d);
        }
        in_server += t.elapsed();
        for d in out {
            client.handle_datagram(now, &d).unwrap();
        }
    }
    black_box((client.poll_event(), server.poll_event()));
    in_server
}

fn w_config(cert: &webrtc_dtls::crypto::Certificate, suite: CipherSuite) -> WConfig {
    WConfig {
        certificates: vec![cert.clone()],
        cipher_suites: vec![match suite {
            CipherSuite::EcdheEcdsaAes128GcmSha256 => {
                CipherSuiteId::Tls_Ecdhe_Ecdsa_With_Aes_128_Gcm_Sha256
            }
            CipherSuite::EcdheEcdsaAes256CbcSha => {
                CipherSuiteId::Tls_Ecdhe_Ecdsa_With_Aes_256_Cbc_Sha
            }
        }],
        srtp_protection_profiles: vec![SrtpProtectionProfile::Srtp_Aead_Aes_128_Gcm],
        extended_master_secret: ExtendedMasterSecretType::Require,
        insecure_skip_verify: true,
        client_auth: ClientAuthType::RequireAnyClientCert,
        ..Default::default()
    }
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("dtls-handshake");
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let wc =
        webrtc_dtls::crypto::Certificate::generate_self_signed(vec!["client".to_string()]).unwrap();
    let ws =
        webrtc_dtls::crypto::Certificate::generate_self_signed(vec!["server".to_string()]).unwrap();
    for suite in CipherSuite::ALL {
        for &provider in Provider::ALL {
            let mk = |rng: &mut ChaCha20Rng| {
                let mut c = Config::new(Certificate::generate(rng));
                c.cipher_suites = vec![suite];
                c.provider = provider;
                Arc::new(c)
            };
            let (cc, sc) = (mk(&mut rng), mk(&mut rng));
            let name = match provider {
                Provider::Ring => "callsec",
                _ => "callsec-rustcrypto",
            };
            let mut seed = 0u64;
            g.bench_function(BenchmarkId::new(name, suite_name(suite)), |b| {
                b.iter(|| {
                    seed += 1;
                    callsec_handshake(&cc, &sc, seed)
                })
            });
            let server = format!("{name}-server");
            g.bench_function(BenchmarkId::new(server, suite_name(suite)), |b| {
                b.iter_custom(|iters| {
                    (0..iters)
                        .map(|_| {
                            seed += 1;
                            server_handshake(&cc, &sc, seed)
                        })
                        .sum()
                })
            });
        }
        g.bench_function(BenchmarkId::new("webrtc-dtls", suite_name(suite)), |b| {
            b.iter(|| {
                rt.block_on(async {
                    let (ca, cb) = webrtc_util::conn::conn_pipe::pipe();
                    let client = DTLSConn::new(Arc::new(ca), w_config(&wc, suite), true, None);
                    let server = DTLSConn::new(Arc::new(cb), w_config(&ws, suite), false, None);
                    let (client, server) = tokio::join!(client, server);
                    let (client, server) = (client.unwrap(), server.unwrap());
                    let _ = client.close().await;
                    let _ = server.close().await;
                })
            })
        });
    }
    // The stateless answer to a fresh ClientHello (a new server connection per hello, as an
    // endpoint meeting an unknown address does).
    let sc = Arc::new(Config::new(Certificate::generate(&mut rng)));
    let cc = Arc::new(Config::new(Certificate::generate(&mut rng)));
    let mut crng = ChaCha20Rng::seed_from_u64(2);
    let mut client = Connection::client(
        cc,
        &[Fingerprint::from_bytes([0; 32])],
        Instant::now(),
        &mut crng,
    )
    .unwrap();
    let hello = client.poll_transmit().unwrap();
    let mut srng = ChaCha20Rng::seed_from_u64(3);
    g.bench_function(BenchmarkId::new("callsec", "hello-verify-request"), |b| {
        b.iter(|| {
            let mut server = Connection::server(
                sc.clone(),
                &[Fingerprint::from_bytes([0; 32])],
                ([198, 51, 100, 7], 5000).into(),
                &mut srng,
            )
            .unwrap();
            server
                .handle_datagram(Instant::now(), black_box(&hello))
                .unwrap();
            black_box(server.poll_transmit().unwrap())
        })
    });
    // The same answer from the endpoint-wide HelloVerifier, which is what a server meeting
    // unknown addresses runs in front of its connections: no connection is made at all.
    let verifier = HelloVerifier::new(&mut srng);
    assert!(matches!(
        verifier.check(([198, 51, 100, 7], 5000).into(), &hello),
        HelloCheck::Reply(_)
    ));
    g.bench_function(BenchmarkId::new("callsec", "hello-verifier"), |b| {
        b.iter(|| black_box(verifier.check(([198, 51, 100, 7], 5000).into(), black_box(&hello))))
    });
    g.finish();
}

criterion_group! { name = benches; config = callsec_benches::criterion(); targets = bench }
criterion_main!(benches);
