//! The load generator behind `anonchat-loadgen`: N real clients (full Noise
//! handshake, one cell per round, in lockstep with the relay), and a report
//! of what was delivered, how fast, and what was lost.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use anonchat_protocol::wire::RelayAddress;
use rand::Rng as _;
use serde::Serialize;
use tokio::sync::Barrier;

use anonchat_protocol::wire::BODY_HASH_LEN;

use crate::client::{self, Announced, BatchHeader, ClientError};
use crate::procstat::{CpuMeter, CpuSpan, clock_ticks_per_s};

/// First shard number the generator uses (shards `BASE..BASE+K`).
const SHARD_BASE: u32 = 0x4c47_0000;

/// What to run: how many clients, against which relay, for how long.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// The relay to load.
    pub relay: RelayAddress,
    /// Clients to open, each with its own connection.
    pub clients: usize,
    /// Shards the clients are spread over (0 counts as 1).
    pub shards: u32,
    /// Measurement time, once every client has joined and
    /// [`WARMUP_ROUNDS`] have passed.
    pub duration: Duration,
    /// The relay's process id, to report its CPU use (same machine only).
    pub relay_pid: Option<u32>,
}

/// What one run measured. `lost_cells` counts, over every client and every
/// round it received, the cells sent for that round in its shard that were
/// not in its batch (late cells included): 0 under nominal load.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// What was measured: `anonchat-relay` or `redis-server`.
    pub server: String,
    /// Clients that took part.
    pub clients: usize,
    /// Shards they were spread over.
    pub shards: u32,
    /// Cell size in bytes.
    pub cell_size: usize,
    /// Round length in milliseconds.
    pub round_ms: u32,
    /// Measured time in seconds.
    pub duration_s: f64,
    /// Rounds within the measurement.
    pub rounds: u64,
    /// Cells the clients sent.
    pub cells_sent: u64,
    /// Cells received, counted once per receiving client (deliveries).
    pub cells_delivered: u64,
    /// `cells_delivered` per second.
    pub delivered_cells_per_s: f64,
    /// Bytes received on the wire per second, over all clients.
    pub delivered_bytes_per_s: f64,
    /// Bytes one client receives per second (the price of broadcast).
    pub download_bytes_per_client_s: f64,
    /// Median fan-out latency (round closed, or message published, to
    /// client has it), in milliseconds.
    pub fanout_latency_p50_ms: f64,
    /// 99th percentile of the fan-out latency, in milliseconds.
    pub fanout_latency_p99_ms: f64,
    /// Largest fan-out latency seen, in milliseconds.
    pub fanout_latency_max_ms: f64,
    /// Cells sent but not delivered (see above).
    pub lost_cells: u64,
    /// The server's CPU use in percent of one core, when its PID was given.
    pub server_cpu_percent: Option<f64>,
    /// The server's CPU time per delivery, in nanoseconds.
    pub server_cpu_ns_per_delivery: Option<f64>,
    /// The generator's own CPU: near 100% per core means the instrument,
    /// not the server, is the limit (late answers then count as lost).
    pub loadgen_cpu_percent: Option<f64>,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{}: {} clients in {} shard(s), {} B cells, {} ms rounds, {:.1} s, {} rounds",
            self.server,
            self.clients,
            self.shards,
            self.cell_size,
            self.round_ms,
            self.duration_s,
            self.rounds
        )?;
        writeln!(
            f,
            "delivered: {:.0} cells/s, {:.2} MiB/s on the wire, {:.0} KiB/s per client ({} cells sent, {} deliveries)",
            self.delivered_cells_per_s,
            self.delivered_bytes_per_s / f64::from(1 << 20),
            self.download_bytes_per_client_s / 1024.0,
            self.cells_sent,
            self.cells_delivered
        )?;
        writeln!(
            f,
            "fan-out latency (relay round close, or Redis publish, -> client has it): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            self.fanout_latency_p50_ms, self.fanout_latency_p99_ms, self.fanout_latency_max_ms
        )?;
        write!(f, "lost cells: {}", self.lost_cells)?;
        if let (Some(cpu), Some(ns)) = (self.server_cpu_percent, self.server_cpu_ns_per_delivery) {
            write!(
                f,
                "\n{} CPU: {cpu:.1}% of one core, {ns:.0} ns per delivery",
                self.server
            )?;
        }
        if let Some(cpu) = self.loadgen_cpu_percent {
            write!(f, "\nload generator CPU: {cpu:.1}% of one core")?;
        }
        Ok(())
    }
}

