//! `anonctl demo`: a relay on a free loopback port and two daemons with
//! temporary homes (alice and bob), who create identities, exchange their
//! identity files, verify fingerprints and talk both ways through the relay;
//! then carol joins them and the three talk in a group (`demo_group`).
//! Everything is cleaned up at the end, and on Ctrl-C.

use std::io::{BufRead as _, BufReader, Read as _};
use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anonchat_ipc::{AnonchatClient as _, Delivery, Direction};
use jsonrpsee::async_client::Client;

use crate::daemonctl::sibling;
use crate::fail::Fail;
use crate::show;

/// A child process that is stopped when dropped.
pub(crate) struct Guard(Child);

impl Guard {
    fn terminate(&mut self) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.0.id()).unwrap_or(i32::MAX));
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if matches!(self.0.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            self.terminate();
        }
    }
}

/// Finds the relay and daemon next to anonctl. Under `cargo run` it builds
/// them first (a no-op when they are up to date), so the demo never runs
/// stale siblings.
fn binaries() -> Result<(PathBuf, PathBuf), Fail> {
    if let (Ok(cargo), Ok(exe)) = (std::env::var("CARGO"), std::env::current_exe()) {
        let release = exe
            .parent()
            .and_then(Path::file_name)
            .is_some_and(|d| d == "release");
        eprintln!("building anonchat-relay and anonchatd if needed...");
        let mut cmd = Command::new(cargo);
        cmd.args([
            "build",
            "--quiet",
            "-p",
            "anonchat-relay",
            "-p",
            "anonchatd",
        ]);
        if release {
            cmd.arg("--release");
        }
        if !cmd.status().is_ok_and(|s| s.success()) {
            return Err(Fail::Other(
                "building anonchat-relay and anonchatd failed (see above)".into(),
            ));
        }
    }
    let (relay, daemon) = (sibling("anonchat-relay"), sibling("anonchatd"));
    if relay.is_absolute() && daemon.is_absolute() {
        return Ok((relay, daemon));
    }
    Err(Fail::Other(
        "anonchat-relay and anonchatd must sit next to anonctl: run `cargo build --release --workspace` (or install all three)".into(),
    ))
}

pub(crate) struct Demo {
    pub(crate) dir: tempfile::TempDir,
    relay: Guard,
    relay_err: Option<std::process::ChildStderr>,
    pub(crate) daemons: Vec<Guard>,
}

pub(crate) fn start_daemon(bin: &Path, dir: &Path, name: &str) -> Result<(Guard, PathBuf), Fail> {
    let socket = dir.join("run").join(format!("{name}.sock"));
    let child = Command::new(bin)
        .arg("--home")
        .arg(dir.join(name))
        .arg("--socket")
        .arg(&socket)
        .args(["--retransmit-s", "5"])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| Fail::Other(format!("cannot start {}: {e}", bin.display())))?;
    Ok((Guard(child), socket))
}

