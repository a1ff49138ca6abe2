//! A deterministic fault simulator (in the manner of `FoundationDB`'s
//! simulation testing and `TigerBeetle`'s VOPR) over in-process daemon cores.
//!
//! One seed draws a schedule: message sends both ways, dropped, duplicated,
//! delayed and reordered cells, withheld batches, relay restarts that lose
//! the backlog, daemon crashes that restart from the last saved state (also
//! between preparing a cell and sending it), and lock/unlock. The schedule
//! runs against real [`Core`]s with a simulated clock and a seeded RNG: no
//! sockets, no sleeps. Checked at every step and at the end: every message
//! is delivered at most once and in order per sender; after the faults stop,
//! everything the daemons accepted drains within a bounded number of rounds.
//!
//! A failure prints its seed and a shrunk schedule. `cargo test` runs a few
//! hundred seeds; for more, as long as one likes:
//!
//! ```sh
//! SIM_SEEDS=1000000 SIM_FIRST=300 cargo test --release -p anonchatd --test sim every -- --nocapture
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, VecDeque};
use std::fmt::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anonchat_ipc::{Event, SequencedEvent};
use anonchatd::core::{Clock, Core, Settings};
use anonchatd::keystore::KdfCost;
use anonchatd::paths::Paths;
use rand::rngs::StdRng;
use rand::{RngExt as _, SeedableRng as _};
use tokio::sync::broadcast;

const NAMES: [&str; 2] = ["alice", "bob"];
const ROUND_MS: u64 = 500;
/// Rounds the simulated relay keeps for a client that reconnects.
const BACKLOG_ROUNDS: u64 = 20;
/// Rounds with faults, then a quiet tail in which everything must drain.
const FAULT_ROUNDS: usize = 160;
/// The drain bound: after the last fault, every accepted message arrives
/// within this many rounds (60 s at 500 ms rounds), with the daemon's
/// default retransmit timer, plus [`ROUNDS_PER_WAITING`] per message still
/// waiting then (one cell per round is the daemon's whole throughput).
const DRAIN_ROUNDS: usize = 120;
/// Drain allowance per message waiting when the faults stop.
const ROUNDS_PER_WAITING: usize = 2;
const RETRANSMIT: Duration = anonchatd::core::DEFAULT_RETRANSMIT_AFTER;
const RELAY: &str = "anonchat://127.0.0.1:7766/#AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

/// One thing that happens. A schedule is a list of these; `Round` ends a
/// round. Node indexes are into [`NAMES`].
#[derive(Clone, Copy, PartialEq, Eq)]
enum Action {
    /// The node queues a message to the other.
    Send(usize),
    /// The node queues this many messages at once (a script, a paste):
    /// fills the outbox and the receiver's hold.
    Burst(usize, u8),
    /// The relay does not deliver this round's batch to the node.
    Withhold(usize),
    /// The relay puts a second copy of one cell into the batch.
    Duplicate,
    /// The relay holds one cell back and puts it into the next round's batch.
    Delay,
    /// The node's connection drops for this many rounds; it resumes from the
    /// backlog.
    Disconnect(usize, u8),
    /// The relay restarts: everyone is cut for this many rounds and the
    /// backlog is lost.
    RelayRestart(u8),
    /// The daemon is killed (no save beyond what it already saved) and
    /// restarted from its home; `true`: between preparing a cell and
    /// sending it.
    Crash(usize, bool),
    /// The user locks and unlocks again after this many rounds.
    Lock(usize, u8),
    /// The round closes.
    Round,
}

impl fmt::Debug for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Send(n) => write!(f, "Send({})", NAMES[n]),
            Self::Burst(n, k) => write!(f, "Burst({}, {k})", NAMES[n]),
            Self::Withhold(n) => write!(f, "Withhold({})", NAMES[n]),
            Self::Duplicate => write!(f, "Duplicate"),
            Self::Delay => write!(f, "Delay"),
            Self::Disconnect(n, r) => write!(f, "Disconnect({}, {r})", NAMES[n]),
            Self::RelayRestart(r) => write!(f, "RelayRestart({r})"),
            Self::Crash(n, mid) => write!(f, "Crash({}, mid_send: {mid})", NAMES[n]),
            Self::Lock(n, r) => write!(f, "Lock({}, {r})", NAMES[n]),
            Self::Round => write!(f, "Round"),
        }
    }
}

