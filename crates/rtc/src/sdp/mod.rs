//! Offer/answer (RFC 3264, RFC 8829) for one participant of an SFU: the `sdp` crate parses
//! and prints; this module decides. Everything printed comes from typed, validated values
//! (numbers, our own ids, and peer tokens checked against their grammar): peer strings are
//! never spliced into SDP.
//!
//! The model is the one browsers speak: Unified Plan, one BUNDLE group, rtcp-mux, the server
//! ICE-lite and DTLS server (`a=setup:passive`); a description without BUNDLE or rtcp-mux is
//! refused ([`Remote::check_transport`]). Sections the participant sends are
//! [`Section::Publish`]; sections the server adds to forward other participants' tracks are
//! [`Section::Forward`], and a forwarded section the participant also sends on (`addTrack`)
//! is [`Section::Duplex`]. Ended sections keep every transport attribute and are recycled
//! for new tracks. Opus and VP8 are the codecs, numbered as each participant numbers them.
//!
//! Modules: `remote` parses the participant's descriptions, `write` prints the server's,
//! `session` holds the negotiation state.

mod remote;
mod session;
mod write;

pub use remote::{Remote, RemoteMedia};
pub use session::{PublishChanges, Session};
pub(crate) use write::skeleton;
pub use write::{Local, SdpType, write};

#[cfg(test)]
mod tests;

/// Payload type the server offers for Opus to a participant with no number of its own for
/// Opus and no other use of 111 (see [`Forward::pt`]).
pub const OPUS_PT: u8 = 111;
/// Payload type the server offers for VP8, under the same condition as [`OPUS_PT`].
pub const VP8_PT: u8 = 96;
/// Most m-sections one participant's session may hold.
pub const MAX_SECTIONS: usize = 64;
/// Most SSRCs one section may announce.
pub(crate) const MAX_SSRCS: usize = 4;

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
    pub(crate) fn name(self) -> &'static str {
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

    pub(crate) fn attr(self) -> &'static str {
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
    pub(crate) const ALL: [Extension; 4] = [
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

    pub(crate) fn from_uri(uri: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.uri() == uri)
    }

    pub(crate) fn applies_to(self, kind: Kind) -> bool {
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

    pub(crate) fn insert(&mut self, id: u8, ext: Extension) {
        if let Some(slot) = self.ids.get_mut(usize::from(id).wrapping_sub(1)) {
            *slot = Some(ext);
        }
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (u8, Extension)> + '_ {
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
    /// Both: a forwarded section the participant also sends on. W3C `addTrack` reuses a
    /// transceiver that never sent (webrtc-pc §5.1, addTrack step 7), so a browser's
    /// offer turns the server's `sendonly` m-line into `sendrecv` with its own SSRC.
    Duplex(Duplex),
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
            Self::Duplex(d) => &d.forward.mid,
            Self::Rejected { mid, .. } => mid,
        }
    }

    /// What the server forwards here, if it is a forwarding section (live or ended).
    pub fn forward(&self) -> Option<&Forward> {
        match self {
            Self::Forward(f) => Some(f),
            Self::Duplex(d) => Some(&d.forward),
            Self::Publish(_) | Self::Rejected { .. } => None,
        }
    }

    /// What the participant publishes here, if it is a publishing section.
    pub fn publish(&self) -> Option<&Publish> {
        match self {
            Self::Publish(p) => Some(p),
            Self::Duplex(d) => Some(&d.publish),
            Self::Forward(_) | Self::Rejected { .. } => None,
        }
    }

    /// Whether the m-line has port 0 (ended, stopped or refused): such a section may be
    /// recycled for a new track with a new mid once both sides agreed (RFC 8829 §5.2.2).
    pub fn is_ended(&self) -> bool {
        match self {
            Self::Publish(p) => p.stopped,
            Self::Forward(f) => !f.active,
            Self::Duplex(_) => false,
            Self::Rejected { .. } => true,
        }
    }
}

/// A forwarded section that the participant publishes on too (see [`Section::Duplex`]).
/// Both parts have the same mid, kind and payload type; the forward part is active and the
/// publish part sends (when either ends, the section becomes the other's plain variant).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Duplex {
    /// What the server sends (server → participant).
    pub forward: Forward,
    /// What the participant sends (participant → server).
    pub publish: Publish,
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
    /// Payload type used towards this participant: its own number for the codec in its
    /// BUNDLE group (from its offers and answers), else the server's ([`OPUS_PT`],
    /// [`VP8_PT`]) if the participant uses that number for nothing, else a free dynamic one.
    /// Every forwarded packet's payload type is set to it for this receiver.
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
pub struct Mid(pub(crate) String);

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
