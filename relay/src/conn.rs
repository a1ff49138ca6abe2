//! One client connection: handshake and hello under a deadline, then a read
//! loop (this task) and a write loop (its own task) until either ends, the
//! client is kicked, or the relay shuts down.

use std::io::IoSlice;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anonchat_protocol::wire::{
    ClientFrame, CloseCode, LinkOpener, LinkSealer, RelayFrame, RelayKeypair, RelayParams,
    WireError, handshake_len, respond,
};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{OwnedSemaphorePermit, mpsc};
use tokio_util::sync::CancellationToken;

use crate::body::BodyFile;
use crate::per_ip::IpGuard;
use crate::redact::Redacted;
use crate::shard::{JoinRefused, Outgoing, Shard, Shards, StoredBatch, Submit};
use crate::{RelayConfig, Stats};

/// What every connection shares.
pub(crate) struct Ctx {
    pub(crate) config: RelayConfig,
    pub(crate) keypair: RelayKeypair,
    pub(crate) shards: Shards,
    pub(crate) stats: Arc<Stats>,
    pub(crate) shutdown: CancellationToken,
    pub(crate) next_id: AtomicU64,
}

/// Time the writer gets to flush a close frame before the socket is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

#[derive(Debug)]
enum End {
    PeerGone,
    Broken(#[allow(dead_code, reason = "read through Debug in the log")] String),
    Idle,
    Violation(&'static str),
}

pub(crate) async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    ctx: Arc<Ctx>,
    _permit: OwnedSemaphorePermit,
    ip: IpGuard,
) {
    let who = Redacted::new(peer, ctx.config.log_addresses);
    let (mut rd, mut wr) = stream.into_split();
    let hello = tokio::select! {
        r = tokio::time::timeout(ctx.config.handshake_timeout, handshake(&mut rd, &mut wr, &ctx)) => r,
        () = ctx.shutdown.cancelled() => return,
    };
    let (sealer, opener, shard_id, resume_after) = match hello {
        Ok(Ok(Some(v))) => v,
        Ok(Ok(None)) => return, // refused with a reply (version)
        Ok(Err(e)) => {
            Stats::inc(&ctx.stats.handshakes_failed);
            tracing::debug!(peer = %who, error = %e, "handshake failed");
            return;
        }
        Err(_) => {
            Stats::inc(&ctx.stats.handshakes_failed);
            tracing::debug!(peer = %who, "handshake timed out");
            return;
        }
    };

    let conn = ctx.next_id.fetch_add(1, Ordering::Relaxed);
    let (tx, rx) = mpsc::channel(ctx.config.send_queue);
    let kick = CancellationToken::new();
    let joined = ctx.shards.join(
        shard_id,
        conn,
        ip.key(),
        tx.clone(),
        kick.clone(),
        resume_after,
    );
    let shard = match joined {
        Ok(shard) => shard,
        Err(refused) => {
            let reason = match refused {
                JoinRefused::Full => {
                    "relay has no room for another shard; try later or another relay".to_owned()
                }
                JoinRefused::AddressShards => format!(
                    "your address is in {} shards already, this relay's limit; \
                     leave one, or try later or another relay",
                    ctx.config.max_shards_per_ip
                ),
            };
            let _ = tx.try_send(Outgoing::Close(CloseCode::Full, reason));
            drop(tx);
            let _ = tokio::time::timeout(CLOSE_GRACE, write_loop(wr, sealer, rx, &ctx)).await;
            return;
        }
    };
    let mut writer = tokio::spawn({
        let ctx = Arc::clone(&ctx);
        async move { write_loop(wr, sealer, rx, &ctx).await }
    });

    let end = tokio::select! {
        end = read_loop(rd, opener, &shard, conn, &ctx) => Some(end),
        () = kick.cancelled() => None,
        () = ctx.shutdown.cancelled() => None,
        _ = &mut writer => Some(End::PeerGone),
    };
    ctx.shards.leave(&shard, conn, ip.key());
    let close = match &end {
        Some(End::Idle) => {
            Stats::inc(&ctx.stats.idle_dropped);
            Some((CloseCode::Idle, "no cell received in time; reconnect"))
        }
        Some(End::Violation(why)) => Some((CloseCode::Violation, *why)),
        _ => None,
    };
    if let Some(e) = &end {
        tracing::debug!(peer = %who, shard = shard.id(), end = ?e, "connection ended");
    }
    if let Some((code, reason)) = close {
        let _ = tx.try_send(Outgoing::Close(code, reason.into()));
    }
    drop(tx);
    if tokio::time::timeout(CLOSE_GRACE, &mut writer)
        .await
        .is_err()
    {
        writer.abort();
    }
}

type Joined = (LinkSealer, LinkOpener, u32, Option<u64>);

/// Noise handshake, version check, then the hello frame. `Ok(None)` means
/// the client was refused with a reply.
async fn handshake(
    rd: &mut OwnedReadHalf,
    wr: &mut OwnedWriteHalf,
    ctx: &Ctx,
) -> Result<Option<Joined>, WireError> {
    let io = |e: std::io::Error| WireError::Noise(e.to_string());
    let mut prefix = [0u8; 2];
    rd.read_exact(&mut prefix).await.map_err(io)?;
    let mut msg1 = vec![0u8; handshake_len(prefix)?];
    rd.read_exact(&mut msg1).await.map_err(io)?;
    let params = RelayParams {
        cell_size: ctx.config.cell_size,
        round_ms: ctx.config.round_ms(),
    };
    let outcome = respond(&ctx.keypair, &msg1, params)?;
    wr.write_all(&outcome.reply).await.map_err(io)?;
    let link = match outcome.link {
        Ok(link) => link,
        Err(refusal) => {
            Stats::inc(&ctx.stats.version_refusals);
            tracing::debug!(%refusal, "refused a client");
            let _ = wr.shutdown().await;
            return Ok(None);
        }
    };
    let mut buf = vec![0u8; link.frame_wire_len()];
    let (sealer, mut opener) = link.split();
    rd.read_exact(&mut buf).await.map_err(io)?;
    match opener.open_client(&buf)? {
        ClientFrame::Hello {
            shard,
            resume_after,
        } => Ok(Some((sealer, opener, shard, resume_after))),
        ClientFrame::Cell { .. } => Err(WireError::BadField("expected hello, got a cell")),
    }
}

/// A connection's read buffer, in frames: larger than one frame, so that a
/// read that returns one frame is short and tells tokio the socket is
/// drained (no second `recv` that only says "empty" per cell).
const READ_BUFFER_FRAMES: usize = 4;

async fn read_loop(
    rd: OwnedReadHalf,
    mut opener: LinkOpener,
    shard: &Shard,
    conn: u64,
    ctx: &Ctx,
) -> End {
    let frame_len = anonchat_protocol::wire::frame_wire_len(ctx.config.cell_size);
    let mut rd = tokio::io::BufReader::with_capacity(READ_BUFFER_FRAMES * frame_len, rd);
    let mut buf = vec![0u8; frame_len];
    let mut violations = Violations::new(ctx.config.max_violations);
    loop {
        match tokio::time::timeout(ctx.config.idle_timeout, rd.read_exact(&mut buf)).await {
            Err(_) => return End::Idle,
            Ok(Err(_)) => return End::PeerGone,
            Ok(Ok(_)) => {}
        }
        let frame = match opener.open_client(&buf) {
            Ok(f) => f,
            Err(e) => return End::Broken(e.to_string()),
        };
        let outcome = match frame {
            ClientFrame::Cell { round, cell } => {
                Stats::inc(&ctx.stats.cells_in);
                shard.submit(conn, round, cell)
            }
            ClientFrame::Hello { .. } => Submit::Future,
        };
        match outcome {
            Submit::Accepted => {}
            Submit::Late => Stats::inc(&ctx.stats.cells_late),
            Submit::Unearned | Submit::Duplicate | Submit::Future => {
                Stats::inc(&ctx.stats.cells_refused);
                Stats::inc(&ctx.stats.violations);
                if violations.one_more() {
                    return End::Violation(violation_reason(outcome));
                }
            }
        }
    }
}

/// A connection's protocol violations: `max` are forgiven, the next one
/// cuts it (`docs/protocol.md`, "Rounds": "more than 3 violations").
struct Violations {
    count: u32,
    max: u32,
}

impl Violations {
    fn new(max: u32) -> Self {
        Self { count: 0, max }
    }