/// How often each fault is drawn, per round.
#[derive(Clone, Copy)]
struct Rates {
    send: f64,
    burst: f64,
    withhold: f64,
    duplicate: f64,
    delay: f64,
    disconnect: f64,
    relay_restart: f64,
    crash: f64,
    lock: f64,
}

const RATES: Rates = Rates {
    send: 0.3,
    burst: 0.01,
    withhold: 0.03,
    duplicate: 0.03,
    delay: 0.02,
    disconnect: 0.01,
    relay_restart: 0.008,
    crash: 0.006,
    lock: 0.004,
};

fn generate(seed: u64, rates: Rates) -> Vec<Action> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut s = Vec::new();
    for _ in 0..FAULT_ROUNDS {
        for n in 0..NAMES.len() {
            if rng.random_bool(rates.send) {
                s.push(Action::Send(n));
            }
            if rng.random_bool(rates.burst) {
                s.push(Action::Burst(n, rng.random_range(10..=80)));
            }
            if rng.random_bool(rates.withhold) {
                s.push(Action::Withhold(n));
            }
            if rng.random_bool(rates.disconnect) {
                s.push(Action::Disconnect(n, rng.random_range(1..=6)));
            }
            if rng.random_bool(rates.crash) {
                s.push(Action::Crash(n, rng.random_bool(0.5)));
            }
            if rng.random_bool(rates.lock) {
                s.push(Action::Lock(n, rng.random_range(1..=8)));
            }
        }
        if rng.random_bool(rates.duplicate) {
            s.push(Action::Duplicate);
        }
        if rng.random_bool(rates.delay) {
            s.push(Action::Delay);
        }
        if rng.random_bool(rates.relay_restart) {
            s.push(Action::RelayRestart(rng.random_range(1..=4)));
        }
        s.push(Action::Round);
    }
    s
}

/// Homes with an identity each, made once per test process (RSA-3072 key
/// generation is slow) and copied for every run; each knows the other.
fn templates() -> &'static Vec<PathBuf> {
    static T: OnceLock<Vec<PathBuf>> = OnceLock::new();
    T.get_or_init(|| {
        let root = scratch().join(format!("templates-{}", std::process::id()));
        let cores: Vec<(PathBuf, Arc<Core>)> = NAMES
            .iter()
            .map(|name| {
                let home = root.join(name);
                std::fs::create_dir_all(&home).unwrap();
                let core = Core::open(settings(&home, &Arc::new(AtomicU64::new(0)))).unwrap();
                core.identity_create(name, RELAY, Some(""), Some(1))
                    .unwrap();
                (home, core)
            })
            .collect();
        for (i, (_, a)) in cores.iter().enumerate() {
            for (j, (_, b)) in cores.iter().enumerate() {
                if i != j {
                    a.contacts_add(&b.identity_export().unwrap(), NAMES[j])
                        .unwrap();
                }
            }
        }
        cores
            .into_iter()
            .map(|(home, core)| {
                core.close();
                home
            })
            .collect()
    })
}

/// RAM-backed scratch space where the OS has it: saves are cheap there.
fn scratch() -> PathBuf {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        shm.join("anonchat-sim")
    } else {
        std::env::temp_dir().join("anonchat-sim")
    }
}

fn settings(home: &Path, clock: &Arc<AtomicU64>) -> Settings {
    let mut s = Settings::new(Paths {
        home: home.to_path_buf(),
        socket: home.join("unused.sock"),
    });
    s.retransmit_after = RETRANSMIT;
    s.clock = Clock::Manual(Arc::clone(clock));
    s.kdf_cost = KdfCost::INSECURE_FOR_TESTS;
    s
}

struct Node {
    home: PathBuf,
    core: Arc<Core>,
    events: broadcast::Receiver<SequencedEvent>,
    /// Connected from this round on (`None`: connected).
    down_until: Option<u64>,
    /// Unlocks again in this round.
    locked_until: Option<u64>,
    /// The last round whose batch this node processed (the resume point).
    last_seen: Option<u64>,
    /// The round this node's next cell is for, once connected.
    next_send: Option<u64>,
}

