//! `anonchat-loadgen`: the project's performance instrument. Opens N real
//! clients against a relay and reports throughput, fan-out latency, relay
//! CPU and lost cells.

#![forbid(unsafe_code)]

use std::time::Duration;

use anonchat_protocol::wire::RelayAddress;
use anonchat_relay::loadgen::{self, LoadConfig};
use anyhow::Context as _;
use clap::Parser;

/// Load an anonchat relay with N constant-rate clients and measure it.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
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
    #[arg(long)]
    clients: usize,
    /// Measurement time in seconds (after all clients joined).
    #[arg(long)]
    duration_s: u64,
    /// Spread the clients over this many shards.
    #[arg(long, default_value_t = 1)]
    shards: u32,
    /// PID of the relay, to report its CPU use.
    #[arg(long)]
    relay_pid: Option<u32>,
    /// Print the report as one JSON object.
    #[arg(long)]
    json: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
        eprintln!("warning: cannot raise the open-file limit: {e}");
    }
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
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
            .block_on(anonchat_relay::broker::run(
                &redis,
                args.clients,
                args.shards,
                duration,
                Duration::from_millis(args.round_ms.max(1)),
            ))
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
