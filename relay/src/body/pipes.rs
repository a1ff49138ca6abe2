//! The body's pages handed to each client's socket by `tee` and `splice`
//! instead of `sendfile`. `sendfile` looks every page of the memory file
//! up in the page cache again for every client (about a tenth of the
//! relay's CPU in a 200-client shard); here the pages are looked up once
//! per round, into a source pipe, and `tee` gives each client's write
//! references to the same pages.
//!
//! A client's write borrows an empty pipe from a bounded pool, `tee`s the
//! body into it and `splice`s it into the socket as far as the socket
//! takes it without waiting. A pipe is never held across a wait: what a
//! full socket did not take is dropped from the pipe (spliced into
//! `/dev/null`, which only lets go of the page references) and the rest of
//! the body goes by `sendfile`, which waits without a pipe. A pipe comes
//! back to the pool only empty; one that cannot be emptied is closed. When
//! the pool or the byte budget is spent, a pipe cannot be made or sized,
//! or the kernel refuses `tee`/`splice`, the body goes by `sendfile`.

use std::io;
use std::os::fd::{AsFd as _, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use nix::fcntl::{FcntlArg, OFlag, SpliceFFlags, fcntl, splice, tee};
use nix::unistd::pipe2;
use tokio::io::Interest;
use tokio::net::TcpStream;

/// Pipes lent to writes or idle, at most: two descriptors each.
pub(crate) const MAX_PIPES: usize = 256;
/// Source pipes (one per live body file that has one) at most: two
/// descriptors each, on top of the file's one.
pub(crate) const MAX_SOURCES: usize = 256;
/// Idle pipes kept for the next writes, at most.
pub(crate) const MAX_IDLE_PIPES: usize = 64;
/// The longest body sent this way: Linux's default `pipe-max-size`.
pub(crate) const MAX_PIPE_BODY: usize = 1 << 20;
/// Bytes of pipe capacity, over all pipes, at most: half of Linux's
/// default `pipe-user-pages-soft` (16,384 pages). Past that limit the
/// kernel makes a user's new pipes 2 pages long and refuses to grow them;
/// within this budget the relay never gets there by itself.
pub(crate) const MAX_PIPE_BYTES: usize = 32 << 20;
/// The page size the budget estimates a pipe's rounding with (the kernel
/// rounds a pipe to a power of two pages; the real size is accounted once
/// known).
const PAGE: usize = 4096;

/// Pipe capacity in use, against its most.
pub(crate) struct Budget {
    used: AtomicUsize,
    max: usize,
}

impl Budget {
    fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            used: AtomicUsize::new(0),
            max,
        })
    }

    /// Takes `n` bytes if they fit.
    fn take(&self, n: usize) -> bool {
        let before = self.used.fetch_add(n, Ordering::Relaxed);
        if before.saturating_add(n) > self.max {
            self.used.fetch_sub(n, Ordering::Relaxed);
            return false;
        }
        true
    }

    fn give(&self, n: usize) {
        self.used.fetch_sub(n, Ordering::Relaxed);
    }

    /// Accounts `to` bytes where `from` were, in one step.
    fn adjust(&self, from: usize, to: usize) {
        if to >= from {
            self.used.fetch_add(to - from, Ordering::Relaxed);
        } else {
            self.used.fetch_sub(from - to, Ordering::Relaxed);
        }
    }
}

/// A pipe and the bytes it can hold, counted against its [`Budget`]
/// while it exists.
pub(crate) struct Pipe {
    rd: OwnedFd,
    wr: OwnedFd,
    cap: usize,
    budget: Arc<Budget>,
}

impl Drop for Pipe {
    fn drop(&mut self) {
        self.budget.give(self.cap);
    }
}

