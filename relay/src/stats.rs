//! Counters the relay keeps: counts only, never who or what.

use std::sync::atomic::{AtomicU64, Ordering};

/// The relay's counters, each only ever increased; read them with
/// [`Stats::get`].
#[derive(Debug, Default)]
pub struct Stats {
    /// TCP connections accepted, refused ones included.
    pub connections_accepted: AtomicU64,
    /// Connections closed at once for `--max-clients` or `--max-per-ip`.
    pub connections_refused_full: AtomicU64,
    /// Clients refused a shard (`CLOSE(4)`): `--max-shards` reached with no
    /// shard free to drop, or `--max-shards-per-ip`.
    pub joins_refused: AtomicU64,
    /// Shards without members dropped, with their backlog, to make room
    /// for a new shard under `--max-shards`.
    pub shards_dropped: AtomicU64,
    /// Handshakes (and hellos) that failed or timed out.
    pub handshakes_failed: AtomicU64,
    /// Clients refused for speaking another protocol version.
    pub version_refusals: AtomicU64,
    /// Clients that joined a shard.
    pub clients_joined: AtomicU64,
    /// Rounds closed (once per round, over all shards).
    pub rounds_closed: AtomicU64,
    /// Cell frames received.
    pub cells_in: AtomicU64,
    /// Cells received for a round already closed, within the connection's
    /// one cell per batch (dropped, not a violation).
    pub cells_late: AtomicU64,
    /// Cells refused as violations (unearned, duplicate, future round):
    /// dropped.
    pub cells_refused: AtomicU64,
    /// Cells sealed into batches.
    pub cells_relayed: AtomicU64,
    /// Bytes of batches (headers and bodies) written to clients.
    pub batch_bytes_written: AtomicU64,
    /// Clients dropped because their send queue was full.
    pub slow_readers_dropped: AtomicU64,
    /// Clients dropped for sending nothing within the idle timeout.
    pub idle_dropped: AtomicU64,
    /// Protocol violations (cells beyond one per batch, late ones included;
    /// a second cell in a round; out-of-place frames).
    pub violations: AtomicU64,
    /// Batches dropped from a backlog for lack of memory.
    pub backlog_evictions: AtomicU64,
}

impl Stats {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn inc(counter: &AtomicU64) {
        Self::add(counter, 1);
    }

    /// The current value of one counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// One line of counts for the log.
    pub fn summary(&self) -> String {
        format!(
            "accepted={} refused_full={} joins_refused={} shards_dropped={} \
             handshake_failed={} version_refused={} joined={} rounds={} cells_in={} \
             cells_late={} cells_refused={} cells_relayed={} batch_bytes={} \
             slow_dropped={} idle_dropped={} violations={} backlog_evictions={}",
            Self::get(&self.connections_accepted),
            Self::get(&self.connections_refused_full),
            Self::get(&self.joins_refused),
            Self::get(&self.shards_dropped),
            Self::get(&self.handshakes_failed),
            Self::get(&self.version_refusals),
            Self::get(&self.clients_joined),
            Self::get(&self.rounds_closed),
            Self::get(&self.cells_in),
            Self::get(&self.cells_late),
            Self::get(&self.cells_refused),
            Self::get(&self.cells_relayed),
            Self::get(&self.batch_bytes_written),
            Self::get(&self.slow_readers_dropped),
            Self::get(&self.idle_dropped),
            Self::get(&self.violations),
            Self::get(&self.backlog_evictions),
        )
    }
}
