//! Identities: an RSA-3072 key that signs (RSA-PSS/SHA-256) a bundle of an
//! X25519 static key, an ML-KEM-768 encapsulation key, the relay and shard
//! where the owner listens, a nickname, a creation time and a version.
//!
//! [`PublicIdentity`] is what an identity file carries; [`PrivateIdentity`]
//! holds the secrets, has no `Debug`, no `Serialize`, and leaves memory
//! zeroized.

use std::fmt;

use ml_kem::kem::{Decapsulate as _, KeyExport as _};
use ml_kem::{DecapsulationKey768, EncapsulationKey768, Seed};
use rand::CryptoRng;
use rsa::pkcs8::{
    DecodePrivateKey as _, DecodePublicKey as _, EncodePrivateKey as _, EncodePublicKey as _,
};
use rsa::pss::{Signature, SigningKey, VerifyingKey};
use rsa::signature::{Keypair as _, RandomizedSigner as _, SignatureEncoding as _, Verifier as _};
use rsa::traits::PublicKeyParts as _;
use sha2::{Digest as _, Sha256, Sha512};
use x25519_dalek::{PublicKey as XPublic, StaticSecret};
use zeroize::{Zeroize as _, Zeroizing};

use super::IdentityError;
use super::kdf::{KeyBytes as _, SharedSecret};
use super::writer::Writer;
use crate::wire::RelayAddress;
use crate::wire::reader::Reader;

/// RSA modulus size of identity keys.
pub const RSA_BITS: usize = 3072;
/// Bytes of an RSA-3072 signature.
pub const SIGNATURE_LEN: usize = RSA_BITS / 8;
/// Bytes of an ML-KEM-768 encapsulation key.
pub const MLKEM_EK_LEN: usize = 1184;
/// Bytes of an ML-KEM-768 ciphertext.
pub const MLKEM_CT_LEN: usize = 1088;
/// Longest nickname, in bytes of UTF-8.
pub const MAX_NICKNAME: usize = 64;
/// Bundle format version this code writes and reads.
pub const BUNDLE_VERSION: u8 = 1;

const BUNDLE_MAGIC: &[u8; 4] = b"ACID";
const SIGN_LABEL: &[u8] = b"anonchat identity bundle v1";
const SECRET_MAGIC: &[u8; 4] = b"ACSK";
const SECRET_VERSION: u8 = 1;
const FINGERPRINT_LABEL: &[u8] = b"anonchat fingerprint digits v1";
const MAX_SPKI: usize = 600;

/// SHA-256 of the RSA public key's SPKI DER.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// The 64 lowercase hex digits.
    pub fn hex(&self) -> String {
        use std::fmt::Write as _;
        self.0.iter().fold(String::new(), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
    }

    /// Twelve groups of five digits, for reading aloud. Each group is a
    /// 40-bit chunk of SHA-512(label || fingerprint) reduced mod 100000 (as
    /// Signal's safety numbers do), so the bias is negligible.
    pub fn groups(&self) -> [String; 12] {
        let wide = Sha512::new()
            .chain_update(FINGERPRINT_LABEL)
            .chain_update(self.0)
            .finalize();
        core::array::from_fn(|i| {
            let chunk = &wide[i * 5..i * 5 + 5];
            let n = chunk.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
            format!("{:05}", n % 100_000)
        })
    }

    /// The twelve groups separated by spaces.
    pub fn readable(&self) -> String {
        self.groups().join(" ")
    }

    /// Whether `text` names this fingerprint: the hex form or the digit
    /// groups, ignoring spaces, dashes and case.
    pub fn matches(&self, text: &str) -> bool {
        let cleaned: String = text
            .chars()
            .filter(|c| !c.is_whitespace() && *c != '-' && *c != ':')
            .flat_map(char::to_lowercase)
            .collect();
        cleaned == self.hex() || cleaned == self.groups().concat()
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.readable())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({})", self.hex())
    }
}

