//! `messages.history` and `messages.history_page` stay well under the
//! client's line limit whatever the messages hold: 16 KiB of control
//! characters is about 96 KiB of JSON, and a few of them used to make one
//! reply longer than `MAX_LINE`, which broke history loading.

// Test helpers: a failed step should stop the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead as _, BufReader, Write as _};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use anonchat_ipc::{
    AnonchatClient as _, Direction, HISTORY_PAGE_BYTES, HistoryCursor, HistoryEntry, MAX_LINE,
};
use common::{pair, relay};

/// A 16 KiB message of escape sequences and bare ESC characters.
fn hostile(n: usize) -> String {
    let mut t = format!("\u{1b}]0;pwned {n}\u{7}\u{1b}[2J\u{1b}[31m");
    while t.len() < 16 * 1024 {
        t.push('\u{1b}');
    }
    t
}

/// One raw request line and the raw reply line, as `socat` would see them.
fn raw_line(socket: &std::path::Path, request: &serde_json::Value) -> String {
    let mut s = UnixStream::connect(socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(format!("{request}\n").as_bytes()).unwrap();
    let mut reply = String::new();
    BufReader::new(s).read_line(&mut reply).unwrap();
    reply
}

/// The whole conversation with bob through raw `messages.history_page`
/// lines, each checked to be well under the limit; and the page count.
fn raw_pages(socket: &std::path::Path) -> (Vec<HistoryEntry>, usize) {
    let mut before: Option<serde_json::Value> = None;
    let mut pages: Vec<Vec<HistoryEntry>> = Vec::new();
    loop {
        let mut params = serde_json::json!({"with": "bob"});
        if let Some(b) = &before {
            params["before"] = b.clone();
        }
        let line = raw_line(
            socket,
            &serde_json::json!({"jsonrpc":"2.0","id":2,"method":"messages.history_page","params":params}),
        );
        assert!(line.len() < HISTORY_PAGE_BYTES + 200, "{}", line.len());
        let reply: serde_json::Value = serde_json::from_str(&line).unwrap();
        let page: anonchat_ipc::HistoryPage =
            serde_json::from_value(reply["result"].clone()).unwrap();
        assert!(!page.entries.is_empty());
        before = Some(serde_json::to_value(page.entries[0].cursor()).unwrap());
        let more = page.more;
        pages.push(page.entries);
        if !more {
            break;
        }
    }
    let count = pages.len();
    (pages.into_iter().rev().flatten().collect(), count)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_replies_are_bounded_and_page_through_everything() {
    let dir = tempfile::tempdir().unwrap();
    let r = relay(0, None).await;
    let (a, ca, _b, _cb) = pair(dir.path(), &r.addr).await;

    // Queued messages are in the history at once: 5 × 16 KiB of ESC is
    // about 480 KiB of JSON, with small ones between.
    let mut sent = Vec::new();
    for n in 0..5 {
        for text in [hostile(n), format!("small {n}")] {
            ca.messages_send("bob".into(), text.clone()).await.unwrap();
            sent.push(text);
        }
    }
    let all_json: usize = sent
        .iter()
        .map(|t| serde_json::to_string(t).unwrap().len())
        .sum();
    assert!(all_json > 2 * MAX_LINE - 100_000, "{all_json}");

    // The one-reply method answers with the newest that fit, in a line
    // well under the limit (it used to exceed it).
    let line = raw_line(
        &a.socket,
        &serde_json::json!({"jsonrpc":"2.0","id":1,"method":"messages.history","params":{"with":"bob"}}),
    );
    assert!(line.len() < HISTORY_PAGE_BYTES + 200, "{}", line.len());
    let reply: serde_json::Value = serde_json::from_str(&line).unwrap();
    let newest = reply["result"].as_array().unwrap();
    assert!(!newest.is_empty() && newest.len() < sent.len());
    assert_eq!(newest.last().unwrap()["text"], "small 4");

    // Pages, raw: each well under the limit, `more` until the start.
    let (from_raw, pages) = raw_pages(&a.socket);
    assert!(pages >= 4, "{pages} pages");
    assert_eq!(
        from_raw.into_iter().map(|e| e.text).collect::<Vec<_>>(),
        sent
    );

    // The client's helper does the same: everything, exact, oldest first.
    let all = anonchat_ipc::client::history(&ca, "bob", None)
        .await
        .unwrap();
    let texts: Vec<&str> = all.iter().map(|e| e.text.as_str()).collect();
    assert_eq!(texts, sent);
    assert!(all.iter().all(|e| e.direction == Direction::Out));
    let ids: Vec<u64> = all.iter().map(|e| e.id).collect();
    assert_eq!(ids, (1..=10).collect::<Vec<_>>());
    // With a limit: the last N, across pages.
    let last3 = anonchat_ipc::client::history(&ca, "bob", Some(3))
        .await
        .unwrap();
    assert_eq!(
        last3.iter().map(|e| e.text.clone()).collect::<Vec<_>>(),
        sent[7..]
    );

    // `limit` and `before` on one page.
    let p = ca
        .messages_history_page(
            "bob".into(),
            Some(HistoryCursor {
                direction: Direction::Out,
                id: 3,
            }),
            Some(5),
        )
        .await
        .unwrap();
    assert_eq!(
        p.entries.iter().map(|e| e.id).collect::<Vec<_>>(),
        vec![1, 2]
    );
    assert!(!p.more);
    let p = ca
        .messages_history_page("bob".into(), None, Some(1))
        .await
        .unwrap();
    assert_eq!(p.entries.len(), 1);
    assert_eq!(p.entries[0].text, "small 4");
    assert!(p.more);
    // A cursor no longer (or never) in memory: nothing older remains.
    let p = ca
        .messages_history_page(
            "bob".into(),
            Some(HistoryCursor {
                direction: Direction::In,
                id: 1,
            }),
            None,
        )
        .await
        .unwrap();
    assert!(p.entries.is_empty() && !p.more);
    // Unknown contact: the same error as `messages.history`.
    assert!(
        ca.messages_history_page("carol".into(), None, None)
            .await
            .is_err()
    );
}
