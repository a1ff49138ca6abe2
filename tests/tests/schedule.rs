//! The send schedule against a hostile relay (issue 14): real daemons, a
//! relay that announces the shortest round it can, closes rounds on its
//! own clock, lies, withholds and floods, and measures each client's
//! batch→cell delay. Nothing a client does (send, receive, idle) may move
//! its cells in time, and no lie may mute, hang or desynchronise anyone.
//!
//! Timing tests are statistical: each compares a client with itself
//! (idle rounds against rounds it sends or receives in, interleaved in
//! blocks so that machine load drifts alike in both). The daemons save
//! their state as on a very slow disk (30 ms a save, the daemon's
//! fault-injection flag), so that a save anywhere on the path from a
//! batch to its answer stands far out of the machine's sub-millisecond
//! noise. The tests count the rounds slower than the idle median plus
//! half a save (a two-proportion test at the 0.1 % level, and at least
//! ten points more while busy), compare the distributions with a
//! two-sample Kolmogorov–Smirnov test at the 1 % level at a resolution of
//! 1 ms, and check that the three clients' medians shift alike (within
//! 0.5 ms, or within 0.5 ms of the idle bystander's in the same rounds).
//! The same KS test on the raw sub-millisecond delays, which these tests
//! used before, failed on the machine's own load drift in about one CI
//! run of five (it is printed, not asserted). They take the one lock
//! below so that they never run at the same time as each other.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::many_single_char_names,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_precision_loss
)]

use std::sync::Mutex;
use std::time::{Duration, Instant};

use anonchat_e2e::hostile::{ConnLog, Hostile};
use anonchat_e2e::{World, eventually};

/// One timing test at a time.
static SERIAL: Mutex<()> = Mutex::new(());

const CELL: usize = 512;
/// The relay announces 10 ms rounds (the shortest a client accepts) but
/// closes one every 150 ms: a schedule that took its delay from the
/// announced length would leave the client no time at all.
const ANNOUNCED_MS: u32 = 10;
const PERIOD: Duration = Duration::from_millis(150);

/// Every daemon here saves its state as on a very slow disk (the
/// daemon's fault-injection flag): a save anywhere between a batch and
/// its answer would add this much to the delay of every round in which a
/// client sends or receives, far above the machine's own noise. The
/// prepared schedule keeps saves off that path; a round is long enough
/// for the two saves it may need.
const SLOW_DISK_MS: u64 = 30;

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Starts `users`' daemons one after the other on `relay`, so that
/// connection `i` is user `i`.
fn join_in_order(w: &World, relay: &Hostile, users: &[&str]) -> Vec<anonchat_e2e::Proc> {
    let mut procs = Vec::new();
    for (i, u) in users.iter().enumerate() {
        let mut cmd = w.daemon_command(u, 2);
        cmd.args(["--test-slow-disk-ms", &SLOW_DISK_MS.to_string()])
            .env("RUST_LOG", "warn")
            .stderr(std::process::Stdio::null());
        procs.push(w.start_daemon(u, cmd));
        w.init(u, &relay.address);
        eventually(30, "the daemon joined the hostile relay", || {
            relay.members() == i + 1
        });
    }
    procs
}

/// Alice and Bob on a hostile relay with honest 100 ms rounds, each the
/// other's contact, and `first` sent from Alice to Bob and received (the
/// session started).
fn talking_pair(first: &str) -> (World, Hostile, Vec<anonchat_e2e::Proc>) {
    let w = World::new();
    let relay = Hostile::start(CELL, 100, Duration::from_millis(100), 0);
    let daemons = join_in_order(&w, &relay, &["alice", "bob"]);
    w.introduce("alice", "bob");
    w.introduce("bob", "alice");
    w.json("alice", &["send", "bob", first]);
    eventually(60, "the first message", || {
        w.received("bob", "alice") == [first]
    });
    (w, relay, daemons)
}

/// The two-sample Kolmogorov–Smirnov statistic.
fn ks(a: &[f64], b: &[f64]) -> f64 {
    let mut a = a.to_vec();
    let mut b = b.to_vec();
    a.sort_by(f64::total_cmp);
    b.sort_by(f64::total_cmp);
    let (mut i, mut j, mut d) = (0, 0, 0f64);
    while i < a.len() && j < b.len() {
        let x = a[i].min(b[j]);
        while i < a.len() && a[i] <= x {
            i += 1;
        }
        while j < b.len() && b[j] <= x {
            j += 1;
        }
        d = d.max((i as f64 / a.len() as f64 - j as f64 / b.len() as f64).abs());
    }
    d
}

