//! Transport frames: the plaintext inside each fixed-size Noise message.
//!
//! Every frame's plaintext is exactly [`frame_plaintext_len`]`(cell_size)`
//! bytes: a kind byte, the fields, then zero padding (checked on decode).

use std::fmt;

use super::reader::Reader;
use super::text::is_non_printing;
use super::{
    BODY_HASH_LEN, BatchKey, MAX_BATCH_CELLS, MIN_CELL_SIZE, WireError, frame_plaintext_len,
};

const KIND_HELLO: u8 = 0x01;
const KIND_CELL: u8 = 0x02;
const KIND_WELCOME: u8 = 0x81;
const KIND_BATCH: u8 = 0x82;
const KIND_CLOSE: u8 = 0x83;

/// Longest close reason carried in a frame, in bytes.
pub const MAX_CLOSE_REASON: usize = 120;

/// Bytes a BATCH frame uses before its padding: kind, round, `closed_at_us`,
/// cells, batch key, body hash.
const BATCH_FRAME_USED: usize = 1 + 8 + 8 + 4 + 32 + BODY_HASH_LEN;
/// Bytes a CLOSE frame uses at most: kind, code, length, reason.
const CLOSE_FRAME_USED: usize = 1 + 1 + 1 + MAX_CLOSE_REASON;

// Every relay frame fits in the smallest frame a relay may use, so that
// all frames of a connection keep one fixed size. (Client frames fit by
// construction: a CELL frame uses `9 + C` of `C + FRAME_HEADER` bytes.)
const _: () = assert!(BATCH_FRAME_USED <= frame_plaintext_len(MIN_CELL_SIZE));
const _: () = assert!(CLOSE_FRAME_USED <= frame_plaintext_len(MIN_CELL_SIZE));

/// A frame sent by a client to the relay.
#[derive(Clone, PartialEq, Eq)]
pub enum ClientFrame {
    /// First frame after the handshake: which shard to join and, for a
    /// reconnecting client, the last round it already has.
    Hello {
        /// The shard to join.
        shard: u32,
        /// The last round the client already has, if it reconnects.
        resume_after: Option<u64>,
    },
    /// The client's one cell for `round` (the round the relay has open).
    Cell {
        /// The open round the cell is for.
        round: u64,
        /// Exactly `cell_size` bytes.
        cell: Vec<u8>,
    },
}

impl fmt::Debug for ClientFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Hello {
                shard,
                resume_after,
            } => f
                .debug_struct("Hello")
                .field("shard", shard)
                .field("resume_after", resume_after)
                .finish(),
            // Cell bytes are opaque; never print them.
            Self::Cell { round, cell } => {
                write!(f, "Cell {{ round: {round}, len: {} }}", cell.len())
            }
        }
    }
}

/// What the relay tells a client once it has joined its shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Welcome {
    /// The shard joined.
    pub shard: u32,
    /// The round now open: the client's first cell belongs to it.
    pub open_round: u64,
    /// The oldest round still held in the backlog (`open_round` if none).
    pub oldest_held: u64,
}

/// A frame sent by the relay to a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelayFrame {
    /// The answer to [`ClientFrame::Hello`].
    Welcome(Welcome),
    /// Header of a closed round. The sealed body (`cells * cell_size +
    /// AEAD_TAG_LEN` bytes) follows on the stream, outside Noise; the
    /// client checks it against `body_hash` before opening it.
    Batch {
        /// The closed round.
        round: u64,
        /// When the relay closed the round, microseconds since the Unix
        /// epoch by the relay's clock (used to measure fan-out latency).
        closed_at_us: u64,
        /// Number of cells in the body.
        cells: u32,
        /// The key that opens the body (the same for every member of the
        /// shard).
        key: BatchKey,
        /// SHA-256 of the sealed body, exactly the bytes that follow this
        /// frame: binds the shared body to this member's Noise channel.
        body_hash: [u8; BODY_HASH_LEN],
    },
    /// The relay is about to close the connection, and why.
    Close {
        /// Why, as a code.
        code: CloseCode,
        /// Why, in words: at most [`MAX_CLOSE_REASON`] bytes on the wire,
        /// no control or other non-printing character
        /// ([`is_non_printing`](super::is_non_printing)).
        reason: String,
    },
}

