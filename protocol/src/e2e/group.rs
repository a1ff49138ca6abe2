//! Group cells (issue 13, first step): one cell per message fragment,
//! whatever the group's size, under a **sender chain** per member and
//! epoch (Signal's sender keys, Megolm's outbound session).
//!
//! A member draws a [`SenderKey`] for each epoch of each group: a random
//! 32-byte seed and an Ed25519 signing key. From the seed come a tag key
//! (the cell's tag in each round, so that receiving costs a hash look-up
//! as for pairwise cells), a header key (seals the cell's chain index
//! under a per-round key) and the first chain key (a symmetric ratchet:
//! one message key per cell). It sends every other member a
//! [`SenderKeyBundle`] (the tag and header keys, the chain key at the
//! current index, the verifying key, the group and the epoch) over their
//! pairwise sessions, which are authenticated and forward-secret.
//!
//! Cell: `tag(16) ‖ seal(header_round_key, index u32) (20) ‖
//! seal_body(message_key, round, payload ‖ signature(64)) (P + 80)`, with
//! `P = cell − 116`; AAD of the header is the tag, of the body the tag and
//! sealed header. The signature is Ed25519 over a domain label, the group
//! id, the epoch, the round, the index and the payload: every member
//! knows the chain's symmetric keys, so only the signature tells one
//! member from another. It travels inside the AEAD because an Ed25519
//! signature is not uniformly random (its scalar half has zero top bits)
//! and a group cell must look like any other cell.
//!
//! Receiving: a cell opens only under the round's expected tag; the index
//! may skip ahead at most [`MAX_GROUP_SKIP`] (keys kept for at most
//! [`MAX_GROUP_SKIPPED`] skipped cells); a state change is committed only
//! after the header, the body and the signature all check, so a forged or
//! mutated cell costs one attempt and changes nothing. Forward secrecy:
//! message keys are used once and erased, chain keys only move forward.
//! A removed member holds only old epochs' bundles and reads nothing of a
//! new one.

use std::collections::BTreeMap;

pub mod control;
pub(crate) mod state;

use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use rand::CryptoRng;
use subtle::ConstantTimeEq as _;
use zeroize::Zeroizing;

use super::identity::Fingerprint;
use super::writer::Writer;
use crate::wire::WireError;
use crate::wire::reader::Reader;

use super::kdf::{
    AEAD_TAG_LEN, CELL_TAG_LEN, CellTag, ChainKey, HeaderKey, KeyBytes as _, MessageKey, TagKey,
    hkdf_key, open, open_body, seal, seal_body,
};

/// A group's random id.
pub const GROUP_ID_LEN: usize = 16;
/// The sealed chain index: a `u32` and its AEAD tag.
pub const GROUP_HEADER_LEN: usize = 4 + AEAD_TAG_LEN;
/// An Ed25519 signature.
pub const GROUP_SIGNATURE_LEN: usize = 64;
/// What a group cell spends besides its payload.
pub const GROUP_OVERHEAD: usize =
    CELL_TAG_LEN + GROUP_HEADER_LEN + GROUP_SIGNATURE_LEN + AEAD_TAG_LEN;
/// How far ahead of the next expected index a cell may be.
pub const MAX_GROUP_SKIP: u32 = 256;
/// Keys kept for skipped cells, per sender chain (oldest dropped first).
pub const MAX_GROUP_SKIPPED: usize = 512;
/// The length of an encoded [`SenderKeyBundle`].
pub const BUNDLE_LEN: usize = 1 + GROUP_ID_LEN + 4 + 4 + 4 * 32 + 8;
/// The bundle format this program writes and reads.
const BUNDLE_FORMAT: u8 = 1;

const LABEL_SEED: &[u8] = b"anonchat v2 group sender chain";
const LABEL_TAGS: &[u8] = b"tags";
const LABEL_HEADER: &[u8] = b"header";
const LABEL_CHAIN: &[u8] = b"chain";
const LABEL_SIGNED: &[u8] = b"anonchat v2 group cell";

/// A group's id: random, chosen by its creator.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct GroupId(pub [u8; GROUP_ID_LEN]);

