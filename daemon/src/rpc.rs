//! The `anonchat-ipc` API over [`Core`]. Slow calls (RSA key generation,
//! Argon2id) run on blocking threads so the socket keeps serving.

use std::sync::Arc;

use anonchat_ipc::{
    AnonchatServer, ContactInfo, ErrorCode, Event, HistoryEntry, IdentityInfo, SentMessage, Status,
    rpc_error,
};
use jsonrpsee::core::{SubscriptionResult, async_trait};
use jsonrpsee::types::ErrorObjectOwned;
use jsonrpsee::{PendingSubscriptionSink, SubscriptionMessage};
use tokio::sync::broadcast::error::RecvError;

use crate::core::Core;

type RpcResult<T> = Result<T, ErrorObjectOwned>;

pub struct Api {
    pub core: Arc<Core>,
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> RpcResult<T> + Send + 'static,
) -> RpcResult<T> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|_| {
        Err(rpc_error(
            ErrorCode::Busy,
            "the operation failed internally",
        ))
    })
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
        self.core.identity_show()
    }

    async fn identity_export(&self) -> RpcResult<String> {
        self.core.identity_export()
    }

    async fn identity_unlock(&self, passphrase: String) -> RpcResult<()> {
        let core = Arc::clone(&self.core);
        let passphrase = zeroize::Zeroizing::new(passphrase);
        blocking(move || core.identity_unlock(&passphrase)).await
    }

    async fn identity_lock(&self) -> RpcResult<()> {
        self.core.identity_lock()
    }

    async fn contacts_add(
        &self,
        identity_file_text: String,
        name: String,
    ) -> RpcResult<ContactInfo> {
        self.core.contacts_add(&identity_file_text, &name)
    }

    async fn contacts_list(&self) -> RpcResult<Vec<ContactInfo>> {
        Ok(self.core.contacts_list())
    }

    async fn contacts_remove(&self, name: String) -> RpcResult<()> {
        self.core.contacts_remove(&name)
    }

    async fn contacts_verify(&self, name: String, fingerprint: String) -> RpcResult<ContactInfo> {
        self.core.contacts_verify(&name, &fingerprint)
    }

    async fn messages_send(&self, to: String, text: String) -> RpcResult<SentMessage> {
        let text = zeroize::Zeroizing::new(text);
        self.core.messages_send(&to, &text)
    }

    async fn messages_history(
        &self,
        with: String,
        limit: Option<u32>,
    ) -> RpcResult<Vec<HistoryEntry>> {
        self.core.messages_history(&with, limit)
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
