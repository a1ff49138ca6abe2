//! The `anonctl` binary on its own: help, exit codes, completions. (The
//! conversations are in the workspace's `tests/`.)

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

fn anonctl(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_anonctl"))
        .args(args)
        .env_remove("ANONCHAT_SOCKET")
        .output()
        .unwrap()
}

#[test]
fn help_documents_the_exit_codes() {
    let out = anonctl(&["--help"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "0 ok",
        "2 usage error",
        "3 daemon unreachable",
        "5 timed out",
        "demo",
    ] {
        assert!(text.contains(needle), "{needle:?} missing from --help");
    }
}

#[test]
fn usage_errors_exit_2_and_an_absent_daemon_exits_3() {
    assert_eq!(anonctl(&["send"]).status.code(), Some(2));
    assert_eq!(anonctl(&["no-such-command"]).status.code(), Some(2));
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("none.sock");
    let out = anonctl(&["--socket", sock.to_str().unwrap(), "status"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("anonctl daemon start"));
    let out = anonctl(&["--socket", sock.to_str().unwrap(), "--json", "contacts"]);
    assert_eq!(out.status.code(), Some(3));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["error"]["exit_code"], 3);
}

#[test]
fn completions_are_generated_for_every_shell() {
    for shell in ["bash", "zsh", "fish"] {
        let out = anonctl(&["completions", shell]);
        assert!(out.status.success(), "{shell}");
        assert!(String::from_utf8_lossy(&out.stdout).contains("anonctl"));
    }
}
