//! The daemon's state and every operation on it. RPC handlers and the relay
//! link call in here; nothing here does network I/O.
//!
//! Locking: one `std::sync::Mutex` around [`Inner`], never held across an
//! `.await`. Disk writes (state saves) happen under it, so the saved state
//! and the cell about to be sent always agree.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anonchat_ipc::{
    ContactInfo, Delivery, Direction, ErrorCode, Event, HistoryEntry, IdentityInfo, IdentityState,
    LinkState, RelayStatus, Status, rpc_error,
};
use anonchat_protocol::e2e::{
    Config, ContactId, Event as E2eEvent, PrivateIdentity, PublicIdentity, Router,
};
use anonchat_protocol::wire::{DEFAULT_CELL_SIZE, RelayAddress};
use jsonrpsee::types::ErrorObjectOwned;
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;
use zeroize::Zeroizing;

use crate::contacts::{self, Contact};
use crate::keystore::{self, DataKey, KeystoreError};
use crate::paths::Paths;

/// Messages kept per contact in RAM; the oldest go first.
pub const HISTORY_PER_CONTACT: usize = 1000;
/// Events buffered per subscriber before it counts as lagging.
pub const EVENT_BUFFER: usize = 1024;

type RpcResult<T> = Result<T, ErrorObjectOwned>;

/// A message in RAM. The text is zeroized when dropped.
struct Entry {
    id: u64,
    direction: Direction,
    text: Zeroizing<String>,
    time_ms: u64,
    state: Delivery,
}

struct Unlocked {
    router: Router,
    key: DataKey,
    saved_changes: u64,
}

struct Inner {
    public: Option<PublicIdentity>,
    protected: bool,
    unlocked: Option<Unlocked>,
    contacts: Vec<Contact>,
    history: HashMap<u64, VecDeque<Entry>>,
    relay: RelayStatus,
}

/// What the daemon is configured with.
#[derive(Debug, Clone)]
pub struct Settings {
    pub paths: Paths,
    /// Retransmit after this long without an acknowledgement.
    pub retransmit_after: Duration,
    /// The cell size sessions are made for (the relay's must match).
    pub cell_size: usize,
}

impl Settings {
    pub fn new(paths: Paths) -> Self {
        Self {
            paths,
            retransmit_after: Duration::from_secs(30),
            cell_size: DEFAULT_CELL_SIZE,
        }
    }
}

pub struct Core {
    pub settings: Settings,
    inner: Mutex<Inner>,
    events: broadcast::Sender<Event>,
    /// True while unlocked: the relay link runs only then.
    unlocked_tx: watch::Sender<bool>,
    pub shutdown: CancellationToken,
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis() as u64
}

fn storage(e: impl std::fmt::Display) -> ErrorObjectOwned {
    rpc_error(ErrorCode::Storage, e)
}

fn invalid(e: impl std::fmt::Display) -> ErrorObjectOwned {
    rpc_error(ErrorCode::InvalidInput, e)
}