/// Fan-out latencies in a log-linear histogram (exact below 128 µs, then
/// 64 steps per power of two: within 1.6 %), so that a run of millions of
/// deliveries (Redis, 1,000 clients) keeps a few KiB per client.
#[derive(Debug, Clone, Default)]
pub struct Latencies {
    counts: Vec<u64>,
    n: u64,
    max_us: u64,
}

/// Latencies above this (about 16 s) count in the last bucket.
const LATENCY_CAP_US: u64 = (1 << 24) - 1;

impl Latencies {
    fn bucket(us: u64) -> usize {
        let v = us.min(LATENCY_CAP_US);
        if v < 128 {
            return v as usize;
        }
        let e = 63 - u64::from(v.leading_zeros());
        let m = (v >> (e - 6)) & 63;
        128 + (e as usize - 7) * 64 + m as usize
    }

    /// The middle of a bucket's range, in µs.
    fn value(b: usize) -> u64 {
        if b < 128 {
            return b as u64;
        }
        let e = (b - 128) / 64 + 7;
        let m = ((b - 128) % 64) as u64;
        let lo = (64 + m) << (e - 6);
        lo + (1 << (e - 6)) / 2
    }

    /// Adds one latency, in µs.
    pub fn push(&mut self, us: u64) {
        let b = Self::bucket(us);
        if self.counts.len() <= b {
            self.counts.resize(b + 1, 0);
        }
        self.counts[b] += 1;
        self.n += 1;
        self.max_us = self.max_us.max(us);
    }

    /// Adds another histogram's counts.
    pub fn merge(&mut self, other: Self) {
        if self.counts.len() < other.counts.len() {
            self.counts.resize(other.counts.len(), 0);
        }
        for (a, b) in self.counts.iter_mut().zip(other.counts) {
            *a += b;
        }
        self.n += other.n;
        self.max_us = self.max_us.max(other.max_us);
    }

    /// The nearest-rank percentile, `per_mille` in 0..=1000, in ms.
    pub fn percentile_ms(&self, per_mille: u64) -> f64 {
        if self.n == 0 {
            return 0.0;
        }
        if per_mille >= 1000 {
            return self.max_us as f64 / 1000.0;
        }
        let rank = (self.n - 1) * per_mille / 1000 + 1;
        let mut seen = 0;
        for (b, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Self::value(b).min(self.max_us) as f64 / 1000.0;
            }
        }
        self.max_us as f64 / 1000.0
    }
}

/// Rounds between every client being connected and the start of the
/// measurement, for the relay and for Redis alike. Connections start with
/// TCP receive windows far smaller than a large shard's batch (Linux
/// starts them near 64 KiB and grows them as the reader keeps up), so the
/// first full-size batches reach some of 1,000 clients of one machine
/// late, and the answers to them miss the next round. Counted per round
/// (2026-11-26, 1,000 clients, 500 ms rounds): with no warm-up every loss
/// was in the round after the first full batch; with 3 rounds some runs
/// still lost cells in the first round counted, never later; with 5, 0
/// lost in the 9 runs made that day. Counting them measured the connections' start, not
/// the server.
pub const WARMUP_ROUNDS: u32 = 5;

/// The measurement window, in µs since the epoch: a batch (closed at) or a
/// message (published at) inside it is counted, and the servers' CPU is
/// read over it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Window {
    pub(crate) from_us: u64,
    pub(crate) to_us: u64,
}

impl Window {
    /// The window for clients connected at `now_us`: it opens half a round
    /// before the [`WARMUP_ROUNDS`]th round after that, so that a client
    /// publishing on its own clock (Redis) has exactly `duration / round`
    /// publishes inside, and it lasts `duration`.
    pub(crate) fn after_warmup(now_us: u64, round: Duration, duration: Duration) -> Self {
        let round_us = u64::try_from(round.as_micros()).unwrap_or(u64::MAX);
        let from_us = now_us
            .saturating_add(round_us.saturating_mul(u64::from(WARMUP_ROUNDS)))
            .saturating_sub(round_us / 2);
        let to_us = from_us.saturating_add(u64::try_from(duration.as_micros()).unwrap_or(u64::MAX));
        Self { from_us, to_us }
    }

    /// Whether `t_us` is inside.
    pub(crate) fn contains(&self, t_us: u64) -> bool {
        (self.from_us..self.to_us).contains(&t_us)
    }

