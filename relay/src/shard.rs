//! Shards and rounds: collect at most one cell per client per round, close
//! the round on the timer, shuffle, seal once, hand the same sealed bytes to
//! every member's bounded queue, keep a bounded backlog.
//!
//! Lock order: the registry lock, then a shard's lock. No lock is held
//! across an `.await`.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anonchat_protocol::wire::{
    BODY_HASH_LEN, BatchKey, CloseCode, SealedBatch, Welcome, seal_batch,
};
use bytes::Bytes;
use rand::seq::SliceRandom as _;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::{RelayConfig, Stats};

/// What a connection's writer task sends, in order.
pub(crate) enum Outgoing {
    Welcome(Welcome),
    Batch(Arc<StoredBatch>),
    Backlog(Vec<Arc<StoredBatch>>),
    Close(CloseCode, String),
}

/// A closed round as written to every client: the header fields, the key,
/// the body hash (computed once, when sealing) and the sealed body shared
/// by reference.
pub(crate) struct StoredBatch {
    pub(crate) round: u64,
    pub(crate) closed_at_us: u64,
    pub(crate) cells: u32,
    pub(crate) key: BatchKey,
    pub(crate) body_hash: [u8; BODY_HASH_LEN],
    pub(crate) body: Bytes,
    closed_at: Instant,
}

struct Member {
    tx: mpsc::Sender<Outgoing>,
    kick: CancellationToken,
}

struct ShardState {
    open_round: u64,
    members: HashMap<u64, Member>,
    /// At most one cell per member per round.
    pending: HashMap<u64, Vec<u8>>,
    backlog: VecDeque<Arc<StoredBatch>>,
}

pub(crate) struct Shard {
    id: u32,
    state: Mutex<ShardState>,
}

/// What happened to a submitted cell.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Submit {
    Accepted,
    /// For a round already closed: dropped, not the client's fault.
    Late,
    /// A second cell in the same round: dropped, a violation.
    Duplicate,
    /// A round not open yet: a violation.
    Future,
}

/// Why a client could not join.
#[derive(Debug)]
pub(crate) struct ShardsFull;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave these maps half-updated in
    // a way that matters more than stopping service; keep serving.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Shard {
    pub(crate) fn id(&self) -> u32 {
        self.id
    }

    pub(crate) fn submit(&self, conn: u64, round: u64, cell: Vec<u8>) -> Submit {
        let mut st = lock(&self.state);
        if round < st.open_round {
            return Submit::Late;
        }
        if round > st.open_round {
            return Submit::Future;
        }
        if !st.members.contains_key(&conn) {
            return Submit::Late;
        }
        match st.pending.entry(conn) {
            Entry::Occupied(_) => Submit::Duplicate,
            Entry::Vacant(v) => {
                v.insert(cell);
                Submit::Accepted
            }
        }
    }

    pub(crate) fn leave(&self, conn: u64) {
        lock(&self.state).members.remove(&conn);
    }
}

/// All shards of the relay, and the round clock.
pub(crate) struct Shards {
    registry: Mutex<HashMap<u32, Arc<Shard>>>,
    config: RelayConfig,
    stats: Arc<Stats>,
    backlog_bytes: AtomicUsize,
    /// The round open now: a new shard opens at this number so that all
    /// shards move in lockstep. Kept in step with the wall clock
    /// ([`next_open_round`]).
    tick: Mutex<u64>,
}

impl Shards {
    pub(crate) fn new(config: RelayConfig, stats: Arc<Stats>) -> Self {
        Self {
            registry: Mutex::new(HashMap::new()),
            config,
            stats,
            backlog_bytes: AtomicUsize::new(0),
            // Rounds are numbered from the wall clock, so they keep
            // increasing across relay restarts and a resuming client sees
            // the gap.
            tick: Mutex::new(wall_clock_round(
                unix_micros() / 1000,
                u64::from(config.round_ms()),
            )),
        }
    }

    /// The round open now.
    pub(crate) fn open_round(&self) -> u64 {
        *lock(&self.tick)
    }

