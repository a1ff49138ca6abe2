//! The Double Ratchet with header encryption, after Signal's specification
//! (revision 4, section 4, "Double Ratchet with header encryption"), with
//! X25519, HKDF-SHA256 for `KDF_RK_HE` and HMAC-SHA256 for `KDF_CK`.
//!
//! Besides the header key, every epoch (one sending chain between two DH
//! steps) has a tag key: the tags that say which cells are ours come from
//! it. Both come out of the root KDF at each DH step, so a state stolen
//! today holds neither the header keys nor the tag keys of epochs before
//! the last step: it cannot tell which past cells were this pair's
//! (metadata forward secrecy).
//!
//! The receiver keeps the current epoch's keys (`hkr`, `tkr`) and the next
//! epoch's (`nhkr`, `ntkr`): a cell under the next tag key is the peer's
//! DH step. Skipped message keys are kept for the current receiving epoch
//! only and dropped at the next step (the message layer retransmits what
//! they would have opened), so no older epoch's key survives a step.
//!
//! State changes are all-or-nothing: the session clones the ratchet before
//! a receive step and keeps the clone only if the cell authenticates.

use std::collections::VecDeque;

use rand::CryptoRng;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

use super::kdf::{
    CellTag, ChainKey, EpochKeys, HeaderKey, KeyBytes as _, MessageKey, RootKey, SessionSeed,
    SharedSecret, TagKey,
};
use super::writer::{Writer, read_bool};
use crate::wire::WireError;
use crate::wire::reader::Reader;

/// Most message keys skipped in one step (a gap larger than this is an
/// attack or a broken peer).
pub const MAX_SKIP: u32 = 256;
/// Most skipped message keys kept per session; the oldest go first.
pub const MAX_SKIPPED_KEYS: usize = 512;
/// Bytes of an encoded header.
pub const HEADER_LEN: usize = 40;

/// A message header: the sender's ratchet key, the length of its previous
/// sending chain, and the message number in the current one. What header
/// encryption hides: no `Debug` outside tests, so no log can print it.
#[derive(Clone, Copy, PartialEq, Eq)]
#[cfg_attr(test, derive(Debug))]
pub(crate) struct Header {
    pub(crate) dh: [u8; 32],
    pub(crate) pn: u32,
    pub(crate) n: u32,
}

impl Header {
    pub(crate) fn encode(&self) -> Zeroizing<Vec<u8>> {
        let mut v = Zeroizing::new(Vec::with_capacity(HEADER_LEN));
        v.extend_from_slice(&self.dh);
        v.extend_from_slice(&self.pn.to_be_bytes());
        v.extend_from_slice(&self.n.to_be_bytes());
        v
    }

    pub(crate) fn decode(b: &[u8]) -> Option<Self> {
        let mut r = Reader::new(b);
        let h = Self {
            dh: r.array().ok()?,
            pn: r.u32().ok()?,
            n: r.u32().ok()?,
        };
        r.expect_end().ok()?;
        Some(h)
    }
}

/// Why the ratchet gave no key. The caller restores its clone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum RatchetError {
    #[error("message is a replay or its key was already used")]
    Replay,
    #[error("message skips more than {MAX_SKIP} keys")]
    TooManySkipped,
    #[error("the peer's ratchet key is a low-order point")]
    BadKey,
    #[error("this side cannot send before it has received")]
    NoSendingChain,
}

/// Which of the receiver's two tag keys a cell matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Epoch {
    /// The current receiving epoch.
    Current,
    /// The next one: the peer has made a DH step.
    Next,
}

/// One chain with the header and tag keys of its epoch.
#[derive(Clone)]
struct Chain {
    header: HeaderKey,
    tags: TagKey,
    ck: ChainKey,
}

/// The state of one side, named as in the specification.
#[derive(Clone)]
pub(crate) struct Ratchet {
    dhs: StaticSecret,
    dhr: Option<[u8; 32]>,
    rk: RootKey,
    send: Option<Chain>,
    recv: Option<Chain>,
    nhks: HeaderKey,
    ntks: TagKey,
    nhkr: HeaderKey,
    ntkr: TagKey,
    ns: u32,
    nr: u32,
    pn: u32,
    /// Skipped message keys of the current receiving epoch: (n, key).
    /// Boxed, so that the deque's reallocations and removals move only
    /// pointers: each key is wiped where it lives when it is dropped.
    skipped: VecDeque<(u32, Box<MessageKey>)>,
}

