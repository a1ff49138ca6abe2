//! `anonctl daemon start|stop`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anonchat_ipc::AnonchatClient as _;

use crate::fail::Fail;
use crate::show;

/// A sibling binary next to `anonctl`, else the name for `$PATH`.
pub(crate) fn sibling(name: &str) -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join(name)))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from(name))
}

/// Starts anonchatd on `socket`, detached, unless one already answers there;
/// waits up to 15 s for its socket.
pub(crate) async fn start(
    socket: &Path,
    home: Option<&Path>,
    proxy: Option<&str>,
    json: bool,
) -> Result<(), Fail> {
    match anonchat_ipc::client::connect(socket).await {
        Ok(c) => {
            // Running already: a proxy asked for must not be ignored.
            if let Some(p) = proxy {
                anonchat_ipc::AnonchatClient::set_proxy(&c, Some(p.to_owned())).await?;
            }
            show::done(
                json,
                &format!(
                    "anonchatd is already running on {}{}",
                    socket.display(),
                    if proxy.is_some() {
                        "; the proxy is set (saved)"
                    } else {
                        ""
                    }
                ),
            );
            return Ok(());
        }
        // Someone else's socket there: say so rather than start beside it.
        Err(e @ anonchat_ipc::client::ConnectError::Untrusted { .. }) => return Err(e.into()),
        Err(_) => {}
    }
    let mut cmd = Command::new(sibling("anonchatd"));
    cmd.arg("--socket").arg(socket);
    if let Some(h) = home {
        cmd.arg("--home").arg(h);
    }
    if let Some(p) = proxy {
        cmd.arg("--proxy").arg(p);
    }
    // Detached: its own process group, no terminal, no inherited output.
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| {
            Fail::Other(format!(
                "cannot start anonchatd ({e}); is it installed next to anonctl or on PATH?"
            ))
        })?;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if anonchat_ipc::client::connect(socket).await.is_ok() {
            break;
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(Fail::Other(format!(
                "anonchatd exited at once ({status}); run `anonchatd` in a terminal to see why"
            )));
        }
        if Instant::now() > deadline {
            return Err(Fail::Timeout(
                "anonchatd did not open its socket within 15 s".into(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    show::done(
        json,
        &format!(
            "anonchatd started (pid {}), socket {}",
            child.id(),
            socket.display()
        ),
    );
    Ok(())
}

/// Asks the daemon to shut down and waits up to 10 s for its socket to go.
pub(crate) async fn stop(socket: &Path, json: bool) -> Result<(), Fail> {
    let c = anonchat_ipc::client::connect(socket).await?;
    c.shutdown().await?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while socket.exists() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    show::done(json, "anonchatd stopped (keys and history dropped)");
    Ok(())
}
