#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod config;
pub mod contacts;
pub mod core;
pub mod error;
pub mod ipc;
pub mod keystore;
pub mod link;
pub mod memlock;
pub mod paths;
pub mod rpc;

use std::sync::Arc;

use anonchat_ipc::AnonchatServer as _;

/// Runs a daemon until SIGINT/SIGTERM or `daemon.shutdown`: takes the
/// home's lock, binds the socket, serves, and on the way out saves the
/// session state and drops every key and the history.
/// `proxy`, if given (the `--proxy` flag), is persisted in the home's
/// configuration first, so that it stays in force after a restart.
pub async fn run(settings: core::Settings, proxy: Option<config::Proxy>) -> anyhow::Result<()> {
    let paths = settings.paths.clone();
    paths::private_dir(&paths.home)?;
    if let Some(dir) = paths.socket.parent() {
        paths::private_dir(dir)?;
    }
    let _lock = paths::lock_home(&paths)?;
    let core = core::Core::open(settings)?;
    if proxy.is_some() {
        core.set_proxy(proxy)
            .map_err(|e| anyhow::anyhow!("{}", rpc::message(&e)))?;
    }
    if let Some(p) = core.daemon_config().proxy {
        tracing::info!(proxy = %p, "the relay link goes only through the proxy");
    }
    // Keys stored without a passphrase need no one to unlock them.
    if core.status().keys_protected == Some(false) {
        let core = Arc::clone(&core);
        tokio::task::spawn_blocking(move || core.identity_unlock(""))
            .await?
            .map_err(|e| anyhow::anyhow!("cannot load the keys: {}", rpc::message(&e)))?;
    }
    let listener = ipc::bind(&paths.socket)?;
    tracing::info!(socket = %paths.socket.display(), "anonchatd listening");
    let module = rpc::Api {
        core: Arc::clone(&core),
    }
    .into_rpc();

    let signals = {
        let shutdown = core.shutdown.clone();
        tokio::spawn(async move {
            use tokio::signal::unix::{SignalKind, signal};
            let Ok(mut term) = signal(SignalKind::terminate()) else {
                return;
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
                () = shutdown.cancelled() => return,
            }
            tracing::info!("signal received; stopping");
            shutdown.cancel();
        })
    };
    let link = link::spawn(Arc::clone(&core))?;
    ipc::serve(listener, module, core.shutdown.clone()).await;
    core.shutdown.cancel();
    let _ = tokio::task::spawn_blocking(move || link.join()).await;
    let _ = signals.await;
    core.close();
    let _ = std::fs::remove_file(&paths.socket);
    tracing::info!("anonchatd stopped; keys and history dropped");
    Ok(())
}
