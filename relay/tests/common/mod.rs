//! Helpers for the relay's integration tests: the real `anonchat-relay`
//! binary on 127.0.0.1 with a random port, and well-behaved clients built
//! on the protocol crate.

#![allow(dead_code, unreachable_pub)]
// Test support: a failed step should stop the test loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead as _, BufReader, Read as _};
use std::process::{Child, Command, Stdio};

use std::time::Duration;

use anonchat_protocol::wire::RelayAddress;
use anonchat_relay::client::{self, Incoming};
use rand::Rng as _;
use tokio::net::TcpStream;

pub struct RelayProc {
    child: Child,
    pub addr: RelayAddress,
    _dir: tempfile::TempDir,
}

impl RelayProc {
    /// Starts the relay on 127.0.0.1 with 100 ms rounds unless `args` say
    /// otherwise.
    pub fn start(args: &[&str]) -> Self {
        Self::start_on("127.0.0.1:0", args)
    }

    /// Starts the relay listening on `listen` (e.g. `[::1]:0`), with 100 ms
    /// rounds unless `args` say otherwise.
    pub fn start_on(listen: &str, args: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("relay.key");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_anonchat-relay"));
        cmd.args(["--listen", listen, "--key-file"])
            .arg(&key)
            .env("RUST_LOG", "info");
        if !args.contains(&"--round-ms") {
            cmd.args(["--round-ms", "100"]);
        }
        let mut child = cmd
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line.trim().parse().expect("relay prints its address");
        Self {
            child,
            addr,
            _dir: dir,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, wait, and return what the relay wrote on stderr.
    pub fn stop(mut self) -> String {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).unwrap());
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        let status = self.child.wait().unwrap();
        assert!(status.success(), "relay exited with {status}");
        let mut err = String::new();
        self.child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        err
    }
}

impl Drop for RelayProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A counter from the relay's final stats line, e.g. `slow_dropped`.
pub fn stat(stderr: &str, name: &str) -> u64 {
    let line = stderr
        .lines()
        .rev()
        .find(|l| l.contains("relay stopped"))
        .expect("final stats line");
    let key = format!("{name}=");
    let start = line.find(&key).expect("counter present") + key.len();
    line[start..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// What a well-behaved client saw.
#[derive(Debug, Default)]
pub struct Seen {
    /// Round numbers received, in order.
    pub rounds: Vec<u64>,
    /// For each received round, the cells in it.
    pub batches: Vec<Vec<Vec<u8>>>,
    /// Rounds whose batch held our own cell exactly once (the join
    /// round left out: see [`Seen::expected_own`]).
    pub own_once: Vec<u64>,
    /// Rounds we sent a cell for.
    pub sent: Vec<u64>,
    /// The round open when we joined (the welcome's).
    pub join_round: u64,
}

impl Seen {
    /// True if `rounds` has no gap.
    pub fn contiguous(&self) -> bool {
        self.rounds.windows(2).all(|w| w[1] == w[0] + 1)
    }

    /// The received rounds we had sent a cell for: each should hold our
    /// cell exactly once, i.e. equal `own_once`. The join round is left
    /// out: the welcome names the round open at that moment, which may
    /// close before the first cell arrives (a loaded machine, or a join
    /// late in the round), and a late cell is dropped by design. Every
    /// later cell answers a batch and has a whole round to arrive.
    pub fn expected_own(&self) -> Vec<u64> {
        self.rounds
            .iter()
            .copied()
            .filter(|r| self.sent.contains(r) && *r != self.join_round)
            .collect()
    }
}

pub fn random_cell(size: usize) -> Vec<u8> {
    let mut c = vec![0u8; size];
    rand::rng().fill_bytes(&mut c);
    c
}

/// Joins `shard`, answers each batch with one cell (from `make_cell`), for
/// `rounds` batches.
pub async fn good_client(
    addr: RelayAddress,
    shard: u32,
    rounds: usize,
    make_cell: impl Fn(u64) -> Vec<u8>,
) -> Seen {
    let c = client::connect(&addr, shard, None).await.unwrap();
    run_client(c, rounds, make_cell).await
}

pub async fn run_client<S>(
    c: client::Connected<S>,
    rounds: usize,
    make_cell: impl Fn(u64) -> Vec<u8>,
) -> Seen
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite,
{
    let client::Connected {
        welcome,
        mut sender,
        mut receiver,
        ..
    } = c;
    let mut seen = Seen {
        join_round: welcome.open_round,
        ..Seen::default()
    };
    let mut mine = std::collections::HashMap::new();
    let first = make_cell(welcome.open_round);
    sender
        .send_cell(welcome.open_round, first.clone())
        .await
        .unwrap();
    mine.insert(welcome.open_round, first);
    seen.sent.push(welcome.open_round);
    while seen.rounds.len() < rounds {
        let b = match tokio::time::timeout(Duration::from_secs(10), receiver.next())
            .await
            .expect("a batch within 10 s")
            .unwrap()
        {
            Incoming::Batch(b) => b,
            Incoming::Closed { code, reason } => panic!("closed: {code} {reason}"),
        };
        let cells: Vec<Vec<u8>> = b.batch.cells().map(<[u8]>::to_vec).collect();
        if let Some(own) = mine.get(&b.round) {
            let copies = cells.iter().filter(|c| *c == own).count();
            assert!(copies <= 1, "our cell doubled in round {}", b.round);
            if copies == 1 && b.round != welcome.open_round {
                seen.own_once.push(b.round);
            }
        }
        seen.rounds.push(b.round);
        seen.batches.push(cells);
        let next = b.round + 1;
        let cell = make_cell(next);
        sender.send_cell(next, cell.clone()).await.unwrap();
        mine.insert(next, cell);
        seen.sent.push(next);
    }
    seen
}

/// A raw TCP connection to the relay, no handshake.
pub async fn raw(addr: &RelayAddress) -> TcpStream {
    TcpStream::connect(addr.socket_addr_string()).await.unwrap()
}

/// Waits until the peer closes `s` (reading and discarding), or panics.
pub async fn closed_within(s: &mut TcpStream, limit: Duration) {
    use tokio::io::AsyncReadExt as _;
    let mut buf = [0u8; 4096];
    tokio::time::timeout(limit, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .expect("relay closed the connection in time");
}
