//! The SRTP/SRTCP context: one master key, one direction, any number of SSRCs.

use crate::crypto::{Labels, Transform};
use crate::packet::{RTCP_HEADER_LEN, rtcp_ssrc, rtp_header};
use crate::replay::{MAX_REPLAY_WINDOW, ReplayWindow};
use crate::{Error, Malformed, MasterKey, ProtectionProfile, Provider};

/// RFC 3711 §9.2: at most 2^48 SRTP packets per master key.
pub const MAX_SRTP_PACKETS: u64 = 1 << 48;
/// RFC 3711 §9.2: at most 2^31 SRTCP packets per master key.
pub const MAX_SRTCP_PACKETS: u64 = 1 << 31;

/// Settings of a [`Context`]. Start from [`Config::default`] and change fields.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// Replay window per SSRC, in packets: a power of two from 64 to 32768 (default 128, as
    /// libsrtp). Applies to SRTP and SRTCP alike.
    pub replay_window: usize,
    /// Most SSRCs one context tracks, for RTP and for RTCP each (default 64). A packet for
    /// another SSRC gets [`Error::TooManyStreams`]: state never grows without bound.
    pub max_streams: usize,
    /// Whether protected SRTCP is encrypted (E flag set, the default) or only authenticated.
    /// Unprotect accepts both forms whatever this says (RFC 3711 §3.4).
    pub encrypt_rtcp: bool,
    /// SRTP packets this master key may process before [`Error::KeyExhausted`]: at most and
    /// by default 2^48 (RFC 3711 §9.2); set lower to force earlier re-keying.
    pub max_srtp_packets: u64,
    /// SRTCP packets this master key may process: at most and by default 2^31.
    pub max_srtcp_packets: u64,
    /// Which library computes AES-128-GCM (default [`Provider::DEFAULT`]: `ring` when the
    /// `ring` feature is on). AES128_CM_HMAC_SHA1_80 always uses RustCrypto, the fastest
    /// measured for it. Both providers compute the same bytes.
    pub provider: Provider,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            replay_window: 128,
            max_streams: 64,
            encrypt_rtcp: true,
            max_srtp_packets: MAX_SRTP_PACKETS,
            max_srtcp_packets: MAX_SRTCP_PACKETS,
            provider: Provider::DEFAULT,
        }
    }
}

impl Config {
    fn validate(&self) -> Result<(), Error> {
        if !self.replay_window.is_power_of_two()
            || !(64..=MAX_REPLAY_WINDOW).contains(&self.replay_window)
        {
            return Err(Error::InvalidConfig(
                "replay_window must be a power of two in 64..=32768",
            ));
        }
        if self.max_streams == 0 {
            return Err(Error::InvalidConfig("max_streams must be at least 1"));
        }
        if self.max_srtp_packets > MAX_SRTP_PACKETS {
            return Err(Error::InvalidConfig("max_srtp_packets is at most 2^48"));
        }
        if self.max_srtcp_packets > MAX_SRTCP_PACKETS {
            return Err(Error::InvalidConfig("max_srtcp_packets is at most 2^31"));
        }
        Ok(())
    }
}

/// Protects or unprotects the SRTP and SRTCP packets of one direction of a session.
///
/// Create one context per master key: with DTLS-SRTP, one for what you send (your write key)
/// and one for what you receive (the peer's write key). Per-SSRC state (rollover counter,
/// replay window, SRTCP index) is kept inside; a receiving context creates it only for a
/// packet that authenticates, and no failed call changes any state.
///
/// All calls work in place on the caller's buffer and allocate nothing once an SSRC is known.
pub struct Context {
    profile: ProtectionProfile,
    rtp: Transform,
    rtcp: Transform,
    rtp_streams: Streams<RtpStream>,
    rtcp_streams: Streams<RtcpStream>,
    srtp_packets: u64,
    srtcp_packets: u64,
    config: Config,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("profile", &self.profile)
            .field("rtp_streams", &self.rtp_streams.len())
            .field("rtcp_streams", &self.rtcp_streams.len())
            .finish_non_exhaustive()
    }
}

