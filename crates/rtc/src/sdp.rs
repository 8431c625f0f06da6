//! Offer/answer (RFC 3264, RFC 8829) for one participant of an SFU: the `sdp` crate parses
//! and prints; this module decides. Everything printed comes from typed, validated values
//! (numbers, our own ids, and peer tokens checked against their grammar): peer strings are
//! never spliced into SDP.
//!
//! The model is the one browsers speak: Unified Plan, one BUNDLE group, rtcp-mux, the server
//! ICE-lite and DTLS server (`a=setup:passive`). Sections the participant sends are
//! [`Section::Publish`]; sections the server adds to forward other participants' tracks are
//! [`Section::Forward`]. Opus and VP8 are the codecs.

use std::fmt::Write as _;
use std::io::Cursor;
use std::net::SocketAddr;

use callsec_dtls::Fingerprint;
use callsec_ice::Credentials;
use sdp::description::common::{Address, Attribute, ConnectionInformation};
use sdp::description::media::{MediaDescription, MediaName, RangedPort};
use sdp::description::session::{Origin, SessionDescription, TimeDescription, Timing};

/// Payload type the server offers for Opus.
pub const OPUS_PT: u8 = 111;
/// Payload type the server offers for VP8.
pub const VP8_PT: u8 = 96;
/// Most m-sections one participant's session may hold.
pub const MAX_SECTIONS: usize = 64;
/// Most SSRCs one section may announce.
const MAX_SSRCS: usize = 4;

/// Why an SDP was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SdpError {
    /// Not parseable SDP.
    Syntax,
    /// A required attribute is missing or malformed (which one).
    Invalid(&'static str),
    /// Something valid that this server does not do (what).
    Unsupported(&'static str),
    /// An answer or offer that does not match the session (m-lines out of order, unknown mid).
    Mismatch(&'static str),
}

impl std::fmt::Display for SdpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Syntax => f.write_str("SDP syntax error"),
            Self::Invalid(what) => write!(f, "invalid SDP: {what}"),
            Self::Unsupported(what) => write!(f, "unsupported SDP: {what}"),
            Self::Mismatch(what) => write!(f, "SDP does not match the session: {what}"),
        }
    }
}

impl std::error::Error for SdpError {}

/// Audio or video.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Opus.
    Audio,
    /// VP8.
    Video,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Self::Audio => "audio",
            Self::Video => "video",
        }
    }
}

/// `a=sendrecv` and friends, from the point of view of the description's author.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Sends and receives.
    SendRecv,
    /// Sends only.
    SendOnly,
    /// Receives only.
    RecvOnly,
    /// Neither.
    Inactive,
}

impl Direction {
    /// Whether the author sends.
    pub fn sends(self) -> bool {
        matches!(self, Self::SendRecv | Self::SendOnly)
    }

    fn attr(self) -> &'static str {
        match self {
            Self::SendRecv => "sendrecv",
            Self::SendOnly => "sendonly",
            Self::RecvOnly => "recvonly",
            Self::Inactive => "inactive",
        }
    }
}

/// RTP header extensions this server understands (RFC 8285 URIs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Extension {
    /// `urn:ietf:params:rtp-hdrext:ssrc-audio-level` (RFC 6464).
    AudioLevel,
    /// `http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time`.
    AbsSendTime,
    /// Transport-wide sequence numbers for transport-cc feedback.
    TransportCc,
    /// `urn:3gpp:video-orientation`.
    VideoOrientation,
}

impl Extension {
    const ALL: [Extension; 4] = [
        Self::AudioLevel,
        Self::AbsSendTime,
        Self::TransportCc,
        Self::VideoOrientation,
    ];

    /// The URI.
    pub fn uri(self) -> &'static str {
        match self {
            Self::AudioLevel => "urn:ietf:params:rtp-hdrext:ssrc-audio-level",
            Self::AbsSendTime => "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
            Self::TransportCc => {
                "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"
            }
            Self::VideoOrientation => "urn:3gpp:video-orientation",
        }
    }

    /// The server's own id: what forwarded packets carry between the publisher's ids and
    /// each receiver's, and the id the server offers a receiver when that id is free in
    /// the receiver's BUNDLE group (see [`Forward::extensions`]). These are the ids
    /// Chromium and Firefox give the same URIs, so that for them no second rewrite is due.
    pub fn server_id(self) -> u8 {
        match self {
            Self::AudioLevel => 1,
            Self::AbsSendTime => 2,
            Self::TransportCc => 3,
            Self::VideoOrientation => 13,
        }
    }

    /// Whether forwarded packets keep it (transport-wide ids and send times are per hop).
    pub fn forwarded(self) -> bool {
        matches!(self, Self::AudioLevel | Self::VideoOrientation)
    }

    fn from_uri(uri: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.uri() == uri)
    }

    fn applies_to(self, kind: Kind) -> bool {
        match self {
            Self::AudioLevel => kind == Kind::Audio,
            Self::VideoOrientation => kind == Kind::Video,
            Self::AbsSendTime | Self::TransportCc => true,
        }
    }
}

