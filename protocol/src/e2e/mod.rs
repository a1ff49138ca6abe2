//! The end-to-end layer, sans-io: identities and identity files, the
//! PQXDH-style session start, the Double Ratchet with encrypted headers,
//! tags, fragmentation and acknowledgements. Bytes, randomness and the time
//! go in; bytes and [`Event`]s come out.
//!
//! Layout and key schedule: `docs/protocol.md`, "End-to-end layer".

mod armor;
mod contact;
mod error;
mod identity;
mod init;
mod kdf;
mod lifecycle;
mod messages;
mod payload;
mod ratchet;
mod router;
mod session;
mod writer;

pub use armor::{BEGIN, END, MAX_FILE_LEN};
pub use error::{IdentityError, SendError, StateError};
pub use identity::{
    BUNDLE_VERSION, Fingerprint, MAX_NICKNAME, MLKEM_CT_LEN, MLKEM_EK_LEN, PrivateIdentity,
    PublicIdentity, RSA_BITS, SIGNATURE_LEN,
};
pub use kdf::CELL_TAG_LEN;
pub use messages::{
    Delivery, MAX_FRAGMENTS, MAX_ID_AHEAD, MAX_MESSAGE_LEN, MAX_OUTBOX, MAX_PARTIAL, MAX_READY,
};
pub use payload::{ACK_LEN, ACKS_PER_CELL, DATA_OVERHEAD};
pub use ratchet::{HEADER_LEN, MAX_SKIP, MAX_SKIPPED_KEYS};
pub use router::{
    CellSizeError, Config, ContactError, ContactId, Event, EventKind, MAX_CONTACTS, MAX_E2E_CELL,
    MIN_E2E_CELL, Router, session_payload_len,
};
pub use session::{ROUND_WINDOW, SESSION_OVERHEAD};

#[cfg(test)]
mod tests;
