//! Every default and bound of the relay, in one place.
//!
//! [`RelayConfig::default`](crate::RelayConfig) and the `anonchat-relay`
//! flags both take their defaults from here, and the limits table of
//! `docs/protocol.md` ("Limits") is checked against these constants by
//! `relay/tests/docs_limits.rs`. Change a value here and in that table
//! together.
//!
//! Each constant is in the unit of its flag (the suffix says which).

/// Round length in milliseconds (`--round-ms`).
pub const ROUND_MS: u64 = 500;
/// Shortest round the relay accepts, in milliseconds.
pub const MIN_ROUND_MS: u64 = 10;
/// Longest round the relay accepts, in milliseconds.
pub const MAX_ROUND_MS: u64 = 60_000;

/// Cell size in bytes (`--cell-size`); the wire protocol's default.
pub use anonchat_protocol::wire::DEFAULT_CELL_SIZE as CELL_SIZE;
/// Cell sizes the relay accepts; the wire protocol's bounds.
pub use anonchat_protocol::wire::{MAX_CELL_SIZE, MIN_CELL_SIZE};

/// Seconds of closed batches kept in RAM for reconnecting clients
/// (`--backlog-s`).
pub const BACKLOG_S: u64 = 120;
/// Ceiling on the RAM all backlogs together may hold, in MiB
/// (`--max-backlog-mb`).
pub const MAX_BACKLOG_MIB: usize = 256;

/// Connections at once, handshaking ones included (`--max-clients`).
pub const MAX_CLIENTS: usize = 4096;
/// Connections at once from one source address (`--max-per-ip`): one
/// IPv4 address, or one IPv6 /64.
pub const MAX_PER_IP: usize = 64;
/// Shards at once (`--max-shards`).
pub const MAX_SHARDS: usize = 1024;
/// Shards that connections from one source address (one IPv4 address, or
/// one IPv6 /64) may be in at once (`--max-shards-per-ip`), so that one
/// address cannot take all of `--max-shards`.
pub const MAX_SHARDS_PER_IP: usize = 4;

/// Time allowed for the Noise handshake and the hello frame, in
/// milliseconds (`--handshake-timeout-ms`).
pub const HANDSHAKE_TIMEOUT_MS: u64 = 10_000;
/// Seconds without a frame after which a client is dropped
/// (`--idle-timeout-s`).
pub const IDLE_TIMEOUT_S: u64 = 30;

/// Batches queued for one client before it counts as a slow reader and is
/// dropped (`--send-queue`).
pub const SEND_QUEUE: usize = 32;

/// Protocol violations a connection is forgiven: the next one (the 4th)
/// cuts it with `CLOSE(3)` (no flag). A late cell is a violation only when
/// it is more than the connection's one cell per batch it was sent (see
/// `docs/protocol.md`, "Rounds").
pub const MAX_VIOLATIONS: u32 = 3;