/// Why the relay closes a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum CloseCode {
    /// The relay is shutting down; reconnect later.
    Shutdown = 1,
    /// No cell arrived for too long.
    Idle = 2,
    /// The client broke the protocol (e.g. too many cells per round).
    Violation = 3,
    /// The relay has no room for another shard or client.
    Full = 4,
}

impl CloseCode {
    fn from_u8(b: u8) -> Result<Self, WireError> {
        Ok(match b {
            1 => Self::Shutdown,
            2 => Self::Idle,
            3 => Self::Violation,
            4 => Self::Full,
            _ => return Err(WireError::BadField("close code")),
        })
    }
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Shutdown => "relay shutting down",
            Self::Idle => "idle",
            Self::Violation => "protocol violation",
            Self::Full => "relay full",
        })
    }
}

fn frame_buf(cell_size: usize, kind: u8) -> Vec<u8> {
    let mut buf = Vec::with_capacity(frame_plaintext_len(cell_size));
    buf.push(kind);
    buf
}

fn pad(mut buf: Vec<u8>, cell_size: usize) -> Vec<u8> {
    debug_assert!(buf.len() <= frame_plaintext_len(cell_size));
    buf.resize(frame_plaintext_len(cell_size), 0);
    buf
}

fn check_len(plain: &[u8], cell_size: usize) -> Result<(), WireError> {
    let expected = frame_plaintext_len(cell_size);
    if plain.len() == expected {
        Ok(())
    } else {
        Err(WireError::WrongFrameLength {
            expected,
            got: plain.len(),
        })
    }
}

impl ClientFrame {
    /// Encodes into a frame plaintext of the connection's fixed size.
    pub fn encode(&self, cell_size: usize) -> Result<Vec<u8>, WireError> {
        Ok(match self {
            Self::Hello {
                shard,
                resume_after,
            } => {
                let mut b = frame_buf(cell_size, KIND_HELLO);
                b.extend_from_slice(&shard.to_be_bytes());
                b.push(u8::from(resume_after.is_some()));
                b.extend_from_slice(&resume_after.unwrap_or(0).to_be_bytes());
                pad(b, cell_size)
            }
            Self::Cell { round, cell } => {
                if cell.len() != cell_size {
                    return Err(WireError::WrongCellLength {
                        expected: cell_size,
                        got: cell.len(),
                    });
                }
                let mut b = frame_buf(cell_size, KIND_CELL);
                b.extend_from_slice(&round.to_be_bytes());
                b.extend_from_slice(cell);
                pad(b, cell_size)
            }
        })
    }

    /// Decodes a frame plaintext strictly: length, kind, fields, zero
    /// padding.
    pub fn decode(plain: &[u8], cell_size: usize) -> Result<Self, WireError> {
        check_len(plain, cell_size)?;
        let mut r = Reader::new(plain);
        let frame = match r.u8()? {
            KIND_HELLO => {
                let shard = r.u32()?;
                let has_resume = r.u8()?;
                let after = r.u64()?;
                let resume_after = match (has_resume, after) {
                    (0, 0) => None,
                    (1, n) => Some(n),
                    _ => return Err(WireError::BadField("hello resume flag")),
                };
                Self::Hello {
                    shard,
                    resume_after,
                }
            }
            KIND_CELL => {
                let round = r.u64()?;
                let cell = r.take(cell_size)?.to_vec();
                Self::Cell { round, cell }
            }
            other => return Err(WireError::UnknownFrameKind(other)),
        };
        r.expect_zero_padding()?;
        Ok(frame)
    }
}

