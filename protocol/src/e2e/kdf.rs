//! The primitives as wired: HKDF-SHA256, HMAC-SHA256 as a PRF, and
//! ChaCha20-Poly1305 with single-use keys; and one type per key role, so a
//! chain key cannot be passed where a root key belongs, nor a tag key
//! where a header key does. Every label is a constant here, so the key
//! schedule in `docs/protocol.md` can be checked against one file; the
//! per-round and ratchet steps are methods of the key types here, the
//! session and init key agreements are in `session.rs` and `init.rs`.

use chacha20poly1305::aead::{AeadInOut, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Nonce, Tag};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::{Digest as _, Sha256};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

pub(crate) const LABEL_INIT: &[u8] = b"anonchat handshake cells v2";
pub(crate) const LABEL_INIT_TAGS: &[u8] = b"anonchat handshake cell tags v2";
pub(crate) const LABEL_INIT_CELLS: &[u8] = b"anonchat handshake cell keys v2";
/// The handshake's protocol name: the first transcript hash is its SHA-256.
pub(crate) const PROTOCOL_NAME: &[u8] = b"anonchat v2 KK+3KEM X25519 ML-KEM-768 ChaChaPoly SHA256";
const LABEL_MIX: &[u8] = b"anonchat v2 mix";
const LABEL_SPLIT: &[u8] = b"anonchat v2 split";
const LABEL_RATCHET: &[u8] = b"anonchat v2 ratchet";
const LABEL_TAG: &[u8] = b"tag";
const LABEL_HEADER: &[u8] = b"header";
const LABEL_CELL_KEY: &[u8] = b"cell";

/// Bytes of the round-indexed tag at the start of every cell (init and
/// session cells alike): the first 16 bytes of `PRF(tag key, "tag", round)`.
/// Not to be confused with the 16-byte ChaCha20-Poly1305 tag that ends each
/// AEAD ciphertext in a cell.
pub const CELL_TAG_LEN: usize = 16;

/// Bytes of a ChaCha20-Poly1305 authentication tag, appended to every AEAD
/// ciphertext (header, body, init cell).
pub(crate) const AEAD_TAG_LEN: usize = 16;
const _: () = assert!(AEAD_TAG_LEN == size_of::<Tag>());

/// The round-indexed tag a cell starts with.
pub(crate) type CellTag = [u8; CELL_TAG_LEN];

/// The raw bytes of a 32-byte key, for the derivations here and for saved
/// state. Every key role has its own type; this is the one way in and out.
pub(crate) trait KeyBytes: Sized {
    /// Wraps bytes derived or read back from saved state.
    fn from_bytes(bytes: [u8; 32]) -> Self;
    /// The key's bytes.
    fn as_bytes(&self) -> &[u8; 32];
}

/// A key that ChaCha20-Poly1305 uses for exactly one message, so its nonce
/// is fixed at zero ([`seal`], [`open`]).
pub(crate) trait SingleUse: KeyBytes {}

