//! The encoding side of `wire::reader::Reader`: big-endian integers and
//! length-prefixed byte strings. Used for bundles and exported state.

use zeroize::Zeroizing;

pub(crate) struct Writer {
    buf: Zeroizing<Vec<u8>>,
}

impl Writer {
    pub(crate) fn new() -> Self {
        Self {
            buf: Zeroizing::new(Vec::new()),
        }
    }

    pub(crate) fn bytes(&mut self, b: &[u8]) {
        self.buf.extend_from_slice(b);
    }

    pub(crate) fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }

    pub(crate) fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    pub(crate) fn u32(&mut self, v: u32) {
        self.bytes(&v.to_be_bytes());
    }

    pub(crate) fn u64(&mut self, v: u64) {
        self.bytes(&v.to_be_bytes());
    }

    pub(crate) fn bool(&mut self, v: bool) {
        self.u8(u8::from(v));
    }

    /// A byte string of at most 255 bytes behind a one-byte length.
    pub(crate) fn u8_prefixed(&mut self, b: &[u8]) {
        debug_assert!(u8::try_from(b.len()).is_ok());
        self.u8(b.len() as u8);
        self.bytes(b);
    }

    /// A byte string of at most 65535 bytes behind a two-byte length.
    pub(crate) fn u16_prefixed(&mut self, b: &[u8]) {
        Self::append_u16_prefixed(&mut self.buf, b);
    }

    /// A byte string behind a four-byte length.
    pub(crate) fn u32_prefixed(&mut self, b: &[u8]) {
        self.u32(b.len() as u32);
        self.bytes(b);
    }

    pub(crate) fn append_u16_prefixed(buf: &mut Vec<u8>, b: &[u8]) {
        debug_assert!(u16::try_from(b.len()).is_ok());
        buf.extend_from_slice(&(b.len() as u16).to_be_bytes());
        buf.extend_from_slice(b);
    }

    /// For public data.
    pub(crate) fn into_vec(mut self) -> Vec<u8> {
        std::mem::take(&mut *self.buf)
    }

    /// For data holding secrets.
    pub(crate) fn into_secret(self) -> Zeroizing<Vec<u8>> {
        self.buf
    }
}

/// Reads a boolean written by [`Writer::bool`]: exactly 0 or 1, anything
/// else is a damaged state.
pub(crate) fn read_bool(
    r: &mut crate::wire::reader::Reader<'_>,
) -> Result<bool, crate::wire::WireError> {
    match r.u8()? {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(crate::wire::WireError::BadField("flag")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::reader::Reader;

    /// Stored booleans decode strictly: 0 and 1, nothing else. (Checked
    /// against `_ => Ok(true)`: 2 then read as true.)
    #[test]
    fn stored_booleans_are_0_or_1() {
        assert_eq!(read_bool(&mut Reader::new(&[0])).ok(), Some(false));
        assert_eq!(read_bool(&mut Reader::new(&[1])).ok(), Some(true));
        for b in [2u8, 0x80, 0xff] {
            assert!(read_bool(&mut Reader::new(&[b])).is_err(), "{b}");
        }
        assert!(read_bool(&mut Reader::new(&[])).is_err());
    }
}
