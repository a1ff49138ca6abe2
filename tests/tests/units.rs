//! The systemd units of `dist/`: `systemd-analyze verify` accepts them
//! without a warning (where systemd-analyze is installed: `.ci/run`
//! installs it; elsewhere the check says it was skipped), their
//! `ExecStart=` flags are the binaries' real ones, and the daemon's unit
//! can start on a fresh account.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn dist(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../dist")
        .join(name);
    std::fs::read_to_string(&path).unwrap()
}

/// The unit's `ExecStart=` command line, continuation lines joined.
fn exec_start(unit: &str) -> String {
    let joined = unit.replace("\\\n", " ");
    joined
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .unwrap()
        .to_owned()
}

/// The unit with its `ExecStart=` binary replaced by the one built here
/// (verify checks that the binary exists; the installed path varies).
fn with_binary(unit: &str, installed: &str, built: &Path) -> String {
    assert!(unit.contains(installed), "the unit runs {installed}");
    unit.replace(installed, built.to_str().unwrap())
}

/// Runs `systemd-analyze verify` on `unit` (named `name`); any message
/// fails, warnings included (verify exits 0 on an unknown key).
fn verify(name: &str, unit: &str, user: bool) {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        println!("skipped: systemd-analyze is not installed (Debian: apt install systemd)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(name);
    std::fs::write(&file, unit).unwrap();
    let runtime = dir.path().join("run");
    std::fs::create_dir(&runtime).unwrap();
    let mut cmd = Command::new("systemd-analyze");
    if user {
        cmd.arg("--user").env("XDG_RUNTIME_DIR", &runtime);
    }
    let out = cmd
        .args(["verify", "--man=no"])
        .arg(&file)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "systemd-analyze verify {name}: {stderr}{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// The relay's unit has the hardening asked for, verifies, and its
/// `ExecStart=` uses only flags `anonchat-relay --help` lists. Mutation: a
/// misspelt hardening key (`ProtectKernelLogs` as `ProtectKernelLog`:
/// verify warns, exit code 0) or an `ExecStart=` flag the relay does not
/// have (`--key` for `--key-file`) fails.
#[test]
fn the_relay_unit_verifies_and_runs_the_real_cli() {
    let unit = dist("anonchat-relay.service");
    let bins = anonchat_e2e::bin_dir();
    for needed in [
        "DynamicUser=yes",
        "StateDirectory=anonchat-relay",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "PrivateTmp=yes",
        "RestrictAddressFamilies=AF_INET AF_INET6",
        "MemoryDenyWriteExecute=yes",
        "SystemCallFilter=@system-service",
    ] {
        assert!(unit.lines().any(|l| l == needed), "missing {needed}");
    }
    let help = Command::new(bins.join("anonchat-relay"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    let line = exec_start(&unit);
    for flag in line.split_whitespace().filter(|w| w.starts_with("--")) {
        assert!(
            help.contains(&format!("{flag} ")),
            "ExecStart uses {flag}, which anonchat-relay does not have"
        );
    }
    assert!(
        line.contains("--key-file %S/anonchat-relay/"),
        "the key in the state directory"
    );
    verify(
        "anonchat-relay.service",
        &with_binary(
            &unit,
            "/usr/local/bin/anonchat-relay",
            &bins.join("anonchat-relay"),
        ),
        false,
    );
}

/// A fresh account has no `~/.local/share/anonchat`: every
/// `ReadWritePaths=` entry must be optional (`-`) or made before the
/// sandbox (an `ExecStartPre=+mkdir`), else systemd fails the unit with
/// 226/NAMESPACE. Mutation: the old `ReadWritePaths=%h/.local/share/anonchat
/// %t` without the mkdir fails; so does the old example.invalid URL.
#[test]
fn the_daemon_unit_starts_on_a_fresh_account_and_verifies() {
    let unit = dist("anonchatd.service");
    let made: Vec<&str> = unit
        .lines()
        .filter_map(|l| l.strip_prefix("ExecStartPre=+mkdir "))
        .flat_map(str::split_whitespace)
        .collect();
    for line in unit
        .lines()
        .filter_map(|l| l.strip_prefix("ReadWritePaths="))
    {
        for path in line.split_whitespace() {
            assert!(
                path.starts_with('-') || path == "%t" || made.contains(&path),
                "ReadWritePaths={path} is missing on a fresh account (226/NAMESPACE)"
            );
            let path = path.trim_start_matches('-');
            assert!(
                path == "%t" || made.contains(&path),
                "{path} is not created before the sandbox: the daemon could not write it"
            );
        }
    }
    assert!(!unit.contains("example.invalid"), "a real Documentation=");
    verify(
        "anonchatd.service",
        &with_binary(
            &unit,
            "%h/.cargo/bin/anonchatd",
            &anonchat_e2e::bin_dir().join("anonchatd"),
        ),
        true,
    );
}
