//! `anonchatd`: the per-user daemon. Thin: flags, logging, then
//! `anonchatd::run`.

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::time::Duration;

use anonchatd::config::Proxy;
use anonchatd::core::Settings;
use anonchatd::paths::Paths;
use clap::Parser;

/// The anonchat daemon: holds your keys and the relay connection, and serves
/// JSON-RPC on a local socket for `anonctl` and the GUI. Runs in the
/// foreground and logs to stderr (never message text or keys).
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Where identity, contacts and session state live (default: the XDG data dir).
    #[arg(long, env = "ANONCHAT_HOME")]
    home: Option<PathBuf>,
    /// The JSON-RPC socket (default: $`XDG_RUNTIME_DIR/anonchatd.sock`).
    #[arg(long, env = "ANONCHAT_SOCKET")]
    socket: Option<PathBuf>,
    /// Reach the relay through a SOCKS5 proxy, e.g. Tor: <socks5://127.0.0.1:9050>.
    /// Saved in the home's configuration: it stays in force after restarts
    /// (remove it with `anonctl config proxy none`).
    #[arg(long, env = "ANONCHAT_PROXY")]
    proxy: Option<Proxy>,
    /// Send a message again if not acknowledged within this many seconds.
    #[arg(long, default_value_t = anonchatd::core::DEFAULT_RETRANSMIT_AFTER.as_secs())]
    retransmit_s: u64,
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
    harden();
    let mut settings = Settings::new(Paths::resolve(args.home, args.socket)?);
    settings.retransmit_after = Duration::from_secs(args.retransmit_s.max(1));
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(anonchatd::run(settings, args.proxy))
}

/// Keeps key material out of core dumps and away from other processes of
/// the same user (no ptrace attach, no /proc/PID/mem), as rbw's agent does.
fn harden() {
    use nix::sys::resource::{Resource, setrlimit};
    if let Err(e) = setrlimit(Resource::RLIMIT_CORE, 0, 0) {
        tracing::warn!(error = %e, "cannot disable core dumps");
    }
    if let Err(e) = nix::sys::prctl::set_dumpable(false) {
        tracing::warn!(error = %e, "cannot make the process non-dumpable");
    }
}