/// The statistic's critical value at the 1 % level.
fn ks_critical(n: usize, m: usize) -> f64 {
    let (n, m) = (n as f64, m as f64);
    1.628 * ((n + m) / (n * m)).sqrt()
}

fn pct(v: &[f64], p: f64) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p) as usize]
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// For the talker `who`, its delays (ms) minus the idle control's (Carol's)
/// in the same round, in rounds inside and outside the active windows.
///
/// The machine's own load moves every process's delays together: in the
/// talking blocks the daemons and the test do more work, and the idle
/// client's delays shift just like the talkers' (measured: all three about
/// 0.08 ms faster in one run, slower in another). So each talker is
/// compared with itself *relative to the bystander in the same round*: a
/// talker that the schedule betrayed would stand out from the bystander in
/// its busy rounds, whatever the machine does.
fn relative(
    talker: &ConnLog,
    control: &ConnLog,
    active: &[(Instant, Instant)],
) -> (Vec<f64>, Vec<f64>) {
    use std::collections::HashMap;
    let ms = |l: &ConnLog| -> HashMap<u64, f64> {
        l.delays()
            .into_iter()
            .map(|(r, d)| (r, d.as_secs_f64() * 1000.0))
            .collect()
    };
    let (t, c) = (ms(talker), ms(control));
    let (mut busy, mut idle) = (Vec::new(), Vec::new());
    for &(round, at) in &talker.batches {
        let (Some(dt), Some(dc)) = (t.get(&round), c.get(&round)) else {
            continue;
        };
        if in_windows(at, active) {
            busy.push(dt - dc);
        } else {
            idle.push(dt - dc);
        }
    }
    (busy, idle)
}

/// Whether `at` falls in one of the active windows.
fn in_windows(at: Instant, active: &[(Instant, Instant)]) -> bool {
    active.iter().any(|&(s, e)| at >= s && at < e)
}

/// The raw delays (ms) of one connection, busy and idle.
fn raw(log: &ConnLog, active: &[(Instant, Instant)]) -> (Vec<f64>, Vec<f64>) {
    let written: std::collections::HashMap<u64, Instant> = log.batches.iter().copied().collect();
    let (mut busy, mut idle) = (Vec::new(), Vec::new());
    for (round, d) in log.delays() {
        let at = written[&round];
        let ms = d.as_secs_f64() * 1000.0;
        if in_windows(at, active) {
            busy.push(ms);
        } else {
            idle.push(ms);
        }
    }
    (busy, idle)
}

