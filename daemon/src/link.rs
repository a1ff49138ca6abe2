//! The relay connection: lockstep with the relay's rounds, one cell per
//! round (real or cover, prepared the same way and sent at the same offset
//! after the batch), reconnects with exponential backoff and jitter, resume
//! from the last round seen. Runs only while the daemon is unlocked.

use std::sync::Arc;
use std::time::Duration;

use anonchat_ipc::LinkState;
use anonchat_protocol::wire::RelayAddress;
use anonchat_relay_client::{self as client, ClientError, Connected, Incoming};
use rand::RngExt as _;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::core::Core;

const BACKOFF_MIN: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

/// A SOCKS5 proxy (`socks5://HOST:PORT`), e.g. Tor's.
#[derive(Debug, Clone)]
pub struct Proxy {
    /// `HOST:PORT` of the proxy.
    pub addr: String,
}

impl std::str::FromStr for Proxy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let addr = s
            .strip_prefix("socks5://")
            .or_else(|| s.strip_prefix("socks5h://"))
            .ok_or_else(|| {
                format!("{s}: expected socks5://HOST:PORT (for Tor: socks5://127.0.0.1:9050)")
            })?;
        if addr
            .rsplit_once(':')
            .is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err())
        {
            return Err(format!("{s}: expected socks5://HOST:PORT"));
        }
        Ok(Self {
            addr: addr.to_owned(),
        })
    }
}

/// SOCKS5 CONNECT without authentication; the relay's host name is
/// resolved by the proxy (no DNS leak).
async fn socks5<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    host: &str,
    port: u16,
) -> std::io::Result<()> {
    let err = |m: &str| std::io::Error::other(format!("SOCKS5 proxy: {m}"));
    s.write_all(&[5, 1, 0]).await?;
    let mut reply = [0u8; 2];
    s.read_exact(&mut reply).await?;
    if reply != [5, 0] {
        return Err(err("it requires authentication or is not SOCKS5"));
    }
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let host_len = u8::try_from(host.len()).map_err(|_| err("host name too long"))?;
    let mut req = vec![5, 1, 0, 3, host_len];
    req.extend_from_slice(host.as_bytes());
    req.extend_from_slice(&port.to_be_bytes());
    s.write_all(&req).await?;
    let mut head = [0u8; 4];
    s.read_exact(&mut head).await?;
    if head[1] != 0 {
        return Err(err(&format!(
            "connection refused by the proxy (code {})",
            head[1]
        )));
    }
    let skip = match head[3] {
        1 => 4,
        4 => 16,
        3 => {
            let mut n = [0u8; 1];
            s.read_exact(&mut n).await?;
            usize::from(n[0])
        }
        _ => return Err(err("malformed reply")),
    };
    let mut rest = vec![0u8; skip + 2];
    s.read_exact(&mut rest).await?;
    Ok(())
}

async fn dial(
    relay: &RelayAddress,
    shard: u32,
    resume: Option<u64>,
    proxy: Option<&Proxy>,
) -> Result<Connected<TcpStream>, ClientError> {
    let Some(proxy) = proxy else {
        return client::connect(relay, shard, resume).await;
    };
    let mut stream = TcpStream::connect(&proxy.addr)
        .await
        .map_err(ClientError::Connect)?;
    socks5(&mut stream, &relay.host(), relay.port())
        .await
        .map_err(ClientError::Connect)?;
    client::join(stream, relay.key(), shard, resume).await
}

/// Runs until the daemon shuts down.
pub async fn run(core: Arc<Core>, proxy: Option<Proxy>) {
    let mut unlocked = core.watch_unlocked();
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
        let connected = tokio::select! {
            () = core.shutdown.cancelled() => return,
            r = tokio::time::timeout(CONNECT_TIMEOUT, dial(&relay, shard, resume, proxy.as_ref())) => r,
        };
        let error = match connected {
            Ok(Ok(conn)) if conn.params.cell_size != core.settings.cell_size => format!(
                "the relay uses {}-byte cells and this daemon's sessions use {}",
                conn.params.cell_size, core.settings.cell_size
            ),
            Ok(Ok(conn)) => {
                backoff = BACKOFF_MIN;
                core.set_round_ms(conn.params.round_ms);
                core.set_link(LinkState::Connected, None);
                tracing::info!("connected to the relay");
                let end = tokio::select! {
                    () = core.shutdown.cancelled() => return,
                    r = unlocked.changed() => { if r.is_err() { return } continue }
                    e = lockstep(&core, conn) => e,
                };
                tracing::info!(reason = %end, "relay connection ended");
                end
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => "timed out".to_owned(),
        };
        core.set_link(LinkState::Retrying, Some(error));
        // Exponential backoff with full jitter.
        let wait = rand::rng().random_range(BACKOFF_MIN..=backoff);
        backoff = (backoff * 2).min(BACKOFF_MAX);
        tokio::select! {
            () = core.shutdown.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
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
        Ok(Err(_)) => return "locked".to_owned(),
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
            Ok(Err(_)) => return "locked".to_owned(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_urls_are_checked() {
        assert_eq!(
            "socks5://127.0.0.1:9050".parse::<Proxy>().unwrap().addr,
            "127.0.0.1:9050"
        );
        assert!("socks5h://tor:9050".parse::<Proxy>().is_ok());
        for bad in [
            "http://x:1",
            "socks5://",
            "socks5://host",
            "socks5://:1",
            "socks5://h:99999",
        ] {
            assert!(bad.parse::<Proxy>().is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn socks5_connect_speaks_the_protocol() {
        let (mut client, mut proxy) = tokio::io::duplex(256);
        let server = tokio::spawn(async move {
            let mut hello = [0u8; 3];
            proxy.read_exact(&mut hello).await.unwrap();
            assert_eq!(hello, [5, 1, 0]);
            proxy.write_all(&[5, 0]).await.unwrap();
            let mut head = [0u8; 5];
            proxy.read_exact(&mut head).await.unwrap();
            assert_eq!(head[..4], [5, 1, 0, 3]);
            let mut host = vec![0u8; usize::from(head[4]) + 2];
            proxy.read_exact(&mut host).await.unwrap();
            assert_eq!(&host[..host.len() - 2], b"relay.onion");
            proxy
                .write_all(&[5, 0, 0, 1, 0, 0, 0, 0, 0, 0])
                .await
                .unwrap();
        });
        socks5(&mut client, "relay.onion", 7766).await.unwrap();
        server.await.unwrap();
    }
}