impl Context {
    /// A context for `master` (its profile decides the transform) with `config`.
    pub fn new(master: &MasterKey, config: Config) -> Result<Self, Error> {
        config.validate()?;
        Ok(Self::with_transforms(
            master.profile(),
            Transform::new(master, Labels::Rtp, config.provider),
            Transform::new(master, Labels::Rtcp, config.provider),
            config,
        ))
    }

    pub(crate) fn with_transforms(
        profile: ProtectionProfile,
        rtp: Transform,
        rtcp: Transform,
        config: Config,
    ) -> Self {
        Context {
            profile,
            rtp,
            rtcp,
            rtp_streams: Streams::default(),
            rtcp_streams: Streams::default(),
            srtp_packets: 0,
            srtcp_packets: 0,
            config,
        }
    }

    /// The context's protection profile.
    pub fn profile(&self) -> ProtectionProfile {
        self.profile
    }

    /// Protects the RTP packet in `buf[..len]` in place and returns the SRTP packet's length:
    /// `len` plus [`ProtectionProfile::rtp_overhead`], which `buf` must have room for.
    ///
    /// The SRTP index comes from the sequence number and the SSRC's rollover counter, which
    /// follows 16-bit wraps (RFC 3711 §3.3.1); a new SSRC starts with ROC 0.
    pub fn protect_rtp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, Error> {
        let packet = buf
            .get(..len)
            .ok_or(Error::BufferTooSmall { needed: len })?;
        let header = rtp_header(packet)?;
        let tag_len = self.rtp.tag_len();
        let needed = len + tag_len;
        if buf.len() < needed {
            return Err(Error::BufferTooSmall { needed });
        }
        let (slot, index) = self.rtp_index(header.ssrc, header.seq, false)?;

        let (packet, tail) = buf.split_at_mut(len);
        match &self.rtp {
            // RFC 3711 §3.3: encrypt the payload, then authenticate header || payload || ROC.
            Transform::Cm(t) => {
                t.apply_keystream(header.ssrc, index, &mut packet[header.len..]);
                let roc = ((index >> 16) as u32).to_be_bytes();
                tail[..tag_len].copy_from_slice(&t.tag(packet, &roc));
            }
            // RFC 7714 §8: the header is the AAD, the payload the plaintext.
            Transform::Gcm(t) => {
                let (aad, payload) = packet.split_at_mut(header.len);
                tail[..tag_len].copy_from_slice(&t.seal(header.ssrc, index, aad, payload));
            }
        }

        self.rtp_commit(slot, header.ssrc, index);
        Ok(needed)
    }

    /// Verifies and decrypts the SRTP packet filling `buf`, in place; returns the length of
    /// the RTP packet now in `buf[..n]`.
    ///
    /// The tag is checked in constant time. A packet that fails for any reason (malformed,
    /// replayed, not authentic) changes no state, and a packet that fails authentication
    /// leaves no plaintext in `buf`: its payload bytes are left as ciphertext (RustCrypto,
    /// which checks before it decrypts) or zeros (`ring`, which decrypts and checks in one
    /// pass and clears the output on failure). Either way, drop them.
    pub fn unprotect_rtp(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
        let header = rtp_header(buf)?;
        let tag_len = self.rtp.tag_len();
        let Some(len) = buf.len().checked_sub(tag_len).filter(|&n| n >= header.len) else {
            return Err(Malformed::TooShort.into());
        };
        let (slot, index) = self.rtp_index(header.ssrc, header.seq, true)?;

        let (packet, tag) = buf.split_at_mut(len);
        match &self.rtp {
            Transform::Cm(t) => {
                let roc = ((index >> 16) as u32).to_be_bytes();
                t.verify(packet, &roc, tag)?;
                t.apply_keystream(header.ssrc, index, &mut packet[header.len..]);
            }
            Transform::Gcm(t) => {
                let (aad, payload) = packet.split_at_mut(header.len);
                let tag: &[u8; 16] = (&*tag)
                    .try_into()
                    .map_err(|_| Error::AuthenticationFailed)?;
                t.open(header.ssrc, index, aad, payload, tag)?;
            }
        }

        self.rtp_commit(slot, header.ssrc, index);
        Ok(len)
    }