    /// Adds a member to a shard (created on demand), queues its welcome and,
    /// when resuming, the held batches after `resume_after`, atomically with
    /// respect to round closing, so nothing is missed or doubled.
    pub(crate) fn join(
        &self,
        shard_id: u32,
        conn: u64,
        tx: mpsc::Sender<Outgoing>,
        kick: CancellationToken,
        resume_after: Option<u64>,
    ) -> Result<Arc<Shard>, ShardsFull> {
        let mut reg = lock(&self.registry);
        let shard = if let Some(s) = reg.get(&shard_id) {
            Arc::clone(s)
        } else {
            if reg.len() >= self.config.max_shards {
                return Err(ShardsFull);
            }
            let open_round = *lock(&self.tick);
            let s = Arc::new(Shard {
                id: shard_id,
                state: Mutex::new(ShardState {
                    open_round,
                    members: HashMap::new(),
                    pending: HashMap::new(),
                    backlog: VecDeque::new(),
                }),
            });
            reg.insert(shard_id, Arc::clone(&s));
            s
        };
        let mut st = lock(&shard.state);
        let welcome = Welcome {
            shard: shard_id,
            open_round: st.open_round,
            oldest_held: st.backlog.front().map_or(st.open_round, |b| b.round),
        };
        // The queue is new and empty, and `send_queue >= 2` is not required:
        // a failure here only means the client left already.
        let _ = tx.try_send(Outgoing::Welcome(welcome));
        if let Some(after) = resume_after {
            let held: Vec<_> = st
                .backlog
                .iter()
                .filter(|b| b.round > after)
                .cloned()
                .collect();
            if !held.is_empty() {
                let _ = tx.try_send(Outgoing::Backlog(held));
            }
        }
        st.members.insert(conn, Member { tx, kick });
        drop(st);
        Stats::inc(&self.stats.clients_joined);
        Ok(shard)
    }

    /// Closes the open round of every shard and returns the round opened
    /// next. `closed_at_us` is the wall clock (for latency measurement and
    /// the round numbers: [`next_open_round`]), `now` the monotonic one
    /// (for expiry).
    pub(crate) fn close_round(&self, now: Instant, closed_at_us: u64) -> u64 {
        let shards: Vec<Arc<Shard>> = lock(&self.registry).values().cloned().collect();
        let unix_ms = closed_at_us / 1000;
        let round_ms = u64::from(self.config.round_ms());
        let next = {
            let mut tick = lock(&self.tick);
            *tick = next_open_round(*tick, unix_ms, round_ms);
            *tick
        };
        for shard in &shards {
            self.close_shard_round(shard, now, closed_at_us);
        }
        Stats::inc(&self.stats.rounds_closed);
        self.remove_empty_shards();
        next
    }

    fn close_shard_round(&self, shard: &Shard, now: Instant, closed_at_us: u64) {
        let (round, cells) = {
            let mut st = lock(&shard.state);
            let round = st.open_round;
            st.open_round = next_open_round(
                round,
                closed_at_us / 1000,
                u64::from(self.config.round_ms()),
            );
            if st.members.is_empty() && st.pending.is_empty() {
                self.expire(&mut st, now);
                return;
            }
            (round, std::mem::take(&mut st.pending))
        };
        let mut cells: Vec<Vec<u8>> = cells.into_values().collect();
        let mut rng = rand::rng();
        cells.shuffle(&mut rng);
        let n_cells = cells.len() as u64;
        let plaintext = cells.concat();
        let SealedBatch {
            cells: sealed_cells,
            key,
            body_hash,
            body,
            ..
        } = match seal_batch(
            &mut rng,
            shard.id,
            round,
            closed_at_us,
            self.config.cell_size,
            plaintext,
        ) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot seal a batch; round skipped");
                return;
            }
        };
        Stats::add(&self.stats.cells_relayed, n_cells);
        let stored = Arc::new(StoredBatch {
            round,
            closed_at_us,
            cells: sealed_cells,
            key,
            body_hash,
            body: Bytes::from(body),
            closed_at: now,
        });

        let mut st = lock(&shard.state);
        self.expire(&mut st, now);
        self.store(&mut st, &stored);
        let stats = &self.stats;
        st.members.retain(
            |_, m| match m.tx.try_send(Outgoing::Batch(Arc::clone(&stored))) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    // A slow reader: drop it rather than buffer without end.
                    Stats::inc(&stats.slow_readers_dropped);
                    m.kick.cancel();
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            },
        );
    }

    fn store(&self, st: &mut ShardState, batch: &Arc<StoredBatch>) {
        if self.config.backlog_rounds() == 0 {
            return;
        }
        let size = batch.body.len();
        let limit = self.config.max_backlog_bytes;
        while self.backlog_bytes.load(Ordering::Relaxed) + size > limit {
            let Some(old) = st.backlog.pop_front() else {
                Stats::inc(&self.stats.backlog_evictions);
                return;
            };
            self.backlog_bytes
                .fetch_sub(old.body.len(), Ordering::Relaxed);
            Stats::inc(&self.stats.backlog_evictions);
        }
        self.backlog_bytes.fetch_add(size, Ordering::Relaxed);
        st.backlog.push_back(Arc::clone(batch));
    }

    fn expire(&self, st: &mut ShardState, now: Instant) {
        let keep = self.config.backlog;
        let max_rounds = self.config.backlog_rounds();
        while let Some(front) = st.backlog.front() {
            let too_old = now.saturating_duration_since(front.closed_at) > keep;
            // `<`: room is made for the batch about to be stored.
            if !too_old && st.backlog.len() < max_rounds {
                break;
            }
            if let Some(old) = st.backlog.pop_front() {
                self.backlog_bytes
                    .fetch_sub(old.body.len(), Ordering::Relaxed);
            }
        }
    }

    fn remove_empty_shards(&self) {
        lock(&self.registry).retain(|_, shard| {
            let st = lock(&shard.state);
            !(st.members.is_empty() && st.backlog.is_empty() && st.pending.is_empty())
        });
    }

    /// Tells every member the relay is going away.
    pub(crate) fn shutdown(&self) {
        for shard in lock(&self.registry).values() {
            for m in lock(&shard.state).members.values() {
                let _ = m.tx.try_send(Outgoing::Close(
                    CloseCode::Shutdown,
                    "relay shutting down; reconnect later".into(),
                ));
            }
        }
    }

    pub(crate) fn counts(&self) -> (usize, usize, usize) {
        let reg = lock(&self.registry);
        let members = reg.values().map(|s| lock(&s.state).members.len()).sum();
        (
            reg.len(),
            members,
            self.backlog_bytes.load(Ordering::Relaxed),
        )
    }
}