impl Core {
    /// Loads what is on disk: the public identity (if any) and contacts.
    /// The daemon starts locked.
    pub fn open(settings: Settings) -> anyhow::Result<Arc<Self>> {
        let paths = &settings.paths;
        let public = if paths.identity_pub().exists() {
            let text = std::fs::read_to_string(paths.identity_pub())?;
            Some(PublicIdentity::from_armored(&text).map_err(|e| {
                anyhow::anyhow!("{} is damaged: {e}", paths.identity_pub().display())
            })?)
        } else {
            None
        };
        let protected = if public.is_some() {
            keystore::is_protected(&paths.identity_key())?
        } else {
            false
        };
        let contacts = contacts::load(&paths.contacts())?;
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let (unlocked_tx, _) = watch::channel(false);
        let relay = RelayStatus {
            state: LinkState::Offline,
            address: public.as_ref().map(|p| p.relay().to_string()),
            shard: public.as_ref().map(PublicIdentity::shard),
            round: None,
            last_error: None,
        };
        Ok(Arc::new(Self {
            settings,
            inner: Mutex::new(Inner {
                public,
                protected,
                unlocked: None,
                contacts,
                history: HashMap::new(),
                relay,
            }),
            events,
            unlocked_tx,
            shutdown: CancellationToken::new(),
        }))
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn emit(&self, e: Event) {
        let _ = self.events.send(e);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    pub fn watch_unlocked(&self) -> watch::Receiver<bool> {
        self.unlocked_tx.subscribe()
    }

    fn config(&self) -> Config {
        Config {
            cell_size: self.settings.cell_size,
            retransmit_after_ms: self.settings.retransmit_after.as_millis() as u64,
        }
    }

    // ------------------------------------------------------------ status

    pub fn status(&self) -> Status {
        let inner = self.lock();
        let identity = match (&inner.public, &inner.unlocked) {
            (None, _) => IdentityState::None,
            (Some(_), None) => IdentityState::Locked,
            (Some(_), Some(_)) => IdentityState::Unlocked,
        };
        let undelivered = inner
            .unlocked
            .as_ref()
            .map_or(0, |u| u.router.undelivered()) as u32;
        let mut warnings = Vec::new();
        if inner.public.is_some() && !inner.protected {
            warnings.push(
                "your keys are stored without a passphrase: anyone who can read the daemon's home can take them"
                    .to_owned(),
            );
        }
        if matches!(inner.relay.state, LinkState::Retrying) {
            warnings.push(format!(
                "the relay is unreachable ({}); retrying",
                inner.relay.last_error.as_deref().unwrap_or("no answer")
            ));
        }
        if undelivered > 0 {
            warnings.push(format!(
                "{undelivered} message(s) not delivered yet; they live only in this daemon's memory and are lost if it stops"
            ));
        }
        Status {
            api_version: anonchat_ipc::API_VERSION,
            daemon_version: env!("CARGO_PKG_VERSION").to_owned(),
            identity,
            keys_protected: inner.public.as_ref().map(|_| inner.protected),
            relay: inner.relay.clone(),
            contacts: inner.contacts.len() as u32,
            undelivered,
            warnings,
        }
    }

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

    pub fn identity_show(&self) -> RpcResult<IdentityInfo> {
        let inner = self.lock();
        let public = inner
            .public
            .as_ref()
            .ok_or_else(|| rpc_error(ErrorCode::NoIdentity, ""))?;
        Ok(Self::identity_info(public, inner.protected))
    }

    pub fn identity_export(&self) -> RpcResult<String> {
        let inner = self.lock();
        inner
            .public
            .as_ref()
            .map(PublicIdentity::to_armored)
            .ok_or_else(|| rpc_error(ErrorCode::NoIdentity, ""))
    }

    // ---------------------------------------------------- identity, keys

    /// Creates the identity (slow: RSA-3072 and Argon2id; call from a
    /// blocking thread).
    pub fn identity_create(
        &self,
        name: &str,
        relay: &str,
        passphrase: Option<&str>,
        shard: Option<u32>,
    ) -> RpcResult<IdentityInfo> {
        if self.lock().public.is_some() {
            return Err(rpc_error(ErrorCode::IdentityExists, ""));
        }
        let relay: RelayAddress = relay
            .trim()
            .parse()
            .map_err(|e| rpc_error(ErrorCode::InvalidRelay, e))?;
        let shard = shard.unwrap_or(0);
        let identity =
            PrivateIdentity::generate(&mut rand::rng(), name, &relay, shard, now_ms() / 1000)
                .map_err(invalid)?;
        let secret = identity.to_secret_bytes().map_err(storage)?;
        let passphrase = passphrase.unwrap_or("");
        let paths = &self.settings.paths;
        let key = keystore::create(&paths.identity_key(), passphrase, &secret).map_err(storage)?;
        let public = identity.public().clone();
        keystore::write_atomic(&paths.identity_pub(), public.to_armored().as_bytes())
            .map_err(storage)?;
        let router = Router::new(identity, self.config()).map_err(invalid)?;
        let mut inner = self.lock();
        if inner.public.is_some() {
            return Err(rpc_error(ErrorCode::IdentityExists, ""));
        }
        let mut unlocked = Unlocked {
            router,
            key,
            saved_changes: 0,
        };
        for c in &inner.contacts {
            let _ = unlocked
                .router
                .add_contact(ContactId(c.id), c.identity.clone());
        }
        save(&self.settings.paths, &mut unlocked).map_err(storage)?;
        inner.public = Some(public.clone());
        inner.protected = !passphrase.is_empty();
        inner.relay.address = Some(public.relay().to_string());
        inner.relay.shard = Some(public.shard());
        inner.unlocked = Some(unlocked);
        let info = Self::identity_info(&public, inner.protected);
        drop(inner);
        tracing::info!("identity created");
        self.unlocked_tx.send_replace(true);
        self.emit(Event::Unlocked);
        Ok(info)
    }

    /// Unlocks (slow: Argon2id; call from a blocking thread).
    pub fn identity_unlock(&self, passphrase: &str) -> RpcResult<()> {
        {
            let inner = self.lock();
            if inner.public.is_none() {
                return Err(rpc_error(ErrorCode::NoIdentity, ""));
            }
            if inner.unlocked.is_some() {
                return Ok(());
            }
        }
        let paths = &self.settings.paths;
        let (key, secret) = match keystore::unlock(&paths.identity_key(), passphrase) {
            Ok(v) => v,
            Err(KeystoreError::WrongPassphrase) => {
                return Err(rpc_error(ErrorCode::WrongPassphrase, ""));
            }
            Err(e) => return Err(storage(e)),
        };
        let identity = PrivateIdentity::from_secret_bytes(&secret).map_err(storage)?;
        let state = keystore::load_state(&paths.sessions(), &key).map_err(storage)?;
        let mut router = match state {
            Some(bytes) => {
                Router::import_state(identity, self.config(), &bytes).map_err(storage)?
            }
            None => Router::new(identity, self.config()).map_err(invalid)?,
        };
        let mut inner = self.lock();
        if inner.unlocked.is_some() {
            return Ok(());
        }
        // The contact list is the truth; the router follows it.
        let known: Vec<ContactId> = router.contact_ids().collect();
        for id in known {
            if !inner.contacts.iter().any(|c| c.id == id.0) {
                router.remove_contact(id);
            }
        }
        for c in &inner.contacts {
            if !router.contact_ids().any(|id| id.0 == c.id) {
                let _ = router.add_contact(ContactId(c.id), c.identity.clone());
            }
        }
        let mut unlocked = Unlocked {
            router,
            key,
            saved_changes: 0,
        };
        save(paths, &mut unlocked).map_err(storage)?;
        inner.unlocked = Some(unlocked);
        drop(inner);
        tracing::info!("unlocked");
        self.unlocked_tx.send_replace(true);
        self.emit(Event::Unlocked);
        Ok(())
    }

    /// Saves the state, then forgets every key and the history.
    pub fn identity_lock(&self) -> RpcResult<()> {
        let mut inner = self.lock();
        if inner.public.is_none() {
            return Err(rpc_error(ErrorCode::NoIdentity, ""));
        }
        if let Some(mut u) = inner.unlocked.take()
            && let Err(e) = save(&self.settings.paths, &mut u)
        {
            tracing::error!(error = %e, "could not save session state while locking");
        }
        inner.history.clear();
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
        if let Some(mut u) = inner.unlocked.take()
            && let Err(e) = save(&self.settings.paths, &mut u)
        {
            tracing::error!(error = %e, "could not save session state on exit");
        }
        inner.history.clear();
        self.unlocked_tx.send_replace(false);
    }

    // ----------------------------------------------------------- contacts

    fn contact_info(c: &Contact) -> ContactInfo {
        ContactInfo {
            name: c.name.clone(),
            nickname: c.identity.nickname().to_owned(),
            fingerprint: c.identity.fingerprint().readable(),
            fingerprint_hex: c.identity.fingerprint().hex(),
            verified: c.verified,
            relay: c.identity.relay().to_string(),
            shard: c.identity.shard(),
        }
    }

    pub fn contacts_add(&self, text: &str, name: &str) -> RpcResult<ContactInfo> {
        contacts::check_name(name).map_err(invalid)?;
        let identity = PublicIdentity::from_armored(text)
            .map_err(|e| rpc_error(ErrorCode::InvalidIdentityFile, e))?;
        let mut inner = self.lock();
        if inner
            .public
            .as_ref()
            .is_some_and(|p| p.fingerprint() == identity.fingerprint())
        {
            return Err(invalid("that identity file is your own"));
        }
        if inner.contacts.iter().any(|c| c.name == name) {
            return Err(rpc_error(
                ErrorCode::ContactExists,
                format!("a contact named {name:?} exists"),
            ));
        }
        if let Some(c) = inner
            .contacts
            .iter()
            .find(|c| c.identity.fingerprint() == identity.fingerprint())
        {
            return Err(rpc_error(
                ErrorCode::ContactExists,
                format!("this identity is already your contact {:?}", c.name),
            ));
        }
        if inner.contacts.len() >= anonchat_protocol::e2e::MAX_CONTACTS {
            return Err(invalid("too many contacts"));
        }
        let id = inner.contacts.iter().map(|c| c.id).max().unwrap_or(0) + 1;
        let contact = Contact {
            id,
            name: name.to_owned(),
            verified: false,
            identity,
        };
        if let Some(u) = inner.unlocked.as_mut() {
            u.router
                .add_contact(ContactId(id), contact.identity.clone())
                .map_err(invalid)?;
        }
        inner.contacts.push(contact);
        contacts::save(&self.settings.paths.contacts(), &inner.contacts).map_err(storage)?;
        let info = Self::contact_info(inner.contacts.last().unwrap_or_else(|| unreachable!()));
        if let Some(u) = inner.unlocked.as_mut() {
            save(&self.settings.paths, u).map_err(storage)?;
        }
        drop(inner);
        self.emit(Event::ContactAdded {
            contact: name.to_owned(),
        });
        Ok(info)
    }

    pub fn contacts_list(&self) -> Vec<ContactInfo> {
        self.lock()
            .contacts
            .iter()
            .map(Self::contact_info)
            .collect()
    }

    fn find<'a>(inner: &'a Inner, name: &str) -> RpcResult<&'a Contact> {
        inner
            .contacts
            .iter()
            .find(|c| c.name == name)
            .ok_or_else(|| rpc_error(ErrorCode::UnknownContact, format!("{name:?}")))
    }

