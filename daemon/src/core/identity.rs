//! Identity and keys: create, unlock, lock, show, export.

use anonchat_ipc::{Event, IdentityInfo, LinkState};
use anonchat_protocol::e2e::{PrivateIdentity, PublicIdentity, Router};
use anonchat_protocol::wire::RelayAddress;

use super::{Core, Unlocked};
use crate::contacts::Contacts;
use crate::error::{Error, Result};
use crate::keystore::{self, KeystoreError};

fn identity_info(public: &PublicIdentity, protected: bool) -> IdentityInfo {
    IdentityInfo {
        name: public.nickname().to_owned(),
        fingerprint: public.fingerprint().readable(),
        fingerprint_hex: public.fingerprint().hex(),
        relay: public.relay().to_string(),
        shard: public.shard(),
        created_unix: public.created_unix(),
        keys_protected: protected,
    }
}

impl Core {
    /// The user's own identity.
    pub fn identity_show(&self) -> Result<IdentityInfo> {
        let inner = self.lock();
        let public = inner.public.as_ref().ok_or(Error::NoIdentity)?;
        Ok(identity_info(public, inner.protected))
    }

    /// The user's identity file (armored text), to give to contacts.
    pub fn identity_export(&self) -> Result<String> {
        let inner = self.lock();
        inner
            .public
            .as_ref()
            .map(PublicIdentity::to_armored)
            .ok_or(Error::NoIdentity)
    }

    /// Creates the identity (slow: RSA-3072 and Argon2id; call from a
    /// blocking thread). The daemon is unlocked afterwards.
    pub fn identity_create(
        &self,
        name: &str,
        relay: &str,
        passphrase: Option<&str>,
        shard: Option<u32>,
    ) -> Result<IdentityInfo> {
        // One creation at a time: a second caller waits, then finds the
        // identity the first one made.
        let _creating = self
            .exclusive_writes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if self.lock().public.is_some() {
            return Err(Error::IdentityExists);
        }
        let relay: RelayAddress = relay
            .trim()
            .parse()
            .map_err(|e| Error::InvalidRelay(format!("{e}")))?;
        let shard = shard.unwrap_or(0);
        let identity =
            PrivateIdentity::generate(&mut rand::rng(), name, &relay, shard, self.now_ms() / 1000)
                .map_err(Error::invalid)?;
        let secret = identity.to_secret_bytes().map_err(Error::storage)?;
        let passphrase = passphrase.unwrap_or("");
        let paths = &self.settings.paths;
        let key = keystore::create(
            &paths.identity_key(),
            passphrase,
            &secret,
            self.settings.kdf_cost,
        )
        .map_err(Error::storage)?;
        let public = identity.public().clone();
        keystore::write_atomic(&paths.identity_pub(), public.to_armored().as_bytes())
            .map_err(Error::storage)?;
        let router = Router::new(identity, self.router_config()).map_err(Error::invalid)?;
        // A new identity starts with an empty (sealed) contact list.
        let contacts = Contacts::default();
        contacts.seal(paths, &key)?;
        let mut inner = self.lock();
        if inner.public.is_some() {
            return Err(Error::IdentityExists);
        }
        let unlocked = Unlocked::start(router, key, &contacts, &self.settings, &mut *inner.rng)?;
        inner.contacts = contacts;
        inner.public = Some(public.clone());
        inner.protected = !passphrase.is_empty();
        inner.relay.address = Some(public.relay().to_string());
        inner.relay.shard = Some(public.shard());
        inner.unlocked = Some(unlocked);
        let info = identity_info(&public, inner.protected);
        drop(inner);
        tracing::info!("identity created");
        self.unlocked_tx.send_replace(true);
        self.emit(Event::Unlocked);
        Ok(info)
    }

    /// Unlocks (slow: Argon2id; call from a blocking thread).
    pub fn identity_unlock(&self, passphrase: &str) -> Result<()> {
        {
            let inner = self.lock();
            if inner.public.is_none() {
                return Err(Error::NoIdentity);
            }
            if inner.unlocked.is_some() {
                return Ok(());
            }
        }
        let paths = &self.settings.paths;
        let (key, secret) = match keystore::unlock(&paths.identity_key(), passphrase) {
            Ok(v) => v,
            Err(KeystoreError::WrongPassphrase) => return Err(Error::WrongPassphrase),
            Err(e) => return Err(Error::storage(e)),
        };
        let identity = PrivateIdentity::from_secret_bytes(&secret).map_err(Error::storage)?;
        let state = keystore::load_state(&paths.sessions(), &key).map_err(Error::storage)?;
        let router = match state {
            Some(bytes) => {
                let mut inner = self.lock();
                Router::import_state(&mut *inner.rng, identity, self.router_config(), &bytes)
                    .map_err(Error::storage)?
            }
            None => Router::new(identity, self.router_config()).map_err(Error::invalid)?,
        };
        let contacts = Contacts::open(paths, &key)?;
        let mut inner = self.lock();
        if inner.unlocked.is_some() {
            return Ok(());
        }
        let unlocked = Unlocked::start(router, key, &contacts, &self.settings, &mut *inner.rng)?;
        inner.contacts = contacts;
        inner.unlocked = Some(unlocked);
        drop(inner);
        tracing::info!("unlocked");
        self.unlocked_tx.send_replace(true);
        self.emit(Event::Unlocked);
        Ok(())
    }

    /// Saves the state, then forgets every key and the history.
    pub fn identity_lock(&self) -> Result<()> {
        let mut inner = self.lock();
        if inner.public.is_none() {
            return Err(Error::NoIdentity);
        }
        if let Some(u) = inner.unlocked.as_mut()
            && let Err(e) = u.save(&self.settings.paths)
        {
            tracing::error!(error = %e, "could not save session state while locking");
        }
        inner.forget();
        // The replay log holds received message text: history too.
        self.events.forget();
        inner.relay.state = LinkState::Offline;
        drop(inner);
        tracing::info!("locked");
        self.unlocked_tx.send_replace(false);
        self.emit(Event::Locked);
        Ok(())
    }

    /// On exit: save and forget, like lock.
    pub fn close(&self) {
        let mut inner = self.lock();
        if let Some(u) = inner.unlocked.as_mut()
            && let Err(e) = u.save(&self.settings.paths)
        {
            tracing::error!(error = %e, "could not save session state on exit");
        }
        inner.forget();
        self.events.forget();
        self.unlocked_tx.send_replace(false);
    }
}