macro_rules! key_types {
    ($($(#[$meta:meta])* $name:ident;)*) => {$(
        $(#[$meta])*
        ///
        /// Zeroized on drop; no `Debug`, `Display` or `Serialize`.
        #[derive(Zeroize, ZeroizeOnDrop)]
        pub(crate) struct $name([u8; 32]);

        impl KeyBytes for $name {
            fn from_bytes(bytes: [u8; 32]) -> Self {
                Self(bytes)
            }

            fn as_bytes(&self) -> &[u8; 32] {
                &self.0
            }
        }
    )*};
}

key_types! {
    /// An X25519 or ML-KEM shared secret: input keying material only.
    SharedSecret;
    /// The Double Ratchet's root key (`rk`).
    #[derive(Clone)]
    RootKey;
    /// A sending or receiving chain key of the Double Ratchet (`ck`).
    #[derive(Clone)]
    ChainKey;
    /// A Double Ratchet message key: seals exactly one cell body.
    #[derive(Clone)]
    MessageKey;
    /// The tag key of one direction and ratchet epoch (or of handshake
    /// cells): the tag of each round's cell comes from it.
    #[derive(Clone)]
    TagKey;
    /// The header key of one direction and ratchet epoch: the key that
    /// seals each round's header comes from it.
    #[derive(Clone)]
    HeaderKey;
    /// The handshake's chaining key (Noise `ck`).
    #[derive(Clone)]
    HandshakeChainKey;
    /// The handshake's current AEAD key (Noise `k`), used once.
    HandshakeKey;
    /// One direction's init cell key (`init_cells`): the key that seals each
    /// round's init cell comes from it.
    InitCellKey;
    /// The single-use AEAD key of one round's header or init cell.
    RoundKey;
}

impl SingleUse for RoundKey {}
impl SingleUse for HandshakeKey {}

impl TagKey {
    /// `tag16(key, round)`: the tag of the cell sent in `round`.
    pub(crate) fn tag(&self, round: u64) -> CellTag {
        let full = prf(&self.0, LABEL_TAG, round);
        let mut t = [0u8; CELL_TAG_LEN];
        t.copy_from_slice(&full[..CELL_TAG_LEN]);
        t
    }
}

impl HeaderKey {
    /// `PRF(key, "header", round)`: seals the header of `round`'s cell.
    pub(crate) fn round_key(&self, round: u64) -> RoundKey {
        RoundKey(*prf(&self.0, LABEL_HEADER, round))
    }
}

impl InitCellKey {
    /// `PRF(key, "cell", round)`: seals the init cell of `round`.
    pub(crate) fn round_key(&self, round: u64) -> RoundKey {
        RoundKey(*prf(&self.0, LABEL_CELL_KEY, round))
    }
}

/// What one root step yields besides the next root key: a chain key and
/// the header and tag keys of the epoch *after* the one that chain opens
/// (Signal's header-encryption variant, with tag keys beside header keys).
pub(crate) struct EpochKeys {
    pub(crate) chain: ChainKey,
    pub(crate) next_header: HeaderKey,
    pub(crate) next_tags: TagKey,
}

impl RootKey {
    /// `KDF_RK_HE`: HKDF-SHA256 with the root key as salt, the DH output as
    /// input and `"anonchat v2 ratchet"` as info; 128 bytes split into the
    /// next root key, a chain key, the next header key and the next tag
    /// key, in that order.
    pub(crate) fn ratchet(&self, dh_out: &SharedSecret) -> (Self, EpochKeys) {
        let out = hkdf::<128>(&self.0, &dh_out.0, &[LABEL_RATCHET]);
        let k = |i| *key_at(&out[..], i);
        (
            Self(k(0)),
            EpochKeys {
                chain: ChainKey(k(1)),
                next_header: HeaderKey(k(2)),
                next_tags: TagKey(k(3)),
            },
        )
    }
}

impl ChainKey {
    /// `KDF_CK`: next chain key = HMAC(ck, 0x02), message key = HMAC(ck, 0x01).
    pub(crate) fn step(&self) -> (Self, MessageKey) {
        (
            Self(*hmac(&self.0, &[&[0x02]])),
            MessageKey(*hmac(&self.0, &[&[0x01]])),
        )
    }
}

/// The `i`-th 32-byte key of an HKDF output.
pub(crate) fn key_at(okm: &[u8], i: usize) -> Zeroizing<[u8; 32]> {
    let mut k = Zeroizing::new([0u8; 32]);
    k.copy_from_slice(&okm[i * 32..i * 32 + 32]);
    k
}

/// HKDF-SHA256 (RFC 5869) to `N` bytes.
#[expect(
    clippy::expect_used,
    reason = "HKDF-SHA256 expands to at most 255 * 32 bytes, and the const assertion keeps N within that"
)]
pub(crate) fn hkdf<const N: usize>(salt: &[u8], ikm: &[u8], info: &[&[u8]]) -> Zeroizing<[u8; N]> {
    const { assert!(N <= 255 * 32, "HKDF-SHA256 output is at most 8160 bytes") };
    let mut out = Zeroizing::new([0u8; N]);
    Hkdf::<Sha256>::new(Some(salt), ikm)
        .expand_multi_info(info, out.as_mut())
        .expect("N is at most 255 * 32");
    out
}