    pub fn contacts_remove(&self, name: &str) -> RpcResult<()> {
        let mut inner = self.lock();
        let id = Self::find(&inner, name)?.id;
        inner.contacts.retain(|c| c.id != id);
        inner.history.remove(&id);
        contacts::save(&self.settings.paths.contacts(), &inner.contacts).map_err(storage)?;
        if let Some(u) = inner.unlocked.as_mut() {
            u.router.remove_contact(ContactId(id));
            save(&self.settings.paths, u).map_err(storage)?;
        }
        drop(inner);
        self.emit(Event::ContactRemoved {
            contact: name.to_owned(),
        });
        Ok(())
    }

    pub fn contacts_verify(&self, name: &str, fingerprint: &str) -> RpcResult<ContactInfo> {
        let mut inner = self.lock();
        let id = Self::find(&inner, name)?.id;
        let contact = inner
            .contacts
            .iter_mut()
            .find(|c| c.id == id)
            .ok_or_else(|| rpc_error(ErrorCode::UnknownContact, name))?;
        if !contact.identity.fingerprint().matches(fingerprint) {
            return Err(rpc_error(ErrorCode::FingerprintMismatch, ""));
        }
        contact.verified = true;
        let info = Self::contact_info(contact);
        contacts::save(&self.settings.paths.contacts(), &inner.contacts).map_err(storage)?;
        drop(inner);
        self.emit(Event::ContactVerified {
            contact: name.to_owned(),
        });
        Ok(info)
    }

