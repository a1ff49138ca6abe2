//! Handshake cells: how the INIT and the ACCEPT of a session start travel
//! before any session exists.
//!
//! Handshake cell: `cell_tag(16) || AEAD(k_r, aad = cell_tag, hs_id(8) ||
//! index(1) || count(1) || len(2) || data || zeros)`, the AEAD ciphertext
//! ending in its 16-byte tag. Cell tags and keys come from the
//! static-static X25519 secret only, so the peer recognises them before any
//! session exists. They only hide and carry the handshake: its security
//! comes from the handshake itself ([`handshake`](super::handshake)), so
//! whoever holds one side's X25519 secret and can forge these cells still
//! cannot finish a session as the other side.

use std::collections::VecDeque;

use rand::CryptoRng;
use zeroize::Zeroizing;

use super::identity::{PrivateIdentity, PublicIdentity};
use super::kdf::{
    AEAD_TAG_LEN, CELL_TAG_LEN, CellTag, InitCellKey, LABEL_INIT, LABEL_INIT_CELLS,
    LABEL_INIT_TAGS, TagKey, hkdf, hkdf_key, open, seal,
};
use super::writer::Writer;
use crate::wire::WireError;
use crate::wire::reader::Reader;

/// Bytes of an init cell's plaintext before its data: id, index, count, len.
const INIT_HEADER: usize = 8 + 1 + 1 + 2;
/// Most cells a handshake message may span.
const MAX_INIT_FRAGMENTS: u8 = 16;
/// Completed handshake messages remembered per contact (their fragments
/// keep arriving until the answer gets through, and must not count again).
const RECENT: usize = 4;

/// The id of one handshake message, random per message.
pub(crate) type InitId = [u8; 8];

/// Init data bytes one init cell carries.
fn data_per_cell(cell_size: usize) -> usize {
    cell_size - CELL_TAG_LEN - AEAD_TAG_LEN - INIT_HEADER
}

/// The init keys of both directions with one contact.
pub(crate) struct InitKeys {
    send_tags: TagKey,
    send_cells: InitCellKey,
    recv_tags: TagKey,
    recv_cells: InitCellKey,
}

impl InitKeys {
    /// Derives the init keys from the static-static secret; `None` if the
    /// peer's X25519 key gives a non-contributory secret.
    pub(crate) fn derive(me: &PrivateIdentity, peer: &PublicIdentity) -> Option<Self> {
        let shared = me.x25519().diffie_hellman(peer.x25519());
        if !shared.was_contributory() {
            return None;
        }
        let mine = me.public().fingerprint().0;
        let theirs = peer.fingerprint().0;
        let (low, high) = if mine < theirs {
            (mine, theirs)
        } else {
            (theirs, mine)
        };
        let secret = hkdf::<32>(&[0u8; 32], shared.as_bytes(), &[LABEL_INIT, &low, &high]);
        let from_to = |from: &[u8; 32], to: &[u8; 32]| -> (TagKey, InitCellKey) {
            (
                hkdf_key(&[0u8; 32], secret.as_ref(), &[LABEL_INIT_TAGS, from, to]),
                hkdf_key(&[0u8; 32], secret.as_ref(), &[LABEL_INIT_CELLS, from, to]),
            )
        };
        let (send_tags, send_cells) = from_to(&mine, &theirs);
        let (recv_tags, recv_cells) = from_to(&theirs, &mine);
        Some(Self {
            send_tags,
            send_cells,
            recv_tags,
            recv_cells,
        })
    }

    /// The keys the peer derives for this pair: ours with the directions
    /// swapped (a test's attacker, who computes the same static-static
    /// secret from the other side).
    #[cfg(test)]
    pub(crate) fn mirrored(self) -> Self {
        Self {
            send_tags: self.recv_tags,
            send_cells: self.recv_cells,
            recv_tags: self.send_tags,
            recv_cells: self.send_cells,
        }
    }

    /// The tag of the peer's init cell if sent in `round`.
    pub(crate) fn recv_tag(&self, round: u64) -> CellTag {
        self.recv_tags.tag(round)
    }

