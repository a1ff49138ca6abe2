//! Secrets at rest: Argon2id turns the passphrase into a key that seals a
//! random data key and the identity's secrets (XChaCha20-Poly1305); the
//! data key seals the session state. Files are written atomically (temp
//! file, fsync, rename, fsync of the directory) with mode 0600.
//!
//! `identity.key`: `"ACKS" || 1 || protected u8 || m_cost u32 || t_cost u32
//! || p_cost u32 || salt[16] || nonce[24] || AEAD(key, aad = all before, data_key[32] || identity)`.
//! `sessions.bin`: `"ACSS" || 1 || nonce[24] || AEAD(data_key, aad = all before, state)`.

use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

use argon2::{Algorithm, Argon2, Params, Version};
use chacha20poly1305::aead::{AeadInOut, KeyInit};
use chacha20poly1305::{Key, Tag, XChaCha20Poly1305, XNonce};
use rand::Rng as _;
use zeroize::Zeroizing;

const KEY_MAGIC: &[u8; 4] = b"ACKS";
const STATE_MAGIC: &[u8; 4] = b"ACSS";
const CONTACTS_MAGIC: &[u8; 4] = b"ACCL";
const VERSION: u8 = 1;
const TAG: usize = 16;
/// Bytes of the `identity.key` header before the nonce.
const KEY_HEADER: usize = 4 + 1 + 1 + 12 + 16;
/// Largest keystore file read, in bytes (the identity is a few KiB, the
/// session state at most a few MiB).
const MAX_FILE: u64 = 64 << 20;

/// Argon2id cost: 64 MiB, 3 passes, 1 lane.
pub const KDF_M_COST_KIB: u32 = 64 * 1024;
/// Argon2id passes.
pub const KDF_T_COST: u32 = 3;
/// Argon2id lanes.
pub const KDF_P_COST: u32 = 1;

/// The Argon2id cost a new key file is sealed with (recorded in its header,
/// so unlocking reads it from there).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KdfCost {
    /// Memory, in KiB.
    pub m_kib: u32,
    /// Passes.
    pub t: u32,
    /// Lanes.
    pub p: u32,
}

impl KdfCost {
    /// What the daemon uses: 64 MiB, 3 passes, 1 lane.
    pub const DEFAULT: Self = Self {
        m_kib: KDF_M_COST_KIB,
        t: KDF_T_COST,
        p: KDF_P_COST,
    };
    /// Argon2's minimum, for in-process tests and the fault simulator that
    /// create and unlock thousands of homes. Never for real keys.
    pub const INSECURE_FOR_TESTS: Self = Self {
        m_kib: 8,
        t: 1,
        p: 1,
    };
}

impl Default for KdfCost {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Why a key store file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeystoreError {
    /// The passphrase does not open the key file.
    #[error("wrong passphrase")]
    WrongPassphrase,
    /// The file (path) is not what it should be (why).
    #[error("{0} is damaged ({1}); restore it from a backup, or move the home away to start over")]
    Corrupt(String, &'static str),
    /// The file (path) has another format version.
    #[error("{0} was written by another anonchat version (format {1}); use that version")]
    UnknownVersion(String, u8),
    /// The file (path) cannot be read or written.
    #[error("cannot access {0}: {1}")]
    Io(String, std::io::Error),
}

/// The unlocked key material: the data key that seals session state.
pub struct DataKey(Zeroizing<[u8; 32]>);

impl DataKey {
    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(&Key::from(*self.0))
    }
}

fn kdf(
    passphrase: &str,
    salt: &[u8; 16],
    m: u32,
    t: u32,
    p: u32,
) -> Result<Zeroizing<[u8; 32]>, &'static str> {
    let params = Params::new(m, t, p, Some(32)).map_err(|_| "bad KDF parameters")?;
    let mut out = Zeroizing::new([0u8; 32]);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(passphrase.as_bytes(), salt, out.as_mut())
        .map_err(|_| "KDF failed")?;
    Ok(out)
}