/// The handshake's symmetric state, in Noise's shape: a chaining key `ck`,
/// a transcript hash `h`, and the AEAD key of the last `MixKey`.
pub(crate) struct SymmetricState {
    ck: HandshakeChainKey,
    h: [u8; 32],
    k: Option<HandshakeKey>,
}

impl SymmetricState {
    /// `h = ck = SHA-256(PROTOCOL_NAME)`.
    pub(crate) fn new() -> Self {
        let h: [u8; 32] = Sha256::digest(PROTOCOL_NAME).into();
        Self {
            ck: HandshakeChainKey(h),
            h,
            k: None,
        }
    }

    /// `h = SHA-256(h || data)`.
    pub(crate) fn mix_hash(&mut self, data: &[u8]) {
        let mut d = Sha256::new();
        d.update(self.h);
        d.update(data);
        self.h = d.finalize().into();
    }

    /// `ck, k = HKDF(salt = ck, ikm, info = "anonchat v2 mix")` (64 bytes).
    pub(crate) fn mix_key(&mut self, ikm: &SharedSecret) {
        let out = hkdf::<64>(&self.ck.0, &ikm.0, &[LABEL_MIX]);
        self.ck = HandshakeChainKey(*key_at(&out[..], 0));
        self.k = Some(HandshakeKey(*key_at(&out[..], 1)));
    }

    /// Seals `plain` under `k` (nonce 0, used once) with `h` as associated
    /// data, then mixes the ciphertext into `h`.
    pub(crate) fn encrypt_and_hash(&mut self, plain: &[u8]) -> Option<Vec<u8>> {
        let k = self.k.take()?;
        let mut buf = plain.to_vec();
        seal(&k, &self.h, &mut buf);
        self.mix_hash(&buf);
        Some(buf)
    }

    /// Opens what [`encrypt_and_hash`](Self::encrypt_and_hash) sealed.
    pub(crate) fn decrypt_and_hash(&mut self, sealed: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        let k = self.k.take()?;
        let plain = open(&k, &self.h, sealed)?;
        self.mix_hash(sealed);
        Some(plain)
    }

    /// A copy to continue from (with no AEAD key pending), so that a
    /// message that fails to authenticate leaves the original as it was.
    pub(crate) fn fork(&self) -> Self {
        Self {
            ck: self.ck.clone(),
            h: self.h,
            k: None,
        }
    }

    /// Saved between INIT and ACCEPT: `ck || h` (no AEAD key is pending
    /// then: the INIT's payload used it).
    pub(crate) fn encode(&self, w: &mut super::writer::Writer) {
        w.bytes(&self.ck.0);
        w.bytes(&self.h);
    }

    pub(crate) fn decode(
        r: &mut crate::wire::reader::Reader<'_>,
    ) -> Result<Self, crate::wire::WireError> {
        Ok(Self {
            ck: HandshakeChainKey(r.array()?),
            h: r.array()?,
            k: None,
        })
    }

    /// The transcript hash so far.
    #[cfg(test)]
    pub(crate) fn hash(&self) -> [u8; 32] {
        self.h
    }

    /// `Split`: HKDF(salt = ck, ikm = h, info = "anonchat v2 split"), 160
    /// bytes: the root key, then the initiator's first header and tag keys,
    /// then the responder's first header and tag keys.
    pub(crate) fn split(self) -> SessionSeed {
        let out = hkdf::<160>(&self.ck.0, &self.h, &[LABEL_SPLIT]);
        let k = |i| *key_at(&out[..], i);
        SessionSeed {
            root: RootKey(k(0)),
            i2r_header: HeaderKey(k(1)),
            i2r_tags: TagKey(k(2)),
            r2i_header: HeaderKey(k(3)),
            r2i_tags: TagKey(k(4)),
        }
    }
}

/// The handshake's output: where both ratchets start.
pub(crate) struct SessionSeed {
    pub(crate) root: RootKey,
    pub(crate) i2r_header: HeaderKey,
    pub(crate) i2r_tags: TagKey,
    pub(crate) r2i_header: HeaderKey,
    pub(crate) r2i_tags: TagKey,
}

