//! The sealed per-round batch: "seal once, write to all".
//!
//! The relay draws a fresh random key per round, encrypts the shuffled batch
//! once with ChaCha20-Poly1305, writes the *same* sealed bytes to every
//! client of the shard, and gives each client the key inside its own Noise
//! channel (the [`RelayFrame::Batch`](super::RelayFrame) header). The key is
//! used for exactly one message, so the nonce is fixed at zero; the
//! associated data binds the shard, the round and the shape of the batch.
//!
//! The key is the same for every member of the shard and the body travels
//! outside Noise, so the AEAD tag alone does not stop another member (who
//! knows the key) or anyone on the path in league with one from re-sealing
//! an altered body. The header therefore also carries the SHA-256 of the
//! exact body bytes ([`batch_body_hash`]), inside each client's own Noise
//! channel, and [`open_batch`] checks it, in constant time, before opening.

use std::fmt;

use chacha20poly1305::aead::{AeadInOut, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce, Tag};
use rand::CryptoRng;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

use super::{AEAD_TAG_LEN, MAX_BATCH_CELLS, PROTOCOL_VERSION, WireError};

const BATCH_AAD_LABEL: &[u8] = b"anonchat batch";

/// Bytes of a batch body hash (SHA-256).
pub const BODY_HASH_LEN: usize = 32;

/// SHA-256 of a sealed batch body: exactly the bytes written on the stream
/// after the batch header (ciphertext and tag).
pub fn batch_body_hash(body: &[u8]) -> [u8; BODY_HASH_LEN] {
    Sha256::digest(body).into()
}

/// A single-use batch key. Zeroized on drop; prints as `BatchKey(..)`.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct BatchKey([u8; 32]);

impl BatchKey {
    /// A fresh random key.
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut k = [0u8; 32];
        rng.fill_bytes(&mut k);
        Self(k)
    }

    /// Wraps key bytes read from a batch header.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The key bytes, for the batch header.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    fn cipher(&self) -> ChaCha20Poly1305 {
        ChaCha20Poly1305::new(&Key::from(self.0))
    }
}

impl PartialEq for BatchKey {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}
impl Eq for BatchKey {}

impl fmt::Debug for BatchKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BatchKey(..)")
    }
}

/// One closed round, sealed: what the relay keeps in its backlog and writes
/// to every client of the shard.
#[derive(Debug, Clone)]
pub struct SealedBatch {
    /// The shard whose round this is.
    pub shard: u32,
    /// The round.
    pub round: u64,
    /// When the relay closed the round, microseconds since the Unix epoch.
    pub closed_at_us: u64,
    /// Number of cells in the body.
    pub cells: u32,
    /// The key the body is sealed under (sent in the batch header).
    pub key: BatchKey,
    /// [`batch_body_hash`] of `body`, computed once when sealing (sent in
    /// every member's batch header).
    pub body_hash: [u8; BODY_HASH_LEN],
    /// `cells * cell_size + AEAD_TAG_LEN` bytes.
    pub body: Vec<u8>,
}

fn aad(shard: u32, round: u64, cells: u32, cell_size: usize) -> Vec<u8> {
    let mut a = Vec::with_capacity(BATCH_AAD_LABEL.len() + 20);
    a.extend_from_slice(BATCH_AAD_LABEL);
    a.extend_from_slice(&PROTOCOL_VERSION.to_be_bytes());
    a.extend_from_slice(&shard.to_be_bytes());
    a.extend_from_slice(&round.to_be_bytes());
    a.extend_from_slice(&cells.to_be_bytes());
    a.extend_from_slice(&(cell_size as u32).to_be_bytes());
    a
}

/// Seals a round's cells (already shuffled, each `cell_size` bytes,
/// concatenated in `plaintext`) under a fresh key.
pub fn seal_batch<R: CryptoRng + ?Sized>(
    rng: &mut R,
    shard: u32,
    round: u64,
    closed_at_us: u64,
    cell_size: usize,
    plaintext: Vec<u8>,
) -> Result<SealedBatch, WireError> {
    seal_with_key(
        BatchKey::generate(rng),
        shard,
        round,
        closed_at_us,
        cell_size,
        plaintext,
    )
}

/// [`seal_batch`] under a given key: what any member of the shard could do
/// with the key from its header (the tests play that member).
fn seal_with_key(
    key: BatchKey,
    shard: u32,
    round: u64,
    closed_at_us: u64,
    cell_size: usize,
    mut plaintext: Vec<u8>,
) -> Result<SealedBatch, WireError> {
    if cell_size == 0 || !plaintext.len().is_multiple_of(cell_size) {
        return Err(WireError::WrongCellLength {
            expected: cell_size,
            got: plaintext.len() % cell_size.max(1),
        });
    }
    let cells = u32::try_from(plaintext.len() / cell_size)
        .ok()
        .filter(|&n| n <= MAX_BATCH_CELLS)
        .ok_or(WireError::BatchTooLarge(u32::MAX))?;
    let tag = key
        .cipher()
        .encrypt_inout_detached(
            &Nonce::default(),
            &aad(shard, round, cells, cell_size),
            plaintext.as_mut_slice().into(),
        )
        .map_err(|_| WireError::BadField("batch too long to seal"))?;
    plaintext.extend_from_slice(&tag);
    Ok(SealedBatch {
        shard,
        round,
        closed_at_us,
        cells,
        key,
        body_hash: batch_body_hash(&plaintext),
        body: plaintext,
    })
}

