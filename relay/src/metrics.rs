//! `--metrics ADDR`: the relay's counters in the Prometheus text format,
//! over plain HTTP/1.0 on the address the operator names (loopback, in the
//! shipped unit). Aggregates only: no label at all, so no client, address
//! or shard can appear; the values are the same counts the relay logs.
//!
//! Bounded: at most [`MAX_CONNECTIONS`] scrapes at once (more are closed at
//! once), a request is read for at most [`READ_TIMEOUT`] and
//! [`MAX_REQUEST`] bytes, one response of a fixed set of lines is written
//! (within [`WRITE_TIMEOUT`]), then the connection closes.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::Stats;

/// Scrapes served at once.
pub const MAX_CONNECTIONS: usize = 4;
/// The most bytes of a request read (its head; a body is not read).
pub const MAX_REQUEST: usize = 2048;
/// Time allowed to send the request head.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Time allowed to take the response.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// The gauges the relay reads at scrape time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Gauges {
    /// Connections open now, handshaking ones included.
    pub connections: usize,
    /// Clients joined to a shard now.
    pub clients: usize,
    /// Shards now.
    pub shards: usize,
    /// Bytes of batches held in all backlogs now.
    pub backlog_bytes: usize,
}

/// Renders the Prometheus text exposition: every metric `anonchat_relay_*`,
/// without labels.
pub fn render(stats: &Stats, g: Gauges) -> String {
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, value: u64| {
        let _ = writeln!(
            out,
            "# HELP anonchat_relay_{name} {help}\n# TYPE anonchat_relay_{name} {kind}\nanonchat_relay_{name} {value}"
        );
    };
    let as_u64 = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
    metric(
        "connections",
        "gauge",
        "Connections open, handshaking ones included.",
        as_u64(g.connections),
    );
    metric(
        "clients",
        "gauge",
        "Clients joined to a shard.",
        as_u64(g.clients),
    );
    metric("shards", "gauge", "Shards.", as_u64(g.shards));
    metric(
        "backlog_bytes",
        "gauge",
        "Bytes of batches held in RAM for reconnecting clients.",
        as_u64(g.backlog_bytes),
    );
    for (name, help, value) in counters(stats) {
        metric(name, "counter", help, value);
    }
    out
}

/// The counters: name, help, value.
fn counters(stats: &Stats) -> [(&'static str, &'static str, u64); 17] {
    let c = |counter| Stats::get(counter);
    [
        (
            "connections_accepted_total",
            "TCP connections accepted, refused ones included.",
            c(&stats.connections_accepted),
        ),
        (
            "connections_refused_total",
            "Connections closed at once for --max-clients or --max-per-ip.",
            c(&stats.connections_refused_full),
        ),
        (
            "handshake_failures_total",
            "Handshakes (and hellos) that failed or timed out.",
            c(&stats.handshakes_failed),
        ),
        (
            "version_refusals_total",
            "Clients refused for speaking another protocol version.",
            c(&stats.version_refusals),
        ),
        (
            "joins_total",
            "Clients that joined a shard.",
            c(&stats.clients_joined),
        ),
        (
            "joins_refused_total",
            "Clients refused a shard (--max-shards, --max-shards-per-ip).",
            c(&stats.joins_refused),
        ),
        (
            "shards_dropped_total",
            "Empty shards dropped to make room for new ones.",
            c(&stats.shards_dropped),
        ),
        (
            "rounds_closed_total",
            "Rounds closed.",
            c(&stats.rounds_closed),
        ),
        (
            "cells_received_total",
            "Cell frames received.",
            c(&stats.cells_in),
        ),
        (
            "cells_late_total",
            "Cells for a round already closed (dropped, not a violation).",
            c(&stats.cells_late),
        ),
        (
            "cells_dropped_total",
            "Cells refused as protocol violations (unearned, duplicate, future round).",
            c(&stats.cells_refused),
        ),
        (
            "cells_relayed_total",
            "Cells sealed into batches.",
            c(&stats.cells_relayed),
        ),
        (
            "batch_bytes_written_total",
            "Bytes of batches written to clients.",
            c(&stats.batch_bytes_written),
        ),
        (
            "slow_readers_dropped_total",
            "Clients dropped because their send queue was full.",
            c(&stats.slow_readers_dropped),
        ),
        (
            "idle_dropped_total",
            "Clients dropped for sending nothing within the idle timeout.",
            c(&stats.idle_dropped),
        ),
        (
            "violations_total",
            "Protocol violations.",
            c(&stats.violations),
        ),
        (
            "backlog_evictions_total",
            "Batches dropped from a backlog for lack of memory.",
            c(&stats.backlog_evictions),
        ),
    ]
}

