//! The scripting examples of `examples/` against the real binaries: the
//! Python bot (standard library only) answers "ping" with "pong", and
//! loses no ping across a restart of its daemon or of itself, thanks to
//! `events.subscribe`'s `since`; `anonctl watch --since` replays too.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use anonchat_e2e::{Proc, World, eventually};

fn example(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(name)
}

/// `python3 examples/pingbot.py` for `user`'s daemon, keeping its position
/// in `state`.
fn bot(w: &World, user: &str, state: &std::path::Path) -> Proc {
    let child = Command::new("python3")
        .arg(example("pingbot.py"))
        .arg("--socket")
        .arg(w.socket(user))
        .arg("--state")
        .arg(state)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python3 is needed for the bot example (.ci/run installs it)");
    Proc(child)
}

/// The lines of `out`, read by a thread.
fn lines_of(out: impl std::io::Read + Send + 'static) -> std::sync::mpsc::Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(std::io::BufReader::new(out)) {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

fn pongs(w: &World) -> usize {
    w.received("alice", "bot")
        .iter()
        .filter(|t| *t == "pong")
        .count()
}

fn ping(w: &World) {
    w.json(
        "alice",
        &["send", "bot", "ping", "--wait", "--timeout", "60"],
    );
}

fn pings_received(w: &World) -> usize {
    w.received("bot", "alice")
        .iter()
        .filter(|t| *t == "ping")
        .count()
}

fn signal(p: &Proc, sig: nix::sys::signal::Signal) {
    let pid = nix::unistd::Pid::from_raw(i32::try_from(p.0.id()).unwrap());
    nix::sys::signal::kill(pid, sig).unwrap();
}

/// The bot answers a ping; a ping that arrives while the bot is stopped
/// and its daemon restarted, or while the bot itself is down, is answered
/// once it is back. Mutation: making the bot subscribe without `since`
/// (`params = {}`) loses the pings sent while it was away (the test times
/// out at "pong 2").
#[test]
fn the_python_bot_answers_pings_across_restarts() {
    let w = World::new();
    let (_relay, _addr, mut daemons) = w.friends(&["alice", "bot"], &[("alice", "bot")]);
    let state = w.path().join("pingbot.json");
    let mut bot_proc = bot(&w, "bot", &state);

    // Let it subscribe, then the plain case.
    eventually(30, "the bot saves its position", || {
        ping_once_then(&w, &state)
    });
    eventually(60, "pong 1", || pongs(&w) == 1);

    // The bot's daemon restarts while the bot is stopped, and the ping
    // arrives before the bot is back: a new stream, read from its start.
    signal(&bot_proc, nix::sys::signal::Signal::SIGSTOP);
    w.json("bot", &["daemon", "stop"]);
    let _ = daemons[1].0.wait();
    daemons[1] = w.daemon("bot");
    ping(&w);
    eventually(60, "the restarted daemon got the ping", || {
        pings_received(&w) == 1
    });
    signal(&bot_proc, nix::sys::signal::Signal::SIGCONT);
    eventually(60, "pong 2", || pongs(&w) == 2);

    // The bot itself restarts (its state file says where it was): the
    // ping sent while it was down is replayed from the daemon's log.
    bot_proc.kill_hard();
    ping(&w);
    eventually(60, "the daemon got the ping", || pings_received(&w) == 2);
    let _bot = bot(&w, "bot", &state);
    eventually(60, "pong 3", || pongs(&w) == 3);
    // Exactly once each.
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert_eq!(pongs(&w), 3);
}

/// Sends the first ping once the bot has written its state file (at
/// its first subscription).
fn ping_once_then(w: &World, state: &std::path::Path) -> bool {
    if !state.exists() {
        return false;
    }
    ping(w);
    true
}

/// `anonctl --json watch --since N --stream S` replays the events after N
/// and a position of another daemon run is refused with its own code and
/// the new position. Mutation: dropping the `since` filter in the daemon
/// (`attach` returning no replay) fails the first assertion.
#[test]
fn anonctl_watch_since_replays_and_refuses_another_run() {
    let w = World::new();
    let (_relay, _addr, _daemons) = w.users(&["alice"]);
    let position = w.json("alice", &["rpc", "events.position"]);
    let stream = position["stream"].as_str().unwrap().to_owned();
    let last = position["last"].as_u64().unwrap();
    assert!(last >= 2, "unlocked and relay state events: {position}");
    let mut child = Command::new(w.bins.join("anonctl"))
        .arg("--socket")
        .arg(w.socket("alice"))
        .args(["--json", "watch", "--since", "0", "--stream", &stream])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lines = lines_of(child.stdout.take().unwrap());
    let child = Proc(child);
    for seq in 1..=last {
        let line = lines
            .recv_timeout(std::time::Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("event {seq} was not replayed"));
        let e: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(e["seq"], seq, "{line}");
        assert_eq!(e["stream"], stream.as_str(), "{line}");
    }
    drop(child);

    let out = w.ctl(
        "alice",
        &[
            "--json",
            "watch",
            "--since",
            "1",
            "--stream",
            "0123456789abcdef",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let e: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(e["error"]["rpc_code"], -32015, "{e}");
    assert_eq!(e["error"]["data"]["stream"], stream.as_str(), "{e}");
    assert_eq!(e["error"]["data"]["oldest"], 1, "{e}");
}

/// `examples/anonchat.sh` (socat): a call gets its reply, `watch` with a
/// position replays the events after it. Skipped, saying so, where socat
/// is not installed (`.ci/run` installs it). Mutation: a `call` that does
/// not end its request with a newline gets no reply (the daemon reads
/// whole lines) and fails the first assertion.
#[test]
fn the_socat_example_calls_and_watches() {
    if Command::new("socat").arg("-V").output().is_err() {
        println!("skipped: socat is not installed (Debian: apt install socat)");
        return;
    }
    let w = World::new();
    let (_relay, _addr, _daemons) = w.users(&["alice"]);
    let run = |args: &[&str]| {
        let mut cmd = Command::new("sh");
        cmd.arg(example("anonchat.sh"))
            .args(args)
            .env("ANONCHAT_SOCKET", w.socket("alice"))
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .process_group(0);
        cmd
    };
    let out = run(&["call", "events.position"]).output().unwrap();
    assert!(out.status.success());
    let reply: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    let stream = reply["result"]["stream"].as_str().unwrap().to_owned();
    assert!(reply["result"]["last"].as_u64().unwrap() >= 2, "{reply}");

    let mut child = run(&["watch", "1", &stream])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = lines_of(child.stdout.take().unwrap());
    // sh, socat and sleep: the whole process group goes at the end.
    let group = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap());
    let _child = Proc(child);
    let _group = KillGroup(group);
    let next = || {
        let line = lines
            .recv_timeout(std::time::Duration::from_secs(20))
            .expect("a line from anonchat.sh watch");
        serde_json::from_str::<serde_json::Value>(&line).unwrap()
    };
    let id = next();
    assert!(id["result"].is_u64(), "the subscription id first: {id}");
    let first = next();
    assert_eq!(first["method"], "events.event");
    assert_eq!(first["params"]["result"]["seq"], 2, "{first}");
}

/// Kills a process group when dropped.
struct KillGroup(nix::unistd::Pid);

impl Drop for KillGroup {
    fn drop(&mut self) {
        let _ = nix::sys::signal::killpg(self.0, nix::sys::signal::Signal::SIGKILL);
    }
}
