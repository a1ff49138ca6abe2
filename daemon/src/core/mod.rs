//! The daemon's state and every operation on it, one file per concern:
//! [`identity`] (create, unlock, lock), [`contacts`] (the address book),
//! [`messages`] (send, history, protocol events to API events) and
//! [`rounds`] (the relay link's two operations: receive a batch, prepare
//! the one cell of a round). RPC handlers and the relay link call in here;
//! nothing here does network I/O, reads the wall clock except through
//! [`Clock`], or knows about JSON-RPC (errors are [`crate::error::Error`]).
//!
//! Locking: one `std::sync::Mutex` around [`Inner`], never held across an
//! `.await`. Disk writes (state saves) happen under it, so the saved state
//! and the cell about to be sent always agree.

mod contacts;
pub mod events;
mod group_events;
mod groups;
mod identity;
mod messages;
mod rounds;
mod settings;
mod traffic;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anonchat_ipc::{
    Event, EventPosition, IdentityState, LinkState, RelayStatus, SequencedEvent, Status,
};
use anonchat_protocol::e2e::{Config, ContactId, GroupId, PublicIdentity, Router};
use rand::CryptoRng;
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;

use crate::contacts::Contacts;
use crate::error::{Error, Result};
use crate::keystore::{self, DataKey, KeystoreError};
use crate::paths::Paths;

pub use events::{Attached, EVENT_BUFFER, EventLog};
pub use messages::HISTORY_PER_CONTACT;
pub use settings::{Clock, DEFAULT_RETRANSMIT_AFTER, Settings, SystemRng};
pub use traffic::TrafficMeter;

/// What exists only while unlocked: the sessions and the key that seals
/// them on disk.
struct Unlocked {
    router: Router,
    key: DataKey,
    saved_changes: u64,
    /// See [`Settings::slow_disk`].
    slow_disk: Duration,
}

impl Unlocked {
    /// The unlocked state: the router made to follow the contact registry,
    /// and saved so that the file on disk matches it.
    fn start(
        mut router: Router,
        key: DataKey,
        contacts: &Contacts,
        settings: &Settings,
        rng: &mut dyn CryptoRng,
    ) -> Result<Self> {
        contacts.attach(rng, &mut router);
        let mut unlocked = Self {
            router,
            key,
            saved_changes: 0,
            slow_disk: settings.slow_disk,
        };
        unlocked.save(&settings.paths).map_err(Error::storage)?;
        Ok(unlocked)
    }

    /// Seals and writes the session state, and remembers what was saved.
    fn save(&mut self, paths: &Paths) -> Result<(), KeystoreError> {
        if !self.slow_disk.is_zero() {
            std::thread::sleep(self.slow_disk);
        }
        let state = self.router.export_state();
        keystore::save_state(&paths.sessions(), &self.key, &state)?;
        self.saved_changes = self.router.changes();
        Ok(())
    }

    /// Whether the router changed since the last save.
    fn dirty(&self) -> bool {
        self.router.changes() != self.saved_changes
    }
}

struct Inner {
    public: Option<PublicIdentity>,
    protected: bool,
    unlocked: Option<Unlocked>,
    contacts: Contacts,
    history: HashMap<ContactId, VecDeque<messages::Entry>>,
    /// Group conversations, RAM only like the rest.
    group_history: HashMap<GroupId, VecDeque<messages::Entry>>,
    relay: RelayStatus,
    /// The round length of the current relay link, once connected.
    round_ms: Option<u32>,
    /// Where a reconnect may resume (see [`Resume`]); RAM only, cleared on
    /// lock.
    resume: Resume,
    rng: Box<dyn CryptoRng + Send>,
}

/// The resume point of the relay link. A resume links the new connection
/// to the old one (the relay sees the round it continues from), so it is
/// asked for only after a short outage: the last batch read is at most
/// the relay's backlog window old (and never more than [`MAX_RESUME_MS`]).
/// Never across lock/unlock (cleared) or a daemon restart (not saved).
#[derive(Debug, Clone, Copy, Default)]
struct Resume {
    /// The last round whose batch was read.
    round: Option<u64>,
    /// When it was read (ms).
    at_ms: u64,
    /// How much backlog the relay announced at the last join (ms).
    window_ms: u64,
}

/// The longest outage after which the link resumes, whatever the relay's
/// backlog (ms).
pub const MAX_RESUME_MS: u64 = 120_000;

impl Inner {
    fn unlocked(&mut self) -> Result<&mut Unlocked> {
        self.unlocked.as_mut().ok_or(Error::Locked)
    }

    /// Seals and writes the contact list (unlocked only).
    fn save_contacts(&self, paths: &Paths) -> Result<()> {
        let u = self.unlocked.as_ref().ok_or(Error::Locked)?;
        self.contacts.seal(paths, &u.key)
    }

    /// After a change to the address book: the sealed list, then the
    /// sessions the router added or dropped.
    fn save_contacts_and_sessions(&mut self, paths: &Paths) -> Result<()> {
        self.save_contacts(paths)?;
        self.unlocked()?.save(paths).map_err(Error::storage)
    }

    /// Forgets what exists only while unlocked: keys, contacts, history.
    fn forget(&mut self) {
        self.resume = Resume::default();
        self.unlocked = None;
        self.contacts = Contacts::default();
        self.history.clear();
        self.group_history.clear();
    }
}