/// The round the wall clock is in: rounds are numbered
/// `unix_ms / round_ms`, round `r` spanning `[r * round_ms, (r + 1) *
/// round_ms)` milliseconds since the Unix epoch.
pub(crate) fn wall_clock_round(unix_ms: u64, round_ms: u64) -> u64 {
    unix_ms / round_ms.max(1)
}

/// The round to open when `open_round` closes at wall-clock time
/// `unix_ms`: `max(open_round + 1, unix_ms / round_ms)`. On time, that is
/// the next round; after a late tick it is the wall clock's round, skipping
/// the numbers of the rounds that were not held, so the relay never drifts
/// behind the wall clock (clients refuse round numbers too far from their
/// own clock). Rounds never go backwards, even if the wall clock is set
/// back: then they advance by one per tick until the clock catches up.
pub(crate) fn next_open_round(open_round: u64, unix_ms: u64, round_ms: u64) -> u64 {
    open_round
        .saturating_add(1)
        .max(wall_clock_round(unix_ms, round_ms))
}

/// How long the round clock waits, at wall-clock time `unix_us`, before
/// closing `open_round`: until the round's end by the wall clock
/// (`(open_round + 1) * round_ms`), so that round closes stay on the wall
/// clock's round boundaries and a late tick is not carried into the next
/// round. At once if that end has passed; never longer than one round (if
/// the wall clock was set back, rounds go on at the usual pace).
pub(crate) fn until_round_end(open_round: u64, unix_us: u64, round_ms: u64) -> Duration {
    let one_round = round_ms.max(1).saturating_mul(1000);
    let end_us = open_round.saturating_add(1).saturating_mul(one_round);
    Duration::from_micros(end_us.saturating_sub(unix_us).min(one_round))
}

/// Microseconds since the Unix epoch, for batch headers.
pub(crate) fn unix_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_micros() as u64
}

#[cfg(test)]
mod tests {
    use anonchat_protocol::wire::open_batch;

    use super::*;

    const C: usize = 128;

    fn shards(config: RelayConfig) -> Shards {
        Shards::new(
            RelayConfig {
                cell_size: C,
                ..config
            },
            Arc::new(Stats::default()),
        )
    }

    fn member(
        s: &Shards,
        shard: u32,
        conn: u64,
        depth: usize,
    ) -> (Arc<Shard>, mpsc::Receiver<Outgoing>, CancellationToken) {
        let (tx, rx) = mpsc::channel(depth);
        let kick = CancellationToken::new();
        let sh = s.join(shard, conn, tx, kick.clone(), None).unwrap();
        (sh, rx, kick)
    }

    fn next_batch(rx: &mut mpsc::Receiver<Outgoing>) -> Arc<StoredBatch> {
        loop {
            match rx.try_recv().expect("an item") {
                Outgoing::Batch(b) => return b,
                Outgoing::Welcome(_) => {}
                _ => panic!("unexpected item"),
            }
        }
    }

