//! `anonchat-loadgen compare`: the side-by-side run. Starts a real
//! `anonchat-relay` and a real `redis-server` on 127.0.0.1 (each alone,
//! one after the other), drives the same fan-out through both with the
//! same client code paths ([`crate::loadgen`], [`crate::broker`]), reads
//! both servers' CPU from `/proc/PID/stat` over the same window, stops
//! them, and prints one table. With `--runs N` it does that N times,
//! alternating the two servers so that a change in the machine's state
//! (other work, frequency) falls on both, and sums up with medians
//! ([`table`]).

mod table;

pub use table::{Summary, TABLE_HEADER, row};

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anonchat_protocol::wire::RelayAddress;

use crate::broker::{self, RedisLoad};
use crate::client::ClientError;
use crate::loadgen::{self, LoadConfig, Report};

/// What to compare.
#[derive(Debug, Clone)]
pub struct CompareConfig {
    /// Clients, one connection each, for both servers.
    pub clients: usize,
    /// Shards the clients are spread over.
    pub shards: u32,
    /// Round length (the relay's `--round-ms`; Redis clients publish on
    /// the same period).
    pub round_ms: u64,
    /// Measurement time per server and run.
    pub duration: Duration,
    /// Runs of each server, alternating (at least 1).
    pub runs: usize,
    /// The `anonchat-relay` binary.
    pub relay_bin: PathBuf,
    /// More flags for the relay (e.g. `--socket-send-buffer`).
    pub relay_args: Vec<String>,
    /// The `redis-server` binary; `None` skips Redis, saying why.
    pub redis_bin: Result<PathBuf, String>,
    /// The daemon's per-round cost: the `round_cost` example of
    /// `anonchatd` and the number of contacts to give it.
    pub daemon_cost: Option<(PathBuf, usize)>,
}

/// One run of each server: both rows, or the relay's alone.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Run {
    /// The relay's row.
    pub relay: Report,
    /// Redis's row, unless Redis was skipped.
    pub redis: Option<Report>,
}

/// Every run's rows, their summary, or the relay's and why Redis was
/// skipped.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Comparison {
    /// The runs, in the order they ran.
    pub runs: Vec<Run>,
    /// Medians and ratios over the runs.
    pub summary: Summary,
    /// Why Redis was not measured.
    pub redis_skipped: Option<String>,
    /// The daemon's CPU per round, as `round_cost` printed it (or why not).
    pub daemon: Option<String>,
    /// What the numbers were measured on.
    pub machine: String,
}

/// Why the comparison could not run.
#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    /// A server could not be started.
    #[error("cannot start {0}: {1}")]
    Start(String, std::io::Error),
    /// The relay did not print a usable address.
    #[error("anonchat-relay printed no address ({0}); run it by hand to see why")]
    NoAddress(String),
    /// Redis did not answer PING in time.
    #[error("redis-server did not answer on 127.0.0.1:{0} within 10 s")]
    RedisNotReady(u16),
    /// A relay client failed.
    #[error("relay run failed: {0}")]
    Relay(#[from] ClientError),
    /// A Redis client failed.
    #[error("redis run failed: {0}")]
    Redis(std::io::Error),
}

/// A child process killed when dropped, so no server outlives the run.
struct Server {
    child: Child,
}

impl Server {
    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `name` on `PATH`, if there.
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Where `redis-server` is, or what to do to get it.
pub fn locate_redis(given: Option<PathBuf>) -> Result<PathBuf, String> {
    given
        .or_else(|| find_on_path("redis-server"))
        .ok_or_else(|| {
            "redis-server not found on PATH (Debian: apt-get install redis-server); \
         the Redis row is skipped"
                .to_owned()
        })
}

fn start_relay(cfg: &CompareConfig, dir: &Path) -> Result<(Server, RelayAddress), CompareError> {
    let limit = (cfg.clients + 64).to_string();
    let child = Command::new(&cfg.relay_bin)
        .args(["--listen", "127.0.0.1:0", "--key-file"])
        .arg(dir.join("relay.key"))
        .args(["--round-ms", &cfg.round_ms.to_string()])
        .args(["--max-per-ip", &limit, "--max-clients", &limit])
        .args(&cfg.relay_args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| CompareError::Start(cfg.relay_bin.display().to_string(), e))?;
    let mut server = Server { child };
    let mut line = String::new();
    if let Some(out) = server.child.stdout.as_mut() {
        let _ = BufReader::new(out).read_line(&mut line);
    }
    let addr = line
        .trim()
        .parse()
        .map_err(|_| CompareError::NoAddress(line.trim().to_owned()))?;
    Ok((server, addr))
}

fn free_port() -> Result<u16, CompareError> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| CompareError::Start("a port for redis-server".into(), e))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| CompareError::Start("a port for redis-server".into(), e))
}

