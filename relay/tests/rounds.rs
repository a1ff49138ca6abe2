//! The relay's round behaviour, against the real binary.

mod common;

use std::time::Duration;

use anonchat_protocol::wire::WireError;
use anonchat_relay::client::{self, ClientError, Incoming};
use common::{RelayProc, good_client, random_cell};

const CELL: usize = 512;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_client_gets_the_same_batch_and_each_cell_exactly_once() {
    let relay = RelayProc::start(&[]);
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let addr = relay.addr.clone();
        tasks.push(tokio::spawn(good_client(addr, 7, 12, |_| {
            random_cell(CELL)
        })));
    }
    let mut seen = Vec::new();
    for t in tasks {
        seen.push(t.await.unwrap());
    }
    // Compare the rounds all four clients received.
    let common_rounds: Vec<u64> = seen[0]
        .rounds
        .iter()
        .copied()
        .filter(|r| seen.iter().all(|s| s.rounds.contains(r)))
        .collect();
    assert!(common_rounds.len() >= 8, "{common_rounds:?}");
    for r in &common_rounds {
        let batches: Vec<&Vec<Vec<u8>>> = seen
            .iter()
            .map(|s| &s.batches[s.rounds.iter().position(|x| x == r).unwrap()])
            .collect();
        assert!(
            batches.windows(2).all(|w| w[0] == w[1]),
            "round {r} differs"
        );
    }
    for s in &seen {
        assert!(s.contiguous(), "gap in {:?}", s.rounds);
        // Each cell we sent for a round we received appears exactly once.
        assert_eq!(s.own_once, s.expected_own());
        assert!(s.batches.iter().flatten().all(|c| c.len() == CELL));
    }
    relay.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cover_cell_and_a_real_looking_cell_are_handled_identically() {
    let relay = RelayProc::start(&[]);
    // One client sends random bytes (cover), the other structured bytes
    // (what a careless real cell would look like); the relay treats both
    // the same: same batch, each once, same size.
    let a = tokio::spawn(good_client(relay.addr.clone(), 1, 8, |_| random_cell(CELL)));
    let b = tokio::spawn(good_client(relay.addr.clone(), 1, 8, |r| {
        let mut c = b"hello bob, this is a message".repeat(20);
        c.truncate(CELL);
        c[..8].copy_from_slice(&r.to_be_bytes());
        c
    }));
    let (a, b) = (a.await.unwrap(), b.await.unwrap());
    for s in [&a, &b] {
        assert_eq!(s.own_once, s.expected_own());
    }
    let last = a
        .rounds
        .iter()
        .rev()
        .find(|r| b.rounds.contains(r))
        .unwrap();
    let ia = a.rounds.iter().position(|r| r == last).unwrap();
    let ib = b.rounds.iter().position(|r| r == last).unwrap();
    assert_eq!(a.batches[ia], b.batches[ib]);
    relay.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rounds_close_on_the_relay_clock() {
    let relay = RelayProc::start(&["--round-ms", "100"]);
    let c = client::connect(&relay.addr, 3, None).await.unwrap();
    assert_eq!(c.params.round_ms, 100);
    let client::Connected { mut receiver, .. } = c;
    let mut closes = Vec::new();
    // A client that sends nothing still gets a batch every round.
    while closes.len() < 21 {
        match receiver.next().await.unwrap() {
            Incoming::Batch(b) => closes.push((b.round, b.closed_at_us)),
            Incoming::Closed { .. } => panic!("closed"),
        }
    }
    assert!(closes.windows(2).all(|w| w[1].0 == w[0].0 + 1));
    let mut gaps: Vec<u64> = closes.windows(2).map(|w| w[1].1 - w[0].1).collect();
    gaps.sort_unstable();
    let median = gaps[gaps.len() / 2];
    assert!(
        (80_000..=130_000).contains(&median),
        "median round {median} µs"
    );
    // Rounds are numbered from the wall clock and close on its boundaries:
    // round r ends at (r + 1) * round_ms since the Unix epoch. (The median
    // leaves room for a late tick on a busy machine.)
    let mut late: Vec<i128> = closes
        .iter()
        .map(|&(round, at)| i128::from(at) - i128::from((round + 1) * 100_000))
        .collect();
    late.sort_unstable();
    let median = late[late.len() / 2];
    assert!(
        (0..30_000).contains(&median),
        "rounds close {median} µs after their wall-clock end: {closes:?}"
    );
    relay.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_client_gets_the_backlog_without_gaps() {
    let relay = RelayProc::start(&[]);
    // A steady sender keeps the shard busy.
    let steady = tokio::spawn(good_client(relay.addr.clone(), 5, 40, |_| {
        random_cell(CELL)
    }));
    let first = good_client(relay.addr.clone(), 5, 5, |_| random_cell(CELL)).await;
    let last_seen = *first.rounds.last().unwrap();
    // Away for a while.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let c = client::connect(&relay.addr, 5, Some(last_seen))
        .await
        .unwrap();
    assert!(c.welcome.oldest_held <= last_seen + 1);
    assert!(c.welcome.open_round > last_seen + 5, "{:?}", c.welcome);
    let client::Connected {
        mut receiver,
        welcome,
        ..
    } = c;
    let mut rounds = Vec::new();
    let mut cells_seen = 0;
    while rounds.len() < 12 {
        if let Incoming::Batch(b) = receiver.next().await.unwrap() {
            cells_seen += b.batch.len();
            rounds.push(b.round);
        }
    }
    assert_eq!(
        rounds[0],
        last_seen + 1,
        "backlog starts right after {last_seen}"
    );
    assert!(rounds.windows(2).all(|w| w[1] == w[0] + 1), "{rounds:?}");
    assert!(rounds.last().unwrap() >= &welcome.open_round);
    assert!(
        cells_seen > 0,
        "the missed rounds carried the steady client's cells"
    );
    steady.await.unwrap();
    relay.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shards_are_separate_anonymity_sets() {
    let relay = RelayProc::start(&[]);
    let a = tokio::spawn(good_client(relay.addr.clone(), 1, 6, |_| vec![0xAA; CELL]));
    let b = tokio::spawn(good_client(relay.addr.clone(), 2, 6, |_| vec![0xBB; CELL]));
    let (a, b) = (a.await.unwrap(), b.await.unwrap());
    assert!(a.batches.iter().flatten().all(|c| c[0] == 0xAA));
    assert!(b.batches.iter().flatten().all(|c| c[0] == 0xBB));
    relay.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_of_another_version_is_refused_clearly() {
    use anonchat_protocol::wire::{ClientHandshake, handshake_len};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let relay = RelayProc::start(&[]);
    let mut s = common::raw(&relay.addr).await;
    // A version 1 client: message 1 of version 1 is this, byte for byte.
    let (hs, msg1) = ClientHandshake::start_with_version(relay.addr.key(), 1).unwrap();
    s.write_all(&msg1).await.unwrap();
    let mut prefix = [0u8; 2];
    s.read_exact(&mut prefix).await.unwrap();
    let mut msg2 = vec![0u8; handshake_len(prefix).unwrap()];
    s.read_exact(&mut msg2).await.unwrap();
    let err = hs.finish(&msg2).unwrap_err();
    assert!(matches!(err, WireError::Refused(_)), "{err}");
    assert!(err.to_string().contains("update anonchat"), "{err}");
    common::closed_within(&mut s, Duration::from_secs(2)).await;
    let stderr = relay.stop();
    assert_eq!(common::stat(&stderr, "version_refused"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_flooding_cells_is_cut_and_the_others_keep_every_round() {
    let relay = RelayProc::start(&[]);
    let good = tokio::spawn(good_client(relay.addr.clone(), 9, 20, |_| {
        random_cell(CELL)
    }));
    let c = client::connect(&relay.addr, 9, None).await.unwrap();
    let client::Connected {
        welcome,
        mut sender,
        mut receiver,
        ..
    } = c;
    // Ten cells for the same round, then more for rounds not open yet.
    for i in 0..10 {
        let round = if i < 5 {
            welcome.open_round
        } else {
            welcome.open_round + 10
        };
        if sender.send_cell(round, random_cell(CELL)).await.is_err() {
            break;
        }
    }
    let closed = loop {
        match tokio::time::timeout(Duration::from_secs(5), receiver.next())
            .await
            .unwrap()
        {
            Ok(Incoming::Batch(_)) => {}
            Ok(Incoming::Closed { code, .. }) => break Some(code),
            Err(ClientError::Io(_)) => break None,
            Err(e) => panic!("{e}"),
        }
    };
    assert_eq!(closed, Some(anonchat_protocol::wire::CloseCode::Violation));
    let good = good.await.unwrap();
    assert!(good.contiguous());
    assert_eq!(good.own_once, good.expected_own());
    // The flooder's extra cells never reached a batch: at most one per round.
    let flood_rounds = good.batches.iter().filter(|b| b.len() > 2).count();
    assert_eq!(flood_rounds, 0);
    let stderr = relay.stop();
    assert!(common::stat(&stderr, "violations") >= 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_tells_clients_and_exits_cleanly() {
    let relay = RelayProc::start(&[]);
    let c = client::connect(&relay.addr, 1, None).await.unwrap();
    let client::Connected { mut receiver, .. } = c;
    let pid = relay.pid();
    let waiter = tokio::spawn(async move {
        loop {
            match receiver.next().await {
                Ok(Incoming::Batch(_)) => {}
                Ok(Incoming::Closed { code, .. }) => return Some(code),
                Err(_) => return None,
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stderr = tokio::task::spawn_blocking(move || relay.stop())
        .await
        .unwrap();
    assert_eq!(
        waiter.await.unwrap(),
        Some(anonchat_protocol::wire::CloseCode::Shutdown),
        "pid {pid}"
    );
    assert!(stderr.contains("relay stopped"));
}
