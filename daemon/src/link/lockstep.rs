//! One relay connection in lockstep with the relay's rounds: every live
//! batch gets exactly one cell, **prepared ahead and sent on receipt of
//! the batch header**.
//!
//! The cell for round r+1 is built, and the state it advances saved,
//! while round r is open; when the header of batch r arrives that cell
//! leaves at once (offset zero, the same for every cell), before the body
//! is even read; only then is batch r read and the cell for r+2 prepared,
//! on a blocking thread, while the next batch is awaited. So no content,
//! no save, no body (however long, whatever it holds), no relay parameter
//! and no RPC call can move a cell in time: if the prepared cell is not
//! ready when its batch arrives (a slow disk), cover leaves instead and the
//! real cell is dropped (its message goes out again by retransmission).
//! Nothing answers the WELCOME: the first cell answers the first live
//! batch like every other, from a cell prepared while that round was open.
//! The cost: an answer to a message leaves one round later than it could.
//!
//! What the relay controls cannot make the connection end at a time that
//! depends on what the client does: headers that come faster than the
//! announced rounds allow (beyond a small burst), or that name a round the
//! wall clock refutes, end it as they are read, before any work; a job that
//! fails ends it when the next batch arrives, not when the job ended; a
//! daemon that falls behind drops the oldest unread batch (its messages
//! come again by retransmission) instead of hanging up.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anonchat_ipc::LinkState;
use anonchat_relay_client::{self as client, Announced, Connected};
use rand::Rng as _;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use crate::core::Core;

/// Batches read but not yet processed, at most; past it the oldest is
/// dropped.
const MAX_QUEUED_BATCHES: usize = 64;
/// Live batch headers that may come back to back (a relay tick that came
/// late and the next on time), beyond one per announced round.
const BURST: u64 = 4;
/// How long the relay may send nothing before the connection is given
/// up, on top of two announced rounds.
const SILENCE: Duration = Duration::from_secs(30);

/// The cell prepared for a round, once its state is saved.
type Prepared = Option<(u64, Vec<u8>)>;
/// What the reader hands over: a whole batch, or why the connection ends.
type Read = Result<client::ReceivedBatch, String>;
/// A running job: reads a batch and prepares a cell.
type Job = JoinHandle<crate::error::Result<Prepared>>;

/// Holds one connection until it ends; returns why.
pub(super) async fn run(
    core: &Arc<Core>,
    conn: Connected<TcpStream>,
    last_read: &AtomicU64,
) -> String {
    let Connected {
        params,
        welcome,
        sender,
        receiver,
    } = conn;
    let link = Link {
        core: Arc::clone(core),
        round_ms: params.round_ms,
        open_round: welcome.open_round,
        cell_size: params.cell_size,
        ready: Arc::default(),
    };
    // The reader runs on its own, from now on: a read cut half-way by the
    // select below would lose the stream's place. It answers each batch
    // itself, as soon as its header is read and before the body: no hop to
    // another task, and neither the body's length nor the time to check it
    // can move a cell. Then it hands the batch over to be read.
    let (batches, mut incoming) = tokio::sync::mpsc::channel(4);
    let reader = tokio::spawn(link.clone().read(sender, receiver, batches));
    let _reader = AbortOnDrop(reader);
    // Only now the state, on a blocking thread (its lock may wait on a
    // save, and this thread must stay free for the reader, which already
    // answers, with cover until the first prepared cell is ready).
    if let Err(e) = join_state(core, params.round_ms, &welcome).await {
        return e;
    }
    let mut job = Some(spawn_job(core, None, welcome.open_round.checked_add(1)));
    let mut queue: VecDeque<(u64, Vec<Vec<u8>>)> = VecDeque::new();
    let mut failed: Option<String> = None;
    let silence = SILENCE + Duration::from_millis(u64::from(params.round_ms) * 2);
    let end = loop {
        tokio::select! {
            next = tokio::time::timeout(silence, incoming.recv()) => {
                let batch = match next {
                    Ok(Some(Ok(batch))) => batch,
                    Ok(Some(Err(reason))) => break reason,
                    Ok(None) => break "the connection's reader stopped".to_owned(),
                    Err(_) => {
                        break format!(
                            "the relay sent no round for {} s; reconnecting",
                            silence.as_secs()
                        );
                    }
                };
                // A job that failed ends the connection now, when a batch
                // arrives (a time the relay chose), not when the job ended
                // (a time that depends on what it read and saved).
                if let Some(reason) = failed.take() {
                    break reason;
                }
                last_read.fetch_max(batch.round, Ordering::Relaxed);
                if queue.len() >= MAX_QUEUED_BATCHES {
                    queue.pop_front();
                    tracing::warn!("this daemon falls behind the relay's rounds; an unread batch was dropped (its messages come again)");
                }
                let cells = batch.batch.cells().map(<[u8]>::to_vec).collect();
                queue.push_back((batch.round, cells));
                if job.is_none() {
                    job = link.next_job(&mut queue);
                }
            }
            done = async {
                match job.as_mut() {
                    Some(j) => j.await,
                    None => std::future::pending().await,
                }
            }, if job.is_some() => {
                job = None;
                match done {
                    Ok(Ok(Some(p))) => {
                        *link.ready.lock().unwrap_or_else(PoisonError::into_inner) = Some(p);
                    }
                    Ok(Ok(None)) => {}
                    Ok(Err(e)) => failed = Some(e.to_string()),
                    Err(_) => failed = Some("internal error".to_owned()),
                }
                if failed.is_none() {
                    job = link.next_job(&mut queue);
                } else {
                    queue.clear();
                }
            }
        }
    };
    if failed.is_none() {
        link.drain(job, queue);
    }
    end
}

