//! Typed error codes. Each has a fixed number (stable for scripts) and a
//! message that says what to do; the daemon adds the detail.

use jsonrpsee::types::ErrorObjectOwned;

/// JSON-RPC 2.0 "Parse error": the line is not valid JSON.
pub const PARSE_ERROR: i32 = -32700;
/// JSON-RPC 2.0 "Invalid Request": valid JSON but not a request this server
/// takes (not an object, a batch, an unknown shape, or a line over
/// [`MAX_LINE`](crate::MAX_LINE)).
pub const INVALID_REQUEST: i32 = -32600;

/// Application error codes, in the JSON-RPC server-error range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub enum ErrorCode {
    /// No identity has been created yet.
    NoIdentity = -32001,
    /// The identity exists but its keys are locked.
    Locked = -32002,
    /// An identity already exists in this daemon home.
    IdentityExists = -32003,
    /// The passphrase does not open the key store.
    WrongPassphrase = -32004,
    /// No contact has that name.
    UnknownContact = -32005,
    /// The contact is already added.
    ContactExists = -32006,
    /// The identity file was refused; the detail says why.
    InvalidIdentityFile = -32007,
    /// The fingerprint given does not match the contact's.
    FingerprintMismatch = -32008,
    /// The message was not queued.
    MessageRejected = -32009,
    /// A parameter is invalid.
    InvalidInput = -32010,
    /// The daemon cannot read or write its files.
    Storage = -32011,
    /// The relay address does not parse.
    InvalidRelay = -32012,
    /// The daemon is busy; the call may be retried.
    Busy = -32013,
    /// `events.subscribe` with a `since` older than the events the daemon
    /// still holds; `data` is the [`EventPosition`](crate::EventPosition).
    EventsTooOld = -32014,
    /// `events.subscribe` with a `stream` that is not this daemon run's
    /// (the daemon restarted); `data` is the
    /// [`EventPosition`](crate::EventPosition).
    UnknownEventStream = -32015,
    /// No group has that name or id.
    UnknownGroup = -32016,
    /// The group operation was refused; the detail says why.
    GroupRefused = -32017,
}

impl ErrorCode {
    /// Every code, in numeric order (for tests and documentation).
    pub const ALL: [ErrorCode; 17] = [
        Self::NoIdentity,
        Self::Locked,
        Self::IdentityExists,
        Self::WrongPassphrase,
        Self::UnknownContact,
        Self::ContactExists,
        Self::InvalidIdentityFile,
        Self::FingerprintMismatch,
        Self::MessageRejected,
        Self::InvalidInput,
        Self::Storage,
        Self::InvalidRelay,
        Self::Busy,
        Self::EventsTooOld,
        Self::UnknownEventStream,
        Self::UnknownGroup,
        Self::GroupRefused,
    ];

    /// The code's number on the wire.
    pub fn code(self) -> i32 {
        self as i32
    }

    /// The code with this number, if it is one of ours.
    pub fn from_code(code: i32) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.code() == code)
    }

    /// What the user should do.
    pub fn advice(self) -> &'static str {
        match self {
            Self::NoIdentity => "no identity yet: create one with `anonctl init`",
            Self::Locked => "the daemon is locked: unlock it with `anonctl unlock`",
            Self::IdentityExists => "an identity already exists; a daemon home holds one identity",
            Self::WrongPassphrase => "wrong passphrase; try again",
            Self::UnknownContact => "no contact by that name; see `anonctl contacts`",
            Self::ContactExists => "that contact is already added",
            Self::InvalidIdentityFile => {
                "the identity file was refused; ask your contact for a fresh copy"
            }
            Self::FingerprintMismatch => {
                "the fingerprint does not match: do not trust this contact until you have compared it again in person or by voice"
            }
            Self::MessageRejected => "the message was not queued",
            Self::InvalidInput => "invalid input",
            Self::Storage => {
                "the daemon cannot read or write its files; check the home directory's disk and permissions"
            }
            Self::InvalidRelay => {
                "the relay address is invalid; copy the whole line the relay printed (anonchat://HOST:PORT/#KEY)"
            }
            Self::Busy => "the daemon is busy; try again in a moment",
            Self::EventsTooOld => {
                "the daemon no longer holds the events you missed: re-read the history (`anonctl history`, `messages.history`), then subscribe again without `since` or from `data.oldest` - 1"
            }
            Self::UnknownGroup => {
                "no group by that name or id; see `anonctl group list` (address a group as #NAME)"
            }
            Self::GroupRefused => "the group operation was refused",
            Self::UnknownEventStream => {
                "the daemon has restarted since that event (sequence numbers start again in every run): subscribe again with the new `data.stream` and `since` 0 (nothing lost if `data.oldest` is 1), or without `since`"
            }
        }
    }
}

/// An error object: the advice, then the detail.
pub fn rpc_error(code: ErrorCode, detail: impl std::fmt::Display) -> ErrorObjectOwned {
    let detail = detail.to_string();
    let message = if detail.is_empty() {
        code.advice().to_owned()
    } else {
        format!("{}: {detail}", code.advice())
    };
    ErrorObjectOwned::owned(code.code(), message, None::<()>)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct_and_round_trip() {
        let mut seen = std::collections::HashSet::new();
        for c in ErrorCode::ALL {
            assert!(seen.insert(c.code()));
            assert_eq!(ErrorCode::from_code(c.code()), Some(c));
            assert!(!c.advice().is_empty());
        }
        assert_eq!(ErrorCode::from_code(INVALID_REQUEST), None);
        assert_eq!(ErrorCode::from_code(PARSE_ERROR), None);
    }

    #[test]
    fn messages_carry_advice_and_detail() {
        let e = rpc_error(ErrorCode::UnknownContact, "carol");
        assert_eq!(e.code(), -32005);
        assert!(e.message().contains("anonctl contacts"));
        assert!(e.message().ends_with("carol"));
    }
}
