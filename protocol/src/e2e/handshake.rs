//! The session start (protocol v2): an interactive hybrid handshake in the
//! shape of Noise KK, with ML-KEM-768 in both directions (as `PQNoise`'s
//! pqKK). Both sides already hold each other's static keys from the
//! identity files.
//!
//! ```text
//! prologue: h = SHA-256(name); MixHash(fp_I, fp_R, s_I, s_R)
//! INIT    -> e, ekem, es, ss, ct1 = Encaps(K_R), payload
//! ACCEPT  <- init_id, e, ee, se, ct2 = Encaps(ekem), ct3 = Encaps(K_I), payload
//! ```
//!
//! The root key mixes es, ss, ee, se and the three KEM secrets under a
//! transcript hash of everything sent and both fingerprints. Nothing of
//! one side's static keys alone lets anyone finish it as the other side:
//! whoever holds only the responder's X25519 secret can build an INIT that
//! the responder answers, but cannot derive the session (it lacks se and
//! the KEM secret to the initiator's static key), so the responder never
//! opens a cell under it and never treats it as the contact (key-compromise
//! impersonation). The ephemeral X25519 and ML-KEM keys make the very first
//! message forward-secret. Byte layouts: `docs/protocol.md`, "Session start".

use ml_kem::kem::{Decapsulate as _, Encapsulate as _, KeyExport as _};
use ml_kem::{DecapsulationKey768, EncapsulationKey768, Seed};
use rand::CryptoRng;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::{Zeroize as _, Zeroizing};

use super::identity::{MLKEM_CT_LEN, MLKEM_EK_LEN, PrivateIdentity, PublicIdentity};
use super::init::InitId;
use super::kdf::{AEAD_TAG_LEN, KeyBytes as _, SharedSecret, SymmetricState};
use super::session::Session;
use super::writer::Writer;
use crate::wire::WireError;
use crate::wire::reader::Reader;

/// The end-to-end protocol version the handshake carries.
pub const E2E_VERSION: u8 = 2;
const KIND_INIT: u8 = 1;
const KIND_ACCEPT: u8 = 2;
/// Bytes of the encrypted payload of either message: the sender's
/// incarnation of the contact record (see [`Incarnation`]) and the AEAD tag.
const PAYLOAD_LEN: usize = 8 + AEAD_TAG_LEN;
/// Bytes of an INIT: kind, version, e, ekem, ct1, payload.
pub const INIT_LEN: usize = 2 + 32 + MLKEM_EK_LEN + MLKEM_CT_LEN + PAYLOAD_LEN;
/// Bytes of an ACCEPT: kind, version, init id, e, ct2, ct3, payload.
pub const ACCEPT_LEN: usize = 2 + 8 + 32 + 2 * MLKEM_CT_LEN + PAYLOAD_LEN;

/// A random number drawn when a contact is added: it tells the peer, at
/// the next session start, whether it still talks to the same contact
/// record (and so the same message numbering) or to one re-added since.
pub(crate) type Incarnation = u64;

/// Why a handshake message was refused. Nothing changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum HandshakeError {
    #[error("the contact speaks end-to-end protocol version {0}; both sides need version 2")]
    Version(u8),
    #[error("malformed handshake message")]
    Malformed,
    #[error("a key in the handshake is unusable")]
    BadKey,
    #[error("the handshake does not authenticate")]
    Auth,
}

