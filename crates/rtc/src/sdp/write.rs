//! Writing descriptions.

use std::fmt::Write as _;
use std::net::SocketAddr;

use callsec_dtls::Fingerprint;
use callsec_ice::Credentials;
use sdp::description::common::{Address, Attribute, ConnectionInformation};
use sdp::description::media::{MediaDescription, MediaName, RangedPort};
use sdp::description::session::{Origin, SessionDescription, TimeDescription, Timing};

use super::{Direction, Extension, ExtensionMap, Forward, Kind, OPUS_PT, Publish, Section, VP8_PT};

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
        .filter(|s| !s.is_ended())
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
            Section::Duplex(d) => (
                d.forward.kind.name(),
                "UDP/TLS/RTP/SAVPF",
                vec![d.forward.pt.to_string()],
                local.candidate.port(),
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
        }
        // Port-0 sections too: RFC 3264 §6 lets a rejected m-line leave them out, but some
        // widely used clients refuse a description whose m-line lacks them, and then cannot
        // apply any later offer. They are the same for every m-line (one BUNDLE transport).
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
        if proto == "UDP/TLS/RTP/SAVPF" {
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
                publish_extmaps(&mut a, p);
            }
            Section::Duplex(d) => {
                // The server forwards and receives: sendrecv, the participant's codec
                // number and extension ids (both parts share them), the forwarded SSRC.
                a(Direction::SendRecv.attr(), None);
                codec_lines(&mut a, d.publish.kind, d.publish.pt, true);
                publish_extmaps(&mut a, &d.publish);
                forward_ssrc_lines(&mut a, &d.forward);
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
                forward_ssrc_lines(&mut a, f);
            }
        }
        session.media_descriptions.push(m);
    }
    session.marshal()
}

/// `a=extmap` of a section the participant publishes on. Not transport-wide sequence
/// numbers: the server's congestion feedback is REMB, and a browser told transport-cc is on
/// waits for transport feedback that never comes and cuts its send rate to a trickle.
fn publish_extmaps(a: &mut impl FnMut(&str, Option<String>), p: &Publish) {
    for (id, ext) in p.extensions.iter() {
        if ext != Extension::TransportCc {
            a("extmap", Some(format!("{id} {}", ext.uri())));
        }
    }
}

/// `a=msid` and `a=ssrc` of the track forwarded on `f`.
fn forward_ssrc_lines(a: &mut impl FnMut(&str, Option<String>), f: &Forward) {
    let (owner, track) = f.source;
    let (stream, track) = (format!("p{owner}"), format!("p{owner}-t{track}"));
    a("msid", Some(format!("{stream} {track}")));
    a("ssrc", Some(format!("{} cname:{stream}", f.ssrc)));
    a("ssrc", Some(format!("{} msid:{stream} {track}", f.ssrc)));
}

/// The payload type for a new forwarded section of `kind` (see [`Forward::pt`]): the
/// number the participant already uses for the codec, else the server's own if the
/// participant uses it for nothing, else the lowest free dynamic one (RFC 3551 §6: 96-127,
/// then the unassigned 35-63 that browsers also use). Within a BUNDLE group one number
/// names one codec (RFC 8843 §9.1), so a number the participant gave any other codec is
/// never taken. `None` when all are used.
pub(crate) fn forward_pt(known: Option<u8>, taken: u128, kind: Kind) -> Option<u8> {
    let default = match kind {
        Kind::Audio => OPUS_PT,
        Kind::Video => VP8_PT,
    };
    known.or_else(|| {
        std::iter::once(default)
            .chain(96..=127)
            .chain(35..=63)
            .find(|&pt| taken & (1 << pt) == 0)
    })
}

/// The header-extension ids for a new forwarded section of `kind` in a BUNDLE group whose
/// sections are `sections` and whose participant has mapped the ids in `taken` (see
/// [`Forward::extensions`]).
pub(crate) fn forward_extensions(sections: &[Section], taken: u16, kind: Kind) -> ExtensionMap {
    let maps = || {
        sections.iter().filter_map(|s| match s {
            Section::Publish(p) => Some(&p.extensions),
            Section::Forward(f) => Some(&f.extensions),
            Section::Duplex(d) => Some(&d.publish.extensions),
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
