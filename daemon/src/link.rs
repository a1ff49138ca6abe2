//! The relay connection: lockstep with the relay's rounds, one cell per
//! round (real or cover), prepared ahead and sent on receipt of the batch
//! (see [`lockstep`]); reconnects with exponential backoff and jitter;
//! resume from the last round seen only after a short outage. Runs only
//! while the daemon is unlocked.

use std::sync::Arc;
use std::time::Duration;

use anonchat_ipc::LinkState;
use anonchat_protocol::wire::RelayAddress;
use anonchat_relay_client::{self as client, Announced, Connected};
use rand::{Rng as _, RngExt as _};
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
                if let Err(e) = core.joined(
                    conn.params.round_ms,
                    conn.welcome.open_round,
                    conn.welcome.oldest_held,
                ) {
                    core.set_link(LinkState::Retrying, Some(e.to_string()));
                    if !retry_wait(&core, &mut config, &mut backoff).await {
                        return;
                    }
                    continue;
                }
                backoff = BACKOFF_MIN;
                core.traffic_meter().link(
                    conn.params.round_ms,
                    anonchat_protocol::wire::frame_wire_len(conn.params.cell_size),
                );
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

/// Batches read but not yet processed, at most (a daemon that falls this
/// far behind its relay drops the connection rather than grow).
const MAX_QUEUED_BATCHES: usize = 64;

/// The cell prepared for a round, once its state is saved.
type Prepared = Option<(u64, Vec<u8>)>;

/// Reads a batch (`None`: nothing to read) and prepares the cell for
/// `prepare` (`None`: none), on a blocking thread.
fn spawn_job(
    core: &Arc<Core>,
    batch: Option<(u64, Vec<Vec<u8>>)>,
    prepare: Option<u64>,
) -> tokio::task::JoinHandle<crate::error::Result<Prepared>> {
    let core = Arc::clone(core);
    tokio::task::spawn_blocking(move || {
        if let Some((round, cells)) = batch {
            let refs: Vec<&[u8]> = cells.iter().map(Vec::as_slice).collect();
            core.receive_batch(round, &refs)?;
        }
        prepare
            .map(|r| core.prepare_cell(r).map(|cell| (r, cell)))
            .transpose()
    })
}

