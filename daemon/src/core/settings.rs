//! What the core is started with: its settings, clock and randomness.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anonchat_protocol::wire::DEFAULT_CELL_SIZE;

use crate::keystore;
use crate::paths::Paths;

/// Default time after which an unacknowledged message is sent again.
pub const DEFAULT_RETRANSMIT_AFTER: Duration = Duration::from_secs(30);

/// Where the core reads the time: the system clock, or (for in-process
/// tests and the fault simulator) a number the test moves.
#[derive(Clone, Default)]
pub enum Clock {
    /// Milliseconds since the Unix epoch.
    #[default]
    System,
    /// A clock the owner of the `Arc` sets.
    Manual(Arc<AtomicU64>),
}

impl Clock {
    /// Now, in milliseconds.
    pub fn now_ms(&self) -> u64 {
        match self {
            Self::System => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or(Duration::ZERO)
                .as_millis() as u64,
            Self::Manual(t) => t.load(Ordering::Relaxed),
        }
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::System => "Clock::System",
            Self::Manual(_) => "Clock::Manual",
        })
    }
}

/// What the daemon is configured with.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where its files and socket are.
    pub paths: Paths,
    /// Retransmit after this long without an acknowledgement.
    pub retransmit_after: Duration,
    /// The cell size sessions are made for (the relay's must match).
    pub cell_size: usize,
    /// Where the time comes from.
    pub clock: Clock,
    /// The Argon2id cost of a new key file.
    pub kdf_cost: keystore::KdfCost,
    /// Fault injection for tests: every save of the session state first
    /// waits this long, as on a very slow disk (zero in normal use). The
    /// send schedule's timing tests use it to make any save on the path
    /// from a batch to its answer stand out.
    pub slow_disk: Duration,
}

impl Settings {
    /// The defaults for a home.
    pub fn new(paths: Paths) -> Self {
        Self {
            paths,
            retransmit_after: DEFAULT_RETRANSMIT_AFTER,
            cell_size: DEFAULT_CELL_SIZE,
            clock: Clock::System,
            kdf_cost: keystore::KdfCost::DEFAULT,
            slow_disk: Duration::ZERO,
        }
    }
}

/// The operating system's randomness, through rand's thread-local
/// generator, as a value that can live in the core and move across threads
/// (the thread-local one cannot).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemRng;

impl rand::TryRng for SystemRng {
    type Error = std::convert::Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        Ok(rand::Rng::next_u32(&mut rand::rng()))
    }

    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        Ok(rand::Rng::next_u64(&mut rand::rng()))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        rand::Rng::fill_bytes(&mut rand::rng(), dst);
        Ok(())
    }
}

impl rand::TryCryptoRng for SystemRng {}
