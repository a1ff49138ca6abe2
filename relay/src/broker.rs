//! The comparison run of the load generator: the same fan-out done by a
//! real broker, Redis pub/sub, measured the way [`crate::loadgen`]
//! measures the relay.
//!
//! Each client is one TCP connection (as a relay client is), speaking RESP3
//! (`HELLO 3`) so that one connection both subscribes to its shard's
//! channel and publishes: every round (all clients on one clock, as relay
//! rounds are) it publishes one 512-byte message, and every subscriber of
//! the shard receives every message. No encryption, no cover traffic, no
//! anonymity: the point is the cost of the fan-out itself. The server's
//! CPU comes from `/proc/PID/stat` over the same window as the relay's.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::{Buf as _, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::sync::Barrier;
use tokio_util::sync::CancellationToken;

use crate::loadgen::{Latencies, Measured, Report, Window};
use crate::procstat::{CpuMeter, clock_ticks_per_s};

/// Message size: the relay's default cell.
const CELL: usize = crate::defaults::CELL_SIZE;
/// Largest RESP value this client reads (a bound on its buffer).
const MAX_VALUE: usize = 1 << 20;

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

/// One RESP2 or RESP3 value, borrowed from the read buffer. Aggregates
/// (arrays, pushes, sets, maps flattened) hold their elements.
#[derive(Debug, PartialEq, Eq)]
enum Value<'a> {
    /// `+`, and the RESP3 scalars kept as text (`#`, `,`, `(`).
    Simple(&'a [u8]),
    /// `-`: the server refused a command.
    Error(&'a [u8]),
    /// `:`
    Int(i64),
    /// `$` (also `=`, `!`), or a null (`_`, `$-1`).
    Bulk(Option<&'a [u8]>),
    /// `*`, `>`, `~`, `%` (keys and values in turn).
    Agg(Vec<Value<'a>>),
}

fn bad(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, format!("bad RESP: {what}"))
}

fn int(line: &[u8]) -> std::io::Result<i64> {
    std::str::from_utf8(line)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("not a number"))
}

/// Parses one value at the start of `buf`: the value and the bytes it
/// took, or `None` if `buf` does not hold all of it yet.
fn parse(buf: &[u8]) -> std::io::Result<Option<(Value<'_>, usize)>> {
    let Some(eol) = buf.windows(2).position(|w| w == b"\r\n") else {
        if buf.len() > MAX_VALUE {
            return Err(bad("line too long"));
        }
        return Ok(None);
    };
    let Some(&kind) = buf.first() else {
        return Ok(None);
    };
    let line = &buf[1..eol];
    let mut at = eol + 2;
    let v = match kind {
        b'+' | b'#' | b',' | b'(' => Value::Simple(line),
        b'-' => Value::Error(line),
        b':' => Value::Int(int(line)?),
        b'_' => Value::Bulk(None),
        b'$' | b'=' | b'!' => {
            let n = int(line)?;
            if n < 0 {
                Value::Bulk(None)
            } else {
                let n = usize::try_from(n).map_err(|_| bad("length"))?;
                if n > MAX_VALUE {
                    return Err(bad("value too long"));
                }
                if buf.len() < at + n + 2 {
                    return Ok(None);
                }
                let s = &buf[at..at + n];
                at += n + 2;
                Value::Bulk(Some(s))
            }
        }
        b'*' | b'>' | b'~' | b'%' => {
            let n = int(line)?;
            if n < 0 {
                Value::Bulk(None)
            } else {
                let n = usize::try_from(n).map_err(|_| bad("length"))?;
                let n = if kind == b'%' { n * 2 } else { n };
                if n > MAX_VALUE {
                    return Err(bad("too many elements"));
                }
                let mut items = Vec::with_capacity(n.min(16));
                for _ in 0..n {
                    let Some((item, used)) = parse(&buf[at..])? else {
                        return Ok(None);
                    };
                    items.push(item);
                    at += used;
                }
                Value::Agg(items)
            }
        }
        _ => return Err(bad("unknown type")),
    };
    Ok(Some((v, at)))
}

/// What a client's connection delivered.
#[derive(Debug, PartialEq, Eq)]
enum Event {
    /// A pub/sub message, with the publish time its payload carries.
    Message(Option<u64>),
    /// Anything else (a publish's reply, a subscribe confirmation).
    Other,
}

impl Event {
    fn of(v: &Value<'_>) -> std::io::Result<Self> {
        match v {
            Value::Error(e) => Err(std::io::Error::other(format!(
                "redis error: {}",
                String::from_utf8_lossy(e)
            ))),
            Value::Agg(items) if items.first() == Some(&Value::Bulk(Some(b"message"))) => {
                let t = match items.get(2) {
                    Some(Value::Bulk(Some(p))) if p.len() >= 8 => {
                        let mut t = [0u8; 8];
                        t.copy_from_slice(&p[..8]);
                        Some(u64::from_be_bytes(t))
                    }
                    _ => None,
                };
                Ok(Self::Message(t))
            }
            _ => Ok(Self::Other),
        }
    }
}

/// A RESP reader over one connection, counting the bytes it reads.
struct Reader<R> {
    rd: R,
    buf: BytesMut,
    bytes: u64,
}

impl<R: AsyncRead + Unpin> Reader<R> {
    fn new(rd: R) -> Self {
        Self {
            rd,
            buf: BytesMut::with_capacity(64 * 1024),
            bytes: 0,
        }
    }

    async fn next(&mut self) -> std::io::Result<Event> {
        loop {
            if let Some((v, used)) = parse(&self.buf)? {
                let ev = Event::of(&v)?;
                self.buf.advance(used);
                return Ok(ev);
            }
            let n = self.rd.read_buf(&mut self.buf).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            self.bytes += n as u64;
        }
    }
}

fn now_us() -> u64 {
    crate::shard::unix_micros()
}

/// What to run against Redis.
#[derive(Debug, Clone)]
pub struct RedisLoad {
    /// HOST:PORT of the server.
    pub addr: String,
    /// Clients, one connection each.
    pub clients: usize,
    /// Shards (channels) the clients are spread over (0 counts as 1).
    pub shards: u32,
    /// Measurement time, once every client has subscribed and
    /// [`WARMUP_ROUNDS`](crate::loadgen::WARMUP_ROUNDS) have passed.
    pub duration: Duration,
    /// Round length: every client publishes once per round.
    pub round: Duration,
    /// The server's process id, to report its CPU use (same machine only).
    pub server_pid: Option<u32>,
}

/// What the clients share.
struct Shared {
    ready: Barrier,
    /// Set once every client has subscribed: messages published inside it
    /// are counted; nobody publishes after it.
    window: std::sync::OnceLock<Window>,
    sent: AtomicU64,
    delivered: AtomicU64,
    bytes: AtomicU64,
    latencies: std::sync::Mutex<Latencies>,
}

async fn client(
    addr: String,
    channel: String,
    id: u32,
    round: Duration,
    shared: Arc<Shared>,
    done: CancellationToken,
) -> std::io::Result<()> {
    let stream = TcpStream::connect(&addr).await?;
    stream.set_nodelay(true)?;
    let (rd, mut wr) = stream.into_split();
    let mut rd = Reader::new(rd);
    wr.write_all(&resp_command(&[b"HELLO", b"3"])).await?;
    rd.next().await?;
    wr.write_all(&resp_command(&[b"SUBSCRIBE", channel.as_bytes()]))
        .await?;
    rd.next().await?;
    shared.ready.wait().await;
    let start = tokio::time::Instant::now();

    let publisher = {
        let shared = Arc::clone(&shared);
        async move {
            // One clock for everyone (as relay rounds are): the first tick
            // right after the barrier, then every `round`.
            let mut tick = tokio::time::interval_at(start, round);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            let mut payload = vec![0u8; CELL];
            payload[8..12].copy_from_slice(&id.to_be_bytes());
            loop {
                // Exactly duration / round publishes inside the window (it
                // opens half a round before a tick), as a relay client
                // answers the rounds of the window.
                tick.tick().await;
                let t = now_us();
                let window = shared.window.get();
                if window.is_some_and(|w| t >= w.to_us) {
                    return Ok::<_, std::io::Error>(wr);
                }
                payload[..8].copy_from_slice(&t.to_be_bytes());
                let cmd = resp_command(&[b"PUBLISH", channel.as_bytes(), &payload]);
                wr.write_all(&cmd).await?;
                if window.is_some_and(|w| w.contains(t)) {
                    shared.sent.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    };
    let subscriber = async {
        let mut mine = Latencies::default();
        let mut delivered = 0u64;
        loop {
            let ev = tokio::select! {
                () = done.cancelled() => break,
                ev = rd.next() => ev?,
            };
            if let Event::Message(Some(t)) = ev
                && shared.window.get().is_some_and(|w| w.contains(t))
            {
                mine.push(now_us().saturating_sub(t));
                delivered += 1;
            }
        }
        shared.delivered.fetch_add(delivered, Ordering::Relaxed);
        shared.bytes.fetch_add(rd.bytes, Ordering::Relaxed);
        shared
            .latencies
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .merge(mine);
        Ok::<_, std::io::Error>(())
    };
    let (wr, ()) = tokio::try_join!(publisher, subscriber)?;
    drop(wr);
    Ok(())
}

/// Runs `cfg.clients` clients against Redis at `cfg.addr` for
/// `cfg.duration`, one 512-byte message per client per round.
pub async fn run(cfg: &RedisLoad) -> std::io::Result<Report> {
    let shards = cfg.shards.max(1);
    let shared = Arc::new(Shared {
        ready: Barrier::new(cfg.clients + 1),
        window: std::sync::OnceLock::new(),
        sent: AtomicU64::new(0),
        delivered: AtomicU64::new(0),
        bytes: AtomicU64::new(0),
        latencies: std::sync::Mutex::new(Latencies::default()),
    });
    let done = CancellationToken::new();
    let mut tasks = Vec::with_capacity(cfg.clients);
    for i in 0..cfg.clients {
        let channel = format!("anonchat-bench-{}", i as u32 % shards);
        tasks.push(tokio::spawn(client(
            cfg.addr.clone(),
            channel,
            i as u32,
            cfg.round,
            Arc::clone(&shared),
            done.clone(),
        )));
    }
    shared.ready.wait().await;
    let window = Window::after_warmup(now_us(), cfg.round, cfg.duration);
    let _ = shared.window.set(window);
    window.opened().await;
    let ticks = clock_ticks_per_s();
    let server = cfg.server_pid.and_then(CpuMeter::start);
    let own = CpuMeter::start(std::process::id());
    tokio::time::sleep(cfg.duration).await;
    let server = server.and_then(|m| m.stop(ticks));
    let own = own.and_then(|m| m.stop(ticks));
    // Let the last round's messages arrive.
    tokio::time::sleep(cfg.round.max(Duration::from_millis(200)) * 2).await;
    done.cancel();
    for t in tasks {
        t.await.map_err(std::io::Error::other)??;
    }
    let sent = shared.sent.load(Ordering::Relaxed);
    let delivered = shared.delivered.load(Ordering::Relaxed);
    let per_shard = cfg.clients as u64 / u64::from(shards);
    let latencies = std::mem::take(
        &mut *shared
            .latencies
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    );
    Ok(Measured {
        server: "redis-server",
        clients: cfg.clients,
        shards,
        cell_size: CELL,
        round_ms: cfg.round.as_millis() as u32,
        duration: cfg.duration,
        rounds: (cfg.duration.as_millis() / cfg.round.as_millis().max(1)) as u64,
        cells_sent: sent,
        cells_delivered: delivered,
        bytes_received: shared.bytes.load(Ordering::Relaxed),
        latencies,
        lost_cells: (sent * per_shard).saturating_sub(delivered),
        server_cpu: server,
        loadgen_cpu: own,
    }
    .report())
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

    #[test]
    fn resp3_values_are_parsed_whole_or_not_at_all() {
        let push = b">3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$3\r\nabc\r\n";
        let (v, used) = parse(push).unwrap().unwrap();
        assert_eq!(used, push.len());
        assert_eq!(
            v,
            Value::Agg(vec![
                Value::Bulk(Some(b"message")),
                Value::Bulk(Some(b"c")),
                Value::Bulk(Some(b"abc")),
            ])
        );
        // Every strict prefix is incomplete, not an error.
        for cut in 0..push.len() {
            assert!(parse(&push[..cut]).unwrap().is_none(), "{cut}");
        }
        let hello = b"%2\r\n$6\r\nserver\r\n$5\r\nredis\r\n$5\r\nproto\r\n:3\r\n:1\r\n";
        let (v, used) = parse(hello).unwrap().unwrap();
        assert_eq!(used, hello.len() - 4);
        assert!(matches!(v, Value::Agg(ref items) if items.len() == 4));
        assert_eq!(
            parse(b"-ERR no\r\n").unwrap().unwrap().0,
            Value::Error(b"ERR no")
        );
        assert_eq!(parse(b"_\r\n").unwrap().unwrap().0, Value::Bulk(None));
        assert!(parse(b"?\r\n").is_err());
        assert!(parse(b"$99999999\r\n").is_err());
    }

    #[test]
    fn a_message_carries_its_publish_time() {
        let mut msg = b">3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$8\r\n".to_vec();
        msg.extend_from_slice(&42u64.to_be_bytes());
        msg.extend_from_slice(b"\r\n");
        let (v, _) = parse(&msg).unwrap().unwrap();
        assert_eq!(Event::of(&v).unwrap(), Event::Message(Some(42)));
        let (v, _) = parse(b":200\r\n").unwrap().unwrap();
        assert_eq!(Event::of(&v).unwrap(), Event::Other);
        let (v, _) = parse(b"-ERR x\r\n").unwrap().unwrap();
        assert!(Event::of(&v).is_err());
    }
}
