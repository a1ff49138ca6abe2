//! Smoke test of `anonchat-loadgen compare` with tiny numbers: it starts
//! the relay (and `redis-server`, when installed) itself, twice each
//! (`--runs 2`), prints one table with a row per server and run and a
//! summary over the runs, and stops what it started. Not a timing test: it
//! checks the rows are there and nothing was lost at a load any machine
//! carries.
//!
//! Checked against breaking it: with the relay row left out of
//! `Comparison`'s `Display`, the relay started without `--round-ms`
//! (then the 500 ms default makes the one-second run measure at most one
//! round and the delivered count below fails), or only one run made, this
//! test fails.

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
            "--runs",
            "2",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let rows = |server: &str| -> Vec<Vec<String>> {
        stdout
            .lines()
            .filter(|l| l.starts_with(&format!("| {server} |")))
            .map(cells)
            .collect()
    };
    let relay = rows("anonchat-relay");
    assert_eq!(relay.len(), 2, "a relay row per run:\n{stdout}");
    for relay in &relay {
        // deliveries/s: 4 clients x 4 cells x 10 rounds/s = 160.
        let per_s: f64 = relay[3].replace(',', "").parse().unwrap();
        assert!(per_s > 100.0, "{stdout}");
        assert_eq!(relay[7], "0", "lost cells:\n{stdout}");
    }
    let redis_installed = anonchat_relay::compare::find_on_path("redis-server").is_some();
    let redis = rows("redis-server");
    if redis.is_empty() {
        assert!(
            !redis_installed,
            "redis-server is installed but has no row:\n{stdout}"
        );
        assert!(stdout.contains("redis-server not found"), "{stdout}");
        assert!(stdout.contains("median of 2 runs"), "{stdout}");
        eprintln!("redis-server not installed: its row was skipped, as it should be");
    } else {
        assert!(redis_installed);
        assert_eq!(redis.len(), 2, "a Redis row per run:\n{stdout}");
        for redis in &redis {
            assert_eq!(redis[7], "0", "lost messages:\n{stdout}");
        }
        assert!(
            stdout.contains("less CPU per delivery than redis-server, median of 2 alternated runs"),
            "{stdout}"
        );
        assert!(stdout.contains("lost 0 vs 0 in all"), "{stdout}");
    }
}