/// Why a group cell or bundle was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum GroupError {
    /// The cell's tag is not this chain's tag for the round.
    #[error("not a cell of this sender chain in this round")]
    NotOurs,
    /// The header, body or signature does not check: mutated or forged.
    #[error(
        "a group cell failed its check (mutated, or forged by someone without the sender's key); ignored"
    )]
    Forged,
    /// This index was read already (or its key is gone): a replay.
    #[error("a group cell that was already read (a replay); ignored")]
    Duplicate,
    /// The index is further ahead than [`MAX_GROUP_SKIP`].
    #[error("a group cell too far ahead of the sender's chain; ignored")]
    TooFarAhead,
    /// The sender chain has sent as many cells as an index can count.
    #[error("this sender chain is used up; start a new epoch")]
    Exhausted,
    /// The cell is not the size the chain was made for.
    #[error("a group cell of the wrong size")]
    WrongSize,
    /// A bundle that does not parse, or whose verifying key is invalid.
    #[error("a malformed group key bundle; ask the member to send it again")]
    BadBundle,
}

/// The keys of one member's sender chain from some index on: what a
/// [`SenderKeyBundle`] carries. A chain key at index n yields the keys of
/// cells n, n+1, … and none before: a member who gets a bundle mid-epoch
/// reads nothing sent earlier.
struct ChainKeys {
    tags: TagKey,
    header: HeaderKey,
    chain: ChainKey,
}

impl ChainKeys {
    /// The keys of a fresh chain: HKDF-SHA256 from a random seed, with the
    /// group and the epoch in every label.
    fn from_seed(seed: &[u8; 32], group: &GroupId, epoch: u32) -> Self {
        let epoch = epoch.to_be_bytes();
        let info = |label| [LABEL_SEED, label, &group.0[..], &epoch[..]];
        Self {
            tags: hkdf_key(&[], seed, &info(LABEL_TAGS)),
            header: hkdf_key(&[], seed, &info(LABEL_HEADER)),
            chain: hkdf_key(&[], seed, &info(LABEL_CHAIN)),
        }
    }

    fn copy(&self) -> Self {
        Self {
            tags: TagKey::from_bytes(*self.tags.as_bytes()),
            header: HeaderKey::from_bytes(*self.header.as_bytes()),
            chain: ChainKey::from_bytes(*self.chain.as_bytes()),
        }
    }
}

/// What every other member needs to read one member's cells of one epoch,
/// from index `start` on: sent to each of them over the pairwise session.
/// Secret (it holds chain keys): zeroized on drop, no `Debug`.
pub struct SenderKeyBundle {
    /// The group.
    pub group: GroupId,
    /// The epoch (bumped on every membership change).
    pub epoch: u32,
    /// The chain index the keys start at.
    pub start: u32,
    /// The sender's next group message id when it made the bundle: a
    /// member new to the group takes nothing below it (what was sent
    /// before it joined).
    pub first_msg: u64,
    keys: ChainKeys,
    verifying: VerifyingKey,
}