    // ----------------------------------------------------------- messages

    pub fn messages_send(&self, to: &str, text: &str) -> RpcResult<anonchat_ipc::SentMessage> {
        let mut inner = self.lock();
        let id = Self::find(&inner, to)?.id;
        let paths = &self.settings.paths;
        let unlocked = inner
            .unlocked
            .as_mut()
            .ok_or_else(|| rpc_error(ErrorCode::Locked, ""))?;
        let msg_id = unlocked
            .router
            .send(ContactId(id), text.as_bytes())
            .map_err(|e| rpc_error(ErrorCode::MessageRejected, e))?;
        // The message id is persistent state: save before anything is sent.
        save(paths, unlocked).map_err(storage)?;
        push_history(
            &mut inner,
            id,
            Entry {
                id: msg_id,
                direction: Direction::Out,
                text: Zeroizing::new(text.to_owned()),
                time_ms: now_ms(),
                state: Delivery::Queued,
            },
        );
        Ok(anonchat_ipc::SentMessage {
            id: msg_id,
            state: Delivery::Queued,
        })
    }

    pub fn messages_history(&self, with: &str, limit: Option<u32>) -> RpcResult<Vec<HistoryEntry>> {
        let inner = self.lock();
        let id = Self::find(&inner, with)?.id;
        if inner.unlocked.is_none() {
            return Err(rpc_error(ErrorCode::Locked, ""));
        }
        let entries = inner.history.get(&id);
        let len = entries.map_or(0, VecDeque::len);
        let skip = limit.map_or(0, |l| len.saturating_sub(l as usize));
        Ok(entries
            .into_iter()
            .flatten()
            .skip(skip)
            .map(|e| HistoryEntry {
                id: e.id,
                direction: e.direction,
                text: e.text.to_string(),
                time_ms: e.time_ms,
                state: e.state,
            })
            .collect())
    }

    // -------------------------------------------------------- relay link

    /// Where to connect: relay, shard and the round to resume after.
    pub fn link_target(&self) -> Option<(RelayAddress, u32, Option<u64>)> {
        let inner = self.lock();
        inner.unlocked.as_ref()?;
        let p = inner.public.as_ref()?;
        Some((p.relay().clone(), p.shard(), inner.relay.round))
    }

