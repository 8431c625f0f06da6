//! Arbitrary datagrams into SRTP unprotect, plus a protect → unprotect round trip on the
//! same bytes: unprotect never panics, and whatever protect accepts unprotects back unchanged
//! (or is refused as a replay, when the input repeats a sequence number).
#![no_main]

use callsec_srtp::{Config, Context, Error, MasterKey, ProtectionProfile};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, mut rest)) = data.split_first() else { return };
    let profile = ProtectionProfile::ALL[usize::from(selector & 1)];
    let master = MasterKey::new(profile, &[0x42; 16], &[0x24; 14][..profile.salt_len()]).unwrap();
    let mut config = Config::default();
    config.replay_window = 64 << (selector >> 1 & 7);
    config.max_streams = 4;
    let mut rx = Context::new(&master, config.clone()).unwrap();
    let mut tx = Context::new(&master, config.clone()).unwrap();
    let mut echo = Context::new(&master, config).unwrap();
    let mut buf = [0u8; 2048];
    // Length-prefixed packets: one byte of length (times 8 for long ones), then the bytes.
    while let Some((&n, tail)) = rest.split_first() {
        let n = (usize::from(n & 0x7f) * if n & 0x80 != 0 { 8 } else { 1 }).min(tail.len());
        let (packet, tail) = tail.split_at(n);
        rest = tail;

        buf[..n].copy_from_slice(packet);
        if let Ok(m) = rx.unprotect_rtp(&mut buf[..n]) {
            assert!(m <= n);
        }

        buf[..n].copy_from_slice(packet);
        if let Ok(m) = tx.protect_rtp(&mut buf, n) {
            assert_eq!(m, n + profile.rtp_overhead());
            match echo.unprotect_rtp(&mut buf[..m]) {
                Ok(k) => assert_eq!(&buf[..k], packet),
                Err(Error::Replayed) => {}
                Err(e) => panic!("protected packet refused: {e:?}"),
            }
        }
    }
});