/// Alice and Bob talk in every other block of 20 rounds (a 2 KiB message
/// each way per block), Carol idles throughout; then every client's
/// delays in the talking blocks are compared with its own in the quiet
/// ones.
#[allow(
    clippy::too_many_lines,
    reason = "one measurement, set up, run and judged in order"
)]
fn timing_is_independent_of_activity(mode: Mode) {
    let flood = mode == Mode::Flood;
    let _one = serial();
    let w = World::new();
    // A flood of 4,096-cell batches (2 MiB) to three daemons is heavy
    // work for two cores: longer rounds keep the machine's own noise
    // below what is measured.
    let (period, blocks) = if flood {
        (Duration::from_millis(250), 11)
    } else {
        (PERIOD, 12)
    };
    let relay = Hostile::start(CELL, ANNOUNCED_MS, period, 0);
    let _daemons = join_in_order(&w, &relay, &["alice", "bob", "carol"]);
    w.introduce("alice", "bob");
    w.introduce("bob", "alice");
    // The session starts before the measurement.
    w.json("alice", &["send", "bob", "hello"]);
    eventually(60, "the first message", || {
        w.received("bob", "alice").len() == 1
    });
    // Alice and Bob talk in a group of their own, or to each other.
    let (to_bob, to_alice) = if mode == Mode::Group {
        group_of_two(&w);
        ("#g", "#g")
    } else {
        ("bob", "alice")
    };
    let got = |user: &str, from: &str| -> usize {
        if mode == Mode::Group {
            w.history(user, "#g")
                .iter()
                .filter(|e| e["direction"] == "in")
                .count()
        } else {
            w.received(user, from).len() - usize::from(user == "bob")
        }
    };
    if flood {
        // 4,095 mutated copies of Alice's cell in every batch, for all.
        relay.behave(|b| {
            b.mutated_copies = Some((0, 4095));
            // One client at a time reads its 2 MiB: three reading at once
            // on two cores would measure their contention, not them.
            b.stagger = Some(Duration::from_millis(60));
        });
    }
    let block = period * 20;
    let mut active = Vec::new();
    let start = Instant::now();
    for i in 0..blocks {
        let from = Instant::now();
        if i % 2 == 1 {
            let a = format!("{i} {}", "a".repeat(2048));
            let b = format!("{i} {}", "b".repeat(2048));
            w.json("alice", &["send", to_bob, &a]);
            w.json("bob", &["send", to_alice, &b]);
        }
        std::thread::sleep(block.saturating_sub(from.elapsed()));
        if i % 2 == 1 {
            active.push((from, Instant::now()));
        }
    }
    assert!(start.elapsed() < Duration::from_secs(60));
    eventually(90, "every message of the run", || {
        got("bob", "alice") == blocks / 2 && got("alice", "bob") == blocks / 2
    });
    let logs = relay.logs();
    assert_eq!(
        logs.len(),
        3,
        "no client reconnected: {}",
        w.json("bob", &["status"])
    );
    let mut shifts = Vec::new();
    for log in &logs {
        let (busy, idle) = raw(log, &active);
        shifts.push(median(&busy) - median(&idle));
    }
    let spread = shifts.iter().copied().fold(f64::MIN, f64::max)
        - shifts.iter().copied().fold(f64::MAX, f64::min);
    for (i, (who, log)) in ["alice", "bob", "carol"].iter().zip(&logs).enumerate() {
        let (busy, idle) = raw(log, &active);
        assert!(
            busy.len() >= 90 && idle.len() >= 90,
            "{who}: {} / {}",
            busy.len(),
            idle.len()
        );
        let (busy_rel, idle_rel) = relative(log, &logs[2], &active);
        let slow = Slow::count(&busy, &idle);
        let paired = median(&busy_rel) - median(&idle_rel);
        let crit = ks_critical(busy.len(), idle.len());
        let coarse = ks(&millis(&busy), &millis(&idle));
        let coarse_rel = ks(&millis(&busy_rel), &millis(&idle_rel));
        eprintln!(
            "{who}: medians busy {:.3} idle {:.3} ms (paired shift {paired:.3}), p90 busy {:.3} idle {:.3}; KS {:.3}, relative {:.3}, at 1 ms {coarse:.3}, relative {coarse_rel:.3} (1 % critical {crit:.3}); {slow}",
            median(&busy),
            median(&idle),
            pct(&busy, 0.9),
            pct(&idle, 0.9),
            ks(&busy, &idle),
            ks(&busy_rel, &idle_rel),
        );
        assert!(
            !slow.betrays(),
            "{who}: more slow rounds while talking than while idle: {slow}"
        );
        // The distributions at the resolution of a save (a millisecond),
        // raw or relative to the bystander in the same round: below it,
        // the machine's own load drifts between blocks by tenths of a
        // millisecond, which a KS test of this size reaches in about one
        // run of five (the bystander's as often as the talkers'); with
        // 2 MiB bodies on a loaded machine the drift reaches the raw view
        // at 1 ms too (one CI run: Bob 0.231 raw, 0.210 relative, median
        // shift 0.08 ms relative), so either view may pass. A save on the
        // path shows in both (relative 0.42 under the old schedule).
        let crit_rel = ks_critical(busy_rel.len(), idle_rel.len());
        assert!(
            coarse < crit || coarse_rel < crit_rel,
            "{who}: delays while talking differ from its idle ones (KS at 1 ms resolution {coarse:.3} ≥ {crit:.3}, relative to the bystander {coarse_rel:.3} ≥ {crit_rel:.3})"
        );
        // The three medians shift alike, within 0.5 ms (or this client's
        // stays within 0.5 ms of the bystander's in the same rounds).
        assert!(
            spread <= 0.5 || paired.abs() <= 0.5,
            "{who}: its median shifts {:.3} ms, the bystander's {:.3} ms (paired: {paired:.3} ms)",
            shifts[i],
            shifts[2]
        );
    }
}