impl SenderKeyBundle {
    /// `format(1) ‖ group(16) ‖ epoch(4) ‖ start(4) ‖ tag key(32) ‖
    /// header key(32) ‖ chain key at start(32) ‖ verifying key(32) ‖
    /// first message id(8)`; secret.
    #[must_use]
    pub fn encode(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(BUNDLE_LEN));
        out.push(BUNDLE_FORMAT);
        out.extend_from_slice(&self.group.0);
        out.extend_from_slice(&self.epoch.to_be_bytes());
        out.extend_from_slice(&self.start.to_be_bytes());
        out.extend_from_slice(self.keys.tags.as_bytes());
        out.extend_from_slice(self.keys.header.as_bytes());
        out.extend_from_slice(self.keys.chain.as_bytes());
        out.extend_from_slice(self.verifying.as_bytes());
        out.extend_from_slice(&self.first_msg.to_be_bytes());
        out
    }

    /// Parses [`Self::encode`]'s output.
    ///
    /// # Errors
    /// [`GroupError::BadBundle`] for a wrong length or format, or a
    /// verifying key that is not a valid point (or a weak one).
    pub fn decode(bytes: &[u8]) -> Result<Self, GroupError> {
        if bytes.len() != BUNDLE_LEN || bytes[0] != BUNDLE_FORMAT {
            return Err(GroupError::BadBundle);
        }
        let key = |at: usize| -> [u8; 32] {
            let mut k = [0u8; 32];
            k.copy_from_slice(&bytes[at..at + 32]);
            k
        };
        let u32_at = |at: usize| {
            u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
        };
        let mut group = [0u8; GROUP_ID_LEN];
        group.copy_from_slice(&bytes[1..=GROUP_ID_LEN]);
        let at = 1 + GROUP_ID_LEN;
        let verifying =
            VerifyingKey::from_bytes(&key(at + 104)).map_err(|_| GroupError::BadBundle)?;
        if verifying.is_weak() {
            return Err(GroupError::BadBundle);
        }
        let mut first = [0u8; 8];
        first.copy_from_slice(&bytes[at + 136..at + 144]);
        let first_msg = u64::from_be_bytes(first);
        if first_msg == 0 || first_msg > super::MAX_MSG_ID {
            return Err(GroupError::BadBundle);
        }
        Ok(Self {
            group: GroupId(group),
            epoch: u32_at(at),
            start: u32_at(at + 4),
            first_msg,
            keys: ChainKeys {
                tags: TagKey::from_bytes(key(at + 8)),
                header: HeaderKey::from_bytes(key(at + 40)),
                chain: ChainKey::from_bytes(key(at + 72)),
            },
            verifying,
        })
    }

    /// The member's verifying key for this epoch.
    #[must_use]
    pub fn verifying_key(&self) -> [u8; 32] {
        self.verifying.to_bytes()
    }
}

/// The message a group cell's signature covers.
fn signed_message(
    sender: &[u8; 32],
    group: &GroupId,
    epoch: u32,
    round: u64,
    index: u32,
    payload: &[u8],
) -> Zeroizing<Vec<u8>> {
    // Exactly what follows, so that the buffer never reallocates.
    let len = LABEL_SIGNED.len() + 32 + GROUP_ID_LEN + 4 + 8 + 4 + payload.len();
    let mut m = Zeroizing::new(Vec::with_capacity(len));
    m.extend_from_slice(LABEL_SIGNED);
    m.extend_from_slice(sender);
    m.extend_from_slice(&group.0);
    m.extend_from_slice(&epoch.to_be_bytes());
    m.extend_from_slice(&round.to_be_bytes());
    m.extend_from_slice(&index.to_be_bytes());
    m.extend_from_slice(payload);
    debug_assert_eq!(m.len(), len);
    m
}

/// The payload a group cell of `cell_size` bytes carries (0 if it cannot
/// carry any).
#[must_use]
pub fn group_payload_len(cell_size: usize) -> usize {
    cell_size.saturating_sub(GROUP_OVERHEAD)
}

/// One member's own sender chain for one epoch: seals its group cells.
/// Secret; no `Debug`.
pub struct SenderKey {
    /// Our fingerprint: signed into every cell, so that a member who
    /// passes another's keys off as its own gains nothing.
    sender: [u8; 32],
    group: GroupId,
    epoch: u32,
    signing: SigningKey,
    keys: ChainKeys,
    next: u32,
}

impl SenderKey {
    /// A fresh sender chain for `group` at `epoch`: a random seed and a
    /// random Ed25519 signing key.
    pub fn generate<R: CryptoRng + ?Sized>(
        rng: &mut R,
        sender: &Fingerprint,
        group: GroupId,
        epoch: u32,
    ) -> Self {
        let mut seed = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(&mut *seed);
        let mut signing = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(&mut *signing);
        Self::from_secrets(sender, group, epoch, &seed, &signing)
    }

    /// The chain of a given seed and signing key (for known answers).
    pub(crate) fn from_secrets(
        sender: &Fingerprint,
        group: GroupId,
        epoch: u32,
        seed: &[u8; 32],
        signing: &[u8; 32],
    ) -> Self {
        Self {
            sender: sender.0,
            group,
            epoch,
            signing: SigningKey::from_bytes(signing),
            keys: ChainKeys::from_seed(seed, &group, epoch),
            next: 0,
        }
    }

