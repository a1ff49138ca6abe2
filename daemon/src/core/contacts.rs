//! The address book operations. The registry itself (and the rule that the
//! router follows it) is [`crate::contacts::Contacts`].

use anonchat_ipc::{ContactInfo, Event};
use anonchat_protocol::e2e::PublicIdentity;

use super::Core;
use crate::error::{Error, Result};

impl Core {
    /// Adds a contact from its identity file text, under the user's `name`.
    pub fn contacts_add(&self, text: &str, name: &str) -> Result<ContactInfo> {
        crate::contacts::check_name(name).map_err(Error::invalid)?;
        let identity = PublicIdentity::from_armored(text).map_err(Error::InvalidIdentityFile)?;
        let mut guard = self.lock();
        let inner = &mut *guard;
        let unlocked = inner.unlocked.as_mut().ok_or(Error::Locked)?;
        let info = inner
            .contacts
            .add(&mut *inner.rng, identity, name, &mut unlocked.router)?
            .info();
        inner.save_contacts_and_sessions(&self.settings.paths)?;
        drop(guard);
        self.emit(Event::ContactAdded {
            contact: name.to_owned(),
        });
        Ok(info)
    }

    /// Every contact (the list is sealed while locked).
    pub fn contacts_list(&self) -> Result<Vec<ContactInfo>> {
        let mut inner = self.lock();
        inner.unlocked()?;
        Ok(inner
            .contacts
            .iter()
            .map(crate::contacts::Contact::info)
            .collect())
    }

    /// Removes a contact, its sessions and its history.
    pub fn contacts_remove(&self, name: &str) -> Result<()> {
        let mut guard = self.lock();
        let inner = &mut *guard;
        let unlocked = inner.unlocked.as_mut().ok_or(Error::Locked)?;
        let id = inner.contacts.by_name(name)?.id;
        inner.contacts.remove(id, &mut unlocked.router);
        inner.history.remove(&id);
        inner.save_contacts_and_sessions(&self.settings.paths)?;
        drop(guard);
        // The replay log holds the removed contact's messages, under a
        // name that a new contact may take: forget it all (a subscriber
        // that asks for older events is told they are gone, and re-reads
        // the history).
        self.events.forget();
        self.emit(Event::ContactRemoved {
            contact: name.to_owned(),
        });
        Ok(())
    }

    /// Marks a contact verified once the user has compared fingerprints.
    pub fn contacts_verify(&self, name: &str, fingerprint: &str) -> Result<ContactInfo> {
        let mut inner = self.lock();
        inner.unlocked()?;
        let info = inner.contacts.verify(name, fingerprint)?.info();
        inner.save_contacts(&self.settings.paths)?;
        drop(inner);
        self.emit(Event::ContactVerified {
            contact: name.to_owned(),
        });
        Ok(info)
    }
}