/// Alice creates `#g` with Bob, who accepts; both hold each other's keys.
fn group_of_two(w: &World) {
    w.json("alice", &["group", "create", "g", "--with", "bob"]);
    eventually(60, "bob invited", || {
        w.json("bob", &["group", "invitations"])
            .as_array()
            .is_some_and(|l| !l.is_empty())
    });
    w.json("bob", &["group", "accept", "#g"]);
    for u in ["alice", "bob"] {
        eventually(60, "keys exchanged", || {
            w.json(u, &["group", "members", "#g"])
                .as_array()
                .is_some_and(|l| l.len() == 2 && l.iter().all(|m| m["readable"] == true))
        });
    }
}

/// Delays (ms) floored to whole milliseconds.
fn millis(v: &[f64]) -> Vec<f64> {
    v.iter().map(|d| d.floor()).collect()
}

/// Rounds slower than the idle rounds' median plus half a slow save: the
/// rounds a save on the path would make, and only the machine's rare
/// stalls otherwise. (Not a high percentile of the idle rounds: a
/// betrayed talker's first idle rounds still carry the end of its
/// conversation, and its saves.)
#[derive(Debug, Clone, Copy)]
struct Slow {
    busy: usize,
    busy_n: usize,
    idle: usize,
    idle_n: usize,
}

impl Slow {
    fn count(busy: &[f64], idle: &[f64]) -> Self {
        let limit = median(idle) + SLOW_DISK_MS as f64 / 2.0;
        let over = |v: &[f64]| v.iter().filter(|&&d| d > limit).count();
        Self {
            busy: over(busy),
            busy_n: busy.len(),
            idle: over(idle),
            idle_n: idle.len(),
        }
    }

    /// Two-proportion z statistic, busy against idle.
    fn z(self) -> f64 {
        let (n1, n2) = (self.busy_n as f64, self.idle_n as f64);
        let (p1, p2) = (self.busy as f64 / n1, self.idle as f64 / n2);
        let p = (self.busy + self.idle) as f64 / (n1 + n2);
        let se = (p * (1.0 - p) * (1.0 / n1 + 1.0 / n2)).sqrt();
        if se == 0.0 { 0.0 } else { (p1 - p2) / se }
    }

    fn excess(self) -> f64 {
        self.busy as f64 / self.busy_n as f64 - self.idle as f64 / self.idle_n as f64
    }

    /// Significantly more slow rounds while busy (one-sided, 0.1 %
    /// level) and by at least ten points: a save on the path of one round
    /// in ten of the busy ones is caught; a cluster of machine stalls that
    /// happens to fall in the busy blocks is not mistaken for one.
    fn betrays(self) -> bool {
        self.z() > 3.09 && self.excess() > 0.10
    }
}

impl std::fmt::Display for Slow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "slow rounds busy {}/{} idle {}/{} (z {:.2})",
            self.busy,
            self.busy_n,
            self.idle,
            self.idle_n,
            self.z()
        )
    }
}

/// Checked against the old schedule (the cell prepared, and a real one's
/// state saved, after the batch arrives; patched in for the check): with
/// the slow disk, Alice's busy median is 32.3 ms against 0.37 ms idle,
/// 60 of her 120 busy rounds are slow against 12 of 147 idle (z 7.7).
/// Before the slow disk and the link's own thread this test was not
/// reliable in CI (in one run of five the talkers' tails were heavier
/// while talking: 0.2 ms on saves that RPC calls made on the runtime's
/// workers, and a KS test at 1 % that the machine's own load drift
/// reached in about as many runs as a real leak of that size).
#[test]
fn batch_to_cell_delay_does_not_show_who_talks() {
    timing_is_independent_of_activity(Mode::Talk);
}

/// What the timing tests make Alice and Bob do in their busy blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Talk to each other.
    Talk,
    /// Talk while the relay floods Bob's batches.
    Flood,
    /// Talk in a group of their own (issue 13): a member's batch-to-cell
    /// delay while sending to a group is distributed as while idle.
    Group,
}

