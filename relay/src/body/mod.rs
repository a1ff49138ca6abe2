//! The sealed body of a live batch in a memory file (`memfd`), sent to
//! every client of the shard by reference: the kernel then hands the same
//! pages to each client's socket instead of copying the body from user
//! space once per client. One copy per round and shard (into the file),
//! not one per delivery. The pages are looked up once more into a source
//! pipe and `tee`d to each client ([`pipes`]); `sendfile`, which looks
//! them up again per client, is the fallback.
//!
//! Bounded: at most [`MAX_LIVE_FILES`] files are open at once (a slow
//! client's queue holds its batches' files); past that, and for small
//! bodies, and wherever `memfd_create` or `sendfile` is refused (a
//! seccomp filter, another OS), the body is written from the shared
//! buffer with one vectored write, as before. The backlog keeps only the
//! buffer: a resume is rare and needs no file.

use std::io::Write as _;
use std::os::fd::AsRawFd as _;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

mod pipes;

#[cfg(test)]
pub(crate) use pipes::PIPE_HEAVY;

use nix::sys::memfd::{MFdFlags, memfd_create};
use nix::sys::socket::MsgFlags;
use tokio::io::{AsyncWriteExt as _, Interest};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;

/// Memory files open at once, over all shards.
pub(crate) const MAX_LIVE_FILES: usize = 1024;
/// Bodies below this many bytes are written from the buffer: the copy
/// costs less than the file's system calls.
pub(crate) const MIN_FILE_BODY: usize = 16 * 1024;

/// A live batch's body in a memory file, counted against the limit while
/// it exists.
pub(crate) struct BodyFile {
    file: std::fs::File,
    len: usize,
    live: Arc<AtomicUsize>,
    /// The body's pages once more, in a pipe that clients' writes `tee`
    /// from ([`pipes`]); `None` where that is refused or too small, and
    /// once the round is over ([`BodyFile::retire_source`]).
    source: Mutex<Option<Arc<pipes::Source>>>,
}