/// A complete handshake message from the peer, by kind.
pub(crate) enum Message<'a> {
    Init(&'a [u8]),
    Accept { answers: InitId, body: &'a [u8] },
}

impl<'a> Message<'a> {
    /// Sorts a reassembled message by its kind and checks its version and
    /// length.
    pub(crate) fn parse(data: &'a [u8]) -> Result<Self, HandshakeError> {
        let (&kind, rest) = data.split_first().ok_or(HandshakeError::Malformed)?;
        let (&version, _) = rest.split_first().ok_or(HandshakeError::Malformed)?;
        if version != E2E_VERSION {
            return Err(HandshakeError::Version(version));
        }
        match (kind, data.len()) {
            (KIND_INIT, INIT_LEN) => Ok(Self::Init(data)),
            (KIND_ACCEPT, ACCEPT_LEN) => {
                let answers = data[2..10]
                    .try_into()
                    .map_err(|_| HandshakeError::Malformed)?;
                Ok(Self::Accept {
                    answers,
                    body: data,
                })
            }
            _ => Err(HandshakeError::Malformed),
        }
    }
}

fn dh(secret: &StaticSecret, public: &[u8; 32]) -> Result<SharedSecret, HandshakeError> {
    let s = secret.diffie_hellman(&PublicKey::from(*public));
    if !s.was_contributory() {
        return Err(HandshakeError::BadKey);
    }
    Ok(SharedSecret::from_bytes(*s.as_bytes()))
}

fn encapsulate<R: CryptoRng + ?Sized>(
    rng: &mut R,
    ek: &EncapsulationKey768,
) -> (Vec<u8>, SharedSecret) {
    let (ct, mut shared) = ek.encapsulate_with_rng(rng);
    let secret = SharedSecret::from_bytes(shared.into());
    shared.as_mut_slice().zeroize();
    (ct.to_vec(), secret)
}

/// Reads the encrypted payload that ends either message: the sender's
/// incarnation. Nothing may follow it.
fn read_payload(ss: &mut SymmetricState, mut r: Reader<'_>) -> Result<Incarnation, HandshakeError> {
    let sealed = r.take(PAYLOAD_LEN).map_err(|_| HandshakeError::Malformed)?;
    let payload = ss.decrypt_and_hash(sealed).ok_or(HandshakeError::Auth)?;
    r.expect_end().map_err(|_| HandshakeError::Malformed)?;
    let bytes = payload
        .as_slice()
        .try_into()
        .map_err(|_| HandshakeError::Malformed)?;
    Ok(u64::from_be_bytes(bytes))
}

/// The symmetric state after the prologue: both fingerprints and both
/// static X25519 keys, initiator first.
fn prologue(initiator: &PublicIdentity, responder: &PublicIdentity) -> SymmetricState {
    let mut ss = SymmetricState::new();
    ss.mix_hash(&initiator.fingerprint().0);
    ss.mix_hash(&responder.fingerprint().0);
    ss.mix_hash(initiator.x25519().as_bytes());
    ss.mix_hash(responder.x25519().as_bytes());
    ss
}

/// The initiator's secrets between INIT and ACCEPT (persisted: a restart
/// in between must still finish the handshake).
pub(crate) struct Initiator {
    e: StaticSecret,
    kem_seed: Zeroizing<[u8; 64]>,
    ss: SymmetricState,
}

/// The inputs a handshake draws from its RNG, for known-answer vectors.
pub(crate) struct Ephemerals {
    pub(crate) x25519: [u8; 32],
    pub(crate) kem_seed: [u8; 64],
}

impl Ephemerals {
    fn draw<R: CryptoRng + ?Sized>(rng: &mut R) -> Zeroizing<Self> {
        let mut e = Zeroizing::new(Self {
            x25519: [0; 32],
            kem_seed: [0; 64],
        });
        rng.fill_bytes(&mut e.x25519);
        rng.fill_bytes(&mut e.kem_seed);
        e
    }
}

impl zeroize::Zeroize for Ephemerals {
    fn zeroize(&mut self) {
        self.x25519.zeroize();
        self.kem_seed.zeroize();
    }
}

/// Wiped on drop too, so that one built outside [`Ephemerals::draw`] (the
/// known-answer tests) leaves nothing behind either.
impl Drop for Ephemerals {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(self);
    }
}

impl Initiator {
    /// Builds an INIT to `peer`, carrying our `incarnation`.
    pub(crate) fn start<R: CryptoRng + ?Sized>(
        rng: &mut R,
        me: &PrivateIdentity,
        peer: &PublicIdentity,
        incarnation: Incarnation,
    ) -> Result<(Self, Zeroizing<Vec<u8>>), HandshakeError> {
        let eph = Ephemerals::draw(rng);
        Self::start_with(rng, &eph, me, peer, incarnation)
    }