/// The same with Alice and Bob talking in a group (group cells in the
/// schedule, GACKs, sender chains): the answer still leaves on the batch
/// header, prepared in advance, whatever the group does.
#[test]
fn batch_to_cell_delay_does_not_show_who_talks_in_a_group() {
    timing_is_independent_of_activity(Mode::Group);
}

/// The same while the relay puts 4,095 mutated copies of Alice's cell in
/// every batch (2 MiB bodies; Bob is the one they are for). The answer
/// leaves on the batch header, before the body is read and checked.
/// Checked against the old schedule: Alice's busy median 32.7 ms against
/// 1.4 ms idle.
#[test]
fn batch_to_cell_delay_does_not_show_who_a_flood_is_for() {
    timing_is_independent_of_activity(Mode::Flood);
}

/// WELCOME→first cell does not depend on whether the daemon has a message
/// waiting: 50 reconnects with one waiting (for a contact who never
/// answers), 50 with none. Checked against sending a cell at the WELCOME
/// (the old schedule: prepared, and saved if real, right then).
#[test]
fn the_first_cell_after_a_reconnect_does_not_show_a_queue() {
    let _one = serial();
    let w = World::new();
    let relay = Hostile::start(CELL, ANNOUNCED_MS, PERIOD, 0);
    let mut daemons = join_in_order(&w, &relay, &["alice", "zoe"]);
    w.introduce("zoe", "alice");
    // Zoe leaves for good: what Alice sends her is never acknowledged.
    drop(daemons.pop());
    let measure = |n: usize| -> Vec<f64> {
        let mut conns = Vec::new();
        for _ in 0..n {
            eventually(30, "alice joined", || relay.members() == 1);
            conns.push(relay.logs().len() - 1);
            // Let the connection see a few rounds, then cut it.
            std::thread::sleep(PERIOD * 3);
            relay.behave(|b| b.kick = true);
            eventually(10, "the kick", || relay.members() == 0);
        }
        let logs = relay.logs();
        conns
            .iter()
            .filter_map(|&c| logs[c].first_cell_after_welcome())
            .map(|d| d.as_secs_f64() * 1000.0)
            .collect()
    };
    eventually(30, "alice connected", || relay.members() == 1);
    w.json("alice", &["send", "zoe", "are you there?"]);
    let waiting = measure(50);
    w.json("alice", &["contact", "remove", "zoe"]);
    let none = measure(50);
    assert!(waiting.len() >= 45 && none.len() >= 45);
    let d = ks(&waiting, &none);
    let crit = ks_critical(waiting.len(), none.len());
    assert!(
        d < crit,
        "WELCOME→first cell differs with a queue (KS {d:.3} ≥ {crit:.3}; medians {:.3} / {:.3} ms)",
        median(&waiting),
        median(&none)
    );
}

/// A relay that withholds Alice's cells from Bob's batches for 100
/// rounds, then lies about two round numbers: every message arrives once
/// and in order, and the lies only cost a reconnect.
#[test]
fn withheld_cells_and_lied_rounds_lose_and_mute_nothing() {
    let _one = serial();
    let (w, relay, _daemons) = talking_pair("m0");
    relay.behave(|b| b.withhold = Some((0, 1)));
    for i in 1..=5 {
        w.json("alice", &["send", "bob", &format!("m{i}")]);
    }
    std::thread::sleep(Duration::from_millis(100) * 100);
    assert_eq!(w.received("bob", "alice"), ["m0"], "withheld");
    relay.behave(|b| b.withhold = None);
    eventually(90, "every withheld message", || {
        w.received("bob", "alice").len() == 6
    });
    assert_eq!(
        w.received("bob", "alice"),
        ["m0", "m1", "m2", "m3", "m4", "m5"]
    );
    for lie in [u64::MAX - 1, 1 << 62] {
        relay.behave(|b| b.lie_next = Some(lie));
        std::thread::sleep(Duration::from_millis(300));
    }
    w.json("alice", &["send", "bob", "after the lies"]);
    w.json("bob", &["send", "alice", "me too"]);
    eventually(90, "messages after the lies", || {
        w.received("bob", "alice").len() == 7 && w.received("alice", "bob") == ["me too"]
    });
    assert_eq!(w.received("bob", "alice").last().unwrap(), "after the lies");
    let status = w.json("alice", &["status"]);
    let _ = status;
}