/// A mapping from the RTP header extension ids of one connection to [`Extension`]s.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExtensionMap {
    ids: [Option<Extension>; 15],
}

impl ExtensionMap {
    /// What the id means on this connection.
    pub fn get(&self, id: u8) -> Option<Extension> {
        self.ids
            .get(usize::from(id).checked_sub(1)?)
            .copied()
            .flatten()
    }

    /// The id this connection uses for `ext`.
    pub fn id_of(&self, ext: Extension) -> Option<u8> {
        (1u8..=15).find(|&id| self.get(id) == Some(ext))
    }

    fn insert(&mut self, id: u8, ext: Extension) {
        if let Some(slot) = self.ids.get_mut(usize::from(id).wrapping_sub(1)) {
            *slot = Some(ext);
        }
    }

    fn iter(&self) -> impl Iterator<Item = (u8, Extension)> + '_ {
        (1u8..=15).filter_map(|id| Some((id, self.get(id)?)))
    }
}

/// One m-section of a participant's session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Section {
    /// The participant sends here (it offered this m-line).
    Publish(Publish),
    /// The server sends another participant's track here (the server offered this m-line).
    Forward(Forward),
    /// Refused (port 0): data channels and anything else not audio or video.
    Rejected {
        /// The mid.
        mid: Mid,
        /// The m-line's media: "application" or the like, from a fixed set.
        media: &'static str,
        /// The m-line's proto.
        proto: &'static str,
        /// The m-line's format.
        format: &'static str,
    },
}

impl Section {
    /// The section's mid.
    pub fn mid(&self) -> &Mid {
        match self {
            Self::Publish(p) => &p.mid,
            Self::Forward(f) => &f.mid,
            Self::Rejected { mid, .. } => mid,
        }
    }
}

/// A section the participant publishes on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    /// The mid.
    pub mid: Mid,
    /// Audio or video.
    pub kind: Kind,
    /// The participant's payload type for the codec (Opus or VP8).
    pub pt: u8,
    /// The participant's header-extension ids.
    pub extensions: ExtensionMap,
    /// The media SSRC(s) announced (`a=ssrc`, without FID repair SSRCs).
    pub ssrcs: Vec<u32>,
    /// Whether the participant sends now.
    pub sending: bool,
    /// Whether the port is 0 (the transceiver stopped).
    pub stopped: bool,
}

/// A section the server forwards a track on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forward {
    /// The mid.
    pub mid: Mid,
    /// Audio or video.
    pub kind: Kind,
    /// Payload type used towards this participant.
    pub pt: u8,
    /// The SSRC forwarded (the publisher's).
    pub ssrc: u32,
    /// Which participant's track (a number of the server's) and which of its tracks.
    pub source: (u64, u32),
    /// False once the track ended: the m-line is then offered with port 0.
    pub active: bool,
    /// Whether the participant's answer accepted the section (it is not yet negotiated while
    /// only offered).
    pub negotiated: bool,
    /// The header-extension ids offered on this section. Within a BUNDLE group an id names
    /// one URI (RFC 8843 §9.2; Firefox refuses a remap): the participant's own id for the
    /// URI where it has one, else the server's id if the participant uses it for nothing,
    /// else a free one; an extension with no free id is not offered.
    pub extensions: ExtensionMap,
}

impl Forward {
    /// How forwarded packets' extension ids change for this receiver: by the server's id
    /// ([`Extension::server_id`], what packets carry after the publisher's ids are mapped),
    /// the receiver's id, 0 to drop the element. `None` when the receiver took the server's
    /// ids, as Chromium and Firefox do: no second rewrite per packet.
    pub fn extension_rewrite(&self) -> Option<[u8; 16]> {
        let mut table = [0u8; 16];
        let mut same = true;
        for e in Extension::ALL {
            if e.forwarded() && e.applies_to(self.kind) {
                let theirs = self.extensions.id_of(e).unwrap_or(0);
                table[usize::from(e.server_id())] = theirs;
                same &= theirs == e.server_id();
            }
        }
        (!same).then_some(table)
    }
}

/// An m-section id (RFC 8843): 1 to 32 characters of `[A-Za-z0-9_.-]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Mid(String);