    /// Sleeps until the window opens.
    pub(crate) async fn opened(&self) {
        let now = crate::shard::unix_micros();
        tokio::time::sleep(Duration::from_micros(self.from_us.saturating_sub(now))).await;
    }
}

/// What a run counted, before it is turned into a [`Report`].
pub(crate) struct Measured {
    pub(crate) server: &'static str,
    pub(crate) clients: usize,
    pub(crate) shards: u32,
    pub(crate) cell_size: usize,
    pub(crate) round_ms: u32,
    pub(crate) duration: Duration,
    pub(crate) rounds: u64,
    pub(crate) cells_sent: u64,
    pub(crate) cells_delivered: u64,
    pub(crate) bytes_received: u64,
    pub(crate) latencies: Latencies,
    pub(crate) lost_cells: u64,
    pub(crate) server_cpu: Option<CpuSpan>,
    pub(crate) loadgen_cpu: Option<CpuSpan>,
}

impl Measured {
    pub(crate) fn report(self) -> Report {
        let secs = self.duration.as_secs_f64().max(1e-9);
        Report {
            server: self.server.to_owned(),
            clients: self.clients,
            shards: self.shards,
            cell_size: self.cell_size,
            round_ms: self.round_ms,
            duration_s: secs,
            rounds: self.rounds,
            cells_sent: self.cells_sent,
            cells_delivered: self.cells_delivered,
            delivered_cells_per_s: self.cells_delivered as f64 / secs,
            delivered_bytes_per_s: self.bytes_received as f64 / secs,
            download_bytes_per_client_s: self.bytes_received as f64
                / secs
                / self.clients.max(1) as f64,
            fanout_latency_p50_ms: self.latencies.percentile_ms(500),
            fanout_latency_p99_ms: self.latencies.percentile_ms(990),
            fanout_latency_max_ms: self.latencies.percentile_ms(1000),
            lost_cells: self.lost_cells,
            server_cpu_percent: self.server_cpu.map(|c| c.percent()),
            // Deliveries counted over the same span as the CPU; none
            // (a server that fell behind) gives no figure.
            server_cpu_ns_per_delivery: self.server_cpu.filter(|_| self.cells_delivered > 0).map(
                |c| {
                    let per_s = self.cells_delivered as f64 / secs;
                    c.cpu.as_secs_f64() / c.wall.as_secs_f64().max(1e-9) / per_s.max(1e-9) * 1e9
                },
            ),
            loadgen_cpu_percent: self.loadgen_cpu.map(|c| c.percent()),
        }
    }
}

#[derive(Default)]
struct ClientLog {
    /// (round, cells in the batch, latency in µs, bytes on the wire)
    rounds: Vec<(u64, u64, u64, u64)>,
}

type Sent = Arc<Mutex<HashMap<(u32, u64), u64>>>;

/// Connects every client, measures for `cfg.duration`, and reports. Fails
/// if any client fails (connection refused, closed by the relay, …).
pub async fn run(cfg: LoadConfig) -> Result<Report, ClientError> {
    let shards = cfg.shards.max(1);
    let sent: Sent = Arc::default();
    let copies: Arc<Copies> = Arc::default();
    let ready = Arc::new(Barrier::new(cfg.clients + 1));
    let common = Arc::new(Shared::default());
    let mut handles = Vec::with_capacity(cfg.clients);
    for i in 0..cfg.clients {
        let relay = cfg.relay.clone();
        let sent = Arc::clone(&sent);
        let ready = Arc::clone(&ready);
        let common = Arc::clone(&common);
        let copies = Arc::clone(&copies);
        let shard = SHARD_BASE + (i as u32 % shards);
        handles.push(tokio::spawn(async move {
            one_client(relay, shard, i as u32, sent, ready, common, copies).await
        }));
    }
    ready.wait().await;
    let round = Duration::from_millis(u64::from(common.round_ms.load(Ordering::SeqCst)));
    let window = Window::after_warmup(crate::shard::unix_micros(), round, cfg.duration);
    let _ = common.window.set(window);
    window.opened().await;
    let ticks = clock_ticks_per_s();
    let server = cfg.relay_pid.and_then(CpuMeter::start);
    let own = CpuMeter::start(std::process::id());
    tokio::time::sleep(cfg.duration).await;
    let server = server.and_then(|m| m.stop(ticks));
    let own = own.and_then(|m| m.stop(ticks));

    let mut logs = Vec::new();
    let mut cell_size = 0;
    let mut round_ms = 0;
    for h in handles {
        match h.await {
            Ok(Ok((log, shard, cs, rm))) => {
                cell_size = cs;
                round_ms = rm;
                logs.push((shard, log));
            }
            Ok(Err(e)) => return Err(e),
            Err(e) => return Err(ClientError::Io(std::io::Error::other(e))),
        }
    }
    Ok(summarize(
        &cfg,
        &sent,
        &logs,
        (server, own),
        cell_size,
        round_ms,
    ))
}