fn seal(cipher: &XChaCha20Poly1305, header: &[u8], plain: &[u8]) -> Vec<u8> {
    let mut nonce = [0u8; 24];
    rand::rng().fill_bytes(&mut nonce);
    let mut out = header.to_vec();
    out.extend_from_slice(&nonce);
    let aad = out.clone();
    let mut body = plain.to_vec();
    #[expect(
        clippy::expect_used,
        reason = "XChaCha20-Poly1305 refuses only plaintexts over 256 GiB; key store files are bounded by MAX_FILE"
    )]
    let tag = cipher
        .encrypt_inout_detached(&XNonce::from(nonce), &aad, body.as_mut_slice().into())
        .expect("key store plaintexts are far below the AEAD's limit");
    out.extend_from_slice(&body);
    out.extend_from_slice(&tag);
    zeroize::Zeroize::zeroize(&mut body);
    out
}

fn open(cipher: &XChaCha20Poly1305, header_len: usize, file: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    let aad_len = header_len + 24;
    if file.len() < aad_len + TAG {
        return None;
    }
    let nonce = XNonce::try_from(&file[header_len..aad_len]).ok()?;
    let (ct, tag) = file[aad_len..].split_at(file.len() - aad_len - TAG);
    let mut body = Zeroizing::new(ct.to_vec());
    cipher
        .decrypt_inout_detached(
            &nonce,
            &file[..aad_len],
            body.as_mut_slice().into(),
            &Tag::try_from(tag).ok()?,
        )
        .ok()?;
    Some(body)
}

/// Writes `bytes` to `path` atomically, mode 0600, durably.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), KeystoreError> {
    // A name of our own: two writers of one file never share a temporary.
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let io = |e| KeystoreError::Io(path.display().to_string(), e);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{}.{n}.tmp", std::process::id()));
    let tmp = path.with_file_name(name);
    let written = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        // A failed write (a full disk) leaves no temporary behind.
        let _ = fs::remove_file(&tmp);
        return Err(io(e));
    }
    if let Some(dir) = path.parent() {
        File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
    }
    Ok(())
}

fn read_bounded(path: &Path) -> Result<Vec<u8>, KeystoreError> {
    let io = |e| KeystoreError::Io(path.display().to_string(), e);
    let len = fs::metadata(path).map_err(io)?.len();
    if len > MAX_FILE {
        return Err(KeystoreError::Corrupt(
            path.display().to_string(),
            "too large",
        ));
    }
    fs::read(path).map_err(io)
}

/// Creates `identity.key`: a fresh data key and the identity secrets under
/// the passphrase (empty: unprotected, and marked so).
pub fn create(
    path: &Path,
    passphrase: &str,
    identity: &[u8],
    cost: KdfCost,
) -> Result<DataKey, KeystoreError> {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let mut data_key = Zeroizing::new([0u8; 32]);
    rand::rng().fill_bytes(data_key.as_mut());
    let mut header = Vec::with_capacity(38);
    header.extend_from_slice(KEY_MAGIC);
    header.push(VERSION);
    header.push(u8::from(!passphrase.is_empty()));
    for v in [cost.m_kib, cost.t, cost.p] {
        header.extend_from_slice(&v.to_be_bytes());
    }
    header.extend_from_slice(&salt);
    let key = kdf(passphrase, &salt, cost.m_kib, cost.t, cost.p)
        .map_err(|e| KeystoreError::Corrupt(path.display().to_string(), e))?;
    let mut plain = Zeroizing::new(Vec::with_capacity(32 + identity.len()));
    plain.extend_from_slice(data_key.as_ref());
    plain.extend_from_slice(identity);
    let file = seal(&XChaCha20Poly1305::new(&Key::from(*key)), &header, &plain);
    write_atomic(path, &file)?;
    Ok(DataKey(data_key))
}

/// Whether `identity.key` is protected by a passphrase (readable without it).
pub fn is_protected(path: &Path) -> Result<bool, KeystoreError> {
    let file = read_bounded(path)?;
    check_header(path, &file, *KEY_MAGIC)?;
    Ok(file.get(5) == Some(&1))
}

fn check_header(path: &Path, file: &[u8], magic: [u8; 4]) -> Result<(), KeystoreError> {
    let name = || path.display().to_string();
    if file.len() < 5 || file[..4] != magic {
        return Err(KeystoreError::Corrupt(
            name(),
            "not an anonchat key store file",
        ));
    }
    if file[4] != VERSION {
        return Err(KeystoreError::UnknownVersion(name(), file[4]));
    }
    Ok(())
}

