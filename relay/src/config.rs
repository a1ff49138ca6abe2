//! Relay settings and their bounds.

use std::time::Duration;

use crate::defaults::{self, MAX_CELL_SIZE, MAX_ROUND_MS, MIN_CELL_SIZE, MIN_ROUND_MS};

/// Everything the relay can be told. Every resource has a bound here; the
/// defaults are in [`defaults`].
#[derive(Debug, Clone, Copy)]
pub struct RelayConfig {
    /// Length of a round.
    pub round: Duration,
    /// Size of every cell.
    pub cell_size: usize,
    /// How long closed batches are kept in RAM for reconnecting clients.
    pub backlog: Duration,
    /// Ceiling on the memory all backlogs together may hold, in bytes.
    pub max_backlog_bytes: usize,
    /// Connections at once, handshaking ones included.
    pub max_clients: usize,
    /// Connections at once from one source address (one IPv4 address, or
    /// one IPv6 /64).
    pub max_per_ip: usize,
    /// Shards at once.
    pub max_shards: usize,
    /// Shards that connections from one source address (one IPv4 address,
    /// or one IPv6 /64) may be in at once.
    pub max_shards_per_ip: usize,
    /// Time allowed for the Noise handshake and the hello frame.
    pub handshake_timeout: Duration,
    /// A client that sends no frame for this long is dropped.
    pub idle_timeout: Duration,
    /// Items (batches) waiting for one client's socket; a client whose queue
    /// is full is a slow reader and is dropped.
    pub send_queue: usize,
    /// Kernel send buffer per client socket (`SO_SNDBUF`), in bytes; `None`
    /// leaves the kernel's autotuning (bounded by `net.ipv4.tcp_wmem`).
    pub socket_send_buffer: Option<usize>,
    /// Protocol violations forgiven: the next one cuts the client.
    pub max_violations: u32,
    /// Log client addresses (off by default).
    pub log_addresses: bool,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            round: Duration::from_millis(defaults::ROUND_MS),
            cell_size: defaults::CELL_SIZE,
            backlog: Duration::from_secs(defaults::BACKLOG_S),
            max_backlog_bytes: mib_to_bytes(defaults::MAX_BACKLOG_MIB),
            max_clients: defaults::MAX_CLIENTS,
            max_per_ip: defaults::MAX_PER_IP,
            max_shards: defaults::MAX_SHARDS,
            max_shards_per_ip: defaults::MAX_SHARDS_PER_IP,
            handshake_timeout: Duration::from_millis(defaults::HANDSHAKE_TIMEOUT_MS),
            idle_timeout: Duration::from_secs(defaults::IDLE_TIMEOUT_S),
            send_queue: defaults::SEND_QUEUE,
            socket_send_buffer: None,
            max_violations: defaults::MAX_VIOLATIONS,
            log_addresses: false,
        }
    }
}

/// A size in MiB as bytes, saturating (the `--max-backlog-mb` conversion).
pub const fn mib_to_bytes(mib: usize) -> usize {
    mib.saturating_mul(1 << 20)
}

/// A setting outside what the relay can honour.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The cell size is outside `MIN_CELL_SIZE..=MAX_CELL_SIZE`.
    #[error("--cell-size must be between {MIN_CELL_SIZE} and {MAX_CELL_SIZE} bytes, got {0}")]
    CellSize(usize),
    /// The round length, in milliseconds, is outside
    /// `MIN_ROUND_MS..=MAX_ROUND_MS`.
    #[error("--round-ms must be between {MIN_ROUND_MS} and {MAX_ROUND_MS}, got {0}")]
    Round(u128),
    /// A count that must be positive is zero; the field names the flag.
    #[error("{0} must be at least 1")]
    Zero(&'static str),
}

impl RelayConfig {
    /// Checks every setting against what the relay can honour.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(MIN_CELL_SIZE..=MAX_CELL_SIZE).contains(&self.cell_size) {
            return Err(ConfigError::CellSize(self.cell_size));
        }
        let ms = self.round.as_millis();
        if !(u128::from(MIN_ROUND_MS)..=u128::from(MAX_ROUND_MS)).contains(&ms) {
            return Err(ConfigError::Round(ms));
        }
        for (value, name) in [
            (self.max_clients, "--max-clients"),
            (self.max_per_ip, "--max-per-ip"),
            (self.max_shards, "--max-shards"),
            (self.max_shards_per_ip, "--max-shards-per-ip"),
            (self.send_queue, "--send-queue"),
        ] {
            if value == 0 {
                return Err(ConfigError::Zero(name));
            }
        }
        Ok(())
    }

    /// Rounds the backlog keeps per shard.
    pub fn backlog_rounds(&self) -> usize {
        (self.backlog.as_millis() / self.round.as_millis().max(1)) as usize
    }

    /// The round length in milliseconds, as the handshake reply announces it.
    pub fn round_ms(&self) -> u32 {
        self.round.as_millis() as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_match_the_documented_ones() {
        let c = RelayConfig::default();
        c.validate().unwrap();
        assert_eq!(c.round_ms(), 500);
        assert_eq!(c.cell_size, 512);
        assert_eq!(c.backlog_rounds(), 240);
        assert_eq!(c.max_backlog_bytes, 256 << 20);
        assert_eq!(c.handshake_timeout, Duration::from_secs(10));
    }

    #[test]
    fn round_bounds_are_inclusive() {
        for (ms, ok) in [
            (MIN_ROUND_MS - 1, false),
            (MIN_ROUND_MS, true),
            (MAX_ROUND_MS, true),
            (MAX_ROUND_MS + 1, false),
        ] {
            let c = RelayConfig {
                round: Duration::from_millis(ms),
                ..RelayConfig::default()
            };
            assert_eq!(c.validate().is_ok(), ok, "{ms} ms");
        }
    }

    #[test]
    fn out_of_range_settings_are_refused() {
        let bad = [
            RelayConfig {
                cell_size: 64,
                ..RelayConfig::default()
            },
            RelayConfig {
                round: Duration::from_millis(1),
                ..RelayConfig::default()
            },
            RelayConfig {
                max_clients: 0,
                ..RelayConfig::default()
            },
            RelayConfig {
                max_shards_per_ip: 0,
                ..RelayConfig::default()
            },
        ];
        for c in bad {
            assert!(c.validate().is_err());
        }
    }
}
