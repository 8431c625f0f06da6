//! Helpers shared by this crate's integration tests.
#![allow(dead_code, missing_docs, clippy::unwrap_used)]

use callsec_srtp::{Config, Context, MasterKey, ProtectionProfile};

pub fn pair(profile: ProtectionProfile, seed: u8, config: Config) -> (Context, Context) {
    let key: Vec<u8> = (0..16).map(|i| i ^ seed).collect();
    let salt: Vec<u8> = (0..profile.salt_len() as u8)
        .map(|i| i.wrapping_mul(7) ^ seed)
        .collect();
    let master = MasterKey::new(profile, &key, &salt).unwrap();
    (
        Context::new(&master, config.clone()).unwrap(),
        Context::new(&master, config).unwrap(),
    )
}

/// A plain RTP packet: 12-byte header, `payload` bytes of a pattern.
pub fn rtp(ssrc: u32, seq: u16, payload: usize) -> Vec<u8> {
    let mut p = vec![0x80, 0x6f];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend((0..payload).map(|i| (i as u8) ^ (seq as u8)));
    p
}

/// A plain RTCP receiver report of `len` bytes.
pub fn rtcp(ssrc: u32, len: usize) -> Vec<u8> {
    let mut p = vec![0x81, 201];
    p.extend_from_slice(&((len / 4 - 1) as u16).to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend((8..len).map(|i| i as u8));
    p
}

pub fn protect_rtp(ctx: &mut Context, plain: &[u8]) -> Vec<u8> {
    let mut buf = plain.to_vec();
    buf.resize(plain.len() + 16, 0);
    let n = ctx.protect_rtp(&mut buf, plain.len()).unwrap();
    buf.truncate(n);
    buf
}

pub fn protect_rtcp(ctx: &mut Context, plain: &[u8]) -> Vec<u8> {
    let mut buf = plain.to_vec();
    buf.resize(plain.len() + 20, 0);
    let n = ctx.protect_rtcp(&mut buf, plain.len()).unwrap();
    buf.truncate(n);
    buf
}
