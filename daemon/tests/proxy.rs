//! The relay link through a real SOCKS5 proxy (Debian's `microsocks`,
//! installed by `.ci/run`): two daemons talk through it; the proxy setting
//! survives a restart; with the proxy gone the daemon says so and never
//! connects to the relay directly (fail-closed).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anonchat_ipc::{AnonchatClient as _, LinkState};
use common::{Proc, daemon_with, eventually, history, pair_with, relay, texts};

/// `microsocks` on a free loopback port; its log lines are collected.
fn microsocks() -> (Proc, u16, Arc<Mutex<Vec<String>>>) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new("microsocks")
        .args(["-i", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("this test needs microsocks (apt-get install microsocks; .ci/run does): {e}")
        });
    let log = Arc::new(Mutex::new(Vec::new()));
    for out in [
        Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().unwrap()),
    ] {
        let log = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                log.lock().unwrap().push(line);
            }
        });
    }
    // Wait until it listens.
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    (Proc { child }, port, log)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::many_single_char_names)]
async fn two_daemons_talk_through_socks5_and_never_around_it() {
    let dir = tempfile::tempdir().unwrap();
    let r = relay(0, None).await;
    let (mut socks, port, log) = microsocks();
    let proxy = format!("socks5://127.0.0.1:{port}");
    let args = ["--proxy", proxy.as_str()];
    let (a, ca, b, cb) = pair_with(dir.path(), &r.addr, &args).await;

    ca.messages_send("bob".into(), "through the proxy".into())
        .await
        .unwrap();
    cb.messages_send("alice".into(), "and back".into())
        .await
        .unwrap();
    eventually(30, "both messages through the proxy", || async {
        texts(&history(&cb, "alice").await, anonchat_ipc::Direction::In) == ["through the proxy"]
            && texts(&history(&ca, "bob").await, anonchat_ipc::Direction::In) == ["and back"]
    })
    .await;
    let relay_port = r.port.to_string();
    assert!(
        log.lock().unwrap().iter().any(|l| l.contains(&relay_port)),
        "the proxy carried the relay connections: {:?}",
        log.lock().unwrap()
    );

    // The setting is visible and checked.
    assert_eq!(
        ca.config().await.unwrap().proxy.as_deref(),
        Some(proxy.as_str())
    );
    assert_eq!(
        ca.status().await.unwrap().relay.proxy.as_deref(),
        Some(proxy.as_str())
    );
    let e = ca.set_proxy(Some("http://nope".into())).await.unwrap_err();
    assert!(format!("{e}").contains("socks5://"), "{e}");
    assert_eq!(
        ca.config().await.unwrap().proxy.as_deref(),
        Some(proxy.as_str())
    );

    // The proxy goes away; alice's daemon restarts without the flag.
    socks.child.kill().unwrap();
    let _ = socks.child.wait();
    drop((a, ca));
    let a = daemon_with(dir.path(), "alice", &[]);
    let ca = a.client().await;
    ca.identity_unlock("pw-a".into()).await.unwrap();
    eventually(20, "alice reports the proxy unreachable", || async {
        let s = ca.status().await.unwrap();
        s.relay.state == LinkState::Retrying
            && s.relay
                .last_error
                .as_deref()
                .is_some_and(|e| e.contains("proxy") && e.contains("unreachable"))
    })
    .await;
    // Give both daemons time to retry a few times, then count what reached
    // the relay: the two first connections, through the proxy, and nothing
    // since (no direct dial).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (_, stats) = r.stop_with_stats().await;
    assert_eq!(
        anonchat_relay::Stats::get(&stats.connections_accepted),
        2,
        "no connection may bypass the proxy"
    );
    // Removing the proxy is explicit.
    assert!(ca.set_proxy(None).await.unwrap().proxy.is_none());
    assert!(ca.status().await.unwrap().relay.proxy.is_none());
    drop((b, cb));
}
