//! A session between two contacts: the PQXDH-style key agreement, the
//! per-direction tag and header keys, and sealing/opening of session cells.
//!
//! Tags and header keys are indexed by the relay round the cell is sent in:
//! a peer sends at most one cell per round, so an index never repeats, and
//! the receiver knows which tag to expect from each contact in each round
//! however many cells were lost before.
//!
//! Session cell: `cell_tag(16) || header_ct(40 + 16) || body_ct(P + 16)`
//! with `P = cell_size - 88` (each ciphertext ends in a 16-byte AEAD tag). Every part is a PRF output or an AEAD ciphertext,
//! so the cell is indistinguishable from random bytes without the keys.

use rand::CryptoRng;
use x25519_dalek::PublicKey;
use zeroize::Zeroizing;

use super::identity::{PrivateIdentity, PublicIdentity};
use super::kdf::{
    AEAD_TAG_LEN, CELL_TAG_LEN, CellTag, HeaderKey, KeyBytes, LABEL_PQXDH, LABEL_SESSION, RootKey,
    SharedSecret, TagKey, hkdf, key_at, open, seal,
};
use super::ratchet::{HEADER_LEN, Header, Ratchet, RatchetError};
use super::writer::Writer;
use crate::wire::WireError;
use crate::wire::reader::Reader;

/// Bytes a session cell spends on its cell tag, header and two AEAD tags.
pub const SESSION_OVERHEAD: usize = CELL_TAG_LEN + HEADER_LEN + AEAD_TAG_LEN + AEAD_TAG_LEN;
/// A cell from a round more than this many rounds older than the newest
/// cell accepted from the same contact is refused (it bounds the replay
/// record; the relay's backlog is far shorter).
pub const ROUND_WINDOW: u64 = 1024;

/// Which side started a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// We sent the init.
    Initiator,
    /// We answered the peer's init.
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

/// The output of the key agreement, before the ratchet starts.
struct SessionKeys {
    root: RootKey,
    i2r_tags: TagKey,
    r2i_tags: TagKey,
    i2r_headers: HeaderKey,
    r2i_headers: HeaderKey,
}

/// `SK = HKDF(0^32, 0xFF^32 || DH1 || DH2 || SS, "anonchat pqxdh v1" ||
/// fp_I || fp_R || EK_I || ct)`, then five keys from SK.
fn derive(
    dh1: &SharedSecret,
    dh2: &SharedSecret,
    ss: &SharedSecret,
    fp_i: &[u8; 32],
    fp_r: &[u8; 32],
    ek_i: &[u8; 32],
    ct: &[u8],
) -> SessionKeys {
    let mut ikm = Zeroizing::new(Vec::with_capacity(128));
    ikm.extend_from_slice(&[0xFF; 32]);
    ikm.extend_from_slice(dh1.as_bytes());
    ikm.extend_from_slice(dh2.as_bytes());
    ikm.extend_from_slice(ss.as_bytes());
    let sk = hkdf::<32>(&[0u8; 32], &ikm, &[LABEL_PQXDH, fp_i, fp_r, ek_i, ct]);
    let okm = hkdf::<160>(&[0u8; 32], sk.as_ref(), &[LABEL_SESSION]);
    let part = |i: usize| *key_at(&okm[..], i);
    SessionKeys {
        root: RootKey::from_bytes(part(0)),
        i2r_tags: TagKey::from_bytes(part(1)),
        r2i_tags: TagKey::from_bytes(part(2)),
        i2r_headers: HeaderKey::from_bytes(part(3)),
        r2i_headers: HeaderKey::from_bytes(part(4)),
    }
}

/// X25519 between our static key and `their` key; `None` for a
/// non-contributory (low-order) result.
pub(crate) fn x25519(me: &PrivateIdentity, their: &[u8; 32]) -> Option<SharedSecret> {
    let s = me.x25519().diffie_hellman(&PublicKey::from(*their));
    s.was_contributory()
        .then(|| SharedSecret::from_bytes(*s.as_bytes()))
}

/// What the initiator sends in its init cells: `EK_I || ct`.
pub(crate) const INIT_DATA_LEN: usize = 32 + super::identity::MLKEM_CT_LEN;

