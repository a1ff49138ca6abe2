//! The seed's scenario and its hard cases, with the real binaries: generate
//! identities, exchange the public files, connect, converse.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use anonchat_e2e::{World, eventually};

#[test]
fn the_seed_scenario_generate_exchange_connect_converse() {
    let w = World::new();
    let (_relay, addr) = w.relay(0);
    let _a = w.daemon("alice");
    let _b = w.daemon("bob");

    // Alice protects her keys with a passphrase read from a file.
    let pass = w.path().join("alice.pass");
    std::fs::write(&pass, "a long passphrase\n").unwrap();
    let id = w.json(
        "alice",
        &[
            "init",
            "--name",
            "alice",
            "--relay",
            &addr,
            "--passphrase-file",
            pass.to_str().unwrap(),
        ],
    );
    assert_eq!(id["fingerprint"].as_str().unwrap().split(' ').count(), 12);
    w.init("bob", &addr);
    let status = w.json("bob", &["status"]);
    assert_eq!(status["keys_protected"], false);
    assert!(
        status["warnings"][0]
            .as_str()
            .unwrap()
            .contains("without a passphrase")
    );

    // your_id / friend_id, both ways.
    w.introduce("alice", "bob");
    w.introduce("bob", "alice");
    let contacts = w.json("alice", &["contacts"]);
    assert_eq!(contacts[0]["name"], "bob");
    assert_eq!(contacts[0]["verified"], true);

    let sent = w.json(
        "alice",
        &[
            "send",
            "bob",
            "Hi Bob, it's Alice.",
            "--wait",
            "--timeout",
            "60",
        ],
    );
    assert_eq!(sent["state"], "delivered");
    let sent = w.json(
        "bob",
        &["send", "alice", "Hello Alice!", "--wait", "--timeout", "60"],
    );
    assert_eq!(sent["state"], "delivered");
    assert_eq!(w.received("bob", "alice"), vec!["Hi Bob, it's Alice."]);
    assert_eq!(w.received("alice", "bob"), vec!["Hello Alice!"]);

    // Text from stdin, and the human-readable history with delivery marks.
    let out = std::process::Command::new(w.bins.join("anonctl"))
        .arg("--socket")
        .arg(w.socket("bob"))
        .args(["send", "alice", "--wait"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write as _;
            child.stdin.take().unwrap().write_all(b"from stdin\n")?;
            child.wait_with_output()
        })
        .unwrap();
    assert!(out.status.success());
    let human = w.ctl("bob", &["history", "alice"]);
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(text.contains("you → alice: Hello Alice! ✓✓"), "{text}");
    assert!(text.contains("alice → you: Hi Bob, it's Alice."), "{text}");
}

