//! The contact list: names, ids, verified flags and the contacts' public
//! identity files. Public data, kept in `contacts.json` (mode 0600 all the
//! same: who your contacts are is nobody else's business).

use std::path::Path;

use anonchat_protocol::e2e::PublicIdentity;
use serde::{Deserialize, Serialize};

use crate::keystore::write_atomic;

/// Longest contact name, in bytes.
pub const MAX_NAME: usize = 64;
const FILE_VERSION: u32 = 1;
const MAX_FILE: u64 = 16 << 20;

#[derive(Debug, Clone)]
pub struct Contact {
    pub id: u64,
    pub name: String,
    pub verified: bool,
    pub identity: PublicIdentity,
}

#[derive(Serialize, Deserialize)]
struct Record {
    id: u64,
    name: String,
    verified: bool,
    identity: String,
}

#[derive(Serialize, Deserialize)]
struct File {
    version: u32,
    contacts: Vec<Record>,
}

/// A contact name a person can type: 1–64 bytes, no control characters,
/// no surrounding spaces.
pub fn check_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name.len() > MAX_NAME {
        return Err("a contact name must be 1 to 64 bytes long");
    }
    if name.trim() != name {
        return Err("a contact name cannot start or end with a space");
    }
    if name.chars().any(char::is_control) {
        return Err("a contact name cannot contain control characters");
    }
    Ok(())
}

pub fn load(path: &Path) -> anyhow::Result<Vec<Contact>> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    if std::fs::metadata(path)?.len() > MAX_FILE {
        anyhow::bail!("{} is too large to be a contact list", path.display());
    }
    let file: File = serde_json::from_slice(&std::fs::read(path)?)
        .map_err(|e| anyhow::anyhow!("{} is damaged: {e}", path.display()))?;
    if file.version != FILE_VERSION {
        anyhow::bail!(
            "{} has format {}, expected {FILE_VERSION}",
            path.display(),
            file.version
        );
    }
    file.contacts
        .into_iter()
        .map(|r| {
            let identity = PublicIdentity::from_armored(&r.identity)
                .map_err(|e| anyhow::anyhow!("contact {:?} in {}: {e}", r.name, path.display()))?;
            Ok(Contact {
                id: r.id,
                name: r.name,
                verified: r.verified,
                identity,
            })
        })
        .collect()
}

pub fn save(path: &Path, contacts: &[Contact]) -> anyhow::Result<()> {
    let file = File {
        version: FILE_VERSION,
        contacts: contacts
            .iter()
            .map(|c| Record {
                id: c.id,
                name: c.name.clone(),
                verified: c.verified,
                identity: c.identity.to_armored(),
            })
            .collect(),
    };
    write_atomic(path, &serde_json::to_vec_pretty(&file)?)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(check_name("bob").is_ok());
        assert!(check_name("Bob Smith").is_ok());
        for bad in ["", " bob", "bob ", "b\nob", &"x".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_damaged_file_is_an_error_not_an_empty_list() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("contacts.json");
        assert!(load(&path).unwrap().is_empty());
        std::fs::write(&path, b"{not json").unwrap();
        assert!(load(&path).is_err());
        save(&path, &[]).unwrap();
        assert!(load(&path).unwrap().is_empty());
    }
}
