//! A front-end cannot be phished by a fake daemon: a socket served by, or
//! belonging to, another user, or in a directory others can write to, is
//! refused before a single byte is sent (the first call a front-end makes
//! is `daemon.status`, and `anonctl unlock` sends a passphrase next).
//!
//! The fake daemon is this test binary running only [`fake_daemon_helper`]
//! as `nobody` (uid 65534), which needs root: CI runs as root; elsewhere the
//! test says why it skips.

// Test helpers: a failed step should stop the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::net::UnixListener;
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anonchat_ipc::client::{ConnectError, connect_checked};

const NOBODY: u32 = 65534;

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Connects as a front-end would (`connect_checked` sends `daemon.status`
/// at once), and returns the refusal's message.
async fn refusal(socket: &Path) -> String {
    // A client that did talk would wait for the fake's answer: bounded.
    match tokio::time::timeout(Duration::from_secs(10), connect_checked(socket)).await {
        Ok(Err(e @ ConnectError::Untrusted { .. })) => e.to_string(),
        Ok(Err(e)) => panic!("not refused as untrusted: {e}"),
        Ok(Ok(_)) => panic!("connected to a socket of another user"),
        Err(tokio::time::error::Elapsed { .. }) => {
            panic!("the client talked to the fake daemon and waited for its answer")
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_of_another_user_gets_no_request() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!(
            "SKIPPED a_socket_of_another_user_gets_no_request: needs root to serve a socket as another uid"
        );
        return;
    }
    // outer (0755, ours) / run (ours; 0777 while nobody binds) / anonchatd.sock
    let outer = tempfile::tempdir().unwrap();
    chmod(outer.path(), 0o755);
    let run = outer.path().join("run");
    std::fs::create_dir(&run).unwrap();
    chmod(&run, 0o777);
    let socket = run.join("anonchatd.sock");
    // This binary, copied where nobody can execute it.
    let exe_dir = tempfile::tempdir().unwrap();
    chmod(exe_dir.path(), 0o755);
    let exe = exe_dir.path().join("helper");
    std::fs::copy(std::env::current_exe().unwrap(), &exe).unwrap();
    chmod(&exe, 0o755);
    let mut fake = Command::new(&exe)
        .args([
            "--exact",
            "fake_daemon_helper",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("ANONCHAT_FAKE_SOCKET", &socket)
        .uid(NOBODY)
        .gid(NOBODY)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(fake.stdout.take().unwrap());
    let mut line = String::new();
    while !line.contains("HELPER: ready") {
        line.clear();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "the fake daemon did not start"
        );
    }

    // 1. Socket file and directory look ours (root's, 0700), but the
    //    process serving it is nobody: only the peer credentials tell.
    std::os::unix::fs::chown(&socket, Some(0), Some(0)).unwrap();
    chmod(&run, 0o700);
    let e = refusal(&socket).await;
    assert_eq!(
        e,
        format!(
            "the socket {} is served by uid {NOBODY}, not by you: refusing to talk to it; is someone impersonating your daemon?",
            socket.display()
        )
    );

    // 2. The socket file belongs to nobody.
    std::os::unix::fs::chown(&socket, Some(NOBODY), Some(NOBODY)).unwrap();
    let e = refusal(&socket).await;
    assert!(e.contains(&format!("belongs to uid {NOBODY}")), "{e}");

    // 3. Ours, but in a directory anyone can write to (so anyone could
    //    have put it there).
    std::os::unix::fs::chown(&socket, Some(0), Some(0)).unwrap();
    chmod(&run, 0o777);
    let e = refusal(&socket).await;
    assert!(e.contains("which other users can write to"), "{e}");

    // The fake saw one connection (the peer-credential check needs it)
    // and not one byte.
    drop(fake.stdin.take());
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    let status = fake.wait().unwrap();
    let mut err = String::new();
    fake.stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(status.success(), "{rest}{err}");
    assert!(
        rest.contains("HELPER: connections=1 bytes=0"),
        "{rest}\n{err}"
    );
}

/// The fake daemon; runs only as the child of the test above. Listens on
/// `$ANONCHAT_FAKE_SOCKET` until its stdin closes, counts connections and
/// the bytes they send, and never answers.
#[test]
fn fake_daemon_helper() {
    let Some(path) = std::env::var_os("ANONCHAT_FAKE_SOCKET") else {
        return;
    };
    let listener = UnixListener::bind(&path).unwrap();
    listener.set_nonblocking(true).unwrap();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    std::thread::spawn({
        let done = std::sync::Arc::clone(&done);
        move || {
            let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
            done.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    });
    println!("HELPER: ready");
    std::io::stdout().flush().unwrap();
    let (mut connections, mut bytes) = (0, 0);
    loop {
        match listener.accept() {
            Ok((mut s, _)) => {
                connections += 1;
                s.set_nonblocking(false).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
                let mut got = Vec::new();
                // Until the client hangs up (or a talking one times out):
                // what it sent stays in `got` either way.
                let _ = s.read_to_end(&mut got);
                bytes += got.len();
            }
            // Nothing waiting: stop once told to (after the backlog).
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if done.load(std::sync::atomic::Ordering::SeqCst) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("accept: {e}"),
        }
    }
    println!("HELPER: connections={connections} bytes={bytes}");
}
