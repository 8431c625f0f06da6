//! The negotiated session of one participant.

use super::write::{forward_extensions, forward_pt};
use super::{
    Direction, Duplex, Forward, Kind, Local, MAX_SECTIONS, Mid, Publish, Remote, RemoteMedia,
    SdpError, SdpType, Section, Setup, write,
};

/// A participant's negotiated session, as the server keeps it: the sections in m-line
/// order, plus the offer the server has out, if any.
#[derive(Debug, Clone)]
pub struct Session {
    local: Local,
    version: u64,
    sections: Vec<Section>,
    /// The sections of the offer the server sent and has no answer for yet.
    pub(super) pending: Option<Vec<Section>>,
    next_mid: u32,
    /// Header-extension ids the participant's offers have mapped (bit `id`), any URI.
    ext_ids: u16,
    /// The participant's payload types as its descriptions used them.
    pts: PayloadTypes,
}

/// What one participant's descriptions did with payload type numbers (one BUNDLE group).
#[derive(Debug, Clone, Copy, Default)]
struct PayloadTypes {
    /// Its number for Opus and for VP8, as last described.
    opus: Option<u8>,
    vp8: Option<u8>,
    /// Every number any of its m-lines listed (bit `pt`), any codec.
    taken: u128,
}

impl PayloadTypes {
    fn learn(&mut self, remote: &Remote) {
        for m in &remote.media {
            self.taken |= m.payload_types;
            match (m.kind, m.pt) {
                (Some(Kind::Audio), Some(pt)) => self.opus = Some(pt),
                (Some(Kind::Video), Some(pt)) => self.vp8 = Some(pt),
                _ => {}
            }
        }
    }

    fn known(&self, kind: Kind) -> Option<u8> {
        match kind {
            Kind::Audio => self.opus,
            Kind::Video => self.vp8,
        }
    }
}

