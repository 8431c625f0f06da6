//! What the server takes from a participant's SDP.

use std::io::Cursor;
use std::net::SocketAddr;

use callsec_dtls::Fingerprint;
use callsec_ice::Credentials;
use sdp::description::common::Attribute;
use sdp::description::media::MediaDescription;
use sdp::description::session::SessionDescription;

use super::{
    Direction, Extension, ExtensionMap, Kind, MAX_SECTIONS, MAX_SSRCS, Mid, SdpError, Setup,
};

/// What the server takes from a participant's SDP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remote {
    /// ICE credentials (checked against RFC 8839's grammar).
    pub ice: Credentials,
    /// The sha-256 certificate fingerprints.
    pub fingerprints: Vec<Fingerprint>,
    /// The participant's DTLS role.
    pub setup: Setup,
    /// The m-sections, in order.
    pub media: Vec<RemoteMedia>,
    /// The first UDP host candidate of the first m-section, if any.
    pub candidate: Option<SocketAddr>,
}

/// One m-section as the participant described it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteMedia {
    /// The mid.
    pub mid: Mid,
    /// Audio or video, or `None` for anything else (refused).
    pub kind: Option<Kind>,
    /// Port 0.
    pub stopped: bool,
    /// Its direction.
    pub direction: Direction,
    /// Its payload type for Opus (audio) or VP8 (video), if it has the codec.
    pub pt: Option<u8>,
    /// Its header-extension ids for the extensions the server knows.
    pub extensions: ExtensionMap,
    /// Every header-extension id it maps, known URI or not (bit `id`).
    pub ext_ids: u16,
    /// Media SSRCs (FID repair SSRCs left out).
    pub ssrcs: Vec<u32>,
    /// Every payload type on its m-line (bit `pt`), any codec.
    pub payload_types: u128,
    /// `a=rtcp-mux` (RFC 8858: RTP and RTCP on one port).
    pub rtcp_mux: bool,
    /// Whether its mid is in the BUNDLE group of the description's first live audio or
    /// video m-line (RFC 8843).
    pub bundled: bool,
}

fn valid_ice_chars(s: &str, min: usize) -> bool {
    (min..=256).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
}

fn attr<'a>(attrs: &'a [Attribute], key: &str) -> Option<&'a str> {
    attrs
        .iter()
        .find(|a| a.key == key)
        .and_then(|a| a.value.as_deref())
}

impl Remote {
    /// Parses a participant's offer or answer.
    pub fn parse(text: &str) -> Result<Self, SdpError> {
        let session = SessionDescription::unmarshal(&mut Cursor::new(text.as_bytes()))
            .map_err(|_| SdpError::Syntax)?;
        if session.media_descriptions.is_empty() {
            return Err(SdpError::Invalid("no m-line"));
        }
        if session.media_descriptions.len() > MAX_SECTIONS {
            return Err(SdpError::Unsupported("too many m-lines"));
        }
        let level = |m: &MediaDescription, key: &str| -> Option<String> {
            attr(&m.attributes, key)
                .or_else(|| attr(&session.attributes, key))
                .map(str::to_owned)
        };
        let first = &session.media_descriptions[0];
        let ufrag = level(first, "ice-ufrag").ok_or(SdpError::Invalid("ice-ufrag"))?;
        let pwd = level(first, "ice-pwd").ok_or(SdpError::Invalid("ice-pwd"))?;
        if !valid_ice_chars(&ufrag, 4) {
            return Err(SdpError::Invalid("ice-ufrag"));
        }
        if !valid_ice_chars(&pwd, 22) {
            return Err(SdpError::Invalid("ice-pwd"));
        }
        let mut fingerprints = Vec::new();
        for a in first.attributes.iter().chain(&session.attributes) {
            if a.key == "fingerprint" {
                let value = a.value.as_deref().unwrap_or("");
                if value
                    .split_once(' ')
                    .is_some_and(|(alg, _)| alg.eq_ignore_ascii_case("sha-256"))
                {
                    let fp = value
                        .parse()
                        .map_err(|_| SdpError::Invalid("fingerprint"))?;
                    if !fingerprints.contains(&fp) {
                        fingerprints.push(fp);
                    }
                }
            }
        }
        if fingerprints.is_empty() {
            return Err(SdpError::Unsupported("no sha-256 fingerprint"));
        }
        let setup = match level(first, "setup").as_deref() {
            Some("actpass") => Setup::ActPass,
            Some("active") => Setup::Active,
            Some("passive") => Setup::Passive,
            _ => return Err(SdpError::Invalid("setup")),
        };
        let mut media = Vec::with_capacity(session.media_descriptions.len());
        for m in &session.media_descriptions {
            media.push(parse_media(m)?);
        }
        for (i, m) in media.iter().enumerate() {
            if media[..i].iter().any(|o| o.mid == m.mid) {
                return Err(SdpError::Invalid("duplicate mid"));
            }
        }
        // RFC 8843 §7: the BUNDLE group the transport is negotiated for is the one holding
        // the first live audio or video m-line; every other live one must be in it too.
        let groups: Vec<Vec<&str>> = session
            .attributes
            .iter()
            .filter(|a| a.key == "group")
            .filter_map(|a| {
                let mut words = a.value.as_deref()?.split_ascii_whitespace();
                (words.next() == Some("BUNDLE")).then(|| words.collect())
            })
            .collect();
        let first_live = media.iter().find(|m| m.kind.is_some() && !m.stopped);
        if let Some(first) = first_live
            && let Some(group) = groups.iter().find(|g| g.contains(&first.mid.as_str()))
        {
            for m in &mut media {
                m.bundled = group.contains(&m.mid.as_str());
            }
        }
        let candidate = first
            .attributes
            .iter()
            .filter(|a| a.key == "candidate")
            .find_map(|a| parse_host_candidate(a.value.as_deref()?));
        Ok(Self {
            ice: Credentials { ufrag, pwd },
            fingerprints,
            setup,
            media,
            candidate,
        })
    }
}

