//! Smoke test of `anonchat-loadgen compare` with tiny numbers: it starts
//! the relay (and `redis-server`, when installed) itself, prints one table
//! with a row per server, and stops what it started. Not a timing test: it
//! checks the rows are there and nothing was lost at a load any machine
//! carries.
//!
//! Checked against breaking it: with the relay row left out of
//! `Comparison`'s `Display`, or the relay started without `--round-ms`
//! (then the 500 ms default makes the one-second run measure at most one
//! round and the delivered count below fails), this test fails.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

/// A table row's cells, trimmed.
fn cells(row: &str) -> Vec<String> {
    row.trim_matches('|')
        .split('|')
        .map(|c| c.trim().to_owned())
        .collect()
}

#[test]
fn compare_prints_a_row_per_server_and_loses_nothing_at_a_tiny_load() {
    let out = Command::new(env!("CARGO_BIN_EXE_anonchat-loadgen"))
        .args([
            "compare",
            "--clients",
            "4",
            "--round-ms",
            "100",
            "--duration-s",
            "2",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let row = |server: &str| {
        stdout
            .lines()
            .find(|l| l.starts_with(&format!("| {server} |")))
            .map(cells)
    };
    let relay = row("anonchat-relay").unwrap_or_else(|| panic!("no relay row:\n{stdout}"));
    // deliveries/s: 4 clients x 4 cells x 10 rounds/s = 160.
    let per_s: f64 = relay[3].replace(',', "").parse().unwrap();
    assert!(per_s > 100.0, "{stdout}");
    assert_eq!(relay[7], "0", "lost cells:\n{stdout}");
    let redis_installed = anonchat_relay::compare::find_on_path("redis-server").is_some();
    if let Some(redis) = row("redis-server") {
        assert!(redis_installed);
        assert_eq!(redis[7], "0", "lost messages:\n{stdout}");
        assert!(
            stdout.contains("less CPU per delivery than redis-server"),
            "{stdout}"
        );
    } else {
        assert!(
            !redis_installed,
            "redis-server is installed but has no row:\n{stdout}"
        );
        assert!(stdout.contains("redis-server not found"), "{stdout}");
        eprintln!("redis-server not installed: its row was skipped, as it should be");
    }
}
