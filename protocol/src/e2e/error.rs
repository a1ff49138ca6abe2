use crate::wire::AddressError;

/// Why an identity (file, bundle or stored secret) was refused. Each
/// message says what happened and what the user can do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("identity file is larger than {max} bytes; this is not an anonchat identity file", max = super::armor::MAX_FILE_LEN)]
    TooLarge,
    #[error(
        "this is not an anonchat identity file: it must start with `-----BEGIN ANONCHAT IDENTITY-----`; ask your contact to export it again (`anonctl id export`)"
    )]
    NotArmored,
    #[error(
        "the identity file is cut short: the `-----END ANONCHAT IDENTITY-----` line is missing; ask your contact for the whole file"
    )]
    MissingEnd,
    #[error(
        "the identity file has text after its END line; remove it, or ask your contact for a clean copy"
    )]
    TextAfterEnd,
    #[error(
        "the identity file's body is not valid base64 (line {0}); it was damaged in transit, ask for a fresh copy"
    )]
    Base64(usize),
    #[error(
        "the identity data does not start with the anonchat marker; this is not an anonchat identity"
    )]
    BadMagic,
    #[error(
        "the identity was made by another anonchat version (format {0}, this program reads format 1); update anonchat"
    )]
    UnknownVersion(u8),
    #[error("the identity data is truncated; ask your contact for a fresh copy")]
    Truncated,
    #[error(
        "the identity data has {0} unexpected bytes at its end; ask your contact for a fresh copy"
    )]
    TrailingBytes(usize),
    #[error("the identity's RSA key is unusable: {0}")]
    BadRsaKey(&'static str),
    #[error("the identity's X25519 key is invalid")]
    BadX25519,
    #[error("the identity's ML-KEM-768 key is invalid")]
    BadMlKem,
    #[error("the identity's relay address is not UTF-8")]
    BadRelayText,
    #[error("the identity's relay address is invalid: {0}")]
    BadRelay(AddressError),
    #[error("the nickname is not usable: {0}")]
    BadNickname(&'static str),
    #[error(
        "the identity's signature does not verify: the file was altered or corrupted; do not use it, and get a fresh copy from your contact"
    )]
    BadSignature,
    #[error("the stored identity's secret and public parts do not match; the key store is damaged")]
    Inconsistent,
}

/// Why session state could not be restored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    #[error("session state is truncated or damaged")]
    Damaged,
    #[error("session state has format version {0}; this program reads version 1")]
    UnknownVersion(u8),
    #[error("session state belongs to another identity")]
    WrongIdentity,
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
    #[error("no contact with that id")]
    UnknownContact,
    #[error("the message is {0} bytes; the limit is {max} bytes; split it", max = super::MAX_MESSAGE_LEN)]
    TooLong(usize),
    #[error("the message is empty")]
    Empty,
    #[error("{0} messages are already waiting for this contact; wait until some are delivered")]
    OutboxFull(usize),
}