impl Pipe {
    /// A new pipe that holds at least `len` bytes of a page-aligned
    /// source, or `None`: no descriptor, or no room in the budget or in
    /// the kernel's limits (a passing state, not a refusal).
    fn new(len: usize, budget: &Arc<Budget>) -> Option<Self> {
        let (rd, wr) = pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK).ok()?;
        let cap = usize::try_from(fcntl(&wr, FcntlArg::F_GETPIPE_SZ).ok()?).ok()?;
        if !budget.take(cap) {
            return None;
        }
        // Counted from here: dropping the pipe gives it back.
        let mut pipe = Self {
            rd,
            wr,
            cap,
            budget: Arc::clone(budget),
        };
        pipe.reserve(len).then_some(pipe)
    }

    /// Grows the pipe to hold `len` bytes, within the budget. A pipe has
    /// one slot per page, so a body read from offset 0 of a file needs
    /// `len` bytes of capacity, rounded up to pages. False if it cannot.
    fn reserve(&mut self, len: usize) -> bool {
        if self.cap >= len {
            return true;
        }
        let Ok(want) = i32::try_from(len) else {
            return false;
        };
        let estimate = len.div_ceil(PAGE).next_power_of_two() * PAGE;
        let extra = estimate.saturating_sub(self.cap);
        if !self.budget.take(extra) {
            return false;
        }
        let got = fcntl(&self.wr, FcntlArg::F_SETPIPE_SZ(want))
            .ok()
            .and_then(|n| usize::try_from(n).ok());
        let Some(got) = got else {
            self.budget.give(extra);
            return false;
        };
        // The real size, accounted in place of the estimate.
        self.budget.adjust(self.cap + extra, got);
        self.cap = got;
        self.cap >= len
    }

    /// The body's pages from `file`, once: the source that clients' pipes
    /// are `tee`d from. `Ok(None)` if no pipe can hold it now; an error if
    /// the kernel refuses the `splice`.
    fn filled_from(
        file: &std::fs::File,
        len: usize,
        budget: &Arc<Budget>,
    ) -> io::Result<Option<Self>> {
        let Some(pipe) = Self::new(len, budget) else {
            return Ok(None);
        };
        let mut off: i64 = 0;
        let done = |off: i64| usize::try_from(off).unwrap_or(usize::MAX);
        while done(off) < len {
            let left = len - done(off);
            let n = splice(
                file.as_fd(),
                Some(&mut off),
                pipe.wr.as_fd(),
                None,
                left,
                SpliceFFlags::SPLICE_F_NONBLOCK,
            )?;
            if n == 0 {
                return Ok(None);
            }
        }
        Ok(Some(pipe))
    }
}

/// A body's pages in a pipe, counted against [`MAX_SOURCES`] while it
/// exists.
pub(crate) struct Source {
    pipe: Pipe,
    live: Arc<AtomicUsize>,
}

