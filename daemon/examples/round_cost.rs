//! The daemon's CPU per round, measured in-process: one daemon core with
//! `CONTACTS` contacts (each a real core in this process, every session
//! established), in a shard of `SHARD` clients (the other cells random
//! cover, which is what they look like), receiving a batch and preparing
//! its one cell every round, as the relay link drives it (state saves
//! included). Its CPU comes from `getrusage(RUSAGE_THREAD)`: this thread
//! does nothing else while measured.
//!
//! ```sh
//! cargo run --release -p anonchatd --example round_cost -- 100 200 500 400
//! #                                             CONTACTS SHARD ROUND_MS ROUNDS
//! ```
//!
//! Prints one line; `anonchat-loadgen compare --daemon-cost` runs this and
//! adds the line to its table.

#![forbid(unsafe_code)]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a benchmark: a failed step should stop it loudly"
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anonchat_protocol::wire::{open_batch, seal_batch};
use anonchatd::core::{Clock, Core, Settings};
use anonchatd::keystore::KdfCost;
use anonchatd::paths::Paths;
use nix::sys::resource::{UsageWho, getrusage};
use rand::Rng as _;

const RELAY: &str = "anonchat://127.0.0.1:7766/#AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

fn arg(i: usize, default: u64) -> u64 {
    std::env::args()
        .nth(i)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

fn thread_cpu() -> Duration {
    let u = getrusage(UsageWho::RUSAGE_THREAD).expect("getrusage");
    let tv = |t: nix::sys::time::TimeVal| {
        Duration::from_secs(t.tv_sec().cast_unsigned())
            + Duration::from_micros(t.tv_usec().cast_unsigned())
    };
    tv(u.user_time()) + tv(u.system_time())
}

struct Node {
    core: Arc<Core>,
    _home: tempfile::TempDir,
}

fn node(name: &str, clock: &Arc<AtomicU64>, round_ms: u64) -> Node {
    let home = tempfile::tempdir().unwrap();
    let mut settings = Settings::new(Paths {
        home: home.path().to_path_buf(),
        socket: home.path().join("unused.sock"),
    });
    // No passphrase below, so no key derivation is run at all; the cost
    // only keeps a passphrase-less test cheap if one is added.
    settings.kdf_cost = KdfCost::INSECURE_FOR_TESTS;
    settings.clock = Clock::Manual(Arc::clone(clock));
    let core = Core::open(settings).unwrap();
    core.identity_create(name, RELAY, Some(""), Some(1))
        .unwrap();
    core.set_round_ms(round_ms as u32).unwrap();
    Node { core, _home: home }
}

/// One core per name. RSA-3072 key generation dominates: spread it over
/// the cores.
fn make_nodes(names: &[String], clock: &Arc<AtomicU64>, round_ms: u64) -> Vec<Node> {
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let per_thread = names.len().div_ceil(threads);
    let mut nodes: Vec<Option<Node>> = (0..names.len()).map(|_| None).collect();
    std::thread::scope(|s| {
        for (t, chunk) in nodes.chunks_mut(per_thread).enumerate() {
            s.spawn(move || {
                for (j, slot) in chunk.iter_mut().enumerate() {
                    *slot = Some(node(&names[t * per_thread + j], clock, round_ms));
                }
            });
        }
    });
    nodes.into_iter().map(Option::unwrap).collect()
}

fn main() {
    let contacts = arg(1, 100) as usize;
    let shard = (arg(2, 200) as usize).max(contacts + 1);
    let round_ms = arg(3, 500);
    let rounds = arg(4, 400);
    let cell_size = anonchat_protocol::wire::DEFAULT_CELL_SIZE;
    let clock = Arc::new(AtomicU64::new(1_764_000_000_000));

    let t0 = Instant::now();
    let names: Vec<String> = (0..=contacts).map(|i| format!("c{i}")).collect();
    let nodes = make_nodes(&names, &clock, round_ms);
    let (me, others) = nodes.split_first().unwrap();
    let my_file = me.core.identity_export().unwrap();
    for (i, o) in others.iter().enumerate() {
        me.core
            .contacts_add(&o.core.identity_export().unwrap(), &names[i + 1])
            .unwrap();
        o.core.contacts_add(&my_file, "c0").unwrap();
        o.core.messages_send("c0", "hello").unwrap();
    }
    let setup = t0.elapsed();

    // The other clients' cells: random, as cover is, made once.
    let mut rng = rand::rng();
    let cover: Vec<Vec<u8>> = (1..shard)
        .map(|_| {
            let mut c = vec![0u8; cell_size];
            rng.fill_bytes(&mut c);
            c
        })
        .collect();
    let mut round = clock.load(Ordering::Relaxed) / round_ms;
    let mut step = || {
        round += 1;
        clock.fetch_add(round_ms, Ordering::Relaxed);
        let mine = me.core.prepare_cell(round).unwrap();
        let theirs: Vec<Vec<u8>> = others
            .iter()
            .map(|o| o.core.prepare_cell(round).unwrap())
            .collect();
        let mut refs: Vec<&[u8]> = Vec::with_capacity(shard);
        refs.push(&mine);
        refs.extend(theirs.iter().map(Vec::as_slice));
        refs.extend(cover[theirs.len()..].iter().map(Vec::as_slice));
        me.core.receive_batch(round, &refs).unwrap();
        for o in others {
            o.core.receive_batch(round, &refs).unwrap();
        }
    };
    // Every contact's hello delivered and acknowledged: every session is
    // established both ways.
    let mut warmup = 0;
    while others.iter().any(|o| o.core.status().undelivered > 0) {
        step();
        warmup += 1;
        assert!(
            warmup < 20 * (contacts as u64 + 10),
            "sessions did not settle"
        );
    }
    // Measured: this core alone, idle (cover cells), in the full shard, as
    // the link drives it: check and open the sealed body (the relay's
    // sealing is not measured), receive the batch, prepare the next cell.
    // Not included: reading the bytes off the socket and the Noise header.
    let mut cpu = Duration::ZERO;
    let wall0 = Instant::now();
    for _ in 0..rounds {
        round += 1;
        clock.fetch_add(round_ms, Ordering::Relaxed);
        let mut plain = Vec::with_capacity(shard * cell_size);
        plain.extend_from_slice(&vec![0u8; cell_size]);
        for c in &cover {
            plain.extend_from_slice(c);
        }
        let sealed = seal_batch(&mut rng, 1, round, 0, cell_size, plain).unwrap();
        let c0 = thread_cpu();
        let opened = open_batch(
            &sealed.key,
            &sealed.body_hash,
            1,
            round,
            sealed.cells,
            cell_size,
            &sealed.body,
        )
        .unwrap();
        let refs: Vec<&[u8]> = opened.cells().collect();
        me.core.receive_batch(round, &refs).unwrap();
        let _next = me.core.prepare_cell(round).unwrap();
        cpu += thread_cpu().saturating_sub(c0);
    }
    let wall = wall0.elapsed();
    let per_round = cpu / rounds as u32;
    let percent = per_round.as_secs_f64() / (round_ms as f64 / 1000.0) * 100.0;
    println!(
        "anonchatd: {contacts} contacts (sessions established), {shard}-client shard, {round_ms} ms rounds: \
         {:.0} µs CPU per round = {percent:.3} % of one core (open the body, receive, prepare; over {rounds} rounds \
         in {:.1} s; setup {:.0} s, {warmup} rounds to establish)",
        per_round.as_secs_f64() * 1e6,
        wall.as_secs_f64(),
        setup.as_secs_f64(),
    );
}