fn start_redis(bin: &Path, clients: usize) -> Result<(Server, u16), CompareError> {
    let port = free_port()?;
    let child = Command::new(bin)
        .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
        .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
        .args(["--maxclients", &(clients + 64).to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| CompareError::Start(bin.display().to_string(), e))?;
    let server = Server { child };
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(10) {
        if redis_pong(port) {
            return Ok((server, port));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(CompareError::RedisNotReady(port))
}

fn redis_pong(port: u16) -> bool {
    use std::io::{Read as _, Write as _};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    let mut buf = [0u8; 7];
    s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
}

/// The CPU model, core count and kernel, for the table's caption.
pub fn machine() -> String {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map_or_else(|_| "unknown kernel".into(), |k| k.trim().to_owned());
    format!("{cores} cores ({model}), Linux {kernel}, loopback")
}

/// Runs the relay, then Redis, each alone on the machine with the load
/// generator, `cfg.runs` times, and returns every row and their summary.
pub fn run(
    cfg: &CompareConfig,
    runtime: &tokio::runtime::Runtime,
) -> Result<Comparison, CompareError> {
    let dir = std::env::temp_dir().join(format!("anonchat-compare-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| CompareError::Start(dir.display().to_string(), e))?;
    let _remove = RemoveOnDrop(&dir);
    let mut runs = Vec::with_capacity(cfg.runs.max(1));
    for _ in 0..cfg.runs.max(1) {
        let relay = run_relay(cfg, &dir, runtime)?;
        let redis = match &cfg.redis_bin {
            Err(_) => None,
            Ok(bin) => Some(run_redis(cfg, bin, runtime)?),
        };
        runs.push(Run { relay, redis });
    }
    let redis_skipped = cfg.redis_bin.as_ref().err().cloned();
    let daemon = cfg.daemon_cost.as_ref().map(|(bin, contacts)| {
        daemon_cost(bin, *contacts, cfg.clients.max(contacts + 1), cfg.round_ms)
    });
    Ok(Comparison {
        summary: Summary::of(&runs),
        runs,
        redis_skipped,
        daemon,
        machine: machine(),
    })
}

/// Removes the run's directory (the relays' key file) however the run ends.
struct RemoveOnDrop<'a>(&'a Path);

impl Drop for RemoveOnDrop<'_> {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(self.0);
    }
}

/// One relay run: a fresh relay (its key in `dir`), loaded, stopped.
fn run_relay(
    cfg: &CompareConfig,
    dir: &Path,
    runtime: &tokio::runtime::Runtime,
) -> Result<Report, CompareError> {
    let (server, addr) = start_relay(cfg, dir)?;
    let report = runtime.block_on(loadgen::run(LoadConfig {
        relay: addr,
        clients: cfg.clients,
        shards: cfg.shards,
        duration: cfg.duration,
        relay_pid: Some(server.pid()),
    }))?;
    drop(server);
    Ok(report)
}

/// One Redis run: a fresh `redis-server`, loaded, stopped.
fn run_redis(
    cfg: &CompareConfig,
    bin: &Path,
    runtime: &tokio::runtime::Runtime,
) -> Result<Report, CompareError> {
    let (server, port) = start_redis(bin, cfg.clients)?;
    let report = runtime
        .block_on(broker::run(&RedisLoad {
            addr: format!("127.0.0.1:{port}"),
            clients: cfg.clients,
            shards: cfg.shards,
            duration: cfg.duration,
            round: Duration::from_millis(cfg.round_ms),
            server_pid: Some(server.pid()),
        }))
        .map_err(CompareError::Redis)?;
    drop(server);
    Ok(report)
}

/// Runs `anonchatd`'s `round_cost` example (one daemon core with
/// `contacts` established sessions in a `shard`-client shard) and returns
/// its line, or why it could not run.
fn daemon_cost(bin: &Path, contacts: usize, shard: usize, round_ms: u64) -> String {
    if !bin.is_file() {
        return format!(
            "anonchatd: not measured ({} is missing: cargo build --release -p anonchatd --example round_cost)",
            bin.display()
        );
    }
    match Command::new(bin)
        .args([
            contacts.to_string(),
            shard.to_string(),
            round_ms.to_string(),
        ])
        .arg("400")
        .stderr(Stdio::inherit())
        .output()
    {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        Ok(out) => format!("anonchatd: round_cost failed ({})", out.status),
        Err(e) => format!("anonchatd: cannot run {}: {e}", bin.display()),
    }
}