impl Mid {
    /// Checks a mid.
    pub fn new(s: &str) -> Result<Self, SdpError> {
        let ok = (1..=32).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(SdpError::Invalid("mid"))
        }
    }

    /// The mid as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// `a=setup` (RFC 4145 / RFC 8842).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setup {
    /// Either.
    ActPass,
    /// DTLS client.
    Active,
    /// DTLS server.
    Passive,
}

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
    })
}

/// What the server puts in every description it writes.
#[derive(Debug, Clone)]
pub struct Local {
    /// Its ICE credentials for this participant.
    pub ice: Credentials,
    /// Its DTLS certificate fingerprint.
    pub fingerprint: Fingerprint,
    /// Its one host candidate (the worker's socket).
    pub candidate: SocketAddr,
    /// Session id for `o=`.
    pub session_id: u64,
}

/// How a written description is meant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SdpType {
    /// An offer.
    Offer,
    /// An answer.
    Answer,
}

/// `v=`, `o=`, `s=` and `t=` of a description by `username` from `ip`.
pub(crate) fn skeleton(
    username: &str,
    session_id: u64,
    version: u64,
    ip: std::net::IpAddr,
) -> SessionDescription {
    SessionDescription {
        version: 0,
        origin: Origin {
            username: username.into(),
            session_id,
            session_version: version,
            network_type: "IN".into(),
            address_type: if ip.is_ipv4() { "IP4" } else { "IP6" }.into(),
            unicast_address: ip.to_string(),
        },
        session_name: "-".into(),
        time_descriptions: vec![TimeDescription {
            timing: Timing {
                start_time: 0,
                stop_time: 0,
            },
            repeat_times: Vec::new(),
        }],
        ..Default::default()
    }
}

/// Writes a description of `sections` (in order). `version` goes into `o=`.
pub fn write(local: &Local, version: u64, sections: &[Section], ty: SdpType) -> String {
    let ip = local.candidate.ip();
    let addr_type = if ip.is_ipv4() { "IP4" } else { "IP6" };
    let bundle: Vec<&str> = sections
        .iter()
        .filter(|s| match s {
            Section::Rejected { .. } => false,
            Section::Forward(f) => f.active,
            Section::Publish(p) => !p.stopped,
        })
        .map(|s| s.mid().as_str())
        .collect();
    let mut session = skeleton("callsec", local.session_id, version, ip);
    let mut group = String::from("BUNDLE");
    for mid in &bundle {
        group.push(' ');
        group.push_str(mid);
    }
    session.attributes = vec![
        Attribute::new("group".into(), Some(group)),
        Attribute::new("ice-lite".into(), None),
        Attribute::new("msid-semantic".into(), Some(" WMS *".into())),
    ];
    let conn = ConnectionInformation {
        network_type: "IN".into(),
        address_type: addr_type.into(),
        address: Some(Address {
            address: ip.to_string(),
            ttl: None,
            range: None,
        }),
    };
    for s in sections {
        let (media, proto, formats, port) = match s {
            Section::Rejected {
                media,
                proto,
                format,
                ..
            } => (*media, *proto, vec![(*format).to_owned()], 0),
            Section::Publish(p) => (
                p.kind.name(),
                "UDP/TLS/RTP/SAVPF",
                vec![p.pt.to_string()],
                if p.stopped { 0 } else { local.candidate.port() },
            ),
            Section::Forward(f) => (
                f.kind.name(),
                "UDP/TLS/RTP/SAVPF",
                vec![f.pt.to_string()],
                if f.active { local.candidate.port() } else { 0 },
            ),
        };
        let mut m = MediaDescription {
            media_name: MediaName {
                media: media.into(),
                port: RangedPort {
                    value: port as isize,
                    range: None,
                },
                protos: proto.split('/').map(str::to_owned).collect(),
                formats,
            },
            connection_information: Some(conn.clone()),
            ..Default::default()
        };
        let mut a = |k: &str, v: Option<String>| m.attributes.push(Attribute::new(k.into(), v));
        a("mid", Some(s.mid().as_str().to_owned()));
        if port != 0 {
            a(
                "candidate",
                Some(format!(
                    "1 1 udp 2130706431 {} {} typ host",
                    local.candidate.ip(),
                    local.candidate.port()
                )),
            );
            a("end-of-candidates", None);
            a("ice-ufrag", Some(local.ice.ufrag.clone()));
            a("ice-pwd", Some(local.ice.pwd.clone()));
            a("fingerprint", Some(local.fingerprint.to_string()));
            // Answers: passive (the server is the DTLS server). Offers: actpass, as JSEP has
            // every offer say (RFC 8829 §5.2.1); answerers keep the established roles, and
            // an answer that would make the server the client is refused.
            let setup = match ty {
                SdpType::Answer => "passive",
                SdpType::Offer => "actpass",
            };
            a("setup", Some(setup.into()));
            a("rtcp-mux", None);
            a("rtcp-rsize", None);
        }
        match s {
            Section::Rejected { .. } => {}
            Section::Publish(p) => {
                let dir = if p.sending && !p.stopped {
                    Direction::RecvOnly
                } else {
                    Direction::Inactive
                };
                a(dir.attr(), None);
                codec_lines(&mut a, p.kind, p.pt, true);
                // Not transport-wide sequence numbers: the server's congestion feedback is
                // REMB, and a browser told transport-cc is on waits for transport feedback
                // that never comes and cuts its send rate to a trickle.
                for (id, ext) in p.extensions.iter() {
                    if ext != Extension::TransportCc {
                        a("extmap", Some(format!("{id} {}", ext.uri())));
                    }
                }
            }
            Section::Forward(f) => {
                a(
                    if f.active {
                        Direction::SendOnly.attr()
                    } else {
                        Direction::Inactive.attr()
                    },
                    None,
                );
                codec_lines(&mut a, f.kind, f.pt, false);
                for (id, ext) in f.extensions.iter() {
                    a("extmap", Some(format!("{id} {}", ext.uri())));
                }
                let (owner, track) = f.source;
                let (stream, track) = (format!("p{owner}"), format!("p{owner}-t{track}"));
                a("msid", Some(format!("{stream} {track}")));
                a("ssrc", Some(format!("{} cname:{stream}", f.ssrc)));
                a("ssrc", Some(format!("{} msid:{stream} {track}", f.ssrc)));
            }
        }
        session.media_descriptions.push(m);
    }
    session.marshal()
}