    /// Opens an init cell whose tag matched `round`: its plaintext, or
    /// `None` if it does not authenticate.
    pub(crate) fn open(&self, round: u64, cell: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        let key = self.recv_cells.round_key(round);
        open(&key, &cell[..CELL_TAG_LEN], &cell[CELL_TAG_LEN..])
    }
}

/// Our own init while the peer has not answered: its data and the
/// fragments still to send.
pub(crate) struct OutgoingInit {
    pub(crate) id: InitId,
    data: Zeroizing<Vec<u8>>,
    queue: VecDeque<u8>,
    /// When the last fragment went out (ms; RAM only).
    done_at: Option<u64>,
    /// Times it was queued again without an answer (RAM only).
    attempts: u32,
}

impl OutgoingInit {
    /// A new init with a fresh id, every fragment queued.
    pub(crate) fn new<R: CryptoRng + ?Sized>(
        rng: &mut R,
        data: Zeroizing<Vec<u8>>,
        cell_size: usize,
    ) -> Self {
        let mut id = [0u8; 8];
        rng.fill_bytes(&mut id);
        let mut init = Self::restored(id, data);
        init.requeue(cell_size);
        init
    }

    /// An init read back from saved state: nothing queued until the next
    /// retransmission.
    fn restored(id: InitId, data: Zeroizing<Vec<u8>>) -> Self {
        Self {
            id,
            data,
            queue: VecDeque::new(),
            done_at: None,
            attempts: 0,
        }
    }

    fn count(&self, cell_size: usize) -> usize {
        self.data.len().div_ceil(data_per_cell(cell_size))
    }

    /// Queues every fragment again (same data, fresh tags), unless some are
    /// still waiting.
    pub(crate) fn requeue(&mut self, cell_size: usize) {
        if self.queue.is_empty() {
            self.queue = (0..self.count(cell_size) as u8).collect();
        }
    }

    /// Queues every fragment again if the last went out long enough ago
    /// with no answer (the wait doubles as for messages, see
    /// [`retransmit_wait`](super::messages::retransmit_wait)), or never
    /// went out since a restart.
    pub(crate) fn resend_if_due(&mut self, now_ms: u64, after_ms: u64, cell_size: usize) {
        if !self.queue.is_empty() {
            return;
        }
        let wait = super::messages::retransmit_wait(after_ms, self.attempts);
        if self
            .done_at
            .is_none_or(|at| now_ms.saturating_sub(at) >= wait)
        {
            self.attempts = self.attempts.saturating_add(1);
            self.requeue(cell_size);
        }
    }

    /// Whether a fragment is waiting to go out.
    pub(crate) fn has_output(&self) -> bool {
        !self.queue.is_empty()
    }

    /// The init cell of the next queued fragment, sent in `round`.
    pub(crate) fn next_cell(
        &mut self,
        keys: &InitKeys,
        round: u64,
        now_ms: u64,
        cell_size: usize,
    ) -> Option<Vec<u8>> {
        let per_cell = data_per_cell(cell_size);
        let index = self.queue.pop_front()?;
        if self.queue.is_empty() {
            self.done_at = Some(now_ms);
        }
        let count = self.count(cell_size) as u8;
        let start = usize::from(index) * per_cell;
        let chunk = &self.data[start..(start + per_cell).min(self.data.len())];
        let tag = keys.send_tags.tag(round);
        let plain_len = cell_size - CELL_TAG_LEN - AEAD_TAG_LEN;
        let mut pt = Vec::with_capacity(plain_len);
        pt.extend_from_slice(&self.id);
        pt.push(index);
        pt.push(count);
        pt.extend_from_slice(&(chunk.len() as u16).to_be_bytes());
        pt.extend_from_slice(chunk);
        pt.resize(plain_len, 0);
        seal(&keys.send_cells.round_key(round), &tag, &mut pt);
        let mut cell = tag.to_vec();
        cell.extend_from_slice(&pt);
        Some(cell)
    }

