//! The `anonchat-ipc` API over [`Core`]. Slow calls (RSA key generation,
//! Argon2id) run on blocking threads so the socket keeps serving.
//!
//! This is the one place where the daemon's [`Error`] becomes a JSON-RPC
//! error object ([`to_rpc`]).

use std::sync::Arc;

use anonchat_ipc::{
    AnonchatServer, ContactInfo, DaemonConfig, ErrorCode, Event, EventPosition, GroupInfo,
    GroupMember, HistoryCursor, HistoryEntry, HistoryPage, IdentityInfo, Invitation, SentMessage,
    SequencedEvent, Status, rpc_error,
};
use jsonrpsee::core::{SubscriptionResult, async_trait};
use jsonrpsee::types::ErrorObjectOwned;
use jsonrpsee::{PendingSubscriptionSink, SubscriptionMessage};
use tokio::sync::broadcast::error::RecvError;

use crate::core::Attached;

use crate::core::Core;
use crate::error::Error;

type RpcResult<T> = Result<T, ErrorObjectOwned>;

/// The JSON-RPC API, served over the local socket.
pub struct Api {
    /// The daemon's state.
    pub core: Arc<Core>,
}

/// The JSON-RPC error object for a daemon error: its code, the code's
/// advice (what to do), then the detail.
pub fn to_rpc(e: Error) -> ErrorObjectOwned {
    let plain = rpc_error(e.code(), &e);
    match e {
        Error::OutboxFull { retry_after_ms, .. } => ErrorObjectOwned::owned(
            plain.code(),
            plain.message().to_owned(),
            Some(serde_json::json!({ "retry_after_ms": retry_after_ms })),
        ),
        Error::EventsTooOld { position, .. } | Error::UnknownEventStream { position, .. } => {
            ErrorObjectOwned::owned(plain.code(), plain.message().to_owned(), Some(position))
        }
        _ => plain,
    }
}

/// The message a user would see for `e` (advice and detail).
pub fn message(e: &Error) -> String {
    rpc_error(e.code(), e).message().to_owned()
}

fn config_info(core: &Core) -> DaemonConfig {
    DaemonConfig {
        proxy: core.daemon_config().proxy.map(|p| p.to_string()),
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> crate::error::Result<T> + Send + 'static,
) -> RpcResult<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(to_rpc),
        Err(_) => Err(rpc_error(
            ErrorCode::Busy,
            "the operation failed internally",
        )),
    }
}

#[async_trait]
impl AnonchatServer for Api {
    async fn status(&self) -> RpcResult<Status> {
        Ok(self.core.status())
    }

    async fn traffic(&self) -> RpcResult<anonchat_ipc::Traffic> {
        Ok(self.core.traffic())
    }

