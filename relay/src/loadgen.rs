//! The load generator behind `anonchat-loadgen`: N real clients (full Noise
//! handshake, one cell per round, in lockstep with the relay), and a report
//! of what was delivered, how fast, and what was lost.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anonchat_protocol::wire::RelayAddress;
use rand::Rng as _;
use serde::Serialize;
use tokio::sync::Barrier;

use crate::client::{self, ClientError, Incoming};

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
    /// Measurement time, once every client has joined.
    pub duration: Duration,
    /// The relay's process id, to report its CPU use (same machine only).
    pub relay_pid: Option<u32>,
}

/// What one run measured. `lost_cells` counts, over every client and every
/// round it received, the cells sent for that round in its shard that were
/// not in its batch (late cells included): 0 under nominal load.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
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
    /// Cells received, counted once per receiving client.
    pub cells_delivered: u64,
    /// `cells_delivered` per second.
    pub delivered_cells_per_s: f64,
    /// Bytes received on the wire per second, over all clients.
    pub delivered_bytes_per_s: f64,
    /// Median fan-out latency (round closed, or message published, to
    /// client has it), in milliseconds.
    pub fanout_latency_p50_ms: f64,
    /// 99th percentile of the fan-out latency, in milliseconds.
    pub fanout_latency_p99_ms: f64,
    /// Largest fan-out latency seen, in milliseconds.
    pub fanout_latency_max_ms: f64,
    /// Cells sent but not delivered (see above).
    pub lost_cells: u64,
    /// The relay's CPU use in percent of one core, when its PID was given.
    pub relay_cpu_percent: Option<f64>,
    /// The generator's own CPU: near 100% per core means the instrument,
    /// not the relay, is the limit (late answers then count as lost).
    pub loadgen_cpu_percent: Option<f64>,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{} clients in {} shard(s), {} B cells, {} ms rounds, {:.1} s, {} rounds",
            self.clients, self.shards, self.cell_size, self.round_ms, self.duration_s, self.rounds
        )?;
        writeln!(
            f,
            "delivered: {:.0} cells/s, {:.2} MiB/s on the wire ({} cells sent, {} deliveries)",
            self.delivered_cells_per_s,
            self.delivered_bytes_per_s / f64::from(1 << 20),
            self.cells_sent,
            self.cells_delivered
        )?;
        writeln!(
            f,
            "fan-out latency (relay round close, or Redis publish, -> client has it): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            self.fanout_latency_p50_ms, self.fanout_latency_p99_ms, self.fanout_latency_max_ms
        )?;
        write!(f, "lost cells: {}", self.lost_cells)?;
        if let Some(cpu) = self.relay_cpu_percent {
            write!(f, "\nrelay CPU: {cpu:.1}% of one core")?;
        }
        if let Some(cpu) = self.loadgen_cpu_percent {
            write!(f, "\nload generator CPU: {cpu:.1}% of one core")?;
        }
        Ok(())
    }
}

#[derive(Default)]
struct ClientLog {
    /// (round, cells in the batch, latency in µs, bytes on the wire)
    rounds: Vec<(u64, u64, u64, u64)>,
}

type Sent = Arc<Mutex<HashMap<(u32, u64), u64>>>;
/// CPU ticks of a process at the start and the end of the measurement.
type CpuSpan = Option<(u64, u64)>;

/// Connects every client, measures for `cfg.duration`, and reports. Fails
/// if any client fails (connection refused, closed by the relay, …).
pub async fn run(cfg: LoadConfig) -> Result<Report, ClientError> {
    let shards = cfg.shards.max(1);
    let sent: Sent = Arc::default();
    let ready = Arc::new(Barrier::new(cfg.clients + 1));
    // Clients stop at the first batch closed at or after this time (µs).
    let stop = Arc::new(AtomicU64::new(u64::MAX));
    let mut handles = Vec::with_capacity(cfg.clients);
    for i in 0..cfg.clients {
        let relay = cfg.relay.clone();
        let sent = Arc::clone(&sent);
        let ready = Arc::clone(&ready);
        let stop = Arc::clone(&stop);
        let shard = SHARD_BASE + (i as u32 % shards);
        handles.push(tokio::spawn(async move {
            one_client(relay, shard, i as u32, sent, ready, stop).await
        }));
    }
    ready.wait().await;
    let cpu0 = cfg.relay_pid.and_then(cpu_ticks);
    let own0 = cpu_ticks(std::process::id());
    let t0 = Instant::now();
    tokio::time::sleep(cfg.duration).await;
    let elapsed = t0.elapsed();
    let cpu1 = cfg.relay_pid.and_then(cpu_ticks);
    let own1 = cpu_ticks(std::process::id());
    stop.store(crate::shard::unix_micros(), Ordering::SeqCst);

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
        elapsed,
        (cpu0.zip(cpu1), own0.zip(own1)),
        cell_size,
        round_ms,
    ))
}

