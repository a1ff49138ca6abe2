//! The client against a scripted relay over an in-memory stream: the
//! BATCH header's body hash is what stops another member of the shard from
//! rewriting the shared body (issue 10, finding 5).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use anonchat_protocol::wire::{
    BatchKey, ClientFrame, LinkOpener, LinkSealer, PROTOCOL_VERSION, RelayFrame, RelayKeypair,
    RelayParams, SealedBatch, Welcome, WireError, batch_body_hash, frame_wire_len, handshake_len,
    open_batch, respond, seal_batch,
};
use anonchat_relay_client::{ClientError, Incoming, join};
use chacha20poly1305::aead::{AeadInOut, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _, DuplexStream, ReadHalf, WriteHalf};

const SHARD: u32 = 7;
const PARAMS: RelayParams = RelayParams {
    cell_size: 128,
    round_ms: 100,
};
const CELLS: usize = 3;

/// The relay's half of a joined link.
struct RelaySide {
    rd: ReadHalf<DuplexStream>,
    wr: WriteHalf<DuplexStream>,
    sealer: LinkSealer,
    _opener: LinkOpener,
}

impl RelaySide {
    /// Answers the handshake and the hello, sends the welcome.
    async fn accept(kp: &RelayKeypair, stream: DuplexStream, open_round: u64) -> Self {
        let (mut rd, mut wr) = tokio::io::split(stream);
        let mut prefix = [0u8; 2];
        rd.read_exact(&mut prefix).await.unwrap();
        let mut msg1 = vec![0u8; handshake_len(prefix).unwrap()];
        rd.read_exact(&mut msg1).await.unwrap();
        let out = respond(kp, &msg1, PARAMS).unwrap();
        wr.write_all(&out.reply).await.unwrap();
        let (mut sealer, mut opener) = out.link.unwrap().split();
        let mut frame = vec![0u8; frame_wire_len(PARAMS.cell_size)];
        rd.read_exact(&mut frame).await.unwrap();
        assert!(matches!(
            opener.open_client(&frame).unwrap(),
            ClientFrame::Hello { shard: SHARD, .. }
        ));
        let welcome = RelayFrame::Welcome(Welcome {
            shard: SHARD,
            open_round,
            oldest_held: open_round,
        });
        wr.write_all(&sealer.seal_relay(&welcome).unwrap())
            .await
            .unwrap();
        Self {
            rd,
            wr,
            sealer,
            _opener: opener,
        }
    }

    /// Writes this member's BATCH header for `batch`, then `body` (the
    /// real sealed body, or whatever an attacker put in its place).
    async fn send_batch(&mut self, batch: &SealedBatch, body: &[u8]) {
        let header = self
            .sealer
            .seal_relay(&RelayFrame::Batch {
                round: batch.round,
                closed_at_us: batch.closed_at_us,
                cells: batch.cells,
                key: batch.key.clone(),
                body_hash: batch.body_hash,
            })
            .unwrap();
        self.wr.write_all(&header).await.unwrap();
        self.wr.write_all(body).await.unwrap();
    }
}

/// `CELLS` cells, the first filled with `first`, the others with their index.
fn cells(first: u8) -> Vec<u8> {
    let mut plain = vec![first; PARAMS.cell_size];
    for i in 1..CELLS {
        plain.extend(std::iter::repeat_n(i as u8, PARAMS.cell_size));
    }
    plain
}

/// What a member of the shard can do with the round's key from its own
/// header: seal other cells for the same shard, round and shape, written
/// here from the layout in `docs/protocol.md` ("Sealed batch"), not with
/// the protocol crate's sealing code.
fn reseal(key: &BatchKey, round: u64, mut plain: Vec<u8>) -> Vec<u8> {
    let mut aad = b"anonchat batch".to_vec();
    aad.extend_from_slice(&PROTOCOL_VERSION.to_be_bytes());
    aad.extend_from_slice(&SHARD.to_be_bytes());
    aad.extend_from_slice(&round.to_be_bytes());
    aad.extend_from_slice(&(CELLS as u32).to_be_bytes());
    aad.extend_from_slice(&(PARAMS.cell_size as u32).to_be_bytes());
    let tag = ChaCha20Poly1305::new(&Key::from(*key.as_bytes()))
        .encrypt_inout_detached(&Nonce::default(), &aad, plain.as_mut_slice().into())
        .unwrap();
    plain.extend_from_slice(&tag);
    plain
}

/// A member of the shard (who knows the round's key) re-seals an altered
/// body with a valid AEAD tag and puts it on the victim's link in place of
/// the real one; the victim's `next` refuses the batch with
/// `BatchBodyMismatch`. The round before, the real body is accepted.
///
/// Checked against two mutations, each of which makes this test fail (the
/// forged batch is delivered): deleting the hash check in
/// `anonchat_protocol::wire::open_batch`, and passing the hash of the
/// received body (`batch_body_hash(&body)`) instead of the header's
/// `body_hash` in `BatchReceiver::next`.
#[tokio::test]
async fn a_body_rewritten_by_a_shard_member_is_refused() {
    let kp = RelayKeypair::generate(&mut rand::rng());
    let relay_key = *kp.public();
    let (client_end, relay_end) = tokio::io::duplex(1 << 16);
    let first_round = 1_000;
    // Round 1: the real body. Round 2: the header is the relay's, the body
    // the attacker's.
    let round = first_round + 1;
    let (honest, real) = {
        let mut rng = rand::rng();
        let honest = seal_batch(
            &mut rng,
            SHARD,
            first_round,
            1,
            PARAMS.cell_size,
            cells(0xAA),
        );
        let real = seal_batch(&mut rng, SHARD, round, 2, PARAMS.cell_size, cells(0xAA));
        (honest.unwrap(), real.unwrap())
    };
    let forged = reseal(&real.key, round, cells(0xEE));
    assert_eq!(forged.len(), real.body.len());
    // The forgery is a valid AEAD message under the round's key: with a
    // hash that matched it, it would open.
    let opened = open_batch(
        &real.key,
        &batch_body_hash(&forged),
        SHARD,
        round,
        CELLS as u32,
        PARAMS.cell_size,
        &forged,
    )
    .unwrap();
    assert!(opened.cells().next().unwrap().iter().all(|&b| b == 0xEE));

    let relay = tokio::spawn(async move {
        let mut relay = RelaySide::accept(&kp, relay_end, first_round).await;
        relay.send_batch(&honest, &honest.body).await;
        relay.send_batch(&real, &forged).await;
        // Keep the stream open until the client has read everything.
        let mut rest = Vec::new();
        let _ = relay.rd.read_to_end(&mut rest).await;
    });

    let conn = join(client_end, &relay_key, SHARD, None).await.unwrap();
    assert_eq!(conn.welcome.open_round, first_round);
    let mut receiver = conn.receiver;
    let Incoming::Batch(b) = receiver.next().await.unwrap() else {
        panic!("a batch")
    };
    assert_eq!(b.round, first_round);
    assert!(b.batch.cells().next().unwrap().iter().all(|&x| x == 0xAA));

    let err = receiver.next().await.unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::Wire(WireError::BatchBodyMismatch { round: r }) if r == round
        ),
        "{err}"
    );
    assert!(err.to_string().contains("reconnect"), "{err}");
    drop(receiver);
    drop(conn.sender);
    relay.await.unwrap();
}
