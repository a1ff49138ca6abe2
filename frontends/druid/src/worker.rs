//! The JSON-RPC side: a tokio runtime on its own thread holds the daemon
//! connection and the event subscription. The window sends it
//! [`Request`]s; results come back as Druid commands through the
//! `ExtEventSink`.

use std::path::PathBuf;
use std::time::Duration;

use anonchat_ipc::{
    AnonchatClient as _, ContactInfo, Event, GroupInfo, HistoryEntry, IdentityInfo, IdentityState,
    Invitation, Status, Traffic,
};
use druid::{ExtEventSink, Selector, Target};
use jsonrpsee::async_client::Client;
use tokio::sync::mpsc;

use crate::secret::Passphrase;

pub const STATUS: Selector<Status> = Selector::new("anonchat.status");
pub const IDENTITY: Selector<IdentityInfo> = Selector::new("anonchat.identity");
pub const CONTACTS: Selector<Vec<ContactInfo>> = Selector::new("anonchat.contacts");
pub const GROUPS: Selector<Vec<GroupInfo>> = Selector::new("anonchat.groups");
pub const INVITATIONS: Selector<Vec<Invitation>> = Selector::new("anonchat.invitations");
pub const TRAFFIC: Selector<Traffic> = Selector::new("anonchat.traffic");
/// A group we just created (its name): the window opens it.
pub const GROUP_CREATED: Selector<String> = Selector::new("anonchat.group-created");
pub const HISTORY: Selector<(String, Vec<HistoryEntry>)> = Selector::new("anonchat.history");
pub const EVENT: Selector<Event> = Selector::new("anonchat.event");
pub const SENT: Selector<(String, u64, String)> = Selector::new("anonchat.sent");
pub const ADDED: Selector<ContactInfo> = Selector::new("anonchat.added");
pub const ERROR: Selector<String> = Selector::new("anonchat.error");
pub const UNREACHABLE: Selector<String> = Selector::new("anonchat.unreachable");
/// A no-op that follows every command (see [`Worker::send`]).
pub const NUDGE: Selector<()> = Selector::new("anonchat.nudge");

/// Requests queued for the worker at most (the UI shows "busy" beyond).
pub const QUEUE: usize = 64;

/// How often the status bar's traffic figures are read again.
const TRAFFIC_EVERY: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub enum Request {
    Refresh,
    Select(String),
    Send {
        to: String,
        text: String,
    },
    Unlock(Passphrase),
    Create {
        name: String,
        relay: String,
        passphrase: Passphrase,
    },
    AddContact {
        text: String,
        name: String,
    },
    Verify {
        name: String,
        fingerprint: String,
    },
    Export(PathBuf),
    StartDaemon,
    CreateGroup {
        name: String,
        with: Vec<String>,
    },
    /// Invite `contact` to `group` (`#name`).
    Invite {
        group: String,
        contact: String,
    },
    /// Accept the invitation with this group id.
    Accept(String),
    /// Decline the invitation with this group id.
    Decline(String),
    /// Leave `#name`.
    Leave(String),
}

struct Worker {
    socket: PathBuf,
    sink: ExtEventSink,
}

impl Worker {
    /// Hands a command to the window. druid 0.8's `submit_command` wakes
    /// the UI thread *before* it queues the command: if the wake-up runs
    /// first (a busy machine), the command waits until the next submit.
    /// A lone command (the `Locked` event of `anonctl lock`) then never
    /// arrived, and the window stayed on the conversation. So every
    /// command is followed by a no-op whose wake-up comes after the
    /// command is queued (only the no-op itself can wait, harmlessly).
    fn send<T: std::any::Any + Send>(&self, sel: Selector<T>, value: T) {
        let _ = self.sink.submit_command(sel, value, Target::Auto);
        let _ = self.sink.submit_command(NUDGE, (), Target::Auto);
    }

    fn error(&self, e: impl std::fmt::Display) {
        self.send(ERROR, e.to_string());
    }

    async fn refresh(&self, c: &Client) -> Result<(), jsonrpsee::core::ClientError> {
        let status = c.status().await?;
        if status.identity != IdentityState::None {
            self.send(IDENTITY, c.identity_show().await?);
        }
        // The contact list is sealed with the keys: none while locked.
        // Groups first: the contact list's handler picks the selection.
        let (contacts, groups, invitations) = if status.identity == IdentityState::Unlocked {
            (
                c.contacts_list().await?,
                or_none(c.groups_list().await)?,
                or_none(c.groups_invitations().await)?,
            )
        } else {
            (Vec::new(), Vec::new(), Vec::new())
        };
        self.send(STATUS, status);
        self.send(GROUPS, groups);
        self.send(INVITATIONS, invitations);
        self.send(CONTACTS, contacts);
        self.traffic(c).await
    }

    /// `daemon.traffic` for the status bar. A daemon without it (older)
    /// is no error: the bar just does not show the cost.
    async fn traffic(&self, c: &Client) -> Result<(), jsonrpsee::core::ClientError> {
        match c.traffic().await {
            Ok(t) => self.send(TRAFFIC, t),
            Err(jsonrpsee::core::ClientError::Call(_)) => {}
            Err(e) => return Err(e),
        }
        Ok(())
    }

    /// Runs a group operation; on success the lists are read again.
    async fn then_refresh(
        &self,
        c: &Client,
        r: Result<(), jsonrpsee::core::ClientError>,
    ) -> Result<(), jsonrpsee::core::ClientError> {
        if r.is_ok() {
            self.refresh(c).await?;
        }
        r
    }

