//! The accept loop, the round clock, connection limits and shutdown. Like
//! mini-redis' `server::run`, it takes its listener and a shutdown signal,
//! so tests can run it on port 0.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use anonchat_protocol::wire::{RelayAddress, RelayKeypair};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::conn::{self, Ctx};
use crate::per_ip::PerIp;
use crate::shard::{Shards, unix_micros, until_round_end};
use crate::{RelayConfig, Stats};

/// How often the relay logs its counters.
const STATS_EVERY: Duration = Duration::from_secs(60);
/// How long shutdown waits for connections to flush their close frames.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// A configured relay, ready to serve.
pub struct Relay {
    /// Its settings.
    pub config: RelayConfig,
    /// Its static Noise key pair; the public half is in its address.
    pub keypair: RelayKeypair,
}

impl Relay {
    /// The address clients use, given the host:port they reach us at.
    pub fn address(
        &self,
        host: &str,
        port: u16,
    ) -> Result<RelayAddress, anonchat_protocol::wire::AddressError> {
        RelayAddress::new(host, port, *self.keypair.public())
    }
}

/// Serves until `shutdown` is cancelled, then tells every client, waits a
/// moment for the close frames to go out, and returns the final counters.
pub async fn run(listener: TcpListener, relay: Relay, shutdown: CancellationToken) -> Arc<Stats> {
    run_with_metrics(listener, relay, None, shutdown).await
}

/// [`run`], and with `metrics`, the counters served on it in the
/// Prometheus text format ([`crate::metrics`]).
pub async fn run_with_metrics(
    listener: TcpListener,
    relay: Relay,
    metrics: Option<TcpListener>,
    shutdown: CancellationToken,
) -> Arc<Stats> {
    let stats = Arc::new(Stats::default());
    let config = relay.config;
    let ctx = Arc::new(Ctx {
        shards: Shards::new(config, Arc::clone(&stats)),
        config,
        keypair: relay.keypair,
        stats: Arc::clone(&stats),
        shutdown: CancellationToken::new(),
        next_id: AtomicU64::new(1),
    });
    let tasks = TaskTracker::new();
    tasks.spawn(round_clock(Arc::clone(&ctx)));
    tasks.spawn(stats_logger(Arc::clone(&ctx)));

    let slots = Arc::new(Semaphore::new(config.max_clients));
    if let Some(listener) = metrics {
        let stop = ctx.shutdown.clone();
        let ctx = Arc::clone(&ctx);
        let slots = Arc::clone(&slots);
        let gauges = move || {
            let (shards, clients, backlog_bytes) = ctx.shards.counts();
            crate::metrics::Gauges {
                connections: config.max_clients.saturating_sub(slots.available_permits()),
                clients,
                shards,
                backlog_bytes,
            }
        };
        tasks.spawn(crate::metrics::serve(
            listener,
            Arc::clone(&stats),
            gauges,
            stop,
        ));
    }
    let per_ip = PerIp::default();
    loop {
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            r = listener.accept() => match r {
                Ok(v) => v,
                Err(e) => {
                    // Typically out of file descriptors: back off, keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        Stats::inc(&stats.connections_accepted);
        let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
            Stats::inc(&stats.connections_refused_full);
            continue;
        };
        let Some(ip) = per_ip.try_acquire(peer.ip(), config.max_per_ip) else {
            Stats::inc(&stats.connections_refused_full);
            continue;
        };
        let _ = stream.set_nodelay(true);
        if let Some(bytes) = config.socket_send_buffer {
            let _ = socket2::SockRef::from(&stream).set_send_buffer_size(bytes);
        }
        tasks.spawn(conn::serve(stream, peer, Arc::clone(&ctx), permit, ip));
    }

    tracing::info!("shutting down");
    drop(listener);
    ctx.shards.shutdown();
    ctx.shutdown.cancel();
    tasks.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!("some connections did not close in time");
    }
    tracing::info!(stats = %stats.summary(), "relay stopped");
    stats
}

/// Closes each round at its end by the wall clock. A tick that comes late
/// (a busy machine) skips the round numbers it missed instead of pushing
/// every later round back: round numbers stay `unix_ms / round_ms`
/// (`docs/protocol.md`, "Rounds").
async fn round_clock(ctx: Arc<Ctx>) {
    let round_ms = u64::from(ctx.config.round_ms());
    let mut open = ctx.shards.open_round();
    loop {
        let wait = until_round_end(open, unix_micros(), round_ms);
        tokio::select! {
            () = ctx.shutdown.cancelled() => return,
            () = tokio::time::sleep(wait) => {
                open = ctx.shards.close_round(Instant::now(), unix_micros());
            }
        }
    }
}

async fn stats_logger(ctx: Arc<Ctx>) {
    let mut tick = tokio::time::interval(STATS_EVERY);
    tick.tick().await;
    loop {
        tokio::select! {
            () = ctx.shutdown.cancelled() => return,
            _ = tick.tick() => {
                let (shards, clients, backlog_bytes) = ctx.shards.counts();
                tracing::info!(shards, clients, backlog_bytes, stats = %ctx.stats.summary(), "relay counters");
            }
        }
    }
}
