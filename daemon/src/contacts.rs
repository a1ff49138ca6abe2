//! The contact registry: the one owner of who your contacts are. Names, ids,
//! verified flags and the contacts' public identity files live here, in one
//! `id → contact` map with a name index; the end-to-end router follows this
//! list (see [`Contacts::attach`]), never the other way round.
//!
//! Kept in `contacts.bin`, sealed under the key store's data key (who your
//! contacts are is nobody else's business): the list exists in memory only
//! while the daemon is unlocked.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use anonchat_protocol::e2e::{ContactId, MAX_CONTACTS, PublicIdentity, Router};
use serde::{Deserialize, Serialize};

use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::keystore::{self, DataKey};
use crate::paths::Paths;

/// Longest contact name, in bytes.
pub const MAX_NAME: usize = 64;
const FILE_VERSION: u32 = 1;
const MAX_FILE: u64 = 16 << 20;

/// One contact as the user knows it.
#[derive(Debug, Clone)]
pub struct Contact {
    /// The daemon's number for it (also the router's).
    pub id: ContactId,
    /// The user's name for it: unique, what RPC calls take.
    pub name: String,
    /// Whether the user compared the fingerprint.
    pub verified: bool,
    /// Its public identity (from the identity file).
    pub identity: PublicIdentity,
}

impl Contact {
    /// The API's view of this contact.
    pub fn info(&self) -> anonchat_ipc::ContactInfo {
        anonchat_ipc::ContactInfo {
            name: self.name.clone(),
            nickname: self.identity.nickname().to_owned(),
            fingerprint: self.identity.fingerprint().readable(),
            fingerprint_hex: self.identity.fingerprint().hex(),
            verified: self.verified,
            relay: self.identity.relay().to_string(),
            shard: self.identity.shard(),
        }
    }
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
/// no surrounding spaces, no `#` at the start (that addresses a group).
pub fn check_name(name: &str) -> Result<(), &'static str> {
    if name.starts_with('#') {
        return Err(
            "a contact name cannot start with '#' (that addresses a group); choose another",
        );
    }
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

/// Every contact, by id, with a name index.
#[derive(Debug, Default)]
pub struct Contacts {
    by_id: BTreeMap<ContactId, Contact>,
    by_name: HashMap<String, ContactId>,
}

impl Contacts {
    /// Opens the sealed list of the home with the data key (empty if there
    /// is none yet). A list from an older version, in plaintext
    /// (`contacts.json`), is sealed and its plaintext file removed. A
    /// damaged file is an error, never an empty list.
    pub fn open(paths: &Paths, key: &DataKey) -> Result<Self> {
        let sealed = paths.contacts();
        if let Some(bytes) = keystore::load_contacts(&sealed, key).map_err(Error::storage)? {
            return Self::from_bytes(&bytes, &sealed).map_err(Error::storage);
        }
        let legacy = paths.legacy_contacts();
        if !legacy.try_exists().map_err(Error::storage)? {
            return Ok(Self::default());
        }
        if std::fs::metadata(&legacy).map_err(Error::storage)?.len() > MAX_FILE {
            return Err(Error::Storage(format!(
                "{} is too large to be a contact list",
                legacy.display()
            )));
        }
        let bytes = Zeroizing::new(std::fs::read(&legacy).map_err(Error::storage)?);
        let contacts = Self::from_bytes(&bytes, &legacy).map_err(Error::storage)?;
        contacts.seal(paths, key)?;
        std::fs::remove_file(&legacy).map_err(Error::storage)?;
        tracing::info!("the contact list is now sealed under the key store");
        Ok(contacts)
    }

    /// Parses a list (`origin` names it in errors).
    fn from_bytes(bytes: &[u8], path: &Path) -> anyhow::Result<Self> {
        let mut contacts = Self::default();
        let file: File = serde_json::from_slice(bytes)
            .map_err(|e| anyhow::anyhow!("{} is damaged: {e}", path.display()))?;
        if file.version != FILE_VERSION {
            anyhow::bail!(
                "{} has format {}, expected {FILE_VERSION}",
                path.display(),
                file.version
            );
        }
        for r in file.contacts {
            let identity = PublicIdentity::from_armored(&r.identity)
                .map_err(|e| anyhow::anyhow!("contact {:?} in {}: {e}", r.name, path.display()))?;
            let id = ContactId(r.id);
            if contacts.by_id.contains_key(&id) || contacts.by_name.contains_key(&r.name) {
                anyhow::bail!("{} is damaged: contact {:?} twice", path.display(), r.name);
            }
            contacts.insert(Contact {
                id,
                name: r.name,
                verified: r.verified,
                identity,
            });
        }
        Ok(contacts)
    }

    /// Seals the list under the data key and writes it atomically.
    pub fn seal(&self, paths: &Paths, key: &DataKey) -> Result<()> {
        keystore::save_contacts(&paths.contacts(), key, &self.to_bytes()?).map_err(Error::storage)
    }

    fn to_bytes(&self) -> Result<Zeroizing<Vec<u8>>> {
        let file = File {
            version: FILE_VERSION,
            contacts: self
                .by_id
                .values()
                .map(|c| Record {
                    id: c.id.0,
                    name: c.name.clone(),
                    verified: c.verified,
                    identity: c.identity.to_armored(),
                })
                .collect(),
        };
        serde_json::to_vec(&file)
            .map(Zeroizing::new)
            .map_err(Error::storage)
    }

    /// Puts `c` in both maps (replacing a contact of the same id).
    fn insert(&mut self, c: Contact) -> &Contact {
        self.by_name.insert(c.name.clone(), c.id);
        match self.by_id.entry(c.id) {
            std::collections::btree_map::Entry::Vacant(v) => v.insert(c),
            std::collections::btree_map::Entry::Occupied(mut o) => {
                o.insert(c);
                o.into_mut()
            }
        }
    }

