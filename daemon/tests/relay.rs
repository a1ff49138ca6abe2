//! Two real daemons talking through a relay, driven only by JSON-RPC.

// Test helpers: a failed step should stop the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use anonchat_ipc::{AnonchatClient as _, Direction, Event, IdentityState};
use common::{all_delivered, eventually, files_under, history, pair, relay, texts};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_daemons_converse_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let r = relay(0, None).await;
    let (_a, ca, _b, cb) = pair(dir.path(), &r.addr).await;
    let mut bob_events = cb.events().await.unwrap();

    ca.messages_send("bob".into(), "hello bob".into())
        .await
        .unwrap();
    cb.messages_send("alice".into(), "hello alice".into())
        .await
        .unwrap();
    ca.messages_send("bob".into(), "how are you?".into())
        .await
        .unwrap();

    eventually(30, "both conversations delivered", || async {
        let (ha, hb) = (history(&ca, "bob").await, history(&cb, "alice").await);
        ha.len() == 3 && hb.len() == 3 && all_delivered(&ha) && all_delivered(&hb)
    })
    .await;
    let hb = history(&cb, "alice").await;
    assert_eq!(texts(&hb, Direction::In), vec!["hello bob", "how are you?"]);
    assert_eq!(
        texts(&history(&ca, "bob").await, Direction::In),
        vec!["hello alice"]
    );

    // The subscription saw the messages arrive, in order, once each.
    let mut received = Vec::new();
    while received.len() < 2 {
        let e = tokio::time::timeout(Duration::from_secs(10), bob_events.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if let Event::MessageReceived { contact, text, .. } = e {
            assert_eq!(contact, "alice");
            received.push(text);
        }
    }
    assert_eq!(received, vec!["hello bob", "how are you?"]);
    let status = ca.status().await.unwrap();
    assert_eq!(status.relay.state, anonchat_ipc::LinkState::Connected);
    assert!(status.relay.round.is_some());
    assert_eq!(status.undelivered, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_restart_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let r = relay(0, None).await;
    let (_a, ca, _b, cb) = pair(dir.path(), &r.addr).await;
    ca.messages_send("bob".into(), "before".into())
        .await
        .unwrap();
    eventually(30, "first message delivered", || async {
        all_delivered(&history(&ca, "bob").await) && history(&cb, "alice").await.len() == 1
    })
    .await;

    // The relay goes away (and its backlog with it); both sides keep writing.
    let (port, key) = r.stop().await;
    ca.messages_send("bob".into(), "during 1".into())
        .await
        .unwrap();
    cb.messages_send("alice".into(), "during 2".into())
        .await
        .unwrap();
    ca.messages_send("bob".into(), "during 3".into())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let _r = relay(port, Some(key)).await;

    eventually(60, "every message delivered after the restart", || async {
        let (ha, hb) = (history(&ca, "bob").await, history(&cb, "alice").await);
        ha.len() == 4 && hb.len() == 4 && all_delivered(&ha) && all_delivered(&hb)
    })
    .await;
    // Exactly once each, in order.
    assert_eq!(
        texts(&history(&cb, "alice").await, Direction::In),
        vec!["before", "during 1", "during 3"]
    );
    assert_eq!(
        texts(&history(&ca, "bob").await, Direction::In),
        vec!["during 2"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_restart_keeps_keys_and_contacts_not_history_and_writes_no_text() {
    let dir = tempfile::tempdir().unwrap();
    let r = relay(0, None).await;
    let (mut a, ca, _b, cb) = pair(dir.path(), &r.addr).await;
    let secret_words = "the eagle lands at midnight";
    ca.messages_send("bob".into(), secret_words.into())
        .await
        .unwrap();
    cb.messages_send("alice".into(), "copy that, over and out".into())
        .await
        .unwrap();
    eventually(30, "delivered", || async {
        let ha = history(&ca, "bob").await;
        ha.len() == 2 && all_delivered(&ha)
    })
    .await;
    let before = ca.identity_show().await.unwrap();

    ca.shutdown().await.unwrap();
    let exited = tokio::task::spawn_blocking(move || {
        let status = a.proc.child.wait().unwrap();
        (status, a)
    });
    let (status, a) = tokio::time::timeout(Duration::from_secs(10), exited)
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());
    drop(a);

    // Nothing on disk holds a message's text.
    for (path, bytes) in files_under(dir.path()) {
        for text in [secret_words, "copy that, over and out"] {
            assert!(
                !bytes.windows(text.len()).any(|w| w == text.as_bytes()),
                "{} contains message text",
                path.display()
            );
        }
    }

    let a = common::daemon(dir.path(), "alice");
    let ca = a.client().await;
    assert_eq!(ca.status().await.unwrap().identity, IdentityState::Locked);
    // Who your contacts are is sealed with the keys.
    assert!(
        ca.contacts_list().await.is_err(),
        "no contact list while locked"
    );
    ca.identity_unlock("pw-a".into()).await.unwrap();
    assert_eq!(ca.contacts_list().await.unwrap().len(), 1);
    assert_eq!(ca.identity_show().await.unwrap(), before);
    assert!(
        history(&ca, "bob").await.is_empty(),
        "history lives in RAM only"
    );

    // The persisted session carries on.
    ca.messages_send("bob".into(), "back again".into())
        .await
        .unwrap();
    eventually(30, "delivered after restart", || async {
        texts(&history(&cb, "alice").await, Direction::In)
            .last()
            .map(String::as_str)
            == Some("back again")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnect_resumes_from_the_relay_backlog_without_breaking_the_rules() {
    let dir = tempfile::tempdir().unwrap();
    let r = relay(0, None).await;
    let (_a, ca, _b, cb) = pair(dir.path(), &r.addr).await;
    ca.messages_send("bob".into(), "hello".into())
        .await
        .unwrap();
    eventually(30, "first message delivered", || async {
        all_delivered(&history(&ca, "bob").await)
    })
    .await;
    // Alice's daemon leaves the relay (lock) and comes back (unlock): it
    // resumes after the last round it processed, from the relay's backlog.
    ca.identity_lock().await.unwrap();
    cb.messages_send("alice".into(), "while you were locked".into())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    ca.identity_unlock("pw-a".into()).await.unwrap();
    eventually(60, "the message sent while locked arrives", || async {
        texts(&history(&ca, "bob").await, Direction::In) == vec!["while you were locked"]
    })
    .await;
    let (_, stats) = r.stop_with_stats().await;
    assert_eq!(
        anonchat_relay::Stats::get(&stats.violations),
        0,
        "no client ever sent two cells for a round"
    );
}
