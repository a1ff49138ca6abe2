//! Faults with the real binaries: relays killed and restarted, daemons
//! killed and restarted, while two users keep talking. Every message the
//! daemons accepted must arrive exactly once, in order, soon after the last
//! fault.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anonchat_e2e::{Proc, World};

/// Texts received by one user, in arrival order, read from `anonctl watch`
/// (the event stream survives what the RAM-only history does not: the
/// receiving daemon's own restart).
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<String>>>);

impl Seen {
    fn texts(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

/// Runs `anonctl --json watch` for `user`, appending every received text to
/// `seen`. Returns the process (kill it before the daemon goes away).
fn watch(w: &World, user: &str, seen: &Seen) -> Proc {
    let mut child = Command::new(w.bins.join("anonctl"))
        .arg("--socket")
        .arg(w.socket(user))
        .args(["--json", "watch"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let seen = seen.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { return };
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            if let Some(t) = find_text(&v) {
                seen.0.lock().unwrap().push(t);
            }
        }
    });
    // Let the subscription start before anything can arrive.
    std::thread::sleep(Duration::from_millis(300));
    Proc(child)
}

fn find_text(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::Object(m) => {
            if let Some(serde_json::Value::String(t)) = m.get("text") {
                return Some(t.clone());
            }
            m.values().find_map(find_text)
        }
        _ => None,
    }
}

/// `anonctl send`, retrying while the outbox is full (as a script would).
fn send(w: &World, from: &str, to: &str, text: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let out = w.ctl(from, &["send", to, text]);
        if out.status.success() {
            return;
        }
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(
            Instant::now() < deadline,
            "{from} could not queue {text:?} for two minutes: {err}"
        );
        // Outbox full, or the daemon restarting: try again shortly.
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn wait_socket(w: &World, user: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while w.ctl(user, &["status"]).status.code() == Some(3) {
        assert!(
            Instant::now() < deadline,
            "{user}'s daemon did not come back"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Checks that `got` is exactly `1..=n` of `from`, in order.
fn exactly_once_in_order(got: &[String], from: &str, n: usize) -> Result<(), String> {
    let want: Vec<String> = (1..=n).map(|i| format!("{from} #{i}")).collect();
    if got == want.as_slice() {
        return Ok(());
    }
    let mut count: BTreeMap<&str, usize> = BTreeMap::new();
    for t in got {
        *count.entry(t).or_default() += 1;
    }
    let missing: Vec<&String> = want
        .iter()
        .filter(|t| !count.contains_key(t.as_str()))
        .collect();
    let doubled: Vec<(&&str, &usize)> = count.iter().filter(|(_, c)| **c > 1).collect();
    Err(format!(
        "from {from}: {} of {n} received; missing {missing:?}; more than once {doubled:?}",
        got.len()
    ))
}

/// The scenario of the lost-conversation report: 50 ms rounds, both users
/// send one message per step; the relay is killed (SIGKILL) and restarted on the
/// same port and key at steps 25, 53 and 81; bob's daemon is killed (SIGKILL) and
/// restarted at step 90. The daemons run with the default 30 s retransmit
/// timer. Everything must arrive within 60 s of the last fault, exactly
/// once and in order (bob's own watch is restarted with his daemon).
#[test]
fn relay_restarts_then_a_daemon_crash_lose_and_stall_nothing() {
    const STEPS: usize = 100;
    let w = World::new();
    let (relay, addr) = w.relay_with(0, 50);
    let port: u16 = addr
        .trim_start_matches("anonchat://")
        .split(['/', '#'])
        .next()
        .and_then(|hp| hp.rsplit_once(':'))
        .map(|(_, p)| p.parse().unwrap())
        .unwrap();
    let mut relay = Some(relay);
    let alice = w.daemon_with("alice", 30);
    let mut bob = w.daemon_with("bob", 30);
    w.init("alice", &addr);
    w.init("bob", &addr);
    w.introduce("alice", "bob");
    w.introduce("bob", "alice");
    let at_alice = Seen::default();
    let at_bob = Seen::default();
    let _watch_alice = watch(&w, "alice", &at_alice);
    let mut watch_bob = watch(&w, "bob", &at_bob);

    for step in 1..=STEPS {
        send(&w, "alice", "bob", &format!("alice #{step}"));
        send(&w, "bob", "alice", &format!("bob #{step}"));
        if [25, 53, 81].contains(&step) {
            relay.take().unwrap().kill_hard();
            std::thread::sleep(Duration::from_millis(700));
            relay = Some(w.relay_with(port, 50).0);
        }
        if step == 90 {
            // The daemon dies first: its watcher sees every event it sent.
            bob.kill_hard();
            watch_bob.kill_hard();
            bob = w.daemon_with("bob", 30);
            wait_socket(&w, "bob");
            watch_bob = watch(&w, "bob", &at_bob);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let a = exactly_once_in_order(&at_alice.texts(), "bob", STEPS);
        let b = exactly_once_in_order(&at_bob.texts(), "alice", STEPS);
        if a.is_ok() && b.is_ok() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not everything arrived within 60 s of the last fault:\n  at alice: {a:?}\n  at bob: {b:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    drop((alice, bob, relay));
}
