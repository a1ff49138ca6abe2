//! How fast the relay may send live batch headers: a token bucket, one
//! token per announced round, a small burst saved up. A relay that sends
//! faster is hung up on, decided on the headers alone (see
//! [`super::lockstep`]).

use std::time::Instant;

/// Live batch headers that may come back to back (a relay tick that came
/// late and the next on time), beyond one per announced round.
const BURST: u64 = 4;

/// A token bucket over live batch headers: one token per announced round,
/// at most [`BURST`] saved up. Counted in microseconds of credit (integers:
/// a header on the exact pace is never refused by a rounding error).
pub(super) struct Pacer {
    /// The cost of one header: the announced round, in microseconds.
    cost: u64,
    /// Credit, at most `BURST × cost`.
    credit: u64,
    last: Option<Instant>,
}

impl Pacer {
    pub(super) fn new(round_ms: u32) -> Self {
        let cost = u64::from(round_ms.max(1)) * 1000;
        Self {
            cost,
            credit: BURST * cost,
            last: None,
        }
    }

    /// Takes a token for a header read at `now`; false if none is left.
    pub(super) fn admit(&mut self, now: Instant) -> bool {
        if let Some(last) = self.last {
            let us =
                u64::try_from(now.saturating_duration_since(last).as_micros()).unwrap_or(u64::MAX);
            self.credit = self.credit.saturating_add(us).min(BURST * self.cost);
        }
        self.last = Some(now);
        if self.credit >= self.cost {
            self.credit -= self.cost;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// Checked against a pacer without the bucket (every header admitted)
    /// and one without refill (the fifth header refused for good).
    #[test]
    fn headers_faster_than_the_rounds_are_refused_beyond_a_small_burst() {
        let mut p = Pacer::new(100);
        let t = Instant::now();
        for _ in 0..4 {
            assert!(p.admit(t));
        }
        assert!(!p.admit(t), "a fifth header at the same instant");
        assert!(p.admit(t + Duration::from_millis(100)));
        assert!(!p.admit(t + Duration::from_millis(150)));
        // At the announced pace, forever.
        let mut at = t + Duration::from_millis(200);
        for _ in 0..1000 {
            assert!(p.admit(at));
            at += Duration::from_millis(100);
        }
        // A late tick and the next on time.
        assert!(p.admit(at + Duration::from_millis(90)));
        assert!(p.admit(at + Duration::from_millis(100)));
    }
}
