//! The comparison run of the load generator: the same fan-out done by a
//! real broker, Redis pub/sub. Each client subscribes to its shard's
//! channel and publishes one 512-byte message per round; every subscriber
//! of the shard receives every message. No encryption, no constant-rate
//! rounds, no anonymity: the point is the cost of the fan-out itself.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpStream;
use tokio::sync::{Barrier, Mutex};

use crate::loadgen::Report;

/// A RESP command: an array of bulk strings.
pub fn resp_command(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", parts.len()).into_bytes();
    for p in parts {
        out.extend_from_slice(format!("${}\r\n", p.len()).as_bytes());
        out.extend_from_slice(p);
        out.extend_from_slice(b"\r\n");
    }
    out
}

async fn read_line<R: tokio::io::AsyncBufRead + Unpin>(r: &mut R) -> std::io::Result<String> {
    let mut line = String::new();
    if r.read_line(&mut line).await? == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    Ok(line.trim_end().to_owned())
}

/// Reads one RESP value, returning the bulk strings it holds (flattened).
async fn read_value<R: tokio::io::AsyncBufRead + Unpin>(
    r: &mut R,
) -> std::io::Result<Vec<Vec<u8>>> {
    let line = read_line(r).await?;
    let bad = || std::io::Error::other(format!("unexpected RESP: {line}"));
    let (kind, rest) = line.split_at(1.min(line.len()));
    match kind {
        "+" | ":" => Ok(vec![rest.as_bytes().to_vec()]),
        "-" => Err(std::io::Error::other(format!("redis error: {rest}"))),
        "$" => {
            let n: usize = rest.parse().map_err(|_| bad())?;
            let mut buf = vec![0u8; n + 2];
            r.read_exact(&mut buf).await?;
            buf.truncate(n);
            Ok(vec![buf])
        }
        "*" => {
            let n: usize = rest.parse().map_err(|_| bad())?;
            let mut out = Vec::new();
            for _ in 0..n {
                out.extend(Box::pin(read_value(r)).await?);
            }
            Ok(out)
        }
        _ => Err(bad()),
    }
}

fn now_us() -> u64 {
    crate::shard::unix_micros()
}

/// What the subscribers and publishers share.
struct Shared {
    ready: Barrier,
    stop: AtomicU64,
    sent: AtomicU64,
    delivered: AtomicU64,
    latencies: Mutex<Vec<u64>>,
}

const CELL: usize = 512;

async fn subscriber(mut sub: BufReader<TcpStream>, shared: Arc<Shared>) {
    shared.ready.wait().await;
    let mut mine = Vec::new();
    // Publishers stop at `stop`; then the channel falls silent.
    while let Ok(Ok(msg)) = tokio::time::timeout(Duration::from_secs(2), read_value(&mut sub)).await
    {
        let Some(payload) = msg.get(2).filter(|p| p.len() >= 8) else {
            continue;
        };
        let t = u64::from_be_bytes(payload[..8].try_into().unwrap_or_default());
        mine.push(now_us().saturating_sub(t));
        shared.delivered.fetch_add(1, Ordering::Relaxed);
    }
    shared.latencies.lock().await.extend(mine);
}

async fn publisher(
    mut publ: BufReader<TcpStream>,
    channel: String,
    round: Duration,
    shared: Arc<Shared>,
) {
    shared.ready.wait().await;
    let mut tick = tokio::time::interval(round);
    loop {
        tick.tick().await;
        let t = now_us();
        if t >= shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let mut payload = vec![0u8; CELL];
        payload[..8].copy_from_slice(&t.to_be_bytes());
        let cmd = resp_command(&[b"PUBLISH", channel.as_bytes(), &payload]);
        if publ.get_mut().write_all(&cmd).await.is_err() || read_value(&mut publ).await.is_err() {
            return;
        }
        shared.sent.fetch_add(1, Ordering::Relaxed);
    }
}

/// Runs `clients` publishers/subscribers against Redis at `addr` for
/// `duration`, one 512-byte message per client per `round`.
pub async fn run(
    addr: &str,
    clients: usize,
    shards: u32,
    duration: Duration,
    round: Duration,
) -> std::io::Result<Report> {
    let shards = shards.max(1);
    let shared = Arc::new(Shared {
        ready: Barrier::new(clients * 2 + 1),
        stop: AtomicU64::new(u64::MAX),
        sent: AtomicU64::new(0),
        delivered: AtomicU64::new(0),
        latencies: Mutex::new(Vec::new()),
    });
    let mut tasks = Vec::new();
    for i in 0..clients {
        let channel = format!("anonchat-bench-{}", i as u32 % shards);
        let mut sub = BufReader::new(TcpStream::connect(addr).await?);
        sub.get_mut()
            .write_all(&resp_command(&[b"SUBSCRIBE", channel.as_bytes()]))
            .await?;
        read_value(&mut sub).await?;
        tasks.push(tokio::spawn(subscriber(sub, Arc::clone(&shared))));
        let publ = BufReader::new(TcpStream::connect(addr).await?);
        tasks.push(tokio::spawn(publisher(
            publ,
            channel,
            round,
            Arc::clone(&shared),
        )));
    }
    shared.ready.wait().await;
    let t0 = Instant::now();
    tokio::time::sleep(duration).await;
    shared.stop.store(now_us(), Ordering::SeqCst);
    let elapsed = t0.elapsed();
    for t in tasks {
        let _ = t.await;
    }
    let mut lat = shared.latencies.lock().await.clone();
    lat.sort_unstable();
    let pct = |per_mille: usize| {
        if lat.is_empty() {
            0.0
        } else {
            lat[(lat.len() - 1) * per_mille / 1000] as f64 / 1000.0
        }
    };
    let secs = elapsed.as_secs_f64();
    let sent = shared.sent.load(Ordering::Relaxed);
    let delivered = shared.delivered.load(Ordering::Relaxed);
    let per_shard = clients as u64 / u64::from(shards);
    Ok(Report {
        clients,
        shards,
        cell_size: CELL,
        round_ms: round.as_millis() as u32,
        duration_s: secs,
        rounds: (elapsed.as_millis() / round.as_millis().max(1)) as u64,
        cells_sent: sent,
        cells_delivered: delivered,
        delivered_cells_per_s: delivered as f64 / secs,
        // RESP framing of a published message adds about 60 bytes.
        delivered_bytes_per_s: delivered as f64 * (CELL as f64 + 60.0) / secs,
        fanout_latency_p50_ms: pct(500),
        fanout_latency_p99_ms: pct(990),
        fanout_latency_max_ms: pct(1000),
        lost_cells: (sent * per_shard).saturating_sub(delivered),
        relay_cpu_percent: None,
        loadgen_cpu_percent: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resp_commands_are_arrays_of_bulk_strings() {
        assert_eq!(
            resp_command(&[b"PUBLISH", b"c", b"hi"]),
            b"*3\r\n$7\r\nPUBLISH\r\n$1\r\nc\r\n$2\r\nhi\r\n".to_vec()
        );
    }

    #[tokio::test]
    async fn resp_values_are_read_and_flattened() {
        let data = b"*3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$3\r\nabc\r\n:1\r\n-ERR no\r\n".to_vec();
        let mut r = BufReader::new(&data[..]);
        let v = read_value(&mut r).await.unwrap();
        assert_eq!(v, vec![b"message".to_vec(), b"c".to_vec(), b"abc".to_vec()]);
        assert_eq!(read_value(&mut r).await.unwrap(), vec![b"1".to_vec()]);
        assert!(read_value(&mut r).await.is_err());
    }
}