    /// The bundle to send another member: it reads this chain's cells from
    /// the next index on (a member who joins mid-epoch reads nothing sent
    /// before).
    #[must_use]
    pub fn bundle(&self) -> SenderKeyBundle {
        SenderKeyBundle {
            group: self.group,
            epoch: self.epoch,
            start: self.next,
            first_msg: 1,
            keys: self.keys.copy(),
            verifying: self.signing.verifying_key(),
        }
    }

    /// The tag of this chain's cell in `round` (to recognise one's own).
    #[must_use]
    pub fn tag(&self, round: u64) -> CellTag {
        self.keys.tags.tag(round)
    }

    /// Seals `payload` (exactly [`group_payload_len`]`(cell_size)` bytes,
    /// padded by the caller) as this chain's cell for `round`, and moves
    /// the chain forward.
    ///
    /// # Errors
    /// [`GroupError::WrongSize`] for a payload of another length or a cell
    /// size that leaves no payload; [`GroupError::Exhausted`] after 2^32
    /// cells.
    pub fn seal(
        &mut self,
        round: u64,
        payload: &[u8],
        cell_size: usize,
    ) -> Result<Vec<u8>, GroupError> {
        let plen = group_payload_len(cell_size);
        if plen == 0 || payload.len() != plen {
            return Err(GroupError::WrongSize);
        }
        let index = self.next;
        let after = index.checked_add(1).ok_or(GroupError::Exhausted)?;
        let (chain, mk) = self.keys.chain.step();
        let tag = self.keys.tags.tag(round);
        let signature = self.signing.sign(&signed_message(
            &self.sender,
            &self.group,
            self.epoch,
            round,
            index,
            payload,
        ));
        let mut cell = Vec::with_capacity(cell_size);
        cell.extend_from_slice(&tag);
        let mut header = index.to_be_bytes().to_vec();
        seal(&self.keys.header.round_key(round), &tag, &mut header);
        cell.extend_from_slice(&header);
        let mut body = Zeroizing::new(Vec::with_capacity(
            plen + GROUP_SIGNATURE_LEN + AEAD_TAG_LEN,
        ));
        body.extend_from_slice(payload);
        body.extend_from_slice(&signature.to_bytes());
        let aad = cell.clone();
        seal_body(&mk, round, &aad, &mut body);
        cell.extend_from_slice(&body);
        debug_assert_eq!(cell.len(), cell_size);
        self.keys.chain = chain;
        self.next = after;
        Ok(cell)
    }
}

/// Another member's sender chain for one epoch, as a reader holds it.
/// Secret; no `Debug`.
pub struct ReceiverChain {
    /// Whose chain this is (their fingerprint, checked in signatures).
    sender: [u8; 32],
    group: GroupId,
    epoch: u32,
    verifying: VerifyingKey,
    tags: TagKey,
    header: HeaderKey,
    chain: ChainKey,
    next: u32,
    /// Keys of skipped cells, by index (bounded, oldest dropped first).
    /// Boxed, so that the map's node splits and removals move only
    /// pointers: each key is wiped where it lives when it is dropped.
    skipped: BTreeMap<u32, Box<MessageKey>>,
}

/// What one group cell held.
pub struct Opened {
    /// The cell's index in its sender chain.
    pub index: u32,
    /// The payload (secret).
    pub payload: Zeroizing<Vec<u8>>,
}

impl ReceiverChain {
    /// The reader's side of `bundle`.
    #[must_use]
    pub fn new(bundle: &SenderKeyBundle, sender: &Fingerprint) -> Self {
        let keys = bundle.keys.copy();
        Self {
            sender: sender.0,
            group: bundle.group,
            epoch: bundle.epoch,
            verifying: bundle.verifying,
            tags: keys.tags,
            header: keys.header,
            chain: keys.chain,
            next: bundle.start,
            skipped: BTreeMap::new(),
        }
    }

