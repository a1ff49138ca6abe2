//! The local socket: newline-delimited JSON-RPC 2.0 for the daemon's own
//! user only. Each line is one request; responses and subscription
//! notifications go back on the same connection, one per line.

use std::path::Path;
use std::sync::Arc;

use anonchat_ipc::MAX_LINE;
use anonchat_ipc::client::{TransportError, read_line};
use interprocess::local_socket::tokio::{Listener, Stream};
use interprocess::local_socket::traits::tokio::Listener as _;
use interprocess::local_socket::{GenericFilePath, ListenerOptions, ToFsName as _};
use interprocess::os::unix::local_socket::ListenerOptionsExt as _;
use jsonrpsee::RpcModule;
use serde_json::Value;
use tokio::io::{AsyncWriteExt as _, BufReader};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 64;
/// Lines queued for one client before it counts as not reading: dropped.
pub const OUT_QUEUE: usize = 1024;
/// Notifications buffered per subscription inside the module.
const SUB_BUFFER: usize = 256;

/// Binds the socket (mode 0600, in a 0700 directory the caller made),
/// replacing a stale one: the caller holds the home's lock, so no other
/// daemon of this home is listening.
pub fn bind(path: &Path) -> anyhow::Result<Listener> {
    if path.exists() {
        std::fs::remove_file(path)?;
    }
    let name = path.to_fs_name::<GenericFilePath>()?;
    Ok(ListenerOptions::new()
        .name(name)
        .mode(0o600)
        .create_tokio()?)
}

fn error_line(code: i32, message: &str) -> String {
    serde_json::json!({"jsonrpc": "2.0", "id": null, "error": {"code": code, "message": message}})
        .to_string()
}

/// Accepts connections until `shutdown`.
pub async fn serve<C: Send + Sync + 'static>(
    listener: Listener,
    module: RpcModule<C>,
    shutdown: CancellationToken,
) {
    let module = Arc::new(module);
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let me = nix::unistd::geteuid().as_raw();
    let mut conns = JoinSet::new();
    loop {
        let stream = tokio::select! {
            () = shutdown.cancelled() => break,
            s = listener.accept() => match s {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "socket accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
        };
        match interprocess::local_socket::traits::StreamCommon::peer_creds(&stream)
            .map(|c| c.euid())
        {
            Ok(Some(uid)) if uid == me => {}
            other => {
                tracing::warn!(peer_uid = ?other.ok().flatten(), "refused a connection from another user");
                drop(stream);
                continue;
            }
        }
        let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
            tracing::warn!("too many RPC connections; refusing one");
            continue;
        };
        let module = Arc::clone(&module);
        let shutdown = shutdown.clone();
        conns.spawn(async move {
            let _permit = permit;
            tokio::select! {
                () = connection(stream, module) => {}
                () = shutdown.cancelled() => {}
            }
        });
    }
    conns.shutdown().await;
}

async fn connection<C: Send + Sync + 'static>(stream: Stream, module: Arc<RpcModule<C>>) {
    let (read, mut write) = tokio::io::split(stream);
    let mut read = BufReader::new(read);
    let (out_tx, mut out_rx) = mpsc::channel::<String>(OUT_QUEUE);
    let writer = tokio::spawn(async move {
        while let Some(mut line) = out_rx.recv().await {
            line.push('\n');
            if write.write_all(line.as_bytes()).await.is_err() {
                return;
            }
        }
    });
    let mut subscriptions = JoinSet::new();
    loop {
        let line = match read_line(&mut read, MAX_LINE).await {
            Ok(Some(line)) => line,
            Ok(None) | Err(TransportError::Closed | TransportError::Io(_)) => break,
            Err(TransportError::TooLong) => {
                let _ = out_tx
                    .send(error_line(
                        -32600,
                        &format!("request longer than {MAX_LINE} bytes; connection closed"),
                    ))
                    .await;
                break;
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        let reply = match serde_json::from_str::<Value>(&line) {
            Err(e) => Some(error_line(-32700, &format!("parse error: {e}"))),
            Ok(Value::Array(_)) => Some(error_line(
                -32600,
                "batch requests are not supported; send one request per line",
            )),
            Ok(Value::Object(o)) if !o.contains_key("id") => None, // a notification: no reply
            Ok(Value::Object(_)) => match module.raw_json_request(&line, SUB_BUFFER).await {
                Ok((response, mut notifications)) => {
                    let tx = out_tx.clone();
                    subscriptions.spawn(async move {
                        while let Some(n) = notifications.recv().await {
                            if tx.try_send(n.get().to_owned()).is_err() {
                                return; // the client does not read: stop
                            }
                        }
                    });
                    Some(response.get().to_owned())
                }
                Err(e) => Some(error_line(-32600, &format!("invalid request: {e}"))),
            },
            Ok(_) => Some(error_line(-32600, "a request must be a JSON object")),
        };
        if let Some(reply) = reply
            && out_tx.try_send(reply).is_err()
        {
            tracing::warn!("an RPC client does not read its replies; dropping it");
            break;
        }
        while subscriptions.try_join_next().is_some() {}
    }
    subscriptions.shutdown().await;
    drop(out_tx);
    let _ = writer.await;
}
