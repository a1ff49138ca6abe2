//! Daemon cores in-process: two or three [`Core`]s trade batches through a
//! tiny in-memory "relay" function, with a manual clock and no sockets.
//! This is the harness the send-schedule and fault-simulation work builds
//! on.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anonchat_ipc::{Delivery, Direction, HistoryEntry};

use super::{Clock, Core, Settings};
use crate::paths::Paths;

const ROUND_MS: u64 = 500;
const RELAY: &str = "anonchat://127.0.0.1:7766/#AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

/// Settings for a core whose home is `home`: cheap key derivation, the
/// system clock (the harness replaces it where it matters).
fn test_settings(home: &std::path::Path) -> Settings {
    let mut settings = Settings::new(Paths {
        home: home.to_path_buf(),
        socket: home.join("unused.sock"),
    });
    settings.kdf_cost = crate::keystore::KdfCost::INSECURE_FOR_TESTS;
    settings
}

struct Node {
    name: &'static str,
    core: Arc<Core>,
    _home: tempfile::TempDir,
}

/// A relay in a function: every round, one cell from each node, then the
/// same batch to every node whose delivery `drop` does not refuse.
struct World {
    nodes: Vec<Node>,
    clock: Arc<AtomicU64>,
    round: u64,
    /// Cells that went out, per node, for checks.
    sent: Vec<u64>,
}