/// HKDF-SHA256 to one 32-byte key of role `K`.
pub(crate) fn hkdf_key<K: KeyBytes>(salt: &[u8], ikm: &[u8], info: &[&[u8]]) -> K {
    K::from_bytes(*hkdf::<32>(salt, ikm, info))
}

/// HMAC-SHA256 with a 32-byte key.
fn hmac(key: &[u8; 32], parts: &[&[u8]]) -> Zeroizing<[u8; 32]> {
    // HMAC pads a key shorter than the hash's 64-byte block with zeros
    // (RFC 2104), so keying with the padded block is the same function, and
    // a block-sized key needs no fallible length check.
    let mut block = Zeroizing::new([0u8; 64]);
    block[..32].copy_from_slice(key);
    let mut mac = <Hmac<Sha256> as hmac::KeyInit>::new((&*block).into());
    for p in parts {
        mac.update(p);
    }
    let mut out = Zeroizing::new([0u8; 32]);
    // `as_bytes`, not `into_bytes`: no plain copy of the output.
    out.copy_from_slice(mac.finalize().as_bytes());
    out
}

/// `PRF(key, label, i)`: HMAC-SHA256(key, label || i).
fn prf(key: &[u8; 32], label: &[u8], i: u64) -> Zeroizing<[u8; 32]> {
    hmac(key, &[label, &i.to_be_bytes()])
}

/// Encrypts `buf` in place under a single-use key (nonce fixed at zero)
/// and appends the AEAD tag.
#[expect(
    clippy::expect_used,
    reason = "ChaCha20-Poly1305 refuses only plaintexts of about 2^38 bytes (256 GiB) or more; a cell is at most MAX_CELL_SIZE bytes"
)]
pub(crate) fn seal(key: &impl SingleUse, aad: &[u8], buf: &mut Vec<u8>) {
    let tag = ChaCha20Poly1305::new(key.as_bytes().into())
        .encrypt_inout_detached(&Nonce::default(), aad, buf.as_mut_slice().into())
        .expect("a cell is far below the ChaCha20-Poly1305 limit");
    buf.extend_from_slice(&tag);
}

/// The body nonce of a session cell: four zero bytes, then the round (big
/// endian). A message key is used once, but a restored old state (or two
/// copies of one home) could use it again in another round: the nonce then
/// differs, so no (key, nonce) pair ever seals two plaintexts.
fn round_nonce(round: u64) -> Nonce {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&round.to_be_bytes());
    Nonce::from(n)
}

/// Encrypts a cell body in place under its message key and the round's
/// nonce, and appends the AEAD tag.
#[expect(
    clippy::expect_used,
    reason = "ChaCha20-Poly1305 refuses only plaintexts of about 2^38 bytes (256 GiB) or more; a cell is at most MAX_CELL_SIZE bytes"
)]
pub(crate) fn seal_body(key: &MessageKey, round: u64, aad: &[u8], buf: &mut Vec<u8>) {
    let tag = ChaCha20Poly1305::new(key.as_bytes().into())
        .encrypt_inout_detached(&round_nonce(round), aad, buf.as_mut_slice().into())
        .expect("a cell is far below the ChaCha20-Poly1305 limit");
    buf.extend_from_slice(&tag);
}

/// Opens a body sealed by [`seal_body`] for `round`.
pub(crate) fn open_body(
    key: &MessageKey,
    round: u64,
    aad: &[u8],
    sealed: &[u8],
) -> Option<Zeroizing<Vec<u8>>> {
    let split = sealed.len().checked_sub(AEAD_TAG_LEN)?;
    let (ct, tag) = sealed.split_at(split);
    let tag = Tag::try_from(tag).ok()?;
    let mut buf = Zeroizing::new(ct.to_vec());
    ChaCha20Poly1305::new(key.as_bytes().into())
        .decrypt_inout_detached(&round_nonce(round), aad, buf.as_mut_slice().into(), &tag)
        .ok()?;
    Some(buf)
}