    pub(crate) fn start_with<R: CryptoRng + ?Sized>(
        rng: &mut R,
        eph: &Ephemerals,
        me: &PrivateIdentity,
        peer: &PublicIdentity,
        incarnation: Incarnation,
    ) -> Result<(Self, Zeroizing<Vec<u8>>), HandshakeError> {
        let e = StaticSecret::from(eph.x25519);
        let e_pub = PublicKey::from(&e).to_bytes();
        let kem_seed = Zeroizing::new(eph.kem_seed);
        let dk = DecapsulationKey768::from_seed(Seed::from(*kem_seed));
        let ek = dk.encapsulation_key().to_bytes();
        let mut ss = prologue(me.public(), peer);
        let mut msg = Zeroizing::new(Vec::with_capacity(INIT_LEN));
        msg.extend_from_slice(&[KIND_INIT, E2E_VERSION]);
        ss.mix_hash(&msg);
        ss.mix_hash(&e_pub);
        ss.mix_hash(&ek);
        ss.mix_key(&dh(&e, peer.x25519().as_bytes())?);
        ss.mix_key(&dh(me.x25519(), peer.x25519().as_bytes())?);
        let (ct1, k1) = encapsulate(rng, peer.mlkem());
        ss.mix_hash(&ct1);
        ss.mix_key(&k1);
        let payload = ss
            .encrypt_and_hash(&incarnation.to_be_bytes())
            .ok_or(HandshakeError::Malformed)?;
        msg.extend_from_slice(&e_pub);
        msg.extend_from_slice(&ek);
        msg.extend_from_slice(&ct1);
        msg.extend_from_slice(&payload);
        debug_assert_eq!(msg.len(), INIT_LEN);
        Ok((Self { e, kem_seed, ss }, msg))
    }

    /// Reads the peer's ACCEPT to our INIT `init_id`: the session, and
    /// the peer's incarnation. The peer is authenticated here: the ACCEPT
    /// opens only with keys that need the peer's static secrets.
    pub(crate) fn finish<R: CryptoRng + ?Sized>(
        &self,
        rng: &mut R,
        me: &PrivateIdentity,
        init_id: InitId,
        accept: &[u8],
    ) -> Result<(Session, Incarnation), HandshakeError> {
        let mut ss = self.ss.fork();
        let mut r = Reader::new(accept);
        let m = |_: WireError| HandshakeError::Malformed;
        let head = r.take(2).map_err(m)?;
        let answers: InitId = r.array().map_err(m)?;
        if answers != init_id {
            return Err(HandshakeError::Malformed);
        }
        ss.mix_hash(head);
        ss.mix_hash(&answers);
        let e_r: [u8; 32] = r.array().map_err(m)?;
        ss.mix_hash(&e_r);
        ss.mix_key(&dh(&self.e, &e_r)?);
        ss.mix_key(&dh(me.x25519(), &e_r)?);
        let ct2 = r.take(MLKEM_CT_LEN).map_err(m)?;
        let dk = DecapsulationKey768::from_seed(Seed::from(*self.kem_seed));
        let mut k2 = dk
            .decapsulate_slice(ct2)
            .map_err(|_| HandshakeError::Malformed)?;
        ss.mix_hash(ct2);
        ss.mix_key(&SharedSecret::from_bytes(k2.into()));
        k2.as_mut_slice().zeroize();
        let ct3 = r.take(MLKEM_CT_LEN).map_err(m)?;
        let k3 = me.decapsulate(ct3).ok_or(HandshakeError::Malformed)?;
        ss.mix_hash(ct3);
        ss.mix_key(&k3);
        let incarnation = read_payload(&mut ss, r)?;
        let session =
            Session::initiator(rng, ss.split(), &e_r).map_err(|_| HandshakeError::BadKey)?;
        Ok((session, incarnation))
    }

    pub(crate) fn encode(&self, w: &mut Writer) {
        w.bytes(self.e.as_bytes());
        w.bytes(self.kem_seed.as_ref());
        self.ss.encode(w);
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(Self {
            e: StaticSecret::from(r.array::<32>()?),
            kem_seed: Zeroizing::new(r.array()?),
            ss: SymmetricState::decode(r)?,
        })
    }
}

/// Answers the peer's INIT `init_id` as responder: the session (to be
/// proven live by the peer's first cell before it replaces anything), the
/// ACCEPT to send, and the peer's incarnation.
pub(crate) fn respond<R: CryptoRng + ?Sized>(
    rng: &mut R,
    me: &PrivateIdentity,
    peer: &PublicIdentity,
    init_id: InitId,
    init: &[u8],
    incarnation: Incarnation,
) -> Result<(Session, Zeroizing<Vec<u8>>, Incarnation), HandshakeError> {
    let eph = Ephemerals::draw(rng);
    respond_with(rng, &eph, me, peer, init_id, init, incarnation)
}

