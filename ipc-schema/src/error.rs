//! Typed error codes. Each has a fixed number (stable for scripts) and a
//! message that says what to do; the daemon adds the detail.

use jsonrpsee::types::ErrorObjectOwned;

/// Application error codes, in the JSON-RPC server-error range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub enum ErrorCode {
    NoIdentity = -32001,
    Locked = -32002,
    IdentityExists = -32003,
    WrongPassphrase = -32004,
    UnknownContact = -32005,
    ContactExists = -32006,
    InvalidIdentityFile = -32007,
    FingerprintMismatch = -32008,
    MessageRejected = -32009,
    InvalidInput = -32010,
    Storage = -32011,
    InvalidRelay = -32012,
    Busy = -32013,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 13] = [
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
    ];

    pub fn code(self) -> i32 {
        self as i32
    }

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
        assert_eq!(ErrorCode::from_code(-32600), None);
    }

    #[test]
    fn messages_carry_advice_and_detail() {
        let e = rpc_error(ErrorCode::UnknownContact, "carol");
        assert_eq!(e.code(), -32005);
        assert!(e.message().contains("anonctl contacts"));
        assert!(e.message().ends_with("carol"));
    }
}
