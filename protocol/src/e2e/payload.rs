//! What a session cell carries once opened: a list of records, then zero
//! padding up to the cell's payload size.
//!
//! ```text
//! 0x00                                  end (the rest is zero padding)
//! 0x01 DATA  msg_id u64 | floor u64 | index u16 | count u16 | len u16 | bytes
//! 0x02 ACK   msg_id u64
//! 0x03 CONTROL  as DATA: a fragment of a control message (group
//!               invitations, membership, sender keys; see `groups`)
//! ```
//! DATA and CONTROL share one message numbering; a message's fragments
//! are all of one kind.
//! `floor` is the sender's lowest unacknowledged message id: every id below
//! it is either delivered or abandoned, so the receiver need not wait for it.

use zeroize::Zeroizing;

use crate::wire::reader::Reader;

const END: u8 = 0x00;
const DATA: u8 = 0x01;
const ACK: u8 = 0x02;
const CONTROL: u8 = 0x03;

/// Bytes a DATA record spends besides its data.
pub const DATA_OVERHEAD: usize = 1 + 8 + 8 + 2 + 2 + 2;
/// Bytes of an ACK record.
pub const ACK_LEN: usize = 1 + 8;
/// ACK records a cell may carry beside a full fragment.
pub const ACKS_PER_CELL: usize = 4;

#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Fragment {
    pub(crate) msg_id: u64,
    pub(crate) floor: u64,
    pub(crate) index: u16,
    pub(crate) count: u16,
    pub(crate) data: Zeroizing<Vec<u8>>,
    /// A fragment of a control message (record CONTROL), not of text.
    pub(crate) control: bool,
}

impl std::fmt::Debug for Fragment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Fragment {{ msg_id: {}, index: {}/{}, len: {} }}",
            self.msg_id,
            self.index,
            self.count,
            self.data.len()
        )
    }
}

impl Fragment {
    /// Appends the record's fields after its kind byte: `msg_id | floor |
    /// index | count | len | bytes` (DATA and CONTROL, pairwise and
    /// group).
    pub(crate) fn write_fields(&self, b: &mut Vec<u8>) {
        b.extend_from_slice(&self.msg_id.to_be_bytes());
        b.extend_from_slice(&self.floor.to_be_bytes());
        b.extend_from_slice(&self.index.to_be_bytes());
        b.extend_from_slice(&self.count.to_be_bytes());
        b.extend_from_slice(&(self.data.len() as u16).to_be_bytes());
        b.extend_from_slice(&self.data);
    }

    /// Reads what [`Fragment::write_fields`] wrote; `None` if it is cut
    /// short or its index is not below a non-zero count.
    pub(crate) fn read_fields(r: &mut Reader<'_>, control: bool) -> Option<Self> {
        let msg_id = r.u64().ok()?;
        let floor = r.u64().ok()?;
        let index = r.u16().ok()?;
        let count = r.u16().ok()?;
        let len = usize::from(r.u16().ok()?);
        let data = Zeroizing::new(r.take(len).ok()?.to_vec());
        if count == 0 || index >= count {
            return None;
        }
        Some(Self {
            msg_id,
            floor,
            index,
            count,
            data,
            control,
        })
    }
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Records {
    pub(crate) acks: Vec<u64>,
    pub(crate) data: Option<Fragment>,
}

impl Records {
    pub(crate) fn is_empty(&self) -> bool {
        self.acks.is_empty() && self.data.is_none()
    }

    /// Encodes into exactly `size` bytes. The caller keeps within size
    /// (fragments are cut for it), which a debug assertion checks.
    pub(crate) fn encode(&self, size: usize) -> Zeroizing<Vec<u8>> {
        let mut b = Zeroizing::new(Vec::with_capacity(size));
        for id in &self.acks {
            b.push(ACK);
            b.extend_from_slice(&id.to_be_bytes());
        }
        if let Some(f) = &self.data {
            b.push(if f.control { CONTROL } else { DATA });
            f.write_fields(&mut b);
        }
        debug_assert!(b.len() <= size);
        b.resize(size, END);
        b
    }