    #[test]
    fn one_cell_per_member_per_round_and_everyone_gets_the_same_bytes() {
        let s = shards(RelayConfig::default());
        let (sh, mut rx1, _) = member(&s, 1, 1, 8);
        let (_, mut rx2, _) = member(&s, 1, 2, 8);
        let round = lock(&sh.state).open_round;
        assert_eq!(sh.submit(1, round, vec![1; C]), Submit::Accepted);
        assert_eq!(sh.submit(1, round, vec![9; C]), Submit::Duplicate);
        assert_eq!(sh.submit(2, round + 1, vec![2; C]), Submit::Future);
        assert_eq!(sh.submit(2, round, vec![2; C]), Submit::Accepted);
        s.close_round(Instant::now(), 1);
        assert_eq!(sh.submit(2, round, vec![2; C]), Submit::Late);
        let (a, b) = (next_batch(&mut rx1), next_batch(&mut rx2));
        assert!(Arc::ptr_eq(&a, &b), "sealed once, shared by all");
        let opened = open_batch(&a.key, &a.body_hash, 1, round, a.cells, C, &a.body).unwrap();
        let mut firsts: Vec<u8> = opened.cells().map(|c| c[0]).collect();
        firsts.sort_unstable();
        assert_eq!(firsts, vec![1, 2]);
    }

    #[test]
    fn shards_do_not_see_each_other() {
        let s = shards(RelayConfig::default());
        let (a, mut rxa, _) = member(&s, 1, 1, 8);
        let (b, mut rxb, _) = member(&s, 2, 2, 8);
        let round = lock(&a.state).open_round;
        a.submit(1, round, vec![1; C]);
        b.submit(2, round, vec![2; C]);
        s.close_round(Instant::now(), 1);
        assert_eq!(next_batch(&mut rxa).cells, 1);
        assert_eq!(next_batch(&mut rxb).cells, 1);
    }

    #[test]
    fn slow_reader_is_kicked_not_buffered() {
        let s = shards(RelayConfig::default());
        let (_, _rx_slow, kick) = member(&s, 1, 1, 2);
        let (_, mut rx_ok, _) = member(&s, 1, 2, 64);
        for _ in 0..5 {
            s.close_round(Instant::now(), 1);
            while rx_ok.try_recv().is_ok() {}
        }
        assert!(kick.is_cancelled());
        assert_eq!(s.counts().1, 1);
        assert_eq!(Stats::get(&s.stats.slow_readers_dropped), 1);
    }

    #[test]
    fn resume_gets_the_held_rounds_after_the_one_named() {
        let s = shards(RelayConfig::default());
        let (sh, _rx, _) = member(&s, 1, 1, 64);
        let first = lock(&sh.state).open_round;
        for _ in 0..4 {
            s.close_round(Instant::now(), 1);
        }
        let (tx, mut rx) = mpsc::channel(8);
        s.join(1, 2, tx, CancellationToken::new(), Some(first + 1))
            .unwrap();
        let Outgoing::Welcome(w) = rx.try_recv().unwrap() else {
            panic!("welcome first")
        };
        assert_eq!(w.oldest_held, first);
        assert_eq!(w.open_round, first + 4);
        let Outgoing::Backlog(held) = rx.try_recv().unwrap() else {
            panic!("then the backlog")
        };
        let rounds: Vec<u64> = held.iter().map(|b| b.round).collect();
        assert_eq!(rounds, vec![first + 2, first + 3]);
    }

    #[test]
    fn backlog_is_bounded_by_time_and_by_memory() {
        let s = shards(RelayConfig {
            backlog: Duration::from_secs(2),
            round: Duration::from_millis(500),
            ..RelayConfig::default()
        });
        let (sh, mut rx, _) = member(&s, 1, 1, 1024);
        let t0 = Instant::now();
        for i in 0..20u32 {
            s.close_round(t0 + Duration::from_millis(500) * i, 1);
            while rx.try_recv().is_ok() {}
        }
        assert!(lock(&sh.state).backlog.len() <= 4);

        let tight = shards(RelayConfig {
            max_backlog_bytes: 3 * (C + 16),
            ..RelayConfig::default()
        });
        let (sh, mut rx, _) = member(&tight, 1, 1, 1024);
        for _ in 0..10 {
            let round = lock(&sh.state).open_round;
            sh.submit(1, round, vec![0; C]);
            tight.close_round(Instant::now(), 1);
            while rx.try_recv().is_ok() {}
        }
        assert!(tight.counts().2 <= 3 * (C + 16));
    }

