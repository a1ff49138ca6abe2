//! The primitives as wired: HKDF-SHA256, HMAC-SHA256 as a PRF, and
//! ChaCha20-Poly1305 with single-use keys. Every label is a constant here,
//! so the key schedule in `docs/protocol.md` can be checked against one
//! file.

use chacha20poly1305::aead::{AeadInOut, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce, Tag};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

pub(crate) const LABEL_INIT: &[u8] = b"anonchat init v1";
pub(crate) const LABEL_INIT_TAGS: &[u8] = b"anonchat init tags v1";
pub(crate) const LABEL_INIT_CELLS: &[u8] = b"anonchat init cells v1";
pub(crate) const LABEL_PQXDH: &[u8] = b"anonchat pqxdh v1";
pub(crate) const LABEL_SESSION: &[u8] = b"anonchat session keys v1";
pub(crate) const LABEL_RATCHET: &[u8] = b"anonchat ratchet v1";
pub(crate) const LABEL_TAG: &[u8] = b"tag";
pub(crate) const LABEL_HEADER: &[u8] = b"header";
pub(crate) const LABEL_CELL_KEY: &[u8] = b"cell";

/// AEAD tag length.
pub(crate) const AEAD_TAG: usize = 16;

pub(crate) type Secret = Zeroizing<[u8; 32]>;

/// HKDF-SHA256 (RFC 5869) into `out`.
pub(crate) fn hkdf(salt: &[u8], ikm: &[u8], info: &[&[u8]], out: &mut [u8]) {
    let hk = Hkdf::<Sha256>::new(Some(salt), ikm);
    // Output lengths used here are at most 5 * 32 bytes, far below the
    // 255 * 32 limit, so expansion cannot fail.
    if hk.expand_multi_info(info, out).is_err() {
        unreachable!("HKDF output length within limits");
    }
}

/// HKDF-SHA256 to one 32-byte secret.
pub(crate) fn hkdf32(salt: &[u8], ikm: &[u8], info: &[&[u8]]) -> Secret {
    let mut out = Zeroizing::new([0u8; 32]);
    hkdf(salt, ikm, info, out.as_mut());
    out
}

/// HMAC-SHA256.
pub(crate) fn hmac(key: &[u8], parts: &[&[u8]]) -> Zeroizing<[u8; 32]> {
    // HMAC takes keys of any length.
    let Ok(mut mac) = <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(key) else {
        unreachable!("HMAC accepts any key length")
    };
    for p in parts {
        mac.update(p);
    }
    let mut out = Zeroizing::new([0u8; 32]);
    out.copy_from_slice(&mac.finalize().into_bytes());
    out
}

/// `PRF(key, label, i)`: HMAC-SHA256(key, label || i) — tags (truncated to
/// 16 bytes) and per-slot keys.
pub(crate) fn prf(key: &[u8; 32], label: &[u8], i: u64) -> Zeroizing<[u8; 32]> {
    hmac(key, &[label, &i.to_be_bytes()])
}

pub(crate) fn tag16(key: &[u8; 32], i: u64) -> [u8; 16] {
    let full = prf(key, LABEL_TAG, i);
    let mut t = [0u8; 16];
    t.copy_from_slice(&full[..16]);
    t
}

/// Encrypts `buf` in place under a single-use key (nonce fixed at zero)
/// and appends the tag.
pub(crate) fn seal(key: &[u8; 32], aad: &[u8], buf: &mut Vec<u8>) {
    let cipher = ChaCha20Poly1305::new(&Key::from(*key));
    match cipher.encrypt_inout_detached(&Nonce::default(), aad, buf.as_mut_slice().into()) {
        Ok(tag) => buf.extend_from_slice(&tag),
        Err(_) => unreachable!("cell-sized plaintexts are within AEAD limits"),
    }
}

/// Opens `ct || tag` sealed by [`seal`]; `None` if anything was altered.
pub(crate) fn open(key: &[u8; 32], aad: &[u8], sealed: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    let split = sealed.len().checked_sub(AEAD_TAG)?;
    let (ct, tag) = sealed.split_at(split);
    let tag = Tag::try_from(tag).ok()?;
    let mut buf = Zeroizing::new(ct.to_vec());
    ChaCha20Poly1305::new(&Key::from(*key))
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
        let mut okm = [0u8; 42];
        hkdf(&salt, &ikm, &[&info[..5], &info[5..]], &mut okm);
        assert_eq!(
            hex(&okm),
            "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
        );
    }

    /// RFC 4231, test case 2 (HMAC-SHA256 with key "Jefe").
    #[test]
    fn hmac_sha256_rfc4231_case_2() {
        let mac = hmac(b"Jefe", &[b"what do ya want ", b"for nothing?"]);
        assert_eq!(
            hex(mac.as_ref()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn seal_open_round_trip_and_tamper() {
        let key = [9u8; 32];
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

    #[test]
    fn tags_differ_per_index_and_key() {
        let k1 = [1u8; 32];
        let k2 = [2u8; 32];
        assert_ne!(tag16(&k1, 0), tag16(&k1, 1));
        assert_ne!(tag16(&k1, 0), tag16(&k2, 0));
        assert_eq!(tag16(&k1, 7), tag16(&k1, 7));
    }
}
