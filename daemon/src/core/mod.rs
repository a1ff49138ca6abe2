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
mod identity;
mod messages;
mod rounds;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anonchat_ipc::{Event, IdentityState, LinkState, RelayStatus, Status};
use anonchat_protocol::e2e::{Config, ContactId, PublicIdentity, Router};
use anonchat_protocol::wire::DEFAULT_CELL_SIZE;
use rand::CryptoRng;
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;

use crate::contacts::Contacts;
use crate::error::{Error, Result};
use crate::keystore::{self, DataKey, KeystoreError};
use crate::paths::Paths;

pub use messages::HISTORY_PER_CONTACT;

/// Events buffered per subscriber before it counts as lagging.
pub const EVENT_BUFFER: usize = 1024;
/// Default time after which an unacknowledged message is sent again.
pub const DEFAULT_RETRANSMIT_AFTER: Duration = Duration::from_secs(30);

/// Where the core reads the time: the system clock, or (for in-process
/// tests and the fault simulator) a number the test moves.
#[derive(Clone, Default)]
pub enum Clock {
    /// Milliseconds since the Unix epoch.
    #[default]
    System,
    /// A clock the owner of the `Arc` sets.
    Manual(Arc<AtomicU64>),
}

impl Clock {
    /// Now, in milliseconds.
    pub fn now_ms(&self) -> u64 {
        match self {
            Self::System => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or(Duration::ZERO)
                .as_millis() as u64,
            Self::Manual(t) => t.load(Ordering::Relaxed),
        }
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::System => "Clock::System",
            Self::Manual(_) => "Clock::Manual",
        })
    }
}

/// What the daemon is configured with.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where its files and socket are.
    pub paths: Paths,
    /// Retransmit after this long without an acknowledgement.
    pub retransmit_after: Duration,
    /// The cell size sessions are made for (the relay's must match).
    pub cell_size: usize,
    /// Where the time comes from.
    pub clock: Clock,
    /// The Argon2id cost of a new key file.
    pub kdf_cost: keystore::KdfCost,
    /// Fault injection for tests: every save of the session state first
    /// waits this long, as on a very slow disk (zero in normal use). The
    /// send schedule's timing tests use it to make any save on the path
    /// from a batch to its answer stand out.
    pub slow_disk: Duration,
}

impl Settings {
    /// The defaults for a home.
    pub fn new(paths: Paths) -> Self {
        Self {
            paths,
            retransmit_after: DEFAULT_RETRANSMIT_AFTER,
            cell_size: DEFAULT_CELL_SIZE,
            clock: Clock::System,
            kdf_cost: keystore::KdfCost::DEFAULT,
            slow_disk: Duration::ZERO,
        }
    }
}

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
    events: broadcast::Sender<Event>,
    /// True while unlocked: the relay link runs only then.
    unlocked_tx: watch::Sender<bool>,
    /// The persisted configuration; the link redials when it changes.
    config: watch::Sender<crate::config::Config>,
    /// Cancelled to stop the daemon.
    pub shutdown: CancellationToken,
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
        let (events, _) = broadcast::channel(EVENT_BUFFER);
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
                relay,
                round_ms: None,
                resume: Resume::default(),
                rng,
            }),
            exclusive_writes: Mutex::new(()),
            events,
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
        let _ = self.events.send(e);
    }

    fn emit_all(&self, events: Vec<Event>) {
        for e in events {
            self.emit(e);
        }
    }

    /// A stream of every API event from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
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

/// The operating system's randomness, through rand's thread-local
/// generator, as a value that can live in the core and move across threads
/// (the thread-local one cannot).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemRng;

impl rand::TryRng for SystemRng {
    type Error = std::convert::Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        Ok(rand::Rng::next_u32(&mut rand::rng()))
    }

    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        Ok(rand::Rng::next_u64(&mut rand::rng()))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        rand::Rng::fill_bytes(&mut rand::rng(), dst);
        Ok(())
    }
}

impl rand::TryCryptoRng for SystemRng {}
