//! A hostile relay for tests, built on `anonchat_protocol::wire`: it speaks
//! the real protocol to real daemons, but announces whatever round length
//! it likes, closes rounds on its own clock, can lie about round numbers,
//! withhold one client's cells from another's batches (different batches
//! for different clients), inject thousands of mutated copies of a cell,
//! and cut every connection. It records, per connection, the HELLO's
//! resume point, when the WELCOME went out, when each batch was written
//! and when each cell was read: the batch→cell delays the send schedule
//! must keep independent of what a client does.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anonchat_protocol::wire::{
    ClientFrame, LinkSealer, MAX_BATCH_CELLS, RelayAddress, RelayFrame, RelayKeypair, RelayParams,
    Welcome, frame_wire_len, handshake_len, respond, seal_batch,
};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};

/// How the relay misbehaves; change it at any time through
/// [`Hostile::behave`].
#[derive(Debug, Clone, Default)]
#[allow(
    clippy::struct_excessive_bools,
    reason = "independent switches of a test double, any combination of which is meant"
)]
pub struct Behaviour {
    /// Number the next batch so (once), instead of the next round.
    pub lie_next: Option<u64>,
    /// Leave the cells of connection `.0` out of connection `.1`'s batches.
    pub withhold: Option<(usize, usize)>,
    /// Put this many mutated copies (one flipped bit each, tag intact) of
    /// connection `.0`'s cell into every batch.
    pub mutated_copies: Option<(usize, usize)>,
    /// Close every connection at the next round.
    pub kick: bool,
    /// Write each member's batch this long after the previous member's
    /// (so that clients do not compete for the CPU while they read).
    pub stagger: Option<Duration>,
    /// Announce this open round in every WELCOME instead of the real one.
    pub welcome_open_round: Option<u64>,
    /// At the next round, write this many batches back to back (rounds
    /// numbered one after the other), once.
    pub burst: Option<u64>,
    /// Close rounds but write no batch.
    pub silent: bool,
    /// Put the previous round's cells into every batch again (a replay).
    pub replay: bool,
    /// Put every cell into its batch twice.
    pub duplicate: bool,
    /// Shuffle the cells of every batch.
    pub reorder: bool,
}

/// What the relay saw of one connection.
#[derive(Debug, Clone)]
pub struct ConnLog {
    /// The HELLO's resume point.
    pub resume_after: Option<u64>,
    /// When the WELCOME was written.
    pub welcome_at: Instant,
    /// The open round announced in the WELCOME.
    pub open_round: u64,
    /// (round, when its batch header was written).
    pub batches: Vec<(u64, Instant)>,
    /// (round the client named, when the cell was read).
    pub cells: Vec<(u64, Instant)>,
}

impl ConnLog {
    /// Batch→cell delays: for each batch of round `r`, the time until the
    /// cell for `r + 1` was read, with `r`.
    pub fn delays(&self) -> Vec<(u64, Duration)> {
        let cells: HashMap<u64, Instant> = self.cells.iter().copied().collect();
        self.batches
            .iter()
            .filter_map(|&(r, at)| {
                let c = cells.get(&(r + 1))?;
                Some((r, c.checked_duration_since(at)?))
            })
            .collect()
    }

    /// WELCOME→first cell.
    pub fn first_cell_after_welcome(&self) -> Option<Duration> {
        let &(_, at) = self.cells.first()?;
        at.checked_duration_since(self.welcome_at)
    }
}

struct Member {
    conn: usize,
    shard: u32,
    wr: OwnedWriteHalf,
    sealer: LinkSealer,
}

/// Cells of the open round: (connection, cell).
type Pending = Vec<(usize, Vec<u8>)>;

#[derive(Default)]
struct State {
    behaviour: Behaviour,
    logs: Vec<ConnLog>,
    pending: Pending,
    /// The cells of the round closed last (for replays).
    previous: Pending,
    open_round: u64,
    members: Vec<Member>,
}