/// A resume links connections, so it is asked for only after a short
/// outage: a cut within the relay's backlog window resumes; after
/// lock/unlock, or past the window, the HELLO carries no resume point.
#[test]
fn a_resume_point_is_sent_only_after_a_short_outage() {
    let _one = serial();
    let w = World::new();
    // 1000 announced rounds of 10 ms: a 10 s backlog window.
    let relay = Hostile::start(CELL, ANNOUNCED_MS, PERIOD, 1000);
    let daemons = join_in_order(&w, &relay, &["alice"]);
    std::thread::sleep(PERIOD * 4);
    relay.behave(|b| b.kick = true);
    eventually(30, "a reconnect", || {
        relay.logs().len() == 2 && relay.members() == 1
    });
    assert!(
        relay.logs()[1].resume_after.is_some(),
        "a short cut resumes"
    );
    std::thread::sleep(PERIOD * 4);
    let empty = w.path().join("empty-passphrase");
    std::fs::write(&empty, "").unwrap();
    w.json("alice", &["lock"]);
    w.json(
        "alice",
        &["unlock", "--passphrase-file", empty.to_str().unwrap()],
    );
    eventually(30, "a reconnect after unlock", || {
        relay.logs().len() == 3 && relay.members() == 1
    });
    assert_eq!(relay.logs()[2].resume_after, None, "not across lock/unlock");
    // A relay with a one-round backlog: any cut is past it.
    let short = Hostile::start(CELL, ANNOUNCED_MS, PERIOD, 1);
    drop(daemons);
    let w2 = World::new();
    let _d = join_in_order(&w2, &short, &["bob"]);
    std::thread::sleep(PERIOD * 4);
    short.behave(|b| b.kick = true);
    eventually(30, "a reconnect", || {
        short.logs().len() == 2 && short.members() == 1
    });
    assert_eq!(
        short.logs()[1].resume_after,
        None,
        "past the backlog window"
    );
}

/// A relay announcing a round length outside 10..=60 000 ms is refused
/// with the reason, whatever it does afterwards.
#[test]
fn a_relay_announcing_1_ms_rounds_is_refused() {
    let _one = serial();
    let w = World::new();
    let relay = Hostile::start(CELL, 1, PERIOD, 0);
    let _d = w.daemon("alice");
    w.init("alice", &relay.address);
    eventually(30, "the refusal", || {
        let s = w.json("alice", &["status"]);
        s.to_string().contains("outside 10..=60000 ms")
    });
    assert!(
        relay.logs().iter().all(|l| l.cells.is_empty()),
        "no cell sent"
    );
}

/// A WELCOME whose open round the wall clock refutes (`u64::MAX`: every
/// live batch would look like backlog, read and never answered, the
/// client silently mute while "connected") is refused with the reason,
/// and no cell goes out; once the relay stops lying, messages flow.
/// Checked against a link without the WELCOME check: the daemon then
/// stayed "connected" and sent nothing.
#[test]
fn a_welcome_with_a_lied_open_round_is_refused() {
    let _one = serial();
    let w = World::new();
    let relay = Hostile::start(CELL, ANNOUNCED_MS, PERIOD, 0);
    relay.behave(|b| b.welcome_open_round = Some(u64::MAX));
    let _d = join_in_order(&w, &relay, &["bob"]);
    let _a = w.daemon("alice");
    w.init("alice", &relay.address);
    eventually(30, "the refusal", || {
        let s = w.json("alice", &["status"]);
        s.to_string().contains("not near round")
    });
    let lied = relay.logs().len();
    assert!(
        relay.logs().iter().all(|l| l.cells.is_empty()),
        "no cell sent under the lie"
    );
    relay.behave(|b| b.welcome_open_round = None);
    w.introduce("alice", "bob");
    w.introduce("bob", "alice");
    w.json("alice", &["send", "bob", "after the lie"]);
    eventually(60, "a message after the lie", || {
        w.received("bob", "alice") == ["after the lie"]
    });
    assert!(relay.logs().len() > lied);
}