impl Drop for Source {
    fn drop(&mut self) {
        self.live.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The pool of empty pipes, and the count of sources, both bounded.
pub(crate) struct Pipes {
    idle: Mutex<Vec<Pipe>>,
    count: AtomicUsize,
    sources: Arc<AtomicUsize>,
    /// Capacity of every pipe in existence, in bytes.
    budget: Arc<Budget>,
    /// Where a full socket's share of a pipe goes, to empty the pipe
    /// without waiting (`None`: the pipe is closed instead).
    null: Option<std::fs::File>,
    refused: AtomicBool,
    /// Tests: shrink each lent pipe to this many bytes (0: leave it), so
    /// that `tee` comes up short.
    #[cfg(test)]
    shrink_lent_to: AtomicUsize,
    /// Tests: body bytes that left by `splice` from a lent pipe.
    #[cfg(test)]
    spliced: AtomicUsize,
}

/// A pipe lent to one write; back to the pool on drop only if emptied.
pub(crate) struct Lent<'a> {
    pipes: &'a Pipes,
    pipe: Option<Pipe>,
    empty: bool,
}

impl Drop for Lent<'_> {
    fn drop(&mut self) {
        let Some(pipe) = self.pipe.take() else { return };
        if self.empty {
            let mut idle = self.pipes.idle();
            if idle.len() < MAX_IDLE_PIPES {
                idle.push(pipe);
                return;
            }
        }
        drop(pipe);
        self.pipes.count.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Default for Pipes {
    fn default() -> Self {
        Self::with_budget(MAX_PIPE_BYTES)
    }
}

impl Pipes {
    /// A pool whose pipes hold at most `max` bytes all together.
    pub(crate) fn with_budget(max: usize) -> Self {
        Self {
            idle: Mutex::default(),
            count: AtomicUsize::new(0),
            sources: Arc::default(),
            budget: Budget::new(max),
            null: std::fs::OpenOptions::new()
                .write(true)
                .open("/dev/null")
                .ok(),
            refused: AtomicBool::new(false),
            #[cfg(test)]
            shrink_lent_to: AtomicUsize::new(0),
            #[cfg(test)]
            spliced: AtomicUsize::new(0),
        }
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<Pipe>> {
        self.idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// An empty pipe that holds `len` bytes, or `None` (then `sendfile`).
    pub(crate) fn lend(&self, len: usize) -> Option<Lent<'_>> {
        if len > MAX_PIPE_BODY || self.refused.load(Ordering::Relaxed) {
            return None;
        }
        let idle = self.idle().pop();
        let mut pipe = if let Some(p) = idle {
            p
        } else {
            if self.count.fetch_add(1, Ordering::Relaxed) >= MAX_PIPES {
                self.count.fetch_sub(1, Ordering::Relaxed);
                return None;
            }
            // Counted from here: a pipe that cannot be made gives it back.
            let Some(p) = Pipe::new(len, &self.budget) else {
                self.count.fetch_sub(1, Ordering::Relaxed);
                return None;
            };
            p
        };
        let sized = pipe.reserve(len);
        let mut lent = Lent {
            pipes: self,
            pipe: Some(pipe),
            empty: true,
        };
        if !sized {
            // Closed on drop, not kept: it cannot hold this body.
            lent.empty = false;
            return None;
        }
        #[cfg(test)]
        if let Some(p) = lent.pipe.as_ref()
            && let Ok(to) = i32::try_from(self.shrink_lent_to.load(Ordering::Relaxed))
            && to > 0
        {
            // Its accounted size stays what it was.
            let _ = fcntl(&p.wr, FcntlArg::F_SETPIPE_SZ(to));
        }
        Some(lent)
    }

    /// The source pipe for a new body file, or `None`: pipes refused, the
    /// body too long, or [`MAX_SOURCES`] already live.
    pub(crate) fn source(&self, file: &std::fs::File, len: usize) -> Option<Source> {
        if len > MAX_PIPE_BODY || self.refused.load(Ordering::Relaxed) {
            return None;
        }
        if self.sources.fetch_add(1, Ordering::Relaxed) >= MAX_SOURCES {
            self.sources.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        // Counted from here: dropping the source gives the slot back.
        match Pipe::filled_from(file, len, &self.budget) {
            Ok(Some(pipe)) => Some(Source {
                pipe,
                live: Arc::clone(&self.sources),
            }),
            Ok(None) => {
                self.sources.fetch_sub(1, Ordering::Relaxed);
                None
            }
            Err(e) => {
                self.sources.fetch_sub(1, Ordering::Relaxed);
                if super::is_refusal(&e) {
                    self.refuse(&e);
                }
                None
            }
        }
    }

    /// Stops using pipes (logged once).
    fn refuse(&self, why: &io::Error) {
        if !self.refused.swap(true, Ordering::Relaxed) {
            tracing::warn!(error = %why, "tee/splice refused: batch bodies go by sendfile from now on");
        }
    }

    /// Pipes lent or idle now, and of those idle.
    #[cfg(test)]
    pub(crate) fn counts(&self) -> (usize, usize) {
        let idle = self.idle().len();
        (self.count.load(Ordering::Relaxed), idle)
    }

    /// Bytes of pipe capacity accounted now.
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> usize {
        self.budget.used.load(Ordering::Relaxed)
    }

    /// Makes every later lent pipe hold `bytes` only.
    #[cfg(test)]
    pub(crate) fn shrink_lent_to(&self, bytes: usize) {
        self.shrink_lent_to.store(bytes, Ordering::Relaxed);
    }

    /// Body bytes that left by `splice` from a lent pipe so far.
    #[cfg(test)]
    pub(crate) fn spliced(&self) -> usize {
        self.spliced.load(Ordering::Relaxed)
    }

    /// Source pipes live now.
    #[cfg(test)]
    pub(crate) fn sources(&self) -> usize {
        self.sources.load(Ordering::Relaxed)
    }
}

/// Sends up to `len` bytes of `source` to `stream` through `lent`: `tee`
/// then `splice`, as far as the socket takes it now. Returns how many
/// bytes went: fewer than `len` when the socket is full, `tee` gave fewer,
/// or the kernel refused (the caller sends the rest by `sendfile`, which
/// waits without holding a pipe).
///
/// The header does not go through the pipe: written into a pipe it takes
/// a freshly allocated page per client and round, which measured slower
/// than `send` with `MSG_MORE` (269 against 255 ns per delivery).
pub(crate) fn send(
    stream: &TcpStream,
    source: &Source,
    mut lent: Lent<'_>,
    len: usize,
) -> io::Result<usize> {
    let Some(pipe) = lent.pipe.as_ref() else {
        return Ok(0);
    };
    let teed = match tee(
        source.pipe.rd.as_fd(),
        pipe.wr.as_fd(),
        len,
        SpliceFFlags::SPLICE_F_NONBLOCK,
    ) {
        Ok(n) => n,
        Err(e) => {
            let e = io::Error::from(e);
            if super::is_refusal(&e) {
                lent.pipes.refuse(&e);
            }
            return Ok(0);
        }
    };
    // Not known to be empty again until it is drained.
    lent.empty = teed == 0;
    let mut sent = 0;
    while sent < teed {
        let spliced = stream.try_io(Interest::WRITABLE, || {
            splice(
                pipe.rd.as_fd(),
                None,
                stream,
                None,
                teed - sent,
                SpliceFFlags::SPLICE_F_NONBLOCK,
            )
            .map_err(io::Error::from)
        });
        match spliced {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                sent += n;
                #[cfg(test)]
                lent.pipes.spliced.fetch_add(n, Ordering::Relaxed);
            }
            // The socket is full: the rest goes by `sendfile`, without
            // this pipe.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                lent.empty = lent.pipes.discard(pipe, teed - sent);
                return Ok(sent);
            }
            // Refused: the rest goes by `sendfile`, and pipes are not used
            // again. The pipe, not empty, is closed.
            Err(e) if super::is_refusal(&e) => {
                lent.pipes.refuse(&e);
                return Ok(sent);
            }
            Err(e) => return Err(e),
        }
    }
    lent.empty = true;
    Ok(sent)
}

impl Pipes {
    /// Empties `pipe` of its `left` bytes into `/dev/null` (page
    /// references let go, nothing copied). True if it is empty now.
    fn discard(&self, pipe: &Pipe, mut left: usize) -> bool {
        let Some(null) = &self.null else {
            return false;
        };
        while left > 0 {
            match splice(
                pipe.rd.as_fd(),
                None,
                null.as_fd(),
                None,
                left,
                SpliceFFlags::SPLICE_F_NONBLOCK,
            ) {
                Ok(n) if n > 0 => left = left.saturating_sub(n),
                _ => return false,
            }
        }
        true
    }
}

/// Tests that hold many pipes take turns: the kernel counts pipe pages
/// per user, across every test running at once, and past its soft limit
/// makes new pipes too small to grow.
#[cfg(test)]
pub(crate) static PIPE_HEAVY: Mutex<()> = Mutex::new(());

#[cfg(test)]
mod tests {
    use super::*;

    /// At most [`MAX_PIPES`] are lent at once, and at most
    /// [`MAX_IDLE_PIPES`] kept when they come back (breaks if either bound
    /// is dropped, or a returned pipe is not counted out).
    #[test]
    fn pipes_are_bounded_lent_and_idle() {
        let _heavy = PIPE_HEAVY
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let _ = rlimit::increase_nofile_limit(8192);
        let pipes = Pipes::default();
        let lent: Vec<_> = (0..MAX_PIPES)
            .map(|_| pipes.lend(64 * 1024).expect("within the limit"))
            .collect();
        assert!(pipes.lend(64 * 1024).is_none());
        assert_eq!(pipes.counts(), (MAX_PIPES, 0));
        drop(lent);
        assert_eq!(pipes.counts(), (MAX_IDLE_PIPES, MAX_IDLE_PIPES));
        // An idle pipe is lent again, grown to the body it must hold.
        let big = pipes.lend(MAX_PIPE_BODY).expect("an idle pipe, grown");
        assert!(big.pipe.as_ref().unwrap().cap >= MAX_PIPE_BODY);
        assert_eq!(pipes.counts(), (MAX_IDLE_PIPES, MAX_IDLE_PIPES - 1));
        // Past the longest body: refused before any pipe is touched.
        assert!(pipes.lend(MAX_PIPE_BODY + 1).is_none());
        assert_eq!(pipes.counts(), (MAX_IDLE_PIPES, MAX_IDLE_PIPES - 1));
    }

    /// Pipes grown for large bodies stay within their byte budget all
    /// together (below the kernel's per-user limit, past which it would
    /// refuse to grow any pipe): exactly as many 1 MiB pipes as the budget
    /// holds, and every byte given back when they close. The budget has
    /// room for one more new pipe but not for growing it, so the growth's
    /// estimate is what refuses the fifth. Breaks if the budget is not
    /// checked, checked with `>=` (one pipe fewer), the growth is not
    /// estimated (a fifth pipe), or a pipe's size is not given back on
    /// drop.
    #[test]
    fn pipes_stay_within_their_byte_budget() {
        let _heavy = PIPE_HEAVY
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let fresh = Pipe::new(0, &Budget::new(usize::MAX)).map_or(64 * 1024, |p| p.cap);
        let pipes = Pipes::with_budget(4 * MAX_PIPE_BODY + fresh);
        let mut held = Vec::new();
        while let Some(lent) = pipes.lend(MAX_PIPE_BODY) {
            held.push(lent);
            assert!(held.len() <= MAX_PIPES);
        }
        assert_eq!(held.len(), 4, "1 MiB pipes in a 4 MiB budget");
        assert_eq!(pipes.bytes(), 4 * MAX_PIPE_BODY);

        // The real size replaces the estimate, up or down, in one step.
        let budget = Budget::new(100);
        assert!(budget.take(40));
        budget.adjust(40, 64);
        assert_eq!(budget.used.load(Ordering::Relaxed), 64);
        budget.adjust(64, 16);
        assert_eq!(budget.used.load(Ordering::Relaxed), 16);
        assert!(!budget.take(85));
        assert!(budget.take(84));
        drop(held);
        let (_, idle) = pipes.counts();
        assert_eq!(pipes.bytes(), idle * MAX_PIPE_BODY);
        pipes.idle().clear();
        assert_eq!(pipes.bytes(), 0);
    }
}
