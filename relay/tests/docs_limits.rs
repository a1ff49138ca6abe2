//! The limits table of `docs/protocol.md` ("Limits") against the constants
//! the relay is built from (`anonchat_relay::defaults`, the wire protocol's
//! bounds) and against the defaults `anonchat-relay --help` shows; the wire
//! version and the BATCH frame layout against the code. Changing a value on
//! one side only fails here.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

use anonchat_protocol::wire::{
    AEAD_TAG_LEN, BatchKey, MAX_BATCH_CELLS, MAX_CLOSE_REASON, MAX_HANDSHAKE_MSG, PROTOCOL_VERSION,
    RelayFrame, frame_wire_len,
};
use anonchat_relay::RelayConfig;
use anonchat_relay::defaults::{
    BACKLOG_S, CELL_SIZE, HANDSHAKE_TIMEOUT_MS, IDLE_TIMEOUT_S, MAX_BACKLOG_MIB, MAX_CELL_SIZE,
    MAX_CLIENTS, MAX_PER_IP, MAX_ROUND_MS, MAX_SHARDS, MAX_SHARDS_PER_IP, MAX_VIOLATIONS,
    MIN_CELL_SIZE, MIN_ROUND_MS, ROUND_MS, SEND_QUEUE,
};

const PROTOCOL_MD: &str = include_str!("../../docs/protocol.md");

/// One row of the table: `| limit | default | flag | on breach |`.
#[derive(Debug)]
struct Row {
    limit: String,
    default: String,
    flag: String,
    breach: String,
}

/// The rows of the table under the `### Limits` heading.
fn limits_table(doc: &str) -> Vec<Row> {
    let mut lines = doc
        .lines()
        .skip_while(|l| l.trim() != "### Limits")
        .skip(1)
        .skip_while(|l| l.trim().is_empty())
        .take_while(|l| l.trim_start().starts_with('|'));
    let header = lines
        .next()
        .expect("docs/protocol.md has a `### Limits` table");
    assert_eq!(
        cells(header),
        ["limit", "default", "flag", "on breach"],
        "the Limits table's columns changed; update this test"
    );
    let separator = lines.next().expect("the Limits table has a separator row");
    assert!(
        separator.contains("---"),
        "not a separator row: {separator}"
    );
    lines
        .map(|l| {
            let c = cells(l);
            assert_eq!(c.len(), 4, "a Limits row without 4 cells: {l}");
            Row {
                limit: c[0].clone(),
                default: c[1].clone(),
                flag: c[2].clone(),
                breach: c[3].clone(),
            }
        })
        .collect()
}

fn cells(line: &str) -> Vec<String> {
    let line = line.trim();
    let inner = line
        .strip_prefix('|')
        .and_then(|l| l.strip_suffix('|'))
        .unwrap_or_else(|| panic!("not a table row: {line}"));
    inner.split('|').map(|c| c.trim().to_owned()).collect()
}

/// A duration in milliseconds as the table writes it.
fn duration_ms(ms: u64) -> String {
    if ms.is_multiple_of(1000) {
        format!("{} s", ms / 1000)
    } else {
        format!("{ms} ms")
    }
}