/// Records the join in the core's state, on a blocking thread: its lock
/// may wait on a save, and the link's thread must stay free for the
/// reader, which already answers (with cover until the first prepared cell
/// is ready).
async fn join_state(
    core: &Arc<Core>,
    round_ms: u32,
    welcome: &anonchat_protocol::wire::Welcome,
) -> Result<(), String> {
    let core = Arc::clone(core);
    let (open, oldest) = (welcome.open_round, welcome.oldest_held);
    let joined = tokio::task::spawn_blocking(move || {
        core.joined(round_ms, open, oldest)?;
        core.set_link(LinkState::Connected, None);
        Ok::<(), crate::error::Error>(())
    })
    .await;
    match joined {
        Ok(Ok(())) => {
            tracing::info!("connected to the relay");
            Ok(())
        }
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("internal error".to_owned()),
    }
}

/// What the reader and the main loop share about one connection.
#[derive(Clone)]
struct Link {
    core: Arc<Core>,
    round_ms: u32,
    open_round: u64,
    cell_size: usize,
    /// The cell prepared for the next round.
    ready: Arc<Mutex<Prepared>>,
}

impl Link {
    /// Reads batch after batch: answers each live one on its header, then
    /// reads its body and hands it over. Ends (handing over why) at the
    /// first error, close, burst or lied round.
    async fn read(
        self,
        mut sender: client::CellSender<TcpStream>,
        mut receiver: client::BatchReceiver<TcpStream>,
        batches: tokio::sync::mpsc::Sender<Read>,
    ) {
        let mut pacer = Pacer::new(self.round_ms);
        let mut cover = self.cover();
        loop {
            let next = match receiver.next_header().await {
                Ok(Announced::Batch(header)) => match self.admit(&mut pacer, header.round) {
                    Err(reason) => Err(reason),
                    Ok(live) => {
                        let answered = if live {
                            self.answer(&mut sender, &mut cover, header.round).await
                        } else {
                            Ok(())
                        };
                        match answered {
                            Ok(()) => receiver.read_body(header).await.map_err(|e| e.to_string()),
                            Err(e) => Err(e),
                        }
                    }
                },
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
    }

    /// Whether the batch of `round` is live (answered) or backlog (read
    /// only); `Err` ends the connection, decided on the header alone: a
    /// live header that comes faster than the announced rounds allow, or
    /// whose answer (`round + 1`) or the cell its job prepares
    /// (`round + 2`) the wall clock refutes.
    fn admit(&self, pacer: &mut Pacer, round: u64) -> Result<bool, String> {
        if round < self.open_round {
            return Ok(false);
        }
        if !pacer.admit(Instant::now()) {
            return Err("the relay sends rounds faster than it announced; reconnecting".to_owned());
        }
        if !round
            .checked_add(2)
            .is_some_and(|r| self.core.round_acceptable(self.round_ms, r))
        {
            return Err(format!(
                "the relay's round {round} is not near this computer's clock; check the system clock, or use another relay"
            ));
        }
        Ok(true)
    }

    /// Answers the batch of `round` at once: the cell prepared for the
    /// next round, or the cover cell made in advance (a new one is made
    /// after it left).
    async fn answer(
        &self,
        sender: &mut client::CellSender<TcpStream>,
        cover: &mut Vec<u8>,
        round: u64,
    ) -> Result<(), String> {
        let reply = round + 1; // admitted: round + 2 did not overflow
        let prepared = self
            .ready
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let (cell, was_cover) = match prepared {
            Some((r, cell)) if r == reply => (cell, false),
            _ => (std::mem::take(cover), true),
        };
        let sent = sender.send_cell(reply, cell).await;
        if was_cover {
            *cover = self.cover();
        }
        sent.map_err(|e| e.to_string())
    }

    /// A cover cell: random bytes.
    fn cover(&self) -> Vec<u8> {
        let mut cell = vec![0u8; self.cell_size];
        rand::rng().fill_bytes(&mut cell);
        cell
    }

    /// Reads what was read but not yet processed, in the background (the
    /// next dial does not wait for it): the resume point is the last batch
    /// read off the wire, so nothing in the HELLO shows how far the work
    /// had got.
    fn drain(&self, job: Option<Job>, mut queue: VecDeque<(u64, Vec<Vec<u8>>)>) {
        if job.is_none() && queue.is_empty() {
            return;
        }
        let link = self.clone();
        tokio::spawn(async move {
            if let Some(j) = job {
                let _ = j.await;
            }
            while let Some(j) = link.next_job_read_only(&mut queue) {
                if !matches!(j.await, Ok(Ok(_))) {
                    return;
                }
            }
        });
    }

    /// Starts a job that only reads the oldest queued batch (the
    /// connection is gone: no cell to prepare).
    fn next_job_read_only(&self, queue: &mut VecDeque<(u64, Vec<Vec<u8>>)>) -> Option<Job> {
        let batch = queue.pop_front()?;
        Some(spawn_job(&self.core, Some(batch), None))
    }

    /// Starts the job for the oldest queued batch, if any: read it and, for
    /// a live batch, prepare the cell that answers the batch after it.
    fn next_job(&self, queue: &mut VecDeque<(u64, Vec<Vec<u8>>)>) -> Option<Job> {
        let (round, cells) = queue.pop_front()?;
        let prepare = (round >= self.open_round)
            .then(|| round.checked_add(2))
            .flatten();
        Some(spawn_job(&self.core, Some((round, cells)), prepare))
    }
}

/// Reads a batch (`None`: nothing to read) and prepares the cell for
/// `prepare` (`None`: none), on a blocking thread.
fn spawn_job(core: &Arc<Core>, batch: Option<(u64, Vec<Vec<u8>>)>, prepare: Option<u64>) -> Job {
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

/// A token bucket over live batch headers: one token per announced round,
/// at most [`BURST`] saved up. Counted in microseconds of credit (integers:
/// a header on the exact pace is never refused by a rounding error).
struct Pacer {
    /// The cost of one header: the announced round, in microseconds.
    cost: u64,
    /// Credit, at most `BURST × cost`.
    credit: u64,
    last: Option<Instant>,
}

impl Pacer {
    fn new(round_ms: u32) -> Self {
        let cost = u64::from(round_ms.max(1)) * 1000;
        Self {
            cost,
            credit: BURST * cost,
            last: None,
        }
    }

    /// Takes a token for a header read at `now`; false if none is left.
    fn admit(&mut self, now: Instant) -> bool {
        if let Some(last) = self.last {
            let us =
                u64::try_from(now.saturating_duration_since(last).as_micros()).unwrap_or(u64::MAX);
            self.credit = self.credit.saturating_add(us).min(BURST * self.cost);
        }
        self.last = Some(now);
        if self.credit >= self.cost {
            self.credit -= self.cost;
            true
        } else {
            false
        }
    }
}

/// Aborts a task when dropped (the reader ends with its connection).
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checked against a pacer without the bucket (every header admitted)
    /// and one without refill (the fifth header refused for good).
    #[test]
    fn headers_faster_than_the_rounds_are_refused_beyond_a_small_burst() {
        let mut p = Pacer::new(100);
        let t = Instant::now();
        for _ in 0..4 {
            assert!(p.admit(t));
        }
        assert!(!p.admit(t), "a fifth header at the same instant");
        assert!(p.admit(t + Duration::from_millis(100)));
        assert!(!p.admit(t + Duration::from_millis(150)));
        // At the announced pace, forever.
        let mut at = t + Duration::from_millis(200);
        for _ in 0..1000 {
            assert!(p.admit(at));
            at += Duration::from_millis(100);
        }
        // A late tick and the next on time.
        assert!(p.admit(at + Duration::from_millis(90)));
        assert!(p.admit(at + Duration::from_millis(100)));
    }
}
