//! The daemon's own error type. Every operation of the core returns it; the
//! RPC layer turns it into a JSON-RPC error object in exactly one place
//! ([`crate::rpc`]), the way rbw's agent converts at its socket.

use anonchat_ipc::ErrorCode;

/// What went wrong in an operation of the daemon. The `Display` text is the
/// *detail*; the RPC layer puts the code's advice (what to do) in front.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No identity has been created in this home.
    #[error("")]
    NoIdentity,
    /// The operation needs the keys and the daemon is locked.
    #[error("")]
    Locked,
    /// `identity.create` on a home that has one.
    #[error("")]
    IdentityExists,
    /// The key store did not open with this passphrase.
    #[error("")]
    WrongPassphrase,
    /// No contact by that name (the name, quoted).
    #[error("{0:?}")]
    UnknownContact(String),
    /// A contact with that name or identity exists (the detail says which).
    #[error("{0}")]
    ContactExists(String),
    /// The identity file was refused (the parser's reason).
    #[error("{0}")]
    InvalidIdentityFile(anonchat_protocol::e2e::IdentityError),
    /// The fingerprint the user typed is not the contact's.
    #[error("")]
    FingerprintMismatch,
    /// The end-to-end layer refused to queue the message.
    #[error("{0}")]
    MessageRejected(anonchat_protocol::e2e::SendError),
    /// The contact's outbox is full: back-pressure a script can act on.
    #[error(
        "{waiting} messages are already waiting for this contact; the outbox drains at about one cell per relay round: try again in about {} s",
        retry_after_ms.div_ceil(1000)
    )]
    OutboxFull {
        /// Messages waiting.
        waiting: usize,
        /// How long to wait before trying again, in milliseconds (also in
        /// the JSON-RPC error's `data.retry_after_ms`).
        retry_after_ms: u64,
    },
    /// Bad input from the caller (the detail says which).
    #[error("{0}")]
    InvalidInput(String),
    /// The relay address does not parse.
    #[error("{0}")]
    InvalidRelay(String),
    /// A file of the home cannot be read or written.
    #[error("{0}")]
    Storage(String),
    /// The relay's rounds were refused (a round length outside the range,
    /// or a round number that disagrees with the wall clock).
    #[error("{0}")]
    RelayRefused(anonchat_protocol::e2e::RoundError),
    /// The operation could not run (a worker thread failed).
    #[error("{0}")]
    Busy(String),
    /// `events.subscribe` from a `since` whose followers the replay log no
    /// longer holds.
    #[error(
        "events after {since} are no longer held (the oldest held is {}, the newest {})",
        position.oldest, position.last
    )]
    EventsTooOld {
        /// The client's `since`.
        since: u64,
        /// Where the stream stands (the error's `data`).
        position: anonchat_ipc::EventPosition,
    },
    /// No group by that name or id (the name, quoted).
    #[error("{0:?}")]
    UnknownGroup(String),
    /// The end-to-end layer refused a group operation.
    #[error("{0}")]
    GroupRefused(anonchat_protocol::e2e::GroupOpError),
    /// `events.subscribe` with the stream id of another daemon run.
    #[error("stream {given:?} is not this daemon run's ({})", position.stream)]
    UnknownEventStream {
        /// The client's `stream` (at most 64 characters of it).
        given: String,
        /// Where the stream stands (the error's `data`).
        position: anonchat_ipc::EventPosition,
    },
}

impl Error {
    /// The stable API code this error maps to.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::NoIdentity => ErrorCode::NoIdentity,
            Self::Locked => ErrorCode::Locked,
            Self::IdentityExists => ErrorCode::IdentityExists,
            Self::WrongPassphrase => ErrorCode::WrongPassphrase,
            Self::UnknownContact(_) => ErrorCode::UnknownContact,
            Self::ContactExists(_) => ErrorCode::ContactExists,
            Self::InvalidIdentityFile(_) => ErrorCode::InvalidIdentityFile,
            Self::FingerprintMismatch => ErrorCode::FingerprintMismatch,
            Self::MessageRejected(_) | Self::OutboxFull { .. } => ErrorCode::MessageRejected,
            Self::InvalidInput(_) => ErrorCode::InvalidInput,
            Self::InvalidRelay(_) | Self::RelayRefused(_) => ErrorCode::InvalidRelay,
            Self::Storage(_) => ErrorCode::Storage,
            Self::Busy(_) => ErrorCode::Busy,
            Self::EventsTooOld { .. } => ErrorCode::EventsTooOld,
            Self::UnknownEventStream { .. } => ErrorCode::UnknownEventStream,
            Self::UnknownGroup(_) => ErrorCode::UnknownGroup,
            Self::GroupRefused(_) => ErrorCode::GroupRefused,
        }
    }

    /// A storage error from anything displayable (a path and an OS error).
    pub(crate) fn storage(e: impl std::fmt::Display) -> Self {
        Self::Storage(e.to_string())
    }

    /// An invalid-input error from anything displayable.
    pub(crate) fn invalid(e: impl std::fmt::Display) -> Self {
        Self::InvalidInput(e.to_string())
    }
}

/// Results of the daemon's operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_has_the_code_its_name_says() {
        assert_eq!(Error::NoIdentity.code(), ErrorCode::NoIdentity);
        assert_eq!(Error::Locked.code(), ErrorCode::Locked);
        assert_eq!(
            Error::UnknownContact("carol".into()).code(),
            ErrorCode::UnknownContact
        );
        assert_eq!(
            Error::UnknownContact("carol".into()).to_string(),
            "\"carol\""
        );
        assert_eq!(Error::storage("disk full").code(), ErrorCode::Storage);
        assert_eq!(Error::invalid("x").code(), ErrorCode::InvalidInput);
        assert_eq!(Error::NoIdentity.to_string(), "", "the advice says it all");
    }
}
