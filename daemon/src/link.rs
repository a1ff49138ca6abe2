//! The relay connection: lockstep with the relay's rounds, one cell per
//! round (real or cover, prepared the same way and sent at the same offset
//! after the batch), reconnects with exponential backoff and jitter, resume
//! from the last round seen. Runs only while the daemon is unlocked.

use std::sync::Arc;
use std::time::Duration;

use anonchat_ipc::LinkState;
use anonchat_protocol::wire::RelayAddress;
use anonchat_relay_client::{self as client, Connected, Incoming};
use rand::RngExt as _;
use tokio::net::TcpStream;

use crate::config::Config;
use crate::core::Core;

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

/// Runs until the daemon shuts down.
pub async fn run(core: Arc<Core>) {
    let mut unlocked = core.watch_unlocked();
    let mut config = core.watch_config();
    let mut backoff = BACKOFF_MIN;
    loop {
        if !*unlocked.borrow_and_update() {
            core.set_link(LinkState::Offline, None);
            tokio::select! {
                () = core.shutdown.cancelled() => return,
                r = unlocked.changed() => if r.is_err() { return },
            }
            continue;
        }
        let Some((relay, shard, resume)) = core.link_target() else {
            tokio::time::sleep(BACKOFF_MIN).await;
            continue;
        };
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
                if let Err(e) = core.set_round_ms(conn.params.round_ms) {
                    core.set_link(LinkState::Retrying, Some(e.to_string()));
                    if !retry_wait(&core, &mut config, &mut backoff).await {
                        return;
                    }
                    continue;
                }
                backoff = BACKOFF_MIN;
                core.set_link(LinkState::Connected, None);
                tracing::info!("connected to the relay");
                let end = tokio::select! {
                    () = core.shutdown.cancelled() => return,
                    r = unlocked.changed() => { if r.is_err() { return } continue }
                    // The proxy setting changed: redial the new way.
                    r = config.changed() => { if r.is_err() { return } continue }
                    e = lockstep(&core, conn) => e,
                };
                tracing::info!(reason = %end, "relay connection ended");
                end
            }
            Ok(Err(e)) => e,
            Err(_) => "timed out".to_owned(),
        };
        core.set_link(LinkState::Retrying, Some(error));
        if !retry_wait(&core, &mut config, &mut backoff).await {
            return;
        }
    }
}

/// Waits before the next dial: exponential backoff with full jitter, cut
/// short by a change of the proxy setting. False once the daemon stops.
async fn retry_wait(
    core: &Core,
    config: &mut tokio::sync::watch::Receiver<Config>,
    backoff: &mut Duration,
) -> bool {
    let wait = rand::rng().random_range(BACKOFF_MIN..=*backoff);
    *backoff = (*backoff * 2).min(BACKOFF_MAX);
    tokio::select! {
        () = core.shutdown.cancelled() => false,
        () = tokio::time::sleep(wait) => true,
        r = config.changed() => r.is_ok(),
    }
}

/// Holds one connection: answers every batch with exactly one cell.
async fn lockstep(core: &Arc<Core>, conn: Connected<TcpStream>) -> String {
    let Connected {
        params,
        welcome,
        mut sender,
        mut receiver,
    } = conn;
    // Cells go out a fixed time after the batch, whether real or cover, so
    // preparing a real one (and saving state) does not show in the timing.
    let offset = Duration::from_millis(u64::from(params.round_ms / 5).min(150));
    // The first cell answers the round open at join.
    let first = {
        let core = Arc::clone(core);
        let round = welcome.open_round;
        tokio::task::spawn_blocking(move || core.prepare_cell(round)).await
    };
    let cell = match first {
        Ok(Ok(cell)) => cell,
        Ok(Err(e)) => return e.to_string(),
        Err(_) => return "internal error".to_owned(),
    };
    if let Err(e) = sender.send_cell(welcome.open_round, cell).await {
        return e.to_string();
    }
    loop {
        let batch = match receiver.next().await {
            Ok(Incoming::Batch(b)) => b,
            Ok(Incoming::Closed { code, reason }) => {
                return format!("relay closed the connection ({code}): {reason}");
            }
            Err(e) => return e.to_string(),
        };
        let received = tokio::time::Instant::now();
        // Backlog batches (rounds already over) are read, not answered.
        // The open round already has our cell (sent above); later rounds
        // get one each.
        let reply = (batch.round >= welcome.open_round).then_some(batch.round + 1);
        let core2 = Arc::clone(core);
        let cells: Vec<Vec<u8>> = batch.batch.cells().map(<[u8]>::to_vec).collect();
        let round = batch.round;
        let out = tokio::task::spawn_blocking(move || {
            let refs: Vec<&[u8]> = cells.iter().map(Vec::as_slice).collect();
            core2.receive_batch(round, &refs)?;
            reply.map(|r| core2.prepare_cell(r)).transpose()
        })
        .await;
        let cell = match out {
            Ok(Ok(cell)) => cell,
            Ok(Err(e)) => return e.to_string(),
            Err(_) => return "internal error".to_owned(),
        };
        let (Some(reply), Some(cell)) = (reply, cell) else {
            continue;
        };
        tokio::time::sleep_until(received + offset).await;
        if let Err(e) = sender.send_cell(reply, cell).await {
            return e.to_string();
        }
    }
}