/// A contact's (or our own) public identity, signature verified.
#[derive(Clone)]
pub struct PublicIdentity {
    nickname: String,
    relay: RelayAddress,
    shard: u32,
    created_unix: u64,
    x25519: XPublic,
    mlkem: EncapsulationKey768,
    verifying: VerifyingKey<Sha256>,
    fingerprint: Fingerprint,
    /// The signed bytes: bundle || signature, exactly as exported.
    signed: Vec<u8>,
}

impl fmt::Debug for PublicIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicIdentity")
            .field("nickname", &self.nickname)
            .field("relay", &self.relay)
            .field("shard", &self.shard)
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

impl PartialEq for PublicIdentity {
    fn eq(&self, other: &Self) -> bool {
        self.signed == other.signed
    }
}
impl Eq for PublicIdentity {}

pub(super) fn validate_nickname(name: &str) -> Result<(), IdentityError> {
    if name.trim().is_empty() {
        return Err(IdentityError::BadNickname("it is empty"));
    }
    if name.len() > MAX_NICKNAME {
        return Err(IdentityError::BadNickname("it is longer than 64 bytes"));
    }
    if name.chars().any(char::is_control) {
        return Err(IdentityError::BadNickname("it contains control characters"));
    }
    if name.chars().any(crate::wire::is_non_printing) {
        return Err(IdentityError::BadNickname(
            "it contains invisible or direction-changing characters",
        ));
    }
    Ok(())
}

fn check_rsa(key: &VerifyingKey<Sha256>) -> Result<(), IdentityError> {
    let public: &rsa::PublicKey = key.as_ref();
    let n = public.n_bytes();
    if public.size() != RSA_BITS / 8 || n.len() != RSA_BITS / 8 || n[0] & 0x80 == 0 {
        return Err(IdentityError::BadRsaKey("the key is not 3072 bits"));
    }
    if *public.e().to_be_bytes_trimmed_vartime() != [1, 0, 1] {
        return Err(IdentityError::BadRsaKey("the public exponent is not 65537"));
    }
    Ok(())
}

impl PublicIdentity {
    /// The nickname its owner chose (not unique, not verified).
    pub fn nickname(&self) -> &str {
        &self.nickname
    }

    /// The relay where the owner listens.
    pub fn relay(&self) -> &RelayAddress {
        &self.relay
    }

    /// The shard of that relay where the owner listens.
    pub fn shard(&self) -> u32 {
        self.shard
    }

    /// When the identity was made, in seconds since the Unix epoch (as
    /// its owner's clock said).
    pub fn created_unix(&self) -> u64 {
        self.created_unix
    }

    /// The fingerprint of the identity's RSA key: what users compare.
    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    pub(crate) fn x25519(&self) -> &XPublic {
        &self.x25519
    }

    pub(crate) fn mlkem(&self) -> &EncapsulationKey768 {
        &self.mlkem
    }

    /// The signed binary form (bundle || signature length || signature).
    pub fn signed_bytes(&self) -> &[u8] {
        &self.signed
    }

