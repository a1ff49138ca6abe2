//! Helpers for the end-to-end tests: the workspace's real binaries (built
//! by `cargo test --workspace` / `cargo build --workspace`), started on
//! 127.0.0.1 with temporary homes and sockets, and stopped when dropped.

#![forbid(unsafe_code)]
// Test support: a failed step should stop the test loudly.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::missing_panics_doc
)]

pub mod hostile;

use std::io::{BufRead as _, BufReader};
use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The directory holding the workspace's binaries (next to this test's).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap().to_path_buf();
    for b in ["anonchat-relay", "anonchatd", "anonctl"] {
        assert!(
            dir.join(b).exists(),
            "{} is missing: build the workspace first (`cargo build --workspace`, or run `cargo test --workspace`)",
            dir.join(b).display()
        );
    }
    dir
}

/// A process killed when dropped.
pub struct Proc(pub Child);

impl Proc {
    /// SIGKILL, then reap.
    pub fn kill_hard(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill_hard();
    }
}

/// A scratch directory for homes and sockets, and the binaries to run.
pub struct World {
    /// Removed when the world is dropped.
    pub dir: tempfile::TempDir,
    /// Where the workspace's binaries are.
    pub bins: PathBuf,
}

impl Default for World {
    fn default() -> Self {
        Self::new()
    }
}

impl World {
    /// A fresh world (0700 directory).
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(dir.path().join("run"))
            .unwrap();
        Self {
            dir,
            bins: bin_dir(),
        }
    }

    /// The scratch directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A relay with 100 ms rounds on `port` (0: a free one). Returns it
    /// and its address line.
    pub fn relay(&self, port: u16) -> (Proc, String) {
        self.relay_with(port, 100)
    }

    /// A relay with `round_ms` rounds on `port` (0: a free one), its key
    /// kept in the world (so a restart on the same port is the same relay).
    pub fn relay_with(&self, port: u16, round_ms: u32) -> (Proc, String) {
        let mut child = Command::new(self.bins.join("anonchat-relay"))
            .args([
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--round-ms",
                &round_ms.to_string(),
                "--key-file",
            ])
            .arg(self.path().join("relay.key"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(line.starts_with("anonchat://"), "relay printed {line:?}");
        (Proc(child), line.trim().to_owned())
    }

    /// The daemon socket of `user`.
    pub fn socket(&self, user: &str) -> PathBuf {
        self.path().join("run").join(format!("{user}.sock"))
    }

    /// `anonchatd` for `user`, retransmitting after 2 s.
    pub fn daemon(&self, user: &str) -> Proc {
        self.daemon_with(user, 2)
    }

    /// `anonchatd` for `user`, retransmitting after `retransmit_s` seconds
    /// (the daemon's default is 30).
    pub fn daemon_with(&self, user: &str, retransmit_s: u64) -> Proc {
        let mut cmd = self.daemon_command(user, retransmit_s);
        cmd.env("RUST_LOG", "warn").stderr(Stdio::null());
        self.start_daemon(user, cmd)
    }

    /// The `anonchatd` command line for `user` (its home and socket in the
    /// world), to adjust (environment, output) before
    /// [`World::start_daemon`].
    pub fn daemon_command(&self, user: &str, retransmit_s: u64) -> Command {
        let mut cmd = Command::new(self.bins.join("anonchatd"));
        cmd.arg("--home")
            .arg(self.path().join(user))
            .arg("--socket")
            .arg(self.socket(user))
            .args(["--retransmit-s", &retransmit_s.to_string()]);
        cmd
    }

    /// Spawns `cmd` (`user`'s daemon) and waits for its socket.
    pub fn start_daemon(&self, user: &str, mut cmd: Command) -> Proc {
        let child = cmd.spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(15);
        while !self.socket(user).exists() {
            assert!(Instant::now() < deadline, "{user}'s daemon did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Proc(child)
    }

    /// Runs `anonctl --socket <user's> ARGS`.
    pub fn ctl(&self, user: &str, args: &[&str]) -> Output {
        Command::new(self.bins.join("anonctl"))
            .arg("--socket")
            .arg(self.socket(user))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// Runs `anonctl --json ...`, expects success, parses the output.
    pub fn json(&self, user: &str, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.ctl(user, &all);
        assert!(
            out.status.success(),
            "anonctl {args:?} for {user} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "anonctl {args:?}: not JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }

    /// `anonctl init` for `user` on `relay` (no passphrase).
    pub fn init(&self, user: &str, relay: &str) {
        self.json(
            user,
            &["init", "--name", user, "--relay", relay, "--no-passphrase"],
        );
    }

    /// Exports `from`'s identity file and imports it at `to` under `from`'s
    /// name, verified (`--yes`).
    pub fn introduce(&self, from: &str, to: &str) {
        let file = self.path().join(format!("{from}.id"));
        self.json(from, &["id", "export", file.to_str().unwrap()]);
        self.json(
            to,
            &[
                "contact",
                "add",
                file.to_str().unwrap(),
                "--name",
                from,
                "--yes",
            ],
        );
    }

    /// A relay and daemons for `users`, each with an identity (no
    /// passphrase). Keep the returned processes alive for the test.
    pub fn users(&self, users: &[&str]) -> (Proc, String, Vec<Proc>) {
        let (relay, addr) = self.relay(0);
        let daemons = users.iter().map(|u| self.daemon(u)).collect();
        for u in users {
            self.init(u, &addr);
        }
        (relay, addr, daemons)
    }

    /// `users` plus every pair in `pairs` introduced both ways.
    pub fn friends(&self, users: &[&str], pairs: &[(&str, &str)]) -> (Proc, String, Vec<Proc>) {
        let world = self.users(users);
        for (x, y) in pairs {
            self.introduce(x, y);
            self.introduce(y, x);
        }
        world
    }

    /// The texts `user` received from `contact`, in order.
    pub fn received(&self, user: &str, contact: &str) -> Vec<String> {
        self.history(user, contact)
            .iter()
            .filter(|e| e["direction"] == "in")
            .map(|e| e["text"].as_str().unwrap().to_owned())
            .collect()
    }

    /// `user`'s history with `contact`, through `anonctl --json history`.
    pub fn history(&self, user: &str, contact: &str) -> Vec<serde_json::Value> {
        self.json(user, &["history", contact])
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

/// Polls `check` every 100 ms until it holds, or panics after `secs`.
pub fn eventually(secs: u64, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
