//! The end-to-end layer (protocol v2), sans-io: identities and identity
//! files, the interactive hybrid session start (Noise KK shape with
//! ML-KEM-768 both ways), the Double Ratchet with encrypted headers and
//! ratcheted tag keys, fragmentation and acknowledgements. Bytes,
//! randomness and the time go in; bytes and [`Event`]s come out.
//!
//! Layout and key schedule: `docs/protocol.md`, "End-to-end layer".

mod armor;
mod contact;
mod error;
pub mod group;
mod handshake;
mod identity;
mod init;
mod kdf;
mod lifecycle;
mod messages;
mod payload;
mod ratchet;
mod rounds;
mod router;
mod session;
mod writer;

pub use armor::{BEGIN, END, MAX_FILE_LEN};
pub use error::{IdentityError, SendError, StateError};
pub use group::GroupId;
pub use group::control::{MAX_GROUP_MEMBERS, MAX_GROUP_NAME, check_group_name};
pub use handshake::{ACCEPT_LEN, E2E_VERSION, INIT_LEN};
pub use identity::{
    BUNDLE_VERSION, Fingerprint, MAX_NICKNAME, MLKEM_CT_LEN, MLKEM_EK_LEN, PrivateIdentity,
    PublicIdentity, RSA_BITS, SIGNATURE_LEN,
};
pub use kdf::CELL_TAG_LEN;
pub use messages::{
    Delivery, MAX_FRAGMENTS, MAX_ID_AHEAD, MAX_MESSAGE_LEN, MAX_MSG_ID, MAX_OUTBOX, MAX_PARTIAL,
    MAX_READY,
};
pub use payload::{ACK_LEN, ACKS_PER_CELL, DATA_OVERHEAD};
pub use ratchet::{HEADER_LEN, MAX_SKIP, MAX_SKIPPED_KEYS};
pub use rounds::{MAX_ROUND_MS, MIN_ROUND_MS, ROUND_LAG_MS, ROUND_SKEW_MS, RoundClock, RoundError};
pub use router::{
    CellSizeError, Config, ContactError, ContactId, Event, EventKind, GroupEvent, GroupInfo,
    GroupOpError, InviteInfo, MAX_CONTACTS, MAX_E2E_CELL, MAX_GROUPS, MAX_INVITES,
    MAX_INVITES_PER_CONTACT, MIN_E2E_CELL, MemberInfo, Router, session_payload_len,
};
pub use session::{ROUND_WINDOW, SESSION_OVERHEAD};

#[cfg(test)]
mod tests;

/// What [`crate::fuzzing`] reaches (feature `fuzzing`, for `fuzz/` only):
/// crate-internal items of private modules, re-exported at the same
/// visibility. Nothing else changes with the feature.
#[cfg(feature = "fuzzing")]
pub(crate) mod fuzz_access {
    pub(crate) use super::group::control::Control;
    pub(crate) use super::group::state::GroupRecords;
    pub(crate) use super::handshake::{Initiator, Message, respond};
    pub(crate) use super::init::{Added, InitFragment, InitId, PeerInits};
    pub(crate) use super::messages::Inbox;
    pub(crate) use super::payload::Records;
}
