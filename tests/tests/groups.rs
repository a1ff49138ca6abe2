//! Groups with the real binaries: a relay and one daemon per member on
//! loopback, driven through `anonctl`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use anonchat_e2e::{Proc, World, eventually};

const USERS: [&str; 5] = ["alice", "bob", "carol", "dave", "erin"];

/// Every pair of `users`.
fn all_pairs<'a>(users: &[&'a str]) -> Vec<(&'a str, &'a str)> {
    let mut pairs = Vec::new();
    for (i, a) in users.iter().enumerate() {
        for b in &users[i + 1..] {
            pairs.push((*a, *b));
        }
    }
    pairs
}

/// `owner` creates `#name` with `members`; each accepts; waits until
/// every member reads every other.
fn make_group(w: &World, owner: &str, name: &str, members: &[&str]) {
    let with = members.join(",");
    w.json(owner, &["group", "create", name, "--with", &with]);
    let tag = format!("#{name}");
    for m in members {
        eventually(60, &format!("{m} invited to {name}"), || {
            w.json(m, &["group", "invitations"])
                .as_array()
                .is_some_and(|l| l.iter().any(|i| i["group"] == name))
        });
        w.json(m, &["group", "accept", &tag]);
    }
    let size = members.len() + 1;
    for u in std::iter::once(&owner).chain(members) {
        eventually(120, &format!("{u} reads every member of {name}"), || {
            let list = w.json(u, &["group", "members", &tag]);
            list.as_array()
                .is_some_and(|l| l.len() == size && l.iter().all(|m| m["readable"] == true))
        });
    }
}

fn group_texts(w: &World, user: &str, group: &str) -> Vec<(String, String)> {
    w.json(user, &["history", group])
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter(|e| e["direction"] == "in")
        .map(|e| {
            (
                e["sender"].as_str().unwrap_or("").to_owned(),
                e["text"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Group cells `user`'s daemon sent (pairwise acknowledgements of key
/// exchange may still go out meanwhile: not counted).
fn real_cells(w: &World, user: &str) -> u64 {
    w.json(user, &["rpc", "daemon.traffic"])["group_cells_sent"]
        .as_u64()
        .unwrap()
}

/// Sends `text` from `from` to `#group` and waits until `to` all have it;
/// returns the real cells `from` sent meanwhile.
fn send_counting(w: &World, from: &str, group: &str, to: &[&str], text: &str) -> u64 {
    // Quiet first: nothing else of `from` waits to go out.
    std::thread::sleep(Duration::from_secs(2));
    let before = real_cells(w, from);
    w.json(from, &["send", group, text]);
    for u in to {
        eventually(60, &format!("{u} gets the message in {group}"), || {
            group_texts(w, u, group)
                .iter()
                .any(|(s, t)| s == from && t == text)
        });
    }
    let after = real_cells(w, from);
    after - before
}

/// A five-member group on the real relay: a message from one member
/// reaches the four others with its sender's name, and costs the sender
/// one cell per fragment whether the group has three members or five.
/// The sender is told "delivered" once all four acknowledged.
#[test]
fn a_group_message_reaches_every_member_at_one_cell_per_fragment() {
    let w = World::new();
    // The daemons' default retransmission (30 s: first after 3.75 s), so
    // that a slow acknowledgement on a loaded machine does not add cells.
    let (_relay, addr) = w.relay(0);
    let _daemons: Vec<Proc> = USERS.iter().map(|u| w.daemon_with(u, 30)).collect();
    for u in USERS {
        w.init(u, &addr);
    }
    for (x, y) in all_pairs(&USERS) {
        w.introduce(x, y);
        w.introduce(y, x);
    }
    make_group(&w, "alice", "five", &USERS[1..]);
    make_group(&w, "alice", "three", &USERS[1..3]);
    // Three fragments at the default 512-byte cell.
    let long = "l".repeat(700);
    let five = send_counting(
        &w,
        "bob",
        "#five",
        &["alice", "carol", "dave", "erin"],
        &long,
    );
    let three = send_counting(&w, "bob", "#three", &["alice", "carol"], &long);
    assert_eq!(
        five, three,
        "cells for a five-member and a three-member group"
    );
    assert_eq!(five, 3, "one cell per fragment");
    eventually(60, "bob sees the message delivered to all four", || {
        w.json("bob", &["history", "#five"])
            .as_array()
            .is_some_and(|h| {
                h.iter()
                    .any(|e| e["direction"] == "out" && e["state"] == "delivered")
            })
    });
    // The text CLI shows who said what.
    let out = w.ctl("carol", &["history", "#five"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("bob → #five"), "{text}");
}

/// After `groups.remove`, the removed member reads nothing sent to the
/// group, neither its daemon nor a copy of its home taken just before.
#[test]
fn a_removed_member_reads_no_later_message() {
    let users = ["alice", "bob", "carol"];
    let w = World::new();
    let (_relay, _addr, mut daemons) = w.friends(&users, &all_pairs(&users));
    make_group(&w, "alice", "club", &users[1..]);
    w.json("bob", &["send", "#club", "before"]);
    eventually(60, "carol gets 'before'", || {
        group_texts(&w, "carol", "#club").len() == 1
    });
    // A copy of carol's home, taken while her daemon runs.
    let copy = w.path().join("carol-copy");
    copy_dir(&w.path().join("carol"), &copy);
    w.json("alice", &["group", "remove", "#club", "carol"]);
    eventually(60, "carol learns she was removed", || {
        w.json("carol", &["group", "list"])
            .as_array()
            .is_some_and(Vec::is_empty)
    });
    eventually(60, "alice and bob are alone in the new epoch", || {
        ["alice", "bob"].iter().all(|u| {
            w.json(u, &["group", "members", "#club"])
                .as_array()
                .is_some_and(|l| l.len() == 2 && l.iter().all(|m| m["readable"] == true))
        })
    });
    // Carol's daemon stops; the copy starts in her place.
    daemons[2].kill_hard();
    let _copy = start_copy(&w, &copy);
    // The copy is live on the relay: it reads what bob sends carol.
    w.json("bob", &["send", "carol", "are you there"]);
    eventually(60, "the copy reads bob's pairwise message", || {
        w.received("carol-copy", "bob")
            .contains(&"are you there".to_owned())
    });
    w.json("bob", &["send", "#club", "after"]);
    eventually(60, "alice gets 'after'", || {
        group_texts(&w, "alice", "#club")
            .iter()
            .any(|(_, t)| t == "after")
    });
    // Long enough for many retransmissions to the copy, had it the keys.
    std::thread::sleep(Duration::from_secs(8));
    let at_copy = w.json("carol-copy", &["history", "#club"]);
    let seen: Vec<&str> = at_copy
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["text"].as_str())
        .collect();
    assert!(!seen.contains(&"after"), "the copy read {seen:?}");
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new().mode(0o700).create(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), dest).unwrap();
        }
    }
}

fn start_copy(w: &World, home: &std::path::Path) -> Proc {
    let mut cmd = std::process::Command::new(w.bins.join("anonchatd"));
    cmd.arg("--home")
        .arg(home)
        .arg("--socket")
        .arg(w.socket("carol-copy"))
        .args(["--retransmit-s", "2"])
        .env("RUST_LOG", "warn")
        .stderr(std::process::Stdio::null());
    w.start_daemon("carol-copy", cmd)
}