/// What the clients of a run share besides the cells sent.
#[derive(Default)]
struct Shared {
    /// The relay's round length, as its welcome said.
    round_ms: AtomicU32,
    /// Set once every client is connected.
    window: OnceLock<Window>,
}

async fn one_client(
    relay: RelayAddress,
    shard: u32,
    id: u32,
    sent: Sent,
    ready: Arc<Barrier>,
    common: Arc<Shared>,
    copies: Arc<Copies>,
) -> Result<(ClientLog, u32, usize, u32), ClientError> {
    let client::Connected {
        params,
        welcome,
        mut sender,
        mut receiver,
    } = client::connect(&relay, shard, None).await?;
    common.round_ms.store(params.round_ms, Ordering::SeqCst);
    ready.wait().await;
    // Batches closed while the other clients were still connecting sit in
    // the socket buffer; answering them now would only produce late cells.
    let start_us = crate::shard::unix_micros();
    let cell = |round: u64| {
        let mut c = vec![0u8; params.cell_size];
        rand::rng().fill_bytes(&mut c);
        c[..4].copy_from_slice(&id.to_be_bytes());
        c[4..12].copy_from_slice(&round.to_be_bytes());
        c
    };
    let record = |round: u64| {
        *sent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry((shard, round))
            .or_insert(0) += 1;
    };
    let mut next = welcome.open_round;
    let mut log = ClientLog::default();
    loop {
        let h = match receiver.next_header().await? {
            Announced::Batch(h) => h,
            Announced::Closed { .. } => return Err(ClientError::Unexpected("a close")),
        };
        let body = receiver.read_sealed_body(&h).await?;
        let cells = copies.check(shard, &h, &body, |h, body| {
            Ok(receiver.open_body(h, body)?.len())
        })?;
        let now = crate::shard::unix_micros();
        let window = common.window.get();
        if window.is_some_and(|w| h.closed_at_us >= w.to_us) {
            break;
        }
        if h.closed_at_us < start_us {
            continue;
        }
        if window.is_some_and(|w| w.contains(h.closed_at_us)) {
            log.rounds.push((
                h.round,
                cells as u64,
                now.saturating_sub(h.closed_at_us),
                (receiver.header_wire_len() + body.len()) as u64,
            ));
        }
        next = next.max(h.round + 1);
        record(next);
        sender.send_cell(next, cell(next)).await?;
    }
    Ok((log, shard, params.cell_size, params.round_ms))
}

/// One opened copy of a shard's batch: its hash, its bytes and its cells.
struct Opened {
    body_hash: [u8; BODY_HASH_LEN],
    body: Vec<u8>,
    cells: usize,
}

/// Rounds of opened copies kept per shard (a client that falls further
/// behind opens its own copy).
const COPIES_KEPT: u64 = 8;

/// Every client of a shard receives the same sealed body. Opening it (a
/// hash and an AEAD pass over `clients × cell` bytes) for every simulated
/// client made the load generator, not the relay, the limit past a few
/// hundred clients in one shard. So the first client of a shard to read a
/// round's body checks and opens it in full; every other client checks
/// that the hash in its own Noise header is that copy's hash and that its
/// body is byte for byte that copy (a comparison, no cipher), and fails
/// the run otherwise. Each client still reads its own full copy off its
/// own socket and opens its own Noise header.
#[derive(Default)]
pub(crate) struct Copies {
    opened: Mutex<HashMap<(u32, u64), Arc<Opened>>>,
}