    /// The SRTP index of `(ssrc, seq)` and where its stream is (or would be inserted), after
    /// the checks that come before any cryptography: the replay window when `receiving`, the
    /// stream limit and the key lifetime. Changes nothing.
    #[inline]
    fn rtp_index(
        &self,
        ssrc: u32,
        seq: u16,
        receiving: bool,
    ) -> Result<(Result<usize, usize>, u64), Error> {
        let slot = self.rtp_streams.find(ssrc);
        let index = match slot {
            Ok(i) => {
                let window = &self.rtp_streams.at(i).window;
                let index = estimate_index(window.top(), seq).ok_or(Error::Replayed)?;
                if receiving {
                    window.check(index)?;
                }
                index
            }
            Err(_) if self.rtp_streams.len() >= self.config.max_streams => {
                return Err(Error::TooManyStreams);
            }
            // RFC 3711 §3.3.1: a new stream starts with ROC 0 (what WebRTC senders use).
            Err(_) => u64::from(seq),
        };
        if self.srtp_packets >= self.config.max_srtp_packets {
            return Err(Error::KeyExhausted);
        }
        Ok((slot, index))
    }

    /// Records a packet that was protected or authenticated: the key's packet count, the
    /// stream's window (and so its ROC), or a new stream.
    #[inline]
    fn rtp_commit(&mut self, slot: Result<usize, usize>, ssrc: u32, index: u64) {
        self.srtp_packets += 1;
        match slot {
            Ok(i) => self.rtp_streams.at_mut(i).window.accept(index),
            Err(at) => {
                let window = ReplayWindow::new(self.config.replay_window, index);
                self.rtp_streams.insert(at, ssrc, RtpStream { window });
            }
        }
    }

    /// Protects the (compound) RTCP packet in `buf[..len]` in place and returns the SRTCP
    /// packet's length: `len` plus [`ProtectionProfile::rtcp_overhead`].
    ///
    /// Each sender SSRC has its own 31-bit SRTCP index, starting at 0.
    pub fn protect_rtcp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, Error> {
        let packet = buf
            .get(..len)
            .ok_or(Error::BufferTooSmall { needed: len })?;
        let ssrc = rtcp_ssrc(packet)?;
        let tag_len = self.rtcp.tag_len();
        let needed = len + 4 + tag_len;
        if buf.len() < needed {
            return Err(Error::BufferTooSmall { needed });
        }
        let slot = self.rtcp_streams.find(ssrc);
        let index = match slot {
            Ok(i) => self.rtcp_streams.at(i).next,
            Err(_) if self.rtcp_streams.len() >= self.config.max_streams => {
                return Err(Error::TooManyStreams);
            }
            Err(_) => 0,
        };
        if index >= MAX_SRTCP_PACKETS || self.srtcp_packets >= self.config.max_srtcp_packets {
            return Err(Error::KeyExhausted);
        }
        let encrypt = self.config.encrypt_rtcp;
        // RFC 3711 §3.4: E flag (most significant bit) and the 31-bit SRTCP index.
        let e_index = ((u32::from(encrypt) << 31) | index as u32).to_be_bytes();

        let buf = &mut buf[..needed];
        match &self.rtcp {
            // RFC 3711 §3.4: packet || E+index || tag, the tag over all before it.
            Transform::Cm(t) => {
                if encrypt {
                    t.apply_keystream(ssrc, index, &mut buf[RTCP_HEADER_LEN..len]);
                }
                buf[len..len + 4].copy_from_slice(&e_index);
                let tag = t.tag(&buf[..len + 4], &[]);
                buf[len + 4..].copy_from_slice(&tag);
            }
            // RFC 7714 §9: packet || tag || E+index. Encrypted: AAD = header || E+index.
            // Unencrypted (§9.2): AAD = whole packet || E+index, empty plaintext.
            Transform::Gcm(t) => {
                if encrypt {
                    let mut aad = [0u8; RTCP_HEADER_LEN + 4];
                    aad[..RTCP_HEADER_LEN].copy_from_slice(&buf[..RTCP_HEADER_LEN]);
                    aad[RTCP_HEADER_LEN..].copy_from_slice(&e_index);
                    let tag = t.seal(ssrc, index, &aad, &mut buf[RTCP_HEADER_LEN..len]);
                    buf[len..len + 16].copy_from_slice(&tag);
                    buf[len + 16..].copy_from_slice(&e_index);
                } else {
                    buf[len..len + 4].copy_from_slice(&e_index);
                    let tag = t.seal(ssrc, index, &buf[..len + 4], &mut []);
                    buf[len + 4..].copy_from_slice(&tag);
                    // Move E+index behind the tag, where the wire format wants it.
                    buf[len..].rotate_left(4);
                }
            }
        }

        self.srtcp_packets += 1;
        match slot {
            Ok(i) => self.rtcp_streams.at_mut(i).next = index + 1,
            Err(at) => self.rtcp_streams.insert(
                at,
                ssrc,
                RtcpStream {
                    next: 1,
                    window: None,
                },
            ),
        }
        Ok(needed)
    }