    /// Counts one; true if that is one too many.
    fn one_more(&mut self) -> bool {
        self.count = self.count.saturating_add(1);
        self.count > self.max
    }
}

/// The close reason for the violation that cut a client: what it did, and
/// what a client should do instead.
fn violation_reason(last: Submit) -> &'static str {
    match last {
        Submit::Unearned => {
            "more cells than batches received; send one cell per batch, for the round after it"
        }
        Submit::Duplicate => {
            "two cells for one round; send one cell per batch, for the round after it"
        }
        _ => {
            "a cell for a round not open yet, or a second hello; send one cell per batch, for the round after it"
        }
    }
}

async fn write_loop(
    mut wr: OwnedWriteHalf,
    mut sealer: LinkSealer,
    mut rx: mpsc::Receiver<Outgoing>,
    ctx: &Ctx,
) -> Result<(), WireError> {
    let io = |e: std::io::Error| WireError::Noise(e.to_string());
    while let Some(item) = rx.recv().await {
        match item {
            Outgoing::Welcome(w) => {
                let frame = sealer.seal_relay(&RelayFrame::Welcome(w))?;
                wr.write_all(&frame).await.map_err(io)?;
            }
            Outgoing::Batch(b) => {
                write_batch(&mut wr, &mut sealer, &b, b.file.as_deref(), ctx).await?;
            }
            Outgoing::Backlog(held) => {
                for b in &held {
                    write_batch(&mut wr, &mut sealer, b, None, ctx).await?;
                }
            }
            Outgoing::Close(code, reason) => {
                let frame = sealer.seal_relay(&RelayFrame::Close { code, reason })?;
                wr.write_all(&frame).await.map_err(io)?;
                break;
            }
        }
    }
    let _ = wr.shutdown().await;
    Ok(())
}

