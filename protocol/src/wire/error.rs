use super::{AddressError, CloseCode, Refusal};

/// Everything that can go wrong on the relay wire. Messages say whose fault
/// it is and, where a user can act, what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The relay address is malformed.
    #[error(transparent)]
    Address(#[from] AddressError),
    /// The input ended before a field it needs.
    #[error("message ended early (truncated or not an anonchat peer)")]
    Truncated,
    /// Bytes left over after a complete message.
    #[error("{0} unexpected bytes after the end of the message")]
    TrailingBytes(usize),
    /// A frame's padding holds non-zero bytes.
    #[error("frame padding is not zero (corrupted or hostile peer)")]
    NonZeroPadding,
    /// A frame kind byte this version does not know.
    #[error("unknown frame kind 0x{0:02x} (peer speaks a different protocol)")]
    UnknownFrameKind(u8),
    /// A frame whose length is not this connection's frame length.
    #[error("frame is {got} bytes, this connection uses {expected}-byte frames")]
    WrongFrameLength {
        /// The connection's frame length.
        expected: usize,
        /// The length received.
        got: usize,
    },
    /// A handshake length prefix outside the allowed range.
    #[error("handshake message of {0} bytes is outside the allowed range")]
    BadHandshakeLength(usize),
    /// A cell whose length is not the relay's cell size.
    #[error("cell is {got} bytes, this relay uses {expected}-byte cells")]
    WrongCellLength {
        /// The relay's cell size.
        expected: usize,
        /// The length received.
        got: usize,
    },
    /// The relay announced a cell size outside the allowed range.
    #[error("relay announced cell size {0}, outside {min}..={max}", min = super::MIN_CELL_SIZE, max = super::MAX_CELL_SIZE)]
    BadCellSize(usize),
    /// The relay announced rounds of zero length.
    #[error("relay announced a round length of 0 ms")]
    BadRoundLength,
    /// A batch with more cells than [`MAX_BATCH_CELLS`](super::MAX_BATCH_CELLS).
    #[error("batch of {0} cells exceeds the limit of {max}", max = super::MAX_BATCH_CELLS)]
    BatchTooLarge(u32),
    /// A batch body whose SHA-256 is not the hash its header (inside
    /// Noise) announced: the body was altered after the relay sealed it.
    #[error(
        "the body of batch {round} does not match the hash in its header: it was altered after \
         the relay sealed it (by another client of the shard or on the path) and is refused; \
         reconnect, and if it happens again connect through a proxy such as Tor or use another relay"
    )]
    BatchBodyMismatch {
        /// The round the header announced.
        round: u64,
    },
    /// A field holds a value the protocol does not allow; the text names it.
    #[error("invalid field value: {0}")]
    BadField(&'static str),
    /// An AEAD ciphertext did not authenticate.
    #[error(
        "decryption failed: the bytes were altered, or the peer does not hold the expected key"
    )]
    Decrypt,
    /// Any other error of the Noise library.
    #[error("Noise error: {0}")]
    Noise(String),
    /// The relay refused the handshake.
    #[error("the relay refused the connection: {0}")]
    Refused(Refusal),
    /// The relay sent a close frame.
    #[error("the relay closed the connection ({code}): {reason}")]
    Closed {
        /// Why, as a code.
        code: CloseCode,
        /// Why, in the relay's words.
        reason: String,
    },
}

impl From<snow::Error> for WireError {
    fn from(e: snow::Error) -> Self {
        match e {
            snow::Error::Decrypt => WireError::Decrypt,
            other => WireError::Noise(other.to_string()),
        }
    }
}