/// The keys of one session: the Double Ratchet and both directions' tag
/// and header keys. Which side started it, and whether the peer has
/// answered yet, is the contact's [`SessionState`](super::lifecycle::SessionState).
pub(crate) struct Session {
    ratchet: Ratchet,
    send_tags: TagKey,
    send_headers: HeaderKey,
    recv_tags: TagKey,
    recv_headers: HeaderKey,
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
        let dh2 = SharedSecret::from_bytes(*dh2_raw.as_bytes());
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
        let mut data = Zeroizing::new(Vec::with_capacity(INIT_DATA_LEN));
        data.extend_from_slice(&ek_pub);
        data.extend_from_slice(&ct);
        Some((
            Self {
                ratchet,
                send_tags: keys.i2r_tags,
                send_headers: keys.i2r_headers,
                recv_tags: keys.r2i_tags,
                recv_headers: keys.r2i_headers,
            },
            data,
        ))
    }

    /// Accepts a peer's init data as responder.
    pub(crate) fn respond(
        me: &PrivateIdentity,
        peer: &PublicIdentity,
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
            ratchet: Ratchet::bob(keys.root, me.x25519()),
            send_tags: keys.r2i_tags,
            send_headers: keys.r2i_headers,
            recv_tags: keys.i2r_tags,
            recv_headers: keys.i2r_headers,
        })
    }

    /// Whether the ratchet has a sending chain (a responder has one only
    /// once it has received).
    pub(crate) fn can_send(&self) -> bool {
        self.ratchet.can_send()
    }

    /// The tag the peer's cell carries if sent in `round`.
    pub(crate) fn recv_tag(&self, round: u64) -> CellTag {
        self.recv_tags.tag(round)
    }

    /// Seals `payload` (exactly `cell_size - SESSION_OVERHEAD` bytes) into the
    /// cell for `round`, under that round's tag and a fresh message key.
    pub(crate) fn seal(&mut self, round: u64, payload: &[u8]) -> Result<Vec<u8>, RatchetError> {
        let (header, mk) = self.ratchet.send_key()?;
        let tag = self.send_tags.tag(round);
        let hk = self.send_headers.round_key(round);
        let mut header_ct = header.encode().to_vec();
        seal(&hk, &tag, &mut header_ct);
        let mut aad = Vec::with_capacity(CELL_TAG_LEN + header_ct.len());
        aad.extend_from_slice(&tag);
        aad.extend_from_slice(&header_ct);
        let mut body = payload.to_vec();
        seal(&mk, &aad, &mut body);
        let mut cell = aad;
        cell.extend_from_slice(&body);
        Ok(cell)
    }

    /// Opens a cell whose tag matched round `i`. On any failure the session
    /// is left exactly as it was.
    pub(crate) fn open<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        i: u64,
        cell: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, OpenError> {
        let header_end = CELL_TAG_LEN + HEADER_LEN + AEAD_TAG_LEN;
        if cell.len() < SESSION_OVERHEAD {
            return Err(OpenError::Header);
        }
        let tag = &cell[..CELL_TAG_LEN];
        let hk = self.recv_headers.round_key(i);
        let header = open(&hk, tag, &cell[CELL_TAG_LEN..header_end])
            .and_then(|h| Header::decode(&h))
            .ok_or(OpenError::Header)?;
        let mut ratchet = self.ratchet.clone();
        let mk = ratchet.receive_key(rng, &header)?;
        let payload = open(&mk, &cell[..header_end], &cell[header_end..]).ok_or(OpenError::Body)?;
        self.ratchet = ratchet;
        Ok(payload)
    }

    /// Persistent state: the ratchet, then the tag and header keys.
    pub(crate) fn encode(&self, w: &mut Writer) {
        self.ratchet.encode(w);
        w.bytes(self.send_tags.as_bytes());
        w.bytes(self.send_headers.as_bytes());
        w.bytes(self.recv_tags.as_bytes());
        w.bytes(self.recv_headers.as_bytes());
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(Self {
            ratchet: Ratchet::decode(r)?,
            send_tags: TagKey::from_bytes(r.array()?),
            send_headers: HeaderKey::from_bytes(r.array()?),
            recv_tags: TagKey::from_bytes(r.array()?),
            recv_headers: HeaderKey::from_bytes(r.array()?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (Session, Session) {
        let a = PrivateIdentity::generate(&mut rand::rng(), "a", &relay(), 1, 0).unwrap();
        let b = PrivateIdentity::generate(&mut rand::rng(), "b", &relay(), 1, 0).unwrap();
        let (alice, data) = Session::initiate(&mut rand::rng(), &a, b.public()).unwrap();
        let bob = Session::respond(&b, a.public(), &data).unwrap();
        (alice, bob)
    }

    fn relay() -> crate::wire::RelayAddress {
        crate::wire::RelayAddress::new("127.0.0.1", 1, [9; 32]).unwrap()
    }

    const P: usize = 512 - SESSION_OVERHEAD;

    /// Forward secrecy at the session level, with no tag bookkeeping in the
    /// way: once a message is read and the ratchet has stepped, the current
    /// state no longer holds a key that opens it.
    #[test]
    fn earlier_ciphertexts_do_not_open_from_the_current_state() {
        let mut rng = rand::rng();
        let (mut alice, mut bob) = pair();
        let old = alice.seal(10, &[1; P]).unwrap();
        assert!(bob.open(&mut rng, 10, &old).is_ok());
        let reply = bob.seal(11, &[2; P]).unwrap();
        assert!(alice.open(&mut rng, 11, &reply).is_ok());
        let newer = alice.seal(12, &[3; P]).unwrap();
        assert!(bob.open(&mut rng, 12, &newer).is_ok());
        assert_eq!(bob.ratchet.skipped_len(), 0, "no old message key kept");
        assert!(bob.open(&mut rng, 10, &old).is_err());
    }

    #[test]
    fn a_failed_open_changes_nothing() {
        let mut rng = rand::rng();
        let (mut alice, mut bob) = pair();
        let cell = alice.seal(5, &[7; P]).unwrap();
        let mut bad = cell.clone();
        bad[300] ^= 1;
        assert_eq!(bob.open(&mut rng, 5, &bad), Err(OpenError::Body));
        assert_eq!(
            bob.open(&mut rng, 6, &cell),
            Err(OpenError::Header),
            "bound to its round"
        );
        assert_eq!(bob.open(&mut rng, 5, &cell).unwrap().as_slice(), &[7; P]);
    }

    #[test]
    fn both_sides_agree_on_tags_per_round() {
        let (alice, bob) = pair();
        let mut a = alice;
        let cell = a.seal(42, &[0; P]).unwrap();
        assert_eq!(&cell[..CELL_TAG_LEN], &bob.recv_tag(42));
        assert_ne!(bob.recv_tag(42), bob.recv_tag(43));
    }
}
