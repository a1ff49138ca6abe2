use super::{AddressError, CloseCode, Refusal};

/// Everything that can go wrong on the relay wire. Messages say whose fault
/// it is and, where a user can act, what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error(transparent)]
    Address(#[from] AddressError),
    #[error("message ended early (truncated or not an anonchat peer)")]
    Truncated,
    #[error("{0} unexpected bytes after the end of the message")]
    TrailingBytes(usize),
    #[error("frame padding is not zero (corrupted or hostile peer)")]
    NonZeroPadding,
    #[error("unknown frame kind 0x{0:02x} (peer speaks a different protocol)")]
    UnknownFrameKind(u8),
    #[error("frame is {got} bytes, this connection uses {expected}-byte frames")]
    WrongFrameLength { expected: usize, got: usize },
    #[error("handshake message of {0} bytes is outside the allowed range")]
    BadHandshakeLength(usize),
    #[error("cell is {got} bytes, this relay uses {expected}-byte cells")]
    WrongCellLength { expected: usize, got: usize },
    #[error("relay announced cell size {0}, outside {min}..={max}", min = super::MIN_CELL_SIZE, max = super::MAX_CELL_SIZE)]
    BadCellSize(usize),
    #[error("relay announced a round length of 0 ms")]
    BadRoundLength,
    #[error("batch of {0} cells exceeds the limit of {max}", max = super::MAX_BATCH_CELLS)]
    BatchTooLarge(u32),
    #[error("invalid field value: {0}")]
    BadField(&'static str),
    #[error(
        "decryption failed: the bytes were altered, or the peer does not hold the expected key"
    )]
    Decrypt,
    #[error("Noise error: {0}")]
    Noise(String),
    #[error("the relay refused the connection: {0}")]
    Refused(Refusal),
    #[error("the relay closed the connection ({code}): {reason}")]
    Closed { code: CloseCode, reason: String },
}

impl From<snow::Error> for WireError {
    fn from(e: snow::Error) -> Self {
        match e {
            snow::Error::Decrypt => WireError::Decrypt,
            other => WireError::Noise(other.to_string()),
        }
    }
}