    /// The group and epoch this chain belongs to.
    #[must_use]
    pub fn epoch(&self) -> (GroupId, u32) {
        (self.group, self.epoch)
    }

    /// The tag this chain's cell would carry in `round`.
    #[must_use]
    pub fn expected_tag(&self, round: u64) -> CellTag {
        self.tags.tag(round)
    }

    /// Opens this chain's cell of `round`. Nothing changes unless the
    /// header, the body and the signature all check.
    ///
    /// # Errors
    /// See [`GroupError`]: every refusal leaves the chain as it was.
    pub fn open(
        &mut self,
        round: u64,
        cell: &[u8],
        cell_size: usize,
    ) -> Result<Opened, GroupError> {
        let plen = group_payload_len(cell_size);
        if plen == 0 || cell.len() != cell_size {
            return Err(GroupError::WrongSize);
        }
        let (tag, rest) = cell.split_at(CELL_TAG_LEN);
        if !bool::from(self.tags.tag(round).ct_eq(tag)) {
            return Err(GroupError::NotOurs);
        }
        let (header, body) = rest.split_at(GROUP_HEADER_LEN);
        let index = open(&self.header.round_key(round), tag, header).ok_or(GroupError::Forged)?;
        let index = u32::from_be_bytes(index[..].try_into().map_err(|_| GroupError::Forged)?);
        // The key, without changing anything yet.
        let (mk, advance) = if index < self.next {
            let mk = self.skipped.get(&index).ok_or(GroupError::Duplicate)?;
            (MessageKey::from_bytes(*mk.as_bytes()), None)
        } else {
            if index - self.next > MAX_GROUP_SKIP {
                return Err(GroupError::TooFarAhead);
            }
            let mut chain = ChainKey::from_bytes(*self.chain.as_bytes());
            let mut skipped = Vec::with_capacity((index - self.next) as usize);
            for i in self.next..index {
                let (next, mk) = chain.step();
                skipped.push((i, Box::new(mk)));
                chain = next;
            }
            let (next, mk) = chain.step();
            (mk, Some((next, skipped)))
        };
        let aad = &cell[..CELL_TAG_LEN + GROUP_HEADER_LEN];
        let plain = open_body(&mk, round, aad, body).ok_or(GroupError::Forged)?;
        if plain.len() != plen + GROUP_SIGNATURE_LEN {
            return Err(GroupError::Forged);
        }
        let (payload, sig) = plain.split_at(plen);
        let sig = Signature::from_slice(sig).map_err(|_| GroupError::Forged)?;
        self.verifying
            .verify_strict(
                &signed_message(&self.sender, &self.group, self.epoch, round, index, payload),
                &sig,
            )
            .map_err(|_| GroupError::Forged)?;
        // Everything checks: commit.
        match advance {
            None => {
                self.skipped.remove(&index);
            }
            Some((chain, skipped)) => {
                self.chain = chain;
                self.next = index + 1;
                self.skipped.extend(skipped);
                while self.skipped.len() > MAX_GROUP_SKIPPED {
                    self.skipped.pop_first();
                }
            }
        }
        Ok(Opened {
            index,
            payload: Zeroizing::new(payload.to_vec()),
        })
    }
}

/// Reads a 32-byte key.
fn key32(r: &mut Reader<'_>) -> Result<[u8; 32], WireError> {
    r.array::<32>()
}

fn read_group_epoch(r: &mut Reader<'_>) -> Result<(GroupId, u32), WireError> {
    Ok((GroupId(r.array::<GROUP_ID_LEN>()?), r.u32()?))
}

impl SenderKey {
    /// The group and epoch of this chain.
    #[must_use]
    pub fn epoch(&self) -> (GroupId, u32) {
        (self.group, self.epoch)
    }

