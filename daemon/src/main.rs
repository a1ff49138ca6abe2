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
    /// Fault injection for tests (hidden): every save of the session state
    /// first waits this many milliseconds (at most 1000), as on a very
    /// slow disk.
    #[arg(long, hide = true, default_value_t = 0)]
    test_slow_disk_ms: u64,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    init_logging();
    harden();
    anonchatd::memlock::lock_all();
    let mut settings = Settings::new(Paths::resolve(args.home, args.socket)?);
    settings.retransmit_after = Duration::from_secs(args.retransmit_s.max(1));
    if args.test_slow_disk_ms > 0 {
        settings.slow_disk = Duration::from_millis(args.test_slow_disk_ms.min(1000));
        tracing::warn!(
            ms = settings.slow_disk.as_millis(),
            "fault injection: every state save is slowed down (for tests only)"
        );
    }
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(anonchatd::run(settings, args.proxy))
}

/// Our own crates: they never log keys, passphrases, message text or names,
/// so `RUST_LOG` may turn them up to TRACE.
const OWN_TARGETS: [&str; 4] = [
    "anonchatd",
    "anonchat_ipc",
    "anonchat_protocol",
    "anonchat_relay_client",
];

/// Logs to stderr at `RUST_LOG` (default `info`), under a cap that
/// `RUST_LOG` cannot lift: every dependency's target at most INFO, and
/// jsonrpsee (whose DEBUG and TRACE events carry raw requests, responses
/// and notifications: passphrases, message text, names) at most WARN.
/// The cap is a second, separate filter layer: an event is written only if
/// both the `EnvFilter` and the cap enable it, whatever `RUST_LOG` says.
fn init_logging() {
    use tracing_subscriber::EnvFilter;
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let (env, invalid) = match std::env::var("RUST_LOG") {
        Ok(spec) => match EnvFilter::try_new(&spec) {
            Ok(env) => (env, None),
            Err(e) => (EnvFilter::new("info"), Some(e)),
        },
        Err(_) => (EnvFilter::new("info"), None),
    };
    // Targets match by prefix ("jsonrpsee" covers jsonrpsee-core,
    // jsonrpsee-server, jsonrpsee_core::…); the longest match wins.
    let cap = OWN_TARGETS.iter().fold(
        Targets::new()
            .with_default(LevelFilter::INFO)
            .with_target("jsonrpsee", LevelFilter::WARN),
        |cap, own| cap.with_target(*own, LevelFilter::TRACE),
    );
    tracing_subscriber::registry()
        .with(cap)
        .with(env)
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .init();
    if let Some(e) = invalid {
        tracing::warn!(error = %e, "RUST_LOG is not valid; logging at info");
    }
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
