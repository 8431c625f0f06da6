//! A minimal, safe shim over the system libsrtp2 (Debian `libsrtp2-dev`).
//!
//! It exists only so that tests and benchmarks can compare callsec against libsrtp. It is
//! not part of callsec's implementation, which is why `unsafe` lives here and nowhere else.
#![allow(unsafe_code)]

use std::os::raw::{c_int, c_uint, c_ulong, c_void};
use std::sync::Once;

/// The two profiles callsec compares on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    /// `SRTP_AES128_CM_HMAC_SHA1_80`: 16-byte key, 14-byte salt.
    Aes128CmHmacSha1_80,
    /// `SRTP_AEAD_AES_128_GCM`: 16-byte key, 12-byte salt.
    AeadAes128Gcm,
}

/// Which way a session works: libsrtp binds a session to one direction with its wildcard SSRC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Protects (`ssrc_any_outbound`).
    Outbound,
    /// Unprotects (`ssrc_any_inbound`).
    Inbound,
}

/// libsrtp writes up to this many bytes past the packet it protects (`SRTP_MAX_TRAILER_LEN`
/// plus 4 for the SRTCP index); the shim refuses buffers without that much spare room.
pub const MAX_TRAILER: usize = 16 + 128 + 4;

/// A libsrtp status code other than `srtp_err_status_ok`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Error(pub i32);

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "libsrtp2 error status {}", self.0)
    }
}

impl std::error::Error for Error {}

/// One libsrtp session (`srtp_t`) with one master key, for any SSRC in one direction.
pub struct Session {
    ctx: *mut c_void,
}

// SAFETY: an srtp_t is a heap object owned by this handle alone; libsrtp keeps no thread
// affinity for it, so it may move between threads (it is not shared: no Sync).
unsafe impl Send for Session {}

impl Session {
    /// A session for `profile` with the master `key` (16 bytes) and `salt` (14 or 12 bytes),
    /// replay window `window` packets (libsrtp's default is 128).
    pub fn new(
        profile: Profile,
        direction: Direction,
        key: &[u8],
        salt: &[u8],
        window: usize,
    ) -> Result<Session, Error> {
        init();
        let salt_len = match profile {
            Profile::Aes128CmHmacSha1_80 => 14,
            Profile::AeadAes128Gcm => 12,
        };
        assert_eq!(key.len(), 16, "libsrtp2 shim: key must be 16 bytes");
        assert_eq!(salt.len(), salt_len, "libsrtp2 shim: wrong salt length");
        let mut master = Vec::with_capacity(30);
        master.extend_from_slice(key);
        master.extend_from_slice(salt);
        master.resize(30, 0);

        let mut policy = SrtpPolicy::zeroed();
        // SAFETY: the setters only write the crypto policy struct they are given.
        unsafe {
            match profile {
                Profile::Aes128CmHmacSha1_80 => {
                    srtp_crypto_policy_set_rtp_default(&mut policy.rtp);
                    srtp_crypto_policy_set_rtp_default(&mut policy.rtcp);
                }
                Profile::AeadAes128Gcm => {
                    srtp_crypto_policy_set_aes_gcm_128_16_auth(&mut policy.rtp);
                    srtp_crypto_policy_set_aes_gcm_128_16_auth(&mut policy.rtcp);
                }
            }
        }
        policy.ssrc = SrtpSsrc {
            kind: match direction {
                Direction::Outbound => 3,
                Direction::Inbound => 2,
            },
            value: 0,
        };
        policy.key = master.as_mut_ptr();
        policy.window_size = window as c_ulong;
        let mut ctx = std::ptr::null_mut();
        // SAFETY: policy is fully initialised and outlives the call; libsrtp copies the key.
        let status = unsafe { srtp_create(&mut ctx, &policy) };
        check(status)?;
        Ok(Session { ctx })
    }

    /// Protects the RTP packet in `buf[..len]`; returns the SRTP length.
    pub fn protect_rtp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, Error> {
        self.call(buf, len, srtp_protect, true)
    }

    /// Unprotects the SRTP packet in `buf[..len]`; returns the RTP length.
    pub fn unprotect_rtp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, Error> {
        self.call(buf, len, srtp_unprotect, false)
    }

    /// Protects the RTCP packet in `buf[..len]`; returns the SRTCP length.
    pub fn protect_rtcp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, Error> {
        self.call(buf, len, srtp_protect_rtcp, true)
    }

