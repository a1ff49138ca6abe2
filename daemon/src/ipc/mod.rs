//! The local socket: newline-delimited JSON-RPC 2.0 for the daemon's own
//! user only. Each line is one request; responses and subscription
//! notifications go back on the same connection, one per line.

use std::path::Path;
use std::sync::Arc;

use anonchat_ipc::client::{LineError, read_line};
use anonchat_ipc::{INVALID_REQUEST, MAX_LINE, PARSE_ERROR};
use interprocess::local_socket::tokio::Listener;
use interprocess::local_socket::traits::tokio::Listener as _;
use interprocess::local_socket::{GenericFilePath, ListenerOptions, ToFsName as _};
use interprocess::os::unix::local_socket::ListenerOptionsExt as _;
use jsonrpsee::RpcModule;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt as _, BufReader};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 64;
/// Lines queued for one client before it counts as not reading: dropped.
pub const OUT_QUEUE: usize = 1024;
/// Notifications buffered per subscription inside the module.
const SUB_BUFFER: usize = 256;
/// Live subscriptions per connection (each one is a task and a copy of
/// every event): past it, a subscribe is refused with an error.
pub const MAX_SUBSCRIPTIONS: usize = 32;
/// How long a closing connection may take to write what is queued.
const WRITE_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

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

/// An error answer to the request with `id`.
fn error_for(id: Option<&Value>, code: i32, message: &str) -> String {
    serde_json::json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
        .to_string()
}

/// Whether the request calls one of the module's subscribe methods while
/// the connection already holds [`MAX_SUBSCRIPTIONS`] (ended ones reaped).
fn subscriptions_full<C>(
    module: &RpcModule<C>,
    request: &serde_json::Map<String, Value>,
    subscriptions: &mut JoinSet<()>,
) -> bool {
    let subscribe = request
        .get("method")
        .and_then(Value::as_str)
        .and_then(|m| module.method(m))
        .is_some_and(|cb| matches!(cb, jsonrpsee::MethodCallback::Subscription(_)));
    while subscriptions.try_join_next().is_some() {}
    subscribe && subscriptions.len() >= MAX_SUBSCRIPTIONS
}

/// Writes the queued lines to the client until the queue closes or a
/// write fails.
async fn write_lines<W: AsyncWrite>(write: W, mut out_rx: mpsc::Receiver<String>) {
    tokio::pin!(write);
    while let Some(mut line) = out_rx.recv().await {
        line.push('\n');
        if write.write_all(line.as_bytes()).await.is_err() {
            return;
        }
    }
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

/// Serves one client until it closes the connection, sends a request over
/// [`MAX_LINE`], or stops reading its replies.
async fn connection<S, C>(stream: S, module: Arc<RpcModule<C>>)
where
    S: AsyncRead + AsyncWrite + Send + 'static,
    C: Send + Sync + 'static,
{
    let (read, write) = tokio::io::split(stream);
    let mut read = BufReader::new(read);
    let (out_tx, out_rx) = mpsc::channel::<String>(OUT_QUEUE);
    let mut writer = tokio::spawn(write_lines(write, out_rx));
    let mut subscriptions = JoinSet::new();
    // Cancelled when a subscription's notifications no longer fit: the
    // client does not read, and a connection that silently stopped
    // delivering events would leave it waiting for good.
    let stalled = CancellationToken::new();
    loop {
        let read_next = tokio::select! {
            () = stalled.cancelled() => {
                tracing::warn!("an RPC client does not read its events; dropping it");
                break;
            }
            r = read_line(&mut read, MAX_LINE) => r,
        };
        let line = match read_next {
            Ok(Some(line)) => line,
            Ok(None) => break,
            Err(LineError::TooLong { max }) => {
                // Not awaited: a client whose queue is full (it does not
                // read) must not hold the connection open with it.
                let _ = out_tx.try_send(error_line(
                    INVALID_REQUEST,
                    &format!("request longer than {max} bytes; connection closed"),
                ));
                break;
            }
            Err(e) => {
                tracing::debug!(error = %e, "RPC connection ended");
                break;
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        let reply = match serde_json::from_str::<Value>(&line) {
            Err(e) => Some(error_line(PARSE_ERROR, &format!("parse error: {e}"))),
            Ok(Value::Array(_)) => Some(error_line(
                INVALID_REQUEST,
                "batch requests are not supported; send one request per line",
            )),
            Ok(Value::Object(o)) if !o.contains_key("id") => None, // a notification: no reply
            Ok(Value::Object(o)) if subscriptions_full(&module, &o, &mut subscriptions) => {
                Some(error_for(
                    o.get("id"),
                    INVALID_REQUEST,
                    &format!(
                        "too many subscriptions on this connection (at most {MAX_SUBSCRIPTIONS}); unsubscribe one, or open another connection"
                    ),
                ))
            }
            Ok(Value::Object(_)) => match module.raw_json_request(&line, SUB_BUFFER).await {
                Ok((response, mut notifications)) => {
                    // The reply first: a subscription's first notifications
                    // (a replay, sent at once) must not overtake the
                    // subscription id, or the client drops them.
                    if out_tx.try_send(response.get().to_owned()).is_err() {
                        tracing::warn!("an RPC client does not read its replies; dropping it");
                        break;
                    }
                    let tx = out_tx.clone();
                    let stalled = stalled.clone();
                    subscriptions.spawn(async move {
                        while let Some(n) = notifications.recv().await {
                            if tx.try_send(n.get().to_owned()).is_err() {
                                stalled.cancel();
                                return;
                            }
                        }
                    });
                    None
                }
                Err(e) => Some(error_line(
                    INVALID_REQUEST,
                    &format!("invalid request: {e}"),
                )),
            },
            Ok(_) => Some(error_line(
                INVALID_REQUEST,
                "a request must be a JSON object",
            )),
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
    // What is queued goes out (an error line, say) to a client that reads;
    // one that does not gets a few seconds, then is cut.
    if tokio::time::timeout(WRITE_GRACE, &mut writer)
        .await
        .is_err()
    {
        writer.abort();
    }
}

#[cfg(test)]
mod tests;