    /// Parses and verifies the signed binary form. Every field is checked;
    /// each failure has its own error.
    pub fn from_signed_bytes(bytes: &[u8]) -> Result<Self, IdentityError> {
        let mut r = Reader::new(bytes);
        let magic = r.array::<4>().map_err(|_| IdentityError::Truncated)?;
        if &magic != BUNDLE_MAGIC {
            return Err(IdentityError::BadMagic);
        }
        let version = r.u8().map_err(|_| IdentityError::Truncated)?;
        if version != BUNDLE_VERSION {
            return Err(IdentityError::UnknownVersion(version));
        }
        let t = |_| IdentityError::Truncated;
        let created_unix = r.u64().map_err(t)?;
        let shard = r.u32().map_err(t)?;
        let x = r.array::<32>().map_err(t)?;
        let ek = r.take(MLKEM_EK_LEN).map_err(t)?;
        let spki_len = usize::from(r.u16().map_err(t)?);
        if spki_len > MAX_SPKI {
            return Err(IdentityError::BadRsaKey("the key encoding is too long"));
        }
        let spki = r.take(spki_len).map_err(t)?;
        let relay_len = usize::from(r.u16().map_err(t)?);
        let relay = r.take(relay_len).map_err(t)?;
        let nick_len = usize::from(r.u8().map_err(t)?);
        let nick = r.take(nick_len).map_err(t)?;
        let bundle_len = bytes.len() - r.remaining();
        let sig_len = usize::from(r.u16().map_err(t)?);
        let sig = r.take(sig_len).map_err(t)?;
        r.expect_end()
            .map_err(|_| IdentityError::TrailingBytes(bytes.len() - bundle_len - 2 - sig_len))?;

        let verifying = VerifyingKey::<Sha256>::from_public_key_der(spki)
            .map_err(|_| IdentityError::BadRsaKey("the key is not a valid RSA public key"))?;
        check_rsa(&verifying)?;
        if x == [0u8; 32] {
            return Err(IdentityError::BadX25519);
        }
        let ek_array = ml_kem::array::Array::try_from(ek).map_err(|_| IdentityError::BadMlKem)?;
        let mlkem = EncapsulationKey768::new(&ek_array).map_err(|_| IdentityError::BadMlKem)?;
        let relay_text = std::str::from_utf8(relay).map_err(|_| IdentityError::BadRelayText)?;
        let relay: RelayAddress = relay_text.parse().map_err(IdentityError::BadRelay)?;
        let nickname = std::str::from_utf8(nick)
            .map_err(|_| IdentityError::BadNickname("it is not UTF-8"))?
            .to_owned();
        validate_nickname(&nickname)?;
        if sig_len != SIGNATURE_LEN {
            return Err(IdentityError::BadSignature);
        }
        let signature = Signature::try_from(sig).map_err(|_| IdentityError::BadSignature)?;
        verifying
            .verify(&signing_input(&bytes[..bundle_len]), &signature)
            .map_err(|_| IdentityError::BadSignature)?;

        Ok(Self {
            nickname,
            relay,
            shard,
            created_unix,
            x25519: XPublic::from(x),
            mlkem,
            fingerprint: Fingerprint(Sha256::digest(spki).into()),
            verifying,
            signed: bytes.to_vec(),
        })
    }
}

/// Signs arbitrary bundle bytes (tests of the import checks).
#[cfg(test)]
pub(crate) fn sign_raw(signing: &SigningKey<Sha256>, bundle: &[u8]) -> Vec<u8> {
    let mut signed = bundle.to_vec();
    let sig = signing
        .sign_with_rng(&mut rand::rng(), &signing_input(bundle))
        .to_vec();
    Writer::append_u16_prefixed(&mut signed, &sig);
    signed
}

#[cfg(test)]
impl PrivateIdentity {
    pub(crate) fn signing_key(&self) -> &SigningKey<Sha256> {
        &self.signing
    }
}

fn signing_input(bundle: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(SIGN_LABEL.len() + bundle.len());
    m.extend_from_slice(SIGN_LABEL);
    m.extend_from_slice(bundle);
    m
}

/// Our own identity with its secrets. No `Debug`, no `Clone`, no
/// `Serialize`: the only way out is [`to_secret_bytes`](Self::to_secret_bytes),
/// which the daemon encrypts before it touches a disk.
pub struct PrivateIdentity {
    signing: SigningKey<Sha256>,
    x25519: StaticSecret,
    mlkem_seed: Zeroizing<[u8; 64]>,
    mlkem: DecapsulationKey768,
    public: PublicIdentity,
}