/// Opens `identity.key`: the data key and the identity secrets.
pub fn unlock(
    path: &Path,
    passphrase: &str,
) -> Result<(DataKey, Zeroizing<Vec<u8>>), KeystoreError> {
    let file = read_bounded(path)?;
    check_header(path, &file, *KEY_MAGIC)?;
    let name = || path.display().to_string();
    if file.len() < KEY_HEADER + 24 + TAG + 32 {
        return Err(KeystoreError::Corrupt(name(), "truncated"));
    }
    let u32_at = |i: usize| u32::from_be_bytes([file[i], file[i + 1], file[i + 2], file[i + 3]]);
    let (m, t, p) = (u32_at(6), u32_at(10), u32_at(14));
    if m > 4 * KDF_M_COST_KIB || t > 16 * KDF_T_COST || p > 16 {
        return Err(KeystoreError::Corrupt(name(), "KDF cost out of range"));
    }
    let mut salt = [0u8; 16];
    salt.copy_from_slice(&file[18..34]);
    let key = kdf(passphrase, &salt, m, t, p).map_err(|e| KeystoreError::Corrupt(name(), e))?;
    // A wrong passphrase and a damaged file look the same to an AEAD; the
    // header was checked, so "wrong passphrase" is the likely cause.
    let plain = open(&XChaCha20Poly1305::new(&Key::from(*key)), KEY_HEADER, &file)
        .ok_or(KeystoreError::WrongPassphrase)?;
    let mut data_key = Zeroizing::new([0u8; 32]);
    data_key.copy_from_slice(&plain[..32]);
    Ok((DataKey(data_key), Zeroizing::new(plain[32..].to_vec())))
}

/// Seals `data` under the data key with a header naming what it is (so a
/// file cannot pass for another), and writes it atomically.
fn save_sealed(
    path: &Path,
    key: &DataKey,
    magic: [u8; 4],
    data: &[u8],
) -> Result<(), KeystoreError> {
    let mut header = Vec::with_capacity(5);
    header.extend_from_slice(&magic);
    header.push(VERSION);
    write_atomic(path, &seal(&key.cipher(), &header, data))
}

/// Reads what [`save_sealed`] wrote; `Ok(None)` if the file does not exist.
fn load_sealed(
    path: &Path,
    key: &DataKey,
    magic: [u8; 4],
) -> Result<Option<Zeroizing<Vec<u8>>>, KeystoreError> {
    // Only a file that is really absent is "none yet": an unreadable
    // directory must not turn into an empty contact list or state.
    if !path
        .try_exists()
        .map_err(|e| KeystoreError::Io(path.display().to_string(), e))?
    {
        return Ok(None);
    }
    let file = read_bounded(path)?;
    check_header(path, &file, magic)?;
    open(&key.cipher(), 5, &file)
        .map(Some)
        .ok_or_else(|| KeystoreError::Corrupt(path.display().to_string(), "does not authenticate"))
}

/// Seals and writes the session state.
pub fn save_state(path: &Path, key: &DataKey, state: &[u8]) -> Result<(), KeystoreError> {
    save_sealed(path, key, *STATE_MAGIC, state)
}

/// Reads the session state; `Ok(None)` if there is none yet.
pub fn load_state(path: &Path, key: &DataKey) -> Result<Option<Zeroizing<Vec<u8>>>, KeystoreError> {
    load_sealed(path, key, *STATE_MAGIC)
}

/// Seals and writes the contact list.
pub fn save_contacts(path: &Path, key: &DataKey, list: &[u8]) -> Result<(), KeystoreError> {
    save_sealed(path, key, *CONTACTS_MAGIC, list)
}

/// Reads the contact list; `Ok(None)` if there is none yet.
pub fn load_contacts(
    path: &Path,
    key: &DataKey,
) -> Result<Option<Zeroizing<Vec<u8>>>, KeystoreError> {
    load_sealed(path, key, *CONTACTS_MAGIC)
}

#[cfg(test)]
mod tests;