/// What the table must say, row by row: (limit, default, flag, a part of
/// the "on breach" text that carries a number, if any).
#[allow(clippy::too_many_lines, reason = "one entry per row of the table")]
fn expected() -> Vec<(&'static str, String, &'static str, Option<String>)> {
    vec![
        (
            "connections at once (handshaking included)",
            MAX_CLIENTS.to_string(),
            "`--max-clients`",
            None,
        ),
        (
            "connections per source address (IPv4, or IPv6 /64)",
            MAX_PER_IP.to_string(),
            "`--max-per-ip`",
            None,
        ),
        (
            "shards at once",
            MAX_SHARDS.to_string(),
            "`--max-shards`",
            None,
        ),
        (
            "shards per source address (IPv4, or IPv6 /64)",
            MAX_SHARDS_PER_IP.to_string(),
            "`--max-shards-per-ip`",
            None,
        ),
        (
            "handshake + HELLO time",
            duration_ms(HANDSHAKE_TIMEOUT_MS),
            "`--handshake-timeout-ms`",
            None,
        ),
        (
            "time without a frame from a client",
            duration_ms(IDLE_TIMEOUT_S * 1000),
            "`--idle-timeout-s`",
            None,
        ),
        (
            // The smallest message is a bare AEAD tag.
            "handshake message",
            format!("{AEAD_TAG_LEN}..={MAX_HANDSHAKE_MSG} bytes"),
            "—",
            None,
        ),
        (
            "frame",
            format!("exactly `C + {}` bytes", frame_wire_len(0)),
            "—",
            None,
        ),
        (
            "cell size",
            format!("{MIN_CELL_SIZE}..={MAX_CELL_SIZE}, default {CELL_SIZE}"),
            "`--cell-size`",
            None,
        ),
        (
            "round",
            format!("{MIN_ROUND_MS}..={MAX_ROUND_MS} ms, default {ROUND_MS}"),
            "`--round-ms`",
            None,
        ),
        (
            // One cell per client and round is the protocol, not a setting.
            "cells per round per client",
            "1".to_owned(),
            "—",
            // `MAX_VIOLATIONS` are forgiven, the next one cuts.
            Some(format!("more than {MAX_VIOLATIONS} violations: `CLOSE(3)`")),
        ),
        (
            // Late cells included: what bounds them (`Submit::Unearned`).
            "cells per client, late ones included",
            "one per batch sent, plus one".to_owned(),
            "—",
            Some("a violation".to_owned()),
        ),
        (
            "batches queued per client",
            SEND_QUEUE.to_string(),
            "`--send-queue`",
            None,
        ),
        (
            "kernel send buffer per client",
            "kernel autotuning".to_owned(),
            "`--socket-send-buffer`",
            None,
        ),
        (
            "backlog time / memory",
            format!("{} / {MAX_BACKLOG_MIB} MiB", duration_ms(BACKLOG_S * 1000)),
            "`--backlog-s`, `--max-backlog-mb`",
            None,
        ),
        (
            "cells in a batch (client side)",
            MAX_BATCH_CELLS.to_string(),
            "—",
            None,
        ),
        (
            "close reason",
            format!("{MAX_CLOSE_REASON} bytes"),
            "—",
            None,
        ),
    ]
}

