//! The wire codec: a borrowed [`Reader`] and append-only writers.
//!
//! Every DTLS structure is parsed from a `Reader` over the bytes that carry it; parsers reject
//! trailing bytes with [`Reader::expect_empty`]. Vectors are length-prefixed as in
//! RFC 5246 §4.3 (`opaque x<0..2^8-1>` is a one-byte length then the bytes).

use crate::error::Error;

/// A cursor over borrowed bytes. Every read is bounds-checked and returns
/// [`Error::Decode`] instead of panicking.
#[derive(Debug, Clone)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader over `buf`, positioned at its start.
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// Bytes not read yet.
    pub(crate) fn rest(&self) -> &'a [u8] {
        self.buf.get(self.pos..).unwrap_or(&[])
    }

    /// Number of bytes left.
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    /// Fails unless every byte was consumed.
    pub(crate) fn expect_empty(&self) -> Result<(), Error> {
        if self.remaining() == 0 {
            Ok(())
        } else {
            Err(Error::Decode("trailing bytes"))
        }
    }

    /// Takes `n` bytes.
    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], Error> {
        let end = self
            .pos
            .checked_add(n)
            .ok_or(Error::Decode("length overflow"))?;
        let out = self
            .buf
            .get(self.pos..end)
            .ok_or(Error::Decode("truncated"))?;
        self.pos = end;
        Ok(out)
    }

    /// Takes everything that is left.
    pub(crate) fn take_rest(&mut self) -> &'a [u8] {
        let out = self.rest();
        self.pos = self.buf.len();
        out
    }

    /// Reads a fixed-size array.
    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], Error> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    /// Reads one byte.
    pub(crate) fn u8(&mut self) -> Result<u8, Error> {
        Ok(self.array::<1>()?[0])
    }

    /// Reads a big-endian u16.
    pub(crate) fn u16(&mut self) -> Result<u16, Error> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    /// Reads a big-endian 24-bit integer.
    pub(crate) fn u24(&mut self) -> Result<u32, Error> {
        let b: [u8; 3] = self.array()?;
        Ok(u32::from_be_bytes([0, b[0], b[1], b[2]]))
    }

    /// Reads a big-endian 48-bit integer.
    pub(crate) fn u48(&mut self) -> Result<u64, Error> {
        let b: [u8; 6] = self.array()?;
        Ok(u64::from_be_bytes([
            0, 0, b[0], b[1], b[2], b[3], b[4], b[5],
        ]))
    }

    /// Reads `opaque x<lo..2^8-1>`.
    pub(crate) fn vec8(&mut self, min: usize) -> Result<&'a [u8], Error> {
        let n = usize::from(self.u8()?);
        if n < min {
            return Err(Error::Decode("vector too short"));
        }
        self.take(n)
    }

    /// Reads `opaque x<lo..2^16-1>`.
    pub(crate) fn vec16(&mut self, min: usize) -> Result<&'a [u8], Error> {
        let n = usize::from(self.u16()?);
        if n < min {
            return Err(Error::Decode("vector too short"));
        }
        self.take(n)
    }

    /// Reads `opaque x<lo..2^24-1>`.
    pub(crate) fn vec24(&mut self, min: usize) -> Result<&'a [u8], Error> {
        let n = self.u24()? as usize;
        if n < min {
            return Err(Error::Decode("vector too short"));
        }
        self.take(n)
    }

    /// Reads a vector of big-endian u16 values (`uint16 x<2..2^16-2>`), rejecting an odd length.
    pub(crate) fn u16_list(&mut self, prefix_len: usize) -> Result<Vec<u16>, Error> {
        let body = match prefix_len {
            1 => self.vec8(2)?,
            _ => self.vec16(2)?,
        };
        if body.len() % 2 != 0 {
            return Err(Error::Decode("odd u16 list"));
        }
        Ok(body
            .chunks_exact(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]))
            .collect())
    }
}

/// Appends a big-endian 24-bit integer (the value must fit).
pub(crate) fn put_u24(out: &mut Vec<u8>, v: usize) {
    let v = (v as u32).to_be_bytes();
    out.extend_from_slice(&v[1..]);
}

/// Appends a big-endian 48-bit integer.
pub(crate) fn put_u48(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_be_bytes()[2..]);
}

/// Appends `opaque x<..2^8-1>` (the caller guarantees the length fits).
pub(crate) fn put_vec8(out: &mut Vec<u8>, v: &[u8]) {
    out.push(v.len() as u8);
    out.extend_from_slice(v);
}

/// Appends `opaque x<..2^16-1>`.
pub(crate) fn put_vec16(out: &mut Vec<u8>, v: &[u8]) {
    out.extend_from_slice(&(v.len() as u16).to_be_bytes());
    out.extend_from_slice(v);
}

/// Appends `opaque x<..2^24-1>`.
pub(crate) fn put_vec24(out: &mut Vec<u8>, v: &[u8]) {
    put_u24(out, v.len());
    out.extend_from_slice(v);
}

/// Appends a 16-bit length placeholder and returns its position for [`patch_len16`].
pub(crate) fn begin_len16(out: &mut Vec<u8>) -> usize {
    let at = out.len();
    out.extend_from_slice(&[0, 0]);
    at
}

/// Fills the placeholder written by [`begin_len16`] with the number of bytes after it.
pub(crate) fn patch_len16(out: &mut [u8], at: usize) {
    let n = (out.len() - at - 2) as u16;
    out[at..at + 2].copy_from_slice(&n.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reader_bounds() {
        let mut r = Reader::new(&[1, 2, 3]);
        assert_eq!(r.u16().unwrap(), 0x0102);
        assert!(r.u16().is_err());
        assert_eq!(r.u8().unwrap(), 3);
        r.expect_empty().unwrap();
        assert!(Reader::new(&[5, 1]).vec8(0).is_err());
        assert!(Reader::new(&[0xff, 0xff, 0xff]).vec24(0).is_err());
        assert!(Reader::new(&[0, 3, 1, 2, 3]).u16_list(2).is_err());
    }

    #[test]
    fn writers_round_trip() {
        let mut out = Vec::new();
        put_u24(&mut out, 0x010203);
        put_u48(&mut out, 0x0102_0304_0506);
        put_vec8(&mut out, b"ab");
        put_vec16(&mut out, b"cd");
        put_vec24(&mut out, b"ef");
        let at = begin_len16(&mut out);
        out.extend_from_slice(b"xyz");
        patch_len16(&mut out, at);
        let mut r = Reader::new(&out);
        assert_eq!(r.u24().unwrap(), 0x010203);
        assert_eq!(r.u48().unwrap(), 0x0102_0304_0506);
        assert_eq!(r.vec8(0).unwrap(), b"ab");
        assert_eq!(r.vec16(0).unwrap(), b"cd");
        assert_eq!(r.vec24(0).unwrap(), b"ef");
        assert_eq!(r.vec16(0).unwrap(), b"xyz");
        r.expect_empty().unwrap();
    }
}
