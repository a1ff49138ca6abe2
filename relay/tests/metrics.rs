//! `anonchat-relay --metrics ADDR`, scraped during a run of the real
//! binary: the values follow what happens, no line names an address or a
//! shard, and a scraper cannot hold the endpoint or feed it without bound.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use anonchat_relay::client;
use anonchat_relay::metrics::{MAX_CONNECTIONS, MAX_REQUEST, READ_TIMEOUT};
use common::{RelayProc, closed_within, random_cell, raw};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

const CELL: usize = anonchat_relay::defaults::CELL_SIZE;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One scrape: the body of `GET /metrics`.
async fn scrape(addr: &str) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut out))
        .await
        .expect("a scrape answers within 5 s")
        .unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.0 200 OK"), "{head}");
    body.to_owned()
}

fn value(body: &str, name: &str) -> u64 {
    body.lines()
        .find_map(|l| l.strip_prefix(&format!("anonchat_relay_{name} ")))
        .unwrap_or_else(|| panic!("no {name} in {body}"))
        .parse()
        .unwrap()
}

/// Two clients in shard 4242 and a failed handshake show up as counts;
/// no sample has a label, and no line holds the clients' address or the
/// shard number. Mutation: not counting refused cells
/// (`cells_refused`) breaks the received = relayed + late + dropped
/// check; a gauge reading 0 fails its check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scrape_during_a_run_has_the_counts_and_no_addresses() {
    let metrics = format!("127.0.0.1:{}", free_port());
    let relay = RelayProc::start(&["--metrics", &metrics]);
    let mut clients = Vec::new();
    for _ in 0..2 {
        clients.push(client::connect(&relay.addr, 4242, None).await.unwrap());
    }
    // A handshake that fails: garbage instead of a Noise message.
    let mut bad = raw(&relay.addr).await;
    bad.write_all(&[0u8; 600]).await.unwrap();
    closed_within(&mut bad, Duration::from_secs(10)).await;
    // Answer a few batches, one of them twice (a refused cell).
    for c in &mut clients {
        for i in 0..3 {
            let client::Incoming::Batch(b) = c.receiver.next().await.unwrap() else {
                panic!("closed");
            };
            c.sender
                .send_cell(b.round + 1, random_cell(CELL))
                .await
                .unwrap();
            if i == 1 {
                c.sender
                    .send_cell(b.round + 1, random_cell(CELL))
                    .await
                    .unwrap();
            }
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let body = scrape(&metrics).await;
    assert_eq!(value(&body, "connections"), 2, "{body}");
    assert_eq!(value(&body, "clients"), 2, "{body}");
    assert_eq!(value(&body, "shards"), 1, "{body}");
    assert!(value(&body, "rounds_closed_total") >= 3, "{body}");
    assert!(value(&body, "backlog_bytes") > 0, "{body}");
    assert!(value(&body, "handshake_failures_total") >= 1, "{body}");
    // Every cell received is relayed, late or dropped (which of the last
    // two depends on timing: the duplicates may come after the close).
    assert_eq!(value(&body, "cells_received_total"), 8, "{body}");
    assert_eq!(
        value(&body, "cells_relayed_total")
            + value(&body, "cells_late_total")
            + value(&body, "cells_dropped_total"),
        8,
        "{body}"
    );
    for line in body.lines().filter(|l| !l.starts_with('#')) {
        assert!(!line.contains('{'), "a labelled sample: {line}");
    }
    assert!(!body.contains("127.0.0.1"), "an address in the metrics");
    assert!(!body.contains("4242"), "the shard in the metrics");
    drop(clients);
    relay.stop();
}

/// At most `MAX_CONNECTIONS` scrapers at once (the next is closed without an
/// answer), a silent one is dropped after `READ_TIMEOUT`, and an over-long
/// request is cut. Mutation: without the semaphore the extra connection
/// stays open (the 1 s wait fails); without the size check the long
/// request is read on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scraper_cannot_hold_the_endpoint_or_send_without_bound() {
    let metrics = format!("127.0.0.1:{}", free_port());
    let relay = RelayProc::start(&["--metrics", &metrics]);
    let mut idle = Vec::new();
    for _ in 0..MAX_CONNECTIONS {
        idle.push(TcpStream::connect(&metrics).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut extra = TcpStream::connect(&metrics).await.unwrap();
    closed_within(&mut extra, Duration::from_secs(1)).await;
    for s in &mut idle {
        closed_within(s, READ_TIMEOUT + Duration::from_secs(3)).await;
    }
    // Room again.
    assert!(
        scrape(&metrics)
            .await
            .contains("anonchat_relay_rounds_closed_total")
    );

    let mut long = TcpStream::connect(&metrics).await.unwrap();
    let _ = long.write_all(&vec![b'x'; MAX_REQUEST + 10]).await;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(2), long.read_to_end(&mut buf))
        .await
        .expect("an over-long request is cut at once")
        .ok();
    assert!(buf.is_empty(), "no answer to an over-long request");
    relay.stop();
}
