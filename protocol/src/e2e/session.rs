//! A session between two contacts once the handshake is done: sealing and
//! opening of session cells under the header-encrypting Double Ratchet.
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
use x25519_dalek::StaticSecret;
use zeroize::Zeroizing;

use super::kdf::{
    AEAD_TAG_LEN, CELL_TAG_LEN, CellTag, SessionSeed, open, open_body, seal, seal_body,
};
use super::ratchet::{Epoch, HEADER_LEN, Header, Ratchet, RatchetError};
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
    /// We sent the INIT.
    Initiator,
    /// We answered the peer's INIT.
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

/// The keys of one session: the Double Ratchet with its header and tag
/// keys. Which side started it, and whether it is proven, is the
/// contact's [`Sessions`](super::lifecycle::Sessions).
pub(crate) struct Session {
    ratchet: Ratchet,
}

impl Session {
    /// The initiator's session, once the ACCEPT is read: `peer_ratchet` is
    /// the responder's handshake ephemeral.
    pub(crate) fn initiator<R: CryptoRng + ?Sized>(
        rng: &mut R,
        seed: SessionSeed,
        peer_ratchet: &[u8; 32],
    ) -> Result<Self, RatchetError> {
        Ok(Self {
            ratchet: Ratchet::alice(rng, seed, peer_ratchet)?,
        })
    }

    /// The responder's session: its handshake ephemeral is its first
    /// ratchet key.
    pub(crate) fn responder(seed: SessionSeed, ratchet_key: StaticSecret) -> Self {
        Self {
            ratchet: Ratchet::bob(seed, ratchet_key),
        }
    }

    /// Whether the ratchet has a sending chain (a responder has one only
    /// once it has received).
    pub(crate) fn can_send(&self) -> bool {
        self.ratchet.can_send()
    }

    /// The tags the peer's cell carries if sent in `round`, with the epoch
    /// each belongs to.
    pub(crate) fn expected(&self, round: u64) -> [(Option<CellTag>, Epoch); 2] {
        self.ratchet.expected(round)
    }

    /// Seals `payload` (exactly `cell_size - SESSION_OVERHEAD` bytes) into
    /// the cell for `round`: that round's tag and header key of the sending
    /// epoch, a fresh message key, and the round as the body's nonce.
    pub(crate) fn seal(&mut self, round: u64, payload: &[u8]) -> Result<Vec<u8>, RatchetError> {
        let (header, mk) = self.ratchet.send_key()?;
        let (tags, headers) = self
            .ratchet
            .send_keys()
            .ok_or(RatchetError::NoSendingChain)?;
        let tag = tags.tag(round);
        let hk = headers.round_key(round);
        let mut header_ct = header.encode().to_vec();
        seal(&hk, &tag, &mut header_ct);
        let mut aad = Vec::with_capacity(CELL_TAG_LEN + header_ct.len());
        aad.extend_from_slice(&tag);
        aad.extend_from_slice(&header_ct);
        let mut body = payload.to_vec();
        seal_body(&mk, round, &aad, &mut body);
        let mut cell = aad;
        cell.extend_from_slice(&body);
        Ok(cell)
    }

    /// Opens a cell whose tag matched `epoch` in `round`. On any failure
    /// the session is left exactly as it was.
    pub(crate) fn open<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        epoch: Epoch,
        round: u64,
        cell: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, OpenError> {
        let header_end = CELL_TAG_LEN + HEADER_LEN + AEAD_TAG_LEN;
        if cell.len() < SESSION_OVERHEAD {
            return Err(OpenError::Header);
        }
        let tag = &cell[..CELL_TAG_LEN];
        let hk = self
            .ratchet
            .recv_header(epoch)
            .ok_or(OpenError::Header)?
            .round_key(round);
        let header = open(&hk, tag, &cell[CELL_TAG_LEN..header_end])
            .and_then(|h| Header::decode(&h))
            .ok_or(OpenError::Header)?;
        let mut ratchet = self.ratchet.clone();
        let mk = ratchet.receive_key(rng, epoch, &header)?;
        let payload = open_body(&mk, round, &cell[..header_end], &cell[header_end..])
            .ok_or(OpenError::Body)?;
        // A swap, not a move: the stack slot then holds the old state,
        // which is wiped as it drops, instead of an unwiped copy of the new.
        std::mem::swap(&mut self.ratchet, &mut ratchet);
        Ok(payload)
    }