impl RelayFrame {
    /// Encodes into a frame plaintext of the connection's fixed size. In a
    /// close reason every non-printing character
    /// ([`is_non_printing`](super::is_non_printing)) becomes U+FFFD, so the
    /// relay never sends one, and a reason longer than [`MAX_CLOSE_REASON`]
    /// bytes is cut at a character boundary.
    pub fn encode(&self, cell_size: usize) -> Vec<u8> {
        match self {
            Self::Welcome(w) => {
                let mut b = frame_buf(cell_size, KIND_WELCOME);
                b.extend_from_slice(&w.shard.to_be_bytes());
                b.extend_from_slice(&w.open_round.to_be_bytes());
                b.extend_from_slice(&w.oldest_held.to_be_bytes());
                pad(b, cell_size)
            }
            Self::Batch {
                round,
                closed_at_us,
                cells,
                key,
                body_hash,
            } => {
                let mut b = frame_buf(cell_size, KIND_BATCH);
                b.extend_from_slice(&round.to_be_bytes());
                b.extend_from_slice(&closed_at_us.to_be_bytes());
                b.extend_from_slice(&cells.to_be_bytes());
                b.extend_from_slice(key.as_bytes());
                b.extend_from_slice(body_hash);
                pad(b, cell_size)
            }
            Self::Close { code, reason } => {
                let reason: String = reason
                    .chars()
                    .map(|c| if is_non_printing(c) { '\u{fffd}' } else { c })
                    .collect();
                let mut end = reason.len().min(MAX_CLOSE_REASON);
                while !reason.is_char_boundary(end) {
                    end -= 1;
                }
                let mut b = frame_buf(cell_size, KIND_CLOSE);
                b.push(*code as u8);
                b.push(end as u8);
                b.extend_from_slice(&reason.as_bytes()[..end]);
                pad(b, cell_size)
            }
        }
    }