async fn one_client(
    relay: RelayAddress,
    shard: u32,
    id: u32,
    sent: Sent,
    ready: Arc<Barrier>,
    stop: Arc<AtomicU64>,
) -> Result<(ClientLog, u32, usize, u32), ClientError> {
    let client::Connected {
        params,
        welcome,
        mut sender,
        mut receiver,
    } = client::connect(&relay, shard, None).await?;
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
    // Measurement starts with the first batch after everyone is connected.
    let mut next = welcome.open_round;
    let mut measuring = false;
    let mut log = ClientLog::default();
    loop {
        let b = match receiver.next().await? {
            Incoming::Batch(b) => b,
            Incoming::Closed { .. } => return Err(ClientError::Unexpected("a close")),
        };
        let now = crate::shard::unix_micros();
        if b.closed_at_us >= stop.load(Ordering::SeqCst) {
            break;
        }
        if b.closed_at_us < start_us {
            continue;
        }
        if measuring {
            log.rounds.push((
                b.round,
                b.batch.len() as u64,
                now.saturating_sub(b.closed_at_us),
                b.wire_bytes as u64,
            ));
        }
        measuring = true;
        next = next.max(b.round + 1);
        record(next);
        sender.send_cell(next, cell(next)).await?;
    }
    Ok((log, shard, params.cell_size, params.round_ms))
}

fn summarize(
    cfg: &LoadConfig,
    sent: &Sent,
    logs: &[(u32, ClientLog)],
    elapsed: Duration,
    cpu: (CpuSpan, CpuSpan),
    cell_size: usize,
    round_ms: u32,
) -> Report {
    let sent = sent
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut latencies = Vec::new();
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
    latencies.sort_unstable();
    // Nearest-rank percentile, `per_mille` in 0..=1000.
    let pct = |per_mille: usize| -> f64 {
        if latencies.is_empty() {
            return 0.0;
        }
        let i = (latencies.len() - 1) * per_mille / 1000;
        latencies[i] as f64 / 1000.0
    };
    let secs = elapsed.as_secs_f64();
    let clk = clock_ticks_per_s();
    Report {
        clients: cfg.clients,
        shards: cfg.shards.max(1),
        cell_size,
        round_ms,
        duration_s: secs,
        rounds: rounds.len() as u64,
        cells_sent: sent.values().sum(),
        cells_delivered: delivered,
        delivered_cells_per_s: delivered as f64 / secs,
        delivered_bytes_per_s: bytes as f64 / secs,
        fanout_latency_p50_ms: pct(500),
        fanout_latency_p99_ms: pct(990),
        fanout_latency_max_ms: pct(1000),
        lost_cells: lost,
        relay_cpu_percent: cpu
            .0
            .map(|(a, b)| b.saturating_sub(a) as f64 / clk / secs * 100.0),
        loadgen_cpu_percent: cpu
            .1
            .map(|(a, b)| b.saturating_sub(a) as f64 / clk / secs * 100.0),
    }
}

/// utime + stime of a process, in clock ticks, from /proc.
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may contain spaces) start at ')'.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3 (state): utime is field 14, stime field 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

fn clock_ticks_per_s() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_reads_our_own_process() {
        assert!(cpu_ticks(std::process::id()).is_some());
        assert!(cpu_ticks(u32::MAX).is_none());
    }
}
