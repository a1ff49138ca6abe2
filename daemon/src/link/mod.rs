//! The relay connection: lockstep with the relay's rounds, one cell per
//! round (real or cover), prepared ahead and sent on receipt of the batch
//! header (see [`lockstep::run`]); reconnects with exponential backoff and jitter;
//! resume from the last round seen only after a short outage. Runs only
//! while the daemon is unlocked.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anonchat_ipc::LinkState;
use anonchat_protocol::wire::RelayAddress;
use anonchat_relay_client::{self as client, Connected};
use rand::RngExt as _;
use tokio::net::TcpStream;

use crate::config::Config;
use crate::core::Core;

mod lockstep;

const BACKOFF_MIN: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

/// Dials the relay: directly, or, with a proxy configured, only through it
/// (never directly: fail-closed). Through the proxy the relay's host name
/// is resolved by the proxy (no DNS leak), and the home's isolation token
/// is the SOCKS5 username and password (Tor's stream isolation).
async fn dial(
    relay: &RelayAddress,
    shard: u32,
    resume: Option<u64>,
    config: &Config,
) -> Result<Connected<TcpStream>, String> {
    let Some(proxy) = &config.proxy else {
        return client::connect(relay, shard, resume)
            .await
            .map_err(|e| e.to_string());
    };
    let host = relay.host();
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let stream = tokio_socks::tcp::Socks5Stream::connect_with_password(
        proxy.addr.as_str(),
        (host, relay.port()),
        &config.isolation,
        &config.isolation,
    )
    .await
    .map_err(|e| match e {
        tokio_socks::Error::Io(io) => format!(
            "the proxy {proxy} is unreachable ({io}); not connecting without it (start it, or remove it with `anonctl config proxy none`)"
        ),
        other => format!("the proxy {proxy} refused the connection to the relay: {other}"),
    })?;
    let _ = stream.set_nodelay(true);
    client::join(stream.into_inner(), relay.key(), shard, resume)
        .await
        .map_err(|e| e.to_string())
}

/// Starts the link on a thread and a runtime of its own, and runs it
/// until the daemon shuts down.
///
/// Nothing else runs there: the cell that answers a batch leaves from
/// that thread as soon as the batch header is read, so no RPC call, no
/// save (a file write and two fsyncs, done on blocking threads, which an
/// RPC handler may also do on the main runtime's workers) and no other
/// task can hold it up. Only the prepared cell is shared.
pub fn spawn(core: Arc<Core>) -> std::io::Result<std::thread::JoinHandle<()>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("anonchat-link".to_owned())
        .spawn(move || runtime.block_on(run(core)))
}

/// Runs until the daemon shuts down.
async fn run(core: Arc<Core>) {
    let mut unlocked = core.watch_unlocked();
    let mut config = core.watch_config();
    let mut backoff = BACKOFF_MIN;
    // The last round whose batch this link read off the wire (processed
    // or not: a queue left at a disconnect is still read, in the
    // background), so that the HELLO's resume point does not show how far
    // the client got through its work.
    let last_read = Arc::new(AtomicU64::new(0));
    // Where the next dial goes, fetched before the wait that precedes it:
    // the core's lock may wait on a save, and no such wait may come
    // between the end of the wait and the dial.
    let mut target = None;
    loop {
        if !*unlocked.borrow_and_update() {
            core.set_link(LinkState::Offline, None);
            tokio::select! {
                () = core.shutdown.cancelled() => return,
                r = unlocked.changed() => if r.is_err() { return },
            }
            continue;
        }
        let Some((relay, shard, resume)) = target.take().or_else(|| core.link_target()) else {
            tokio::time::sleep(BACKOFF_MIN).await;
            continue;
        };
        let resume = resume.map(|r| r.max(last_read.load(Ordering::Relaxed)));
        core.set_link(LinkState::Connecting, None);
        let settings = config.borrow_and_update().clone();
        let connected = tokio::select! {
            () = core.shutdown.cancelled() => return,
            // The proxy setting changed mid-dial: drop this dial, redial.
            r = config.changed() => { if r.is_err() { return } continue }
            r = tokio::time::timeout(CONNECT_TIMEOUT, dial(&relay, shard, resume, &settings)) => r,
        };
        let error = match connected {
            Ok(Ok(conn)) if conn.params.cell_size != core.settings.cell_size => format!(
                "the relay uses {}-byte cells and this daemon's sessions use {}",
                conn.params.cell_size, core.settings.cell_size
            ),
            Ok(Ok(conn)) => {
                // Checked without the core's lock: nothing waits on a save
                // between the WELCOME and the first answer.
                if let Err(e) = core.check_welcome(
                    conn.params.round_ms,
                    conn.welcome.open_round,
                    conn.welcome.oldest_held,
                ) {
                    match retry_wait(&core, &mut config, &mut backoff, e.to_string()).await {
                        Some(next) => target = next,
                        None => return,
                    }
                    continue;
                }
                backoff = BACKOFF_MIN;
                let end = tokio::select! {
                    () = core.shutdown.cancelled() => return,
                    r = unlocked.changed() => { if r.is_err() { return } continue }
                    // The proxy setting changed: redial the new way.
                    r = config.changed() => { if r.is_err() { return } continue }
                    e = lockstep::run(&core, conn, &last_read) => e,
                };
                tracing::info!(reason = %end, "relay connection ended");
                end
            }
            Ok(Err(e)) => e,
            Err(_) => "timed out".to_owned(),
        };
        match retry_wait(&core, &mut config, &mut backoff, error).await {
            Some(next) => target = next,
            None => return,
        }
    }
}

/// Where the link connects: relay, shard, resume point.
type Target = (RelayAddress, u32, Option<u64>);

/// Waits before the next dial: exponential backoff with full jitter, cut
/// short by a change of the proxy setting. The deadline is fixed the
/// moment the connection ended, before anything that takes the core's
/// lock (which may wait on a save); the next dial's target is fetched
/// during the wait. `None` once the daemon stops.
async fn retry_wait(
    core: &Core,
    config: &mut tokio::sync::watch::Receiver<Config>,
    backoff: &mut Duration,
    error: String,
) -> Option<Option<Target>> {
    // Jitter on every wait, the first included (between one and four
    // times the minimum): the time from a drop to the next dial says
    // nothing the relay could time against the client's work.
    let wait = rand::rng().random_range(BACKOFF_MIN..=(*backoff).max(BACKOFF_MIN * 4));
    let deadline = tokio::time::Instant::now() + wait;
    *backoff = (*backoff * 2).min(BACKOFF_MAX);
    core.set_link(LinkState::Retrying, Some(error));
    let target = core.link_target();
    tokio::select! {
        () = core.shutdown.cancelled() => None,
        () = tokio::time::sleep_until(deadline) => Some(target),
        // A new proxy: dial at once, to a target fetched afresh.
        r = config.changed() => r.is_ok().then_some(None),
    }
}