/// Length of the sealed body that follows a batch header.
pub fn sealed_body_len(cells: u32, cell_size: usize) -> usize {
    cells as usize * cell_size + AEAD_TAG_LEN
}

/// A batch opened by a client: `cells` cells of `cell_size` bytes.
pub struct OpenedBatch {
    /// The round the cells were sent in.
    pub round: u64,
    cell_size: usize,
    data: Vec<u8>,
}

impl OpenedBatch {
    /// The cells, each `cell_size` bytes, in the relay's (shuffled) order.
    pub fn cells(&self) -> impl ExactSizeIterator<Item = &[u8]> {
        self.data.chunks_exact(self.cell_size)
    }

    /// Number of cells.
    pub fn len(&self) -> usize {
        self.data.len() / self.cell_size
    }

    /// Whether the batch holds no cell.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}

impl fmt::Debug for OpenedBatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "OpenedBatch {{ round: {}, cells: {} }}",
            self.round,
            self.len()
        )
    }
}

/// Opens a sealed batch body with the key and body hash from its header.
/// Refuses a body of the wrong length, a body whose SHA-256 is not
/// `body_hash` ([`WireError::BatchBodyMismatch`], checked in constant time
/// before any decryption), and any altered byte.
pub fn open_batch(
    key: &BatchKey,
    body_hash: &[u8; BODY_HASH_LEN],
    shard: u32,
    round: u64,
    cells: u32,
    cell_size: usize,
    body: &[u8],
) -> Result<OpenedBatch, WireError> {
    if cells > MAX_BATCH_CELLS {
        return Err(WireError::BatchTooLarge(cells));
    }
    let expected = sealed_body_len(cells, cell_size);
    if body.len() != expected {
        return Err(WireError::WrongFrameLength {
            expected,
            got: body.len(),
        });
    }
    if !bool::from(batch_body_hash(body).ct_eq(body_hash)) {
        return Err(WireError::BatchBodyMismatch { round });
    }
    let data = decrypt_body(key, shard, round, cells, cell_size, body)?;
    Ok(OpenedBatch {
        round,
        cell_size,
        data,
    })
}

