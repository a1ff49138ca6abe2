//! A session between two contacts: the PQXDH-style key agreement, the
//! per-direction tag and header keys, the receive window of expected tags,
//! and sealing/opening of session cells.
//!
//! Session cell: `tag(16) || header_ct(40 + 16) || body_ct(P + 16)` with
//! `P = cell_size - 88`. Every part is a PRF output or an AEAD ciphertext,
//! so the cell is indistinguishable from random bytes without the keys.

use std::collections::{BTreeMap, BTreeSet};

use rand::CryptoRng;
use x25519_dalek::PublicKey;
use zeroize::Zeroizing;

use super::identity::{PrivateIdentity, PublicIdentity};
use super::kdf::{
    AEAD_TAG, LABEL_HEADER, LABEL_PQXDH, LABEL_SESSION, Secret, hkdf, open, prf, seal, tag16,
};
use super::ratchet::{HEADER_LEN, Header, Ratchet, RatchetError};
use super::writer::Writer;
use crate::wire::WireError;
use crate::wire::reader::Reader;

/// Tag bytes at the start of every cell.
pub const TAG_LEN: usize = 16;
/// Bytes a session cell spends on its tag, header and AEAD tags.
pub const SESSION_OVERHEAD: usize = TAG_LEN + HEADER_LEN + AEAD_TAG + AEAD_TAG;
/// Cells older than this many indices behind the newest received one are
/// given up (out-of-order tolerance).
pub const WINDOW_BACK: u64 = 64;
/// Cells this many indices ahead of the newest received one are expected
/// (loss tolerance).
pub const WINDOW_AHEAD: u64 = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Initiator,
    Responder,
}

/// Why a session cell was not accepted. The session is unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum OpenError {
    #[error("header does not authenticate")]
    Header,
    #[error("body does not authenticate")]
    Body,
    #[error(transparent)]
    Ratchet(#[from] RatchetError),
}

/// The expected tags of one receiving direction.
#[derive(Clone)]
pub(crate) struct RecvWindow {
    key: Secret,
    /// One past the highest index received.
    next: u64,
    /// Indices below `next` (within `WINDOW_BACK`) already received.
    consumed: BTreeSet<u64>,
    /// Cache: index -> tag, for every expected index.
    tags: BTreeMap<u64, [u8; 16]>,
}

impl RecvWindow {
    pub(crate) fn new(key: Secret, next: u64, consumed: BTreeSet<u64>) -> Self {
        let mut w = Self {
            key,
            next,
            consumed,
            tags: BTreeMap::new(),
        };
        w.refill();
        w
    }

    fn low(&self) -> u64 {
        self.next.saturating_sub(WINDOW_BACK)
    }

    fn refill(&mut self) {
        let low = self.low();
        self.consumed.retain(|&i| i >= low);
        self.tags.retain(|&i, _| i >= low);
        for i in low..self.next + WINDOW_AHEAD {
            if !self.consumed.contains(&i) && !self.tags.contains_key(&i) {
                self.tags.insert(i, tag16(&self.key, i));
            }
        }
    }

    pub(crate) fn consume(&mut self, i: u64) {
        self.tags.remove(&i);
        self.consumed.insert(i);
        self.next = self.next.max(i + 1);
        self.refill();
    }

    pub(crate) fn expected(&self) -> impl Iterator<Item = ([u8; 16], u64)> + '_ {
        self.tags.iter().map(|(&i, &t)| (t, i))
    }

    pub(crate) fn tag(&self, i: u64) -> Option<[u8; 16]> {
        self.tags.get(&i).copied()
    }

    pub(crate) fn encode(&self, w: &mut Writer) {
        w.bytes(self.key.as_ref());
        w.u64(self.next);
        w.u32(self.consumed.len() as u32);
        for i in &self.consumed {
            w.u64(*i);
        }
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let key = Zeroizing::new(r.array::<32>()?);
        let next = r.u64()?;
        let n = r.u32()? as usize;
        if n > WINDOW_BACK as usize {
            return Err(WireError::BadField("window"));
        }
        let mut consumed = BTreeSet::new();
        for _ in 0..n {
            consumed.insert(r.u64()?);
        }
        Ok(Self::new(key, next, consumed))
    }
}

/// The output of the key agreement, before the ratchet starts.
struct SessionKeys {
    root: Secret,
    i2r_tags: Secret,
    r2i_tags: Secret,
    i2r_headers: Secret,
    r2i_headers: Secret,
}

