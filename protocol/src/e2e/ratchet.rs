//! The Double Ratchet, after Signal's specification (revision 4), with
//! X25519, HKDF-SHA256 for `KDF_RK` and HMAC-SHA256 for `KDF_CK`. Headers
//! are encrypted by the session layer, never sent in clear.
//!
//! State changes are all-or-nothing: the session clones the ratchet before
//! [`Ratchet::receive_key`] and restores the clone if the message does not
//! authenticate, as the specification requires.

use std::collections::VecDeque;

use rand::CryptoRng;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

use super::kdf::{ChainKey, KeyBytes as _, MessageKey, RootKey, SharedSecret};
use super::writer::Writer;
use crate::wire::reader::Reader;

/// Most message keys skipped in one step (a gap larger than this is an
/// attack or a broken peer).
pub const MAX_SKIP: u32 = 256;
/// Most skipped message keys kept per session; the oldest go first.
pub const MAX_SKIPPED_KEYS: usize = 512;
/// Bytes of an encoded header.
pub const HEADER_LEN: usize = 40;

/// A message header: the sender's ratchet key, the length of its previous
/// sending chain, and the message number in the current one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

/// The state of one side of the Double Ratchet, named as in the
/// specification.
#[derive(Clone)]
pub(crate) struct Ratchet {
    dhs: StaticSecret,
    dhr: Option<[u8; 32]>,
    rk: RootKey,
    cks: Option<ChainKey>,
    ckr: Option<ChainKey>,
    ns: u32,
    nr: u32,
    pn: u32,
    skipped: VecDeque<([u8; 32], u32, MessageKey)>,
}

fn dh(secret: &StaticSecret, public: &[u8; 32]) -> Result<SharedSecret, RatchetError> {
    let shared = secret.diffie_hellman(&PublicKey::from(*public));
    if !shared.was_contributory() {
        return Err(RatchetError::BadKey);
    }
    Ok(SharedSecret::from_bytes(*shared.as_bytes()))
}

fn fresh_keypair<R: CryptoRng + ?Sized>(rng: &mut R) -> StaticSecret {
    let mut b = Zeroizing::new([0u8; 32]);
    rng.fill_bytes(b.as_mut());
    StaticSecret::from(*b)
}

impl Ratchet {
    /// The initiator ("Alice"): knows the responder's first ratchet key
    /// (its static X25519 key) and can send at once.
    pub(crate) fn alice<R: CryptoRng + ?Sized>(
        rng: &mut R,
        root: &RootKey,
        bob_ratchet: &[u8; 32],
    ) -> Result<Self, RatchetError> {
        let dhs = fresh_keypair(rng);
        let (rk, cks) = root.ratchet(&dh(&dhs, bob_ratchet)?);
        Ok(Self {
            dhs,
            dhr: Some(*bob_ratchet),
            rk,
            cks: Some(cks),
            ckr: None,
            ns: 0,
            nr: 0,
            pn: 0,
            skipped: VecDeque::new(),
        })
    }

    /// The responder ("Bob"): its first ratchet key pair is its static
    /// X25519 key; it can send once it has received.
    pub(crate) fn bob(root: RootKey, bob_static: &StaticSecret) -> Self {
        Self {
            dhs: bob_static.clone(),
            dhr: None,
            rk: root,
            cks: None,
            ckr: None,
            ns: 0,
            nr: 0,
            pn: 0,
            skipped: VecDeque::new(),
        }
    }

    pub(crate) fn can_send(&self) -> bool {
        self.cks.is_some()
    }

    /// Steps the sending chain: the header to send and the message key.
    pub(crate) fn send_key(&mut self) -> Result<(Header, MessageKey), RatchetError> {
        let ck = self.cks.as_ref().ok_or(RatchetError::NoSendingChain)?;
        let (next, mk) = ck.step();
        self.cks = Some(next);
        let header = Header {
            dh: PublicKey::from(&self.dhs).to_bytes(),
            pn: self.pn,
            n: self.ns,
        };
        self.ns = self.ns.checked_add(1).ok_or(RatchetError::TooManySkipped)?;
        Ok((header, mk))
    }

