//! Counters the relay keeps: counts only, never who or what.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct Stats {
    pub connections_accepted: AtomicU64,
    pub connections_refused_full: AtomicU64,
    pub handshakes_failed: AtomicU64,
    pub version_refusals: AtomicU64,
    pub clients_joined: AtomicU64,
    pub rounds_closed: AtomicU64,
    pub cells_in: AtomicU64,
    pub cells_late: AtomicU64,
    pub cells_relayed: AtomicU64,
    pub batch_bytes_written: AtomicU64,
    pub slow_readers_dropped: AtomicU64,
    pub idle_dropped: AtomicU64,
    pub violations: AtomicU64,
    pub backlog_evictions: AtomicU64,
}

impl Stats {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn inc(counter: &AtomicU64) {
        Self::add(counter, 1);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// One line of counts for the log.
    pub fn summary(&self) -> String {
        format!(
            "accepted={} refused_full={} handshake_failed={} version_refused={} joined={} \
             rounds={} cells_in={} cells_late={} cells_relayed={} batch_bytes={} \
             slow_dropped={} idle_dropped={} violations={} backlog_evictions={}",
            Self::get(&self.connections_accepted),
            Self::get(&self.connections_refused_full),
            Self::get(&self.handshakes_failed),
            Self::get(&self.version_refusals),
            Self::get(&self.clients_joined),
            Self::get(&self.rounds_closed),
            Self::get(&self.cells_in),
            Self::get(&self.cells_late),
            Self::get(&self.cells_relayed),
            Self::get(&self.batch_bytes_written),
            Self::get(&self.slow_readers_dropped),
            Self::get(&self.idle_dropped),
            Self::get(&self.violations),
            Self::get(&self.backlog_evictions),
        )
    }
}
