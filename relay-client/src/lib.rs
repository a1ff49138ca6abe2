#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

use anonchat_protocol::wire::{
    ClientFrame, ClientHandshake, CloseCode, LinkOpener, LinkSealer, OpenedBatch, RelayAddress,
    RelayFrame, RelayParams, Welcome, WireError, handshake_len, open_batch, sealed_body_len,
};
use tokio::io::{
    AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, ReadHalf, WriteHalf,
};
use tokio::net::TcpStream;

/// Why a relay connection could not be made or was lost.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The TCP (or proxy) connection could not be opened.
    #[error("cannot reach the relay: {0} (check the address and that the relay runs)")]
    Connect(std::io::Error),
    /// The connection broke.
    #[error("relay connection lost: {0}")]
    Io(#[from] std::io::Error),
    /// The relay's bytes broke the wire protocol (or it refused us).
    #[error(transparent)]
    Wire(#[from] WireError),
    /// A well-formed frame at a point where the protocol forbids it.
    #[error("the relay sent {0} where the protocol does not allow it")]
    Unexpected(&'static str),
}

/// A joined connection: parameters, the welcome, and the two halves.
pub struct Connected<S> {
    /// Cell size and round length, as the relay announced them.
    pub params: RelayParams,
    /// The relay's welcome: the open round and what the backlog holds.
    pub welcome: Welcome,
    /// Sends cells.
    pub sender: CellSender<S>,
    /// Reads batches.
    pub receiver: BatchReceiver<S>,
}

/// Dials `addr` over TCP and joins `shard`.
pub async fn connect(
    addr: &RelayAddress,
    shard: u32,
    resume_after: Option<u64>,
) -> Result<Connected<TcpStream>, ClientError> {
    let stream = TcpStream::connect(addr.socket_addr_string())
        .await
        .map_err(ClientError::Connect)?;
    let _ = stream.set_nodelay(true);
    join(stream, addr.key(), shard, resume_after).await
}

/// Runs the handshake and the hello over an already open stream.
pub async fn join<S>(
    stream: S,
    relay_key: &[u8; 32],
    shard: u32,
    resume_after: Option<u64>,
) -> Result<Connected<S>, ClientError>
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut rd, mut wr) = tokio::io::split(stream);
    let (hs, msg1) = ClientHandshake::start(relay_key)?;
    wr.write_all(&msg1).await?;
    let mut prefix = [0u8; 2];
    rd.read_exact(&mut prefix).await?;
    let mut msg2 = vec![0u8; handshake_len(prefix)?];
    rd.read_exact(&mut msg2).await?;
    let link = hs.finish(&msg2)?;
    let params = link.params();
    let (mut sealer, opener) = link.split();
    wr.write_all(&sealer.seal_client(&ClientFrame::Hello {
        shard,
        resume_after,
    })?)
    .await?;
    let mut receiver = BatchReceiver {
        rd,
        opener,
        params,
        shard,
        buf: vec![0u8; anonchat_protocol::wire::frame_wire_len(params.cell_size)],
    };
    let welcome = match receiver.next_frame().await? {
        RelayFrame::Welcome(w) if w.shard == shard => w,
        RelayFrame::Welcome(_) => {
            return Err(ClientError::Unexpected("a welcome for another shard"));
        }
        RelayFrame::Close { code, reason } => return Err(WireError::Closed { code, reason }.into()),
        RelayFrame::Batch { .. } => {
            return Err(ClientError::Unexpected("a batch before the welcome"));
        }
    };
    Ok(Connected {
        params,
        welcome,
        sender: CellSender { wr, sealer, params },
        receiver,
    })
}

/// The sending half: one cell per round.
pub struct CellSender<S> {
    wr: WriteHalf<S>,
    sealer: LinkSealer,
    params: RelayParams,
}

impl<S: AsyncWrite> CellSender<S> {
    /// Seals and writes the cell for `round`.
    pub async fn send_cell(&mut self, round: u64, cell: Vec<u8>) -> Result<(), ClientError> {
        let frame = self
            .sealer
            .seal_client(&ClientFrame::Cell { round, cell })?;
        self.wr.write_all(&frame).await?;
        Ok(())
    }

    /// Writes raw bytes on the link: for tests that misbehave on purpose.
    pub async fn send_raw(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        self.wr.write_all(bytes).await?;
        Ok(())
    }

    /// Seals a frame without sending it (for tests of misbehaviour).
    pub fn seal(&mut self, frame: &ClientFrame) -> Result<Vec<u8>, ClientError> {
        Ok(self.sealer.seal_client(frame)?)
    }

    /// The link's parameters.
    pub fn params(&self) -> RelayParams {
        self.params
    }
}

/// One received round.
#[derive(Debug)]
pub struct ReceivedBatch {
    /// The round it closed.
    pub round: u64,
    /// When the relay closed it (its clock, microseconds since the epoch).
    pub closed_at_us: u64,
    /// The cells, opened and checked.
    pub batch: OpenedBatch,
    /// Bytes this round took on the wire (header frame and sealed body).
    pub wire_bytes: usize,
}

