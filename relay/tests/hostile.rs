//! Hostile input: each case is refused or dropped at a bounded cost while a
//! well-behaved client in the same shard keeps getting every round.

mod common;

use std::time::Duration;

use anonchat_protocol::wire::{CloseCode, WireError};
use anonchat_relay::client::{self, ClientError, Incoming};
use common::{RelayProc, closed_within, good_client, random_cell, raw};
use tokio::io::AsyncWriteExt as _;

const SHARD: u32 = 11;

/// A good client in SHARD for `rounds` rounds; checks it saw every one.
fn bystander(relay: &RelayProc, rounds: usize, cell: usize) -> tokio::task::JoinHandle<()> {
    let addr = relay.addr.clone();
    tokio::spawn(async move {
        let seen = good_client(addr, SHARD, rounds, move |_| random_cell(cell)).await;
        assert!(
            seen.contiguous(),
            "bystander missed a round: {:?}",
            seen.rounds
        );
        assert_eq!(
            seen.own_once,
            seen.expected_own(),
            "bystander's cell missing"
        );
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_instead_of_a_handshake_is_dropped() {
    let relay = RelayProc::start(&[]);
    let by = bystander(&relay, 15, 512);
    // Random bytes: the length prefix is out of range.
    let mut a = raw(&relay.addr).await;
    a.write_all(&random_cell(4096)).await.unwrap();
    closed_within(&mut a, Duration::from_secs(2)).await;
    // A plausible length, then bytes that are no Noise message.
    let mut b = raw(&relay.addr).await;
    b.write_all(&[0, 50]).await.unwrap();
    b.write_all(&random_cell(50)).await.unwrap();
    closed_within(&mut b, Duration::from_secs(2)).await;
    by.await.unwrap();
    let stderr = relay.stop();
    assert_eq!(common::stat(&stderr, "handshake_failed"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handshake_that_stops_half_way_times_out() {
    let relay = RelayProc::start(&["--handshake-timeout-ms", "500"]);
    let by = bystander(&relay, 15, 512);
    let (_hs, msg1) = anonchat_protocol::wire::ClientHandshake::start(relay.addr.key()).unwrap();
    let mut s = raw(&relay.addr).await;
    s.write_all(&msg1[..20]).await.unwrap();
    let t = std::time::Instant::now();
    closed_within(&mut s, Duration::from_secs(3)).await;
    assert!(
        t.elapsed() >= Duration::from_millis(400),
        "closed before the timeout"
    );
    // Joined but never says hello: same deadline.
    let mut s = raw(&relay.addr).await;
    s.write_all(&msg1).await.unwrap();
    closed_within(&mut s, Duration::from_secs(3)).await;
    by.await.unwrap();
    relay.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_of_the_wrong_size_break_only_their_own_connection() {
    let relay = RelayProc::start(&[]);
    let by = bystander(&relay, 15, 512);
    for cut in [10usize, 1] {
        let c = client::connect(&relay.addr, SHARD, None).await.unwrap();
        let client::Connected {
            welcome,
            mut sender,
            mut receiver,
            ..
        } = c;
        let frame = sender
            .seal(&anonchat_protocol::wire::ClientFrame::Cell {
                round: welcome.open_round,
                cell: random_cell(512),
            })
            .unwrap();
        // A short frame followed by another: the stream is now misaligned.
        sender.send_raw(&frame[..frame.len() - cut]).await.unwrap();
        sender.send_raw(&random_cell(cut + 40)).await.unwrap();
        let end = tokio::time::timeout(Duration::from_secs(3), async {
            loop {
                match receiver.next().await {
                    Ok(client::Incoming::Batch(_)) => {}
                    other => return other.is_err(),
                }
            }
        })
        .await
        .expect("connection dropped in time");
        assert!(end, "dropped without a close frame: the stream was garbage");
    }
    by.await.unwrap();
    relay.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_is_dropped_not_buffered() {
    // Big cells and small socket buffers, so the buffers between the
    // relay and the slow client fill within a few rounds. (50 ms rounds
    // made the bystanders' own cells miss their round on a loaded CI
    // machine, which is not what this test is about.)
    let relay = RelayProc::start(&[
        "--cell-size",
        "8192",
        "--round-ms",
        "100",
        "--send-queue",
        "4",
        "--socket-send-buffer",
        "65536",
    ]);
    let mut bystanders = Vec::new();
    for _ in 0..3 {
        bystanders.push(bystander(&relay, 60, 8192));
    }
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket
        .connect(relay.addr.socket_addr_string().parse().unwrap())
        .await
        .unwrap();
    let slow = client::join(stream, relay.addr.key(), SHARD, None)
        .await
        .unwrap();
    let client::Connected {
        welcome,
        mut sender,
        receiver,
        ..
    } = slow;
    sender
        .send_cell(welcome.open_round, random_cell(8192))
        .await
        .unwrap();
    for b in bystanders {
        b.await.unwrap();
    }
    drop(receiver);
    let stderr = relay.stop();
    assert_eq!(common::stat(&stderr, "slow_dropped"), 1, "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_idle_connections_cost_a_bounded_amount() {
    let _ = rlimit::increase_nofile_limit(8192);
    let relay = RelayProc::start(&["--max-per-ip", "2000", "--handshake-timeout-ms", "1500"]);
    let by = bystander(&relay, 30, 512);
    let mut idle = Vec::with_capacity(1000);
    for _ in 0..1000 {
        idle.push(raw(&relay.addr).await);
    }
    // All are dropped once the handshake deadline passes.
    for s in &mut idle {
        closed_within(s, Duration::from_secs(5)).await;
    }
    by.await.unwrap();
    let stderr = relay.stop();
    assert_eq!(common::stat(&stderr, "handshake_failed"), 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_limits_are_refused_at_once() {
    let relay = RelayProc::start(&["--max-clients", "5", "--max-per-ip", "3"]);
    let by = bystander(&relay, 15, 512);
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The bystander holds one of the three per-address slots.
    let _kept: Vec<_> = open_raw(2, &relay).await;
    let mut over = raw(&relay.addr).await;
    closed_within(&mut over, Duration::from_millis(500)).await;
    by.await.unwrap();
    let stderr = relay.stop();
    assert!(common::stat(&stderr, "refused_full") >= 1);
}

async fn open_raw(n: usize, relay: &RelayProc) -> Vec<tokio::net::TcpStream> {
    let mut v = Vec::new();
    for _ in 0..n {
        v.push(raw(&relay.addr).await);
    }
    v
}

/// Issue 14: a connection flooding late cells is cut, and one that answers
/// every batch late is not. The late client answers each batch with a cell
/// for that batch's own round, already closed (as if every cell crossed
/// the round close): all its cells are late but one per batch, so none is
/// a violation. The flooder sends ten cells for a closed round at once:
/// the first is within its allowance (one before any batch), the next four
/// are violations, and the fourth violation cuts it with `CLOSE(3)`.
///
/// Checked against the mutations "the allowance check removed from
/// `Shard::submit`" (late cells are all free again: the flooder is never
/// cut and this test fails) and "every late cell is a violation" (the late
/// client is cut).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_flooding_late_cells_is_cut_and_one_answering_late_is_not() {
    const ROUNDS: usize = 20;
    let relay = RelayProc::start(&[]);
    let by = bystander(&relay, ROUNDS, 512);
    let addr = relay.addr.clone();
    let late = tokio::spawn(async move {
        let client::Connected {
            welcome,
            mut sender,
            mut receiver,
            ..
        } = client::connect(&addr, SHARD, None).await.unwrap();
        sender
            .send_cell(welcome.open_round - 1, random_cell(512))
            .await
            .unwrap();
        for _ in 0..ROUNDS {
            match receiver.next().await.unwrap() {
                Incoming::Batch(b) => sender.send_cell(b.round, random_cell(512)).await.unwrap(),
                Incoming::Closed { code, reason } => {
                    panic!("a client answering late was cut: {code} {reason}")
                }
            }
        }
    });

    let client::Connected {
        welcome,
        mut sender,
        mut receiver,
        ..
    } = client::connect(&relay.addr, SHARD, None).await.unwrap();
    for _ in 0..10 {
        if sender
            .send_cell(welcome.open_round - 1, random_cell(512))
            .await
            .is_err()
        {
            break;
        }
    }
    let closed = loop {
        match tokio::time::timeout(Duration::from_secs(5), receiver.next())
            .await
            .expect("the flooder is cut in time")
        {
            Ok(Incoming::Batch(_)) => {}
            Ok(Incoming::Closed { code, reason }) => break (code, reason),
            Err(e) => panic!("cut without a close frame: {e}"),
        }
    };
    assert_eq!(closed.0, CloseCode::Violation);
    assert!(
        closed.1.contains("send one cell per batch"),
        "the reason says what to do: {}",
        closed.1
    );
    late.await.unwrap();
    by.await.unwrap();
    let stderr = relay.stop();
    // The flooder's four, the 4th cutting it; none from the late client.
    assert_eq!(common::stat(&stderr, "violations"), 4, "{stderr}");
    assert!(common::stat(&stderr, "cells_late") > ROUNDS as u64);
}

/// Issue 14, over IPv6: 65 connections from one /64 are refused past the
/// default limit of 64. Loopback has only `::1`, so they all come from one
/// address; that any address of the /64 counts the same is shown by the
/// unit tests of `per_ip` (synthetic addresses). Skipped, loudly, where the
/// machine has no IPv6 loopback.
///
/// Checked against the mutation "the accept loop's `per_ip.try_acquire`
/// check removed": the 65th connection is then kept open and this test
/// fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_five_connections_from_one_ipv6_64_are_refused_past_the_limit() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("SKIPPED: no IPv6 loopback on this machine");
        return;
    }
    let relay = RelayProc::start_on("[::1]:0", &[]);
    assert!(relay.addr.socket_addr_string().starts_with("[::1]:"));
    let mut kept = Vec::new();
    for _ in 0..anonchat_relay::defaults::MAX_PER_IP {
        kept.push(raw(&relay.addr).await);
    }
    let mut over = raw(&relay.addr).await;
    closed_within(&mut over, Duration::from_millis(500)).await;
    // The first 64 are still open (in their handshake).
    let mut buf = [0u8; 1];
    for s in &kept {
        assert!(matches!(
            s.try_read(&mut buf),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock
        ));
    }
    drop(kept);
    let stderr = relay.stop();
    assert_eq!(common::stat(&stderr, "refused_full"), 1);
}

/// Issue 14: one address is held to `--max-shards-per-ip` shards, over the
/// real binary. With a limit of 2, a third shard gets `CLOSE(4)` with a
/// reason saying what to do; another connection to a shard the address is
/// in is fine; once the address has left a shard, the third is open to it.
///
/// Checked against the mutation "the `max_shards_per_ip` check removed
/// from `Shards::join`": the third shard is then joined and this test
/// fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_gets_at_most_max_shards_per_ip_shards() {
    let relay = RelayProc::start(&["--max-shards-per-ip", "2"]);
    let one = client::connect(&relay.addr, 1, None).await.unwrap();
    let _two = client::connect(&relay.addr, 2, None).await.unwrap();
    let refused = client::connect(&relay.addr, 3, None).await.err();
    let Some(ClientError::Wire(WireError::Closed { code, reason })) = refused else {
        panic!("a third shard from one address must be refused: {refused:?}")
    };
    assert_eq!(code, CloseCode::Full);
    assert!(
        reason.contains("2 shards") && reason.contains("leave one"),
        "{reason}"
    );
    let again = client::connect(&relay.addr, 1, None).await.unwrap();
    // Leave shard 1 (both connections); the relay notices the close.
    drop((one, again));
    let t = std::time::Instant::now();
    loop {
        match client::connect(&relay.addr, 3, None).await {
            Ok(_) => break,
            Err(ClientError::Wire(WireError::Closed {
                code: CloseCode::Full,
                ..
            })) => {
                assert!(
                    t.elapsed() < Duration::from_secs(5),
                    "shard 1 was left, yet shard 3 is still refused"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("{e}"),
        }
    }
    let stderr = relay.stop();
    assert!(common::stat(&stderr, "joins_refused") >= 1);
}