/// The header-extension ids for a new forwarded section of `kind` in a BUNDLE group whose
/// sections are `sections` and whose participant has mapped the ids in `taken` (see
/// [`Forward::extensions`]).
fn forward_extensions(sections: &[Section], taken: u16, kind: Kind) -> ExtensionMap {
    let maps = || {
        sections.iter().filter_map(|s| match s {
            Section::Publish(p) => Some(&p.extensions),
            Section::Forward(f) => Some(&f.extensions),
            Section::Rejected { .. } => None,
        })
    };
    let mut taken = maps()
        .flat_map(ExtensionMap::iter)
        .fold(taken, |t, (id, _)| t | 1 << id);
    let mut m = ExtensionMap::default();
    for e in Extension::ALL {
        if !e.forwarded() || !e.applies_to(kind) {
            continue;
        }
        let same_uri = maps().find_map(|m| m.id_of(e));
        let free = || {
            std::iter::once(e.server_id())
                .chain(1..=14)
                .find(|&id| taken & (1 << id) == 0)
        };
        if let Some(id) = same_uri.or_else(free) {
            m.insert(id, e);
            taken |= 1 << id;
        }
    }
    m
}

/// `a=rtpmap`, `a=fmtp` and `a=rtcp-fb` for our one codec of `kind`. `receiving` marks the
/// participant's publish sections, where the server gives congestion feedback.
fn codec_lines(a: &mut impl FnMut(&str, Option<String>), kind: Kind, pt: u8, receiving: bool) {
    match kind {
        Kind::Audio => {
            a("rtpmap", Some(format!("{pt} opus/48000/2")));
            a("fmtp", Some(format!("{pt} minptime=10;useinbandfec=1")));
        }
        Kind::Video => {
            a("rtpmap", Some(format!("{pt} VP8/90000")));
            let mut fb = String::new();
            for f in ["nack", "nack pli", "ccm fir"] {
                fb.clear();
                let _ = write!(fb, "{pt} {f}");
                a("rtcp-fb", Some(fb.clone()));
            }
            if receiving {
                a("rtcp-fb", Some(format!("{pt} goog-remb")));
            }
        }
    }
}

/// A participant's negotiated session, as the server keeps it: the sections in m-line
/// order, plus the offer the server has out, if any.
#[derive(Debug, Clone)]
pub struct Session {
    local: Local,
    version: u64,
    sections: Vec<Section>,
    /// The sections of the offer the server sent and has no answer for yet.
    pending: Option<Vec<Section>>,
    next_mid: u32,
    /// Header-extension ids the participant's offers have mapped (bit `id`), any URI.
    ext_ids: u16,
}

/// What changed for publishing when a participant's offer was applied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublishChanges {
    /// Sections that now send (newly, or with new SSRCs).
    pub started: Vec<Publish>,
    /// Mids of sections that stopped sending.
    pub stopped: Vec<Mid>,
}