    pub fn set_link(&self, state: LinkState, error: Option<String>) {
        let mut inner = self.lock();
        if inner.relay.state == state && error.is_none() {
            return;
        }
        inner.relay.state = state;
        if error.is_some() || state == LinkState::Connected {
            inner.relay.last_error = error;
        }
        let round = inner.relay.round;
        drop(inner);
        self.emit(Event::RelayStateChanged { state, round });
    }

    /// Feeds one received batch (`received`: its round and cells) and, if
    /// `reply_round` is given, returns the cell to send in that round (real
    /// or cover). The state is saved before a cell that changed it is
    /// handed out. `None` when locked.
    pub fn on_batch(
        &self,
        received: Option<(u64, &[&[u8]])>,
        reply_round: Option<u64>,
    ) -> Option<Vec<u8>> {
        let mut rng = rand::rng();
        let now = now_ms();
        let mut inner = self.lock();
        let unlocked = inner.unlocked.as_mut()?;
        let mut events = Vec::new();
        if let Some((round, cells)) = received {
            for cell in cells {
                events.extend(unlocked.router.receive_cell(&mut rng, round, cell));
            }
        }
        let cell = reply_round.map(|r| {
            let (cell, evs) = unlocked.router.next_cell(&mut rng, r, now);
            events.extend(evs);
            cell
        });
        if unlocked.router.changes() != unlocked.saved_changes
            && let Err(e) = save(&self.settings.paths, unlocked)
        {
            // Never send a cell whose key use is not on disk.
            tracing::error!(error = %e, "cannot save session state; sending cover instead");
            drop(inner);
            return cell.map(|c| {
                let mut cover = vec![0u8; c.len()];
                rand::Rng::fill_bytes(&mut rng, &mut cover);
                cover
            });
        }
        // The last round processed: where a reconnect resumes.
        if let Some((round, _)) = received {
            inner.relay.round = Some(round);
        }
        let out = Self::apply(&mut inner, events);
        drop(inner);
        for e in out {
            self.emit(e);
        }
        cell
    }

    /// Turns protocol events into history updates and API events.
    fn apply(inner: &mut Inner, events: Vec<E2eEvent>) -> Vec<Event> {
        let mut out = Vec::new();
        for e in events {
            let (contact, update) = match e {
                E2eEvent::Received {
                    contact,
                    msg_id,
                    body,
                } => {
                    let text = Zeroizing::new(String::from_utf8_lossy(&body).into_owned());
                    let time_ms = now_ms();
                    if let Some(name) = name_of(inner, contact.0) {
                        out.push(Event::MessageReceived {
                            contact: name,
                            id: msg_id,
                            text: text.to_string(),
                            time_ms,
                        });
                    }
                    push_history(
                        inner,
                        contact.0,
                        Entry {
                            id: msg_id,
                            direction: Direction::In,
                            text,
                            time_ms,
                            state: Delivery::Received,
                        },
                    );
                    continue;
                }
                E2eEvent::Sent { contact, msg_id } => (contact, Some((msg_id, Delivery::Sent))),
                E2eEvent::Delivered { contact, msg_id } => {
                    (contact, Some((msg_id, Delivery::Delivered)))
                }
                E2eEvent::Retransmitting { .. } | E2eEvent::SessionStarted { .. } => continue,
            };
            let Some((msg_id, state)) = update else {
                continue;
            };
            if let Some(entry) = inner.history.get_mut(&contact.0).and_then(|h| {
                h.iter_mut()
                    .find(|e| e.direction == Direction::Out && e.id == msg_id)
            }) {
                // Delivered is final; a late "sent" does not undo it.
                if entry.state == Delivery::Delivered {
                    continue;
                }
                entry.state = state;
            }
            if let Some(name) = name_of(inner, contact.0) {
                out.push(Event::DeliveryChanged {
                    contact: name,
                    id: msg_id,
                    state,
                });
            }
        }
        out
    }
}

fn name_of(inner: &Inner, id: u64) -> Option<String> {
    inner
        .contacts
        .iter()
        .find(|c| c.id == id)
        .map(|c| c.name.clone())
}

fn push_history(inner: &mut Inner, contact: u64, entry: Entry) {
    let h = inner.history.entry(contact).or_default();
    if h.len() >= HISTORY_PER_CONTACT {
        h.pop_front();
    }
    h.push_back(entry);
}

fn save(paths: &Paths, u: &mut Unlocked) -> Result<(), KeystoreError> {
    let state = u.router.export_state();
    keystore::save_state(&paths.sessions(), &u.key, &state)?;
    u.saved_changes = u.router.changes();
    Ok(())
}