/// What changed for publishing when a participant's offer (or answer) was applied.
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
            pts: PayloadTypes::default(),
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
    ///
    /// An m-line at the index of a port-0 section with a new mid is a new section: the
    /// participant recycled it (RFC 8829 §5.2.2).
    pub fn accept_offer(&mut self, offer: &Remote) -> Result<(String, PublishChanges), SdpError> {
        if offer.setup == Setup::Passive {
            return Err(SdpError::Unsupported("the server is the DTLS server"));
        }
        offer.check_transport()?;
        if offer.media.len() < self.sections.len() {
            return Err(SdpError::Mismatch(
                "offer has fewer m-lines than the session",
            ));
        }
        for (i, s) in self.sections.iter().enumerate() {
            if offer.media[i].mid != *s.mid() && !s.is_ended() {
                return Err(SdpError::Mismatch("m-lines reordered"));
            }
        }
        let mut next = Vec::with_capacity(offer.media.len());
        let mut changes = PublishChanges::default();
        for (i, m) in offer.media.iter().enumerate() {
            let existing = self.sections.get(i).filter(|s| *s.mid() == m.mid);
            let section = match existing {
                Some(Section::Forward(f)) => offered_forward(f, None, m, &mut changes)?,
                Some(Section::Duplex(d)) => {
                    offered_forward(&d.forward, Some(&d.publish), m, &mut changes)?
                }
                Some(s @ Section::Rejected { .. }) => s.clone(),
                Some(Section::Publish(old)) => offered_publish(Some(old), m, &mut changes)?,
                None => offered_publish(None, m, &mut changes)?,
            };
            next.push(section);
        }
        self.pending = None;
        self.ext_ids |= offer.media.iter().fold(0, |ids, m| ids | m.ext_ids);
        self.pts.learn(offer);
        self.sections = next;
        self.version += 1;
        let answer = write(&self.local, self.version, &self.sections, SdpType::Answer);
        Ok((answer, changes))
    }

    /// Writes an offer that adds `add` forwarded tracks (kind, ssrc, source) and ends the
    /// forwarded sections of `end` sources, on top of the negotiated sections. Returns `None`
    /// when nothing would change.
    ///
    /// A new track takes the m-line of a forwarded or published section both sides agreed
    /// is ended (port 0), with a new mid, before a new m-line is appended (RFC 8829 §5.2.2), so that a long call
    /// with many tracks coming and going keeps its description bounded.
    pub fn create_offer(
        &mut self,
        add: &[(Kind, u32, (u64, u32))],
        end: &[(u64, u32)],
    ) -> Option<String> {
        let mut sections = self.sections.clone();
        let mut changed = false;
        for s in &mut sections {
            let ending = s
                .forward()
                .is_some_and(|f| f.active && end.contains(&f.source));
            if !ending {
                continue;
            }
            changed = true;
            let next = match &*s {
                // It keeps publishing: the server's side says recvonly from now on.
                Section::Duplex(d) => Section::Publish(d.publish.clone()),
                Section::Forward(f) => Section::Forward(Forward {
                    active: false,
                    ..f.clone()
                }),
                other => other.clone(),
            };
            *s = next;
        }
        for &(kind, ssrc, source) in add {
            let already = sections
                .iter()
                .any(|s| s.forward().is_some_and(|f| f.active && f.source == source));
            if already {
                continue;
            }
            // Ended in the negotiated session (both sides agreed) and not yet reused here.
            // Refused m-lines of the participant's own (a data channel) are left alone.
            let recycled = (0..self.sections.len()).find(|&i| {
                let s = &self.sections[i];
                s.is_ended()
                    && !matches!(s, Section::Rejected { .. })
                    && sections[i].mid() == s.mid()
            });
            if recycled.is_none() && sections.len() >= MAX_SECTIONS {
                continue;
            }
            let taken = sections
                .iter()
                .filter_map(|s| s.forward().map(|f| f.pt).or(s.publish().map(|p| p.pt)))
                .fold(self.pts.taken, |t, pt| {
                    t | 1u128.checked_shl(u32::from(pt)).unwrap_or(0)
                });
            let Some(pt) = forward_pt(self.pts.known(kind), taken, kind) else {
                continue;
            };
            let mid = loop {
                self.next_mid += 1;
                let candidate = Mid(format!("s{}", self.next_mid));
                if !sections.iter().any(|s| *s.mid() == candidate) {
                    break candidate;
                }
            };
            let extensions = forward_extensions(&sections, self.ext_ids, kind);
            let section = Section::Forward(Forward {
                mid,
                kind,
                extensions,
                pt,
                ssrc,
                source,
                active: true,
                negotiated: false,
            });
            match recycled {
                Some(i) => sections[i] = section,
                None => sections.push(section),
            }
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

    /// Applies the participant's answer to the server's pending offer. Returns the mids of
    /// sections it published on and stopped (it answered port 0 on a [`Section::Duplex`]).
    ///
    /// The answer's `a=setup` is not consulted: the DTLS roles were fixed when the server
    /// answered the participant's first offer, and a renegotiation never restarts DTLS
    /// (webrtc-rs, for one, answers re-offers with `passive` while it stays the client).
    pub fn accept_answer(&mut self, answer: &Remote) -> Result<PublishChanges, SdpError> {
        let mut pending = self
            .pending
            .take()
            .ok_or(SdpError::Mismatch("no offer pending"))?;
        if answer.media.len() != pending.len() {
            self.pending = Some(pending);
            return Err(SdpError::Mismatch("answer m-line count"));
        }
        if let Err(e) = answer.check_transport() {
            self.pending = Some(pending);
            return Err(e);
        }
        let mut changes = PublishChanges::default();
        for (s, m) in pending.iter_mut().zip(&answer.media) {
            if *s.mid() != m.mid {
                return Err(SdpError::Mismatch("answer mid"));
            }
            match s {
                Section::Forward(f) => {
                    if f.active && (m.stopped || m.pt != Some(f.pt)) {
                        // Refused or answered with another codec: the track is not forwarded.
                        f.active = false;
                    }
                    f.negotiated = f.active;
                }
                Section::Duplex(d) if m.stopped => {
                    // The participant stopped the transceiver: neither direction is left.
                    changes.stopped.push(d.publish.mid.clone());
                    *s = Section::Forward(Forward {
                        active: false,
                        negotiated: false,
                        ..d.forward.clone()
                    });
                }
                Section::Duplex(d) if m.pt != Some(d.forward.pt) => {
                    *s = Section::Publish(d.publish.clone());
                }
                Section::Duplex(_) | Section::Publish(_) | Section::Rejected { .. } => {}
            }
        }
        self.pts.learn(answer);
        self.sections = pending;
        Ok(changes)
    }

    /// Forgets a pending offer (the participant rolled it back or glare).
    pub fn rollback(&mut self) {
        self.pending = None;
    }
}

/// The section after the participant's offer `m` for a section the server forwards on
/// (`publish`: what the participant published there so far, for a [`Section::Duplex`]).
///
/// `addTrack` reuses the transceiver (webrtc-pc §5.1): an offer that sends here with its
/// own SSRCs makes the section publish as well ([`Section::Duplex`]), answered `sendrecv`;
/// forwarding goes on. An offer that stops sending makes it a plain forward again, and
/// one that only sends (`sendonly`) a plain publication.
fn offered_forward(
    f: &Forward,
    publish: Option<&Publish>,
    m: &RemoteMedia,
    changes: &mut PublishChanges,
) -> Result<Section, SdpError> {
    let mut f = f.clone();
    if m.stopped || !f.active {
        if m.stopped {
            f.active = false;
        }
        if let Some(p) = publish {
            changes.stopped.push(p.mid.clone());
        }
        return Ok(Section::Forward(f));
    }
    if m.kind != Some(f.kind) {
        return Err(SdpError::Mismatch("m-line kind changed"));
    }
    // The participant's offer may renumber the codec; forwarding follows.
    f.pt = m.pt.ok_or(SdpError::Unsupported("no common codec"))?;
    f.negotiated = true;
    let p = publish_of(f.kind, f.pt, publish, m, changes);
    Ok(match (p.sending, m.direction) {
        (false, _) => Section::Forward(f),
        (true, Direction::SendOnly) => Section::Publish(p),
        (true, _) => {
            // Both directions share the m-line's extension ids: the participant's.
            f.extensions = m.extensions.clone();
            Section::Duplex(Duplex {
                forward: f,
                publish: p,
            })
        }
    })
}

/// The section after the participant's offer `m` for a section it publishes on (`old`) or
/// a new m-line of its own (`None`).
fn offered_publish(
    old: Option<&Publish>,
    m: &RemoteMedia,
    changes: &mut PublishChanges,
) -> Result<Section, SdpError> {
    match (m.kind, m.pt) {
        (Some(kind), Some(pt)) if old.is_none_or(|o| o.kind == kind) => {
            Ok(Section::Publish(publish_of(kind, pt, old, m, changes)))
        }
        (Some(_), _) if old.is_some() => Err(SdpError::Unsupported("codec or kind changed")),
        (kind, _) => Ok(Section::Rejected {
            mid: m.mid.clone(),
            media: kind.map_or("application", Kind::name),
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
        }),
    }
}

/// What the participant publishes on `m` after its offer, against what it published there
/// before (`old`); the difference goes into `changes`.
fn publish_of(
    kind: Kind,
    pt: u8,
    old: Option<&Publish>,
    m: &RemoteMedia,
    changes: &mut PublishChanges,
) -> Publish {
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
    p
}