    /// Decodes a frame plaintext strictly: length, kind, fields, zero
    /// padding.
    pub fn decode(plain: &[u8], cell_size: usize) -> Result<Self, WireError> {
        check_len(plain, cell_size)?;
        let mut r = Reader::new(plain);
        let frame = match r.u8()? {
            KIND_WELCOME => Self::Welcome(Welcome {
                shard: r.u32()?,
                open_round: r.u64()?,
                oldest_held: r.u64()?,
            }),
            KIND_BATCH => {
                let round = r.u64()?;
                let closed_at_us = r.u64()?;
                let cells = r.u32()?;
                if cells > MAX_BATCH_CELLS {
                    return Err(WireError::BatchTooLarge(cells));
                }
                let key = BatchKey::from_bytes(r.array()?);
                let body_hash = r.array()?;
                Self::Batch {
                    round,
                    closed_at_us,
                    cells,
                    key,
                    body_hash,
                }
            }
            KIND_CLOSE => {
                let code = CloseCode::from_u8(r.u8()?)?;
                let len = usize::from(r.u8()?);
                if len > MAX_CLOSE_REASON {
                    return Err(WireError::BadField("close reason length"));
                }
                let reason = std::str::from_utf8(r.take(len)?)
                    .map_err(|_| WireError::BadField("close reason is not UTF-8"))?;
                if reason.chars().any(is_non_printing) {
                    return Err(WireError::BadField(
                        "close reason holds a control or other non-printing character",
                    ));
                }
                Self::Close {
                    code,
                    reason: reason.to_owned(),
                }
            }
            other => return Err(WireError::UnknownFrameKind(other)),
        };
        r.expect_zero_padding()?;
        Ok(frame)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::wire::{DEFAULT_CELL_SIZE, MAX_CELL_SIZE, MIN_CELL_SIZE};

    const C: usize = DEFAULT_CELL_SIZE;

    #[test]
    fn client_frames_round_trip_at_fixed_size() {
        for f in [
            ClientFrame::Hello {
                shard: 7,
                resume_after: None,
            },
            ClientFrame::Hello {
                shard: u32::MAX,
                resume_after: Some(0),
            },
            ClientFrame::Cell {
                round: 42,
                cell: vec![0xAB; C],
            },
        ] {
            let plain = f.encode(C).unwrap();
            assert_eq!(plain.len(), frame_plaintext_len(C));
            assert_eq!(ClientFrame::decode(&plain, C).unwrap(), f);
        }
    }

    #[test]
    fn relay_frames_round_trip_at_fixed_size() {
        for f in [
            RelayFrame::Welcome(Welcome {
                shard: 3,
                open_round: 10,
                oldest_held: 2,
            }),
            RelayFrame::Batch {
                round: 9,
                closed_at_us: 123,
                cells: 50,
                key: BatchKey::from_bytes([5; 32]),
                body_hash: [6; 32],
            },
            RelayFrame::Close {
                code: CloseCode::Idle,
                reason: "no cell for 30 s".into(),
            },
        ] {
            let plain = f.encode(C);
            assert_eq!(plain.len(), frame_plaintext_len(C));
            assert_eq!(RelayFrame::decode(&plain, C).unwrap(), f);
        }
    }

    /// The BATCH layout of `docs/protocol.md`, byte by byte, at the
    /// smallest cell size (every frame of a connection has one size).
    #[test]
    fn batch_frame_layout_is_the_documented_one() {
        let plain = RelayFrame::Batch {
            round: 0x0102_0304_0506_0708,
            closed_at_us: 0x1112_1314_1516_1718,
            cells: 0x2122_2324,
            key: BatchKey::from_bytes([0xAA; 32]),
            body_hash: [0xBB; 32],
        }
        .encode(MIN_CELL_SIZE);
        assert_eq!(plain.len(), MIN_CELL_SIZE + 16);
        assert_eq!(plain[0], 0x82);
        assert_eq!(plain[1..9], 0x0102_0304_0506_0708u64.to_be_bytes());
        assert_eq!(plain[9..17], 0x1112_1314_1516_1718u64.to_be_bytes());
        assert_eq!(plain[17..21], 0x2122_2324u32.to_be_bytes());
        assert_eq!(plain[21..53], [0xAA; 32]);
        assert_eq!(plain[53..85], [0xBB; 32]);
        assert_eq!(BATCH_FRAME_USED, 85);
        assert!(plain[85..].iter().all(|&b| b == 0));
    }

    #[test]
    fn the_longest_frames_fit_the_smallest_cell_size() {
        let longest_close = RelayFrame::Close {
            code: CloseCode::Full,
            reason: "x".repeat(MAX_CLOSE_REASON),
        }
        .encode(MIN_CELL_SIZE);
        assert_eq!(longest_close.len(), frame_plaintext_len(MIN_CELL_SIZE));
        assert_eq!(
            longest_close[3 + MAX_CLOSE_REASON - 1..3 + MAX_CLOSE_REASON],
            [b'x']
        );
        assert!(CLOSE_FRAME_USED <= frame_plaintext_len(MIN_CELL_SIZE));
        assert!(BATCH_FRAME_USED <= frame_plaintext_len(MIN_CELL_SIZE));
    }

    /// A close frame as a hostile relay could write it: any bytes as reason.
    fn raw_close(reason: &[u8]) -> Vec<u8> {
        let mut plain = vec![0u8; frame_plaintext_len(C)];
        plain[0] = KIND_CLOSE;
        plain[1] = CloseCode::Violation as u8;
        plain[2] = reason.len() as u8;
        plain[3..3 + reason.len()].copy_from_slice(reason);
        plain
    }

    /// Issue 10, finding 9: the relay's words are shown to the user, so a
    /// reason that could hide, reorder or fake text is refused outright.
    ///
    /// Checked against the mutation "delete the `is_non_printing` check in
    /// `RelayFrame::decode`": every case below then decodes and the test
    /// fails.
    #[test]
    fn close_reason_with_control_bidi_or_invisible_characters_is_refused() {
        assert!(RelayFrame::decode(&raw_close(b"relay full; try later"), C).is_ok());
        for reason in [
            "line one\nline two",
            "tab\there",
            "bell\u{7}",
            "escape \u{1b}[31mred",
            "C1 \u{9b}31m",
            "reversed \u{202e}txt.exe",
            "embedded \u{202a}x\u{202c}",
            "isolate \u{2066}x\u{2069}",
            "zero\u{200b}width",
            "joiner\u{200d}",
            "bom\u{feff}",
            "soft\u{ad}hyphen",
            "line\u{2028}separator",
            "paragraph\u{2029}separator",
            "private \u{e000}",
            "nonchar \u{fffe}",
            "tag \u{e0041}",
        ] {
            assert_eq!(
                RelayFrame::decode(&raw_close(reason.as_bytes()), C),
                Err(WireError::BadField(
                    "close reason holds a control or other non-printing character"
                )),
                "{reason:?}"
            );
        }
    }

    /// The relay never sends such a reason: encoding replaces each
    /// non-printing character with U+FFFD (before the length cut).
    #[test]
    fn close_reason_is_cleaned_on_encode() {
        let plain = RelayFrame::Close {
            code: CloseCode::Violation,
            reason: "bad\u{202e}\nfrobs\u{200b}".into(),
        }
        .encode(C);
        let RelayFrame::Close { reason, .. } = RelayFrame::decode(&plain, C).unwrap() else {
            panic!("not a close frame")
        };
        assert_eq!(reason, "bad\u{fffd}\u{fffd}frobs\u{fffd}");
        let long = RelayFrame::Close {
            code: CloseCode::Violation,
            reason: "\u{7}".repeat(200),
        }
        .encode(C);
        let RelayFrame::Close { reason, .. } = RelayFrame::decode(&long, C).unwrap() else {
            panic!("not a close frame")
        };
        assert_eq!(reason, "\u{fffd}".repeat(MAX_CLOSE_REASON / 3));
    }

    #[test]
    fn cell_of_wrong_length_is_refused_on_encode() {
        let f = ClientFrame::Cell {
            round: 1,
            cell: vec![0; C - 1],
        };
        assert_eq!(
            f.encode(C),
            Err(WireError::WrongCellLength {
                expected: C,
                got: C - 1
            })
        );
    }

    #[test]
    fn frame_of_wrong_length_is_refused() {
        let plain = ClientFrame::Hello {
            shard: 1,
            resume_after: None,
        }
        .encode(C)
        .unwrap();
        assert!(matches!(
            ClientFrame::decode(&plain[1..], C),
            Err(WireError::WrongFrameLength { .. })
        ));
        let mut longer = plain.clone();
        longer.push(0);
        assert!(matches!(
            ClientFrame::decode(&longer, C),
            Err(WireError::WrongFrameLength { .. })
        ));
    }

    #[test]
    fn unknown_kind_nonzero_padding_and_bad_flags_are_refused() {
        let mut plain = vec![0u8; frame_plaintext_len(C)];
        plain[0] = 0x7f;
        assert_eq!(
            ClientFrame::decode(&plain, C),
            Err(WireError::UnknownFrameKind(0x7f))
        );
        // A relay frame kind is not a client frame and vice versa.
        plain[0] = KIND_WELCOME;
        assert_eq!(
            ClientFrame::decode(&plain, C),
            Err(WireError::UnknownFrameKind(KIND_WELCOME))
        );
        plain[0] = KIND_HELLO;
        assert_eq!(
            RelayFrame::decode(&plain, C),
            Err(WireError::UnknownFrameKind(KIND_HELLO))
        );

        let mut hello = ClientFrame::Hello {
            shard: 1,
            resume_after: None,
        }
        .encode(C)
        .unwrap();
        *hello.last_mut().unwrap() = 1;
        assert_eq!(
            ClientFrame::decode(&hello, C),
            Err(WireError::NonZeroPadding)
        );

        let mut flag = vec![0u8; frame_plaintext_len(C)];
        flag[0] = KIND_HELLO;
        flag[5] = 2;
        assert_eq!(
            ClientFrame::decode(&flag, C),
            Err(WireError::BadField("hello resume flag"))
        );
    }

    #[test]
    fn batch_header_with_too_many_cells_is_refused() {
        let mut plain = RelayFrame::Batch {
            round: 1,
            closed_at_us: 1,
            cells: 1,
            key: BatchKey::from_bytes([0; 32]),
            body_hash: [0; 32],
        }
        .encode(C);
        plain[17..21].copy_from_slice(&(MAX_BATCH_CELLS + 1).to_be_bytes());
        assert_eq!(
            RelayFrame::decode(&plain, C),
            Err(WireError::BatchTooLarge(MAX_BATCH_CELLS + 1))
        );
    }

    #[test]
    fn close_reason_is_cut_at_a_char_boundary_and_checked() {
        let long = "é".repeat(200);
        let plain = RelayFrame::Close {
            code: CloseCode::Violation,
            reason: long,
        }
        .encode(MIN_CELL_SIZE);
        let RelayFrame::Close { reason, .. } = RelayFrame::decode(&plain, MIN_CELL_SIZE).unwrap()
        else {
            panic!("not a close frame")
        };
        assert_eq!(reason.len(), MAX_CLOSE_REASON);

        let mut bad = plain.clone();
        bad[1] = 99;
        assert_eq!(
            RelayFrame::decode(&bad, MIN_CELL_SIZE),
            Err(WireError::BadField("close code"))
        );
        let mut bad = plain;
        bad[3] = 0xff;
        assert!(matches!(
            RelayFrame::decode(&bad, MIN_CELL_SIZE),
            Err(WireError::BadField(_))
        ));
    }

    #[test]
    fn debug_of_a_cell_frame_hides_the_cell() {
        let f = ClientFrame::Cell {
            round: 3,
            cell: vec![0x41; C],
        };
        assert_eq!(format!("{f:?}"), "Cell { round: 3, len: 512 }");
    }

    proptest! {
        #[test]
        fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..700),
                                cell in MIN_CELL_SIZE..=1024usize) {
            let _ = ClientFrame::decode(&bytes, cell);
            let _ = RelayFrame::decode(&bytes, cell);
        }