impl Session {
    /// A session with no sections yet.
    pub fn new(local: Local) -> Self {
        Self {
            local,
            version: 1,
            sections: Vec::new(),
            pending: None,
            next_mid: 0,
            ext_ids: 0,
        }
    }

    /// The server's side of every description.
    pub fn local(&self) -> &Local {
        &self.local
    }

    /// The negotiated sections.
    pub fn sections(&self) -> &[Section] {
        &self.sections
    }

    /// Whether the server has an offer out.
    pub fn has_pending_offer(&self) -> bool {
        self.pending.is_some()
    }

    /// Applies the participant's offer and writes the answer. Glare: an offer of the server's
    /// still out is dropped (the server is the polite side, RFC 8829 §4.1.8.1 style), and its
    /// changes are offered again later by the caller.
    pub fn accept_offer(&mut self, offer: &Remote) -> Result<(String, PublishChanges), SdpError> {
        if offer.setup == Setup::Passive {
            return Err(SdpError::Unsupported("the server is the DTLS server"));
        }
        if offer.media.len() < self.sections.len() {
            return Err(SdpError::Mismatch(
                "offer has fewer m-lines than the session",
            ));
        }
        for (i, s) in self.sections.iter().enumerate() {
            if offer.media[i].mid != *s.mid() {
                return Err(SdpError::Mismatch("m-lines reordered"));
            }
        }
        self.pending = None;
        self.ext_ids |= offer.media.iter().fold(0, |ids, m| ids | m.ext_ids);
        let mut next = Vec::with_capacity(offer.media.len());
        let mut changes = PublishChanges::default();
        for (i, m) in offer.media.iter().enumerate() {
            let existing = self.sections.get(i);
            let section = match existing {
                Some(Section::Forward(f)) => {
                    let mut f = f.clone();
                    // The participant's offer may renumber the codec; forwarding follows.
                    f.pt = m.pt.ok_or(SdpError::Unsupported("no common codec"))?;
                    f.negotiated = true;
                    Section::Forward(f)
                }
                Some(Section::Rejected { .. }) => existing.cloned().ok_or(SdpError::Syntax)?,
                Some(Section::Publish(_)) | None => {
                    let old = match existing {
                        Some(Section::Publish(p)) => Some(p),
                        _ => None,
                    };
                    match (m.kind, m.pt) {
                        (Some(kind), Some(pt)) if old.is_none_or(|o| o.kind == kind) => {
                            let p = Publish {
                                mid: m.mid.clone(),
                                kind,
                                pt,
                                extensions: m.extensions.clone(),
                                ssrcs: m.ssrcs.clone(),
                                sending: m.direction.sends() && !m.ssrcs.is_empty(),
                                stopped: m.stopped,
                            };
                            let was = old.filter(|o| o.sending && !o.stopped);
                            let now = p.sending && !p.stopped;
                            match (was, now) {
                                (None, true) => changes.started.push(p.clone()),
                                (Some(o), true) if o.ssrcs != p.ssrcs || o.pt != p.pt => {
                                    changes.stopped.push(p.mid.clone());
                                    changes.started.push(p.clone());
                                }
                                (Some(_), false) => changes.stopped.push(p.mid.clone()),
                                _ => {}
                            }
                            Section::Publish(p)
                        }
                        (Some(_), _) if old.is_some() => {
                            return Err(SdpError::Unsupported("codec or kind changed"));
                        }
                        (kind, _) => Section::Rejected {
                            mid: m.mid.clone(),
                            media: if kind.is_some() {
                                kind.map_or("application", Kind::name)
                            } else {
                                "application"
                            },
                            proto: if kind.is_some() {
                                "UDP/TLS/RTP/SAVPF"
                            } else {
                                "UDP/DTLS/SCTP"
                            },
                            format: if kind.is_some() {
                                "0"
                            } else {
                                "webrtc-datachannel"
                            },
                        },
                    }
                }
            };
            next.push(section);
        }
        self.sections = next;
        self.version += 1;
        let answer = write(&self.local, self.version, &self.sections, SdpType::Answer);
        Ok((answer, changes))
    }