    /// Persistent form (secret): `group ‖ epoch ‖ signing key ‖ tag key ‖
    /// header key ‖ chain key ‖ next index`.
    pub(crate) fn encode(&self, w: &mut Writer) {
        w.bytes(&self.sender);
        w.bytes(&self.group.0);
        w.u32(self.epoch);
        let signing = Zeroizing::new(self.signing.to_bytes());
        w.bytes(&*signing);
        w.bytes(self.keys.tags.as_bytes());
        w.bytes(self.keys.header.as_bytes());
        w.bytes(self.keys.chain.as_bytes());
        w.u32(self.next);
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let sender = key32(r)?;
        let (group, epoch) = read_group_epoch(r)?;
        let signing = Zeroizing::new(key32(r)?);
        let keys = ChainKeys {
            tags: TagKey::from_bytes(key32(r)?),
            header: HeaderKey::from_bytes(key32(r)?),
            chain: ChainKey::from_bytes(key32(r)?),
        };
        Ok(Self {
            sender,
            group,
            epoch,
            signing: SigningKey::from_bytes(&signing),
            keys,
            next: r.u32()?,
        })
    }
}

impl ReceiverChain {
    /// A sender chain with this chain's symmetric keys (what any member
    /// holds) and a signing key of the forger's own: a member posing as
    /// another (tests of the signature check).
    #[cfg(test)]
    pub(crate) fn forge<R: CryptoRng + ?Sized>(&self, rng: &mut R) -> SenderKey {
        let mut signing = [0u8; 32];
        rng.fill_bytes(&mut signing);
        SenderKey {
            sender: self.sender,
            group: self.group,
            epoch: self.epoch,
            signing: SigningKey::from_bytes(&signing),
            keys: ChainKeys {
                tags: TagKey::from_bytes(*self.tags.as_bytes()),
                header: HeaderKey::from_bytes(*self.header.as_bytes()),
                chain: ChainKey::from_bytes(*self.chain.as_bytes()),
            },
            next: self.next,
        }
    }

    /// The bundle this chain was made from, at its current index (tests).
    #[cfg(test)]
    pub(crate) fn to_bundle(&self) -> SenderKeyBundle {
        SenderKeyBundle {
            group: self.group,
            epoch: self.epoch,
            start: self.next,
            first_msg: 1,
            keys: ChainKeys {
                tags: TagKey::from_bytes(*self.tags.as_bytes()),
                header: HeaderKey::from_bytes(*self.header.as_bytes()),
                chain: ChainKey::from_bytes(*self.chain.as_bytes()),
            },
            verifying: self.verifying,
        }
    }

    /// Persistent form (secret): `group ‖ epoch ‖ verifying key ‖ tag key
    /// ‖ header key ‖ chain key ‖ next ‖ skipped count u16 ‖ (index u32 ‖
    /// message key)*`.
    pub(crate) fn encode(&self, w: &mut Writer) {
        w.bytes(&self.sender);
        w.bytes(&self.group.0);
        w.u32(self.epoch);
        w.bytes(self.verifying.as_bytes());
        w.bytes(self.tags.as_bytes());
        w.bytes(self.header.as_bytes());
        w.bytes(self.chain.as_bytes());
        w.u32(self.next);
        w.u16(self.skipped.len() as u16);
        for (i, mk) in &self.skipped {
            w.u32(*i);
            w.bytes(mk.as_bytes());
        }
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let sender = key32(r)?;
        let (group, epoch) = read_group_epoch(r)?;
        let verifying = VerifyingKey::from_bytes(&key32(r)?)
            .map_err(|_| WireError::BadField("group verifying key"))?;
        let tags = TagKey::from_bytes(key32(r)?);
        let header = HeaderKey::from_bytes(key32(r)?);
        let chain = ChainKey::from_bytes(key32(r)?);
        let next = r.u32()?;
        let count = usize::from(r.u16()?);
        if count > MAX_GROUP_SKIPPED {
            return Err(WireError::BadField("group skipped keys"));
        }
        let mut skipped = BTreeMap::new();
        for _ in 0..count {
            let i = r.u32()?;
            if i >= next {
                return Err(WireError::BadField("group skipped key index"));
            }
            skipped.insert(i, Box::new(MessageKey::from_bytes(key32(r)?)));
        }
        Ok(Self {
            sender,
            group,
            epoch,
            verifying,
            tags,
            header,
            chain,
            next,
            skipped,
        })
    }
}

#[cfg(test)]
mod tests;
