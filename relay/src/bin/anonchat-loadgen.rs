//! `anonchat-loadgen`: the project's performance instrument. Opens N real
//! clients against a relay (or Redis) and reports throughput, fan-out
//! latency, server CPU and lost cells; `compare` runs both side by side.

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::time::Duration;

use anonchat_protocol::wire::RelayAddress;
use anonchat_relay::broker::RedisLoad;
use anonchat_relay::compare::{self, CompareConfig};
use anonchat_relay::loadgen::{self, LoadConfig};
use anyhow::Context as _;
use clap::{Parser, Subcommand};

/// Load an anonchat relay with N constant-rate clients and measure it.
#[derive(Parser, Debug)]
#[command(version, about, args_conflicts_with_subcommands = true)]
struct Args {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    /// The relay address, as printed by anonchat-relay.
    #[arg(long, required_unless_present = "redis")]
    relay: Option<RelayAddress>,
    /// Instead of a relay, measure the same fan-out through Redis pub/sub
    /// at HOST:PORT (for comparison: no encryption, no anonymity).
    #[arg(long, conflicts_with = "relay")]
    redis: Option<String>,
    /// Round length for --redis, in milliseconds (a relay announces its own).
    #[arg(long, default_value_t = anonchat_relay::defaults::ROUND_MS)]
    round_ms: u64,
    /// Number of clients.
    #[arg(long, default_value_t = 200)]
    clients: usize,
    /// Measurement time in seconds (after all clients joined).
    #[arg(long, default_value_t = 10)]
    duration_s: u64,
    /// Spread the clients over this many shards.
    #[arg(long, default_value_t = 1)]
    shards: u32,
    /// PID of the relay (or of redis-server with --redis), to report its CPU use.
    #[arg(long)]
    relay_pid: Option<u32>,
    /// Print the report as one JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Start anonchat-relay and redis-server on 127.0.0.1 (one after the
    /// other), drive the same fan-out through both, and print one table.
    Compare(CompareArgs),
}

#[derive(clap::Args, Debug)]
struct CompareArgs {
    /// Number of clients (one connection each).
    #[arg(long, default_value_t = 200)]
    clients: usize,
    /// Round length in milliseconds.
    #[arg(long, default_value_t = 100)]
    round_ms: u64,
    /// Measurement time per server and run, in seconds.
    #[arg(long, default_value_t = 10)]
    duration_s: u64,
    /// Run each server this many times, alternating (relay, Redis, relay,
    /// ...), and sum up with medians: a change in the machine's state
    /// then falls on both.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=50))]
    runs: u64,
    /// Spread the clients over this many shards.
    #[arg(long, default_value_t = 1)]
    shards: u32,
    /// The anonchat-relay binary (default: beside this one).
    #[arg(long)]
    relay_bin: Option<PathBuf>,
    /// The redis-server binary (default: found on PATH; skipped if absent).
    #[arg(long)]
    redis_bin: Option<PathBuf>,
    /// Do not run Redis.
    #[arg(long)]
    no_redis: bool,
    /// More flags for the relay, e.g. --relay-arg=--socket-send-buffer=1048576.
    #[arg(long = "relay-arg", allow_hyphen_values = true)]
    relay_args: Vec<String>,
    /// Also measure one daemon's CPU per round with this many contacts in
    /// a shard of --clients (anonchatd's `round_cost` example, built with
    /// `cargo build --release -p anonchatd --example round_cost`).
    #[arg(long, value_name = "CONTACTS")]
    daemon_cost: Option<usize>,
    /// Print the comparison as one JSON object.
    #[arg(long)]
    json: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
        eprintln!("warning: cannot raise the open-file limit: {e}");
    }
    // Every core, whatever TOKIO_WORKER_THREADS says (that variable is
    // for the relay that `compare` starts).
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(std::thread::available_parallelism().map_or(2, std::num::NonZero::get))
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    if let Some(Cmd::Compare(c)) = args.cmd {
        return run_compare(c, &runtime);
    }
    let duration = Duration::from_secs(args.duration_s);
    let report = match (args.relay, args.redis) {
        (Some(relay), _) => runtime.block_on(loadgen::run(LoadConfig {
            relay,
            clients: args.clients,
            shards: args.shards,
            duration,
            relay_pid: args.relay_pid,
        }))?,
        (None, Some(redis)) => runtime
            .block_on(anonchat_relay::broker::run(&RedisLoad {
                addr: redis.clone(),
                clients: args.clients,
                shards: args.shards,
                duration,
                round: Duration::from_millis(args.round_ms.max(1)),
                server_pid: args.relay_pid,
            }))
            .with_context(|| format!("cannot load Redis at {redis}"))?,
        (None, None) => anyhow::bail!("pass --relay ADDRESS or --redis HOST:PORT"),
    };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!("{report}");
    }
    Ok(())
}

fn run_compare(c: CompareArgs, runtime: &tokio::runtime::Runtime) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("cannot find this binary's directory")?;
    let relay_bin = c
        .relay_bin
        .unwrap_or_else(|| exe.with_file_name("anonchat-relay"));
    let daemon_cost = c
        .daemon_cost
        .map(|n| (exe.with_file_name("examples").join("round_cost"), n));
    let redis_bin = if c.no_redis {
        Err("--no-redis: the Redis row is skipped".to_owned())
    } else {
        compare::locate_redis(c.redis_bin)
    };
    if let Err(why) = &redis_bin {
        eprintln!("{why}");
    }
    let cfg = CompareConfig {
        clients: c.clients,
        shards: c.shards,
        round_ms: c.round_ms,
        duration: Duration::from_secs(c.duration_s),
        runs: usize::try_from(c.runs).unwrap_or(1),
        relay_bin,
        relay_args: c.relay_args,
        redis_bin,
        daemon_cost,
    };
    let result = compare::run(&cfg, runtime)?;
    if c.json {
        println!("{}", serde_json::to_string(&result)?);
    } else {
        println!("{result}");
    }
    Ok(())
}