#[test]
fn the_limits_table_matches_the_constants() {
    let rows = limits_table(PROTOCOL_MD);
    let expected = expected();
    let mut problems = Vec::new();
    for row in &rows {
        let Some((_, default, flag, breach)) = expected.iter().find(|e| e.0 == row.limit) else {
            problems.push(format!(
                "row `{}` is not checked by relay/tests/docs_limits.rs: add it",
                row.limit
            ));
            continue;
        };
        if &row.default != default {
            problems.push(format!(
                "`{}`: the table says default `{}`, the code says `{default}`",
                row.limit, row.default
            ));
        }
        if &row.flag != flag {
            problems.push(format!(
                "`{}`: the table says flag `{}`, the code says `{flag}`",
                row.limit, row.flag
            ));
        }
        if let Some(part) = breach
            && !row.breach.contains(part.as_str())
        {
            problems.push(format!(
                "`{}`: the table says `{}` on breach, the code says `{part}`",
                row.limit, row.breach
            ));
        }
    }
    for (limit, ..) in &expected {
        if !rows.iter().any(|r| r.limit == *limit) {
            problems.push(format!("row `{limit}` is missing from the table"));
        }
    }
    assert!(
        problems.is_empty(),
        "docs/protocol.md (Limits) and the relay's constants disagree:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_default_config_is_built_from_the_constants() {
    use std::time::Duration;
    let c = RelayConfig::default();
    assert_eq!(c.round, Duration::from_millis(ROUND_MS));
    assert_eq!(c.cell_size, CELL_SIZE);
    assert_eq!(c.backlog, Duration::from_secs(BACKLOG_S));
    assert_eq!(c.max_backlog_bytes, MAX_BACKLOG_MIB << 20);
    assert_eq!(c.max_clients, MAX_CLIENTS);
    assert_eq!(c.max_per_ip, MAX_PER_IP);
    assert_eq!(c.max_shards, MAX_SHARDS);
    assert_eq!(c.max_shards_per_ip, MAX_SHARDS_PER_IP);
    assert_eq!(
        c.handshake_timeout,
        Duration::from_millis(HANDSHAKE_TIMEOUT_MS)
    );
    assert_eq!(c.idle_timeout, Duration::from_secs(IDLE_TIMEOUT_S));
    assert_eq!(c.send_queue, SEND_QUEUE);
    assert_eq!(
        c.socket_send_buffer, None,
        "the table says kernel autotuning"
    );
    assert_eq!(c.max_violations, MAX_VIOLATIONS);
    assert!(!c.log_addresses);
    c.validate().unwrap();
}

/// `anonchat-relay --help` shows the defaults clap was given; they must be
/// the constants (a literal slipped back into the flags fails here).
#[test]
fn the_flags_default_to_the_constants() {
    let out = Command::new(env!("CARGO_BIN_EXE_anonchat-relay"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    let flags = [
        ("--round-ms", ROUND_MS.to_string()),
        ("--cell-size", CELL_SIZE.to_string()),
        ("--backlog-s", BACKLOG_S.to_string()),
        ("--max-backlog-mb", MAX_BACKLOG_MIB.to_string()),
        ("--max-clients", MAX_CLIENTS.to_string()),
        ("--max-per-ip", MAX_PER_IP.to_string()),
        ("--max-shards", MAX_SHARDS.to_string()),
        ("--max-shards-per-ip", MAX_SHARDS_PER_IP.to_string()),
        ("--handshake-timeout-ms", HANDSHAKE_TIMEOUT_MS.to_string()),
        ("--idle-timeout-s", IDLE_TIMEOUT_S.to_string()),
        ("--send-queue", SEND_QUEUE.to_string()),
    ];
    for (flag, value) in flags {
        let shown = flag_default(&help, flag)
            .unwrap_or_else(|| panic!("`--help` shows no default for {flag}:\n{help}"));
        assert_eq!(shown, value, "{flag}");
    }
    assert_eq!(flag_default(&help, "--socket-send-buffer"), None);
}

/// The `[default: …]` of one option in clap's help text: the option's entry
/// runs from its line to the next line that starts another option.
fn flag_default(help: &str, flag: &str) -> Option<String> {
    let mut entry = String::new();
    let mut inside = false;
    for line in help.lines() {
        let starts_option = line.trim_start().starts_with('-');
        if starts_option {
            if inside {
                break;
            }
            inside = line
                .split(|c: char| c.is_whitespace() || c == ',')
                .any(|w| w == flag);
        }
        if inside {
            entry.push_str(line);
            entry.push(' ');
        }
    }
    let start = entry.find("[default: ")? + "[default: ".len();
    let len = entry[start..].find(']')?;
    Some(entry[start..start + len].to_owned())
}

/// The version in the document's opening list is the code's, and the BATCH
/// row gives each field at the offset the encoder writes it.
#[test]
fn the_wire_version_and_the_batch_layout_match_the_code() {
    assert!(
        PROTOCOL_MD.contains(&format!(
            "served by `relay/`. Version **{PROTOCOL_VERSION}**"
        )),
        "docs/protocol.md does not say wire version {PROTOCOL_VERSION}"
    );
    let row = PROTOCOL_MD
        .lines()
        .find(|l| l.starts_with("| `0x82` | BATCH |"))
        .expect("docs/protocol.md has a BATCH row");
    let plain = RelayFrame::Batch {
        round: 0x0101_0101_0101_0101,
        closed_at_us: 0x0202_0202_0202_0202,
        cells: 0x0303_0303,
        key: BatchKey::from_bytes([4; 32]),
        body_hash: [5; 32],
    }
    .encode(anonchat_protocol::wire::MIN_CELL_SIZE);
    let span = |fill: u8| {
        let start = plain.iter().position(|&b| b == fill).unwrap();
        let len = plain[start..].iter().take_while(|&&b| b == fill).count();
        format!("[{start}..{}]", start + len)
    };
    assert_eq!(plain[0], 0x82);
    for (fill, field) in [
        (1, "round: u64"),
        (2, "closed_at_us: u64"),
        (3, "cells: u32"),
        (4, "batch_key: 32 bytes"),
        (5, "body_hash: 32 bytes"),
    ] {
        let documented = format!("{} {field}", span(fill));
        assert!(
            row.contains(&documented),
            "the BATCH row should say `{documented}`: {row}"
        );
    }
    // The hash is the last field: zero padding follows it.
    let end = plain.iter().rposition(|&b| b != 0).unwrap() + 1;
    assert!(span(5).ends_with(&format!("..{end}]")), "{}", span(5));
    assert!(row.contains("body_hash: 32 bytes`, zeros"), "{row}");
}

#[test]
fn the_table_parser_sees_every_row() {
    let doc = "\
### Limits

| limit | default | flag | on breach |
|---|---|---|---|
| a | 1 | `--a` | x |
| b | 2 s | — | y |

next
";
    let rows = limits_table(doc);
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[1].limit, "b");
    assert_eq!(rows[1].default, "2 s");
    assert_eq!(rows[1].flag, "—");
    assert_eq!(rows[1].breach, "y");
}