/// The hostile relay, running on 127.0.0.1 until dropped.
pub struct Hostile {
    /// Its address, `anonchat://127.0.0.1:PORT/#KEY`.
    pub address: String,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Hostile {
    /// Starts a relay that announces `announced_ms` rounds, closes one
    /// every `period` and numbers them from `unix_ms / announced_ms`, one
    /// by one; its WELCOME claims `backlog_rounds` rounds of backlog.
    pub fn start(
        cell_size: usize,
        announced_ms: u32,
        period: Duration,
        backlog_rounds: u64,
    ) -> Self {
        let keypair = RelayKeypair::generate(&mut rand::rng());
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        std_listener.set_nonblocking(true).expect("nonblocking");
        let port = std_listener.local_addr().expect("addr").port();
        let address = RelayAddress::new("127.0.0.1", port, *keypair.public())
            .expect("address")
            .to_string();
        let state = Arc::new(Mutex::new(State {
            open_round: unix_ms() / u64::from(announced_ms.max(1)),
            ..State::default()
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let params = RelayParams {
            cell_size,
            round_ms: announced_ms,
        };
        let thread = {
            let state = Arc::clone(&state);
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(async move {
                    let listener = TcpListener::from_std(std_listener).expect("listener");
                    let keypair = Arc::new(keypair);
                    let accept = {
                        let state = Arc::clone(&state);
                        tokio::spawn(async move {
                            while let Ok((stream, peer)) = listener.accept().await {
                                let state = Arc::clone(&state);
                                let keypair = Arc::clone(&keypair);
                                tokio::spawn(serve(
                                    stream,
                                    peer,
                                    keypair,
                                    params,
                                    state,
                                    backlog_rounds,
                                ));
                            }
                        })
                    };
                    let mut tick = tokio::time::interval(period);
                    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    while !stop.load(Ordering::Relaxed) {
                        tick.tick().await;
                        close_round(&state, cell_size).await;
                    }
                    accept.abort();
                });
            })
        };
        Self {
            address,
            state,
            stop,
            thread: Some(thread),
        }
    }

    /// Changes how the relay behaves from the next round on.
    pub fn behave(&self, f: impl FnOnce(&mut Behaviour)) {
        f(&mut lock(&self.state).behaviour);
    }

    /// What the relay saw of every connection so far, in the order they
    /// joined.
    pub fn logs(&self) -> Vec<ConnLog> {
        lock(&self.state).logs.clone()
    }

    /// Connections currently joined.
    pub fn members(&self) -> usize {
        lock(&self.state).members.len()
    }
}

impl Drop for Hostile {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Handshake, HELLO, WELCOME, then read cells until the connection ends.
async fn serve(
    stream: TcpStream,
    _peer: SocketAddr,
    keypair: Arc<RelayKeypair>,
    params: RelayParams,
    state: Arc<Mutex<State>>,
    backlog_rounds: u64,
) {
    let _ = stream.set_nodelay(true);
    let (mut rd, mut wr) = stream.into_split();
    let mut prefix = [0u8; 2];
    if rd.read_exact(&mut prefix).await.is_err() {
        return;
    }
    let Ok(len) = handshake_len(prefix) else {
        return;
    };
    let mut msg1 = vec![0u8; len];
    if rd.read_exact(&mut msg1).await.is_err() {
        return;
    }
    let Ok(out) = respond(&keypair, &msg1, params) else {
        return;
    };
    if wr.write_all(&out.reply).await.is_err() {
        return;
    }
    let Ok(link) = out.link else { return };
    let (mut sealer, mut opener) = link.split();
    let mut frame = vec![0u8; frame_wire_len(params.cell_size)];
    if rd.read_exact(&mut frame).await.is_err() {
        return;
    }
    let Ok(ClientFrame::Hello {
        shard,
        resume_after,
    }) = opener.open_client(&frame)
    else {
        return;
    };
    let conn = {
        let mut st = lock(&state);
        let open_round = st.open_round;
        let welcome = RelayFrame::Welcome(Welcome {
            shard,
            open_round: st.behaviour.welcome_open_round.unwrap_or(open_round),
            oldest_held: open_round.saturating_sub(backlog_rounds),
        });
        let bytes: Vec<u8> = match sealer.seal_relay(&welcome) {
            Ok(b) => b,
            Err(_) => return,
        };
        // Written under the lock, so no batch overtakes the WELCOME; the
        // socket buffer takes it at once.
        if wr.try_write(&bytes).ok() != Some(bytes.len()) {
            return;
        }
        let conn = st.logs.len();
        st.logs.push(ConnLog {
            resume_after,
            welcome_at: Instant::now(),
            open_round,
            batches: Vec::new(),
            cells: Vec::new(),
        });
        st.members.push(Member {
            conn,
            shard,
            wr,
            sealer,
        });
        conn
    };
    while rd.read_exact(&mut frame).await.is_ok() {
        let read_at = Instant::now();
        let Ok(ClientFrame::Cell { round, cell }) = opener.open_client(&frame) else {
            break;
        };
        let mut st = lock(&state);
        st.logs[conn].cells.push((round, read_at));
        st.pending.push((conn, cell));
    }
    lock(&state).members.retain(|m| m.conn != conn);
}

/// Closes the open round: every member gets its batch (after whatever the
/// behaviour does to it), and the time each was written is logged.
async fn close_round(state: &Arc<Mutex<State>>, cell_size: usize) {
    let (round, pending, behaviour, mut members) = take_round(state);
    let previous = std::mem::replace(&mut lock(state).previous, pending.clone());
    if behaviour.kick {
        return; // dropping the members closes their connections
    }
    if behaviour.silent {
        put_back(state, members);
        return;
    }
    if let Some(n) = behaviour.burst {
        burst(state, members, round, n, cell_size).await;
        return;
    }
    let copies = mutated_copies(&pending, &behaviour, cell_size);
    let pending = rearranged(pending, previous, &behaviour);
    let mut written = Vec::new();
    let mut failed = Vec::new();
    let closed_at_us = unix_ms() * 1000;
    let body_for = |conn: Option<usize>| {
        let mut plain = Vec::with_capacity((pending.len() + copies.len()) * cell_size);
        for (from, cell) in &pending {
            if conn.is_none() || behaviour.withhold != Some((*from, conn.unwrap_or(0))) {
                plain.extend_from_slice(cell);
            }
        }
        for c in &copies {
            plain.extend_from_slice(c);
        }
        plain
    };
    // Seal once and write to all (as the real relay does), unless members
    // get different batches.
    let shared = behaviour
        .withhold
        .is_none()
        .then(|| members.first().map(|m| m.shard))
        .flatten()
        .and_then(|shard| {
            seal_batch(
                &mut rand::rng(),
                shard,
                round,
                closed_at_us,
                cell_size,
                body_for(None),
            )
            .ok()
        });
    for m in &mut members {
        let own;
        let batch = if let Some(b) = &shared {
            b
        } else {
            let Ok(b) = seal_batch(
                &mut rand::rng(),
                m.shard,
                round,
                closed_at_us,
                cell_size,
                body_for(Some(m.conn)),
            ) else {
                continue;
            };
            own = b;
            &own
        };
        let header = RelayFrame::Batch {
            round,
            closed_at_us,
            cells: batch.cells,
            key: batch.key.clone(),
            body_hash: batch.body_hash,
        };
        let Ok(header) = m.sealer.seal_relay(&header) else {
            continue;
        };
        // The clock starts as the header is written (just before: the
        // client's answer may come back before this thread runs again): a
        // client may, and the send schedule does, answer before the body
        // has arrived.
        let at = Instant::now();
        if m.wr.write_all(&header).await.is_err() {
            failed.push(m.conn);
            continue;
        }
        if m.wr.write_all(&batch.body).await.is_err() {
            failed.push(m.conn);
            continue;
        }
        written.push((m.conn, at));
        if let Some(gap) = behaviour.stagger {
            tokio::time::sleep(gap).await;
        }
    }
    let mut st = lock(state);
    for (conn, at) in written {
        st.logs[conn].batches.push((round, at));
    }
    // Members that joined meanwhile were pushed to the new list.
    members.retain(|m| !failed.contains(&m.conn));
    members.append(&mut st.members);
    st.members = members;
}

/// Ends the open round: its number (or the lie told for it), its cells,
/// the behaviour for it, and the members (taken out of the state while
/// their batches are written).
fn take_round(state: &Arc<Mutex<State>>) -> (u64, Pending, Behaviour, Vec<Member>) {
    let mut st = lock(state);
    let mut round = st.open_round;
    st.open_round += 1;
    let behaviour = st.behaviour.clone();
    if let Some(lie) = st.behaviour.lie_next.take() {
        round = lie;
    }
    st.behaviour.kick = false;
    if let Some(n) = st.behaviour.burst.take() {
        st.open_round += n.saturating_sub(1);
    }
    let pending = std::mem::take(&mut st.pending);
    (round, pending, behaviour, std::mem::take(&mut st.members))
}

/// Puts the members back (with those who joined meanwhile).
fn put_back(state: &Arc<Mutex<State>>, mut members: Vec<Member>) {
    let mut st = lock(state);
    members.append(&mut st.members);
    st.members = members;
}

/// Writes `n` empty batches, rounds `round..round + n`, back to back to
/// every member.
async fn burst(
    state: &Arc<Mutex<State>>,
    mut members: Vec<Member>,
    round: u64,
    n: u64,
    cell_size: usize,
) {
    let closed_at_us = unix_ms() * 1000;
    let mut failed = Vec::new();
    for r in round..round + n {
        let Ok(batch) = seal_batch(
            &mut rand::rng(),
            members.first().map_or(0, |m| m.shard),
            r,
            closed_at_us,
            cell_size,
            Vec::new(),
        ) else {
            continue;
        };
        for m in &mut members {
            let header = RelayFrame::Batch {
                round: r,
                closed_at_us,
                cells: batch.cells,
                key: batch.key.clone(),
                body_hash: batch.body_hash,
            };
            let Ok(header) = m.sealer.seal_relay(&header) else {
                continue;
            };
            if m.wr.write_all(&header).await.is_err() || m.wr.write_all(&batch.body).await.is_err()
            {
                failed.push(m.conn);
            }
        }
    }
    let mut st = lock(state);
    members.retain(|m| !failed.contains(&m.conn));
    members.append(&mut st.members);
    st.members = members;
}

/// The round's cells as the behaviour serves them: with the previous
/// round's again (replay), each twice (duplicate), shuffled (reorder).
fn rearranged(pending: Pending, previous: Pending, behaviour: &Behaviour) -> Pending {
    use rand::seq::SliceRandom as _;
    let mut cells = pending;
    if behaviour.replay {
        cells.extend(previous);
    }
    if behaviour.duplicate {
        let again = cells.clone();
        cells.extend(again);
    }
    if behaviour.reorder {
        cells.shuffle(&mut rand::rng());
    }
    cells
}

/// The mutated copies the behaviour asks for: one flipped bit each, after
/// the tag, so that each matches the tag of the cell it copies.
fn mutated_copies(
    pending: &[(usize, Vec<u8>)],
    behaviour: &Behaviour,
    cell_size: usize,
) -> Vec<Vec<u8>> {
    let mut copies = Vec::new();
    if let Some((from, n)) = behaviour.mutated_copies
        && let Some((_, cell)) = pending.iter().find(|(c, _)| *c == from)
    {
        // A batch holds at most MAX_BATCH_CELLS cells (a client refuses
        // more): the copies fill it up to that.
        let n = n.min(MAX_BATCH_CELLS as usize - pending.len());
        for i in 0..n {
            let bit = 16 * 8 + i % ((cell_size - 16) * 8);
            let mut bad = cell.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            copies.push(bad);
        }
    }
    copies
}