    /// Persistent part: the id and the data (the queue is rebuilt).
    pub(crate) fn encode(&self, w: &mut Writer) {
        w.bytes(&self.id);
        w.u16_prefixed(&self.data);
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let id = r.array()?;
        let len = usize::from(r.u16()?);
        let data = Zeroizing::new(r.take(len)?.to_vec());
        Ok(Self::restored(id, data))
    }
}

/// One fragment of a peer's handshake message, as an opened cell carries it.
pub(crate) struct InitFragment<'a> {
    id: InitId,
    index: u8,
    count: u8,
    data: &'a [u8],
}

impl<'a> InitFragment<'a> {
    /// Parses an opened init cell; `None` if its fields are inconsistent.
    pub(crate) fn parse(plain: &'a [u8]) -> Option<Self> {
        let mut r = Reader::new(plain);
        let id = r.array().ok()?;
        let index = r.u8().ok()?;
        let count = r.u8().ok()?;
        let len = usize::from(r.u16().ok()?);
        let data = r.take(len).ok()?;
        (count > 0 && count <= MAX_INIT_FRAGMENTS && index < count).then_some(Self {
            id,
            index,
            count,
            data,
        })
    }
}

/// A peer's handshake message being reassembled.
struct PartialInit {
    id: InitId,
    parts: Vec<Option<Zeroizing<Vec<u8>>>>,
}

/// What a fragment of a peer's handshake message amounted to.
pub(crate) enum Added {
    /// Stored; the message is not complete yet (or the fragment was bad).
    Pending,
    /// A fragment of a message completed before: the peer sends it again,
    /// so our answer (if any) did not reach it.
    Repeat(InitId),
    /// The last fragment of a new message: its id and data.
    Complete(InitId, Zeroizing<Vec<u8>>),
}

/// The peer's handshake messages as they arrive. Independent of our
/// session state: the peer may start (or start over) whatever state we are
/// in, so this sits beside [`Sessions`](super::lifecycle::Sessions), not in
/// it.
#[derive(Default)]
pub(crate) struct PeerInits {
    /// The message being reassembled (RAM only).
    partial: Option<PartialInit>,
    /// The last messages completed, newest last.
    recent: VecDeque<InitId>,
}

impl PeerInits {
    /// Adds a fragment.
    pub(crate) fn add(&mut self, f: &InitFragment<'_>) -> Added {
        if self.recent.contains(&f.id) {
            return Added::Repeat(f.id);
        }
        let count = usize::from(f.count);
        let fresh = self
            .partial
            .as_ref()
            .is_none_or(|p| p.id != f.id || p.parts.len() != count);
        let p = if fresh {
            self.partial.insert(PartialInit {
                id: f.id,
                parts: vec![None; count],
            })
        } else if let Some(p) = self.partial.as_mut() {
            p
        } else {
            return Added::Pending;
        };
        // A fragment already held is kept: a forged copy cannot replace it.
        let slot = &mut p.parts[usize::from(f.index)];
        if slot.is_none() {
            *slot = Some(Zeroizing::new(f.data.to_vec()));
        }
        if p.parts.iter().any(Option::is_none) {
            return Added::Pending;
        }
        let Some(p) = self.partial.take() else {
            return Added::Pending;
        };
        let mut all = Zeroizing::new(Vec::new());
        for part in p.parts.into_iter().flatten() {
            all.extend_from_slice(&part);
        }
        if self.recent.len() >= RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back(f.id);
        Added::Complete(f.id, all)
    }

    /// Forgets a completed message, so that its next copy is read again.
    pub(crate) fn forget(&mut self, id: InitId) {
        self.recent.retain(|r| *r != id);
    }

    /// Drops every record, as if later messages had pushed them out.
    #[cfg(test)]
    pub(crate) fn forget_all(&mut self) {
        self.recent.clear();
    }