        #[test]
        fn cell_frames_round_trip(round: u64, cell_size in MIN_CELL_SIZE..=MAX_CELL_SIZE, fill: u8) {
            let f = ClientFrame::Cell { round, cell: vec![fill; cell_size] };
            let plain = f.encode(cell_size).unwrap();
            prop_assert_eq!(plain.len(), frame_plaintext_len(cell_size));
            prop_assert_eq!(ClientFrame::decode(&plain, cell_size).unwrap(), f);
        }

        #[test]
        fn batch_headers_round_trip(round: u64, at: u64, cells in 0..=MAX_BATCH_CELLS,
                                    key: [u8; 32], body_hash: [u8; 32],
                                    cell_size in MIN_CELL_SIZE..=MAX_CELL_SIZE) {
            let f = RelayFrame::Batch { round, closed_at_us: at, cells, key: BatchKey::from_bytes(key), body_hash };
            let plain = f.encode(cell_size);
            prop_assert_eq!(plain.len(), frame_plaintext_len(cell_size));
            prop_assert_eq!(RelayFrame::decode(&plain, cell_size).unwrap(), f);
        }

        #[test]
        fn close_reasons_decode_only_when_printable(
            chars in proptest::collection::vec(any::<char>(), 0..=MAX_CLOSE_REASON / 4),
            code in 1u8..=4,
        ) {
            let reason: String = chars.into_iter().collect();
            let mut plain = raw_close(reason.as_bytes());
            plain[1] = code;
            let printable = !reason.chars().any(is_non_printing);
            prop_assert_eq!(RelayFrame::decode(&plain, C).is_ok(), printable);
        }
    }
}