fn dh(secret: &StaticSecret, public: &[u8; 32]) -> Result<SharedSecret, RatchetError> {
    let shared = secret.diffie_hellman(&PublicKey::from(*public));
    if !shared.was_contributory() {
        return Err(RatchetError::BadKey);
    }
    Ok(SharedSecret::from_bytes(*shared.as_bytes()))
}

pub(crate) fn fresh_keypair<R: CryptoRng + ?Sized>(rng: &mut R) -> StaticSecret {
    let mut b = Zeroizing::new([0u8; 32]);
    rng.fill_bytes(b.as_mut());
    StaticSecret::from(*b)
}

impl Ratchet {
    /// The initiator ("Alice"): knows the responder's first ratchet key
    /// (its handshake ephemeral) and can send at once.
    pub(crate) fn alice<R: CryptoRng + ?Sized>(
        rng: &mut R,
        seed: SessionSeed,
        bob_ratchet: &[u8; 32],
    ) -> Result<Self, RatchetError> {
        let dhs = fresh_keypair(rng);
        let (rk, next) = seed.root.ratchet(&dh(&dhs, bob_ratchet)?);
        let EpochKeys {
            chain,
            next_header,
            next_tags,
        } = next;
        Ok(Self {
            dhs,
            dhr: Some(*bob_ratchet),
            rk,
            send: Some(Chain {
                header: seed.i2r_header,
                tags: seed.i2r_tags,
                ck: chain,
            }),
            recv: None,
            nhks: next_header,
            ntks: next_tags,
            nhkr: seed.r2i_header,
            ntkr: seed.r2i_tags,
            ns: 0,
            nr: 0,
            pn: 0,
            skipped: VecDeque::new(),
        })
    }

    /// The responder ("Bob"): its first ratchet key pair is its handshake
    /// ephemeral; it can send once it has received.
    pub(crate) fn bob(seed: SessionSeed, ratchet_key: StaticSecret) -> Self {
        Self {
            dhs: ratchet_key,
            dhr: None,
            rk: seed.root,
            send: None,
            recv: None,
            nhks: seed.r2i_header,
            ntks: seed.r2i_tags,
            nhkr: seed.i2r_header,
            ntkr: seed.i2r_tags,
            ns: 0,
            nr: 0,
            pn: 0,
            skipped: VecDeque::new(),
        }
    }

    pub(crate) fn can_send(&self) -> bool {
        self.send.is_some()
    }

    /// The tags a cell from the peer carries in `round`: under the current
    /// receiving epoch (if any) and under the next.
    pub(crate) fn expected(&self, round: u64) -> [(Option<CellTag>, Epoch); 2] {
        [
            (
                self.recv.as_ref().map(|c| c.tags.tag(round)),
                Epoch::Current,
            ),
            (Some(self.ntkr.tag(round)), Epoch::Next),
        ]
    }

    /// The header key of a receiving epoch.
    pub(crate) fn recv_header(&self, epoch: Epoch) -> Option<&HeaderKey> {
        match epoch {
            Epoch::Current => self.recv.as_ref().map(|c| &c.header),
            Epoch::Next => Some(&self.nhkr),
        }
    }

    /// The tag and header keys of the sending epoch.
    pub(crate) fn send_keys(&self) -> Option<(&TagKey, &HeaderKey)> {
        self.send.as_ref().map(|c| (&c.tags, &c.header))
    }

    /// Steps the sending chain: the header to send and the message key.
    pub(crate) fn send_key(&mut self) -> Result<(Header, MessageKey), RatchetError> {
        let chain = self.send.as_mut().ok_or(RatchetError::NoSendingChain)?;
        let (next, mk) = chain.ck.step();
        chain.ck = next;
        let header = Header {
            dh: PublicKey::from(&self.dhs).to_bytes(),
            pn: self.pn,
            n: self.ns,
        };
        self.ns = self.ns.checked_add(1).ok_or(RatchetError::TooManySkipped)?;
        Ok((header, mk))
    }