    /// Writes an offer that adds `add` forwarded tracks (kind, ssrc, source) and ends the
    /// forwarded sections of `end` sources, on top of the negotiated sections. Returns `None`
    /// when nothing would change.
    pub fn create_offer(
        &mut self,
        add: &[(Kind, u32, (u64, u32))],
        end: &[(u64, u32)],
    ) -> Option<String> {
        let mut sections = self.sections.clone();
        let mut changed = false;
        for s in &mut sections {
            if let Section::Forward(f) = s
                && f.active
                && end.contains(&f.source)
            {
                f.active = false;
                changed = true;
            }
        }
        for &(kind, ssrc, source) in add {
            let already = sections
                .iter()
                .any(|s| matches!(s, Section::Forward(f) if f.active && f.source == source));
            if already || sections.len() >= MAX_SECTIONS {
                continue;
            }
            let mid = loop {
                self.next_mid += 1;
                let candidate = Mid(format!("s{}", self.next_mid));
                if !sections.iter().any(|s| *s.mid() == candidate) {
                    break candidate;
                }
            };
            let extensions = forward_extensions(&sections, self.ext_ids, kind);
            sections.push(Section::Forward(Forward {
                mid,
                kind,
                extensions,
                pt: match kind {
                    Kind::Audio => OPUS_PT,
                    Kind::Video => VP8_PT,
                },
                ssrc,
                source,
                active: true,
                negotiated: false,
            }));
            changed = true;
        }
        if !changed {
            return None;
        }
        self.version += 1;
        let offer = write(&self.local, self.version, &sections, SdpType::Offer);
        self.pending = Some(sections);
        Some(offer)
    }

    /// Applies the participant's answer to the server's pending offer.
    ///
    /// The answer's `a=setup` is not consulted: the DTLS roles were fixed when the server
    /// answered the participant's first offer, and a renegotiation never restarts DTLS
    /// (webrtc-rs, for one, answers re-offers with `passive` while it stays the client).
    pub fn accept_answer(&mut self, answer: &Remote) -> Result<(), SdpError> {
        let mut pending = self
            .pending
            .take()
            .ok_or(SdpError::Mismatch("no offer pending"))?;
        if answer.media.len() != pending.len() {
            self.pending = Some(pending);
            return Err(SdpError::Mismatch("answer m-line count"));
        }
        for (s, m) in pending.iter_mut().zip(&answer.media) {
            if *s.mid() != m.mid {
                return Err(SdpError::Mismatch("answer mid"));
            }
            if let Section::Forward(f) = s {
                if f.active && (m.stopped || m.pt != Some(f.pt)) {
                    // Refused or answered with another codec: the track is not forwarded.
                    f.active = false;
                }
                f.negotiated = f.active;
            }
        }
        self.sections = pending;
        Ok(())
    }