impl Copies {
    /// The number of cells in `body`, checked as above; `open` checks and
    /// opens a first copy.
    fn check(
        &self,
        shard: u32,
        h: &BatchHeader,
        body: &[u8],
        open: impl FnOnce(&BatchHeader, &[u8]) -> Result<usize, ClientError>,
    ) -> Result<usize, ClientError> {
        let key = (shard, h.round);
        let known = self.lock().get(&key).cloned();
        if let Some(o) = known {
            if o.body_hash != *h.body_hash() || o.body != body {
                return Err(ClientError::Unexpected(
                    "a batch body that differs from another client's copy of the round",
                ));
            }
            return Ok(o.cells);
        }
        let cells = open(h, body)?;
        let mut map = self.lock();
        map.retain(|&(s, r), _| s != shard || r + COPIES_KEPT > h.round);
        map.entry(key).or_insert_with(|| {
            Arc::new(Opened {
                body_hash: *h.body_hash(),
                body: body.to_vec(),
                cells,
            })
        });
        Ok(cells)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(u32, u64), Arc<Opened>>> {
        self.opened
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn summarize(
    cfg: &LoadConfig,
    sent: &Sent,
    logs: &[(u32, ClientLog)],
    (server_cpu, loadgen_cpu): (Option<CpuSpan>, Option<CpuSpan>),
    cell_size: usize,
    round_ms: u32,
) -> Report {
    let sent = sent
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut latencies = Latencies::default();
    let (mut delivered, mut bytes, mut lost) = (0u64, 0u64, 0u64);
    let mut rounds = std::collections::BTreeSet::new();
    for (shard, log) in logs {
        for &(round, cells, lat, wire) in &log.rounds {
            delivered += cells;
            bytes += wire;
            latencies.push(lat);
            rounds.insert(round);
            let expected = sent.get(&(*shard, round)).copied().unwrap_or(0);
            lost += expected.saturating_sub(cells);
        }
    }
    Measured {
        server: "anonchat-relay",
        clients: cfg.clients,
        shards: cfg.shards.max(1),
        cell_size,
        round_ms,
        duration: cfg.duration,
        rounds: rounds.len() as u64,
        cells_sent: sent.values().sum(),
        cells_delivered: delivered,
        bytes_received: bytes,
        latencies,
        lost_cells: lost,
        server_cpu,
        loadgen_cpu,
    }
    .report()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The window skips the warm-up rounds and then holds exactly
    /// `duration / round` ticks of a clock started when everyone was
    /// connected (a Redis client's publishes), and as many relay batches
    /// whatever the relay's phase. Breaks if the half-round offset is
    /// dropped (a tick then falls on the boundary) or the warm-up is
    /// counted.
    #[test]
    fn the_window_skips_the_warmup_and_holds_duration_over_round_ticks() {
        let (now, round, duration) = (
            1_000_000,
            Duration::from_millis(100),
            Duration::from_secs(2),
        );
        let w = Window::after_warmup(now, round, duration);
        assert_eq!(w.to_us - w.from_us, 2_000_000);
        // A client's clock starts a little before ours and drifts a
        // little (a busy machine): its first ticks come early, its last
        // ones late. The boundaries sit half a round from any tick.
        let ticks = |phase: u64| {
            (0..100u64)
                .map(|k| (now + phase + k * 100_000 + k * 200).saturating_sub(2_000))
                .filter(|&t| w.contains(t))
                .count()
        };
        assert_eq!(ticks(0), 20);
        assert!(!w.contains(now + u64::from(WARMUP_ROUNDS - 1) * 100_000));
        assert!(w.contains(now + u64::from(WARMUP_ROUNDS) * 100_000));
        // Batches closed at any phase of the relay's clock: 20 of them.
        for phase in [0, 37_000, 99_999] {
            let closed = (0..100u64)
                .filter(|k| w.contains(now + phase + k * 100_000))
                .count();
            assert_eq!(closed, 20, "phase {phase}");
        }
    }

    /// Percentiles within the histogram's 1.6 % (breaks if a bucket's
    /// value and its index disagree: a shifted `value` is off by 2x).
    #[test]
    fn latency_percentiles_are_within_two_percent() {
        let mut l = Latencies::default();
        for us in 1..=100_000u64 {
            l.push(us);
        }
        for (pm, want) in [(500, 50_000.0), (990, 99_000.0), (100, 10_000.0)] {
            let got = l.percentile_ms(pm) * 1000.0;
            assert!((got - want).abs() / want < 0.02, "{pm}: {got} vs {want}");
        }
        assert!((l.percentile_ms(1000) - 100.0).abs() < 1e-9);
        let mut a = Latencies::default();
        a.push(5);
        let mut b = Latencies::default();
        b.push(7);
        a.merge(b);
        assert!((a.percentile_ms(1000) - 0.007).abs() < 1e-9);
        assert!((a.percentile_ms(0) - 0.005).abs() < 1e-9);
    }
}
