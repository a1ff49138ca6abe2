//! The daemon ↔ relay wire, sans-io. Byte layouts and state machines are in
//! `docs/protocol.md` ("Wire layer"); this module is their implementation.
//!
//! A connection goes through three steps, each its own type:
//! 1. [`ClientHandshake`] / [`respond`]: Noise `NK` with the version check,
//!    two length-prefixed messages.
//! 2. [`Link`]: fixed-size encrypted frames ([`ClientFrame`], [`RelayFrame`]),
//!    one frame size per connection, derived from the cell size.
//! 3. Batches: after a [`RelayFrame::Batch`] header the relay writes the
//!    sealed batch body ([`SealedBatch`]), the same bytes to every client of
//!    the shard; [`open_batch`] checks it against the body hash of the
//!    client's own header and turns it back into cells.

mod address;
mod batch;
mod error;
mod frame;
mod handshake;
pub(crate) mod reader;
mod text;

pub use address::{AddressError, MAX_ADDRESS_LEN, RELAY_KEY_LEN, RelayAddress, SCHEME};
pub use batch::{
    BODY_HASH_LEN, BatchKey, OpenedBatch, SealedBatch, batch_body_hash, open_batch, seal_batch,
    sealed_body_len,
};
pub use error::WireError;
pub use frame::{ClientFrame, CloseCode, MAX_CLOSE_REASON, RelayFrame, Welcome};
pub use handshake::{
    ClientHandshake, HandshakeOutcome, Link, LinkOpener, LinkSealer, Refusal, RelayKeypair,
    RelayParams, handshake_len, respond,
};
pub use text::is_non_printing;

/// The wire protocol version. A peer speaking another version is refused
/// during the handshake with [`Refusal::Version`].
///
/// Version 2 added the body hash to the BATCH frame: a version 1 client
/// could not check it, so it is refused rather than served.
pub const PROTOCOL_VERSION: u16 = 2;

/// The Noise protocol name used on every relay link.
pub const NOISE_PARAMS: &str = "Noise_NK_25519_ChaChaPoly_BLAKE2s";

/// Noise prologue: binds the handshake to this protocol family. It does not
/// carry the version, so that a version mismatch yields a readable refusal
/// instead of an opaque decryption failure.
pub const PROLOGUE: &[u8] = b"anonchat relay link";

/// Default cell size in bytes.
pub const DEFAULT_CELL_SIZE: usize = 512;
/// Smallest cell size a relay may announce.
pub const MIN_CELL_SIZE: usize = 128;
/// Largest cell size a relay may announce (keeps frames far below Noise's
/// 65535-byte message limit).
pub const MAX_CELL_SIZE: usize = 8192;

/// Bytes of frame header room added to the cell size: a frame's plaintext
/// is `cell_size + FRAME_HEADER` bytes, so a cell frame (kind + round +
/// cell) always fits.
pub const FRAME_HEADER: usize = 16;
/// Bytes of the ChaCha20-Poly1305 authentication tag that ends every Noise
/// message and every sealed batch body.
pub const AEAD_TAG_LEN: usize = 16;

/// Upper bound on a handshake message (length prefix excluded).
pub const MAX_HANDSHAKE_MSG: usize = 256;

/// Most cells a batch may hold; a client refuses a larger batch header
/// before reading its body, so a hostile relay cannot make it allocate more
/// than `MAX_BATCH_CELLS * MAX_CELL_SIZE` bytes.
pub const MAX_BATCH_CELLS: u32 = 4096;

/// Plaintext length of every transport frame for a given cell size.
pub const fn frame_plaintext_len(cell_size: usize) -> usize {
    cell_size + FRAME_HEADER
}

/// On-the-wire length of every transport frame for a given cell size.
pub const fn frame_wire_len(cell_size: usize) -> usize {
    frame_plaintext_len(cell_size) + AEAD_TAG_LEN
}