/// Opens `ct || tag` sealed by [`seal`]; `None` if anything was altered.
pub(crate) fn open(key: &impl SingleUse, aad: &[u8], sealed: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    let split = sealed.len().checked_sub(AEAD_TAG_LEN)?;
    let (ct, tag) = sealed.split_at(split);
    let tag = Tag::try_from(tag).ok()?;
    let mut buf = Zeroizing::new(ct.to_vec());
    ChaCha20Poly1305::new(key.as_bytes().into())
        .decrypt_inout_detached(&Nonce::default(), aad, buf.as_mut_slice().into(), &tag)
        .ok()?;
    Some(buf)
}

#[cfg(test)]
pub(crate) fn hex(b: &[u8]) -> String {
    use std::fmt::Write as _;
    b.iter().fold(String::new(), |mut s, x| {
        let _ = write!(s, "{x:02x}");
        s
    })
}

#[cfg(test)]
pub(crate) fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 5869, test case 1.
    #[test]
    fn hkdf_sha256_rfc5869_case_1() {
        let ikm = [0x0b; 22];
        let salt = unhex("000102030405060708090a0b0c");
        let info = unhex("f0f1f2f3f4f5f6f7f8f9");
        let okm = hkdf::<42>(&salt, &ikm, &[&info[..5], &info[5..]]);
        assert_eq!(
            hex(okm.as_ref()),
            "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
        );
    }

    /// RFC 4231, test case 2 (HMAC-SHA256 with key "Jefe").
    #[test]
    fn hmac_sha256_rfc4231_case_2() {
        // HMAC zero-pads a short key, so this is the RFC's key "Jefe".
        let mut key = [0u8; 32];
        key[..4].copy_from_slice(b"Jefe");
        let mac = hmac(&key, &[b"what do ya want ", b"for nothing?"]);
        assert_eq!(
            hex(mac.as_ref()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn seal_open_round_trip_and_tamper() {
        let key = RoundKey([9u8; 32]);
        let mut buf = b"attack at dawn".to_vec();
        seal(&key, b"aad", &mut buf);
        assert_eq!(
            open(&key, b"aad", &buf).unwrap().as_slice(),
            b"attack at dawn"
        );
        assert!(open(&key, b"aad!", &buf).is_none());
        buf[3] ^= 1;
        assert!(open(&key, b"aad", &buf).is_none());
        assert!(open(&key, b"aad", &buf[..10]).is_none());
    }

    /// Locks the rule that no key type can be printed: the inherent const
    /// exists only where `T: Debug` (or `Display`) and then wins over the
    /// trait's default.
    #[test]
    fn key_types_implement_neither_debug_nor_display() {
        // Checked at compile time: printing a key breaks the test build.
        use std::fmt::{Debug, Display};
        use std::marker::PhantomData;
        struct Probe<T>(PhantomData<T>);
        trait Printable {
            const DEBUG: bool = false;
            const DISPLAY: bool = false;
        }
        impl<T> Printable for Probe<T> {}
        impl<T: Debug> Probe<T> {
            const DEBUG: bool = true;
        }
        struct Shown<T>(PhantomData<T>);
        impl<T> Printable for Shown<T> {}
        impl<T: Display> Shown<T> {
            const DISPLAY: bool = true;
        }
        macro_rules! printable {
            ($($t:ty),*) => {$(Probe::<$t>::DEBUG || Shown::<$t>::DISPLAY)||*};
        }
        const { assert!(printable!(u8), "the probe sees Debug and Display") };
        const {
            assert!(
                !printable!(
                    SharedSecret,
                    RootKey,
                    ChainKey,
                    MessageKey,
                    TagKey,
                    HeaderKey,
                    InitCellKey,
                    RoundKey,
                    HandshakeChainKey,
                    HandshakeKey
                ),
                "a key type can be printed"
            );
        };
    }

    #[test]
    fn tags_differ_per_index_and_key() {
        let k1 = TagKey([1u8; 32]);
        let k2 = TagKey([2u8; 32]);
        assert_ne!(k1.tag(0), k1.tag(1));
        assert_ne!(k1.tag(0), k2.tag(0));
        assert_eq!(k1.tag(7), k1.tag(7));
    }
}