    /// Unprotects the SRTCP packet in `buf[..len]`; returns the RTCP length.
    pub fn unprotect_rtcp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, Error> {
        self.call(buf, len, srtp_unprotect_rtcp, false)
    }

    fn call(
        &mut self,
        buf: &mut [u8],
        len: usize,
        f: unsafe extern "C" fn(*mut c_void, *mut c_void, *mut c_int) -> c_int,
        grows: bool,
    ) -> Result<usize, Error> {
        let room = if grows { len + MAX_TRAILER } else { len };
        assert!(
            buf.len() >= room,
            "libsrtp2 shim: buffer needs {room} bytes"
        );
        let mut n = c_int::try_from(len).map_err(|_| Error(-1))?;
        // SAFETY: ctx is a live session; buf holds `len` packet bytes plus, when protecting,
        // the MAX_TRAILER bytes libsrtp may write past them (checked above).
        let status = unsafe { f(self.ctx, buf.as_mut_ptr().cast(), &mut n) };
        check(status)?;
        usize::try_from(n).map_err(|_| Error(-1))
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // SAFETY: ctx came from srtp_create and is freed exactly once.
        unsafe {
            srtp_dealloc(self.ctx);
        }
    }
}

fn check(status: c_int) -> Result<(), Error> {
    if status == 0 {
        Ok(())
    } else {
        Err(Error(status))
    }
}

fn init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        // SAFETY: called once, before any session exists.
        let status = unsafe { srtp_init() };
        assert_eq!(status, 0, "srtp_init failed");
    });
}

// Mirrors of libsrtp 2.x's public structs (srtp2/srtp.h).
#[repr(C)]
#[derive(Clone, Copy)]
struct SrtpCryptoPolicy {
    cipher_type: c_uint,
    cipher_key_len: c_int,
    auth_type: c_uint,
    auth_key_len: c_int,
    auth_tag_len: c_int,
    sec_serv: c_int,
}

#[repr(C)]
struct SrtpSsrc {
    kind: c_int,
    value: c_uint,
}

#[repr(C)]
struct SrtpPolicy {
    ssrc: SrtpSsrc,
    rtp: SrtpCryptoPolicy,
    rtcp: SrtpCryptoPolicy,
    key: *mut u8,
    keys: *mut c_void,
    num_master_keys: c_ulong,
    deprecated_ekt: *mut c_void,
    window_size: c_ulong,
    allow_repeat_tx: c_int,
    enc_xtn_hdr: *mut c_int,
    enc_xtn_hdr_count: c_int,
    next: *mut SrtpPolicy,
}

impl SrtpPolicy {
    fn zeroed() -> Self {
        let crypto = SrtpCryptoPolicy {
            cipher_type: 0,
            cipher_key_len: 0,
            auth_type: 0,
            auth_key_len: 0,
            auth_tag_len: 0,
            sec_serv: 0,
        };
        SrtpPolicy {
            ssrc: SrtpSsrc { kind: 0, value: 0 },
            rtp: crypto,
            rtcp: crypto,
            key: std::ptr::null_mut(),
            keys: std::ptr::null_mut(),
            num_master_keys: 0,
            deprecated_ekt: std::ptr::null_mut(),
            window_size: 0,
            allow_repeat_tx: 0,
            enc_xtn_hdr: std::ptr::null_mut(),
            enc_xtn_hdr_count: 0,
            next: std::ptr::null_mut(),
        }
    }
}

#[link(name = "srtp2")]
unsafe extern "C" {
    fn srtp_init() -> c_int;
    fn srtp_create(session: *mut *mut c_void, policy: *const SrtpPolicy) -> c_int;
    fn srtp_dealloc(session: *mut c_void) -> c_int;
    fn srtp_protect(ctx: *mut c_void, hdr: *mut c_void, len: *mut c_int) -> c_int;
    fn srtp_unprotect(ctx: *mut c_void, hdr: *mut c_void, len: *mut c_int) -> c_int;
    fn srtp_protect_rtcp(ctx: *mut c_void, hdr: *mut c_void, len: *mut c_int) -> c_int;
    fn srtp_unprotect_rtcp(ctx: *mut c_void, hdr: *mut c_void, len: *mut c_int) -> c_int;
    fn srtp_crypto_policy_set_rtp_default(p: *mut SrtpCryptoPolicy);
    fn srtp_crypto_policy_set_aes_gcm_128_16_auth(p: *mut SrtpCryptoPolicy);
}
