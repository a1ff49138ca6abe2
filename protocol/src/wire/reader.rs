//! A cursor over untrusted bytes that cannot read past the end: every read
//! returns [`WireError::Truncated`] instead of panicking.

use super::WireError;

pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if self.buf.len() < n {
            return Err(WireError::Truncated);
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.array::<1>()?[0])
    }

    pub(crate) fn u16(&mut self) -> Result<u16, WireError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    pub(crate) fn u32(&mut self) -> Result<u32, WireError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, WireError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    /// Bytes not read yet.
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len()
    }

    /// The rest must be zero padding.
    pub(crate) fn expect_zero_padding(self) -> Result<(), WireError> {
        if self.buf.iter().all(|&b| b == 0) {
            Ok(())
        } else {
            Err(WireError::NonZeroPadding)
        }
    }

    /// Nothing may be left.
    pub(crate) fn expect_end(self) -> Result<(), WireError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(WireError::TrailingBytes(self.buf.len()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_stop_at_the_end() {
        let mut r = Reader::new(&[1, 2, 3]);
        assert_eq!(r.u16().unwrap(), 0x0102);
        assert_eq!(r.u16(), Err(WireError::Truncated));
        assert_eq!(r.u8().unwrap(), 3);
        assert_eq!(r.u8(), Err(WireError::Truncated));
        r.expect_end().unwrap();
    }

    #[test]
    fn padding_must_be_zero() {
        assert!(Reader::new(&[0, 0]).expect_zero_padding().is_ok());
        assert_eq!(
            Reader::new(&[0, 1]).expect_zero_padding(),
            Err(WireError::NonZeroPadding)
        );
    }
}