pub(crate) async fn wait_socket(socket: &Path) -> Result<Client, Fail> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok(c) = anonchat_ipc::client::connect_checked(socket).await {
            return Ok(c);
        }
        if Instant::now() > deadline {
            return Err(Fail::Other(format!(
                "a demo daemon did not open {}",
                socket.display()
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `anonctl demo`: runs the whole demo with rounds of `round_ms`, then
/// stops every process it started.
pub(crate) async fn run(round_ms: u64) -> Result<(), Fail> {
    let (relay_bin, daemon_bin) = binaries()?;
    let dir = tempfile::Builder::new()
        .prefix("anonchat-demo-")
        .tempdir()
        .map_err(|e| Fail::Other(e.to_string()))?;
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(dir.path().join("run"))
        .map_err(|e| Fail::Other(e.to_string()))?;
    let mut relay_child = Command::new(&relay_bin)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--round-ms",
            &round_ms.to_string(),
            "--key-file",
        ])
        .arg(dir.path().join("relay.key"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Fail::Other(format!("cannot start {}: {e}", relay_bin.display())))?;
    let mut address = String::new();
    if let Some(out) = relay_child.stdout.take() {
        BufReader::new(out)
            .read_line(&mut address)
            .map_err(|e| Fail::Other(e.to_string()))?;
    }
    let relay_err = relay_child.stderr.take();
    let mut demo = Demo {
        dir,
        relay: Guard(relay_child),
        relay_err,
        daemons: Vec::new(),
    };
    let address = address.trim().to_owned();
    if address.is_empty() {
        return Err(Fail::Other("the demo relay did not start".into()));
    }
    println!("relay      {address}  ({round_ms} ms rounds, 512-byte cells)");

    let outcome = tokio::select! {
        r = conversation(&mut demo, &daemon_bin, &address) => r,
        _ = tokio::signal::ctrl_c() => Err(Fail::Other("interrupted; cleaning up".into())),
    };
    // Stop the daemons, then the relay, and read what the relay counted.
    for d in &mut demo.daemons {
        d.terminate();
    }
    demo.relay.terminate();
    let mut log = String::new();
    if let Some(mut err) = demo.relay_err.take() {
        let _ = err.read_to_string(&mut log);
    }
    if outcome.is_ok() {
        let count = |name: &str| {
            log.lines()
                .rev()
                .find(|l| l.contains("relay stopped"))
                .and_then(|l| l.split(&format!("{name}=")).nth(1))
                .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
                .and_then(|n| n.parse::<u64>().ok())
        };
        match (count("cells_relayed"), count("rounds")) {
            (Some(cells), Some(rounds)) => println!(
                "\nwhat the relay saw: {cells} cells in {rounds} rounds, every one 512 bytes and random-looking; \
                 no names, no text, no recipients, and the same traffic from every daemon whether it talked or not."
            ),
            _ => println!("\n(the relay's counters were not readable)"),
        }
        println!("demo finished; every process and temporary file is gone.");
    }
    drop(demo);
    outcome
}

async fn conversation(demo: &mut Demo, daemon_bin: &Path, address: &str) -> Result<(), Fail> {
    let dir = demo.dir.path().to_path_buf();
    let (alice_proc, alice_sock) = start_daemon(daemon_bin, &dir, "alice")?;
    demo.daemons.push(alice_proc);
    let (bob_proc, bob_sock) = start_daemon(daemon_bin, &dir, "bob")?;
    demo.daemons.push(bob_proc);
    let alice = wait_socket(&alice_sock).await?;
    let bob = wait_socket(&bob_sock).await?;

    let a = alice
        .identity_create(
            "alice".into(),
            address.into(),
            Some("alice's demo passphrase".into()),
            None,
        )
        .await?;
    let b = bob
        .identity_create(
            "bob".into(),
            address.into(),
            Some("bob's demo passphrase".into()),
            None,
        )
        .await?;
    println!("alice      fingerprint {}", a.fingerprint);
    println!("bob        fingerprint {}", b.fingerprint);

    // The seed's exchange: your_id goes to the friend, friend_id comes back.
    let alice_file = alice.identity_export().await?;
    let file_len = alice_file.len();
    let bob_file = bob.identity_export().await?;
    let bob_as_seen = alice.contacts_add(bob_file, "bob".into()).await?;
    let alice_as_seen = bob.contacts_add(alice_file, "alice".into()).await?;
    // They read the twelve groups to each other; both lists match.
    alice
        .contacts_verify("bob".into(), b.fingerprint.clone())
        .await?;
    bob.contacts_verify("alice".into(), a.fingerprint.clone())
        .await?;
    println!(
        "identity files exchanged ({} bytes each); fingerprints compared aloud and verified: {}",
        file_len,
        if bob_as_seen.fingerprint == b.fingerprint && alice_as_seen.fingerprint == a.fingerprint {
            "match"
        } else {
            "MISMATCH"
        }
    );

    let script: [(&Client, &str, &Client, &str, &str); 4] = [
        (&alice, "bob", &bob, "alice", "Hi Bob! Is this thing on?"),
        (
            &bob,
            "alice",
            &alice,
            "bob",
            "Loud and clear, Alice. The relay can't tell who's talking.",
        ),
        (
            &alice,
            "bob",
            &bob,
            "alice",
            "Nor when: we both send a cell every round either way.",
        ),
        (
            &bob,
            "alice",
            &alice,
            "bob",
            "And our history lives only in RAM. Bye!",
        ),
    ];
    println!();
    for (from, to, peer, me, text) in script {
        exchange(from, to, peer, me, text).await?;
    }
    let status = alice.status().await?;
    println!(
        "\nalice's daemon: relay {}, round {}, {} undelivered",
        status.relay.state.as_str(),
        status.relay.round.unwrap_or(0),
        status.undelivered
    );
    crate::demo_group::run(demo, daemon_bin, address, &alice, &bob).await?;
    let _ = alice.shutdown().await;
    let _ = bob.shutdown().await;
    Ok(())
}

/// One message: sent, then waited for until delivered (acknowledged) and
/// received on the other side; printed with its delivery mark.
async fn exchange(
    from: &Client,
    to: &str,
    peer: &Client,
    me: &str,
    text: &str,
) -> Result<(), Fail> {
    let sent = from.messages_send(to.into(), text.into()).await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let delivered = from
            .messages_history(to.into(), None)
            .await?
            .into_iter()
            .find(|e| {
                e.direction == Direction::Out && e.id == sent.id && e.state == Delivery::Delivered
            });
        let received = peer
            .messages_history(me.into(), None)
            .await?
            .iter()
            .any(|e| e.direction == Direction::In && e.id == sent.id);
        if let (Some(e), true) = (delivered, received) {
            let who = if to == "bob" {
                "alice → bob  "
            } else {
                "bob   → alice"
            };
            println!(
                "[{}] {who}: {} {}",
                show::clock(e.time_ms),
                e.text,
                e.state.mark()
            );
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(Fail::Timeout(
                "a demo message was not delivered within 60 s".into(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
