//! The client side of the daemon's socket, shared by `anonctl` and the GUI:
//! a jsonrpsee client over newline-delimited JSON on a local socket.

use std::os::unix::fs::MetadataExt as _;
use std::path::Path;
use std::time::Duration;

use interprocess::local_socket::tokio::Stream;
use interprocess::local_socket::traits::StreamCommon as _;
use interprocess::local_socket::traits::tokio::Stream as _;
use interprocess::local_socket::{GenericFilePath, ToFsName as _};
use jsonrpsee::async_client::{Client, ClientBuilder};
use jsonrpsee::core::ClientError;
use jsonrpsee::core::client::{ReceivedMessage, TransportReceiverT, TransportSenderT};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader, ReadHalf, WriteHalf};

use crate::{API_VERSION, AnonchatClient as _, HistoryEntry, MAX_LINE};

/// Why the daemon could not be reached or used.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// Nothing accepts connections on the socket.
    #[error(
        "no daemon is listening on {path}: start it with `anonctl daemon start` (or `anonchatd`) ({source})"
    )]
    Unreachable {
        /// The socket path.
        path: String,
        /// The connect error.
        source: std::io::Error,
    },
    /// The socket, its directory or the process serving it is not ours:
    /// nothing was sent.
    #[error("{reason}: refusing to talk to it; is someone impersonating your daemon?")]
    Untrusted {
        /// The socket path.
        path: String,
        /// What is wrong, e.g. "the socket PATH is served by uid N, not
        /// by you".
        reason: String,
    },
    /// The daemon speaks another API version.
    #[error(
        "the daemon speaks API version {daemon}, this program speaks version {ours}; restart the daemon from the same anonchat version"
    )]
    Version {
        /// The daemon's API version.
        daemon: u32,
        /// Ours ([`API_VERSION`]).
        ours: u32,
    },
    /// The version call failed.
    #[error("the daemon did not answer: {0}")]
    Rpc(#[from] jsonrpsee::core::ClientError),
}

/// Why the client transport failed.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The socket failed, or the daemon sent a line that is not UTF-8.
    #[error("daemon connection: {0}")]
    Io(#[from] std::io::Error),
    /// The daemon closed the connection.
    #[error("the daemon closed the connection")]
    Closed,
    /// The daemon sent a line over [`MAX_LINE`].
    #[error("the daemon sent a line longer than {MAX_LINE} bytes")]
    TooLong,
}

struct Sender(WriteHalf<Stream>);
struct Receiver(BufReader<ReadHalf<Stream>>);

impl TransportSenderT for Sender {
    type Error = TransportError;

    async fn send(&mut self, msg: String) -> Result<(), Self::Error> {
        let mut line = msg.into_bytes();
        line.push(b'\n');
        self.0.write_all(&line).await?;
        Ok(())
    }
}

impl TransportReceiverT for Receiver {
    type Error = TransportError;

    async fn receive(&mut self) -> Result<ReceivedMessage, Self::Error> {
        let line = read_line(&mut self.0, MAX_LINE)
            .await?
            .ok_or(TransportError::Closed)?;
        Ok(ReceivedMessage::Text(line))
    }
}