/// What went wrong, at which step.
#[derive(Debug)]
struct Failure {
    step: usize,
    what: String,
}

struct Sim {
    seed: u64,
    clock: Arc<AtomicU64>,
    nodes: Vec<Node>,
    round: u64,
    /// Cells the relay holds for a round: (from, cell).
    pending: BTreeMap<u64, Vec<Vec<u8>>>,
    /// Closed batches, for resume.
    backlog: VecDeque<(u64, Vec<Vec<u8>>)>,
    /// Per sender: texts the daemon accepted, in order of acceptance.
    accepted: [Vec<u64>; 2],
    /// Per sender: the highest sequence number received by the other.
    received: [Option<u64>; 2],
    /// Per sender: how many of its messages were received, duplicates and
    /// all.
    received_count: [u64; 2],
    /// Per sender: the next sequence number to send.
    next_seq: [u64; 2],
    /// Per sender: messages the test wants sent but the outbox refused.
    backlog_sends: [u64; 2],
    delayed: Option<Vec<u8>>,
    /// Nodes that miss this round's batch.
    withheld: Vec<usize>,
    step: usize,
    dirs: Vec<PathBuf>,
}

impl Drop for Sim {
    fn drop(&mut self) {
        for d in &self.dirs {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

fn text(sender: usize, seq: u64) -> String {
    format!("{} #{seq}", NAMES[sender])
}

fn parse(t: &str) -> Option<(usize, u64)> {
    let (name, seq) = t.split_once(" #")?;
    Some((NAMES.iter().position(|n| *n == name)?, seq.parse().ok()?))
}

impl Sim {
    fn new(seed: u64) -> Self {
        let clock = Arc::new(AtomicU64::new(1_700_000_000_000));
        let dir = scratch().join(format!("run-{}-{seed}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut nodes = Vec::new();
        for (i, t) in templates().iter().enumerate() {
            let home = dir.join(NAMES[i]);
            std::fs::create_dir_all(&home).unwrap();
            for f in std::fs::read_dir(t).unwrap() {
                let f = f.unwrap();
                std::fs::copy(f.path(), home.join(f.file_name())).unwrap();
            }
            let core = Self::boot(&home, &clock, seed, i, 0);
            let events = core.subscribe();
            nodes.push(Node {
                home,
                core,
                events,
                down_until: None,
                locked_until: None,
                last_seen: None,
                next_send: None,
            });
        }
        let round = clock.load(Ordering::Relaxed) / ROUND_MS;
        Self {
            seed,
            clock,
            nodes,
            round,
            pending: BTreeMap::new(),
            backlog: VecDeque::new(),
            accepted: [Vec::new(), Vec::new()],
            received: [None, None],
            received_count: [0, 0],
            next_seq: [1, 1],
            backlog_sends: [0, 0],
            delayed: None,
            withheld: Vec::new(),
            step: 0,
            dirs: vec![dir],
        }
    }

    fn boot(
        home: &Path,
        clock: &Arc<AtomicU64>,
        seed: u64,
        node: usize,
        generation: u64,
    ) -> Arc<Core> {
        let rng = StdRng::seed_from_u64(seed ^ ((node as u64 + 1) << 56) ^ (generation << 40));
        let core = Core::open_with_rng(settings(home, clock), Box::new(rng)).unwrap();
        core.identity_unlock("").unwrap();
        core.set_round_ms(ROUND_MS as u32).unwrap();
        core
    }

    fn fail(&self, what: impl Into<String>) -> Failure {
        Failure {
            step: self.step,
            what: what.into(),
        }
    }

    fn connected(&self, n: usize) -> bool {
        self.nodes[n].down_until.is_none() && self.nodes[n].locked_until.is_none()
    }

    /// Drains a node's events and checks at-most-once, in-order delivery.
    fn collect(&mut self, n: usize) -> Result<(), Failure> {
        loop {
            match self.nodes[n].events.try_recv() {
                Ok(SequencedEvent {
                    event: Event::MessageReceived { text: t, .. },
                    ..
                }) => {
                    let Some((sender, seq)) = parse(&t) else {
                        return Err(self.fail(format!("garbled message {t:?}")));
                    };
                    if sender == n {
                        return Err(self.fail(format!("{} received its own {t:?}", NAMES[n])));
                    }
                    if self.received[sender].is_some_and(|last| seq <= last) {
                        return Err(self.fail(format!(
                            "{} received {t:?} after #{} (duplicate or out of order)",
                            NAMES[n],
                            self.received[sender].unwrap_or(0)
                        )));
                    }
                    if !self.accepted[sender].contains(&seq) {
                        return Err(self.fail(format!("{t:?} was never sent")));
                    }
                    self.received[sender] = Some(seq);
                    self.received_count[sender] += 1;
                }
                Ok(_) => {}
                Err(
                    broadcast::error::TryRecvError::Empty | broadcast::error::TryRecvError::Closed,
                ) => return Ok(()),
                Err(broadcast::error::TryRecvError::Lagged(k)) => {
                    return Err(self.fail(format!("lagged by {k} events")));
                }
            }
        }
    }

    fn send(&mut self, from: usize) -> Result<(), Failure> {
        self.backlog_sends[from] += 1;
        self.flush_sends(from)
    }

    /// Queues what the test wants sent, as far as the outbox takes it.
    fn flush_sends(&mut self, from: usize) -> Result<(), Failure> {
        if self.nodes[from].locked_until.is_some() {
            return Ok(());
        }
        while self.backlog_sends[from] > 0 {
            let seq = self.next_seq[from];
            match self.nodes[from]
                .core
                .messages_send(NAMES[1 - from], &text(from, seq))
            {
                Ok(_) => {
                    self.accepted[from].push(seq);
                    self.next_seq[from] += 1;
                    self.backlog_sends[from] -= 1;
                }
                Err(anonchatd::error::Error::OutboxFull { .. }) => return Ok(()),
                Err(e) => return Err(self.fail(format!("send refused: {e:?}"))),
            }
        }
        Ok(())
    }

    /// A node (re)joins: as the real link does, it sends its first cell for
    /// the open round, after reading the backlog it missed.
    fn join(&mut self, n: usize) -> Result<(), Failure> {
        let resume = self.nodes[n].last_seen;
        let held: Vec<(u64, Vec<Vec<u8>>)> = self
            .backlog
            .iter()
            .filter(|(r, _)| resume.is_some_and(|s| *r > s))
            .cloned()
            .collect();
        for (r, cells) in held {
            let refs: Vec<&[u8]> = cells.iter().map(Vec::as_slice).collect();
            self.nodes[n].core.receive_batch(r, &refs).unwrap();
            self.nodes[n].last_seen = Some(r);
        }
        self.collect(n)?;
        self.nodes[n].next_send = Some(self.round);
        self.prepare_and_send(n, false)
    }

    fn prepare_and_send(&mut self, n: usize, crash_mid: bool) -> Result<(), Failure> {
        let Some(r) = self.nodes[n].next_send else {
            return Ok(());
        };
        let cell = match self.nodes[n].core.prepare_cell(r) {
            Ok(c) => c,
            Err(e) => return Err(self.fail(format!("prepare_cell: {e:?}"))),
        };
        self.collect(n)?;
        if crash_mid {
            return Ok(());
        }
        self.pending.entry(r).or_default().push(cell);
        Ok(())
    }

    fn crash(&mut self, n: usize, mid_send: bool) -> Result<(), Failure> {
        if mid_send && self.connected(n) {
            // The next cell is prepared (state saved), then the process dies
            // before it leaves.
            self.nodes[n].next_send = Some(self.round + 1);
            self.prepare_and_send(n, true)?;
        }
        self.collect(n)?;
        let generation = self.step as u64;
        let home = self.nodes[n].home.clone();
        // Killed: no close(), nothing saved beyond what was saved.
        let core = Self::boot(&home, &self.clock, self.seed, n, generation);
        let node = &mut self.nodes[n];
        node.events = core.subscribe();
        node.core = core;
        node.locked_until = None;
        node.last_seen = None;
        node.next_send = None;
        node.down_until = Some(self.round + 1);
        Ok(())
    }

    fn apply(&mut self, a: Action) -> Result<(), Failure> {
        match a {
            Action::Send(n) => self.send(n)?,
            Action::Burst(n, k) => {
                self.backlog_sends[n] += u64::from(k);
                self.flush_sends(n)?;
            }
            // The node stays connected but misses this round's batch.
            Action::Withhold(n) => self.withheld.push(n),
            Action::Duplicate => {
                if let Some(cells) = self.pending.get_mut(&(self.round))
                    && let Some(c) = cells.first().cloned()
                {
                    cells.push(c);
                }
            }
            Action::Delay => {
                if let Some(cells) = self.pending.get_mut(&(self.round))
                    && !cells.is_empty()
                {
                    self.delayed = Some(cells.remove(0));
                }
            }
            Action::Disconnect(n, k) => {
                if self.nodes[n].down_until.is_none() {
                    self.nodes[n].down_until = Some(self.round + u64::from(k));
                    self.nodes[n].next_send = None;
                }
            }
            Action::RelayRestart(k) => {
                self.backlog.clear();
                self.pending.clear();
                for n in 0..self.nodes.len() {
                    let until = self.round + u64::from(k);
                    let node = &mut self.nodes[n];
                    node.down_until = Some(node.down_until.map_or(until, |d| d.max(until)));
                    node.next_send = None;
                }
            }
            Action::Crash(n, mid) => self.crash(n, mid)?,
            Action::Lock(n, k) => {
                if self.nodes[n].locked_until.is_none() {
                    self.collect(n)?;
                    self.nodes[n].core.identity_lock().unwrap();
                    self.nodes[n].locked_until = Some(self.round + u64::from(k));
                    self.nodes[n].next_send = None;
                    self.nodes[n].last_seen = None;
                }
            }
            Action::Round => self.close_round()?,
        }
        Ok(())
    }

    /// The relay closes the round: every connected node gets the batch, then
    /// answers with its cell for the next round.
    fn close_round(&mut self) -> Result<(), Failure> {
        let r = self.round;
        let mut cells = self.pending.remove(&r).unwrap_or_default();
        if let Some(late) = self.delayed.take() {
            cells.push(late);
        }
        // Reorder: the relay shuffles every batch.
        let mut shuffle = StdRng::seed_from_u64(self.seed ^ r);
        for i in (1..cells.len()).rev() {
            let j = shuffle.random_range(0..=i);
            cells.swap(i, j);
        }
        let withheld = std::mem::take(&mut self.withheld);
        let refs: Vec<&[u8]> = cells.iter().map(Vec::as_slice).collect();
        for n in 0..self.nodes.len() {
            if !self.connected(n) || self.nodes[n].next_send.is_none() {
                continue;
            }
            if !withheld.contains(&n) {
                self.nodes[n].core.receive_batch(r, &refs).unwrap();
                self.nodes[n].last_seen = Some(r);
                self.collect(n)?;
            }
            self.nodes[n].next_send = Some(r + 1);
        }
        self.backlog.push_back((r, cells.clone()));
        while self.backlog.len() as u64 > BACKLOG_ROUNDS {
            self.backlog.pop_front();
        }
        self.round += 1;
        self.clock.fetch_add(ROUND_MS, Ordering::Relaxed);
        for n in 0..self.nodes.len() {
            if self.nodes[n].down_until.is_some_and(|d| d <= self.round) {
                self.nodes[n].down_until = None;
            }
            if self.nodes[n].locked_until.is_some_and(|d| d <= self.round) {
                self.nodes[n].locked_until = None;
                self.nodes[n].core.identity_unlock("").unwrap();
                self.collect(n)?;
            }
            self.flush_sends(n)?;
            if self.connected(n) {
                if self.nodes[n].next_send.is_none() {
                    self.join(n)?;
                } else {
                    self.prepare_and_send(n, false)?;
                }
            }
        }
        Ok(())
    }

    fn all_delivered(&self) -> bool {
        (0..2).all(|s| {
            self.backlog_sends[s] == 0 && self.received_count[s] == self.accepted[s].len() as u64
        })
    }

    /// Runs the schedule, then the quiet tail; returns the rounds it took
    /// to drain after the last fault.
    fn run(&mut self, schedule: &[Action]) -> Result<usize, Failure> {
        for (i, &a) in schedule.iter().enumerate() {
            self.step = i;
            self.apply(a)?;
        }
        // The faults are over: everything must drain within the bound.
        self.step = schedule.len();
        let waiting: u64 = (0..2)
            .map(|s| self.accepted[s].len() as u64 - self.received_count[s] + self.backlog_sends[s])
            .sum();
        let bound = DRAIN_ROUNDS + ROUNDS_PER_WAITING * waiting as usize;
        let mut drained = 0;
        while drained < bound && !self.all_delivered() {
            self.close_round()?;
            drained += 1;
        }
        for (s, name) in NAMES.iter().enumerate() {
            let want = self.accepted[s].len() as u64;
            if self.received_count[s] != want || self.backlog_sends[s] != 0 {
                return Err(self.fail(format!(
                    "{}: {} of {} accepted messages arrived within {bound} rounds of the last fault ({} not yet accepted by the outbox); last received #{:?}",
                    name,
                    self.received_count[s],
                    want,
                    self.backlog_sends[s],
                    self.received[s]
                )));
            }
        }
        Ok(drained)
    }
}

fn run_seed(seed: u64, schedule: &[Action]) -> Result<usize, Failure> {
    let mut sim = Sim::new(seed);
    sim.run(schedule)
}

/// Removes actions (never `Round`s, so the timing stays) while the run
/// still fails: chunks first, halving their size down to single actions.
fn shrink(seed: u64, mut schedule: Vec<Action>) -> Vec<Action> {
    let mut chunk = schedule.len() / 2;
    while chunk >= 1 {
        let mut start = 0;
        while start < schedule.len() {
            let end = (start + chunk).min(schedule.len());
            let candidate: Vec<Action> = schedule[..start]
                .iter()
                .chain(schedule[start..end].iter().filter(|a| **a == Action::Round))
                .chain(&schedule[end..])
                .copied()
                .collect();
            if candidate.len() < schedule.len() && run_seed(seed, &candidate).is_err() {
                schedule = candidate;
            } else {
                start = end;
            }
        }
        chunk /= 2;
    }
    schedule
}

fn compact(schedule: &[Action]) -> String {
    let mut out = String::new();
    let mut round = 0;
    for a in schedule {
        if *a == Action::Round {
            round += 1;
        } else {
            let _ = writeln!(out, "  round {round}: {a:?}");
        }
    }
    out
}

fn check_seeds(first: u64, count: u64, rates: Rates) {
    let mut slowest = (0, first);
    for seed in first..first + count {
        let schedule = generate(seed, rates);
        let result = run_seed(seed, &schedule);
        if let Ok(rounds) = result {
            slowest = slowest.max((rounds, seed));
        }
        if let Err(f) = result {
            let shrunk = shrink(seed, schedule);
            let again = run_seed(seed, &shrunk).err();
            panic!(
                "seed {seed} failed at step {}: {}\nshrunk schedule ({} actions besides rounds):\n{}after shrinking: {:?}",
                f.step,
                f.what,
                shrunk.iter().filter(|a| **a != Action::Round).count(),
                compact(&shrunk),
                again
            );
        }
    }
    println!(
        "{count} seeds from {first}: the slowest drained in {} rounds after the last fault (seed {})",
        slowest.0, slowest.1
    );
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The simulator's main run: `SIM_SEEDS` seeds from `SIM_FIRST`.
#[test]
fn every_message_arrives_once_in_order_under_random_faults() {
    check_seeds(env_u64("SIM_FIRST", 0), env_u64("SIM_SEEDS", 300), RATES);
}

/// The simulator must be able to fail: with a relay that withholds every
/// batch from bob after the faults, nothing drains, and the check says so.
#[test]
fn the_simulator_notices_a_conversation_that_stops() {
    let mut schedule = generate(7, RATES);
    schedule.retain(|a| matches!(a, Action::Send(_) | Action::Round));
    let mut sim = Sim::new(7);
    for &a in &schedule {
        sim.apply(a).unwrap();
    }
    // From now on bob hears nothing, and alice has something to say.
    sim.nodes[1].locked_until = Some(u64::MAX);
    sim.nodes[1].core.identity_lock().unwrap();
    sim.send(0).unwrap();
    for _ in 0..DRAIN_ROUNDS {
        sim.close_round().unwrap();
    }
    assert!(
        !sim.all_delivered(),
        "a stalled conversation must be detected"
    );
}
