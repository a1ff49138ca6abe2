//! Shards and rounds: collect at most one cell per client per round, close
//! the round on the timer, shuffle, seal once, hand the same sealed bytes to
//! every member's bounded queue, keep a bounded backlog shared fairly
//! between the shards.
//!
//! Lock order: the registry lock, then one shard's lock. No two shard locks
//! are held at once, and no lock is held across an `.await`.

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

use crate::body::{BodyFile, BodyFiles};
use crate::per_ip::IpKey;
use crate::{RelayConfig, Stats};

/// What a connection's writer task sends, in order.
pub(crate) enum Outgoing {
    Welcome(Welcome),
    Batch(LiveBatch),
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

/// A batch as it goes out live: the stored batch, and its body in a memory
/// file when there is one ([`crate::body`]). Only live batches hold a
/// file; the backlog holds the buffer alone.
pub(crate) struct LiveBatch {
    pub(crate) batch: Arc<StoredBatch>,
    pub(crate) file: Option<Arc<BodyFile>>,
}

impl std::ops::Deref for LiveBatch {
    type Target = StoredBatch;
    fn deref(&self) -> &StoredBatch {
        &self.batch
    }
}

struct Member {
    tx: mpsc::Sender<Outgoing>,
    kick: CancellationToken,
    /// Live batches queued to this member (counted before it can read
    /// them, so before it can answer them).
    batches: u64,
    /// Cells of this member taken (accepted, or dropped as late without a
    /// violation). At most `batches + 1`: one per live batch, and the one
    /// for the round open at the welcome.
    cells: u64,
}

struct ShardState {
    open_round: u64,
    members: HashMap<u64, Member>,
    /// At most one cell per member per round.
    pending: HashMap<u64, Vec<u8>>,
    backlog: VecDeque<Arc<StoredBatch>>,
    /// Bytes of the bodies in `backlog`.
    backlog_bytes: usize,
    /// Dropped from the registry to make room for another shard: it takes
    /// no more batches.
    dropped: bool,
    /// The body file of the round just closed, if a queue still holds it:
    /// its source pipe is let go when the next round closes
    /// ([`BodyFile::retire_source`]). Weak, so that it keeps nothing open.
    live_file: std::sync::Weak<BodyFile>,
}

pub(crate) struct Shard {
    id: u32,
    state: Mutex<ShardState>,
}

/// What happened to a submitted cell.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub(crate) enum Submit {
    Accepted,
    /// For a round already closed, within the member's one cell per batch
    /// (it answers a batch, after a skipped round number or across a round
    /// close): dropped, not a violation.
    Late,
    /// More cells than one per live batch queued to the member, plus one:
    /// dropped, a violation, whatever its round. This is what bounds late
    /// cells.
    Unearned,
    /// A second cell in the same round: dropped, a violation.
    Duplicate,
    /// A round not open yet: a violation.
    Future,
}

/// Why a client could not join a shard.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum JoinRefused {
    /// `--max-shards` shards exist and every one has members.
    Full,
    /// Connections from the client's address (IPv4 address or IPv6 /64)
    /// are in `--max-shards-per-ip` other shards already.
    AddressShards,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave these maps half-updated in
    // a way that matters more than stopping service; keep serving.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Shard {
    pub(crate) fn id(&self) -> u32 {
        self.id
    }

    /// Takes a member's cell for `round`. A member may send one cell per
    /// live batch it was sent, plus one (for the round open at its
    /// welcome), whatever the cells' rounds: an honest client answers each
    /// batch once, so its late cells (after a skipped round number, or
    /// across a round close, or catching up after a slow round) always fit,
    /// and a connection can never make the relay open more than that (the
    /// violations aside, which are bounded).
    pub(crate) fn submit(&self, conn: u64, round: u64, cell: Vec<u8>) -> Submit {
        let mut guard = lock(&self.state);
        let st = &mut *guard;
        let Some(member) = st.members.get_mut(&conn) else {
            // It has left; its connection is ending.
            return Submit::Late;
        };
        if member.cells > member.batches {
            return Submit::Unearned;
        }
        if round > st.open_round {
            return Submit::Future;
        }
        if round < st.open_round {
            member.cells += 1;
            return Submit::Late;
        }
        match st.pending.entry(conn) {
            Entry::Occupied(_) => Submit::Duplicate,
            Entry::Vacant(v) => {
                v.insert(cell);
                member.cells += 1;
                Submit::Accepted
            }
        }
    }

    /// The round open now in this shard.
    #[cfg(test)]
    fn open_round(&self) -> u64 {
        lock(&self.state).open_round
    }
}

