//! The body's pages handed to each client's socket by `tee` and `splice`
//! instead of `sendfile`. `sendfile` looks every page of the memory file
//! up in the page cache again for every client (about a tenth of the
//! relay's CPU in a 200-client shard); here the pages are looked up once
//! per round, into a source pipe, and `tee` gives each client's write
//! references to the same pages.
//!
//! A client's write borrows an empty pipe from a bounded pool, `tee`s the
//! body into it and `splice`s it into the socket. A pipe comes back to the
//! pool only empty; a write that fails part-way closes its pipe. When the
//! pool is spent, a pipe cannot be made or sized, or the kernel refuses
//! `tee`/`splice`, the body goes by `sendfile` as before.

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
/// The longest body sent this way: Linux's default `pipe-max-size`, which
/// an unprivileged process may size a pipe to.
pub(crate) const MAX_PIPE_BODY: usize = 1 << 20;

/// A pipe and the bytes it can hold.
pub(crate) struct Pipe {
    rd: OwnedFd,
    wr: OwnedFd,
    cap: usize,
}

impl Pipe {
    /// A new pipe that holds at least `len` bytes of a page-aligned source.
    fn new(len: usize) -> io::Result<Self> {
        let (rd, wr) = pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)?;
        let cap = usize::try_from(fcntl(&wr, FcntlArg::F_GETPIPE_SZ)?).unwrap_or(0);
        let mut pipe = Self { rd, wr, cap };
        pipe.reserve(len)?;
        Ok(pipe)
    }

    /// Grows the pipe to hold `len` bytes. A pipe has one slot per page,
    /// so a body read from offset 0 of a file needs `len` bytes of
    /// capacity, rounded up to pages.
    fn reserve(&mut self, len: usize) -> io::Result<()> {
        if self.cap >= len {
            return Ok(());
        }
        let want = i32::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        let got = fcntl(&self.wr, FcntlArg::F_SETPIPE_SZ(want))?;
        self.cap = usize::try_from(got).unwrap_or(0);
        if self.cap < len {
            return Err(io::ErrorKind::InvalidInput.into());
        }
        Ok(())
    }

    /// The body's pages from `file`, once: the source that clients' pipes
    /// are `tee`d from. An error if the pipe cannot hold it all.
    fn filled_from(file: &std::fs::File, len: usize) -> io::Result<Self> {
        let pipe = Self::new(len)?;
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
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
        Ok(pipe)
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
#[derive(Default)]
pub(crate) struct Pipes {
    idle: Mutex<Vec<Pipe>>,
    count: AtomicUsize,
    sources: Arc<AtomicUsize>,
    refused: AtomicBool,
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

impl Pipes {
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
            let Ok(p) = Pipe::new(len) else {
                self.count.fetch_sub(1, Ordering::Relaxed);
                return None;
            };
            p
        };
        let sized = pipe.reserve(len).is_ok();
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
        match Pipe::filled_from(file, len) {
            Ok(pipe) => Some(Source {
                pipe,
                live: Arc::clone(&self.sources),
            }),
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

    /// Source pipes live now.
    #[cfg(test)]
    pub(crate) fn sources(&self) -> usize {
        self.sources.load(Ordering::Relaxed)
    }
}

/// Sends up to `len` bytes of `source` to `stream` through `lent`: `tee`
/// then `splice`. Returns how many bytes went: fewer than `len` only if
/// `tee` gave fewer or was refused (the caller sends the rest).
///
/// The header does not go through the pipe: written into a pipe it takes
/// a freshly allocated page per client and round, which measured slower
/// than `send` with `MSG_MORE` (269 against 255 ns per delivery).
pub(crate) async fn send(
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
        let n = stream
            .async_io(Interest::WRITABLE, || {
                splice(
                    pipe.rd.as_fd(),
                    None,
                    stream,
                    None,
                    teed - sent,
                    SpliceFFlags::SPLICE_F_NONBLOCK,
                )
                .map_err(io::Error::from)
            })
            .await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        sent += n;
    }
    lent.empty = true;
    Ok(sent)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// At most [`MAX_PIPES`] are lent at once, and at most
    /// [`MAX_IDLE_PIPES`] kept when they come back (breaks if either bound
    /// is dropped, or a returned pipe is not counted out).
    #[test]
    fn pipes_are_bounded_lent_and_idle() {
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
        assert!(pipes.lend(MAX_PIPE_BODY + 1).is_none());
    }

    /// A write that does not finish (its client does not read, and the
    /// connection is dropped while it waits, as a kicked slow reader's
    /// is) closes its pipe: a pipe still holding the rest of one body
    /// must never be lent for another, which would send that rest to
    /// the next client. Breaks if the pipe is marked empty before the
    /// body has left, or pooled whatever its state.
    #[tokio::test]
    async fn a_write_cut_short_closes_its_pipe_instead_of_pooling_it() {
        use std::io::Write as _;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let client = socket.connect(addr).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        nix::sys::socket::setsockopt(&server, nix::sys::socket::sockopt::SndBuf, &4096).unwrap();

        let len = 512 * 1024;
        let mut file = nix::sys::memfd::memfd_create(c"t", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)
            .map(std::fs::File::from)
            .unwrap();
        file.write_all(&vec![5u8; len]).unwrap();
        let pipes = Pipes::default();
        let source = pipes.source(&file, len).expect("a source pipe");
        let lent = pipes.lend(len).unwrap();
        let cut = tokio::time::timeout(
            std::time::Duration::from_millis(300),
            send(&server, &source, lent, len),
        )
        .await;
        assert!(
            cut.is_err(),
            "the client reads nothing: the write cannot finish"
        );
        assert_eq!(pipes.counts(), (0, 0), "the half-sent pipe is closed");
        drop(client);
    }
}
