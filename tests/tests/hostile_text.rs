//! A contact's text never steers the terminal: `anonctl` shows control and
//! invisible format characters as escapes in its human output and keeps
//! the exact text in `--json`. And messages full of control characters
//! (six bytes each in JSON) do not break history loading: replies are
//! bounded and `anonctl` pages.

// Test helpers: a failed step should stop the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use anonchat_e2e::{World, eventually};

/// 16 KiB of escape sequences (clear the screen, set the window title) and
/// bare ESC characters: about 96 KiB once JSON-escaped.
fn hostile(n: usize) -> String {
    let mut t = format!("\u{1b}]0;pwned {n}\u{7}\u{1b}[2J\u{1b}[31mhi\ryou");
    while t.len() < 16 * 1024 {
        t.push('\u{1b}');
    }
    t
}

fn stdout_of(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

#[test]
fn hostile_text_is_shown_escaped_and_long_histories_page() {
    let w = World::new();
    let (_relay, addr) = w.relay_with(0, 50);
    let _daemons = [w.daemon("alice"), w.daemon("bob")];
    // A nickname with a right-to-left override could pass for another
    // contact's: refused, with the reason.
    let nick = "ali\u{202e}ecil";
    let out = w.ctl(
        "alice",
        &["init", "--name", nick, "--relay", &addr, "--no-passphrase"],
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("direction-changing"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    w.init("alice", &addr);
    w.init("bob", &addr);
    w.introduce("alice", "bob");
    w.introduce("bob", "alice");

    // Four of them are well over the client's 256 KiB line as one reply.
    let texts: Vec<String> = (0..4).map(hostile).collect();
    let json_len: usize = texts
        .iter()
        .map(|t| serde_json::to_string(t).unwrap().len())
        .sum();
    assert!(json_len > 256 * 1024 + 100_000, "{json_len}");
    for t in &texts {
        w.json("alice", &["send", "bob", t]);
    }
    // `--json history` pages through all of it, exact.
    eventually(180, "bob received the four messages", || {
        w.received("bob", "alice").len() == texts.len()
    });
    assert_eq!(w.received("bob", "alice"), texts);

    // Human output: every ESC, BEL and CR shown, none obeyed; one line a
    // message.
    let shown = stdout_of(&w.ctl("bob", &["history", "alice"]));
    assert!(!shown.contains(['\u{1b}', '\u{7}', '\r']), "raw controls");
    assert!(shown.contains("\\x1b]0;pwned 0\\x07\\x1b[2J\\x1b[31mhi\\ryou\\x1b\\x1b"));
    assert_eq!(
        shown.lines().count(),
        texts.len(),
        "{}",
        shown.chars().take(300).collect::<String>()
    );

    // `chat` loads the last messages the same way (stdin is empty: it
    // shows them, then leaves).
    let shown = stdout_of(&w.ctl("bob", &["chat", "alice"]));
    assert!(!shown.contains(['\u{1b}', '\u{7}', '\r']), "raw controls");
    assert!(shown.contains("pwned 3"));
    assert_eq!(
        shown.lines().filter(|l| l.contains("alice → you")).count(),
        texts.len()
    );

    // The one-reply method answers with the newest that fit instead of a
    // line the client refuses.
    let newest = w.json("bob", &["rpc", "messages.history", r#"{"with":"alice"}"#]);
    let newest = newest.as_array().unwrap();
    assert!(!newest.is_empty() && newest.len() < texts.len());
    assert_eq!(newest.last().unwrap()["text"], texts[3].as_str());

    // A message with a bidi override: shown escaped, exact in JSON.
    w.json("alice", &["send", "bob", nick]);
    eventually(60, "bob received the bidi message", || {
        w.received("bob", "alice").len() == texts.len() + 1
    });
    assert_eq!(w.received("bob", "alice").last().unwrap(), nick);
    let shown = stdout_of(&w.ctl("bob", &["history", "alice"]));
    assert!(!shown.contains('\u{202e}'), "raw bidi override");
    assert!(shown.contains("ali\\u{202e}ecil"), "{shown}");
}