    /// Every key the session holds (tests of what a stolen state reveals).
    #[cfg(test)]
    pub(crate) fn all_key_bytes(&self) -> Vec<[u8; 32]> {
        self.ratchet.all_key_bytes()
    }

    /// Persistent state: the ratchet.
    pub(crate) fn encode(&self, w: &mut Writer) {
        self.ratchet.encode(w);
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(Self {
            ratchet: Ratchet::decode(r)?,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::e2e::handshake::{Initiator, respond};
    use crate::e2e::identity::PrivateIdentity;

    /// Two test identities (RSA generation is slow: made once).
    pub(crate) fn identities() -> (PrivateIdentity, PrivateIdentity) {
        use std::sync::OnceLock;
        type Secrets = (Zeroizing<Vec<u8>>, Zeroizing<Vec<u8>>);
        static IDS: OnceLock<Secrets> = OnceLock::new();
        let (a, b) = IDS.get_or_init(|| {
            let make = |n| {
                PrivateIdentity::generate(&mut rand::rng(), n, &relay(), 1, 0)
                    .unwrap()
                    .to_secret_bytes()
                    .unwrap()
            };
            (make("a"), make("b"))
        });
        (
            PrivateIdentity::from_secret_bytes(a).unwrap(),
            PrivateIdentity::from_secret_bytes(b).unwrap(),
        )
    }

    pub(crate) fn pair() -> (Session, Session) {
        let mut rng = rand::rng();
        let (a, b) = identities();
        let (hs, init) = Initiator::start(&mut rng, &a, b.public(), 1).unwrap();
        let (bob, accept, _) = respond(&mut rng, &b, a.public(), [7; 8], &init, 2).unwrap();
        let (alice, _) = hs.finish(&mut rng, &a, [7; 8], &accept).unwrap();
        (alice, bob)
    }

    fn relay() -> crate::wire::RelayAddress {
        crate::wire::RelayAddress::new("127.0.0.1", 1, [9; 32]).unwrap()
    }

    const P: usize = 512 - SESSION_OVERHEAD;

    /// The epoch under which `to` expects `cell` in `round`.
    fn epoch(to: &Session, round: u64, cell: &[u8]) -> Epoch {
        to.expected(round)
            .into_iter()
            .find(|(t, _)| t.is_some_and(|t| t[..] == cell[..CELL_TAG_LEN]))
            .map(|(_, e)| e)
            .expect("tag expected")
    }

    fn deliver(to: &mut Session, round: u64, cell: &[u8]) -> Result<Zeroizing<Vec<u8>>, OpenError> {
        let e = epoch(to, round, cell);
        to.open(&mut rand::rng(), e, round, cell)
    }

    /// Forward secrecy at the session level, with no replay record in the
    /// way: once a message is read and the ratchet has stepped, the current
    /// state no longer holds a key that opens it, under either epoch.
    #[test]
    fn earlier_ciphertexts_do_not_open_from_the_current_state() {
        let mut rng = rand::rng();
        let (mut alice, mut bob) = pair();
        let old = alice.seal(10, &[1; P]).unwrap();
        assert!(deliver(&mut bob, 10, &old).is_ok());
        let reply = bob.seal(11, &[2; P]).unwrap();
        assert!(deliver(&mut alice, 11, &reply).is_ok());
        let newer = alice.seal(12, &[3; P]).unwrap();
        assert!(deliver(&mut bob, 12, &newer).is_ok());
        for e in [Epoch::Current, Epoch::Next] {
            assert!(bob.open(&mut rng, e, 10, &old).is_err());
        }
    }

    /// The responder sends only once it has read a cell (its sending
    /// chain comes from the initiator's ratchet key). Checked against
    /// `can_send` always true.
    #[test]
    fn the_responder_sends_only_after_reading() {
        let (mut alice, mut bob) = pair();
        assert!(alice.can_send());
        assert!(!bob.can_send());
        let cell = alice.seal(3, &[1; P]).unwrap();
        assert!(deliver(&mut bob, 3, &cell).is_ok());
        assert!(bob.can_send());
    }

    /// A cell shorter than the overhead is refused without a panic; one of
    /// exactly the overhead (no payload) opens. Checked against `<`
    /// turned into `==` (a short cell panics on the slice) and into `<=`
    /// (the empty cell is refused).
    #[test]
    fn cells_shorter_than_the_overhead_are_refused() {
        let (mut alice, mut bob) = pair();
        for len in [0, 1, CELL_TAG_LEN, SESSION_OVERHEAD - 1] {
            for e in [Epoch::Current, Epoch::Next] {
                assert_eq!(
                    bob.open(&mut rand::rng(), e, 4, &vec![0u8; len]),
                    Err(OpenError::Header),
                    "{len}"
                );
            }
        }
        let empty = alice.seal(4, &[]).unwrap();
        assert_eq!(empty.len(), SESSION_OVERHEAD);
        assert!(deliver(&mut bob, 4, &empty).unwrap().is_empty());
    }

    /// The public `session_payload_len` is what a cell holds: a payload of
    /// that length seals into exactly one cell (mutation run: the helper
    /// returning 0 or 1, or `-` turned into `+` or `/`).
    #[test]
    fn the_published_payload_length_fills_a_cell() {
        let n = crate::e2e::session_payload_len(512);
        assert_eq!(n, P);
        let (mut alice, _) = pair();
        assert_eq!(alice.seal(5, &vec![7; n]).unwrap().len(), 512);
    }

    #[test]
    fn a_failed_open_changes_nothing() {
        let (mut alice, mut bob) = pair();
        let cell = alice.seal(5, &[7; P]).unwrap();
        let mut bad = cell.clone();
        bad[300] ^= 1;
        assert_eq!(deliver(&mut bob, 5, &bad), Err(OpenError::Body));
        assert_eq!(
            bob.open(&mut rand::rng(), Epoch::Next, 6, &cell),
            Err(OpenError::Header),
            "bound to its round"
        );
        assert_eq!(deliver(&mut bob, 5, &cell).unwrap().as_slice(), &[7; P]);
    }

    #[test]
    fn both_sides_agree_on_tags_per_round() {
        let (mut alice, bob) = pair();
        let cell = alice.seal(42, &[0; P]).unwrap();
        assert_eq!(epoch(&bob, 42, &cell), Epoch::Next);
        assert!(
            bob.expected(43)
                .iter()
                .all(|(t, _)| t.is_none_or(|t| t[..] != cell[..CELL_TAG_LEN]))
        );
    }

    /// A restored old state (or a second copy of a home) seals again with
    /// the same message key, but in another round: the body nonce is the
    /// round, so the two bodies share no keystream. Checked against a
    /// fixed nonce: the XOR of the two bodies then equals the XOR of the
    /// two payloads.
    #[test]
    fn a_restored_state_never_reuses_a_keystream() {
        let (mut alice, _bob) = pair();
        let mut w = Writer::new();
        alice.encode(&mut w);
        let saved = w.into_secret();
        let first = alice.seal(20, &[0x11; P]).unwrap();
        let mut copy = Session::decode(&mut Reader::new(&saved)).unwrap();
        let second = copy.seal(21, &[0x22; P]).unwrap();
        let body = CELL_TAG_LEN + HEADER_LEN + AEAD_TAG_LEN;
        let xor_ct: Vec<u8> = first[body..body + P]
            .iter()
            .zip(&second[body..body + P])
            .map(|(a, b)| a ^ b)
            .collect();
        assert_ne!(xor_ct, vec![0x11 ^ 0x22; P]);
    }
}
