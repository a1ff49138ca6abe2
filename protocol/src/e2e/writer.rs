//! The encoding side of `wire::reader::Reader`: big-endian integers and
//! length-prefixed byte strings. Used for bundles and exported state.
//!
//! The buffer often holds secrets (the exported state: ratchet keys,
//! queued message text; an identity's private keys). A `Vec` that grows
//! by itself frees its old allocation with the bytes still in it, which
//! `Zeroizing` never sees: so the writer grows the buffer itself, moving
//! the bytes to a larger `Zeroizing` buffer and wiping the old one.

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

    /// Room for `extra` more bytes without a reallocation by `Vec`: a
    /// larger buffer takes the bytes, and the old one is wiped when it is
    /// dropped.
    fn reserve(&mut self, extra: usize) {
        let need = self.buf.len().saturating_add(extra);
        if need > self.buf.capacity() {
            let cap = need.max(self.buf.capacity().saturating_mul(2)).max(256);
            let mut next = Zeroizing::new(Vec::with_capacity(cap));
            next.extend_from_slice(&self.buf);
            self.buf = next;
        }
    }

    pub(crate) fn bytes(&mut self, b: &[u8]) {
        self.reserve(b.len());
        self.buf.extend_from_slice(b);
    }

    pub(crate) fn u8(&mut self, v: u8) {
        self.bytes(&[v]);
    }

    pub(crate) fn u16(&mut self, v: u16) {
        self.bytes(&v.to_be_bytes());
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
        self.reserve(2 + b.len());
        Self::append_u16_prefixed(&mut self.buf, b);
    }

    /// A byte string behind a four-byte length.
    pub(crate) fn u32_prefixed(&mut self, b: &[u8]) {
        self.u32(b.len() as u32);
        self.bytes(b);
    }

    /// Appends to a plain `Vec`: for public data (signed bundles).
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

    /// Growing the buffer keeps every byte, in order, across reallocations.
    #[test]
    fn the_buffer_grows_without_losing_bytes() {
        let mut w = Writer::new();
        let mut want = Vec::new();
        for i in 0..2000u32 {
            w.u32(i);
            want.extend_from_slice(&i.to_be_bytes());
            w.u16_prefixed(&[i as u8; 3]);
            want.extend_from_slice(&[0, 3]);
            want.extend_from_slice(&[i as u8; 3]);
        }
        assert_eq!(&*w.into_secret(), &want);
    }

    /// The buffer grows by our rule, not `Vec`'s: at least 256 bytes,
    /// doubling, and only when the bytes no longer fit, so that every
    /// reallocation goes through the wiped copy in `reserve` (mutation
    /// run: `reserve` emptied, or its `>` turned into `==` or `>=`).
    #[test]
    fn the_buffer_grows_by_its_own_rule() {
        let mut w = Writer::new();
        w.u8(1);
        assert_eq!(w.buf.capacity(), 256, "grown by us, not by Vec");
        w.bytes(&[2; 255]);
        assert_eq!(w.buf.capacity(), 256, "exactly full: no growth");
        w.u8(3);
        assert_eq!(w.buf.capacity(), 512);
        w.bytes(&[4; 2000]);
        assert_eq!(w.buf.capacity(), 2257, "what is needed, past double");
    }

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