/// The AEAD half of [`open_batch`]: what a holder of the round's key can
/// satisfy on its own. `body` has the length `cells` implies.
fn decrypt_body(
    key: &BatchKey,
    shard: u32,
    round: u64,
    cells: u32,
    cell_size: usize,
    body: &[u8],
) -> Result<Vec<u8>, WireError> {
    let (ct, tag) = body
        .len()
        .checked_sub(AEAD_TAG_LEN)
        .map(|n| body.split_at(n))
        .ok_or(WireError::Truncated)?;
    let mut data = ct.to_vec();
    let tag = Tag::try_from(tag).map_err(|_| WireError::Decrypt)?;
    key.cipher()
        .decrypt_inout_detached(
            &Nonce::default(),
            &aad(shard, round, cells, cell_size),
            data.as_mut_slice().into(),
            &tag,
        )
        .map_err(|_| WireError::Decrypt)?;
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    const C: usize = 128;

    fn sample() -> (Vec<u8>, SealedBatch) {
        let mut plain = Vec::new();
        for i in 0..5u8 {
            plain.extend(std::iter::repeat_n(i, C));
        }
        let sealed = seal_batch(&mut rand::rng(), 9, 77, 1, C, plain.clone()).unwrap();
        (plain, sealed)
    }

    #[test]
    fn sealed_batch_opens_to_the_same_cells() {
        let (plain, s) = sample();
        assert_eq!(s.cells, 5);
        assert_eq!(s.body.len(), sealed_body_len(5, C));
        assert_ne!(&s.body[..plain.len()], plain.as_slice());
        let opened = open_batch(&s.key, &s.body_hash, 9, 77, 5, C, &s.body).unwrap();
        let cells: Vec<&[u8]> = opened.cells().collect();
        assert_eq!(cells.len(), 5);
        assert!(cells[3].iter().all(|&b| b == 3));
    }

    #[test]
    fn empty_batch_is_just_a_tag() {
        let s = seal_batch(&mut rand::rng(), 1, 1, 0, C, Vec::new()).unwrap();
        assert_eq!(s.body.len(), AEAD_TAG_LEN);
        assert!(
            open_batch(&s.key, &s.body_hash, 1, 1, 0, C, &s.body)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn every_flipped_bit_is_rejected() {
        let (_, s) = sample();
        for i in (0..s.body.len()).step_by(37).chain([s.body.len() - 1]) {
            let mut body = s.body.clone();
            body[i] ^= 0x01;
            // Against the header's hash: refused before any decryption.
            assert_eq!(
                open_batch(&s.key, &s.body_hash, 9, 77, 5, C, &body).unwrap_err(),
                WireError::BatchBodyMismatch { round: 77 }
            );
            // Even with a hash that matches the altered bytes, the AEAD
            // refuses them (a holder of the key is the next test).
            assert_eq!(
                open_batch(&s.key, &batch_body_hash(&body), 9, 77, 5, C, &body).unwrap_err(),
                WireError::Decrypt
            );
        }
    }

    /// Finding 5 of issue 10: every member of a shard knows the round's key
    /// (it is in every member's header), so a member — or anyone on the
    /// path in league with one — can re-seal an altered body with a valid
    /// AEAD tag and put it on another member's link in place of the real
    /// one. The hash in the victim's own header, which travels inside the
    /// victim's Noise channel, is what refuses it.
    ///
    /// Checked against the mutation "delete the hash check in
    /// `open_batch`": the forged body then opens and this test fails.
    #[test]
    fn a_member_who_knows_the_key_cannot_rewrite_the_body() {
        let (plain, s) = sample();
        // The attacker replaces the first cell and re-seals under the same
        // key, shard, round and shape.
        let mut altered = plain.clone();
        altered[..C].fill(0xEE);
        let forged = seal_with_key(s.key.clone(), 9, 77, 1, C, altered).unwrap();
        assert_eq!(forged.body.len(), s.body.len());
        assert_ne!(forged.body, s.body);
        // The forgery is a valid AEAD message: only the hash stands in its way.
        let cells = decrypt_body(&s.key, 9, 77, 5, C, &forged.body).unwrap();
        assert!(cells[..C].iter().all(|&b| b == 0xEE));
        // The victim holds the hash of the real body, from its own header.
        assert_eq!(
            open_batch(&s.key, &s.body_hash, 9, 77, 5, C, &forged.body).unwrap_err(),
            WireError::BatchBodyMismatch { round: 77 }
        );
        let real = open_batch(&s.key, &s.body_hash, 9, 77, 5, C, &s.body).unwrap();
        assert_eq!(real.cells().next().unwrap(), &plain[..C]);
    }

    #[test]
    fn the_body_hash_is_sha256_of_exactly_the_body() {
        let (_, s) = sample();
        assert_eq!(s.body_hash, batch_body_hash(&s.body));
        // FIPS 180-2 appendix B.1: SHA-256("abc").
        assert_eq!(
            hex(&batch_body_hash(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn batch_is_bound_to_shard_round_and_key() {
        let (_, s) = sample();
        assert!(open_batch(&s.key, &s.body_hash, 8, 77, 5, C, &s.body).is_err());
        assert!(open_batch(&s.key, &s.body_hash, 9, 78, 5, C, &s.body).is_err());
        let other = BatchKey::from_bytes([1; 32]);
        assert!(open_batch(&other, &s.body_hash, 9, 77, 5, C, &s.body).is_err());
        assert!(matches!(
            open_batch(&s.key, &s.body_hash, 9, 77, 4, C, &s.body),
            Err(WireError::WrongFrameLength { .. })
        ));
    }

    #[test]
    fn keys_differ_per_batch_and_never_print() {
        let (_, a) = sample();
        let (_, b) = sample();
        assert_ne!(a.key, b.key);
        assert_eq!(format!("{:?}", a.key), "BatchKey(..)");
    }

    #[test]
    fn ragged_plaintext_is_refused() {
        assert!(seal_batch(&mut rand::rng(), 1, 1, 0, C, vec![0; C + 1]).is_err());
    }

    /// Known-answer test for ChaCha20-Poly1305 as wired here: RFC 8439
    /// section 2.8.2, through the same aead calls `seal_batch` makes.
    #[test]
    fn chacha20poly1305_rfc8439_vector() {
        let key: [u8; 32] = core::array::from_fn(|i| 0x80 + i as u8);
        let nonce: [u8; 12] = [7, 0, 0, 0, 0x40, 0x41, 0x42, 0x43, 0x44, 0x45, 0x46, 0x47];
        let aad = [
            0x50, 0x51, 0x52, 0x53, 0xc0, 0xc1, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xc7,
        ];
        let mut msg = b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.".to_vec();
        let tag = ChaCha20Poly1305::new(&Key::from(key))
            .encrypt_inout_detached(&Nonce::from(nonce), &aad, msg.as_mut_slice().into())
            .unwrap();
        assert_eq!(hex(&msg[..16]), "d31a8d34648e60db7b86afbc53ef7ec2");
        assert_eq!(hex(&msg[msg.len() - 2..]), "6116");
        assert_eq!(hex(&tag), "1ae10b594f09e26a7e902ecbd0600691");
    }

    fn hex(b: &[u8]) -> String {
        use std::fmt::Write as _;
        b.iter().fold(String::new(), |mut s, x| {
            let _ = write!(s, "{x:02x}");
            s
        })
    }
}