/// The shards, and the shards each source address has members in.
#[derive(Default)]
struct Registry {
    shards: HashMap<u32, Arc<Shard>>,
    /// Per address, the shards its connections are in, with how many
    /// connections each. Only addresses with a member, so it is bounded by
    /// `--max-clients`.
    by_ip: HashMap<IpKey, HashMap<u32, usize>>,
}

/// All shards of the relay, and the round clock.
pub(crate) struct Shards {
    registry: Mutex<Registry>,
    config: RelayConfig,
    stats: Arc<Stats>,
    backlog_bytes: AtomicUsize,
    /// Memory files for live batch bodies.
    pub(crate) files: BodyFiles,
    /// The round open now: a new shard opens at this number so that all
    /// shards move in lockstep. Kept in step with the wall clock
    /// ([`next_open_round`]).
    tick: Mutex<u64>,
}

impl Shards {
    pub(crate) fn new(config: RelayConfig, stats: Arc<Stats>) -> Self {
        Self {
            registry: Mutex::new(Registry::default()),
            config,
            stats,
            backlog_bytes: AtomicUsize::new(0),
            files: BodyFiles::default(),
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

    /// Adds a member from address `ip` to a shard (created on demand),
    /// queues its welcome and, when resuming, the held batches after
    /// `resume_after`, atomically with respect to round closing, so nothing
    /// is missed or doubled.
    ///
    /// Refused if the address's connections are in `--max-shards-per-ip`
    /// other shards already, or if `--max-shards` shards exist and none is
    /// without members (one that is, is dropped with its backlog to make
    /// room: a shard nobody is in holds nothing but its backlog, and
    /// keeping it would let an address that joins and leaves shard after
    /// shard fill the registry past its own limit).
    pub(crate) fn join(
        &self,
        shard_id: u32,
        conn: u64,
        ip: IpKey,
        tx: mpsc::Sender<Outgoing>,
        kick: CancellationToken,
        resume_after: Option<u64>,
    ) -> Result<Arc<Shard>, JoinRefused> {
        let mut guard = lock(&self.registry);
        let reg = &mut *guard;
        let ip_shards = reg.by_ip.get(&ip);
        if !ip_shards.is_some_and(|m| m.contains_key(&shard_id))
            && ip_shards.map_or(0, HashMap::len) >= self.config.max_shards_per_ip
        {
            Stats::inc(&self.stats.joins_refused);
            return Err(JoinRefused::AddressShards);
        }
        let shard = if let Some(s) = reg.shards.get(&shard_id) {
            Arc::clone(s)
        } else {
            if reg.shards.len() >= self.config.max_shards && !self.drop_a_memberless_shard(reg) {
                Stats::inc(&self.stats.joins_refused);
                return Err(JoinRefused::Full);
            }
            let open_round = *lock(&self.tick);
            let s = Arc::new(Shard {
                id: shard_id,
                state: Mutex::new(ShardState {
                    open_round,
                    members: HashMap::new(),
                    pending: HashMap::new(),
                    backlog: VecDeque::new(),
                    backlog_bytes: 0,
                    dropped: false,
                    live_file: std::sync::Weak::new(),
                }),
            });
            reg.shards.insert(shard_id, Arc::clone(&s));
            s
        };
        *reg.by_ip
            .entry(ip)
            .or_default()
            .entry(shard_id)
            .or_insert(0) += 1;
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
        st.members.insert(
            conn,
            Member {
                tx,
                kick,
                batches: 0,
                cells: 0,
            },
        );
        drop(st);
        Stats::inc(&self.stats.clients_joined);
        Ok(shard)
    }

    /// Removes a member that joined `shard` from address `ip` (once per
    /// successful [`join`](Self::join)).
    pub(crate) fn leave(&self, shard: &Shard, conn: u64, ip: IpKey) {
        let mut reg = lock(&self.registry);
        if let Some(shards) = reg.by_ip.get_mut(&ip) {
            if let Some(n) = shards.get_mut(&shard.id) {
                *n -= 1;
                if *n == 0 {
                    shards.remove(&shard.id);
                }
            }
            if shards.is_empty() {
                reg.by_ip.remove(&ip);
            }
        }
        lock(&shard.state).members.remove(&conn);
    }

    /// Drops the shard without members that has been without them longest
    /// (its newest batch is the oldest), with its backlog; false if every
    /// shard has members.
    fn drop_a_memberless_shard(&self, reg: &mut Registry) -> bool {
        let victim = reg
            .shards
            .iter()
            .filter_map(|(&id, shard)| {
                let st = lock(&shard.state);
                st.members
                    .is_empty()
                    .then(|| (st.backlog.back().map_or(0, |b| b.round), id))
            })
            .min();
        let Some((_, id)) = victim else {
            return false;
        };
        if let Some(shard) = reg.shards.remove(&id) {
            let mut st = lock(&shard.state);
            st.dropped = true;
            st.pending.clear();
            while self.pop_oldest(&mut st) {}
        }
        Stats::inc(&self.stats.shards_dropped);
        true
    }

    /// Closes the open round of every shard and returns the round opened
    /// next. `closed_at_us` is the wall clock (for latency measurement and
    /// the round numbers: [`next_open_round`]), `now` the monotonic one
    /// (for expiry).
    pub(crate) fn close_round(&self, now: Instant, closed_at_us: u64) -> u64 {
        let shards: Vec<Arc<Shard>> = lock(&self.registry).shards.values().cloned().collect();
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
        self.trim_backlogs(&shards);
        Stats::inc(&self.stats.rounds_closed);
        self.remove_empty_shards();
        next
    }

    fn close_shard_round(&self, shard: &Shard, now: Instant, closed_at_us: u64) {
        let (round, cells) = {
            let mut st = lock(&shard.state);
            if st.dropped {
                return;
            }
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
        let file = self.files.make(&body);
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
        if st.dropped {
            return;
        }
        let this_round = file
            .as_ref()
            .map_or_else(std::sync::Weak::new, Arc::downgrade);
        if let Some(old) = std::mem::replace(&mut st.live_file, this_round).upgrade() {
            old.retire_source();
        }
        self.expire(&mut st, now);
        self.store(&mut st, &stored);
        let stats = &self.stats;
        st.members.retain(|_, m| {
            // Counted before the member can read it, so before it can
            // answer it (see `submit`).
            m.batches += 1;
            let live = LiveBatch {
                batch: Arc::clone(&stored),
                file: file.clone(),
            };
            match m.tx.try_send(Outgoing::Batch(live)) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    // A slow reader: drop it rather than buffer without end.
                    Stats::inc(&stats.slow_readers_dropped);
                    m.kick.cancel();
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            }
        });
    }

    /// Keeps a batch in the shard's backlog. The memory cap is applied to
    /// all shards together once the round is closed everywhere
    /// ([`trim_backlogs`](Self::trim_backlogs)); until then the batches of
    /// the round just closed are held by the members' queues anyway.
    fn store(&self, st: &mut ShardState, batch: &Arc<StoredBatch>) {
        if self.config.backlog_rounds() == 0 {
            return;
        }
        let size = batch.body.len();
        st.backlog_bytes += size;
        self.backlog_bytes.fetch_add(size, Ordering::Relaxed);
        st.backlog.push_back(Arc::clone(batch));
    }

    /// Drops the oldest batch of a shard's backlog; false if it was empty.
    fn pop_oldest(&self, st: &mut ShardState) -> bool {
        let Some(old) = st.backlog.pop_front() else {
            return false;
        };
        st.backlog_bytes -= old.body.len();
        self.backlog_bytes
            .fetch_sub(old.body.len(), Ordering::Relaxed);
        true
    }

    /// Brings all backlogs together under `--max-backlog-mb`, fairly: every
    /// shard keeps its whole backlog up to a common level, and only the
    /// shards holding more than that lose their oldest batches (max-min
    /// fairness, [`fair_level`]). So a shard with huge batches cannot push
    /// a small shard's recent rounds out: it loses its own first.
    fn trim_backlogs(&self, shards: &[Arc<Shard>]) {
        if self.backlog_bytes.load(Ordering::Relaxed) <= self.config.max_backlog_bytes {
            return;
        }
        let held: Vec<usize> = shards
            .iter()
            .map(|s| lock(&s.state).backlog_bytes)
            .collect();
        let level = fair_level(&held, self.config.max_backlog_bytes);
        for shard in shards {
            let mut st = lock(&shard.state);
            while st.backlog_bytes > level && self.pop_oldest(&mut st) {
                Stats::inc(&self.stats.backlog_evictions);
            }
        }
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
            self.pop_oldest(st);
        }
    }

    fn remove_empty_shards(&self) {
        lock(&self.registry).shards.retain(|_, shard| {
            let st = lock(&shard.state);
            !(st.members.is_empty() && st.backlog.is_empty() && st.pending.is_empty())
        });
    }

    /// Tells every member the relay is going away.
    pub(crate) fn shutdown(&self) {
        for shard in lock(&self.registry).shards.values() {
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
        let members = reg
            .shards
            .values()
            .map(|s| lock(&s.state).members.len())
            .sum();
        (
            reg.shards.len(),
            members,
            self.backlog_bytes.load(Ordering::Relaxed),
        )
    }
}

/// The largest level `L` such that every shard keeping `min(held, L)` bytes
/// fits in `cap` together (`usize::MAX` if all of `held` fits as it is).
/// Shards at or under `L` keep everything; the others are cut to `L`.
fn fair_level(held: &[usize], cap: usize) -> usize {
    let mut sorted = held.to_vec();
    sorted.sort_unstable();
    let mut left = cap;
    for (i, &h) in sorted.iter().enumerate() {
        let share = left / (sorted.len() - i);
        if h > share {
            return share;
        }
        left -= h;
    }
    usize::MAX
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

    /// A synthetic source address, `10.0.x.y` for `n = x * 256 + y`.
    fn ip(n: u64) -> IpKey {
        let [.., x, y] = n.to_be_bytes();
        IpKey::of(std::net::IpAddr::from([10, 0, x, y]))
    }

    /// Joins `shard` as connection `conn`, from an address of its own.
    fn member(
        s: &Shards,
        shard: u32,
        conn: u64,
        depth: usize,
    ) -> (Arc<Shard>, mpsc::Receiver<Outgoing>, CancellationToken) {
        let (tx, rx) = mpsc::channel(depth);
        let kick = CancellationToken::new();
        let sh = s
            .join(shard, conn, ip(conn), tx, kick.clone(), None)
            .unwrap();
        (sh, rx, kick)
    }

    /// Joins `shard` as connection `conn` from address `from`.
    fn join_from(
        s: &Shards,
        shard: u32,
        conn: u64,
        from: IpKey,
    ) -> Result<(Arc<Shard>, mpsc::Receiver<Outgoing>), JoinRefused> {
        let (tx, rx) = mpsc::channel(1024);
        s.join(shard, conn, from, tx, CancellationToken::new(), None)
            .map(|sh| (sh, rx))
    }

    fn drain(rx: &mut mpsc::Receiver<Outgoing>) {
        while rx.try_recv().is_ok() {}
    }

    fn next_batch(rx: &mut mpsc::Receiver<Outgoing>) -> Arc<StoredBatch> {
        loop {
            match rx.try_recv().expect("an item") {
                Outgoing::Batch(b) => return b.batch,
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
        // Its one cell for this round is used.
        assert_eq!(sh.submit(1, round, vec![9; C]), Submit::Unearned);
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

    /// A round's source pipe is let go when the next round closes, even
    /// while a member's queue still holds that round's body (which then
    /// goes by `sendfile`): a slow reader's queue keeps no pipe. Breaks if
    /// the previous round's source is not retired (two sources live).
    #[test]
    fn a_rounds_source_pipe_is_let_go_when_the_next_round_closes() {
        let _heavy = crate::body::PIPE_HEAVY
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let cell = crate::body::MIN_FILE_BODY;
        let s = Shards::new(
            RelayConfig {
                cell_size: cell,
                ..RelayConfig::default()
            },
            Arc::new(Stats::default()),
        );
        let (sh, mut rx, _) = member(&s, 1, 1, 8);
        for _ in 0..2 {
            let round = lock(&sh.state).open_round;
            assert_eq!(sh.submit(1, round, vec![7; cell]), Submit::Accepted);
            s.close_round(Instant::now(), 1);
        }
        let mut files = Vec::new();
        while let Ok(item) = rx.try_recv() {
            if let Outgoing::Batch(b) = item {
                files.push(b.file.expect("a body this large has a file"));
            }
        }
        assert_eq!(files.len(), 2, "both batches wait in the queue");
        assert!(files[0].source().is_none(), "the first round's is let go");
        assert!(files[1].source().is_some());
        assert_eq!(s.files.sources(), 1);
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
        s.join(1, 2, ip(2), tx, CancellationToken::new(), Some(first + 1))
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
        assert_eq!(
            s.join(2, 2, ip(2), tx, CancellationToken::new(), None)
                .err(),
            Some(JoinRefused::Full)
        );
        s.leave(&sh, 1, ip(1));
        s.close_round(Instant::now(), 1);
        s.close_round(Instant::now() + Duration::from_secs(1), 1);
        assert_eq!(s.counts().0, 0);
    }

    /// Issue 14: late cells count against the violation budget, but only
    /// the ones beyond the member's one cell per batch. A client that
    /// answers every batch, however late (across a round close, after a
    /// skipped round number, catching up after falling behind), commits no
    /// violation; a cell more is `Unearned`, a violation, whatever its
    /// round, until the next batch earns one again.
    ///
    /// Checked against two mutations of `submit`: "the allowance check
    /// (`member.cells > member.batches`) removed" (the extra late cells are
    /// then `Late`, free, and this test fails), and "every late cell is a
    /// violation" (`Unearned` for `round < open_round`: the honest late
    /// answers then fail it).
    #[test]
    fn late_cells_are_free_up_to_one_per_batch_and_a_violation_beyond() {
        const MS: u64 = 500;
        let s = shards(RelayConfig {
            round: Duration::from_millis(MS),
            ..RelayConfig::default()
        });
        let (sh, mut rx, _) = member(&s, 1, 1, 64);
        let r0 = s.open_round();
        let end_us = |r: u64| (r + 1) * MS * 1000;
        // The first cell crosses the close of round r0: late, free.
        s.close_round(Instant::now(), end_us(r0));
        assert_eq!(sh.submit(1, r0, vec![1; C]), Submit::Late);
        // The answer to batch r0 comes in time.
        assert_eq!(sh.submit(1, r0 + 1, vec![1; C]), Submit::Accepted);
        // A late tick: round r0 + 1 closes two and a half rounds late and
        // the relay skips to r0 + 4. The answer to batch r0 + 1 is for the
        // skipped r0 + 2: late, free.
        let late_tick = end_us(r0 + 1) + 5 * MS * 1000 / 2;
        assert_eq!(s.close_round(Instant::now(), late_tick), r0 + 4);
        assert_eq!(sh.submit(1, r0 + 2, vec![2; C]), Submit::Late);
        // The client falls behind: three rounds close before it answers;
        // then it answers the three batches, two late and one in time.
        for r in r0 + 4..r0 + 7 {
            s.close_round(Instant::now(), end_us(r));
        }
        assert_eq!(sh.open_round(), r0 + 7);
        assert_eq!(sh.submit(1, r0 + 5, vec![5; C]), Submit::Late);
        assert_eq!(sh.submit(1, r0 + 6, vec![6; C]), Submit::Late);
        assert_eq!(sh.submit(1, r0 + 7, vec![7; C]), Submit::Accepted);
        // Every batch is answered: one late cell more is a violation, and
        // so is each further one (a flood), for a closed round or the open
        // one.
        for _ in 0..10 {
            assert_eq!(sh.submit(1, r0 + 3, vec![3; C]), Submit::Unearned);
        }
        assert_eq!(sh.submit(1, r0 + 7, vec![7; C]), Submit::Unearned);
        // The next batch earns one cell again.
        s.close_round(Instant::now(), end_us(r0 + 7));
        assert_eq!(sh.submit(1, r0 + 8, vec![8; C]), Submit::Accepted);
        drain(&mut rx);
    }

    #[test]
    fn a_second_cell_in_a_round_is_a_duplicate_even_with_cells_to_spare() {
        let s = shards(RelayConfig::default());
        let (sh, mut rx, _) = member(&s, 1, 1, 64);
        // Two batches unanswered: three cells to spare.
        s.close_round(Instant::now(), 1);
        s.close_round(Instant::now(), 1);
        let open = sh.open_round();
        assert_eq!(sh.submit(1, open, vec![1; C]), Submit::Accepted);
        assert_eq!(sh.submit(1, open, vec![2; C]), Submit::Duplicate);
        assert_eq!(sh.submit(1, open + 1, vec![3; C]), Submit::Future);
        s.close_round(Instant::now(), 1);
        drain(&mut rx);
    }

    #[test]
    fn the_fair_level_keeps_small_backlogs_whole() {
        assert_eq!(fair_level(&[], 10), usize::MAX);
        assert_eq!(fair_level(&[5, 5], 10), usize::MAX);
        assert_eq!(fair_level(&[0], 0), usize::MAX);
        assert_eq!(fair_level(&[100, 10], 50), 40);
        assert_eq!(fair_level(&[10, 100], 50), 40);
        assert_eq!(fair_level(&[100, 100], 50), 25);
        assert_eq!(fair_level(&[1, 2, 100], 10), 7);
        assert_eq!(fair_level(&[30, 30, 30], 60), 20);
        // Whatever the input, cutting to the level fits.
        for held in [vec![7, 300, 12, 45], vec![1000; 9], vec![0, 0, 999]] {
            for cap in [0, 1, 50, 400, 5000] {
                let level = fair_level(&held, cap);
                let kept: usize = held.iter().map(|&h| h.min(level)).sum();
                assert!(kept <= cap, "{held:?} {cap} -> {level}");
            }
        }
    }

    /// Issue 14: filling the backlog cap from one shard leaves a second
    /// shard's resume working. Shard 1 (eight members, a cell each every
    /// round) fills the cap alone; then shard 2 (one member) starts. Shard
    /// 2 keeps all its rounds and a client resuming in it gets them; shard
    /// 1 loses its oldest batches instead.
    ///
    /// Checked against the mutation "the old eviction": `store` evicting
    /// only the shard being stored to (and not keeping the batch when that
    /// shard has nothing to evict), `trim_backlogs` not called. Shard 2
    /// then keeps nothing, its resume gets no batch, and this test fails.
    #[test]
    fn filling_the_backlog_cap_from_one_shard_leaves_another_shards_resume_working() {
        const BIG: usize = 8 * C + 16;
        let cap = 10 * BIG;
        let s = shards(RelayConfig {
            max_backlog_bytes: cap,
            ..RelayConfig::default()
        });
        let big: Vec<_> = (1..=8).map(|conn| member(&s, 1, conn, 1024)).collect();
        let round = |s: &Shards, members: &[(u64, &Arc<Shard>)]| {
            for &(conn, sh) in members {
                assert_eq!(
                    sh.submit(conn, sh.open_round(), vec![0; C]),
                    Submit::Accepted
                );
            }
            s.close_round(Instant::now(), 1);
        };
        let big_members: Vec<(u64, &Arc<Shard>)> = big
            .iter()
            .enumerate()
            .map(|(i, m)| (i as u64 + 1, &m.0))
            .collect();
        for _ in 0..20 {
            round(&s, &big_members);
        }
        assert_eq!(s.counts().2, cap, "shard 1 alone fills the cap");

        let (small, _rx, _) = member(&s, 2, 100, 1024);
        let first = small.open_round();
        let mut all = big_members.clone();
        all.push((100, &small));
        for _ in 0..20 {
            round(&s, &all);
        }
        assert!(s.counts().2 <= cap);
        assert!(Stats::get(&s.stats.backlog_evictions) > 0);

        // A client of shard 2 that saw round first + 9 resumes: it gets
        // every round since.
        let (tx, mut rx) = mpsc::channel(8);
        s.join(
            2,
            101,
            ip(101),
            tx,
            CancellationToken::new(),
            Some(first + 9),
        )
        .unwrap();
        assert!(matches!(rx.try_recv(), Ok(Outgoing::Welcome(_))));
        let Ok(Outgoing::Backlog(held)) = rx.try_recv() else {
            panic!("shard 2's recent rounds are gone: its resume gets no backlog")
        };
        let rounds: Vec<u64> = held.iter().map(|b| b.round).collect();
        assert_eq!(rounds, (first + 10..first + 20).collect::<Vec<_>>());
        // Shard 1 still holds its newest rounds, fewer of them.
        let st = lock(&big[0].0.state);
        assert!((1..10).contains(&st.backlog.len()), "{}", st.backlog.len());
        assert_eq!(st.backlog.back().unwrap().round, first + 19);
        drop(st);
        for (_, rx, _) in big {
            drop(rx);
        }
    }

    /// Issue 14: one address (an IPv4 address, or an IPv6 /64) is held to
    /// `--max-shards-per-ip` shards at once; more connections to a shard it
    /// is in cost nothing, other addresses are not affected, and leaving a
    /// shard frees its place.
    ///
    /// Checked against the mutations "the `max_shards_per_ip` check removed
    /// from `join`" (the address gets a third shard and this test fails)
    /// and "`leave` does not forget the address's shard" (the address
    /// cannot join another shard after leaving one).
    #[test]
    fn one_address_is_held_to_its_share_of_the_shards() {
        let s = shards(RelayConfig {
            max_shards: 8,
            max_shards_per_ip: 2,
            ..RelayConfig::default()
        });
        let a = ip(7);
        let (s1, _r1) = join_from(&s, 1, 1, a).unwrap();
        let (_s2, _r2) = join_from(&s, 2, 2, a).unwrap();
        assert_eq!(
            join_from(&s, 3, 3, a).err(),
            Some(JoinRefused::AddressShards)
        );
        // Another connection from the same address to a shard it is in.
        let (_, _r4) = join_from(&s, 1, 4, a).unwrap();
        // Another address.
        let (_, _r5) = join_from(&s, 3, 5, ip(8)).unwrap();
        // Addresses in one IPv6 /64 are one address.
        let v6 = |a: &str| IpKey::of(a.parse().unwrap());
        let (_, _r6) = join_from(&s, 4, 6, v6("2001:db8:5:5::1")).unwrap();
        let (_, _r7) = join_from(&s, 5, 7, v6("2001:db8:5:5::2")).unwrap();
        assert_eq!(
            join_from(&s, 6, 8, v6("2001:db8:5:5:ffff::3")).err(),
            Some(JoinRefused::AddressShards)
        );
        let (_, _r9) = join_from(&s, 6, 9, v6("2001:db8:5:6::3")).unwrap();
        // Leaving: the address is in shard 1 until both its connections
        // there have left.
        s.leave(&s1, 1, a);
        assert_eq!(
            join_from(&s, 7, 10, a).err(),
            Some(JoinRefused::AddressShards)
        );
        s.leave(&s1, 4, a);
        let (_, _r11) = join_from(&s, 7, 11, a).unwrap();
        assert_eq!(Stats::get(&s.stats.joins_refused), 3);
    }

    /// Issue 14: with `--max-shards` shards, one without members (kept
    /// only for its backlog) is dropped to make room for a new one, the
    /// one empty longest first; so an address that joins and leaves shard
    /// after shard cannot fill the registry. Shards with members are never
    /// dropped: then the newcomer is refused.
    ///
    /// Checked against the mutation "`drop_a_memberless_shard` returns
    /// false": the newcomer is refused and this test fails.
    #[test]
    fn a_full_relay_drops_a_shard_without_members_to_make_room() {
        let s = shards(RelayConfig {
            max_shards: 3,
            ..RelayConfig::default()
        });
        let has = |id: u32| lock(&s.registry).shards.contains_key(&id);
        let (s1, mut r1, _) = member(&s, 1, 1, 64);
        let (s2, mut r2, _) = member(&s, 2, 2, 64);
        let (_s3, mut r3, _) = member(&s, 3, 3, 64);
        s.close_round(Instant::now(), 1);
        s.leave(&s1, 1, ip(1));
        s.close_round(Instant::now(), 1);
        s.leave(&s2, 2, ip(2));
        // Both kept for their backlogs.
        assert_eq!(s.counts().0, 3);
        let (_s4, mut r4, _) = member(&s, 4, 4, 64);
        assert!(
            !has(1) && has(2) && has(3) && has(4),
            "shard 1 was empty longest"
        );
        // Shard 2's backlog is intact: a resume there still works.
        let (tx, mut rx) = mpsc::channel(8);
        s.join(2, 5, ip(5), tx, CancellationToken::new(), Some(0))
            .unwrap();
        assert!(matches!(rx.try_recv(), Ok(Outgoing::Welcome(_))));
        assert!(matches!(rx.try_recv(), Ok(Outgoing::Backlog(held)) if held.len() == 2));
        // Every shard has members now: a new one is refused.
        let (tx, _rx) = mpsc::channel(8);
        assert_eq!(
            s.join(9, 9, ip(9), tx, CancellationToken::new(), None)
                .err(),
            Some(JoinRefused::Full)
        );
        assert_eq!(Stats::get(&s.stats.shards_dropped), 1);
        // The dropped shard's backlog no longer counts.
        let held: usize = lock(&s.registry)
            .shards
            .values()
            .map(|sh| lock(&sh.state).backlog_bytes)
            .sum();
        assert_eq!(s.counts().2, held);
        for rx in [&mut r1, &mut r2, &mut r3, &mut r4] {
            drain(rx);
        }
    }
}
