//! The JSON-RPC API over a real socket of a real `anonchatd`.

// Test helpers: a failed step should stop the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead as _, BufReader, Write as _};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use anonchat_ipc::{AnonchatClient as _, ErrorCode, Event, IdentityState};
use common::daemon;
use jsonrpsee::core::ClientError;

/// A raw line exchange, as `socat - UNIX-CONNECT:PATH` would do it.
fn raw(socket: &std::path::Path, line: &[u8]) -> Option<serde_json::Value> {
    let mut s = UnixStream::connect(socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(line).unwrap();
    let mut reply = String::new();
    BufReader::new(s).read_line(&mut reply).ok()?;
    (!reply.is_empty()).then(|| serde_json::from_str(&reply).unwrap())
}

fn code(e: &ClientError) -> i32 {
    match e {
        ClientError::Call(obj) => obj.code(),
        other => panic!("not a call error: {other}"),
    }
}

const SOME_RELAY: &str = "anonchat://127.0.0.1:9/#koWuqqSQio35N74_nV0vd3RLf1kYxy7b-9Bd1VH6RnY";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_lifecycle_and_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = daemon(dir.path(), "home");
    let c = d.client().await;

    let s = c.status().await.unwrap();
    assert_eq!(s.identity, IdentityState::None);
    assert_eq!(s.api_version, anonchat_ipc::API_VERSION);
    let e = c.identity_show().await.unwrap_err();
    assert_eq!(code(&e), ErrorCode::NoIdentity.code());
    assert!(e.to_string().contains("anonctl init"), "{e}");

    let e = c
        .identity_create("me".into(), "not an address".into(), None, None)
        .await
        .unwrap_err();
    assert_eq!(code(&e), ErrorCode::InvalidRelay.code());

    let info = c
        .identity_create(
            "me".into(),
            SOME_RELAY.into(),
            Some("secret words".into()),
            Some(3),
        )
        .await
        .unwrap();
    assert_eq!(info.shard, 3);
    assert!(info.keys_protected);
    assert_eq!(info.fingerprint.split(' ').count(), 12);
    let e = c
        .identity_create("again".into(), SOME_RELAY.into(), None, None)
        .await
        .unwrap_err();
    assert_eq!(code(&e), ErrorCode::IdentityExists.code());
    let file = c.identity_export().await.unwrap();
    assert!(file.starts_with("-----BEGIN ANONCHAT IDENTITY-----"));

    c.identity_lock().await.unwrap();
    assert_eq!(c.status().await.unwrap().identity, IdentityState::Locked);
    // Locked: the contact list is sealed, so any name gets "locked" (the
    // daemon cannot, and does not, say whether it is a contact).
    let e = c.messages_history("x".into(), None).await.unwrap_err();
    assert_eq!(code(&e), ErrorCode::Locked.code());
    let e = c.contacts_list().await.unwrap_err();
    assert_eq!(code(&e), ErrorCode::Locked.code());
    let e = c.identity_unlock("wrong".into()).await.unwrap_err();
    assert_eq!(code(&e), ErrorCode::WrongPassphrase.code());
    c.identity_unlock("secret words".into()).await.unwrap();
    assert_eq!(c.status().await.unwrap().identity, IdentityState::Unlocked);
    assert_eq!(c.identity_show().await.unwrap(), info);
}