    /// Decodes strictly: unknown record kinds, a second DATA record, more
    /// than the allowed ACKs, or non-zero padding are refused.
    pub(crate) fn decode(b: &[u8]) -> Option<Self> {
        let mut r = Reader::new(b);
        let mut out = Self::default();
        loop {
            let Ok(kind) = r.u8() else { return Some(out) };
            match kind {
                END => {
                    r.expect_zero_padding().ok()?;
                    return Some(out);
                }
                ACK if out.acks.len() < ACKS_PER_CELL * 4 => out.acks.push(r.u64().ok()?),
                DATA | CONTROL if out.data.is_none() => {
                    out.data = Some(Fragment::read_fields(&mut r, kind == CONTROL)?);
                }
                _ => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn records_round_trip_padded_to_size() {
        let r = Records {
            acks: vec![1, 2],
            data: Some(Fragment {
                msg_id: 7,
                floor: 3,
                index: 1,
                count: 2,
                data: Zeroizing::new(b"hello".to_vec()),
                control: false,
            }),
        };
        let b = r.encode(100);
        assert_eq!(b.len(), 100);
        assert_eq!(Records::decode(&b).unwrap(), r);
        assert!(Records::decode(&[0u8; 10]).unwrap().is_empty());
    }

    /// `DATA_OVERHEAD` and `ACK_LEN` are what the records take: two ACKs
    /// and a 5-byte fragment fill exactly their sum (no padding, no
    /// overflow). Checked against each `+` in the constants changed.
    #[test]
    fn record_sizes_are_what_the_constants_say() {
        let r = Records {
            acks: vec![1, 2],
            data: Some(Fragment {
                msg_id: 7,
                floor: 3,
                index: 1,
                count: 2,
                data: Zeroizing::new(b"hello".to_vec()),
                control: true,
            }),
        };
        let size = 2 * ACK_LEN + DATA_OVERHEAD + 5;
        let b = r.encode(size);
        assert_eq!(b.last(), Some(&b'o'), "no padding: the sizes add up");
        assert_eq!(Records::decode(&b).unwrap(), r);
        assert_eq!(
            format!("{:?}", r.data.unwrap()),
            "Fragment { msg_id: 7, index: 1/2, len: 5 }"
        );
    }

    #[test]
    fn malformed_records_are_refused() {
        assert!(Records::decode(&[0x07]).is_none());
        assert!(Records::decode(&[0x00, 0x01]).is_none(), "padding not zero");
        let mut two = Records {
            acks: vec![],
            data: Some(Fragment {
                msg_id: 1,
                floor: 1,
                index: 0,
                count: 1,
                data: Zeroizing::new(vec![1]),
                control: false,
            }),
        }
        .encode(40)
        .to_vec();
        let first = two[..=DATA_OVERHEAD].to_vec();
        two.truncate(0);
        two.extend_from_slice(&first);
        two.extend_from_slice(&first);
        assert!(Records::decode(&two).is_none(), "two DATA records");
        let mut bad_index = first.clone();
        bad_index[17..19].copy_from_slice(&5u16.to_be_bytes());
        assert!(Records::decode(&bad_index).is_none());
    }

    /// The decoder takes what docs/protocol.md says: up to 16 ACKs in a
    /// cell, not 17. (Checked against `< ACKS_PER_CELL * 4 + 1`: 17 then
    /// decoded.)
    #[test]
    fn sixteen_acks_decode_and_seventeen_do_not() {
        let acks = |n: u64| {
            let r = Records {
                acks: (1..=n).collect(),
                data: None,
            };
            r.encode(200)
        };
        assert_eq!(Records::decode(&acks(16)).unwrap().acks.len(), 16);
        assert!(Records::decode(&acks(17)).is_none());
    }

    proptest! {
        #[test]
        fn decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = Records::decode(&bytes);
        }
    }
}
