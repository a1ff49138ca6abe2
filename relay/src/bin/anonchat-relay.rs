//! `anonchat-relay`: the untrusted relay. Thin: parses flags, loads the key,
//! prints the address, runs `anonchat_relay::run` until SIGINT/SIGTERM.

#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use anonchat_relay::config::mib_to_bytes;
use anonchat_relay::{Relay, RelayConfig, defaults, keyfile};
use anyhow::{Context as _, bail};
use clap::Parser;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The anonchat relay: forwards fixed-size cells in constant-rate rounds and
/// learns nothing else. Prints its address (`anonchat://HOST:PORT/#KEY`) on
/// stdout at start; give that line to your users.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Address to listen on, e.g. 0.0.0.0:7766 or 127.0.0.1:0.
    #[arg(long)]
    listen: String,
    /// The relay's private key file; created (mode 0600) if absent.
    #[arg(long)]
    key_file: PathBuf,
    /// HOST:PORT that clients dial, when it differs from --listen (NAT, 0.0.0.0).
    #[arg(long)]
    public_addr: Option<String>,
    /// Round length in milliseconds.
    #[arg(long, default_value_t = defaults::ROUND_MS)]
    round_ms: u64,
    /// Cell size in bytes (every client frame carries exactly one cell).
    #[arg(long, default_value_t = defaults::CELL_SIZE)]
    cell_size: usize,
    /// Seconds of batches kept in RAM for reconnecting clients.
    #[arg(long, default_value_t = defaults::BACKLOG_S)]
    backlog_s: u64,
    /// Ceiling on the RAM all backlogs together may use, in MiB.
    #[arg(long, default_value_t = defaults::MAX_BACKLOG_MIB)]
    max_backlog_mb: usize,
    /// Connections at once.
    #[arg(long, default_value_t = defaults::MAX_CLIENTS)]
    max_clients: usize,
    /// Connections at once from one address (one IPv4 address, or one IPv6 /64).
    #[arg(long, default_value_t = defaults::MAX_PER_IP)]
    max_per_ip: usize,
    /// Shards at once.
    #[arg(long, default_value_t = defaults::MAX_SHARDS)]
    max_shards: usize,
    /// Shards that connections from one address (one IPv4 address, or one IPv6 /64) may be in at once.
    #[arg(long, default_value_t = defaults::MAX_SHARDS_PER_IP)]
    max_shards_per_ip: usize,
    /// Time allowed for the handshake and the hello, in milliseconds.
    #[arg(long, default_value_t = defaults::HANDSHAKE_TIMEOUT_MS)]
    handshake_timeout_ms: u64,
    /// A client that sends nothing for this many seconds is dropped.
    #[arg(long, default_value_t = defaults::IDLE_TIMEOUT_S)]
    idle_timeout_s: u64,
    /// Batches queued per client before it counts as a slow reader and is dropped.
    #[arg(long, default_value_t = defaults::SEND_QUEUE)]
    send_queue: usize,
    /// Kernel send buffer per client socket in bytes (default: the kernel's autotuning).
    #[arg(long)]
    socket_send_buffer: Option<usize>,
    /// Also write the address to this file.
    #[arg(long)]
    address_file: Option<PathBuf>,
    /// Log client IP addresses (off by default: the relay should not know them).
    #[arg(long)]
    log_addresses: bool,
    /// Serve aggregate counters (Prometheus text format, no labels) on
    /// this address, e.g. 127.0.0.1:9466; nothing is served without it.
    #[arg(long, value_name = "ADDR")]
    metrics: Option<String>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let config = RelayConfig {
        round: Duration::from_millis(args.round_ms),
        cell_size: args.cell_size,
        backlog: Duration::from_secs(args.backlog_s),
        max_backlog_bytes: mib_to_bytes(args.max_backlog_mb),
        max_clients: args.max_clients,
        max_per_ip: args.max_per_ip,
        max_shards: args.max_shards,
        max_shards_per_ip: args.max_shards_per_ip,
        handshake_timeout: Duration::from_millis(args.handshake_timeout_ms),
        idle_timeout: Duration::from_secs(args.idle_timeout_s),
        send_queue: args.send_queue,
        socket_send_buffer: args.socket_send_buffer,
        max_violations: defaults::MAX_VIOLATIONS,
        log_addresses: args.log_addresses,
    };
    config.validate()?;
    if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
        tracing::warn!(error = %e, "cannot raise the open-file limit; --max-clients may not be reachable");
    }
    let (keypair, created) = keyfile::load_or_create(&args.key_file)?;
    if created {
        tracing::info!(path = %args.key_file.display(), "created a new relay key");
    }
    let relay = Relay { config, keypair };

    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let listener = TcpListener::bind(&args.listen)
            .await
            .with_context(|| format!("cannot listen on {} (in use? permission?)", args.listen))?;
        // Bound before the address is printed: ready means both.
        let metrics = match &args.metrics {
            Some(addr) => {
                let m = TcpListener::bind(addr).await.with_context(|| {
                    format!("cannot serve metrics on {addr} (in use? permission?)")
                })?;
                tracing::info!(addr = %m.local_addr()?, "metrics served");
                Some(m)
            }
            None => None,
        };
        let local = listener.local_addr()?;
        let (host, port) = match &args.public_addr {
            Some(p) => split_host_port(p)?,
            None if local.ip().is_unspecified() => {
                bail!("--listen {local} is a wildcard address: pass --public-addr HOST:PORT, the address clients dial")
            }
            None => (local.ip().to_string(), local.port()),
        };
        let host = if host.contains(':') && !host.starts_with('[') { format!("[{host}]") } else { host };
        let address = relay.address(&host, port).context("invalid --public-addr")?;
        println!("{address}");
        if let Some(path) = &args.address_file {
            write_atomically(path, format!("{address}\n").as_bytes())?;
        }
        tracing::info!(
            round_ms = relay.config.round_ms(),
            cell_size = relay.config.cell_size,
            "relay listening"
        );
        let shutdown = CancellationToken::new();
        tokio::spawn(signals(shutdown.clone()));
        anonchat_relay::run_with_metrics(listener, relay, metrics, shutdown).await;
        Ok(())
    })
}

fn split_host_port(s: &str) -> anyhow::Result<(String, u16)> {
    let (host, port) = s
        .rsplit_once(':')
        .with_context(|| format!("--public-addr {s}: expected HOST:PORT"))?;
    let port = port
        .parse()
        .with_context(|| format!("--public-addr {s}: port is not a number"))?;
    Ok((host.to_owned(), port))
}

fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

async fn signals(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        tracing::error!("cannot watch SIGTERM");
        return;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    shutdown.cancel();
}
