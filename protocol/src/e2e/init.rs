//! Init cells: how a session start travels before any session exists.
//!
//! Init cell: `cell_tag(16) || AEAD(k_j, aad = cell_tag, init_id(8) ||
//! index(1) || count(1) || len(2) || data || zeros)`, the AEAD ciphertext
//! ending in its 16-byte tag. Cell tags and keys come from the
//! static-static X25519 secret only, so the peer recognises them before any
//! session exists.

use std::collections::VecDeque;

use rand::CryptoRng;
use zeroize::Zeroizing;

use super::identity::{PrivateIdentity, PublicIdentity};
use super::kdf::{
    AEAD_TAG_LEN, CELL_TAG_LEN, CellTag, InitCellKey, KeyBytes as _, LABEL_INIT, LABEL_INIT_CELLS,
    LABEL_INIT_TAGS, TagKey, hkdf, hkdf_key, open, seal,
};
use super::session::x25519;
use super::writer::Writer;
use crate::wire::WireError;
use crate::wire::reader::Reader;

/// Bytes of an init cell's plaintext before its data: id, index, count, len.
const INIT_HEADER: usize = 8 + 1 + 1 + 2;
/// Most cells an init may span.
const MAX_INIT_FRAGMENTS: u8 = 16;

/// The id of one session start, random per start.
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
        let dh = x25519(me, peer.x25519().as_bytes())?;
        let mine = me.public().fingerprint().0;
        let theirs = peer.fingerprint().0;
        let (low, high) = if mine < theirs {
            (mine, theirs)
        } else {
            (theirs, mine)
        };
        let secret = hkdf::<32>(&[0u8; 32], dh.as_bytes(), &[LABEL_INIT, &low, &high]);
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

    /// Whether a fragment is waiting to go out.
    pub(crate) fn has_output(&self) -> bool {
        !self.queue.is_empty()
    }

    /// The init cell of the next queued fragment, sent in `round`.
    pub(crate) fn next_cell(
        &mut self,
        keys: &InitKeys,
        round: u64,
        cell_size: usize,
    ) -> Option<Vec<u8>> {
        let per_cell = data_per_cell(cell_size);
        let index = self.queue.pop_front()?;
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

/// One fragment of a peer's init, as an opened init cell carries it.
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

/// A peer's init being reassembled.
struct PartialInit {
    id: InitId,
    parts: Vec<Option<Zeroizing<Vec<u8>>>>,
}

/// The peer's inits as they arrive. Independent of our session state: the
/// peer may start (or start over) whatever state we are in, so this sits
/// beside [`SessionState`](super::lifecycle::SessionState), not in it.
#[derive(Default)]
pub(crate) struct PeerInits {
    /// The init being reassembled (RAM only).
    partial: Option<PartialInit>,
    /// The last init completed: its fragments keep arriving until our
    /// answer reaches the peer, and must not start a session again.
    last: Option<InitId>,
}

impl PeerInits {
    /// Adds a fragment; once every fragment of a new init is in, its id and
    /// data.
    pub(crate) fn add(&mut self, f: &InitFragment<'_>) -> Option<(InitId, Zeroizing<Vec<u8>>)> {
        if self.last == Some(f.id) {
            return None;
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
        } else {
            self.partial.as_mut()?
        };
        p.parts[usize::from(f.index)] = Some(Zeroizing::new(f.data.to_vec()));
        if p.parts.iter().any(Option::is_none) {
            return None;
        }
        let p = self.partial.take()?;
        let mut all = Zeroizing::new(Vec::new());
        for part in p.parts.into_iter().flatten() {
            all.extend_from_slice(&part);
        }
        self.last = Some(f.id);
        Some((f.id, all))
    }

    /// Persistent part: the last completed init's id.
    pub(crate) fn encode(&self, w: &mut Writer) {
        w.bool(self.last.is_some());
        w.bytes(&self.last.unwrap_or_default());
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let has_last = r.u8()? == 1;
        let last: InitId = r.array()?;
        Ok(Self {
            partial: None,
            last: has_last.then_some(last),
        })
    }
}