impl PrivateIdentity {
    /// Creates a new identity. RSA-3072 key generation takes a moment.
    pub fn generate<R: CryptoRng + ?Sized>(
        rng: &mut R,
        nickname: &str,
        relay: &RelayAddress,
        shard: u32,
        created_unix: u64,
    ) -> Result<Self, IdentityError> {
        validate_nickname(nickname)?;
        let signing = SigningKey::<Sha256>::random(rng, RSA_BITS)
            .map_err(|_| IdentityError::BadRsaKey("key generation failed"))?;
        let mut x = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(x.as_mut());
        let x25519 = StaticSecret::from(*x);
        let mut seed = Zeroizing::new([0u8; 64]);
        rng.fill_bytes(seed.as_mut());
        let mlkem = DecapsulationKey768::from_seed(Seed::from(*seed));

        let spki = signing
            .verifying_key()
            .to_public_key_der()
            .map_err(|_| IdentityError::BadRsaKey("cannot encode the public key"))?;
        let mut w = Writer::new();
        w.bytes(BUNDLE_MAGIC);
        w.u8(BUNDLE_VERSION);
        w.u64(created_unix);
        w.u32(shard);
        w.bytes(XPublic::from(&x25519).as_bytes());
        w.bytes(&mlkem.encapsulation_key().to_bytes());
        w.u16_prefixed(spki.as_bytes());
        w.u16_prefixed(relay.to_string().as_bytes());
        w.u8_prefixed(nickname.as_bytes());
        let bundle = w.into_vec();
        let signature = signing.sign_with_rng(rng, &signing_input(&bundle)).to_vec();
        let mut signed = bundle;
        Writer::append_u16_prefixed(&mut signed, &signature);
        let public = PublicIdentity::from_signed_bytes(&signed)?;
        Ok(Self {
            signing,
            x25519,
            mlkem_seed: seed,
            mlkem,
            public,
        })
    }

    /// The public part, as others import it.
    pub fn public(&self) -> &PublicIdentity {
        &self.public
    }

    pub(crate) fn x25519(&self) -> &StaticSecret {
        &self.x25519
    }

    /// Decapsulates an ML-KEM ciphertext sent to us; `None` if it has the
    /// wrong length.
    pub(crate) fn decapsulate(&self, ct: &[u8]) -> Option<SharedSecret> {
        let mut shared = self.mlkem.decapsulate_slice(ct).ok()?;
        let secret = SharedSecret::from_bytes(shared.into());
        shared.as_mut_slice().zeroize();
        Some(secret)
    }

    /// Every secret, versioned, for the daemon to encrypt at rest.
    pub fn to_secret_bytes(&self) -> Result<Zeroizing<Vec<u8>>, IdentityError> {
        let pkcs8 = self
            .signing
            .to_pkcs8_der()
            .map_err(|_| IdentityError::BadRsaKey("cannot encode the private key"))?;
        let mut w = Writer::new();
        w.bytes(SECRET_MAGIC);
        w.u8(SECRET_VERSION);
        w.u16_prefixed(pkcs8.as_bytes());
        w.bytes(self.x25519.as_bytes());
        w.bytes(self.mlkem_seed.as_ref());
        w.u16_prefixed(&self.public.signed);
        Ok(w.into_secret())
    }

    /// Restores an identity from [`to_secret_bytes`](Self::to_secret_bytes)
    /// and checks that every secret matches the public bundle.
    pub fn from_secret_bytes(bytes: &[u8]) -> Result<Self, IdentityError> {
        let t = |_| IdentityError::Truncated;
        let mut r = Reader::new(bytes);
        if &r.array::<4>().map_err(t)? != SECRET_MAGIC {
            return Err(IdentityError::BadMagic);
        }
        let version = r.u8().map_err(t)?;
        if version != SECRET_VERSION {
            return Err(IdentityError::UnknownVersion(version));
        }
        let pkcs8_len = usize::from(r.u16().map_err(t)?);
        let signing = SigningKey::<Sha256>::from_pkcs8_der(r.take(pkcs8_len).map_err(t)?)
            .map_err(|_| IdentityError::BadRsaKey("the stored private key is damaged"))?;
        let x25519 = StaticSecret::from(r.array::<32>().map_err(t)?);
        let mlkem_seed = Zeroizing::new(r.array::<64>().map_err(t)?);
        let mlkem = DecapsulationKey768::from_seed(Seed::from(*mlkem_seed));
        let signed_len = usize::from(r.u16().map_err(t)?);
        let public = PublicIdentity::from_signed_bytes(r.take(signed_len).map_err(t)?)?;
        r.expect_end()
            .map_err(|_| IdentityError::TrailingBytes(0))?;
        let consistent = signing.verifying_key() == public.verifying
            && XPublic::from(&x25519) == public.x25519
            && *mlkem.encapsulation_key() == public.mlkem;
        if !consistent {
            return Err(IdentityError::Inconsistent);
        }
        Ok(Self {
            signing,
            x25519,
            mlkem_seed,
            mlkem,
            public,
        })
    }
}