/// What the relay sent next.
#[derive(Debug)]
pub enum Incoming {
    /// A round's batch.
    Batch(ReceivedBatch),
    /// The relay closed the link, saying why.
    Closed {
        /// The reason's code.
        code: CloseCode,
        /// The relay's words (untrusted text).
        reason: String,
    },
}

/// A batch header, read before its body: enough to answer the round at
/// once (the send schedule does, so that how long a body takes to read
/// and check never moves a cell), not yet the cells.
#[derive(Debug)]
pub struct BatchHeader {
    /// The round it closed.
    pub round: u64,
    /// When the relay closed it (its clock, microseconds since the epoch).
    pub closed_at_us: u64,
    cells: u32,
    key: anonchat_protocol::wire::BatchKey,
    body_hash: [u8; anonchat_protocol::wire::BODY_HASH_LEN],
}

impl BatchHeader {
    /// Cells in the body.
    pub fn cells(&self) -> u32 {
        self.cells
    }

    /// The SHA-256 of the sealed body, as this client's own Noise frame
    /// carries it.
    pub fn body_hash(&self) -> &[u8; anonchat_protocol::wire::BODY_HASH_LEN] {
        &self.body_hash
    }
}

/// What the relay sent next, the body of a batch not yet read.
#[derive(Debug)]
pub enum Announced {
    /// A batch header: read its body with [`BatchReceiver::read_body`]
    /// before anything else.
    Batch(BatchHeader),
    /// The relay closed the link, saying why.
    Closed {
        /// The reason's code.
        code: CloseCode,
        /// The relay's words (untrusted text).
        reason: String,
    },
}

/// The receiving half: batches in round order.
pub struct BatchReceiver<S> {
    rd: ReadHalf<S>,
    opener: LinkOpener,
    params: RelayParams,
    shard: u32,
    buf: Vec<u8>,
}

impl<S: AsyncRead> BatchReceiver<S> {
    async fn next_frame(&mut self) -> Result<RelayFrame, ClientError> {
        self.rd.read_exact(&mut self.buf).await?;
        Ok(self.opener.open_relay(&self.buf)?)
    }

    /// The next batch header (or the relay's close notice). The body
    /// follows on the stream: read it with [`Self::read_body`] before
    /// anything else.
    pub async fn next_header(&mut self) -> Result<Announced, ClientError> {
        match self.next_frame().await? {
            RelayFrame::Batch {
                round,
                closed_at_us,
                cells,
                key,
                body_hash,
            } => Ok(Announced::Batch(BatchHeader {
                round,
                closed_at_us,
                cells,
                key,
                body_hash,
            })),
            RelayFrame::Close { code, reason } => Ok(Announced::Closed { code, reason }),
            RelayFrame::Welcome(_) => Err(ClientError::Unexpected("a second welcome")),
        }
    }

    /// Reads and opens the body `header` announced. A body that does not
    /// match the hash in its header is refused with
    /// [`WireError::BatchBodyMismatch`]; the stream is still aligned, but
    /// the link can no longer be trusted: drop it and reconnect.
    pub async fn read_body(&mut self, header: BatchHeader) -> Result<ReceivedBatch, ClientError> {
        let body = self.read_sealed_body(&header).await?;
        let batch = self.open_body(&header, &body)?;
        Ok(ReceivedBatch {
            round: header.round,
            closed_at_us: header.closed_at_us,
            batch,
            wire_bytes: self.buf.len() + body.len(),
        })
    }

    /// Reads the sealed body `header` announced, without checking or
    /// opening it: for a load generator that opens one copy per shard and
    /// round and compares the others with it. Anything else uses
    /// [`Self::read_body`].
    pub async fn read_sealed_body(&mut self, header: &BatchHeader) -> Result<Vec<u8>, ClientError> {
        let mut body = vec![0u8; sealed_body_len(header.cells, self.params.cell_size)];
        self.rd.read_exact(&mut body).await?;
        Ok(body)
    }

    /// Checks `body` against the hash in `header` (our own Noise frame:
    /// another member of the shard knows the batch key), then opens it.
    pub fn open_body(&self, header: &BatchHeader, body: &[u8]) -> Result<OpenedBatch, ClientError> {
        Ok(open_batch(
            &header.key,
            &header.body_hash,
            self.shard,
            header.round,
            header.cells,
            self.params.cell_size,
            body,
        )?)
    }

    /// Bytes of a batch header frame on the wire.
    pub fn header_wire_len(&self) -> usize {
        self.buf.len()
    }

    /// The next batch, header and body (or the relay's close notice); see
    /// [`Self::read_body`] for a body that does not match its header.
    pub async fn next(&mut self) -> Result<Incoming, ClientError> {
        match self.next_header().await? {
            Announced::Batch(h) => Ok(Incoming::Batch(self.read_body(h).await?)),
            Announced::Closed { code, reason } => Ok(Incoming::Closed { code, reason }),
        }
    }
}
