//! Arbitrary datagrams into SRTCP unprotect, plus a protect → unprotect round trip.
#![no_main]

use callsec_srtp::{Config, Context, Error, MasterKey, ProtectionProfile};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, mut rest)) = data.split_first() else { return };
    let profile = ProtectionProfile::ALL[usize::from(selector & 1)];
    let master = MasterKey::new(profile, &[0x42; 16], &[0x24; 14][..profile.salt_len()]).unwrap();
    let mut config = Config::default();
    config.encrypt_rtcp = selector & 2 == 0;
    config.max_streams = 4;
    let mut rx = Context::new(&master, config.clone()).unwrap();
    let mut tx = Context::new(&master, config.clone()).unwrap();
    let mut echo = Context::new(&master, config).unwrap();
    let mut buf = [0u8; 2048];
    while let Some((&n, tail)) = rest.split_first() {
        let n = (usize::from(n & 0x7f) * if n & 0x80 != 0 { 8 } else { 1 }).min(tail.len());
        let (packet, tail) = tail.split_at(n);
        rest = tail;

        buf[..n].copy_from_slice(packet);
        if let Ok(m) = rx.unprotect_rtcp(&mut buf[..n]) {
            assert!(m <= n);
        }

        buf[..n].copy_from_slice(packet);
        if let Ok(m) = tx.protect_rtcp(&mut buf, n) {
            assert_eq!(m, n + profile.rtcp_overhead());
            match echo.unprotect_rtcp(&mut buf[..m]) {
                Ok(k) => assert_eq!(&buf[..k], packet),
                Err(Error::TooManyStreams) => unreachable!("same SSRCs as the sender"),
                Err(e) => panic!("protected packet refused: {e:?}"),
            }
        }
    }
});