/// The per-client header (sealed under this client's Noise keys, carrying
/// the round's key and the body hash computed once at sealing), then the
/// shared sealed body: from the round's memory file when it has one (no
/// copy of the body in user space or into the socket, [`crate::body`]),
/// else from the shared buffer in one vectored write with the header.
async fn write_batch(
    wr: &mut OwnedWriteHalf,
    sealer: &mut LinkSealer,
    b: &StoredBatch,
    file: Option<&BodyFile>,
    ctx: &Ctx,
) -> Result<(), WireError> {
    let header = sealer.seal_relay(&RelayFrame::Batch {
        round: b.round,
        closed_at_us: b.closed_at_us,
        cells: b.cells,
        key: b.key.clone(),
        body_hash: b.body_hash,
    })?;
    let written = match file {
        Some(file) => {
            crate::body::write_with_file(wr, &header, file, &b.body, &ctx.shards.files).await
        }
        None => write_all_vectored(wr, &header, &b.body).await,
    };
    written.map_err(|e| WireError::Noise(e.to_string()))?;
    Stats::add(
        &ctx.stats.batch_bytes_written,
        (header.len() + b.body.len()) as u64,
    );
    Ok(())
}

async fn write_all_vectored(wr: &mut OwnedWriteHalf, a: &[u8], b: &[u8]) -> std::io::Result<()> {
    let mut bufs = [IoSlice::new(a), IoSlice::new(b)];
    let mut slices: &mut [IoSlice<'_>] = &mut bufs;
    while !slices.is_empty() {
        let n = wr.write_vectored(slices).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut slices, n);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `docs/protocol.md` says "more than 3 violations: `CLOSE(3)`": three
    /// are forgiven, the fourth cuts.
    #[test]
    fn the_fourth_violation_cuts_not_the_third() {
        let mut v = Violations::new(crate::defaults::MAX_VIOLATIONS);
        assert_eq!(crate::defaults::MAX_VIOLATIONS, 3);
        assert!(!v.one_more());
        assert!(!v.one_more());
        assert!(!v.one_more());
        assert!(v.one_more());
    }

    #[test]
    fn close_reasons_fit_a_close_frame_and_say_what_to_do() {
        for last in [Submit::Unearned, Submit::Duplicate, Submit::Future] {
            let reason = violation_reason(last);
            assert!(
                reason.len() <= anonchat_protocol::wire::MAX_CLOSE_REASON,
                "{reason}"
            );
            assert!(reason.contains("send one cell per batch"), "{reason}");
        }
    }
}
