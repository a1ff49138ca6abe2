use crate::wire::AddressError;

/// Why an identity (file, bundle or stored secret) was refused. Each
/// message says what happened and what the user can do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// The file is larger than [`MAX_FILE_LEN`](super::MAX_FILE_LEN).
    #[error("identity file is larger than {max} bytes; this is not an anonchat identity file", max = super::armor::MAX_FILE_LEN)]
    TooLarge,
    #[error(
        "this is not an anonchat identity file: it must start with `-----BEGIN ANONCHAT IDENTITY-----`; ask your contact to export it again (`anonctl id export`)"
    )]
    /// The text does not start with the BEGIN line.
    NotArmored,
    #[error(
        "the identity file is cut short: the `-----END ANONCHAT IDENTITY-----` line is missing; ask your contact for the whole file"
    )]
    /// The END line is missing.
    MissingEnd,
    #[error(
        "the identity file has text after its END line; remove it, or ask your contact for a clean copy"
    )]
    /// Text follows the END line.
    TextAfterEnd,
    #[error(
        "the identity file's body is not valid base64 (line {0}); it was damaged in transit, ask for a fresh copy"
    )]
    /// The body is not base64: the offending line of the file, or 0 if the
    /// body as a whole does not decode.
    Base64(usize),
    #[error(
        "the identity data does not start with the anonchat marker; this is not an anonchat identity"
    )]
    /// The data does not start with the anonchat marker.
    BadMagic,
    #[error(
        "the identity was made by another anonchat version (format {0}, this program reads format 1); update anonchat"
    )]
    /// A format version this program does not read.
    UnknownVersion(u8),
    /// The data ends before a field it needs.
    #[error("the identity data is truncated; ask your contact for a fresh copy")]
    Truncated,
    #[error(
        "the identity data has {0} unexpected bytes at its end; ask your contact for a fresh copy"
    )]
    /// Bytes follow the signature.
    TrailingBytes(usize),
    /// The RSA key is malformed, not 3072 bits, or not exponent 65537.
    #[error("the identity's RSA key is unusable: {0}")]
    BadRsaKey(&'static str),
    /// The X25519 key is all zeros.
    #[error("the identity's X25519 key is invalid")]
    BadX25519,
    /// The ML-KEM-768 key fails the FIPS 203 checks.
    #[error("the identity's ML-KEM-768 key is invalid")]
    BadMlKem,
    /// The relay address is not UTF-8.
    #[error("the identity's relay address is not UTF-8")]
    BadRelayText,
    /// The relay address does not parse.
    #[error("the identity's relay address is invalid: {0}")]
    BadRelay(AddressError),
    /// The nickname is empty, too long or has control characters.
    #[error("the nickname is not usable: {0}")]
    BadNickname(&'static str),
    #[error(
        "the identity's signature does not verify: the file was altered or corrupted; do not use it, and get a fresh copy from your contact"
    )]
    /// The signature does not verify.
    BadSignature,
    /// A stored identity's secrets do not match its public part.
    #[error("the stored identity's secret and public parts do not match; the key store is damaged")]
    Inconsistent,
}

/// Why session state could not be restored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// The state is cut short, malformed, or for another cell size.
    #[error("session state is truncated or damaged")]
    Damaged,
    /// A format version this program does not read.
    #[error(
        "session state has format version {0}; this program reads versions 1 to 4: use a newer anonchat"
    )]
    UnknownVersion(u8),
    /// The state was exported by another identity.
    #[error("session state belongs to another identity")]
    WrongIdentity,
    /// A contact's identity in the state does not verify.
    #[error(transparent)]
    Identity(#[from] IdentityError),
}

impl From<crate::wire::WireError> for StateError {
    fn from(_: crate::wire::WireError) -> Self {
        StateError::Damaged
    }
}

/// Why a message could not be queued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// No contact has that id.
    #[error("no contact with that id")]
    UnknownContact,
    /// The message is longer than [`MAX_MESSAGE_LEN`](super::MAX_MESSAGE_LEN).
    #[error("the message is {0} bytes; the limit is {max} bytes; split it", max = super::MAX_MESSAGE_LEN)]
    TooLong(usize),
    /// The message is empty.
    #[error("the message is empty")]
    Empty,
    /// [`MAX_OUTBOX`](super::MAX_OUTBOX) messages already wait for this contact.
    #[error("{0} messages are already waiting for this contact; wait until some are delivered")]
    OutboxFull(usize),
}
