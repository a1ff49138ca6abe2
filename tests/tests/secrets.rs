//! Nothing secret in the daemon's log, at any `RUST_LOG`: with the real
//! binaries at TRACE (and `RUST_LOG` trying to turn jsonrpsee back up), a
//! whole session — create with a passphrase, lock, unlock, add a contact,
//! send, read history — leaves neither passphrase, nor text, nor names on
//! stderr.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::process::Stdio;

use anonchat_e2e::{Proc, World};

/// Everything at TRACE, and every jsonrpsee target asked for explicitly
/// (later and more specific than the catch-all), as a user might.
const HOSTILE_RUST_LOG: &str = "trace,jsonrpsee=trace,jsonrpsee_core=trace,\
jsonrpsee_server=trace,jsonrpsee_types=trace,jsonrpsee-core=trace,jsonrpsee-server=trace,\
jsonrpsee_core::server::rpc_module=trace,anonchatd=trace";

/// `anonchatd` for `user` with `RUST_LOG` = [`HOSTILE_RUST_LOG`] and its
/// stderr in a file of the world, whose path is returned.
fn logged_daemon(w: &World, user: &str) -> (Proc, PathBuf) {
    let log = w.path().join(format!("{user}.stderr"));
    let mut cmd = w.daemon_command(user, 2);
    cmd.env("RUST_LOG", HOSTILE_RUST_LOG)
        .env("NO_COLOR", "1")
        .stderr(Stdio::from(std::fs::File::create(&log).unwrap()));
    (w.start_daemon(user, cmd), log)
}

#[test]
fn trace_logs_hold_no_passphrase_text_or_names() {
    const PASSPHRASE: &str = "zebrapassphrase7319";
    const ALICE_NICK: &str = "alicenickqx";
    const BOB_NICK: &str = "bobnickqx";
    const BOB_NAME_AT_ALICE: &str = "bobcontactname";
    const ALICE_NAME_AT_BOB: &str = "alicecontactname";
    const TEXT_TO_BOB: &str = "distinctivetextforbob4711";
    const TEXT_TO_ALICE: &str = "distinctivereplyforalice0815";

    let w = World::new();
    let (_relay, addr) = w.relay(0);
    let (mut alice, alice_log) = logged_daemon(&w, "alice");
    let (mut bob, bob_log) = logged_daemon(&w, "bob");

    // Alice: a passphrase, then lock and unlock with it.
    let pass = w.path().join("alice.pass");
    std::fs::write(&pass, format!("{PASSPHRASE}\n")).unwrap();
    let pass = pass.to_str().unwrap();
    w.json(
        "alice",
        &[
            "init",
            "--name",
            ALICE_NICK,
            "--relay",
            &addr,
            "--passphrase-file",
            pass,
        ],
    );
    w.json("alice", &["lock"]);
    w.json("alice", &["unlock", "--passphrase-file", pass]);
    w.json(
        "bob",
        &[
            "init",
            "--name",
            BOB_NICK,
            "--relay",
            &addr,
            "--no-passphrase",
        ],
    );

    // Each adds the other under a name of their own.
    let mut fingerprints = Vec::new();
    for (from, to, name) in [
        ("alice", "bob", ALICE_NAME_AT_BOB),
        ("bob", "alice", BOB_NAME_AT_ALICE),
    ] {
        let file = w.path().join(format!("{from}.id"));
        let file = file.to_str().unwrap();
        w.json(from, &["id", "export", file]);
        let added = w.json(to, &["contact", "add", file, "--name", name, "--yes"]);
        fingerprints.push(added["fingerprint"].as_str().unwrap().to_owned());
    }
    w.json("alice", &["contacts"]);

    // A message each way, delivered, and both histories read.
    for (from, to, text) in [
        ("alice", BOB_NAME_AT_ALICE, TEXT_TO_BOB),
        ("bob", ALICE_NAME_AT_BOB, TEXT_TO_ALICE),
    ] {
        let sent = w.json(from, &["send", to, text, "--wait", "--timeout", "60"]);
        assert_eq!(sent["state"], "delivered");
    }
    let history = w.history("alice", BOB_NAME_AT_ALICE);
    assert!(history.iter().any(|e| e["text"] == TEXT_TO_ALICE));
    let history = w.history("bob", ALICE_NAME_AT_BOB);
    assert!(history.iter().any(|e| e["text"] == TEXT_TO_BOB));

    alice.kill_hard();
    bob.kill_hard();
    for (user, log) in [("alice", &alice_log), ("bob", &bob_log)] {
        let log = std::fs::read_to_string(log).unwrap();
        // The log is live (and RUST_LOG was accepted, not replaced by info).
        assert!(log.contains("anonchatd listening"), "{user}'s log: {log}");
        assert!(
            !log.contains("RUST_LOG is not valid"),
            "{user}'s log: {log}"
        );
        let secrets = [
            PASSPHRASE,
            ALICE_NICK,
            BOB_NICK,
            BOB_NAME_AT_ALICE,
            ALICE_NAME_AT_BOB,
            TEXT_TO_BOB,
            TEXT_TO_ALICE,
            &fingerprints[0],
            &fingerprints[1],
        ];
        let leaked: Vec<&str> = secrets.into_iter().filter(|s| log.contains(s)).collect();
        assert!(
            leaked.is_empty(),
            "{user}'s daemon logged {leaked:?} at RUST_LOG=trace; its log begins:\n{}",
            log.chars().take(3000).collect::<String>()
        );
    }
}