/// Fills bob's outbox (one message is queued already): the next send is
/// refused with how long to wait, in words and in the error's data.
async fn outbox_full_is_back_pressure(c: &jsonrpsee::async_client::Client) {
    for i in 2..=64 {
        c.messages_send("bob".into(), format!("m{i}"))
            .await
            .unwrap();
    }
    let e = c
        .messages_send("bob".into(), "one too many".into())
        .await
        .unwrap_err();
    assert_eq!(code(&e), ErrorCode::MessageRejected.code());
    let jsonrpsee::core::ClientError::Call(obj) = &e else {
        panic!("{e:?}")
    };
    assert!(
        obj.message().contains("try again in about"),
        "{}",
        obj.message()
    );
    let data: serde_json::Value = serde_json::from_str(obj.data().unwrap().get()).unwrap();
    assert!(data["retry_after_ms"].as_u64().unwrap() >= 250, "{data}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::many_single_char_names)]
async fn contacts_verify_and_subscription_events() {
    let dir = tempfile::tempdir().unwrap();
    let me = daemon(dir.path(), "me");
    let friend = daemon(dir.path(), "friend");
    let (c, other) = (me.client().await, friend.client().await);
    c.identity_create("me".into(), SOME_RELAY.into(), None, None)
        .await
        .unwrap();
    let s = c.status().await.unwrap();
    assert_eq!(s.keys_protected, Some(false));
    assert!(
        s.warnings
            .iter()
            .any(|w| w.contains("without a passphrase")),
        "{:?}",
        s.warnings
    );
    other
        .identity_create("friend".into(), SOME_RELAY.into(), None, None)
        .await
        .unwrap();
    let friend_file = other.identity_export().await.unwrap();

    let mut events = c.events().await.unwrap();
    let e = c
        .contacts_add("garbage".into(), "bob".into())
        .await
        .unwrap_err();
    assert_eq!(code(&e), ErrorCode::InvalidIdentityFile.code());
    let e = c
        .contacts_add(friend_file.clone(), "bad\nname".into())
        .await
        .unwrap_err();
    assert_eq!(code(&e), ErrorCode::InvalidInput.code());
    let own = c.identity_export().await.unwrap();
    assert!(c.contacts_add(own, "me".into()).await.is_err());

    let added = c
        .contacts_add(friend_file.clone(), "bob".into())
        .await
        .unwrap();
    assert!(!added.verified);
    assert_eq!(added.nickname, "friend");
    let e = c
        .contacts_add(friend_file, "bob2".into())
        .await
        .unwrap_err();
    assert_eq!(code(&e), ErrorCode::ContactExists.code());
    let got = tokio::time::timeout(Duration::from_secs(10), events.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        got,
        Event::ContactAdded {
            contact: "bob".into()
        }
    );

    let e = c
        .contacts_verify("bob".into(), "00000 ".repeat(12))
        .await
        .unwrap_err();
    assert_eq!(code(&e), ErrorCode::FingerprintMismatch.code());
    let v = c
        .contacts_verify("bob".into(), added.fingerprint.clone())
        .await
        .unwrap();
    assert!(v.verified);
    assert_eq!(c.contacts_list().await.unwrap(), vec![v]);

    let e = c
        .messages_send("nobody".into(), "hi".into())
        .await
        .unwrap_err();
    assert_eq!(code(&e), ErrorCode::UnknownContact.code());
    let e = c
        .messages_send("bob".into(), String::new())
        .await
        .unwrap_err();
    assert_eq!(code(&e), ErrorCode::MessageRejected.code());
    let sent = c.messages_send("bob".into(), "hello".into()).await.unwrap();
    assert_eq!(sent.id, 1);
    let h = c.messages_history("bob".into(), Some(10)).await.unwrap();
    assert_eq!(h.len(), 1);
    assert_eq!(c.status().await.unwrap().undelivered, 1);
    outbox_full_is_back_pressure(&c).await;

    c.contacts_remove("bob".into()).await.unwrap();
    assert!(c.contacts_list().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_oversized_and_abandoned_requests_do_not_hurt_the_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let d = daemon(dir.path(), "home");
    let s = &d.socket;

    let r = raw(s, b"{this is not json\n").unwrap();
    assert_eq!(r["error"]["code"], -32700);
    let r = raw(
        s,
        b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"no.such\"}\n",
    )
    .unwrap();
    assert_eq!(r["error"]["code"], -32601);
    let r = raw(
        s,
        b"{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"contacts.remove\",\"params\":{\"nom\":1}}\n",
    )
    .unwrap();
    assert_eq!(r["error"]["code"], -32602);
    let r = raw(
        s,
        b"[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"daemon.status\"}]\n",
    )
    .unwrap();
    assert_eq!(r["error"]["code"], -32600);
    let r = raw(s, b"42\n").unwrap();
    assert_eq!(r["error"]["code"], -32600);
    // A line over the limit: an error, then the connection is closed.
    let mut huge = vec![b'x'; anonchat_ipc::MAX_LINE + 10];
    huge.push(b'\n');
    let r = raw(s, &huge).unwrap();
    assert_eq!(r["error"]["code"], -32600);
    // A client that asks for something slow and leaves.
    {
        let mut gone = UnixStream::connect(s).unwrap();
        gone.write_all(b"{\"jsonrpc\":\"2.0\",\"id\":9,\"method\":\"identity.create\",\"params\":{\"name\":\"x\",\"relay\":\"").unwrap();
    }
    // The daemon still serves, scripted as with socat.
    let r = raw(
        s,
        b"{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"daemon.status\"}\n",
    )
    .unwrap();
    assert_eq!(r["id"], 7);
    assert_eq!(r["result"]["identity"], "none");
}

/// Another local user is refused. CI runs as root, so the test can act as
/// `nobody` through a child process; elsewhere it says why it skips.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_user_is_refused() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIPPED another_user_is_refused: needs root to run a client as another uid");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = daemon(dir.path(), "home");
    // The child is this test binary running only the helper below, copied
    // where the other user can execute it (the build tree may be private).
    let exe_dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(exe_dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let exe = exe_dir.path().join("helper");
    std::fs::copy(std::env::current_exe().unwrap(), &exe).unwrap();
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = std::process::Command::new(&exe)
        .args([
            "--exact",
            "other_user_helper",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("ANONCHAT_TEST_SOCKET", &d.socket)
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("HELPER: refused"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // And the owner still gets served.
    assert!(d.client().await.status().await.is_ok());
}

use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::CommandExt as _;

/// Runs only as the child of `another_user_is_refused`.
#[test]
fn other_user_helper() {
    let Some(path) = std::env::var_os("ANONCHAT_TEST_SOCKET") else {
        return;
    };
    let refused = match UnixStream::connect(&path) {
        Err(e) => {
            println!("HELPER: refused at connect ({e})");
            true
        }
        Ok(mut s) => {
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let _ = s.write_all(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"daemon.status\"}\n");
            let mut reply = String::new();
            let _ = BufReader::new(s).read_line(&mut reply);
            println!("HELPER: reply {reply:?}");
            reply.is_empty()
        }
    };
    if refused {
        println!("HELPER: refused");
    }
}