/// `SK = HKDF(0^32, 0xFF^32 || DH1 || DH2 || SS, "anonchat pqxdh v1" ||
/// fp_I || fp_R || EK_I || ct)`, then five keys from SK.
fn derive(
    dh1: &Secret,
    dh2: &Secret,
    ss: &Secret,
    fp_i: &[u8; 32],
    fp_r: &[u8; 32],
    ek_i: &[u8; 32],
    ct: &[u8],
) -> SessionKeys {
    let mut ikm = Zeroizing::new(Vec::with_capacity(128));
    ikm.extend_from_slice(&[0xFF; 32]);
    ikm.extend_from_slice(dh1.as_ref());
    ikm.extend_from_slice(dh2.as_ref());
    ikm.extend_from_slice(ss.as_ref());
    let mut sk = Zeroizing::new([0u8; 32]);
    hkdf(
        &[0u8; 32],
        &ikm,
        &[LABEL_PQXDH, fp_i, fp_r, ek_i, ct],
        sk.as_mut(),
    );
    let mut okm = Zeroizing::new([0u8; 160]);
    hkdf(&[0u8; 32], sk.as_ref(), &[LABEL_SESSION], okm.as_mut());
    let part = |i: usize| {
        let mut k = Zeroizing::new([0u8; 32]);
        k.copy_from_slice(&okm[i * 32..i * 32 + 32]);
        k
    };
    SessionKeys {
        root: part(0),
        i2r_tags: part(1),
        r2i_tags: part(2),
        i2r_headers: part(3),
        r2i_headers: part(4),
    }
}

pub(crate) fn x25519(me: &PrivateIdentity, their: &[u8; 32]) -> Option<Secret> {
    let s = me.x25519().diffie_hellman(&PublicKey::from(*their));
    s.was_contributory().then(|| Zeroizing::new(*s.as_bytes()))
}

/// What the initiator sends in its init cells: `EK_I || ct`.
pub(crate) const INIT_DATA_LEN: usize = 32 + super::identity::MLKEM_CT_LEN;

#[derive(Clone)]
pub(crate) struct Session {
    pub(crate) role: Role,
    pub(crate) init_id: [u8; 8],
    /// Initiator: the responder has answered on this session.
    pub(crate) confirmed: bool,
    ratchet: Ratchet,
    send_tags: Secret,
    send_headers: Secret,
    recv_headers: Secret,
    send_next: u64,
    pub(crate) recv: RecvWindow,
}

impl Session {
    /// Starts a session as initiator. Returns it and the init data
    /// (`EK_I || ct`) to send.
    pub(crate) fn initiate<R: CryptoRng + ?Sized>(
        rng: &mut R,
        me: &PrivateIdentity,
        peer: &PublicIdentity,
    ) -> Option<(Self, Zeroizing<Vec<u8>>)> {
        let mut ek_secret = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(ek_secret.as_mut());
        let ek = x25519_dalek::StaticSecret::from(*ek_secret);
        let ek_pub = PublicKey::from(&ek).to_bytes();
        let dh1 = x25519(me, peer.x25519().as_bytes())?;
        let dh2_raw = ek.diffie_hellman(peer.x25519());
        if !dh2_raw.was_contributory() {
            return None;
        }
        let dh2 = Zeroizing::new(*dh2_raw.as_bytes());
        let (ct, ss) = PrivateIdentity::encapsulate_to(rng, peer);
        let keys = derive(
            &dh1,
            &dh2,
            &ss,
            &me.public().fingerprint().0,
            &peer.fingerprint().0,
            &ek_pub,
            &ct,
        );
        let ratchet = Ratchet::alice(rng, &keys.root, peer.x25519().as_bytes()).ok()?;
        let mut init_id = [0u8; 8];
        rng.fill_bytes(&mut init_id);
        let mut data = Zeroizing::new(Vec::with_capacity(INIT_DATA_LEN));
        data.extend_from_slice(&ek_pub);
        data.extend_from_slice(&ct);
        Some((
            Self {
                role: Role::Initiator,
                init_id,
                confirmed: false,
                ratchet,
                send_tags: keys.i2r_tags,
                send_headers: keys.i2r_headers,
                recv_headers: keys.r2i_headers,
                send_next: 0,
                recv: RecvWindow::new(keys.r2i_tags, 0, BTreeSet::new()),
            },
            data,
        ))
    }