    /// Handles one request; `Err` means the connection is gone.
    async fn handle(&self, c: &Client, req: Request) -> Result<(), jsonrpsee::core::ClientError> {
        use jsonrpsee::core::ClientError::Call;
        let outcome = match req {
            Request::Refresh => self.refresh(c).await,
            // Paged: a few long messages full of control characters would
            // not fit in one reply line.
            Request::Select(name) => anonchat_ipc::client::history(c, &name, Some(500))
                .await
                .map(|h| self.send(HISTORY, (name, h))),
            Request::Send { to, text } => c
                .messages_send(to.clone(), text.clone())
                .await
                .map(|sent| self.send(SENT, (to, sent.id, text))),
            Request::Unlock(pass) => {
                // The copy jsonrpsee serializes is its own; ours is
                // zeroized when `pass` drops.
                let r = c.identity_unlock(pass.expose().to_owned()).await;
                if r.is_ok() {
                    self.refresh(c).await?;
                }
                r
            }
            Request::Create {
                name,
                relay,
                passphrase,
            } => {
                let pass = (!passphrase.is_empty()).then(|| passphrase.expose().to_owned());
                let r = c.identity_create(name, relay, pass, None).await.map(|_| ());
                if r.is_ok() {
                    self.refresh(c).await?;
                }
                r
            }
            Request::AddContact { text, name } => c
                .contacts_add(text, name)
                .await
                .map(|info| self.send(ADDED, info)),
            Request::Verify { name, fingerprint } => {
                c.contacts_verify(name, fingerprint).await.map(|_| ())
            }
            Request::Export(path) => match c.identity_export().await {
                Ok(text) => {
                    if let Err(e) = std::fs::write(&path, text) {
                        self.error(format!("cannot write {}: {e}", path.display()));
                    }
                    Ok(())
                }
                Err(e) => Err(e),
            },
            Request::StartDaemon => Ok(()),
            Request::CreateGroup { name, with } => {
                let r = c.groups_create(name, Some(with)).await;
                let created = r.as_ref().ok().map(|g| g.name.clone());
                let r = self.then_refresh(c, r.map(|_| ())).await;
                if let Some(name) = created {
                    self.send(GROUP_CREATED, name);
                }
                r
            }
            Request::Invite { group, contact } => {
                let r = c.groups_invite(group, contact).await;
                self.then_refresh(c, r).await
            }
            Request::Accept(id) => {
                let r = c.groups_accept(id).await;
                self.then_refresh(c, r).await
            }
            Request::Decline(id) => {
                let r = c.groups_decline(id).await;
                self.then_refresh(c, r).await
            }
            Request::Leave(group) => {
                let r = c.groups_leave(group).await;
                self.then_refresh(c, r).await
            }
        };
        match outcome {
            Ok(()) => Ok(()),
            Err(Call(obj)) => {
                self.error(obj.message());
                Ok(())
            }
            Err(e) => Err(e),
        }
    }
}

/// A list the daemon refused (a daemon without groups, or locked since
/// the status was read): none, not a lost connection.
fn or_none<T>(
    r: Result<Vec<T>, jsonrpsee::core::ClientError>,
) -> Result<Vec<T>, jsonrpsee::core::ClientError> {
    match r {
        Err(jsonrpsee::core::ClientError::Call(_)) => Ok(Vec::new()),
        r => r,
    }
}

fn start_daemon(socket: &std::path::Path) -> Result<(), String> {
    let bin = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("anonchatd")))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("anonchatd"));
    let mut cmd = std::process::Command::new(bin);
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    cmd.arg("--socket")
        .arg(socket)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map(|_| ())
        .map_err(|e| format!("cannot start anonchatd: {e}"))
}

/// The request queue between the window and the worker.
pub fn channel() -> (mpsc::Sender<Request>, mpsc::Receiver<Request>) {
    mpsc::channel(QUEUE)
}

/// Runs the worker on its own thread until the window closes.
pub fn spawn(socket: PathBuf, sink: ExtEventSink, rx: mpsc::Receiver<Request>) {
    std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            let _ = sink.submit_command(
                ERROR,
                "cannot start the connection thread".to_owned(),
                Target::Auto,
            );
            return;
        };
        rt.block_on(run(Worker { socket, sink }, rx));
    });
}

async fn run(w: Worker, mut rx: mpsc::Receiver<Request>) {
    loop {
        let c = match anonchat_ipc::client::connect_checked(&w.socket).await {
            Ok(c) => c,
            Err(e) => {
                w.send(UNREACHABLE, e.to_string());
                // Wait for a request (start the daemon, retry) or retry in 2 s.
                match tokio::time::timeout(Duration::from_secs(2), rx.recv()).await {
                    Ok(None) => return,
                    Ok(Some(Request::StartDaemon)) => {
                        if let Err(e) = start_daemon(&w.socket) {
                            w.error(e);
                        }
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                    Ok(Some(_)) | Err(_) => {}
                }
                continue;
            }
        };
        if w.refresh(&c).await.is_err() {
            continue;
        }
        let Ok(mut events) = c.events().await else {
            continue;
        };
        let mut traffic = tokio::time::interval(TRAFFIC_EVERY);
        traffic.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        traffic.tick().await;
        loop {
            tokio::select! {
                _ = traffic.tick() => if w.traffic(&c).await.is_err() { break },
                req = rx.recv() => match req {
                    None => return,
                    Some(req) => if w.handle(&c, req).await.is_err() { break },
                },
                ev = events.next() => match ev {
                    Some(Ok(e)) => w.send(EVENT, e),
                    _ => break,
                },
            }
        }
    }
}