/// Serves scrapes on `listener` until `shutdown`; `gauges` is read at each
/// scrape.
pub async fn serve(
    listener: TcpListener,
    stats: Arc<Stats>,
    gauges: impl Fn() -> Gauges + Send + Sync + 'static,
    shutdown: CancellationToken,
) {
    let gauges = Arc::new(gauges);
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let tasks = TaskTracker::new();
    loop {
        let stream = tokio::select! {
            () = shutdown.cancelled() => break,
            r = listener.accept() => match r {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        // Full: closed at once, nothing read.
        let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
            continue;
        };
        let stats = Arc::clone(&stats);
        let gauges = Arc::clone(&gauges);
        tasks.spawn(async move {
            let _permit = permit;
            scrape(stream, &stats, gauges()).await;
        });
    }
    tasks.close();
    tasks.wait().await;
}

/// Why a request gets no metrics.
#[derive(Debug, PartialEq, Eq)]
enum Refused {
    NotFound,
    BadRequest,
}

/// Reads a request head (bounded in size and time) and answers it.
async fn scrape(mut stream: TcpStream, stats: &Stats, gauges: Gauges) {
    let mut head = Vec::with_capacity(512);
    let read = tokio::time::timeout(READ_TIMEOUT, async {
        let mut buf = [0u8; 512];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
            let n = stream.read(&mut buf).await.ok()?;
            if n == 0 || head.len() + n > MAX_REQUEST {
                return None;
            }
            head.extend_from_slice(&buf[..n]);
        }
        Some(())
    })
    .await;
    let response = match read {
        Ok(Some(())) => match check(&head) {
            Ok(()) => response(
                "200 OK",
                "text/plain; version=0.0.4",
                &render(stats, gauges),
            ),
            Err(Refused::NotFound) => response("404 Not Found", "text/plain", "try /metrics\n"),
            Err(Refused::BadRequest) => response("400 Bad Request", "text/plain", "GET /metrics\n"),
        },
        // Too slow, too long or cut: no answer.
        _ => return,
    };
    let _ = tokio::time::timeout(WRITE_TIMEOUT, async {
        let _ = stream.write_all(response.as_bytes()).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

/// Only `GET /metrics` (or `/`) gets the metrics.
fn check(head: &[u8]) -> Result<(), Refused> {
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let mut words = line.split(|&b| b == b' ');
    match (words.next(), words.next()) {
        (Some(b"GET"), Some(b"/metrics" | b"/")) => Ok(()),
        (Some(b"GET"), Some(_)) => Err(Refused::NotFound),
        _ => Err(Refused::BadRequest),
    }
}

fn response(status: &str, content_type: &str, body: &str) -> String {
    format!(
        "HTTP/1.0 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every sample line is `name value` with no label; the values are the
    /// counters'. Mutation: a `{shard="…"}` label on a line fails.
    #[test]
    fn the_exposition_has_values_and_no_labels() {
        let stats = Stats::default();
        Stats::add(&stats.rounds_closed, 7);
        Stats::add(&stats.cells_late, 3);
        let text = render(
            &stats,
            Gauges {
                connections: 2,
                clients: 1,
                shards: 1,
                backlog_bytes: 4096,
            },
        );
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (name, value) = line.split_once(' ').unwrap();
            assert!(
                name.starts_with("anonchat_relay_") && !name.contains('{'),
                "{line}"
            );
            value.parse::<u64>().unwrap();
        }
        assert!(text.contains("\nanonchat_relay_rounds_closed_total 7\n"));
        assert!(text.contains("\nanonchat_relay_cells_late_total 3\n"));
        assert!(text.contains("\nanonchat_relay_backlog_bytes 4096\n"));
    }

    #[test]
    fn only_get_metrics_is_answered() {
        assert_eq!(check(b"GET /metrics HTTP/1.1\r\n"), Ok(()));
        assert_eq!(check(b"GET /other HTTP/1.1\r\n"), Err(Refused::NotFound));
        assert_eq!(
            check(b"POST /metrics HTTP/1.1\r\n"),
            Err(Refused::BadRequest)
        );
        assert_eq!(check(b"\xff\xfe"), Err(Refused::BadRequest));
    }
}