pub(crate) fn respond_with<R: CryptoRng + ?Sized>(
    rng: &mut R,
    eph: &Ephemerals,
    me: &PrivateIdentity,
    peer: &PublicIdentity,
    init_id: InitId,
    init: &[u8],
    incarnation: Incarnation,
) -> Result<(Session, Zeroizing<Vec<u8>>, Incarnation), HandshakeError> {
    let m = |_: WireError| HandshakeError::Malformed;
    let mut r = Reader::new(init);
    let mut ss = prologue(peer, me.public());
    ss.mix_hash(r.take(2).map_err(m)?);
    let e_i: [u8; 32] = r.array().map_err(m)?;
    ss.mix_hash(&e_i);
    let ek_bytes = r.take(MLKEM_EK_LEN).map_err(m)?;
    let ek_array = ml_kem::array::Array::try_from(ek_bytes).map_err(|_| HandshakeError::BadKey)?;
    let peer_kem = EncapsulationKey768::new(&ek_array).map_err(|_| HandshakeError::BadKey)?;
    ss.mix_hash(ek_bytes);
    ss.mix_key(&dh(me.x25519(), &e_i)?);
    ss.mix_key(&dh(me.x25519(), peer.x25519().as_bytes())?);
    let ct1 = r.take(MLKEM_CT_LEN).map_err(m)?;
    let k1 = me.decapsulate(ct1).ok_or(HandshakeError::Malformed)?;
    ss.mix_hash(ct1);
    ss.mix_key(&k1);
    let peer_incarnation = read_payload(&mut ss, r)?;

    let e = StaticSecret::from(eph.x25519);
    let e_pub = PublicKey::from(&e).to_bytes();
    let mut msg = Zeroizing::new(Vec::with_capacity(ACCEPT_LEN));
    msg.extend_from_slice(&[KIND_ACCEPT, E2E_VERSION]);
    ss.mix_hash(&msg);
    ss.mix_hash(&init_id);
    msg.extend_from_slice(&init_id);
    ss.mix_hash(&e_pub);
    msg.extend_from_slice(&e_pub);
    ss.mix_key(&dh(&e, &e_i)?);
    ss.mix_key(&dh(&e, peer.x25519().as_bytes())?);
    let (ct2, k2) = encapsulate(rng, &peer_kem);
    ss.mix_hash(&ct2);
    ss.mix_key(&k2);
    msg.extend_from_slice(&ct2);
    let (ct3, k3) = encapsulate(rng, peer.mlkem());
    ss.mix_hash(&ct3);
    ss.mix_key(&k3);
    msg.extend_from_slice(&ct3);
    let payload = ss
        .encrypt_and_hash(&incarnation.to_be_bytes())
        .ok_or(HandshakeError::Malformed)?;
    msg.extend_from_slice(&payload);
    debug_assert_eq!(msg.len(), ACCEPT_LEN);
    let session = Session::responder(ss.split(), e);
    Ok((session, msg, peer_incarnation))
}

/// A key-compromise impersonation attempt, for tests: whoever stole only
/// the responder's X25519 secret plays the initiator `claimed`. It can
/// compute es, ss and the first KEM secret, so the responder answers; it
/// cannot compute se (it needs the claimed initiator's static secret) nor
/// the third KEM secret (sealed to the claimed initiator's ML-KEM key),
/// and guesses them.
#[cfg(test)]
pub(crate) mod forge {
    use super::*;

    pub(crate) struct Forger {
        e: StaticSecret,
        kem_seed: Zeroizing<[u8; 64]>,
        ss: SymmetricState,
    }

    /// The forged INIT, following [`Initiator::start_with`] step by step.
    pub(crate) fn init<R: CryptoRng + ?Sized>(
        rng: &mut R,
        stolen: &PrivateIdentity,
        claimed: &PublicIdentity,
    ) -> (Forger, Zeroizing<Vec<u8>>) {
        let eph = Ephemerals::draw(rng);
        let e = StaticSecret::from(eph.x25519);
        let e_pub = PublicKey::from(&e).to_bytes();
        let kem_seed = Zeroizing::new(eph.kem_seed);
        let dk = DecapsulationKey768::from_seed(Seed::from(*kem_seed));
        let ek = dk.encapsulation_key().to_bytes();
        let victim = stolen.public();
        let mut ss = prologue(claimed, victim);
        let mut msg = Zeroizing::new(vec![KIND_INIT, E2E_VERSION]);
        ss.mix_hash(&msg);
        ss.mix_hash(&e_pub);
        ss.mix_hash(&ek);
        ss.mix_key(&dh(&e, victim.x25519().as_bytes()).unwrap());
        // DH(s_I, s_R) = DH(s_R, s_I): the stolen secret is enough.
        ss.mix_key(&dh(stolen.x25519(), claimed.x25519().as_bytes()).unwrap());
        let (ct1, k1) = encapsulate(rng, victim.mlkem());
        ss.mix_hash(&ct1);
        ss.mix_key(&k1);
        let payload = ss.encrypt_and_hash(&7u64.to_be_bytes()).unwrap();
        for part in [&e_pub[..], &ek[..], &ct1, &payload] {
            msg.extend_from_slice(part);
        }
        (Forger { e, kem_seed, ss }, msg)
    }