/// Why no line could be read: the framing errors of the daemon's socket,
/// the same on both sides (the daemon reads requests with
/// [`read_line`], the client reads answers and events).
#[derive(Debug, thiserror::Error)]
pub enum LineError {
    /// The line went on past the bound.
    #[error("line longer than {max} bytes")]
    TooLong {
        /// The bound, in bytes, newline not counted.
        max: usize,
    },
    /// The peer closed the connection in the middle of a line.
    #[error("the connection closed in the middle of a line")]
    Truncated,
    /// The line is not UTF-8.
    #[error("the line is not UTF-8")]
    NotUtf8,
    /// The socket failed.
    #[error("cannot read from the socket: {0}")]
    Io(#[from] std::io::Error),
}

impl From<LineError> for TransportError {
    fn from(e: LineError) -> Self {
        match e {
            LineError::TooLong { .. } => TransportError::TooLong,
            LineError::Truncated => TransportError::Closed,
            LineError::NotUtf8 => TransportError::Io(std::io::ErrorKind::InvalidData.into()),
            LineError::Io(e) => TransportError::Io(e),
        }
    }
}

/// Reads one `\n`-terminated line of at most `max` bytes (the newline not
/// counted). `Ok(None)` when the peer closed the connection between lines.
/// Never buffers more than `max` bytes plus one read.
pub async fn read_line<R: tokio::io::AsyncBufRead + Unpin>(
    r: &mut R,
    max: usize,
) -> Result<Option<String>, LineError> {
    let mut buf = Vec::new();
    loop {
        let available = r.fill_buf().await?;
        if available.is_empty() {
            return if buf.is_empty() {
                Ok(None)
            } else {
                Err(LineError::Truncated)
            };
        }
        let (take, done) = match available.iter().position(|&b| b == b'\n') {
            Some(pos) => (pos, true),
            None => (available.len(), false),
        };
        if buf.len() + take > max {
            return Err(LineError::TooLong { max });
        }
        buf.extend_from_slice(&available[..take]);
        r.consume(if done { take + 1 } else { take });
        if done {
            return String::from_utf8(buf)
                .map(Some)
                .map_err(|_| LineError::NotUtf8);
        }
    }
}

/// The socket file name inside the runtime (or data) directory.
pub const SOCKET_NAME: &str = "anonchatd.sock";

/// Where the daemon listens by default: `$XDG_RUNTIME_DIR/anonchatd.sock`,
/// or, without a runtime directory, the socket in the daemon's default home.
pub fn default_socket_path() -> Option<std::path::PathBuf> {
    let dirs = directories::ProjectDirs::from("org", "anonchat", "anonchat")?;
    Some(match dirs.runtime_dir() {
        Some(run) => run.join(SOCKET_NAME),
        None => dirs.data_dir().join(SOCKET_NAME),
    })
}

/// Refuses a socket that another user could have put there: the socket
/// file (symbolic links followed) must belong to `me`, and its directory
/// to `me` or root and be writable by neither group nor others. A socket
/// that does not exist (or cannot be inspected) passes: connecting to it
/// fails and says so.
fn check_socket_file(path: &Path, me: u32) -> Result<(), ConnectError> {
    let untrusted = |reason: String| ConnectError::Untrusted {
        path: path.display().to_string(),
        reason,
    };
    let Ok(real) = std::fs::canonicalize(path) else {
        return Ok(());
    };
    let Ok(meta) = std::fs::metadata(&real) else {
        return Ok(());
    };
    if meta.uid() != me {
        return Err(untrusted(format!(
            "the socket {} belongs to uid {}, not to you",
            path.display(),
            meta.uid()
        )));
    }
    let dir = real.parent().unwrap_or_else(|| Path::new("/"));
    let dir_meta = std::fs::metadata(dir).map_err(|source| ConnectError::Unreachable {
        path: path.display().to_string(),
        source,
    })?;
    if dir_meta.uid() != me && dir_meta.uid() != 0 {
        return Err(untrusted(format!(
            "the socket {} is in {}, a directory of uid {}, who can replace it",
            path.display(),
            dir.display(),
            dir_meta.uid()
        )));
    }
    if dir_meta.mode() & 0o022 != 0 {
        return Err(untrusted(format!(
            "the socket {} is in {}, which other users can write to (mode {:o}), so they can replace it",
            path.display(),
            dir.display(),
            dir_meta.mode() & 0o7777
        )));
    }
    Ok(())
}

/// Refuses a connection whose serving process (its credentials when it
/// started listening, from the kernel: `SO_PEERCRED` on Linux) is not
/// `me`. Where the platform cannot tell, the file checks stand alone.
fn check_peer(stream: &Stream, path: &Path, me: u32) -> Result<(), ConnectError> {
    match stream.peer_creds().map(|c| c.euid()) {
        Ok(Some(uid)) if uid == me => Ok(()),
        Ok(Some(uid)) => Err(ConnectError::Untrusted {
            path: path.display().to_string(),
            reason: format!(
                "the socket {} is served by uid {uid}, not by you",
                path.display()
            ),
        }),
        Ok(None) => Ok(()),
        Err(source) => Err(ConnectError::Unreachable {
            path: path.display().to_string(),
            source,
        }),
    }
}

/// Connects to the daemon's socket, after checking that it is ours: the
/// socket file and its directory (no other user can have put or replaced
/// it), then the serving process's user. Nothing is sent before both pass.
pub async fn connect(path: &Path) -> Result<Client, ConnectError> {
    let unreachable = |source| ConnectError::Unreachable {
        path: path.display().to_string(),
        source,
    };
    let me = nix::unistd::geteuid().as_raw();
    check_socket_file(path, me)?;
    let name = path.to_fs_name::<GenericFilePath>().map_err(unreachable)?;
    let stream = Stream::connect(name).await.map_err(unreachable)?;
    check_peer(&stream, path, me)?;
    let (recv, send) = tokio::io::split(stream);
    Ok(ClientBuilder::default()
        .request_timeout(Duration::from_secs(120))
        .max_buffer_capacity_per_subscription(1024)
        .build_with_tokio(Sender(send), Receiver(BufReader::new(recv))))
}

/// Connects and checks the daemon's API version.
pub async fn connect_checked(path: &Path) -> Result<Client, ConnectError> {
    let client = connect(path).await?;
    let status = client.status().await?;
    if status.api_version != API_VERSION {
        return Err(ConnectError::Version {
            daemon: status.api_version,
            ours: API_VERSION,
        });
    }
    Ok(client)
}

/// The conversation with `with`, oldest first: all the daemon holds, or
/// the last `limit` entries, paged back in time with
/// `messages.history_page` so that no reply nears [`MAX_LINE`]. With a
/// daemon that has no paging, one `messages.history` call.
pub async fn history(
    client: &Client,
    with: &str,
    limit: Option<u32>,
) -> Result<Vec<HistoryEntry>, ClientError> {
    let mut pages = Vec::new();
    let mut count: u32 = 0;
    let mut before = None;
    let mut seen = std::collections::HashSet::new();
    loop {
        let want = limit.map(|l| l.saturating_sub(count));
        if want == Some(0) {
            break;
        }
        let page = match client
            .messages_history_page(with.to_owned(), before, want)
            .await
        {
            Err(ClientError::Call(e))
                if before.is_none()
                    && e.code() == jsonrpsee::types::error::METHOD_NOT_FOUND_CODE =>
            {
                return client.messages_history(with.to_owned(), limit).await;
            }
            other => other?,
        };
        let Some(first) = page.entries.first() else {
            break;
        };
        let cursor = first.cursor();
        count = count.saturating_add(u32::try_from(page.entries.len()).unwrap_or(u32::MAX));
        pages.push(page.entries);
        // A cursor seen before would page in a circle (two messages with
        // the same direction and id): stop rather than loop.
        if !page.more || !seen.insert(cursor) {
            break;
        }
        before = Some(cursor);
    }
    Ok(pages.into_iter().rev().flatten().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A listening socket of ours in a private directory, and its path.
    fn our_socket() -> (
        tempfile::TempDir,
        std::os::unix::net::UnixListener,
        std::path::PathBuf,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        (dir, listener, path)
    }

    #[test]
    fn socket_files_of_others_are_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let me = nix::unistd::geteuid().as_raw();
        let (dir, _listener, path) = our_socket();
        check_socket_file(&path, me).unwrap();
        // Missing: connecting says so.
        check_socket_file(&dir.path().join("none.sock"), me).unwrap();
        // Another owner (seen as another user would be: `me` differs).
        let e = check_socket_file(&path, me + 1).unwrap_err().to_string();
        assert!(e.contains("belongs to uid"), "{e}");
        assert!(e.contains("is someone impersonating your daemon?"), "{e}");
        // A directory others can write to: they could have swapped it.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = check_socket_file(&path, me).unwrap_err().to_string();
        assert!(e.contains("other users can write to (mode 777)"), "{e}");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o720)).unwrap();
        assert!(check_socket_file(&path, me).is_err());
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        check_socket_file(&path, me).unwrap();
        // Through a symbolic link, the real socket is what counts.
        let link = dir.path().join("link.sock");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        check_socket_file(&link, me).unwrap();
        assert!(check_socket_file(&link, me + 1).is_err());
    }

    #[tokio::test]
    async fn a_server_of_another_uid_is_refused() {
        let me = nix::unistd::geteuid().as_raw();
        let (_dir, _listener, path) = our_socket();
        let name = path.as_path().to_fs_name::<GenericFilePath>().unwrap();
        let stream = Stream::connect(name).await.unwrap();
        check_peer(&stream, &path, me).unwrap();
        let e = check_peer(&stream, &path, me + 1).unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "the socket {} is served by uid {me}, not by you: refusing to talk to it; is someone impersonating your daemon?",
                path.display()
            )
        );
        // Our own socket passes the whole connect.
        connect(&path).await.unwrap();
    }

    #[tokio::test]
    async fn lines_are_bounded() {
        let data = b"short\n0123456789\nxxxxxxxxxxx\n".to_vec();
        let mut r = BufReader::new(&data[..]);
        assert_eq!(
            read_line(&mut r, 10).await.unwrap().as_deref(),
            Some("short")
        );
        // Exactly the bound is read; one byte more in the same stream is
        // not.
        assert_eq!(
            read_line(&mut r, 10).await.unwrap().as_deref(),
            Some("0123456789")
        );
        let e = read_line(&mut r, 10).await.unwrap_err();
        assert!(matches!(e, LineError::TooLong { max: 10 }));
        assert_eq!(e.to_string(), "line longer than 10 bytes");
        assert!(matches!(TransportError::from(e), TransportError::TooLong));
        // Over the bound without any newline: refused before the end.
        let long = [b'x'; 100];
        let mut r = BufReader::with_capacity(8, &long[..]);
        assert!(matches!(
            read_line(&mut r, 10).await,
            Err(LineError::TooLong { .. })
        ));
        let mut exact = BufReader::new(&b"0123456789\n"[..]);
        assert_eq!(
            read_line(&mut exact, 10).await.unwrap().as_deref(),
            Some("0123456789")
        );
        let mut empty = BufReader::new(&b""[..]);
        assert!(read_line(&mut empty, 10).await.unwrap().is_none());
        // The end right after a good line is a clean end.
        let mut after = BufReader::new(&b"one\n"[..]);
        assert!(read_line(&mut after, 10).await.unwrap().is_some());
        assert!(read_line(&mut after, 10).await.unwrap().is_none());
        let mut cut = BufReader::new(&b"no newline"[..]);
        let e = read_line(&mut cut, 100).await.unwrap_err();
        assert!(matches!(e, LineError::Truncated));
        assert!(matches!(TransportError::from(e), TransportError::Closed));
        let mut bad = BufReader::new(&b"\xff\n"[..]);
        let e = read_line(&mut bad, 100).await.unwrap_err();
        assert!(matches!(e, LineError::NotUtf8));
        assert!(matches!(
            TransportError::from(e),
            TransportError::Io(io) if io.kind() == std::io::ErrorKind::InvalidData
        ));
        let io = std::io::Error::from(std::io::ErrorKind::BrokenPipe);
        assert!(matches!(
            TransportError::from(LineError::from(io)),
            TransportError::Io(io) if io.kind() == std::io::ErrorKind::BrokenPipe
        ));
    }
}