    /// The message key for a header opened under `epoch`'s header key,
    /// stepping the ratchet as needed. Mutates: clone first and keep the
    /// clone only if the body authenticates.
    pub(crate) fn receive_key<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        epoch: Epoch,
        h: &Header,
    ) -> Result<MessageKey, RatchetError> {
        match epoch {
            Epoch::Current => {
                if self.dhr != Some(h.dh) {
                    return Err(RatchetError::BadKey);
                }
                if let Some(pos) = self.skipped.iter().position(|(n, _)| *n == h.n) {
                    let (_, mk) = self.skipped.remove(pos).ok_or(RatchetError::Replay)?;
                    // A copy out; the box is wiped as it drops.
                    return Ok(MessageKey::from_bytes(*mk.as_bytes()));
                }
                if h.n < self.nr {
                    return Err(RatchetError::Replay);
                }
            }
            Epoch::Next => {
                if self.dhr == Some(h.dh) {
                    return Err(RatchetError::Replay);
                }
                self.dh_step(rng, &h.dh)?;
            }
        }
        self.skip_until(h.n)?;
        let chain = self.recv.as_mut().ok_or(RatchetError::Replay)?;
        let (next, mk) = chain.ck.step();
        chain.ck = next;
        self.nr = self.nr.checked_add(1).ok_or(RatchetError::TooManySkipped)?;
        Ok(mk)
    }

    fn skip_until(&mut self, until: u32) -> Result<(), RatchetError> {
        if until > self.nr.saturating_add(MAX_SKIP) {
            return Err(RatchetError::TooManySkipped);
        }
        let chain = self.recv.as_mut().ok_or(RatchetError::Replay)?;
        while self.nr < until {
            let (next, mk) = chain.ck.step();
            chain.ck = next;
            if self.skipped.len() >= MAX_SKIPPED_KEYS {
                self.skipped.pop_front();
            }
            self.skipped.push_back((self.nr, Box::new(mk)));
            self.nr += 1;
        }
        Ok(())
    }

    /// `DHRatchetHE`: the next epochs become current in both directions,
    /// and the root KDF yields the chains and the epochs after them. Every
    /// key of the epoch left behind is dropped here.
    fn dh_step<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        their: &[u8; 32],
    ) -> Result<(), RatchetError> {
        self.pn = self.ns;
        self.ns = 0;
        self.nr = 0;
        self.skipped.clear();
        self.dhr = Some(*their);
        let (rk, recv) = self.rk.ratchet(&dh(&self.dhs, their)?);
        self.dhs = fresh_keypair(rng);
        let (rk, send) = rk.ratchet(&dh(&self.dhs, their)?);
        self.rk = rk;
        self.recv = Some(Chain {
            header: std::mem::replace(&mut self.nhkr, recv.next_header),
            tags: std::mem::replace(&mut self.ntkr, recv.next_tags),
            ck: recv.chain,
        });
        self.send = Some(Chain {
            header: std::mem::replace(&mut self.nhks, send.next_header),
            tags: std::mem::replace(&mut self.ntks, send.next_tags),
            ck: send.chain,
        });
        Ok(())
    }

    /// Number of skipped keys held (for tests and bounds).
    #[cfg(test)]
    pub(crate) fn skipped_len(&self) -> usize {
        self.skipped.len()
    }

    /// Every key the state holds, as bytes (tests of what a stolen state
    /// can compute).
    #[cfg(test)]
    pub(crate) fn all_key_bytes(&self) -> Vec<[u8; 32]> {
        let mut v = vec![
            self.dhs.to_bytes(),
            *self.rk.as_bytes(),
            *self.nhks.as_bytes(),
            *self.ntks.as_bytes(),
            *self.nhkr.as_bytes(),
            *self.ntkr.as_bytes(),
        ];
        for c in [&self.send, &self.recv].into_iter().flatten() {
            v.extend([*c.header.as_bytes(), *c.tags.as_bytes(), *c.ck.as_bytes()]);
        }
        v.extend(self.skipped.iter().map(|(_, k)| *k.as_bytes()));
        v
    }

    pub(crate) fn encode(&self, w: &mut Writer) {
        w.bytes(self.dhs.as_bytes());
        w.bool(self.dhr.is_some());
        w.bytes(&self.dhr.unwrap_or_default());
        w.bytes(self.rk.as_bytes());
        for chain in [&self.send, &self.recv] {
            w.bool(chain.is_some());
            if let Some(c) = chain {
                w.bytes(c.header.as_bytes());
                w.bytes(c.tags.as_bytes());
                w.bytes(c.ck.as_bytes());
            }
        }
        for k in [&self.nhks, &self.nhkr] {
            w.bytes(k.as_bytes());
        }
        for k in [&self.ntks, &self.ntkr] {
            w.bytes(k.as_bytes());
        }
        w.u32(self.ns);
        w.u32(self.nr);
        w.u32(self.pn);
        w.u32(self.skipped.len() as u32);
        for (n, mk) in &self.skipped {
            w.u32(*n);
            w.bytes(mk.as_bytes());
        }
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let dhs = StaticSecret::from(r.array::<32>()?);
        let has_dhr = read_bool(r)?;
        let dhr = r.array::<32>()?;
        let rk = RootKey::from_bytes(r.array()?);
        let mut chain = || -> Result<Option<Chain>, WireError> {
            if !read_bool(r)? {
                return Ok(None);
            }
            Ok(Some(Chain {
                header: HeaderKey::from_bytes(r.array()?),
                tags: TagKey::from_bytes(r.array()?),
                ck: ChainKey::from_bytes(r.array()?),
            }))
        };
        let send = chain()?;
        let recv = chain()?;
        let next_send_header = HeaderKey::from_bytes(r.array()?);
        let next_recv_header = HeaderKey::from_bytes(r.array()?);
        let next_send_tags = TagKey::from_bytes(r.array()?);
        let next_recv_tags = TagKey::from_bytes(r.array()?);
        let ns = r.u32()?;
        let nr = r.u32()?;
        let pn = r.u32()?;
        let count = r.u32()? as usize;
        if count > MAX_SKIPPED_KEYS {
            return Err(WireError::BadField("skipped keys"));
        }
        let mut skipped = VecDeque::with_capacity(count);
        for _ in 0..count {
            skipped.push_back((r.u32()?, Box::new(MessageKey::from_bytes(r.array()?))));
        }
        if recv.is_some() && !has_dhr {
            return Err(WireError::BadField("ratchet state"));
        }
        Ok(Self {
            dhs,
            dhr: has_dhr.then_some(dhr),
            rk,
            send,
            recv,
            nhks: next_send_header,
            ntks: next_send_tags,
            nhkr: next_recv_header,
            ntkr: next_recv_tags,
            ns,
            nr,
            pn,
            skipped,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed() -> SessionSeed {
        SessionSeed {
            root: RootKey::from_bytes([3u8; 32]),
            i2r_header: HeaderKey::from_bytes([4u8; 32]),
            i2r_tags: TagKey::from_bytes([5u8; 32]),
            r2i_header: HeaderKey::from_bytes([6u8; 32]),
            r2i_tags: TagKey::from_bytes([7u8; 32]),
        }
    }

    fn pair() -> (Ratchet, Ratchet) {
        let mut rng = rand::rng();
        let bob_key = fresh_keypair(&mut rng);
        let bob_pub = PublicKey::from(&bob_key).to_bytes();
        (
            Ratchet::alice(&mut rng, seed(), &bob_pub).unwrap(),
            Ratchet::bob(seed(), bob_key),
        )
    }

    /// Message keys have no `PartialEq` (nor `Debug`): compare their bytes.
    fn same(a: &MessageKey, b: &MessageKey) -> bool {
        a.as_bytes() == b.as_bytes()
    }

    /// The epoch a receiver sorts a cell into: the one whose tag matches.
    fn epoch_of(receiver: &Ratchet, sender: &Ratchet) -> Epoch {
        let (tags, _) = sender.send_keys().unwrap();
        let tag = tags.tag(9);
        receiver
            .expected(9)
            .into_iter()
            .find(|(t, _)| *t == Some(tag))
            .map(|(_, e)| e)
            .expect("the receiver expects the sender's tag")
    }

    #[test]
    fn both_sides_derive_the_same_keys_across_dh_steps() {
        let mut rng = rand::rng();
        let (mut a, mut b) = pair();
        assert!(!b.can_send());
        for round in 0..4 {
            for i in 0..3 {
                let epoch = epoch_of(&b, &a);
                assert_eq!(epoch == Epoch::Next, i == 0, "round {round}");
                let (h, k) = a.send_key().unwrap();
                assert!(
                    same(&b.receive_key(&mut rng, epoch, &h).unwrap(), &k),
                    "round {round}"
                );
            }
            for _ in 0..2 {
                let epoch = epoch_of(&a, &b);
                let (h, k) = b.send_key().unwrap();
                assert!(same(&a.receive_key(&mut rng, epoch, &h).unwrap(), &k));
            }
        }
    }

    #[test]
    fn out_of_order_keys_come_from_the_skipped_store_once() {
        let mut rng = rand::rng();
        let (mut a, mut b) = pair();
        let m: Vec<_> = (0..4).map(|_| a.send_key().unwrap()).collect();
        assert!(same(
            &b.receive_key(&mut rng, Epoch::Next, &m[3].0).unwrap(),
            &m[3].1
        ));
        assert_eq!(b.skipped_len(), 3);
        assert!(same(
            &b.receive_key(&mut rng, Epoch::Current, &m[1].0).unwrap(),
            &m[1].1
        ));
        for i in [1, 3] {
            assert_eq!(
                b.receive_key(&mut rng, Epoch::Current, &m[i].0).err(),
                Some(RatchetError::Replay)
            );
        }
        assert_eq!(b.skipped_len(), 2);
    }

    /// Checked against keeping the skipped keys across a DH step: the old
    /// epoch's message key is then still there.
    #[test]
    fn a_dh_step_drops_every_key_of_the_epoch_before() {
        let mut rng = rand::rng();
        let (mut a, mut b) = pair();
        let m: Vec<_> = (0..3).map(|_| a.send_key().unwrap()).collect();
        b.receive_key(&mut rng, Epoch::Next, &m[2].0).unwrap();
        assert_eq!(b.skipped_len(), 2);
        let (h, _) = b.send_key().unwrap();
        a.receive_key(&mut rng, Epoch::Next, &h).unwrap();
        let (h, _) = a.send_key().unwrap();
        b.receive_key(&mut rng, Epoch::Next, &h).unwrap();
        assert_eq!(b.skipped_len(), 0);
        let old = b.all_key_bytes();
        assert!(!old.contains(m[0].1.as_bytes()));
    }

    #[test]
    fn huge_gaps_are_refused() {
        let mut rng = rand::rng();
        let (mut a, mut b) = pair();
        let (mut h, _) = a.send_key().unwrap();
        h.n = MAX_SKIP + 1;
        assert_eq!(
            b.receive_key(&mut rng, Epoch::Next, &h).err(),
            Some(RatchetError::TooManySkipped)
        );
    }

    /// The skip bound is inclusive: a gap of exactly `MAX_SKIP` keys is
    /// allowed. (Found by cargo mutants: `>` → `>=` survived.)
    #[test]
    fn a_gap_of_exactly_max_skip_is_accepted() {
        let mut rng = rand::rng();
        let (mut a, mut b) = pair();
        let mut last = None;
        for _ in 0..=MAX_SKIP {
            last = Some(a.send_key().unwrap());
        }
        let (h, k) = last.unwrap();
        assert_eq!(h.n, MAX_SKIP);
        assert!(same(&b.receive_key(&mut rng, Epoch::Next, &h).unwrap(), &k));
        assert_eq!(b.skipped_len(), MAX_SKIP as usize);
    }

    /// A saved state holding more skipped keys than the bound is refused;
    /// exactly the bound loads. (Found by cargo mutants: `>` → `>=` and
    /// `>` → `==` in the decoder survived.)
    #[test]
    fn a_state_beyond_the_skipped_key_bound_is_refused() {
        let mut rng = rand::rng();
        let (mut a, mut b) = pair();
        let mut h = None;
        for _ in 0..=MAX_SKIP {
            h = Some(a.send_key().unwrap().0);
        }
        b.receive_key(&mut rng, Epoch::Next, &h.unwrap()).unwrap();
        // Fill the store to its bound with made-up keys.
        while b.skipped.len() < MAX_SKIPPED_KEYS {
            let n = 10_000 + b.skipped.len() as u32;
            b.skipped
                .push_back((n, Box::new(MessageKey::from_bytes([7; 32]))));
        }
        let encode = |r: &Ratchet| {
            let mut w = Writer::new();
            r.encode(&mut w);
            w.into_secret()
        };
        let full = encode(&b);
        assert!(Ratchet::decode(&mut Reader::new(&full)).is_ok());
        b.skipped
            .push_back((99_999, Box::new(MessageKey::from_bytes([8; 32]))));
        let over = encode(&b);
        assert!(Ratchet::decode(&mut Reader::new(&over)).is_err());
    }

    #[test]
    fn low_order_ratchet_keys_are_refused() {
        let mut rng = rand::rng();
        let (mut a, mut b) = pair();
        let (mut h, _) = a.send_key().unwrap();
        h.dh = [0u8; 32];
        assert_eq!(
            b.receive_key(&mut rng, Epoch::Next, &h).err(),
            Some(RatchetError::BadKey)
        );
    }

    #[test]
    fn encode_decode_round_trip() {
        let mut rng = rand::rng();
        let (mut a, mut b) = pair();
        let (h0, _) = a.send_key().unwrap();
        let (h1, _) = a.send_key().unwrap();
        b.receive_key(&mut rng, Epoch::Next, &h1).unwrap();
        let mut w = Writer::new();
        b.encode(&mut w);
        let bytes = w.into_secret();
        let mut r = Reader::new(&bytes);
        let mut b2 = Ratchet::decode(&mut r).unwrap();
        r.expect_end().unwrap();
        assert_eq!(b2.all_key_bytes(), b.all_key_bytes());
        // The restored state still holds the skipped key of message 0.
        assert!(b2.receive_key(&mut rng, Epoch::Current, &h0).is_ok());
        assert_eq!(
            b2.receive_key(&mut rng, Epoch::Current, &h1).err(),
            Some(RatchetError::Replay)
        );
    }
}
