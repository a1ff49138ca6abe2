//! The relay's static key file: created 0600 on first start, one text line
//! `anonchat-relay-key-v1 <base64url private key>`.

use std::fs::{self, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use anonchat_protocol::wire::RelayKeypair;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use zeroize::Zeroizing;

const HEADER: &str = "anonchat-relay-key-v1";
const MAX_FILE: u64 = 256;

/// Why the key file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// The file exists but cannot be read.
    #[error("cannot read relay key file {path}: {source}")]
    Read {
        /// The key file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is absent and cannot be created or written.
    #[error(
        "cannot create relay key file {path}: {source} (check that its directory exists and is writable)"
    )]
    Create {
        /// The key file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is readable by other users.
    #[error(
        "relay key file {0} is readable by other users; run `chmod 600` on it (and consider the key leaked if others could read it)"
    )]
    Permissions(PathBuf),
    /// The file is not a relay key file.
    #[error(
        "{0} is not an anonchat relay key file (expected one line `{HEADER} <key>`); move it away to create a new key"
    )]
    Malformed(PathBuf),
}

/// Loads the key, or creates a new one (mode 0600) if the file is absent.
/// Returns the key pair and whether it was created.
pub fn load_or_create(path: &Path) -> Result<(RelayKeypair, bool), KeyFileError> {
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(mut file) => {
            let kp = RelayKeypair::generate(&mut rand::rng());
            let line = Zeroizing::new(format!(
                "{HEADER} {}\n",
                URL_SAFE_NO_PAD.encode(kp.private_bytes())
            ));
            let create_err = |source| KeyFileError::Create {
                path: path.to_owned(),
                source,
            };
            file.write_all(line.as_bytes()).map_err(create_err)?;
            file.sync_all().map_err(create_err)?;
            Ok((kp, true))
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok((load(path)?, false)),
        Err(source) => Err(KeyFileError::Create {
            path: path.to_owned(),
            source,
        }),
    }
}

fn load(path: &Path) -> Result<RelayKeypair, KeyFileError> {
    let read_err = |source| KeyFileError::Read {
        path: path.to_owned(),
        source,
    };
    let meta = fs::metadata(path).map_err(read_err)?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(KeyFileError::Permissions(path.to_owned()));
    }
    if meta.len() > MAX_FILE {
        return Err(KeyFileError::Malformed(path.to_owned()));
    }
    let text = Zeroizing::new(fs::read_to_string(path).map_err(read_err)?);
    let malformed = || KeyFileError::Malformed(path.to_owned());
    let encoded = text
        .strip_suffix('\n')
        .unwrap_or(&text)
        .strip_prefix(HEADER)
        .and_then(|rest| rest.strip_prefix(' '))
        .ok_or_else(malformed)?;
    let bytes = Zeroizing::new(URL_SAFE_NO_PAD.decode(encoded).map_err(|_| malformed())?);
    let private: [u8; 32] = bytes.as_slice().try_into().map_err(|_| malformed())?;
    Ok(RelayKeypair::from_private(Zeroizing::new(private)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_0600_then_loads_the_same_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("relay.key");
        let (a, created) = load_or_create(&path).unwrap();
        assert!(created);
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let (b, created) = load_or_create(&path).unwrap();
        assert!(!created);
        assert_eq!(a.public(), b.public());
    }

    #[test]
    fn world_readable_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("relay.key");
        load_or_create(&path).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            load_or_create(&path),
            Err(KeyFileError::Permissions(_))
        ));
    }

    #[test]
    fn malformed_files_are_refused_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        for content in [
            "",
            "hello\n",
            "anonchat-relay-key-v1 ***\n",
            "anonchat-relay-key-v1 AAAA\n",
        ] {
            let path = dir.path().join("k");
            let _ = fs::remove_file(&path);
            fs::write(&path, content).unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
            assert!(matches!(
                load_or_create(&path),
                Err(KeyFileError::Malformed(_))
            ));
            assert_eq!(fs::read_to_string(&path).unwrap(), content);
        }
    }
}