impl World {
    fn new(names: &[&'static str], retransmit_after: Duration) -> Self {
        // Rounds are numbered from the wall clock: round = ms / ROUND_MS.
        let clock = Arc::new(AtomicU64::new(1_764_000_000_000));
        let nodes: Vec<Node> = names
            .iter()
            .map(|&name| {
                let home = tempfile::tempdir().unwrap();
                let mut settings = test_settings(home.path());
                settings.retransmit_after = retransmit_after;
                settings.clock = Clock::Manual(Arc::clone(&clock));
                let core = Core::open(settings).unwrap();
                core.identity_create(name, RELAY, Some(""), Some(1))
                    .unwrap();
                core.set_round_ms(ROUND_MS as u32).unwrap();
                Node {
                    name,
                    core,
                    _home: home,
                }
            })
            .collect();
        for a in &nodes {
            for b in &nodes {
                if a.name != b.name {
                    let file = b.core.identity_export().unwrap();
                    a.core.contacts_add(&file, b.name).unwrap();
                }
            }
        }
        let sent = vec![0; nodes.len()];
        let round = clock.load(Ordering::Relaxed) / ROUND_MS;
        Self {
            nodes,
            clock,
            round,
            sent,
        }
    }

    fn core(&self, name: &str) -> &Core {
        &self.nodes.iter().find(|n| n.name == name).unwrap().core
    }

    /// One round: each node prepares its cell, the batch of all of them goes
    /// to every node `deliver` allows.
    fn step(&mut self, deliver: impl Fn(&str) -> bool) {
        self.round += 1;
        self.clock.fetch_add(ROUND_MS, Ordering::Relaxed);
        let mut cells = Vec::new();
        for (i, n) in self.nodes.iter().enumerate() {
            let cell = n.core.prepare_cell(self.round).unwrap();
            assert_eq!(
                cell.len(),
                n.core.settings.cell_size,
                "one full cell per round"
            );
            self.sent[i] += 1;
            cells.push(cell);
        }
        let refs: Vec<&[u8]> = cells.iter().map(Vec::as_slice).collect();
        for n in &self.nodes {
            if deliver(n.name) {
                n.core.receive_batch(self.round, &refs).unwrap();
            }
        }
    }

    fn run(&mut self, rounds: usize) {
        for _ in 0..rounds {
            self.step(|_| true);
        }
    }

    fn history(&self, of: &str, with: &str) -> Vec<HistoryEntry> {
        self.core(of).messages_history(with, None).unwrap()
    }

    fn received(&self, of: &str, from: &str) -> Vec<String> {
        self.history(of, from)
            .into_iter()
            .filter(|e| e.direction == Direction::In)
            .map(|e| e.text)
            .collect()
    }

    fn outgoing_state(&self, of: &str, to: &str, id: u64) -> Delivery {
        self.history(of, to)
            .into_iter()
            .find(|e| e.direction == Direction::Out && e.id == id)
            .unwrap()
            .state
    }
}

#[test]
fn two_cores_hold_a_conversation_both_ways() {
    let mut w = World::new(&["alice", "bob"], Duration::from_secs(30));
    let a1 = w
        .core("alice")
        .messages_send("bob", "hello bob")
        .unwrap()
        .id;
    w.run(20);
    assert_eq!(w.received("bob", "alice"), ["hello bob"]);
    assert_eq!(w.outgoing_state("alice", "bob", a1), Delivery::Delivered);

    let b1 = w
        .core("bob")
        .messages_send("alice", "hello alice")
        .unwrap()
        .id;
    let a2 = w
        .core("alice")
        .messages_send("bob", "how are you?")
        .unwrap()
        .id;
    w.run(20);
    assert_eq!(w.received("alice", "bob"), ["hello alice"]);
    assert_eq!(w.received("bob", "alice"), ["hello bob", "how are you?"]);
    assert_eq!(w.outgoing_state("bob", "alice", b1), Delivery::Delivered);
    assert_eq!(w.outgoing_state("alice", "bob", a2), Delivery::Delivered);
    assert_eq!(w.core("alice").status().undelivered, 0);
    assert_eq!(w.core("bob").status().undelivered, 0);
    assert!(
        w.sent.iter().all(|&n| n == 40),
        "one cell per node per round"
    );
}

#[test]
fn a_lost_batch_is_made_good_by_retransmission_exactly_once() {
    // The first retransmission waits an eighth of this: 3 s, 6 rounds.
    let mut w = World::new(&["alice", "bob"], Duration::from_secs(24));
    // Start the session first, so that what is lost below is the message.
    w.core("alice").messages_send("bob", "warm-up").unwrap();
    w.run(20);
    assert_eq!(w.received("bob", "alice"), ["warm-up"]);

    let id = w
        .core("alice")
        .messages_send("bob", "this one is lost once")
        .unwrap()
        .id;
    // Bob misses every batch until alice has sent the whole message.
    let mut lost = 0;
    while w.outgoing_state("alice", "bob", id) == Delivery::Queued {
        w.step(|n| n != "bob");
        lost += 1;
        assert!(lost < 10, "the message should go out within a few rounds");
    }
    assert_eq!(w.outgoing_state("alice", "bob", id), Delivery::Sent);
    w.run(2);
    assert_eq!(
        w.received("bob", "alice"),
        ["warm-up"],
        "lost, not yet resent"
    );
    // The retransmit timer (3 s = 6 rounds) brings it back.
    w.run(20);
    assert_eq!(
        w.received("bob", "alice"),
        ["warm-up", "this one is lost once"],
        "delivered once, after retransmission"
    );
    assert_eq!(w.outgoing_state("alice", "bob", id), Delivery::Delivered);
}

#[test]
fn three_cores_in_a_ring_each_read_only_their_own() {
    let mut w = World::new(&["alice", "bob", "carol"], Duration::from_secs(30));
    w.core("alice").messages_send("bob", "a to b").unwrap();
    w.core("bob").messages_send("carol", "b to c").unwrap();
    w.core("carol").messages_send("alice", "c to a").unwrap();
    w.run(30);
    assert_eq!(w.received("bob", "alice"), ["a to b"]);
    assert_eq!(w.received("carol", "bob"), ["b to c"]);
    assert_eq!(w.received("alice", "carol"), ["c to a"]);
    assert!(w.received("carol", "alice").is_empty());
    assert!(w.received("alice", "bob").is_empty());
    assert!(w.received("bob", "carol").is_empty());
}

/// A received message can be replayed (`events.subscribe` with `since`)
/// while unlocked, and not after `identity.lock`: the replay log is
/// history and goes with it. Mutation: without `self.events.forget()` in
/// `identity_lock` the text is still replayed after the lock.
#[test]
fn the_replay_log_forgets_message_text_at_lock() {
    use anonchat_ipc::Event;
    let mut w = World::new(&["alice", "bob"], Duration::from_secs(30));
    w.core("alice").messages_send("bob", "hello bob").unwrap();
    w.run(20);
    let bob = w.core("bob");
    let stream = bob.events_position().stream;
    let texts = |since| {
        bob.subscribe_since(Some(since), Some(&stream))
            .map(|a| {
                a.replay
                    .into_iter()
                    .filter_map(|e| match e.event {
                        Event::MessageReceived { text, .. } => Some(text),
                        _ => None,
                    })
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
    };
    assert_eq!(texts(0), ["hello bob"]);
    bob.identity_lock().unwrap();
    assert!(texts(0).is_empty());
    let p = bob.events_position();
    assert_eq!(p.oldest, p.last, "only the `locked` event is held");
}

#[test]
fn a_locked_core_prepares_and_receives_nothing() {
    let w = World::new(&["alice", "bob"], Duration::from_secs(30));
    w.core("alice").identity_lock().unwrap();
    assert!(matches!(
        w.core("alice").prepare_cell(500),
        Err(crate::error::Error::Locked)
    ));
    assert!(matches!(
        w.core("alice").receive_batch(500, &[]),
        Err(crate::error::Error::Locked)
    ));
}

/// Issue 11: with a passphrase, no file of the home says who the contacts
/// are: not their name, nickname, fingerprint or key bytes. Checked against
/// the plaintext `contacts.json` of before: it held all of them.
#[test]
fn no_file_under_the_home_names_a_contact() {
    let w = World::new(&["alice", "robertbobson"], Duration::from_secs(30));
    // The harness's homes have no passphrase; make one that has, with the
    // harness's bob as its contact.
    let dir = tempfile::tempdir().unwrap();
    let core = Core::open(test_settings(dir.path())).unwrap();
    core.identity_create("carol", RELAY, Some("a passphrase"), Some(1))
        .unwrap();
    let bob_file = w.core("robertbobson").identity_export().unwrap();
    let info = core.contacts_add(&bob_file, "my friend bob").unwrap();
    core.contacts_verify("my friend bob", &info.fingerprint)
        .unwrap();
    core.close();
    let public = anonchat_protocol::e2e::PublicIdentity::from_armored(&bob_file).unwrap();
    let needles: Vec<Vec<u8>> = vec![
        b"my friend bob".to_vec(),
        b"robertbobson".to_vec(),
        info.fingerprint_hex.clone().into_bytes(),
        info.fingerprint.clone().into_bytes(),
        // The identity file itself, in any of its lines.
        bob_file.lines().nth(1).unwrap().as_bytes().to_vec(),
        public.fingerprint().0.to_vec(),
    ];
    let mut files = 0;
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        files += 1;
        for n in &needles {
            assert!(
                !bytes.windows(n.len()).any(|w| w == n.as_slice()),
                "{} holds {:?}",
                path.display(),
                String::from_utf8_lossy(n)
            );
        }
    }
    assert!(
        files >= 4,
        "identity.key, identity.pub, sessions.bin, contacts.bin"
    );
    // And the list is all there after an unlock.
    let core = Core::open(test_settings(dir.path())).unwrap();
    assert!(matches!(
        core.contacts_list(),
        Err(crate::error::Error::Locked)
    ));
    core.identity_unlock("a passphrase").unwrap();
    let list = core.contacts_list().unwrap();
    assert_eq!(list.len(), 1);
    assert!(list[0].verified);
}

/// Issue 11: eight `identity.create` calls at once: exactly one succeeds,
/// the others are told an identity exists, and the keys on disk unlock.
#[test]
fn concurrent_creates_make_exactly_one_identity() {
    let dir = tempfile::tempdir().unwrap();
    let settings = test_settings(dir.path());
    let core = Core::open(settings.clone()).unwrap();
    let results: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let core = &core;
                s.spawn(move || core.identity_create(&format!("me{i}"), RELAY, Some("pw"), None))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let ok: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(ok.len(), 1, "exactly one creation succeeds");
    for r in &results {
        if let Err(e) = r {
            assert!(matches!(e, crate::error::Error::IdentityExists), "{e:?}");
        }
    }
    let name = ok[0].name.clone();
    core.close();
    drop(core);
    let core = Core::open(settings).unwrap();
    core.identity_unlock("pw").unwrap();
    assert_eq!(core.identity_show().unwrap().name, name);
    let stray: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp"))
        .collect();
    assert!(stray.is_empty(), "no temporary files left: {stray:?}");
}