/// Holds one connection: answers every live batch with exactly one cell,
/// **prepared ahead and sent on receipt**.
///
/// The cell for round r+1 is built, and the state it advances saved,
/// while round r is open; when the header of batch r arrives that cell
/// leaves at once (offset zero, the same for every cell), before the
/// body is even read; only then is batch r read and the cell for r+2
/// prepared, on a blocking thread, while the next batch is awaited. So
/// no content, no save, no body (however long, whatever it holds), no
/// relay parameter and no RPC call can move a cell in time: if the prepared cell is not ready when
/// its batch arrives (a slow disk), cover leaves instead and the real cell
/// is dropped (its message goes out again by retransmission). Nothing
/// answers the WELCOME: the first cell answers the first live batch like
/// every other, from a cell prepared while that round was open. The cost:
/// an answer to a message leaves one round later than it could.
async fn lockstep(core: &Arc<Core>, conn: Connected<TcpStream>) -> String {
    let Connected {
        params,
        welcome,
        mut sender,
        mut receiver,
    } = conn;
    let cell_size = params.cell_size;
    let open_round = welcome.open_round;
    // The cell prepared for the next round, shared with the reader.
    let ready: Arc<std::sync::Mutex<Prepared>> = Arc::default();
    // The reader runs on its own: a read cut half-way by the select below
    // would lose the stream's place. It answers each batch itself, as soon
    // as its header is read and before the body: no hop to another task,
    // and neither the body's length nor the time to check it can move a
    // cell. Then it hands the batch over to be read.
    let (batches, mut incoming) = tokio::sync::mpsc::channel(4);
    let reader = {
        let ready = Arc::clone(&ready);
        tokio::spawn(async move {
            loop {
                let next = match receiver.next_header().await {
                    Ok(Announced::Batch(header)) => {
                        let prepared = take(&ready);
                        match answer(open_round, cell_size, &mut sender, prepared, header.round)
                            .await
                        {
                            Ok(()) => receiver.read_body(header).await.map_err(|e| e.to_string()),
                            Err(e) => Err(e),
                        }
                    }
                    Ok(Announced::Closed { code, reason }) => {
                        Err(format!("relay closed the connection ({code}): {reason}"))
                    }
                    Err(e) => Err(e.to_string()),
                };
                let end = next.is_err();
                if batches.send(next).await.is_err() || end {
                    return;
                }
            }
        })
    };
    let _reader = AbortOnDrop(reader);
    let mut job = Some(spawn_job(core, None, open_round.checked_add(1)));
    let mut queue: std::collections::VecDeque<(u64, Vec<Vec<u8>>)> =
        std::collections::VecDeque::new();
    loop {
        tokio::select! {
            next = incoming.recv() => {
                let batch = match next {
                    Some(Ok(batch)) => batch,
                    Some(Err(reason)) => return reason,
                    None => return "the connection's reader stopped".to_owned(),
                };
                if queue.len() >= MAX_QUEUED_BATCHES {
                    return "this daemon cannot keep up with the relay's rounds".to_owned();
                }
                core.traffic_meter().batch(batch.batch.len(), batch.wire_bytes);
                let cells = batch.batch.cells().map(<[u8]>::to_vec).collect();
                queue.push_back((batch.round, cells));
                if job.is_none() {
                    job = next_job(core, &welcome, &mut queue);
                }
            }
            done = async {
                match job.as_mut() {
                    Some(j) => j.await,
                    None => std::future::pending().await,
                }
            }, if job.is_some() => {
                match done {
                    Ok(Ok(Some(p))) => {
                        *ready.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(p);
                    }
                    Ok(Ok(None)) => {}
                    Ok(Err(e)) => return e.to_string(),
                    Err(_) => return "internal error".to_owned(),
                }
                job = next_job(core, &welcome, &mut queue);
            }
        }
    }
}

/// Takes the prepared cell out of its slot.
fn take(ready: &std::sync::Mutex<Prepared>) -> Prepared {
    ready
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take()
}

/// Starts the job for the oldest queued batch, if any: read it and, for a
/// live batch, prepare the cell that answers the batch after it.
fn next_job(
    core: &Arc<Core>,
    welcome: &anonchat_protocol::wire::Welcome,
    queue: &mut std::collections::VecDeque<(u64, Vec<Vec<u8>>)>,
) -> Option<tokio::task::JoinHandle<crate::error::Result<Prepared>>> {
    let (round, cells) = queue.pop_front()?;
    let prepare = (round >= welcome.open_round)
        .then(|| round.checked_add(2))
        .flatten();
    Some(spawn_job(core, Some((round, cells)), prepare))
}

/// Aborts a task when dropped (the reader ends with its connection).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Answers the batch of `round` at once: the cell prepared for the next
/// round, or cover. Backlog batches (rounds already over) are read, not
/// answered. `Err(reason)` ends the connection.
async fn answer(
    open_round: u64,
    cell_size: usize,
    sender: &mut client::CellSender<TcpStream>,
    ready: Prepared,
    round: u64,
) -> Result<(), String> {
    if round < open_round {
        return Ok(());
    }
    let Some(reply) = round.checked_add(1) else {
        return Ok(());
    };
    let cell = match ready {
        Some((r, cell)) if r == reply => cell,
        _ => {
            let mut cover = vec![0u8; cell_size];
            rand::rng().fill_bytes(&mut cover);
            cover
        }
    };
    sender
        .send_cell(reply, cell)
        .await
        .map_err(|e| e.to_string())
}