    async fn shutdown(&self) -> RpcResult<()> {
        tracing::info!("shutdown requested over RPC");
        let core = Arc::clone(&self.core);
        // Answer first, then stop.
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            core.shutdown.cancel();
        });
        Ok(())
    }

    async fn config(&self) -> RpcResult<DaemonConfig> {
        Ok(config_info(&self.core))
    }

    async fn set_proxy(&self, proxy: Option<String>) -> RpcResult<DaemonConfig> {
        let proxy = proxy
            .filter(|p| !p.trim().is_empty() && p.trim() != "none")
            .map(|p| p.trim().parse::<crate::config::Proxy>())
            .transpose()
            .map_err(|e| to_rpc(Error::InvalidInput(e)))?;
        self.core.set_proxy(proxy).map_err(to_rpc)?;
        Ok(config_info(&self.core))
    }

    async fn identity_create(
        &self,
        name: String,
        relay: String,
        passphrase: Option<String>,
        shard: Option<u32>,
    ) -> RpcResult<IdentityInfo> {
        let core = Arc::clone(&self.core);
        let passphrase = passphrase.map(zeroize::Zeroizing::new);
        blocking(move || {
            core.identity_create(
                &name,
                &relay,
                passphrase.as_deref().map(String::as_str),
                shard,
            )
        })
        .await
    }

    async fn identity_show(&self) -> RpcResult<IdentityInfo> {
        self.core.identity_show().map_err(to_rpc)
    }

    async fn identity_export(&self) -> RpcResult<String> {
        self.core.identity_export().map_err(to_rpc)
    }

    async fn identity_unlock(&self, passphrase: String) -> RpcResult<()> {
        let core = Arc::clone(&self.core);
        let passphrase = zeroize::Zeroizing::new(passphrase);
        blocking(move || core.identity_unlock(&passphrase)).await
    }

    async fn identity_lock(&self) -> RpcResult<()> {
        let core = Arc::clone(&self.core);
        blocking(move || core.identity_lock()).await
    }

    async fn contacts_add(
        &self,
        identity_file_text: String,
        name: String,
    ) -> RpcResult<ContactInfo> {
        let core = Arc::clone(&self.core);
        blocking(move || core.contacts_add(&identity_file_text, &name)).await
    }

    async fn contacts_list(&self) -> RpcResult<Vec<ContactInfo>> {
        self.core.contacts_list().map_err(to_rpc)
    }

    async fn contacts_remove(&self, name: String) -> RpcResult<()> {
        let core = Arc::clone(&self.core);
        blocking(move || core.contacts_remove(&name)).await
    }

    async fn contacts_verify(&self, name: String, fingerprint: String) -> RpcResult<ContactInfo> {
        let core = Arc::clone(&self.core);
        blocking(move || core.contacts_verify(&name, &fingerprint)).await
    }

    async fn messages_send(&self, to: String, text: String) -> RpcResult<SentMessage> {
        // Off the runtime's workers: the queued message is saved (a file
        // write and two fsyncs) before the call returns.
        let core = Arc::clone(&self.core);
        let text = zeroize::Zeroizing::new(text);
        blocking(move || core.messages_send(&to, &text)).await
    }

    async fn messages_history(
        &self,
        with: String,
        limit: Option<u32>,
    ) -> RpcResult<Vec<HistoryEntry>> {
        // The newest entries that fit well under the client's line limit.
        self.core
            .messages_history_page(&with, None, limit, anonchat_ipc::HISTORY_PAGE_BYTES)
            .map(|page| page.entries)
            .map_err(to_rpc)
    }

    async fn messages_history_page(
        &self,
        with: String,
        before: Option<HistoryCursor>,
        limit: Option<u32>,
    ) -> RpcResult<HistoryPage> {
        self.core
            .messages_history_page(&with, before, limit, anonchat_ipc::HISTORY_PAGE_BYTES)
            .map_err(to_rpc)
    }

    // Group operations that change state save it: off the workers.
    async fn groups_create(&self, name: String, with: Option<Vec<String>>) -> RpcResult<GroupInfo> {
        let core = Arc::clone(&self.core);
        blocking(move || core.groups_create(&name, &with.unwrap_or_default())).await
    }

    async fn groups_invite(&self, group: String, contact: String) -> RpcResult<()> {
        let core = Arc::clone(&self.core);
        blocking(move || core.groups_invite(&group, &contact)).await
    }

    async fn groups_accept(&self, group: String) -> RpcResult<()> {
        let core = Arc::clone(&self.core);
        blocking(move || core.groups_accept(&group)).await
    }

    async fn groups_decline(&self, group: String) -> RpcResult<()> {
        let core = Arc::clone(&self.core);
        blocking(move || core.groups_decline(&group)).await
    }

    async fn groups_invitations(&self) -> RpcResult<Vec<Invitation>> {
        self.core.groups_invitations().map_err(to_rpc)
    }

    async fn groups_leave(&self, group: String) -> RpcResult<()> {
        let core = Arc::clone(&self.core);
        blocking(move || core.groups_leave(&group)).await
    }

    async fn groups_remove(&self, group: String, member: String) -> RpcResult<()> {
        let core = Arc::clone(&self.core);
        blocking(move || core.groups_remove(&group, &member)).await
    }

    async fn groups_list(&self) -> RpcResult<Vec<GroupInfo>> {
        self.core.groups_list().map_err(to_rpc)
    }

    async fn groups_members(&self, group: String) -> RpcResult<Vec<GroupMember>> {
        self.core.groups_members(&group).map_err(to_rpc)
    }

    async fn events(&self, pending: PendingSubscriptionSink) -> SubscriptionResult {
        self.events_since(pending, None, None).await
    }

    async fn events_position(&self) -> RpcResult<EventPosition> {
        Ok(self.core.events_position())
    }

    async fn events_since(
        &self,
        pending: PendingSubscriptionSink,
        since: Option<u64>,
        stream: Option<String>,
    ) -> SubscriptionResult {
        let attached = match self.core.subscribe_since(since, stream.as_deref()) {
            Ok(a) => a,
            Err(e) => {
                pending.reject(to_rpc(e)).await;
                return Ok(());
            }
        };
        let sink = pending.accept().await?;
        let _ = forward(&self.core, &sink, attached, since.unwrap_or(0)).await;
        Ok(())
    }
}

/// Sends the replayed events, then the live ones, skipping any already
/// sent. A subscriber that lags behind the live channel is re-attached
/// from the replay log; if the log no longer holds what it missed, it gets
/// one `lagged` event (numbered as the last event lost) and goes on from
/// the oldest held.
async fn forward(
    core: &Core,
    sink: &jsonrpsee::SubscriptionSink,
    mut attached: Attached,
    mut last: u64,
) -> Result<(), Gone> {
    loop {
        for e in std::mem::take(&mut attached.replay) {
            last = e.seq;
            send(sink, &e).await?;
        }
        let e = tokio::select! {
            () = sink.closed() => return Ok(()),
            e = attached.live.recv() => e,
        };
        match e {
            Ok(e) if e.seq <= last => {}
            Ok(e) => {
                last = e.seq;
                send(sink, &e).await?;
            }
            Err(RecvError::Lagged(_)) => {
                let position = core.events_position();
                attached = if let Ok(a) = core.subscribe_since(Some(last), Some(&position.stream)) {
                    a
                } else {
                    let skipped = position.oldest.saturating_sub(1);
                    let lagged = SequencedEvent {
                        stream: position.stream.clone(),
                        seq: skipped,
                        event: Event::Lagged {
                            missed: skipped.saturating_sub(last),
                        },
                    };
                    send(sink, &lagged).await?;
                    last = skipped;
                    core.subscribe_since(Some(last), Some(&position.stream))
                        .map_err(|_| Gone)?
                };
            }
            Err(RecvError::Closed) => return Ok(()),
        }
    }
}

/// Sends one event; `Err(Gone)` once the subscriber has left (a quiet
/// end: the error would carry the event, text included, into a log).
async fn send(sink: &jsonrpsee::SubscriptionSink, e: &SequencedEvent) -> Result<(), Gone> {
    let msg = serde_json::value::to_raw_value(e).map_err(|_| Gone)?;
    sink.send(SubscriptionMessage::from(msg))
        .await
        .map_err(|_| Gone)
}

/// The subscriber left, or its stream cannot go on.
struct Gone;
