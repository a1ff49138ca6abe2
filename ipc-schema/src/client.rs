//! The client side of the daemon's socket, shared by `anonctl` and the GUI:
//! a jsonrpsee client over newline-delimited JSON on a local socket.

use std::path::Path;
use std::time::Duration;

use interprocess::local_socket::tokio::Stream;
use interprocess::local_socket::traits::tokio::Stream as _;
use interprocess::local_socket::{GenericFilePath, ToFsName as _};
use jsonrpsee::async_client::{Client, ClientBuilder};
use jsonrpsee::core::client::{ReceivedMessage, TransportReceiverT, TransportSenderT};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader, ReadHalf, WriteHalf};

use crate::{API_VERSION, AnonchatClient as _, MAX_LINE};

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

/// Reads one `\n`-terminated line of at most `max` bytes. `Ok(None)` at a
/// clean end of stream.
pub async fn read_line<R: tokio::io::AsyncBufRead + Unpin>(
    r: &mut R,
    max: usize,
) -> Result<Option<String>, TransportError> {
    let mut buf = Vec::new();
    loop {
        let available = r.fill_buf().await?;
        if available.is_empty() {
            return if buf.is_empty() {
                Ok(None)
            } else {
                Err(TransportError::Closed)
            };
        }
        if let Some(pos) = available.iter().position(|&b| b == b'\n') {
            if buf.len() + pos > max {
                return Err(TransportError::TooLong);
            }
            buf.extend_from_slice(&available[..pos]);
            r.consume(pos + 1);
            return String::from_utf8(buf)
                .map(Some)
                .map_err(|_| TransportError::Io(std::io::ErrorKind::InvalidData.into()));
        }
        let n = available.len();
        if buf.len() + n > max {
            return Err(TransportError::TooLong);
        }
        buf.extend_from_slice(available);
        r.consume(n);
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

/// Connects to the daemon's socket.
pub async fn connect(path: &Path) -> Result<Client, ConnectError> {
    let unreachable = |source| ConnectError::Unreachable {
        path: path.display().to_string(),
        source,
    };
    let name = path.to_fs_name::<GenericFilePath>().map_err(unreachable)?;
    let stream = Stream::connect(name).await.map_err(unreachable)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lines_are_bounded() {
        let data = b"short\nxxxxxxxxxxxxxxxxxxxx\n".to_vec();
        let mut r = BufReader::new(&data[..]);
        assert_eq!(
            read_line(&mut r, 10).await.unwrap().as_deref(),
            Some("short")
        );
        assert!(matches!(
            read_line(&mut r, 10).await,
            Err(TransportError::TooLong)
        ));
        let mut empty = BufReader::new(&b""[..]);
        assert!(read_line(&mut empty, 10).await.unwrap().is_none());
        let mut cut = BufReader::new(&b"no newline"[..]);
        assert!(matches!(
            read_line(&mut cut, 100).await,
            Err(TransportError::Closed)
        ));
    }
}