    /// Persistent part: the ids of the last messages completed.
    pub(crate) fn encode(&self, w: &mut Writer) {
        w.u8(self.recent.len() as u8);
        for id in &self.recent {
            w.bytes(id);
        }
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let n = usize::from(r.u8()?);
        if n > RECENT {
            return Err(WireError::BadField("handshake ids"));
        }
        let mut recent = VecDeque::with_capacity(n);
        for _ in 0..n {
            recent.push_back(r.array()?);
        }
        Ok(Self {
            partial: None,
            recent,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::e2e::kdf::KeyBytes as _;

    fn plain(id: u8, index: u8, count: u8, data: &[u8]) -> Vec<u8> {
        let mut p = vec![id; 8];
        p.extend_from_slice(&[index, count]);
        p.extend_from_slice(&(data.len() as u16).to_be_bytes());
        p.extend_from_slice(data);
        p
    }

    /// A fragment's index and count are checked: 1..=16 fragments, index
    /// below the count. Checked against each comparison loosened (`>=`,
    /// `<`, `<=`) and each `&&` turned into `||`.
    #[test]
    fn fragment_fields_are_bounded() {
        let ok = |i, c| InitFragment::parse(&plain(1, i, c, b"x")).is_some();
        assert!(ok(0, 1));
        assert!(ok(15, MAX_INIT_FRAGMENTS));
        assert!(!ok(0, 0), "no fragments");
        assert!(!ok(0, MAX_INIT_FRAGMENTS + 1), "too many");
        assert!(!ok(3, 3), "index at the count");
        assert!(!ok(16, MAX_INIT_FRAGMENTS), "index past the last");
        assert!(!ok(200, 2));
    }

    fn complete(inits: &mut PeerInits, id: u8) -> bool {
        let p = plain(id, 0, 1, b"data");
        let f = InitFragment::parse(&p).unwrap();
        matches!(inits.add(&f), Added::Complete(..))
    }

    /// The last four completed ids are remembered (a copy is a repeat),
    /// not more: the fifth pushes the first out. Checked against `>=`
    /// turned into `<` (then only one is kept).
    #[test]
    fn the_last_four_inits_are_remembered() {
        let mut inits = PeerInits::default();
        for id in 1..=5 {
            assert!(complete(&mut inits, id));
        }
        for id in 2..=5 {
            let p = plain(id, 0, 1, b"data");
            assert!(matches!(
                inits.add(&InitFragment::parse(&p).unwrap()),
                Added::Repeat(_)
            ));
        }
        assert!(complete(&mut inits, 1), "the oldest was forgotten");
    }

    /// A saved record holds at most four ids. Checked against `>` turned
    /// into `>=` (four refused) and `==` (five read).
    #[test]
    fn a_saved_record_of_more_than_four_ids_is_refused() {
        for (n, ok) in [(0u8, true), (4, true), (5, false), (255, false)] {
            let mut saved = vec![n];
            saved.extend(std::iter::repeat_n(7u8, 8 * usize::from(n)));
            let read = PeerInits::decode(&mut Reader::new(&saved));
            assert_eq!(read.is_ok(), ok, "{n}");
        }
    }

    /// An INIT goes out again only once the wait since its last fragment
    /// has passed, exactly then, and has output only while fragments are
    /// queued. Checked against `>=` turned into `<` and `has_output`
    /// always true.
    #[test]
    fn an_init_is_sent_again_when_its_wait_is_over() {
        let cell = 512;
        let data = Zeroizing::new(vec![9u8; data_per_cell(cell) * 2]);
        let mut out = OutgoingInit::new(&mut rand::rng(), data, cell);
        let keys = InitKeys {
            send_tags: TagKey::from_bytes([1; 32]),
            send_cells: InitCellKey::from_bytes([2; 32]),
            recv_tags: TagKey::from_bytes([3; 32]),
            recv_cells: InitCellKey::from_bytes([4; 32]),
        };
        assert!(out.has_output());
        let t = 1_000_000;
        assert!(out.next_cell(&keys, 1, t, cell).is_some());
        assert!(out.next_cell(&keys, 2, t, cell).is_some());
        assert!(!out.has_output(), "every fragment went out");
        let after = 40_000;
        let wait = crate::e2e::messages::retransmit_wait(after, 0);
        out.resend_if_due(t + wait - 1, after, cell);
        assert!(!out.has_output(), "too early");
        out.resend_if_due(t + wait, after, cell);
        assert!(out.has_output(), "the wait is over");
    }
}