/// A relay that writes 20 batches back to back (rounds its clock allows:
/// the 30 s of skew a client tolerates would let it send 3,000 at 10 ms)
/// makes every client hang up at the burst, on the headers alone, the
/// one with work queued and the idle one alike; nothing is lost. Without
/// the pacing, each client read the burst at the speed of its own work
/// (a save for a client with a message) and the one that fell 64 batches
/// behind hung up: who hung up, and when, said who had work. Checked
/// against a pacer that admits every header: no client hung up.
#[test]
fn a_burst_of_batches_ends_every_connection_alike() {
    let _one = serial();
    let w = World::new();
    let relay = Hostile::start(CELL, ANNOUNCED_MS, PERIOD, 0);
    let _daemons = join_in_order(&w, &relay, &["alice", "bob", "carol"]);
    w.introduce("alice", "bob");
    w.introduce("bob", "alice");
    w.json("alice", &["send", "bob", "before"]);
    eventually(60, "the first message", || {
        w.received("bob", "alice") == ["before"]
    });
    w.json("alice", &["send", "bob", "during"]);
    relay.behave(|b| b.burst = Some(20));
    eventually(30, "every client hung up and came back", || {
        relay.logs().len() >= 6 && relay.members() == 3
    });
    let logs = relay.logs();
    assert_eq!(logs.len(), 6, "each of the three reconnected once");
    w.json("bob", &["send", "alice", "after"]);
    eventually(60, "messages after the burst", || {
        w.received("bob", "alice") == ["before", "during"]
            && w.received("alice", "bob") == ["after"]
    });
}

/// A relay that replays the previous round's cells in every batch, puts
/// every cell in twice and shuffles each batch, while both users send
/// messages of one and of several cells: every message arrives exactly
/// once and in order, both ways. This is the composition, through real
/// daemons and a real link, of guards that are each mutation-tested on
/// their own in `protocol` (tags per round, tags tried once, one-time
/// message keys, the inbox's duplicate check); they back each other up,
/// so removing one alone does not make this test fail (checked: without
/// the inbox's duplicate check every text still arrived once, the
/// ratchet refusing the copies first).
#[test]
fn replayed_duplicated_and_reordered_cells_deliver_each_message_once_in_order() {
    let _one = serial();
    let (w, relay, _daemons) = talking_pair("hello");
    relay.behave(|b| {
        b.replay = true;
        b.duplicate = true;
        b.reorder = true;
    });
    let mut from_alice = vec!["hello".to_owned()];
    let mut from_bob = Vec::new();
    for i in 0..4 {
        let a = format!("a{i} {}", "x".repeat(if i % 2 == 0 { 10 } else { 1500 }));
        let b = format!("b{i} {}", "y".repeat(if i % 2 == 0 { 1500 } else { 10 }));
        w.json("alice", &["send", "bob", &a]);
        w.json("bob", &["send", "alice", &b]);
        from_alice.push(a);
        from_bob.push(b);
    }
    eventually(90, "every message, both ways", || {
        w.received("bob", "alice").len() >= from_alice.len()
            && w.received("alice", "bob").len() >= from_bob.len()
    });
    // A little longer: a late duplicate would show now.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(w.received("bob", "alice"), from_alice);
    assert_eq!(w.received("alice", "bob"), from_bob);
}

/// A relay that stops sending rounds (mid-connection, after the WELCOME)
/// is given up after 30 s and two rounds, and the client redials, instead
/// of showing "connected" for good while nothing moves. Checked against a
/// link without the silence timeout: no second connection came.
#[test]
fn a_relay_that_goes_silent_is_given_up_and_redialled() {
    let _one = serial();
    let w = World::new();
    let relay = Hostile::start(CELL, ANNOUNCED_MS, PERIOD, 0);
    let _d = join_in_order(&w, &relay, &["alice"]);
    std::thread::sleep(PERIOD * 4);
    relay.behave(|b| b.silent = true);
    let silent_from = std::time::Instant::now();
    eventually(60, "a redial after the silence", || relay.logs().len() >= 2);
    let after = silent_from.elapsed();
    assert!(
        after >= Duration::from_secs(29),
        "gave up after {after:?}, before the 30 s the link allows"
    );
    relay.behave(|b| b.silent = false);
    eventually(30, "cells again", || {
        relay.logs().last().is_some_and(|l| !l.cells.is_empty())
    });
}