    /// Verifies and (if its E flag is set) decrypts the SRTCP packet filling `buf`, in place;
    /// returns the length of the RTCP packet now in `buf[..n]`. Failures change no state.
    pub fn unprotect_rtcp(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
        let ssrc = rtcp_ssrc(buf)?;
        let tag_len = self.rtcp.tag_len();
        let Some(len) = buf
            .len()
            .checked_sub(4 + tag_len)
            .filter(|&n| n >= RTCP_HEADER_LEN)
        else {
            return Err(Malformed::TrailerPastEnd.into());
        };
        let e_at = match self.rtcp {
            Transform::Cm(_) => len,
            Transform::Gcm(_) => len + tag_len,
        };
        let e_index = u32::from_be_bytes([buf[e_at], buf[e_at + 1], buf[e_at + 2], buf[e_at + 3]]);
        let encrypted = e_index >> 31 == 1;
        let index = u64::from(e_index & 0x7fff_ffff);

        let slot = self.rtcp_streams.find(ssrc);
        match slot {
            Ok(i) => {
                if let Some(window) = &self.rtcp_streams.at(i).window {
                    window.check(index)?;
                }
            }
            Err(_) if self.rtcp_streams.len() >= self.config.max_streams => {
                return Err(Error::TooManyStreams);
            }
            Err(_) => {}
        }
        if self.srtcp_packets >= self.config.max_srtcp_packets {
            return Err(Error::KeyExhausted);
        }

        match &self.rtcp {
            Transform::Cm(t) => {
                let (data, tag) = buf.split_at_mut(len + 4);
                t.verify(data, &[], tag)?;
                if encrypted {
                    t.apply_keystream(ssrc, index, &mut data[RTCP_HEADER_LEN..len]);
                }
            }
            Transform::Gcm(t) => {
                let mut tag = [0u8; 16];
                tag.copy_from_slice(&buf[len..len + 16]);
                if encrypted {
                    let mut aad = [0u8; RTCP_HEADER_LEN + 4];
                    aad[..RTCP_HEADER_LEN].copy_from_slice(&buf[..RTCP_HEADER_LEN]);
                    aad[RTCP_HEADER_LEN..].copy_from_slice(&e_index.to_be_bytes());
                    t.open(ssrc, index, &aad, &mut buf[RTCP_HEADER_LEN..len], &tag)?;
                } else {
                    // AAD = packet || E+index: bring E+index next to the packet, check, and
                    // put the bytes back as they were if the check fails.
                    buf[len..].rotate_right(4);
                    let result = t.open(ssrc, index, &buf[..len + 4], &mut [], &tag);
                    if result.is_err() {
                        buf[len..].rotate_left(4);
                    }
                    result?;
                }
            }
        }

        self.srtcp_packets += 1;
        let size = self.config.replay_window;
        match slot {
            Ok(i) => match &mut self.rtcp_streams.at_mut(i).window {
                Some(window) => window.accept(index),
                window @ None => *window = Some(ReplayWindow::new(size, index)),
            },
            Err(at) => self.rtcp_streams.insert(
                at,
                ssrc,
                RtcpStream {
                    next: 0,
                    window: Some(ReplayWindow::new(size, index)),
                },
            ),
        }
        Ok(len)
    }
}