    /// Forgets a pending offer (the participant rolled it back or glare).
    pub fn rollback(&mut self) {
        self.pending = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const CHROME_OFFER: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
a=group:BUNDLE 0 1 2\r\na=msid-semantic: WMS s\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111 0\r\nc=IN IP4 0.0.0.0\r\na=rtcp:9 IN IP4 0.0.0.0\r\n\
a=ice-ufrag:AbCd\r\na=ice-pwd:0123456789abcdefghijkl\r\n\
a=fingerprint:sha-256 00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF\r\n\
a=setup:actpass\r\na=mid:0\r\na=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\n\
a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r\n\
a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid\r\na=sendrecv\r\na=msid:s a\r\na=rtcp-mux\r\n\
a=rtpmap:111 opus/48000/2\r\na=fmtp:111 minptime=10;useinbandfec=1\r\na=rtpmap:0 PCMU/8000\r\n\
a=ssrc:1111 cname:x\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 96 97\r\nc=IN IP4 0.0.0.0\r\n\
a=ice-ufrag:AbCd\r\na=ice-pwd:0123456789abcdefghijkl\r\n\
a=fingerprint:sha-256 00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF\r\n\
a=setup:actpass\r\na=mid:1\r\na=extmap:13 urn:3gpp:video-orientation\r\na=sendrecv\r\na=rtcp-mux\r\n\
a=rtpmap:96 VP8/90000\r\na=rtcp-fb:96 nack\r\na=rtpmap:97 rtx/90000\r\na=fmtp:97 apt=96\r\n\
a=ssrc-group:FID 2222 3333\r\na=ssrc:2222 cname:x\r\na=ssrc:3333 cname:x\r\n\
m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 0.0.0.0\r\na=mid:2\r\n\
a=sctp-port:5000\r\n";

    fn local() -> Local {
        Local {
            ice: Credentials {
                ufrag: "srv1".into(),
                pwd: "server-password-0123456789".into(),
            },
            fingerprint: "sha-256 AA:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF"
                .parse()
                .unwrap(),
            candidate: "127.0.0.1:4000".parse().unwrap(),
            session_id: 42,
        }
    }

    #[test]
    fn parses_a_browser_offer() {
        let r = Remote::parse(CHROME_OFFER).unwrap();
        assert_eq!(r.ice.ufrag, "AbCd");
        assert_eq!(r.setup, Setup::ActPass);
        assert_eq!(r.media.len(), 3);
        assert_eq!(r.media[0].kind, Some(Kind::Audio));
        assert_eq!(r.media[0].pt, Some(111));
        assert_eq!(r.media[0].ssrcs, vec![1111]);
        assert_eq!(r.media[0].extensions.get(1), Some(Extension::AudioLevel));
        assert_eq!(r.media[0].extensions.get(3), Some(Extension::TransportCc));
        assert_eq!(r.media[0].extensions.get(4), None, "sdes:mid is not ours");
        assert_eq!(r.media[1].pt, Some(96));
        assert_eq!(
            r.media[1].ssrcs,
            vec![2222],
            "the FID repair SSRC is left out"
        );
        assert_eq!(
            r.media[1].extensions.get(13),
            Some(Extension::VideoOrientation)
        );
        assert_eq!(r.media[2].kind, None);
    }

    #[test]
    fn bundle_only_port_zero_is_a_live_section_not_a_stopped_one() {
        // Firefox's first offer: every bundled m-line after the first has port 0 and
        // `a=bundle-only` (RFC 8843 §6).
        let offer = CHROME_OFFER.replacen(
            "m=video 9 UDP/TLS/RTP/SAVPF 96 97\r\n",
            "m=video 0 UDP/TLS/RTP/SAVPF 96 97\r\na=bundle-only\r\n",
            1,
        );
        let r = Remote::parse(&offer).unwrap();
        assert!(!r.media[1].stopped);
        let mut s = Session::new(local());
        let (answer, changes) = s.accept_offer(&r).unwrap();
        assert_eq!(changes.started.len(), 2, "audio and video both publish");
        assert!(answer.contains("a=group:BUNDLE 0 1\r\n"), "{answer}");
        assert!(answer.contains("m=video 4000 "), "{answer}");
        // Without bundle-only, port 0 still stops the section.
        let stopped = CHROME_OFFER.replacen("m=video 9 ", "m=video 0 ", 1);
        assert!(Remote::parse(&stopped).unwrap().media[1].stopped);
    }

    #[test]
    fn publish_answers_leave_transport_cc_out() {
        let mut s = Session::new(local());
        let (answer, _) = s
            .accept_offer(&Remote::parse(CHROME_OFFER).unwrap())
            .unwrap();
        assert!(answer.contains("urn:ietf:params:rtp-hdrext:ssrc-audio-level"));
        assert!(!answer.contains("transport-wide-cc"), "{answer}");
    }

    #[test]
    fn offer_answer_round_trip() {
        let mut s = Session::new(local());
        let (answer, changes) = s
            .accept_offer(&Remote::parse(CHROME_OFFER).unwrap())
            .unwrap();
        assert_eq!(changes.started.len(), 2);
        assert!(answer.contains("a=ice-lite"));
        assert!(answer.contains("a=group:BUNDLE 0 1\r\n"));
        assert!(answer.contains("m=application 0 UDP/DTLS/SCTP webrtc-datachannel"));
        assert!(answer.contains("a=setup:passive"));
        assert!(answer.contains("a=recvonly"));
        // The answer parses back (as the browser would) with our credentials.
        let reparsed = SessionDescription::unmarshal(&mut Cursor::new(answer.as_bytes())).unwrap();
        assert_eq!(reparsed.media_descriptions.len(), 3);

        // The server offers a forwarded track; the participant answers.
        let offer = s
            .create_offer(&[(Kind::Video, 0x5555, (7, 1))], &[])
            .unwrap();
        assert!(offer.contains("a=sendonly"));
        assert!(offer.contains("a=setup:actpass"));
        assert!(offer.contains("a=ssrc:21845 msid:p7 p7-t1"));
        assert!(s.has_pending_offer());
        let answer_text = offer
            .replace("a=sendonly", "a=recvonly")
            .replace("a=ice-lite\r\n", "")
            .replace("srv1", "AbCd")
            .replace("server-password-0123456789", "0123456789abcdefghijkl")
            .replace("a=setup:actpass", "a=setup:active");
        s.accept_answer(&Remote::parse(&answer_text).unwrap())
            .unwrap();
        assert!(!s.has_pending_offer());
        assert!(matches!(&s.sections()[3], Section::Forward(f) if f.negotiated && f.active));
        // Ending it offers the m-line with port 0.
        let offer = s.create_offer(&[], &[(7, 1)]).unwrap();
        assert!(offer.contains("m=video 0 "));
        assert!(
            s.create_offer(&[], &[(7, 1)]).is_some(),
            "pending still differs"
        );
    }

    /// The forwarded sections the server offers after `offer`, with their extension ids.
    fn forwarded_after(offer: &str) -> Vec<Forward> {
        let mut s = Session::new(local());
        s.accept_offer(&Remote::parse(offer).unwrap()).unwrap();
        let add = [(Kind::Audio, 9, (2, 0)), (Kind::Video, 10, (2, 1))];
        let text = s.create_offer(&add, &[]).unwrap();
        let forwards: Vec<Forward> = s
            .pending
            .clone()
            .unwrap()
            .into_iter()
            .filter_map(|x| match x {
                Section::Forward(f) => Some(f),
                _ => None,
            })
            .collect();
        for f in &forwards {
            for (id, e) in f.extensions.iter() {
                assert!(text.contains(&format!("a=extmap:{id} {}\r\n", e.uri())));
            }
        }
        forwards
    }

    #[test]
    fn forwarded_extension_ids_never_remap_an_id_of_the_bundle() {
        // Chromium's ids: audio-level 1, video-orientation 13, as the server's own.
        let f = forwarded_after(CHROME_OFFER);
        assert_eq!(f[0].extensions.id_of(Extension::AudioLevel), Some(1));
        assert_eq!(f[1].extensions.id_of(Extension::VideoOrientation), Some(13));
        assert!(f.iter().all(|f| f.extension_rewrite().is_none()));
        // A participant whose 13 is another URI and whose audio-level is 5: the server takes
        // its 5, and for video-orientation the lowest id nobody in the group uses.
        let other = CHROME_OFFER
            .replace(
                "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level",
                "a=extmap:5 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\na=extmap:1 urn:example:one",
            )
            .replace(
                "a=extmap:13 urn:3gpp:video-orientation",
                "a=extmap:13 urn:example:thirteen\r\na=extmap:2/recvonly urn:example:two",
            );
        let f = forwarded_after(&other);
        assert_eq!(f[0].extensions.id_of(Extension::AudioLevel), Some(5));
        assert_eq!(f[1].extensions.id_of(Extension::VideoOrientation), Some(6));
        let audio = f[0].extension_rewrite().unwrap();
        assert_eq!(audio[1], 5, "the server's 1 becomes the participant's 5");
        let video = f[1].extension_rewrite().unwrap();
        assert_eq!(video[13], 6);
        // What the SFU does with the table on a receiver's copy: audio-level (server id 1)
        // goes out as 5, anything else the server does not forward is blanked.
        let mut pkt = vec![0x90, 111, 0, 1, 0, 0, 0, 1, 0, 0, 0, 9];
        pkt.extend_from_slice(&[0xBE, 0xDE, 0, 2, 0x10, 0x7f, 0x30, 0xaa, 0, 0, 0, 0]);
        let mut view = callsec_srtp::view::RtpView::new(&mut pkt).unwrap();
        view.map_extension_ids(|id| audio.get(usize::from(id)).copied());
        assert_eq!(pkt[16..20], [0x50, 0x7f, 0, 0]);
    }

    #[test]
    fn glare_drops_the_server_offer() {
        let mut s = Session::new(local());
        s.accept_offer(&Remote::parse(CHROME_OFFER).unwrap())
            .unwrap();
        s.create_offer(&[(Kind::Audio, 9, (2, 0))], &[]).unwrap();
        // The participant offers at the same time (it does not know the server's m-line).
        s.accept_offer(&Remote::parse(CHROME_OFFER).unwrap())
            .unwrap();
        assert!(!s.has_pending_offer());
        assert_eq!(s.sections().len(), 3);
        assert!(s.create_offer(&[(Kind::Audio, 9, (2, 0))], &[]).is_some());
    }

    #[test]
    fn refuses_bad_descriptions() {
        let bad = |from: &str, to: &str| Remote::parse(&CHROME_OFFER.replace(from, to));
        assert_eq!(
            bad("a=ice-ufrag:AbCd", "a=ice-ufrag:A\u{7f}cd").unwrap_err(),
            SdpError::Invalid("ice-ufrag")
        );
        assert_eq!(
            bad("a=mid:0", "a=mid:0 evil").unwrap_err(),
            SdpError::Invalid("mid")
        );
        let passive = bad("a=setup:actpass", "a=setup:passive").unwrap();
        assert_eq!(
            Session::new(local()).accept_offer(&passive).unwrap_err(),
            SdpError::Unsupported("the server is the DTLS server")
        );
        assert_eq!(
            bad("sha-256 00:11", "sha-1 00:11").unwrap_err(),
            SdpError::Unsupported("no sha-256 fingerprint")
        );
        assert_eq!(
            bad("a=mid:1", "a=mid:0").unwrap_err(),
            SdpError::Invalid("duplicate mid")
        );
        assert!(Remote::parse("garbage").is_err());
        assert!(Remote::parse("").is_err());
    }
}