impl BodyFile {
    /// The source pipe, while there is one.
    pub(crate) fn source(&self) -> Option<Arc<pipes::Source>> {
        self.source
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Lets go of the source pipe: the round is over, and a slow client's
    /// queue that still holds this body sends it by `sendfile` instead of
    /// keeping a pipe (and its share of the pipe budget) for it.
    pub(crate) fn retire_source(&self) {
        self.source
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
    }
}

impl Drop for BodyFile {
    fn drop(&mut self) {
        self.live.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Makes [`BodyFile`]s, within the limit, and stops trying after a refusal.
#[derive(Default)]
pub(crate) struct BodyFiles {
    live: Arc<AtomicUsize>,
    refused: AtomicBool,
    pipes: pipes::Pipes,
}

impl BodyFiles {
    /// The body in a new memory file, or `None` (then write the buffer).
    pub(crate) fn make(&self, body: &[u8]) -> Option<Arc<BodyFile>> {
        if body.len() < MIN_FILE_BODY || self.refused.load(Ordering::Relaxed) {
            return None;
        }
        if self.live.fetch_add(1, Ordering::Relaxed) >= MAX_LIVE_FILES {
            self.live.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        // Counted from here: dropping it gives the slot back.
        let made = memfd_create(c"anonchat-batch", MFdFlags::MFD_CLOEXEC)
            .map_err(std::io::Error::from)
            .and_then(|fd| {
                let mut file = std::fs::File::from(fd);
                file.write_all(body)?;
                Ok(file)
            });
        match made {
            Ok(file) => {
                let source = self.pipes.source(&file, body.len());
                Some(Arc::new(BodyFile {
                    file,
                    len: body.len(),
                    live: Arc::clone(&self.live),
                    source: Mutex::new(source.map(Arc::new)),
                }))
            }
            Err(e) => {
                self.live.fetch_sub(1, Ordering::Relaxed);
                self.refuse(&e);
                None
            }
        }
    }

    /// Stops using files (logged once).
    pub(crate) fn refuse(&self, why: &std::io::Error) {
        if !self.refused.swap(true, Ordering::Relaxed) {
            tracing::warn!(error = %why, "memory files refused: batch bodies are copied per client from now on");
        }
    }

    /// Files open now.
    #[cfg(test)]
    pub(crate) fn live(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }

    /// Source pipes live now.
    #[cfg(test)]
    pub(crate) fn sources(&self) -> usize {
        self.pipes.sources()
    }
}

/// Writes `header` then the body from `file`: by `tee` from its source
/// pipe when it has one and a pipe can be lent, the rest (all of it
/// otherwise) by `sendfile`; on a refusal of `sendfile` (not a full
/// socket), writes the rest of the body from `buffer` (the same bytes)
/// and reports the refusal. The header goes with `MSG_MORE`, so header
/// and body leave in the same segments.
pub(crate) async fn write_with_file(
    wr: &mut OwnedWriteHalf,
    header: &[u8],
    file: &BodyFile,
    buffer: &[u8],
    files: &BodyFiles,
) -> std::io::Result<()> {
    let stream: &TcpStream = wr.as_ref();
    // sendfile's offset is an off_t; bodies are far below its range.
    let mut offset: i64 = 0;
    send_header(stream, header).await?;
    if let Some(source) = file.source()
        && let Some(lent) = files.pipes.lend(file.len)
    {
        let sent = pipes::send(stream, &source, lent, file.len)?;
        offset = i64::try_from(sent).unwrap_or(i64::MAX);
    }
    let done = |offset: i64| usize::try_from(offset).unwrap_or(usize::MAX);
    while done(offset) < file.len {
        let left = file.len - done(offset);
        let r = stream
            .async_io(Interest::WRITABLE, || {
                nix::sys::sendfile::sendfile(stream, &file.file, Some(&mut offset), left)
                    .map_err(std::io::Error::from)
            })
            .await;
        match r {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(_) => {}
            Err(e) if is_refusal(&e) => {
                files.refuse(&e);
                let rest = buffer.get(done(offset)..).unwrap_or_default();
                return wr.write_all(rest).await;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The header alone, with `MSG_MORE`, so that the body's first segments
/// carry it.
async fn send_header(stream: &TcpStream, header: &[u8]) -> std::io::Result<()> {
    let fd = stream.as_raw_fd();
    let mut sent = 0;
    while sent < header.len() {
        let n = stream
            .async_io(Interest::WRITABLE, || {
                nix::sys::socket::send(
                    fd,
                    &header[sent..],
                    MsgFlags::from_bits_retain(nix::libc::MSG_MORE) | MsgFlags::MSG_NOSIGNAL,
                )
                .map_err(std::io::Error::from)
            })
            .await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        sent += n;
    }
    Ok(())
}

/// `sendfile` not allowed or not supported here (as opposed to a broken
/// connection).
fn is_refusal(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc_errno::EPERM | libc_errno::EINVAL | libc_errno::ENOSYS | libc_errno::EOPNOTSUPP)
    )
}

use nix::libc as libc_errno;

#[cfg(test)]
mod tests {
    use super::*;

    /// A client of `listener` that reads everything until the server's end
    /// closes: the server's halves, and the bytes the client will have got.
    async fn reading_client(
        listener: &tokio::net::TcpListener,
    ) -> (
        tokio::net::tcp::OwnedReadHalf,
        OwnedWriteHalf,
        tokio::task::JoinHandle<Vec<u8>>,
    ) {
        use tokio::io::AsyncReadExt as _;
        let addr = listener.local_addr().unwrap();
        let reader = tokio::spawn(async move {
            let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
            let mut got = Vec::new();
            c.read_to_end(&mut got).await.unwrap();
            got
        });
        let (server, _) = listener.accept().await.unwrap();
        let (rd, wr) = server.into_split();
        (rd, wr, reader)
    }

    /// Closes the server's end and checks the client got exactly `want`.
    async fn got_exactly(
        (rd, wr, reader): (
            tokio::net::tcp::OwnedReadHalf,
            OwnedWriteHalf,
            tokio::task::JoinHandle<Vec<u8>>,
        ),
        want: &[u8],
    ) {
        drop(wr);
        drop(rd);
        let got = reader.await.unwrap();
        assert_eq!(got.len(), want.len());
        assert!(got == want, "the bytes read differ from header + body");
    }

    /// Small bodies get no file, large ones do, and the limit holds: a
    /// file more than [`MAX_LIVE_FILES`] is refused until one is dropped
    /// (breaks if `make` forgets the limit or `Drop` forgets to give the
    /// slot back).
    #[test]
    fn files_are_bounded_and_given_back() {
        let _heavy = pipes::PIPE_HEAVY
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let _ = rlimit::increase_nofile_limit(8192);
        let files = BodyFiles::default();
        assert!(files.make(&[7; MIN_FILE_BODY - 1]).is_none());
        let body = vec![9u8; MIN_FILE_BODY];
        let held: Vec<_> = (0..MAX_LIVE_FILES)
            .map(|_| files.make(&body).expect("within the limit"))
            .collect();
        assert_eq!(files.live(), MAX_LIVE_FILES);
        // The first files got a source pipe each, up to that limit.
        assert_eq!(files.pipes.sources(), pipes::MAX_SOURCES);
        assert!(held[pipes::MAX_SOURCES - 1].source().is_some());
        assert!(held[pipes::MAX_SOURCES].source().is_none());
        // A retired source is given back while its file lives on.
        held[0].retire_source();
        assert_eq!(files.pipes.sources(), pipes::MAX_SOURCES - 1);
        assert!(held[0].source().is_none());
        assert!(files.make(&body).is_none());
        drop(held);
        assert_eq!(files.live(), 0);
        assert_eq!(files.pipes.sources(), 0);
        assert!(files.make(&body).is_some());
    }

    /// The bytes a client reads are the header then exactly the body, by
    /// the `tee` path (one pipe made, and back in the pool afterwards) and
    /// by `sendfile` (a file without a source pipe). Breaks if the offset
    /// is not advanced, the header is sent without being waited for, the
    /// `tee` path is never taken (no pipe made), or its pipe is not given
    /// back empty, or sends nothing (`sendfile` then sends it all).
    #[tokio::test]
    async fn a_client_reads_the_header_then_the_body() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let files = BodyFiles::default();
        let body: Vec<u8> = (0..3 * MIN_FILE_BODY + 17)
            .map(|i| (i % 251) as u8)
            .collect();
        let file = files.make(&body).unwrap();
        assert!(file.source().is_some());
        // The same bytes in a file without a source: by sendfile.
        let plain = files.make(&body).unwrap();
        plain.retire_source();
        let mut client = reading_client(&listener).await;
        // Twice over the same file: each client's copy starts at offset 0.
        for f in [&file, &file, &plain] {
            write_with_file(&mut client.1, b"HEADER", f, &body, &files)
                .await
                .unwrap();
        }
        // One pipe served both tee'd writes, which sent the whole body,
        // and is idle again.
        assert_eq!(files.pipes.counts(), (1, 1));
        assert_eq!(files.pipes.spliced(), 2 * body.len());
        let mut want = Vec::new();
        for _ in 0..3 {
            want.extend_from_slice(b"HEADER");
            want.extend_from_slice(&body);
        }
        got_exactly(client, &want).await;
    }

    /// When `tee` gives less than the body (a pipe smaller than it), the
    /// rest goes by `sendfile` from where the pipe stopped: the client
    /// still reads the header and exactly the body. Breaks if the offset
    /// handed to `sendfile` is the body's length, or 0, instead of what
    /// the pipe sent.
    #[tokio::test]
    async fn a_short_tee_is_completed_by_sendfile_from_where_it_stopped() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let files = BodyFiles::default();
        files.pipes.shrink_lent_to(4096);
        let body: Vec<u8> = (0..3 * MIN_FILE_BODY + 17)
            .map(|i| (i % 253) as u8)
            .collect();
        let file = files.make(&body).unwrap();
        assert!(file.source().is_some());
        let mut client = reading_client(&listener).await;
        write_with_file(&mut client.1, b"HEADER", &file, &body, &files)
            .await
            .unwrap();
        // The pipe was lent, sent what it held, and is back in the pool.
        assert_eq!(files.pipes.counts(), (1, 1));
        assert_eq!(files.pipes.spliced(), 4096);
        let mut want = b"HEADER".to_vec();
        want.extend_from_slice(&body);
        got_exactly(client, &want).await;
    }

    /// A client that does not read never holds a pipe: what its full
    /// socket did not take is dropped from the pipe, which goes back to
    /// the pool empty while the rest waits by `sendfile`; the next client
    /// lent that pipe gets its own body and nothing of the first. Breaks if
    /// the pipe is pooled without being emptied (the next client reads the
    /// first one's bytes), or held across the wait (not back in the pool).
    #[tokio::test]
    async fn a_full_socket_gives_its_pipe_back_empty_and_waits_without_it() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let files = BodyFiles::default();
        let slow = tokio::net::TcpSocket::new_v4().unwrap();
        slow.set_recv_buffer_size(4096).unwrap();
        let slow = slow.connect(addr).await.unwrap();
        let (to_slow, _) = listener.accept().await.unwrap();
        nix::sys::socket::setsockopt(&to_slow, nix::sys::socket::sockopt::SndBuf, &4096).unwrap();
        let (slow_rd, mut slow_wr) = to_slow.into_split();
        let first = files.make(&vec![5u8; 512 * 1024]).unwrap();
        let waiting = tokio::time::timeout(
            std::time::Duration::from_millis(300),
            write_with_file(&mut slow_wr, b"A", &first, &[], &files),
        )
        .await;
        assert!(
            waiting.is_err(),
            "the client reads nothing: the write waits"
        );
        assert_eq!(files.pipes.counts(), (1, 1), "the pipe is back, idle");

        let second_body: Vec<u8> = (0..3 * MIN_FILE_BODY).map(|i| (i % 249) as u8).collect();
        let second = files.make(&second_body).unwrap();
        let mut client = reading_client(&listener).await;
        write_with_file(&mut client.1, b"B", &second, &second_body, &files)
            .await
            .unwrap();
        let mut want = b"B".to_vec();
        want.extend_from_slice(&second_body);
        got_exactly(client, &want).await;
        drop((slow, slow_rd));
    }
}
