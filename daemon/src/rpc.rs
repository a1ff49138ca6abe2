//! The `anonchat-ipc` API over [`Core`]. Slow calls (RSA key generation,
//! Argon2id) run on blocking threads so the socket keeps serving.
//!
//! This is the one place where the daemon's [`Error`] becomes a JSON-RPC
//! error object ([`to_rpc`]).

use std::sync::Arc;

use anonchat_ipc::{
    AnonchatServer, ContactInfo, DaemonConfig, ErrorCode, Event, HistoryCursor, HistoryEntry,
    HistoryPage, IdentityInfo, SentMessage, Status, rpc_error,
};
use jsonrpsee::core::{SubscriptionResult, async_trait};
use jsonrpsee::types::ErrorObjectOwned;
use jsonrpsee::{PendingSubscriptionSink, SubscriptionMessage};
use tokio::sync::broadcast::error::RecvError;

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
#[expect(
    clippy::needless_pass_by_value,
    reason = "called as map_err(to_rpc): the error is consumed here"
)]
pub fn to_rpc(e: Error) -> ErrorObjectOwned {
    let plain = rpc_error(e.code(), &e);
    match e {
        Error::OutboxFull { retry_after_ms, .. } => ErrorObjectOwned::owned(
            plain.code(),
            plain.message().to_owned(),
            Some(serde_json::json!({ "retry_after_ms": retry_after_ms })),
        ),
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

    async fn events(&self, pending: PendingSubscriptionSink) -> SubscriptionResult {
        let mut rx = self.core.subscribe();
        let sink = pending.accept().await?;
        loop {
            let event = tokio::select! {
                () = sink.closed() => return Ok(()),
                e = rx.recv() => match e {
                    Ok(e) => e,
                    Err(RecvError::Lagged(missed)) => Event::Lagged { missed },
                    Err(RecvError::Closed) => return Ok(()),
                },
            };
            let msg = SubscriptionMessage::from(serde_json::value::to_raw_value(&event)?);
            if sink.send(msg).await.is_err() {
                return Ok(());
            }
        }
    }
}