    impl Forger {
        /// Reads the victim's ACCEPT as [`Initiator::finish`] does, with
        /// guesses for se and k3: the session the forger ends up with.
        pub(crate) fn finish<R: CryptoRng + ?Sized>(
            &self,
            rng: &mut R,
            accept: &[u8],
        ) -> Option<Session> {
            let mut ss = self.ss.fork();
            let mut r = Reader::new(accept);
            ss.mix_hash(r.take(2).ok()?);
            ss.mix_hash(r.take(8).ok()?);
            let e_r: [u8; 32] = r.array().ok()?;
            ss.mix_hash(&e_r);
            ss.mix_key(&dh(&self.e, &e_r).ok()?);
            // se: unknown without the claimed initiator's static secret.
            ss.mix_key(&dh(&self.e, &e_r).ok()?);
            let ct2 = r.take(MLKEM_CT_LEN).ok()?;
            let dk = DecapsulationKey768::from_seed(Seed::from(*self.kem_seed));
            let k2 = dk.decapsulate_slice(ct2).ok()?;
            ss.mix_hash(ct2);
            ss.mix_key(&SharedSecret::from_bytes(k2.into()));
            let ct3 = r.take(MLKEM_CT_LEN).ok()?;
            ss.mix_hash(ct3);
            // k3: sealed to the claimed initiator's ML-KEM key.
            ss.mix_key(&SharedSecret::from_bytes([0; 32]));
            let _ = ss.decrypt_and_hash(r.take(PAYLOAD_LEN).ok()?);
            Session::initiator(rng, ss.split(), &e_r).ok()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(kind: u8, version: u8, len: usize) -> Vec<u8> {
        let mut m = vec![0u8; len];
        m[0] = kind;
        m[1] = version;
        m
    }

    /// The drawn ephemerals are wiped by `zeroize` (which `Zeroizing` and
    /// the `Drop` call). Checked against an empty `zeroize`. (That the
    /// `Drop` calls it cannot be seen from safe code.)
    #[test]
    fn ephemerals_are_wiped() {
        let mut e = Ephemerals {
            x25519: [7; 32],
            kem_seed: [9; 64],
        };
        zeroize::Zeroize::zeroize(&mut e);
        assert_eq!(e.x25519, [0; 32]);
        assert_eq!(e.kem_seed, [0; 64]);
    }

    /// A handshake message of another protocol version is refused as such
    /// (the error names the version), whatever its kind and length; a
    /// wrong length or kind is malformed. Checked against dropping the
    /// version check: a version 1 or 3 INIT then parses as ours.
    #[test]
    fn messages_of_another_version_or_shape_are_refused() {
        for (kind, len) in [(KIND_INIT, INIT_LEN), (KIND_ACCEPT, ACCEPT_LEN)] {
            assert!(Message::parse(&message(kind, E2E_VERSION, len)).is_ok());
            for v in [0, 1, 3, 0xff] {
                assert!(matches!(
                    Message::parse(&message(kind, v, len)),
                    Err(HandshakeError::Version(x)) if x == v
                ));
            }
            for bad in [len - 1, len + 1] {
                assert!(matches!(
                    Message::parse(&message(kind, E2E_VERSION, bad)),
                    Err(HandshakeError::Malformed)
                ));
            }
        }
        assert!(matches!(
            Message::parse(&message(3, E2E_VERSION, INIT_LEN)),
            Err(HandshakeError::Malformed)
        ));
        for short in [&[][..], &[KIND_INIT][..]] {
            assert!(matches!(
                Message::parse(short),
                Err(HandshakeError::Malformed)
            ));
        }
        let mut accept = message(KIND_ACCEPT, E2E_VERSION, ACCEPT_LEN);
        accept[2..10].copy_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
        assert!(matches!(
            Message::parse(&accept),
            Ok(Message::Accept { answers, .. }) if answers == [1, 2, 3, 4, 5, 6, 7, 8]
        ));
    }
}