    /// Accepts a peer's init data as responder.
    pub(crate) fn respond(
        me: &PrivateIdentity,
        peer: &PublicIdentity,
        init_id: [u8; 8],
        data: &[u8],
    ) -> Option<Self> {
        if data.len() != INIT_DATA_LEN {
            return None;
        }
        let (ek_pub, ct) = data.split_at(32);
        let ek_pub: [u8; 32] = ek_pub.try_into().ok()?;
        let dh1 = x25519(me, peer.x25519().as_bytes())?;
        let dh2 = x25519(me, &ek_pub)?;
        // ML-KEM decapsulation never fails on a well-sized ciphertext
        // (implicit rejection): a forged one yields a key the initiator does
        // not have, and the session simply never opens a cell.
        let ss = me.decapsulate(ct)?;
        let keys = derive(
            &dh1,
            &dh2,
            &ss,
            &peer.fingerprint().0,
            &me.public().fingerprint().0,
            &ek_pub,
            ct,
        );
        Some(Self {
            role: Role::Responder,
            init_id,
            confirmed: true,
            ratchet: Ratchet::bob(&keys.root, me.x25519()),
            send_tags: keys.r2i_tags,
            send_headers: keys.r2i_headers,
            recv_headers: keys.i2r_headers,
            send_next: 0,
            recv: RecvWindow::new(keys.i2r_tags, 0, BTreeSet::new()),
        })
    }

    pub(crate) fn can_send(&self) -> bool {
        self.ratchet.can_send()
    }

    /// Seals `payload` (exactly `cell_size - SESSION_OVERHEAD` bytes) into a
    /// cell under a fresh tag and message key.
    pub(crate) fn seal(&mut self, payload: &[u8]) -> Result<Vec<u8>, RatchetError> {
        let (header, mk) = self.ratchet.send_key()?;
        let i = self.send_next;
        self.send_next += 1;
        let tag = tag16(&self.send_tags, i);
        let hk = prf(&self.send_headers, LABEL_HEADER, i);
        let mut header_ct = header.encode().to_vec();
        seal(&hk, &tag, &mut header_ct);
        let mut aad = Vec::with_capacity(TAG_LEN + header_ct.len());
        aad.extend_from_slice(&tag);
        aad.extend_from_slice(&header_ct);
        let mut body = payload.to_vec();
        seal(&mk, &aad, &mut body);
        let mut cell = aad;
        cell.extend_from_slice(&body);
        Ok(cell)
    }

    /// Opens a cell whose tag matched index `i` of the receive window. On
    /// any failure the session is left exactly as it was.
    pub(crate) fn open<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        i: u64,
        cell: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, OpenError> {
        let header_end = TAG_LEN + HEADER_LEN + AEAD_TAG;
        if cell.len() < SESSION_OVERHEAD {
            return Err(OpenError::Header);
        }
        let tag = &cell[..TAG_LEN];
        let hk = prf(&self.recv_headers, LABEL_HEADER, i);
        let header = open(&hk, tag, &cell[TAG_LEN..header_end])
            .and_then(|h| Header::decode(&h))
            .ok_or(OpenError::Header)?;
        let mut ratchet = self.ratchet.clone();
        let mk = ratchet.receive_key(rng, &header)?;
        let payload = open(&mk, &cell[..header_end], &cell[header_end..]).ok_or(OpenError::Body)?;
        self.ratchet = ratchet;
        self.recv.consume(i);
        Ok(payload)
    }

    pub(crate) fn encode(&self, w: &mut Writer) {
        w.u8(match self.role {
            Role::Initiator => 0,
            Role::Responder => 1,
        });
        w.bytes(&self.init_id);
        w.bool(self.confirmed);
        self.ratchet.encode(w);
        w.bytes(self.send_tags.as_ref());
        w.bytes(self.send_headers.as_ref());
        w.bytes(self.recv_headers.as_ref());
        w.u64(self.send_next);
        self.recv.encode(w);
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let role = match r.u8()? {
            0 => Role::Initiator,
            1 => Role::Responder,
            _ => return Err(WireError::BadField("role")),
        };
        Ok(Self {
            role,
            init_id: r.array()?,
            confirmed: r.u8()? == 1,
            ratchet: Ratchet::decode(r)?,
            send_tags: Zeroizing::new(r.array()?),
            send_headers: Zeroizing::new(r.array()?),
            recv_headers: Zeroizing::new(r.array()?),
            send_next: r.u64()?,
            recv: RecvWindow::decode(r)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_expects_ahead_and_keeps_late_ones() {
        let mut w = RecvWindow::new(Zeroizing::new([1; 32]), 0, BTreeSet::new());
        assert_eq!(w.expected().count(), WINDOW_AHEAD as usize);
        w.consume(5);
        assert!(w.tag(5).is_none(), "a consumed index is not expected again");
        assert!(w.tag(3).is_some(), "an earlier one may still arrive");
        assert!(w.tag(5 + WINDOW_AHEAD).is_some());
        w.consume(3);
        assert!(w.tag(3).is_none());
        w.consume(200);
        assert!(w.tag(201 - WINDOW_BACK - 1).is_none(), "too old: given up");
        assert!(w.tag(201 - WINDOW_BACK).is_some());
        assert_eq!(
            w.expected().count(),
            (WINDOW_BACK + WINDOW_AHEAD) as usize - 1
        );
    }
}