impl Remote {
    /// Refuses a description the server cannot honour: it sends and receives every live
    /// audio and video m-line on one 5-tuple, so each must be in the one BUNDLE group
    /// (RFC 8843) and multiplex RTCP with RTP (RFC 8858). Data channel and stopped m-lines
    /// are not checked (the server refuses those anyway).
    pub fn check_transport(&self) -> Result<(), SdpError> {
        for m in self.media.iter().filter(|m| m.kind.is_some() && !m.stopped) {
            if !m.bundled {
                return Err(SdpError::Unsupported(
                    "every audio and video m-line must be in one BUNDLE group (RFC 8843)",
                ));
            }
            if !m.rtcp_mux {
                return Err(SdpError::Unsupported(
                    "every audio and video m-line must have a=rtcp-mux (RFC 8858)",
                ));
            }
        }
        Ok(())
    }
}

/// `foundation component udp priority address port typ host ...` (RFC 8839 §5.1).
fn parse_host_candidate(value: &str) -> Option<SocketAddr> {
    let f: Vec<&str> = value.split(' ').take(8).collect();
    if f.len() < 8 || !f[2].eq_ignore_ascii_case("udp") || f[6] != "typ" || f[7] != "host" {
        return None;
    }
    Some(SocketAddr::new(f[4].parse().ok()?, f[5].parse().ok()?))
}

fn parse_media(m: &MediaDescription) -> Result<RemoteMedia, SdpError> {
    let mid = Mid::new(attr(&m.attributes, "mid").ok_or(SdpError::Invalid("mid"))?)?;
    let kind = match m.media_name.media.as_str() {
        "audio" => Some(Kind::Audio),
        "video" => Some(Kind::Video),
        _ => None,
    };
    // Port 0 stops a transceiver, except with `a=bundle-only` (RFC 8843 §6: an offerer, as
    // Firefox does, may put 0 on every bundled m-line but the first).
    let stopped = m.media_name.port.value == 0 && !m.has_attribute("bundle-only");
    let direction = if m.has_attribute("sendrecv") {
        Direction::SendRecv
    } else if m.has_attribute("sendonly") {
        Direction::SendOnly
    } else if m.has_attribute("recvonly") {
        Direction::RecvOnly
    } else if m.has_attribute("inactive") {
        Direction::Inactive
    } else {
        Direction::SendRecv // RFC 4566 §6: the default
    };
    let wanted = match kind {
        Some(Kind::Audio) => Some(("opus", 48000)),
        Some(Kind::Video) => Some(("vp8", 90000)),
        None => None,
    };
    let mut pt = None;
    let mut extensions = ExtensionMap::default();
    let mut ext_ids = 0u16;
    let mut ssrcs: Vec<u32> = Vec::new();
    let payload_types = m
        .media_name
        .formats
        .iter()
        .filter_map(|f| f.parse::<u8>().ok())
        .filter(|&pt| pt < 128)
        .fold(0u128, |set, pt| set | 1 << pt);
    let mut repair: Vec<u32> = Vec::new();
    for a in &m.attributes {
        let value = a.value.as_deref().unwrap_or("");
        match a.key.as_str() {
            "rtpmap" => {
                let Some((n, codec)) = value.split_once(' ') else {
                    continue;
                };
                let Ok(n) = n.parse::<u8>() else { continue };
                let mut parts = codec.split('/');
                let name = parts.next().unwrap_or("");
                let rate = parts.next().and_then(|r| r.parse::<u32>().ok());
                if let Some((want, want_rate)) = wanted
                    && pt.is_none()
                    && n < 128
                    && name.eq_ignore_ascii_case(want)
                    && rate == Some(want_rate)
                {
                    pt = Some(n);
                }
            }
            "extmap" => {
                let Some((id, rest)) = value.split_once(' ') else {
                    continue;
                };
                // `id[/direction] uri [attributes]`
                let id = id.split('/').next().and_then(|i| i.parse::<u8>().ok());
                if let Some(id @ 1..=15) = id {
                    ext_ids |= 1 << id;
                }
                let uri = rest.split(' ').next().unwrap_or("");
                if let (Some(id @ 1..=14), Some(ext), Some(kind)) =
                    (id, Extension::from_uri(uri), kind)
                    && ext.applies_to(kind)
                {
                    extensions.insert(id, ext);
                }
            }
            "ssrc" => {
                let ssrc = value.split(' ').next().and_then(|s| s.parse::<u32>().ok());
                if let Some(s) = ssrc
                    && !ssrcs.contains(&s)
                    && ssrcs.len() < MAX_SSRCS * 2
                {
                    ssrcs.push(s);
                }
            }
            "ssrc-group" => {
                // `FID <media> <repair>`: the repair SSRC carries RTX, not media.
                let mut parts = value.split(' ');
                if parts.next() == Some("FID") {
                    let _media = parts.next();
                    if let Some(r) = parts.next().and_then(|s| s.parse::<u32>().ok()) {
                        repair.push(r);
                    }
                }
            }
            _ => {}
        }
    }
    ssrcs.retain(|s| !repair.contains(s));
    ssrcs.truncate(MAX_SSRCS);
    Ok(RemoteMedia {
        mid,
        kind,
        stopped,
        direction,
        pt,
        extensions,
        ext_ids,
        ssrcs,
        payload_types,
        rtcp_mux: m.has_attribute("rtcp-mux"),
        bundled: false,
    })
}