/// RFC 3711 §3.3.1 and Appendix A: the index of `seq` given the highest index seen so far,
/// choosing ROC - 1, ROC or ROC + 1 so that the packet lands nearest the highest one.
/// `None` where the index would fall before 0 or past 2^48 - 1.
fn estimate_index(highest: u64, seq: u16) -> Option<u64> {
    let roc = (highest >> 16) as i64;
    let s_l = i64::from(highest as u16);
    let seq_i = i64::from(seq);
    let v = if s_l < 32768 {
        if seq_i - s_l > 32768 { roc - 1 } else { roc }
    } else if s_l - 32768 > seq_i {
        roc + 1
    } else {
        roc
    };
    if !(0..=i64::from(u32::MAX)).contains(&v) {
        return None;
    }
    Some(((v as u64) << 16) | u64::from(seq))
}

/// SRTP receive/send state of one SSRC: the window's top is the highest index (and so ROC).
struct RtpStream {
    window: ReplayWindow,
}

/// SRTCP state of one SSRC: the next index to send, or the window of indices received.
struct RtcpStream {
    next: u64,
    window: Option<ReplayWindow>,
}

/// Per-SSRC state, sorted by SSRC for a binary search per packet. Grows only when a new
/// SSRC's first packet succeeds, and never past `Config::max_streams`.
struct Streams<T> {
    ssrcs: Vec<u32>,
    states: Vec<T>,
}

impl<T> Default for Streams<T> {
    fn default() -> Self {
        Streams {
            ssrcs: Vec::new(),
            states: Vec::new(),
        }
    }
}

impl<T> Streams<T> {
    fn len(&self) -> usize {
        self.ssrcs.len()
    }

    /// `Ok(position)` of `ssrc`, or `Err(position)` where it would be inserted.
    fn find(&self, ssrc: u32) -> Result<usize, usize> {
        self.ssrcs.binary_search(&ssrc)
    }

    fn at(&self, i: usize) -> &T {
        &self.states[i]
    }

    fn at_mut(&mut self, i: usize) -> &mut T {
        &mut self.states[i]
    }

    fn insert(&mut self, at: usize, ssrc: u32, state: T) {
        self.ssrcs.insert(at, ssrc);
        self.states.insert(at, state);
    }
}

#[cfg(test)]
impl Context {
    /// Sets the next SRTCP index for `ssrc` (test vectors start mid-stream).
    pub(crate) fn set_rtcp_index(&mut self, ssrc: u32, next: u64) {
        match self.rtcp_streams.find(ssrc) {
            Ok(i) => self.rtcp_streams.at_mut(i).next = next,
            Err(at) => self
                .rtcp_streams
                .insert(at, ssrc, RtcpStream { next, window: None }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_estimation_rfc3711_appendix_a() {
        assert_eq!(estimate_index(10, 11), Some(11));
        assert_eq!(estimate_index(10, 5), Some(5));
        assert_eq!(estimate_index(65535, 0), Some(65536)); // wrap forward
        assert_eq!(estimate_index(65536 + 2, 65534), Some(65534)); // late packet, old ROC
        assert_eq!(estimate_index(5, 65530), None); // before the stream began
        assert_eq!(estimate_index(100, 100 + 32768), Some(100 + 32768));
        assert_eq!(estimate_index(100, 100 + 32769), None);
        assert_eq!(
            estimate_index((7 << 16) | 40000, 7231),
            Some((8 << 16) | 7231)
        );
        assert_eq!(
            estimate_index((7 << 16) | 40000, 7232),
            Some((7 << 16) | 7232)
        );
        assert_eq!(estimate_index((u64::from(u32::MAX) << 16) | 65535, 0), None); // 2^48
    }
}
