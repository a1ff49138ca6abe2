//! Rounds as the end-to-end layer trusts them: numbered from the wall
//! clock (`round = unix_ms / round_ms`), with a round length inside the
//! documented range whatever the relay announces. A relay that lies about
//! either is refused before anything is read or persisted, so one lied
//! round number cannot mute a client (the bug of a batch numbered 2^62:
//! every later round looked already used).

/// Shortest round length accepted, in milliseconds.
pub const MIN_ROUND_MS: u64 = 10;
/// Longest round length accepted, in milliseconds.
pub const MAX_ROUND_MS: u64 = 60_000;
/// How far the relay's clock may be ahead of ours, in milliseconds.
pub const ROUND_SKEW_MS: u64 = 30_000;
/// How far in the past a batch may be: the clock skew plus the longest
/// resume from the relay's backlog, in milliseconds.
pub const ROUND_LAG_MS: u64 = ROUND_SKEW_MS + 600_000;

/// Why a round was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RoundError {
    /// The relay announced a round length outside the accepted range.
    #[error(
        "the relay announced rounds of {0} ms, outside {MIN_ROUND_MS}..={MAX_ROUND_MS} ms; use another relay"
    )]
    RoundLength(u64),
    /// No round length was set yet.
    #[error("no round length is known yet; connect to the relay first")]
    NoRoundLength,
    /// The round number disagrees with the wall clock.
    #[error(
        "the relay's round {round} is not near round {expected} of this computer's clock; check the system clock, or use another relay"
    )]
    OutOfStep {
        /// The round the relay named.
        round: u64,
        /// The round the wall clock gives.
        expected: u64,
    },
    /// The WELCOME names a backlog that starts after its open round.
    #[error(
        "the relay's welcome says its backlog starts at round {oldest_held}, after its open round {open_round}; use another relay"
    )]
    Backlog {
        /// The oldest round held, as announced.
        oldest_held: u64,
        /// The open round, as announced.
        open_round: u64,
    },
    /// The batch of a round already read (or older) came again.
    #[error("the relay sent round {round} after round {last}; reconnect, or use another relay")]
    Repeated {
        /// The round the relay named.
        round: u64,
        /// The last round read.
        last: u64,
    },
}

/// A round length checked against the documented range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoundClock {
    round_ms: u64,
}

impl RoundClock {
    /// Refuses a length outside [`MIN_ROUND_MS`]`..=`[`MAX_ROUND_MS`].
    pub fn new(round_ms: u64) -> Result<Self, RoundError> {
        if (MIN_ROUND_MS..=MAX_ROUND_MS).contains(&round_ms) {
            Ok(Self { round_ms })
        } else {
            Err(RoundError::RoundLength(round_ms))
        }
    }

    /// The round length in milliseconds.
    pub fn round_ms(self) -> u64 {
        self.round_ms
    }

    /// The index the end-to-end layer keys everything of `round` with: its
    /// start time, `round × round_ms` (ms since the Unix epoch). Unlike the
    /// round number it never repeats when the round length changes. Only
    /// for rounds that passed [`check`](Self::check) (no overflow then).
    pub fn index(self, round: u64) -> u64 {
        round.saturating_mul(self.round_ms)
    }

    /// The round the wall clock gives at `now_ms`.
    pub fn current(self, now_ms: u64) -> u64 {
        now_ms / self.round_ms
    }

    /// The latest round accepted at `now_ms` (the clock skew ahead).
    pub fn latest(self, now_ms: u64) -> u64 {
        self.current(now_ms) + ROUND_SKEW_MS.div_ceil(self.round_ms)
    }

    /// Accepts `round` if it lies between [`ROUND_LAG_MS`] before and
    /// [`ROUND_SKEW_MS`] after the wall clock's round.
    pub fn check(self, round: u64, now_ms: u64) -> Result<(), RoundError> {
        let expected = self.current(now_ms);
        let earliest = expected.saturating_sub(ROUND_LAG_MS.div_ceil(self.round_ms));
        if round < earliest || round > self.latest(now_ms) {
            return Err(RoundError::OutOfStep { round, expected });
        }
        Ok(())
    }

    /// Checks a WELCOME against the wall clock: the open round, and the
    /// round its first cell answers with (`open_round + 1`), must both pass
    /// [`check`](Self::check), and the backlog must start no later than the
    /// open round. A WELCOME that fails is refused before anything is sent:
    /// one lied number (`u64::MAX`) would otherwise make every live batch
    /// look like backlog, read and never answered.
    pub fn check_welcome(
        self,
        open_round: u64,
        oldest_held: u64,
        now_ms: u64,
    ) -> Result<(), RoundError> {
        self.check(open_round, now_ms)?;
        let next = open_round.checked_add(1).ok_or(RoundError::OutOfStep {
            round: open_round,
            expected: self.current(now_ms),
        })?;
        self.check(next, now_ms)?;
        if oldest_held > open_round {
            return Err(RoundError::Backlog {
                oldest_held,
                open_round,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_lengths_outside_the_range_are_refused() {
        for bad in [0, 1, MIN_ROUND_MS - 1, MAX_ROUND_MS + 1, u64::MAX] {
            assert_eq!(RoundClock::new(bad), Err(RoundError::RoundLength(bad)));
        }
        for good in [MIN_ROUND_MS, 500, MAX_ROUND_MS] {
            assert!(RoundClock::new(good).is_ok());
        }
    }

    /// Checked against a check that only looks forward (or only back).
    #[test]
    fn rounds_far_from_the_wall_clock_are_refused() {
        let c = RoundClock::new(500).unwrap();
        let now = 1_764_000_000_000;
        let here = now / 500;
        assert!(c.check(here, now).is_ok());
        assert!(c.check(here + 60, now).is_ok(), "30 s ahead");
        assert!(c.check(here + 61, now).is_err());
        assert!(c.check(here - 1260, now).is_ok(), "10.5 minutes back");
        assert!(c.check(here - 1261, now).is_err());
        for lie in [u64::MAX, u64::MAX - 1, 1 << 62, 0] {
            assert!(c.check(lie, now).is_err(), "{lie}");
        }
    }

    /// Checked against a `check_welcome` that accepts anything: the
    /// `u64::MAX` open round (every live batch then looked like backlog,
    /// never answered) and a backlog after the open round.
    #[test]
    fn lied_welcomes_are_refused() {
        let c = RoundClock::new(500).unwrap();
        let now = 1_764_000_000_000;
        let here = now / 500;
        assert!(c.check_welcome(here, here - 20, now).is_ok());
        assert!(c.check_welcome(here, here, now).is_ok());
        for lie in [u64::MAX, u64::MAX - 1, 1 << 62, here + 60, 0] {
            assert!(c.check_welcome(lie, 0, now).is_err(), "{lie}");
        }
        assert_eq!(
            c.check_welcome(here, here + 1, now),
            Err(RoundError::Backlog {
                oldest_held: here + 1,
                open_round: here
            })
        );
    }
}