#[test]
fn a_contact_imported_on_one_side_only_cannot_talk() {
    let w = World::new();
    let _world = w.users(&["alice", "bob"]);
    w.introduce("bob", "alice"); // alice knows bob; bob does not know alice

    let out = w.ctl(
        "alice",
        &[
            "--json",
            "send",
            "bob",
            "anyone there?",
            "--wait",
            "--timeout",
            "5",
        ],
    );
    assert_eq!(out.status.code(), Some(5), "timed out, not delivered");
    assert!(String::from_utf8_lossy(&out.stdout).contains("not delivered"));
    assert!(w.json("bob", &["contacts"]).as_array().unwrap().is_empty());
    let out = w.ctl("bob", &["history", "alice"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no contact by that name"));
}

#[test]
fn a_corrupted_identity_file_is_refused_with_a_clear_message() {
    let w = World::new();
    let _world = w.users(&["alice", "bob"]);
    let file = w.path().join("bob.id");
    w.json("bob", &["id", "export", file.to_str().unwrap()]);
    let mut text = std::fs::read_to_string(&file).unwrap();
    // Flip one character in the middle of the base64 body.
    let at = text.len() / 2;
    let c = text.as_bytes()[at];
    let flipped = if c == b'A' { "B" } else { "A" };
    text.replace_range(at..=at, flipped);
    std::fs::write(&file, &text).unwrap();

    let out = w.ctl(
        "alice",
        &[
            "contact",
            "add",
            file.to_str().unwrap(),
            "--name",
            "bob",
            "--yes",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("identity file was refused"), "{err}");
    assert!(
        err.contains("fresh copy") || err.contains("damaged") || err.contains("altered"),
        "{err}"
    );
    assert!(
        w.json("alice", &["contacts"])
            .as_array()
            .unwrap()
            .is_empty()
    );

    // A file that is not an identity at all.
    std::fs::write(&file, "hello").unwrap();
    let out = w.ctl(
        "alice",
        &["contact", "add", file.to_str().unwrap(), "--name", "bob"],
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("BEGIN ANONCHAT IDENTITY"));
}

#[test]
fn three_users_in_one_shard_each_pair_talks_and_nobody_reads_another_pair() {
    let w = World::new();
    // alice–bob and bob–carol are pairs; alice and carol are strangers.
    let _world = w.friends(
        &["alice", "bob", "carol"],
        &[("alice", "bob"), ("bob", "carol")],
    );
    w.json(
        "alice",
        &["send", "bob", "a→b secret", "--wait", "--timeout", "60"],
    );
    w.json(
        "bob",
        &["send", "carol", "b→c secret", "--wait", "--timeout", "60"],
    );
    w.json(
        "carol",
        &["send", "bob", "c→b secret", "--wait", "--timeout", "60"],
    );
    w.json(
        "bob",
        &["send", "alice", "b→a secret", "--wait", "--timeout", "60"],
    );

    assert_eq!(w.received("bob", "alice"), vec!["a→b secret"]);
    assert_eq!(w.received("alice", "bob"), vec!["b→a secret"]);
    assert_eq!(w.received("carol", "bob"), vec!["b→c secret"]);
    assert_eq!(w.received("bob", "carol"), vec!["c→b secret"]);
    // Carol saw every cell of the shard and read nothing of alice's.
    let carol_contacts = w.json("carol", &["contacts"]);
    assert_eq!(carol_contacts.as_array().unwrap().len(), 1);
    let all_carol: Vec<String> = w
        .history("carol", "bob")
        .iter()
        .map(|e| e["text"].to_string())
        .collect();
    assert!(
        all_carol
            .iter()
            .all(|t| !t.contains("a→b") && !t.contains("b→a")),
        "{all_carol:?}"
    );
}

#[test]
fn relay_killed_and_restarted_mid_conversation_delivers_every_message_exactly_once() {
    let w = World::new();
    let (mut relay, addr, _daemons) = w.friends(&["alice", "bob"], &[("alice", "bob")]);
    let port: u16 = addr
        .split(':')
        .nth(2)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    w.json(
        "alice",
        &["send", "bob", "one", "--wait", "--timeout", "60"],
    );

    relay.kill_hard();
    for text in ["two", "three"] {
        w.json("alice", &["send", "bob", text]);
    }
    w.json("bob", &["send", "alice", "four"]);
    std::thread::sleep(std::time::Duration::from_millis(800));
    let (_relay2, addr2) = w.relay(port);
    assert_eq!(addr2, addr, "same key file, same port: same address");

    eventually(
        90,
        "every message delivered after the relay restart",
        || w.received("bob", "alice").len() == 3 && w.received("alice", "bob").len() == 1,
    );
    // Give retransmissions a chance to show duplicates, if there were any.
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert_eq!(w.received("bob", "alice"), vec!["one", "two", "three"]);
    assert_eq!(w.received("alice", "bob"), vec!["four"]);
    let states: Vec<String> = w
        .history("alice", "bob")
        .iter()
        .map(|e| e["state"].to_string())
        .collect();
    assert!(
        states
            .iter()
            .all(|s| s == "\"delivered\"" || s == "\"received\""),
        "{states:?}"
    );
}

#[test]
fn a_daemon_restart_keeps_contacts_and_identity_not_history() {
    let w = World::new();
    let (_relay, _addr, mut daemons) = w.friends(&["alice", "bob"], &[("alice", "bob")]);
    w.json(
        "alice",
        &[
            "send",
            "bob",
            "before the restart",
            "--wait",
            "--timeout",
            "60",
        ],
    );
    let before = w.json("alice", &["id"]);

    w.json("alice", &["daemon", "stop"]);
    let _ = daemons[0].0.wait();
    // `anonctl daemon start` brings it back, detached.
    let home = w.path().join("alice");
    let out = w.ctl(
        "alice",
        &["daemon", "start", "--home", home.to_str().unwrap()],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(w.json("alice", &["id"]), before, "same identity");
    assert_eq!(w.json("alice", &["contacts"])[0]["name"], "bob");
    assert!(
        w.history("alice", "bob").is_empty(),
        "history was in RAM only"
    );
    w.json(
        "alice",
        &[
            "send",
            "bob",
            "after the restart",
            "--wait",
            "--timeout",
            "60",
        ],
    );
    assert_eq!(
        w.received("bob", "alice"),
        vec!["before the restart", "after the restart"]
    );
    w.json("alice", &["daemon", "stop"]);
}

#[test]
fn usage_errors_and_an_absent_daemon_have_their_exit_codes() {
    let w = World::new();
    let out = w.ctl("nobody", &["status"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("anonctl daemon start"));
    let out = w.ctl("nobody", &["--json", "status"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["error"]["exit_code"], 3);
    let out = w.ctl("nobody", &["send"]);
    assert_eq!(out.status.code(), Some(2));
    let out = w.ctl("nobody", &["completions", "bash"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("anonctl"));
    let man = w.path().join("man");
    assert!(
        w.ctl("nobody", &["man", man.to_str().unwrap()])
            .status
            .success()
    );
    assert!(man.join("anonctl.1").exists() && man.join("anonctl-send.1").exists());
}

#[test]
fn chat_reads_lines_until_ctrl_d_and_rpc_calls_any_method() {
    use std::io::Write as _;
    let w = World::new();
    let _world = w.friends(&["alice", "bob"], &[("alice", "bob")]);

    let mut chat = std::process::Command::new(w.bins.join("anonctl"))
        .arg("--socket")
        .arg(w.socket("alice"))
        .args(["chat", "bob"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    chat.stdin
        .as_mut()
        .unwrap()
        .write_all(b"first line\n\nsecond line\n")
        .unwrap();
    eventually(60, "bob got both chat lines", || {
        w.received("bob", "alice").len() == 2
    });
    drop(chat.stdin.take()); // Ctrl-D
    let out = chat.wait_with_output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("chatting with bob"));
    assert_eq!(
        w.received("bob", "alice"),
        vec!["first line", "second line"]
    );

    let status = w.json("bob", &["rpc", "daemon.status"]);
    assert_eq!(status["api_version"], 1);
    let hist = w.json(
        "bob",
        &["rpc", "messages.history", r#"{"with":"alice","limit":1}"#],
    );
    assert_eq!(hist[0]["text"], "second line");
    let out = w.ctl("bob", &["rpc", "messages.history", "not json"]);
    assert_eq!(out.status.code(), Some(2));
}
