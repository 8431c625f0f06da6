//! DTLS 1.2 framing for hand-made input (RFC 6347 §4.1 records, §4.2.2 handshake
//! fragments, RFC 5246 §7.4.1.4 extension blocks), and draining a connection's output.

use callsec_dtls::{Connection, Event};

/// A DTLSPlaintext/DTLSCiphertext record: content type `ct`, DTLS 1.2, `epoch`, the 48-bit
/// sequence number `seq`, then `body`.
pub fn record(ct: u8, epoch: u16, seq: u64, body: &[u8]) -> Vec<u8> {
    let mut d = vec![ct, 0xfe, 0xfd];
    d.extend_from_slice(&epoch.to_be_bytes());
    d.extend_from_slice(&seq.to_be_bytes()[2..]);
    d.extend_from_slice(&(body.len() as u16).to_be_bytes());
    d.extend_from_slice(body);
    d
}

/// A handshake fragment: message type `ty`, message length `len`, message_seq `seq`,
/// fragment offset `off`, then `body` (its length is the fragment length).
pub fn fragment(ty: u8, len: u32, seq: u16, off: u32, body: &[u8]) -> Vec<u8> {
    let mut h = vec![ty];
    h.extend_from_slice(&len.to_be_bytes()[1..]);
    h.extend_from_slice(&seq.to_be_bytes());
    h.extend_from_slice(&off.to_be_bytes()[1..]);
    h.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    h.extend_from_slice(body);
    h
}

/// A whole handshake message in one fragment.
pub fn message(ty: u8, seq: u16, body: &[u8]) -> Vec<u8> {
    fragment(ty, body.len() as u32, seq, 0, body)
}

/// An extensions block: its 16-bit length, then each (type, data) with its own length.
pub fn extensions<'a>(exts: impl IntoIterator<Item = (u16, &'a [u8])>) -> Vec<u8> {
    let mut e = Vec::new();
    for (t, d) in exts {
        e.extend_from_slice(&t.to_be_bytes());
        e.extend_from_slice(&(d.len() as u16).to_be_bytes());
        e.extend_from_slice(d);
    }
    let mut b = (e.len() as u16).to_be_bytes().to_vec();
    b.extend_from_slice(&e);
    b
}

/// Every datagram `c` has to send.
pub fn drain(c: &mut Connection) -> Vec<Vec<u8>> {
    std::iter::from_fn(|| c.poll_transmit()).collect()
}

/// Every event `c` has to report.
pub fn events(c: &mut Connection) -> Vec<Event> {
    std::iter::from_fn(|| c.poll_event()).collect()
}