    #[test]
    fn the_next_round_is_the_next_one_or_the_wall_clocks() {
        const MS: u64 = 500;
        // On time (the tick at round 10's end, or a hair before it).
        assert_eq!(next_open_round(10, 11 * MS, MS), 11);
        assert_eq!(next_open_round(10, 11 * MS - 1, MS), 11);
        // Late by a fraction of a round: still the next one.
        assert_eq!(next_open_round(10, 11 * MS + MS / 2, MS), 11);
        // Late by three rounds: the rounds not held are skipped.
        assert_eq!(next_open_round(10, 14 * MS + 1, MS), 14);
        // The wall clock set back: forward by one, never backwards.
        assert_eq!(next_open_round(10, 3 * MS, MS), 11);
        assert_eq!(next_open_round(u64::MAX, 0, MS), u64::MAX);
        assert_eq!(next_open_round(0, u64::MAX, 0), u64::MAX);
    }

    #[test]
    fn the_clock_waits_for_the_wall_clock_end_of_the_round() {
        const MS: u64 = 500;
        let us = |ms: u64| ms * 1000;
        // Round 10 ends at 5500 ms.
        assert_eq!(
            until_round_end(10, us(5000), MS),
            Duration::from_millis(500)
        );
        assert_eq!(
            until_round_end(10, us(5400), MS),
            Duration::from_millis(100)
        );
        // Late: close at once.
        assert_eq!(until_round_end(10, us(5600), MS), Duration::ZERO);
        assert_eq!(until_round_end(10, us(9000), MS), Duration::ZERO);
        // Ahead of the wall clock (it was set back): one round, no more.
        assert_eq!(
            until_round_end(10, us(1000), MS),
            Duration::from_millis(500)
        );
        assert_eq!(
            until_round_end(u64::MAX, u64::MAX, u64::MAX),
            Duration::ZERO
        );
    }

    /// Issue 10, finding 4 (relay side): a late tick must not leave the
    /// relay's round numbers behind the wall clock for good, as the old
    /// counter (`open_round += 1` under `MissedTickBehavior::Delay`) did.
    /// Time is injected through `close_round`'s wall-clock argument.
    ///
    /// Checked against the mutation "`next_open_round` returns
    /// `open_round + 1`" (the old counter): after the late tick the relay
    /// then opens round `r0 + 2`, two behind the wall clock, and this test
    /// fails.
    #[test]
    fn a_late_tick_skips_the_missed_rounds_instead_of_drifting() {
        const MS: u64 = 500;
        let s = shards(RelayConfig {
            round: Duration::from_millis(MS),
            ..RelayConfig::default()
        });
        let (sh, mut rx, _) = member(&s, 1, 1, 64);
        let r0 = s.open_round();
        assert_eq!(lock(&sh.state).open_round, r0);
        // The wall-clock time at which round `r` ends, in microseconds.
        let end_us = |r: u64| (r + 1) * MS * 1000;

        // On time.
        assert_eq!(s.close_round(Instant::now(), end_us(r0)), r0 + 1);
        // Round r0 + 1 closes two and a half rounds late: rounds r0 + 2 and
        // r0 + 3 were never open, the wall clock is in r0 + 4.
        let late = end_us(r0 + 1) + 5 * MS * 1000 / 2;
        assert_eq!(s.close_round(Instant::now(), late), r0 + 4);
        assert_eq!(lock(&sh.state).open_round, r0 + 4);
        // A new shard joins in step.
        let (other, _rx2, _) = member(&s, 2, 2, 64);
        assert_eq!(lock(&other.state).open_round, r0 + 4);
        // The wall clock set back an hour: forward by one all the same.
        let back = end_us(r0 + 4) - 3_600 * 1_000_000;
        assert_eq!(s.close_round(Instant::now(), back), r0 + 5);
        assert_eq!(lock(&sh.state).open_round, r0 + 5);

        let rounds: Vec<u64> = std::iter::from_fn(|| match rx.try_recv() {
            Ok(Outgoing::Batch(b)) => Some(Some(b.round)),
            Ok(_) => Some(None),
            Err(_) => None,
        })
        .flatten()
        .collect();
        assert_eq!(rounds, vec![r0, r0 + 1, r0 + 4]);
    }

    #[test]
    fn empty_shards_are_removed_and_the_shard_count_is_bounded() {
        let s = shards(RelayConfig {
            max_shards: 1,
            backlog: Duration::ZERO,
            ..RelayConfig::default()
        });
        let (sh, _rx, _) = member(&s, 1, 1, 8);
        let (tx, _rx2) = mpsc::channel(8);
        assert!(s.join(2, 2, tx, CancellationToken::new(), None).is_err());
        sh.leave(1);
        s.close_round(Instant::now(), 1);
        s.close_round(Instant::now() + Duration::from_secs(1), 1);
        assert_eq!(s.counts().0, 0);
    }
}