/// The daemon's state. Shared (`Arc`) by the RPC server and the relay link.
pub struct Core {
    /// What it was started with.
    pub settings: Settings,
    inner: Mutex<Inner>,
    /// Held for the whole of `identity.create` (slow, and it writes the key
    /// files outside `inner`'s lock) and of a configuration change: one
    /// such writer at a time.
    exclusive_writes: Mutex<()>,
    /// Numbered, kept for replay, broadcast.
    events: EventLog,
    /// True while unlocked: the relay link runs only then.
    unlocked_tx: watch::Sender<bool>,
    /// The persisted configuration; the link redials when it changes.
    config: watch::Sender<crate::config::Config>,
    /// Cancelled to stop the daemon.
    pub shutdown: CancellationToken,
    /// The relay link's recent batch sizes (`daemon.traffic`).
    traffic: Mutex<traffic::TrafficMeter>,
}

impl Core {
    /// Loads what is on disk: the public identity (if any) and contacts.
    /// The daemon starts locked.
    pub fn open(settings: Settings) -> anyhow::Result<Arc<Self>> {
        Self::open_with_rng(settings, Box::new(SystemRng))
    }

    /// [`Core::open`] with the randomness the sessions use given by the
    /// caller: the operating system's in the daemon, a seeded generator in
    /// the fault simulator so that a failing run can be replayed.
    pub fn open_with_rng(
        settings: Settings,
        rng: Box<dyn CryptoRng + Send>,
    ) -> anyhow::Result<Arc<Self>> {
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
        let (unlocked_tx, _) = watch::channel(false);
        let (config, _) = watch::channel(
            crate::config::Config::load(&paths.config()).map_err(|e| anyhow::anyhow!("{e}"))?,
        );
        let relay = RelayStatus {
            state: LinkState::Offline,
            address: public.as_ref().map(|p| p.relay().to_string()),
            shard: public.as_ref().map(PublicIdentity::shard),
            round: None,
            last_error: None,
            proxy: None,
        };
        Ok(Arc::new(Self {
            settings,
            inner: Mutex::new(Inner {
                public,
                protected,
                unlocked: None,
                // Sealed on disk: read at unlock.
                contacts: Contacts::default(),
                history: HashMap::new(),
                group_history: HashMap::new(),
                relay,
                round_ms: None,
                resume: Resume::default(),
                rng,
            }),
            exclusive_writes: Mutex::new(()),
            traffic: Mutex::default(),
            events: EventLog::new(),
            unlocked_tx,
            config,
            shutdown: CancellationToken::new(),
        }))
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn emit(&self, e: Event) {
        self.events.emit(e);
    }

    fn emit_all(&self, events: Vec<Event>) {
        for e in events {
            self.emit(e);
        }
    }

    /// A stream of every API event from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<SequencedEvent> {
        self.events.live()
    }

    /// The events after `since` in `stream` (see [`EventLog::attach`]),
    /// then the live ones.
    pub fn subscribe_since(&self, since: Option<u64>, stream: Option<&str>) -> Result<Attached> {
        self.events.attach(since, stream)
    }

    /// Where the event stream stands.
    pub fn events_position(&self) -> EventPosition {
        self.events.position()
    }

    /// Watches whether the daemon is unlocked.
    pub fn watch_unlocked(&self) -> watch::Receiver<bool> {
        self.unlocked_tx.subscribe()
    }

    /// The persisted configuration.
    pub fn daemon_config(&self) -> crate::config::Config {
        self.config.borrow().clone()
    }

    /// Watches the configuration (the link redials when it changes).
    pub fn watch_config(&self) -> watch::Receiver<crate::config::Config> {
        self.config.subscribe()
    }

    /// Sets (or, with `None`, removes) the proxy, persists it, and makes
    /// the link redial through it. Persisted first: a proxy is never in
    /// force in memory only.
    pub fn set_proxy(&self, proxy: Option<crate::config::Proxy>) -> Result<()> {
        // One change at a time, so memory and disk never disagree.
        let _one = self
            .exclusive_writes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut next = self.daemon_config();
        if next.proxy == proxy {
            return Ok(());
        }
        next.proxy = proxy;
        next.save(&self.settings.paths.config())?;
        if let Some(p) = &next.proxy {
            tracing::info!(proxy = %p, "relay link goes through the proxy");
        } else {
            tracing::warn!("proxy removed: the relay link connects directly");
        }
        self.config.send_replace(next);
        Ok(())
    }

    fn router_config(&self) -> Config {
        Config {
            cell_size: self.settings.cell_size,
            retransmit_after_ms: self.settings.retransmit_after.as_millis() as u64,
        }
    }

    fn now_ms(&self) -> u64 {
        self.settings.clock.now_ms()
    }

    /// The relay link's download and upload now.
    pub fn traffic(&self) -> anonchat_ipc::Traffic {
        self.traffic_meter().traffic()
    }

    /// The meter the relay link feeds.
    pub fn traffic_meter(&self) -> MutexGuard<'_, TrafficMeter> {
        self.traffic
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The daemon's state at a glance.
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
                "{undelivered} message(s) not delivered yet; they go out again until your contact's daemon acknowledges them"
            ));
        }
        Status {
            api_version: anonchat_ipc::API_VERSION,
            daemon_version: env!("CARGO_PKG_VERSION").to_owned(),
            identity,
            keys_protected: inner.public.as_ref().map(|_| inner.protected),
            relay: RelayStatus {
                proxy: self.daemon_config().proxy.map(|p| p.to_string()),
                ..inner.relay.clone()
            },
            contacts: inner.contacts.len() as u32,
            undelivered,
            warnings,
        }
    }
}

#[cfg(test)]
mod tests;