    /// How many contacts there are.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Every contact, in id order.
    pub fn iter(&self) -> impl Iterator<Item = &Contact> {
        self.by_id.values()
    }

    /// The contact with this id.
    pub fn get(&self, id: ContactId) -> Option<&Contact> {
        self.by_id.get(&id)
    }

    /// The contact the user calls `name`, or the error that says so.
    pub fn by_name(&self, name: &str) -> Result<&Contact> {
        self.by_name
            .get(name)
            .and_then(|id| self.by_id.get(id))
            .ok_or_else(|| Error::UnknownContact(name.to_owned()))
    }

    /// Adds a contact under `name` (checked), to the list and to the
    /// (unlocked) router, whose own identity is refused as a contact.
    pub fn add(
        &mut self,
        rng: &mut dyn rand::CryptoRng,
        identity: PublicIdentity,
        name: &str,
        router: &mut Router,
    ) -> Result<&Contact> {
        check_name(name).map_err(Error::invalid)?;
        if router.identity().fingerprint() == identity.fingerprint() {
            return Err(Error::invalid("that identity file is your own"));
        }
        if self.by_name.contains_key(name) {
            return Err(Error::ContactExists(format!(
                "a contact named {name:?} exists"
            )));
        }
        if let Some(c) = self
            .iter()
            .find(|c| c.identity.fingerprint() == identity.fingerprint())
        {
            return Err(Error::ContactExists(format!(
                "this identity is already your contact {:?}",
                c.name
            )));
        }
        if self.len() >= MAX_CONTACTS {
            return Err(Error::invalid("too many contacts"));
        }
        let id = ContactId(self.by_id.keys().next_back().map_or(0, |id| id.0) + 1);
        router
            .add_contact(rng, id, identity.clone())
            .map_err(Error::invalid)?;
        Ok(self.insert(Contact {
            id,
            name: name.to_owned(),
            verified: false,
            identity,
        }))
    }

    /// Removes a contact from the list and its sessions from the router.
    pub fn remove(&mut self, id: ContactId, router: &mut Router) -> Option<Contact> {
        let c = self.by_id.remove(&id)?;
        self.by_name.remove(&c.name);
        router.remove_contact(id);
        Some(c)
    }

    /// Marks a contact verified if `fingerprint` is its fingerprint.
    pub fn verify(&mut self, name: &str, fingerprint: &str) -> Result<&Contact> {
        let id = self.by_name(name)?.id;
        let c = self
            .by_id
            .get_mut(&id)
            .ok_or_else(|| Error::UnknownContact(name.to_owned()))?;
        if !c.identity.fingerprint().matches(fingerprint) {
            return Err(Error::FingerprintMismatch);
        }
        c.verified = true;
        Ok(c)
    }

    /// Makes a freshly unlocked router follow this list: contacts it has
    /// that the list does not are dropped, contacts it lacks are added.
    /// The list is the truth.
    pub fn attach(&self, rng: &mut dyn rand::CryptoRng, router: &mut Router) {
        let stale: Vec<ContactId> = router
            .contact_ids()
            .filter(|id| !self.by_id.contains_key(id))
            .collect();
        for id in stale {
            router.remove_contact(id);
        }
        let known: std::collections::BTreeSet<ContactId> = router.contact_ids().collect();
        for c in self.iter().filter(|c| !known.contains(&c.id)) {
            if let Err(e) = router.add_contact(rng, c.id, c.identity.clone()) {
                tracing::warn!(contact = c.id.0, error = %e, "a contact cannot have sessions");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(check_name("bob").is_ok());
        assert!(check_name("Bob Smith").is_ok());
        for bad in ["", " bob", "bob ", "b\nob", "#bob", &"x".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    fn home() -> (tempfile::TempDir, Paths, DataKey) {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths {
            home: dir.path().to_path_buf(),
            socket: dir.path().join("s"),
        };
        let key = keystore::create(
            &paths.identity_key(),
            "",
            b"secret",
            keystore::KdfCost::INSECURE_FOR_TESTS,
        )
        .unwrap();
        (dir, paths, key)
    }

    #[test]
    fn a_damaged_file_is_an_error_not_an_empty_list() {
        let (_dir, paths, key) = home();
        assert!(Contacts::open(&paths, &key).unwrap().is_empty());
        std::fs::write(paths.contacts(), b"{not sealed").unwrap();
        assert!(Contacts::open(&paths, &key).is_err());
        Contacts::default().seal(&paths, &key).unwrap();
        assert!(Contacts::open(&paths, &key).unwrap().is_empty());
        let mut sealed = std::fs::read(paths.contacts()).unwrap();
        let last = sealed.len() - 1;
        sealed[last] ^= 1;
        std::fs::write(paths.contacts(), &sealed).unwrap();
        assert!(
            Contacts::open(&paths, &key).is_err(),
            "tampering is noticed"
        );
    }

    #[test]
    fn a_plaintext_list_from_an_older_version_is_sealed_and_removed() {
        let (_dir, paths, key) = home();
        std::fs::write(paths.legacy_contacts(), br#"{"version":1,"contacts":[]}"#).unwrap();
        assert!(Contacts::open(&paths, &key).unwrap().is_empty());
        assert!(!paths.legacy_contacts().exists());
        assert!(paths.contacts().exists());
        std::fs::write(paths.legacy_contacts(), b"{not json").unwrap();
        assert!(
            Contacts::open(&paths, &key).is_ok(),
            "the sealed list wins; the stray file is left alone"
        );
    }
}
