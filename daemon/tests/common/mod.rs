//! Real processes for the daemon's tests: `anonchat-relay` and `anonchatd`
//! on loopback, with temporary homes and sockets.

#![allow(dead_code, unreachable_pub)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use std::time::{Duration, Instant};

use anonchat_ipc::{AnonchatClient as _, Delivery, HistoryEntry};
use jsonrpsee::async_client::Client;

pub struct Proc {
    pub child: Child,
}

impl Proc {
    pub fn term(&mut self) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).unwrap());
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An in-process relay on 127.0.0.1 (`port` 0 for a fresh one) with
/// 100 ms rounds; stop it with [`RelayTask::stop`].
pub struct RelayTask {
    pub addr: String,
    pub port: u16,
    key: [u8; 32],
    shutdown: tokio_util::sync::CancellationToken,
    task: tokio::task::JoinHandle<std::sync::Arc<anonchat_relay::Stats>>,
}

pub async fn relay(port: u16, key: Option<[u8; 32]>) -> RelayTask {
    use anonchat_protocol::wire::RelayKeypair;
    let key = key.unwrap_or_else(|| *RelayKeypair::generate(&mut rand::rng()).private_bytes());
    let keypair = RelayKeypair::from_private(zeroize::Zeroizing::new(key));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    let relay = anonchat_relay::Relay {
        config: anonchat_relay::RelayConfig {
            round: Duration::from_millis(100),
            ..anonchat_relay::RelayConfig::default()
        },
        keypair,
    };
    let addr = relay.address("127.0.0.1", port).unwrap().to_string();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn({
        let shutdown = shutdown.clone();
        async move { anonchat_relay::run(listener, relay, shutdown).await }
    });
    RelayTask {
        addr,
        port,
        key,
        shutdown,
        task,
    }
}

impl RelayTask {
    /// Stops the relay (its backlog is gone) and returns what restarts it.
    pub async fn stop(self) -> (u16, [u8; 32]) {
        self.stop_with_stats().await.0
    }

    /// Stops the relay; also returns its final counters.
    pub async fn stop_with_stats(self) -> ((u16, [u8; 32]), std::sync::Arc<anonchat_relay::Stats>) {
        self.shutdown.cancel();
        let stats = self.task.await.unwrap();
        ((self.port, self.key), stats)
    }
}

pub struct Daemon {
    pub proc: Proc,
    pub home: PathBuf,
    pub socket: PathBuf,
}

pub fn daemon(dir: &Path, name: &str) -> Daemon {
    daemon_with(dir, name, &[])
}

/// [`daemon`] with extra command-line arguments.
pub fn daemon_with(dir: &Path, name: &str, extra: &[&str]) -> Daemon {
    let home = dir.join(name);
    // The daemon insists on a private (0700) socket directory.
    let run = dir.join("run");
    if !run.exists() {
        use std::os::unix::fs::DirBuilderExt as _;
        std::fs::DirBuilder::new().mode(0o700).create(&run).unwrap();
    }
    let socket = run.join(format!("{name}.sock"));
    // A daemon killed earlier leaves its socket file behind.
    let _ = std::fs::remove_file(&socket);
    let child = Command::new(env!("CARGO_BIN_EXE_anonchatd"))
        .arg("--home")
        .arg(&home)
        .arg("--socket")
        .arg(&socket)
        .args(["--retransmit-s", "2"])
        .args(extra)
        .env("RUST_LOG", "warn")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !socket.exists() {
        assert!(Instant::now() < deadline, "daemon socket did not appear");
        std::thread::sleep(Duration::from_millis(20));
    }
    Daemon {
        proc: Proc { child },
        home,
        socket,
    }
}

impl Daemon {
    pub async fn client(&self) -> Client {
        anonchat_ipc::client::connect_checked(&self.socket)
            .await
            .unwrap()
    }
}

/// Waits until `check` holds, polling, or panics after `secs`.
pub async fn eventually<F, Fut>(secs: u64, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn history(c: &Client, with: &str) -> Vec<HistoryEntry> {
    c.messages_history(with.to_owned(), None).await.unwrap()
}

pub fn texts(h: &[HistoryEntry], dir: anonchat_ipc::Direction) -> Vec<String> {
    h.iter()
        .filter(|e| e.direction == dir)
        .map(|e| e.text.clone())
        .collect()
}

pub fn all_delivered(h: &[HistoryEntry]) -> bool {
    h.iter()
        .filter(|e| e.direction == anonchat_ipc::Direction::Out)
        .all(|e| e.state == Delivery::Delivered)
}

/// Two daemons with identities that imported each other's files.
pub async fn pair(dir: &Path, relay_addr: &str) -> (Daemon, Client, Daemon, Client) {
    pair_with(dir, relay_addr, &[]).await
}

/// [`pair`], both daemons started with `extra` arguments.
pub async fn pair_with(
    dir: &Path,
    relay_addr: &str,
    extra: &[&str],
) -> (Daemon, Client, Daemon, Client) {
    let a = daemon_with(dir, "alice", extra);
    let b = daemon_with(dir, "bob", extra);
    let (ca, cb) = (a.client().await, b.client().await);
    ca.identity_create("alice".into(), relay_addr.into(), Some("pw-a".into()), None)
        .await
        .unwrap();
    cb.identity_create("bob".into(), relay_addr.into(), None, None)
        .await
        .unwrap();
    let fa = ca.identity_export().await.unwrap();
    let fb = cb.identity_export().await.unwrap();
    ca.contacts_add(fb, "bob".into()).await.unwrap();
    cb.contacts_add(fa, "alice".into()).await.unwrap();
    (a, ca, b, cb)
}

/// Every file under `dir`, read as bytes.
pub fn files_under(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(bytes) = std::fs::read(&p) {
                out.push((p, bytes));
            }
        }
    }
    out
}