    /// The message key for a received header, stepping the ratchet as
    /// needed. Mutates: clone first and restore on authentication failure.
    pub(crate) fn receive_key<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        h: &Header,
    ) -> Result<MessageKey, RatchetError> {
        if let Some(pos) = self
            .skipped
            .iter()
            .position(|(dh, n, _)| *dh == h.dh && *n == h.n)
        {
            let (_, _, mk) = self.skipped.remove(pos).ok_or(RatchetError::Replay)?;
            return Ok(mk);
        }
        if self.dhr == Some(h.dh) {
            if h.n < self.nr {
                return Err(RatchetError::Replay);
            }
        } else {
            self.skip_until(h.pn)?;
            self.dh_step(rng, &h.dh)?;
        }
        self.skip_until(h.n)?;
        let ck = self.ckr.as_ref().ok_or(RatchetError::Replay)?;
        let (next, mk) = ck.step();
        self.ckr = Some(next);
        self.nr += 1;
        Ok(mk)
    }

    fn skip_until(&mut self, until: u32) -> Result<(), RatchetError> {
        let Some(dhr) = self.dhr else { return Ok(()) };
        if until > self.nr.saturating_add(MAX_SKIP) {
            return Err(RatchetError::TooManySkipped);
        }
        if let Some(mut ck) = self.ckr.clone() {
            while self.nr < until {
                let (next, mk) = ck.step();
                ck = next;
                if self.skipped.len() >= MAX_SKIPPED_KEYS {
                    self.skipped.pop_front();
                }
                self.skipped.push_back((dhr, self.nr, mk));
                self.nr += 1;
            }
            self.ckr = Some(ck);
        }
        Ok(())
    }

    fn dh_step<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        their: &[u8; 32],
    ) -> Result<(), RatchetError> {
        self.pn = self.ns;
        self.ns = 0;
        self.nr = 0;
        self.dhr = Some(*their);
        let (rk, ckr) = self.rk.ratchet(&dh(&self.dhs, their)?);
        self.dhs = fresh_keypair(rng);
        let (rk, cks) = rk.ratchet(&dh(&self.dhs, their)?);
        self.rk = rk;
        self.ckr = Some(ckr);
        self.cks = Some(cks);
        Ok(())
    }

    /// Number of skipped keys held (for tests and bounds).
    #[cfg(test)]
    pub(crate) fn skipped_len(&self) -> usize {
        self.skipped.len()
    }

    pub(crate) fn encode(&self, w: &mut Writer) {
        w.bytes(self.dhs.as_bytes());
        w.bool(self.dhr.is_some());
        w.bytes(&self.dhr.unwrap_or_default());
        w.bytes(self.rk.as_bytes());
        for ck in [&self.cks, &self.ckr] {
            w.bool(ck.is_some());
            w.bytes(ck.as_ref().map_or(&[0u8; 32], |k| k.as_bytes()));
        }
        w.u32(self.ns);
        w.u32(self.nr);
        w.u32(self.pn);
        w.u32(self.skipped.len() as u32);
        for (dh, n, mk) in &self.skipped {
            w.bytes(dh);
            w.u32(*n);
            w.bytes(mk.as_bytes());
        }
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, crate::wire::WireError> {
        let dhs = StaticSecret::from(r.array::<32>()?);
        let has_dhr = r.u8()? == 1;
        let dhr = r.array::<32>()?;
        let rk = RootKey::from_bytes(r.array()?);
        let mut chain = || -> Result<Option<ChainKey>, crate::wire::WireError> {
            let has = r.u8()? == 1;
            let k = ChainKey::from_bytes(r.array()?);
            Ok(has.then_some(k))
        };
        let cks = chain()?;
        let ckr = chain()?;
        let ns = r.u32()?;
        let nr = r.u32()?;
        let pn = r.u32()?;
        let count = r.u32()? as usize;
        if count > MAX_SKIPPED_KEYS {
            return Err(crate::wire::WireError::BadField("skipped keys"));
        }
        let mut skipped = VecDeque::with_capacity(count);
        for _ in 0..count {
            skipped.push_back((r.array()?, r.u32()?, MessageKey::from_bytes(r.array()?)));
        }
        Ok(Self {
            dhs,
            dhr: has_dhr.then_some(dhr),
            rk,
            cks,
            ckr,
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

    fn pair() -> (Ratchet, Ratchet) {
        let mut rng = rand::rng();
        let root = RootKey::from_bytes([3u8; 32]);
        let bob_static = fresh_keypair(&mut rng);
        let bob_pub = PublicKey::from(&bob_static).to_bytes();
        (
            Ratchet::alice(&mut rng, &root, &bob_pub).unwrap(),
            Ratchet::bob(root, &bob_static),
        )
    }

    /// Message keys have no `PartialEq` (nor `Debug`): compare their bytes.
    fn same(a: &MessageKey, b: &MessageKey) -> bool {
        a.as_bytes() == b.as_bytes()
    }

    #[test]
    fn both_sides_derive_the_same_keys_across_dh_steps() {
        let mut rng = rand::rng();
        let (mut a, mut b) = pair();
        assert!(!b.can_send());
        for round in 0..4 {
            for _ in 0..3 {
                let (h, k) = a.send_key().unwrap();
                assert!(
                    same(&b.receive_key(&mut rng, &h).unwrap(), &k),
                    "round {round}"
                );
            }
            for _ in 0..2 {
                let (h, k) = b.send_key().unwrap();
                assert!(same(&a.receive_key(&mut rng, &h).unwrap(), &k));
            }
        }
    }

    #[test]
    fn out_of_order_keys_come_from_the_skipped_store_once() {
        let mut rng = rand::rng();
        let (mut a, mut b) = pair();
        let m: Vec<_> = (0..4).map(|_| a.send_key().unwrap()).collect();
        assert!(same(&b.receive_key(&mut rng, &m[3].0).unwrap(), &m[3].1));
        assert_eq!(b.skipped_len(), 3);
        assert!(same(&b.receive_key(&mut rng, &m[1].0).unwrap(), &m[1].1));
        assert_eq!(
            b.receive_key(&mut rng, &m[1].0).err(),
            Some(RatchetError::Replay)
        );
        assert_eq!(
            b.receive_key(&mut rng, &m[3].0).err(),
            Some(RatchetError::Replay)
        );
        assert_eq!(b.skipped_len(), 2);
    }

    #[test]
    fn huge_gaps_are_refused() {
        let mut rng = rand::rng();
        let (mut a, mut b) = pair();
        let (mut h, _) = a.send_key().unwrap();
        h.n = MAX_SKIP + 1;
        assert_eq!(
            b.receive_key(&mut rng, &h).err(),
            Some(RatchetError::TooManySkipped)
        );
    }

    #[test]
    fn low_order_ratchet_keys_are_refused() {
        let mut rng = rand::rng();
        let (mut a, mut b) = pair();
        let (mut h, _) = a.send_key().unwrap();
        h.dh = [0u8; 32];
        assert_eq!(
            b.receive_key(&mut rng, &h).err(),
            Some(RatchetError::BadKey)
        );
    }

    #[test]
    #[allow(clippy::many_single_char_names)]
    fn encode_decode_round_trip() {
        let mut rng = rand::rng();
        let (mut a, mut b) = pair();
        let (h, _) = a.send_key().unwrap();
        let (h2, k2) = a.send_key().unwrap();
        b.receive_key(&mut rng, &h2).unwrap();
        let mut w = Writer::new();
        b.encode(&mut w);
        let bytes = w.into_secret();
        let mut r = Reader::new(&bytes);
        let mut b2 = Ratchet::decode(&mut r).unwrap();
        r.expect_end().unwrap();
        // The restored state still holds the skipped key of message 0.
        assert!(b2.receive_key(&mut rng, &h).is_ok());
        assert_eq!(
            b2.receive_key(&mut rng, &h2).err(),
            Some(RatchetError::Replay)
        );
        let _ = k2;
    }
}
