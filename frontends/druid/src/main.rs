//! `anonchat-gui`: the desktop window. Thin: flags, the window, and the
//! delegate that routes the worker's results into the model.

#![forbid(unsafe_code)]
// Doc comments here are clap's help text, read by people in a terminal.
#![allow(clippy::doc_markdown)]
// A binary: `pub` marks the interface of each module.
#![allow(unreachable_pub)]

mod keys;
mod model;
mod notify;
mod passbox;
mod secret;
mod settings;
mod ui;
mod worker;

use std::path::PathBuf;

use std::os::unix::process::CommandExt as _;

use clap::Parser;
use druid::{
    AppDelegate, AppLauncher, Command, DelegateCtx, Env, Event, Handled, KbKey, Target, WindowDesc,
    WindowId,
};
use tokio::sync::mpsc::Sender;

use crate::model::AppState;
use crate::settings::Settings;
use crate::worker::Request;

/// The window's size on first run, and its minimum.
const DEFAULT_SIZE: (f64, f64) = (900.0, 620.0);
const MIN_SIZE: (f64, f64) = (560.0, 380.0);

/// The anonchat desktop window. It talks to your anonchatd over its local
/// socket and never holds a key; closing it leaves the daemon running.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// The daemon's socket (default: $XDG_RUNTIME_DIR/anonchatd.sock).
    #[arg(long, env = "ANONCHAT_SOCKET")]
    socket: Option<PathBuf>,
}

struct Delegate {
    tx: Sender<Request>,
    notifier: notify::Notifier,
    /// Where the window's settings live (`None`: no home directory).
    settings: Option<PathBuf>,
    size: Option<(f64, f64)>,
}

impl Delegate {
    fn ask(&self, data: &mut AppState, req: Request) {
        if self.tx.try_send(req).is_err() {
            "the daemon connection is busy; try again in a moment".clone_into(&mut data.error);
        }
    }

    /// Opens a conversation (a contact's, or `#group`): closes the panels
    /// and loads its history.
    fn open(&self, data: &mut AppState, name: &str) {
        model::select(data, name);
        data.add = model::AddContact::default();
        data.new_group = model::GroupForm::default();
        self.ask(data, Request::Select(name.to_owned()));
    }
}

/// The largest identity file the window reads (the daemon takes 8 KiB).
const MAX_IDENTITY_FILE: u64 = 64 * 1024;

impl AppDelegate<AppState> for Delegate {
    fn command(
        &mut self,
        _ctx: &mut DelegateCtx<'_>,
        _target: Target,
        cmd: &Command,
        data: &mut AppState,
        _env: &Env,
    ) -> Handled {
        if cmd.is(worker::NUDGE) {
            // Only wakes the UI thread (see the worker's `send`).
        } else if let Some(s) = cmd.get(worker::STATUS) {
            model::apply_status(data, s);
        } else if let Some(list) = cmd.get(worker::GROUPS) {
            model::apply_groups(data, list);
        } else if let Some(list) = cmd.get(worker::INVITATIONS) {
            model::apply_invitations(data, list);
        } else if let Some(t) = cmd.get(worker::TRAFFIC) {
            model::apply_traffic(data, t);
        } else if let Some(name) = cmd.get(worker::GROUP_CREATED) {
            data.new_group = model::GroupForm::default();
            self.open(data, &format!("#{name}"));
        } else if let Some(info) = cmd.get(worker::IDENTITY) {
            model::apply_identity(data, info);
        } else if let Some(list) = cmd.get(worker::CONTACTS) {
            model::apply_contacts(data, list);
            if let Some(first) = model::default_selection(data) {
                model::select(data, &first);
            }
            if let Some(sel) = data.selected.clone() {
                self.ask(data, Request::Select(sel));
            }
        } else if let Some((with, h)) = cmd.get(worker::HISTORY) {
            model::apply_history(data, with, h);
        } else if let Some(e) = cmd.get(worker::EVENT) {
            let from = match e {
                anonchat_ipc::Event::MessageReceived { contact, text, .. } => {
                    Some((contact.clone(), text))
                }
                anonchat_ipc::Event::GroupMessageReceived {
                    group,
                    sender,
                    text,
                    ..
                } => Some((format!("{sender} in #{group}"), text)),
                _ => None,
            };
            if let Some((who, text)) = from
                && !notify::window_active()
            {
                let (summary, body) = model::notification(&who, text, data.notify_text);
                self.notifier.notify(&summary, &body);
            }
            if model::apply_event(data, e) {
                self.ask(data, Request::Refresh);
            }
        } else if let Some((to, id, text)) = cmd.get(worker::SENT) {
            model::apply_sent(data, to, *id, text.clone(), now_ms());
        } else if let Some(info) = cmd.get(worker::ADDED) {
            data.add.added_name.clone_from(&info.name);
            data.add.added_fingerprint.clone_from(&info.fingerprint);
            self.ask(data, Request::Refresh);
        } else if let Some(e) = cmd.get(worker::ERROR) {
            data.error.clone_from(e);
        } else if let Some(why) = cmd.get(worker::UNREACHABLE) {
            model::daemon_unreachable(data, why.clone());
        } else if let Some(name) = cmd.get(ui::SELECT) {
            self.open(data, name);
        } else if let Some((id, accept)) = cmd.get(ui::ANSWER) {
            model::answered(data, id);
            let req = if *accept {
                Request::Accept(id.clone())
            } else {
                Request::Decline(id.clone())
            };
            self.ask(data, req);
        } else if let Some(file) = cmd.get(druid::commands::OPEN_FILE) {
            // An identity file is a few kilobytes: a larger one is not one
            // (and a huge text would freeze the window).
            let too_large =
                std::fs::metadata(file.path()).is_ok_and(|m| m.len() > MAX_IDENTITY_FILE);
            match std::fs::read_to_string(file.path()) {
                _ if too_large => {
                    data.error = format!(
                        "{} is larger than {} KiB: not an anonchat identity file; ask your contact to export it again",
                        file.path().display(),
                        MAX_IDENTITY_FILE / 1024
                    );
                }
                Ok(text) => {
                    data.add.file_text = text;
                    data.add.file_name = file.path().display().to_string();
                }
                Err(e) => data.error = format!("cannot read {}: {e}", file.path().display()),
            }
        } else if let Some(file) = cmd.get(druid::commands::SAVE_FILE_AS) {
            self.ask(data, Request::Export(file.path().to_path_buf()));
        } else {
            return Handled::No;
        }
        Handled::Yes
    }

    fn event(
        &mut self,
        _ctx: &mut DelegateCtx<'_>,
        _window: WindowId,
        event: Event,
        data: &mut AppState,
        _env: &Env,
    ) -> Option<Event> {
        match &event {
            // Escape closes the add-contact and new-group panels wherever
            // the focus is.
            Event::KeyDown(k)
                if k.key == KbKey::Escape && (data.add.open || data.new_group.open) =>
            {
                data.add = model::AddContact::default();
                data.new_group = model::GroupForm::default();
                return None;
            }
            Event::WindowSize(size) => {
                let now = (size.width.round(), size.height.round());
                if self.size != Some(now) {
                    self.size = Some(now);
                    Settings::update(self.settings.as_deref(), |s| s.window = Some(now));
                }
            }
            _ => {}
        }
        Some(event)
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn main() {
    let args = Args::parse();
    let Some(socket) = args
        .socket
        .or_else(anonchat_ipc::client::default_socket_path)
    else {
        eprintln!("anonchat-gui: cannot find the daemon's socket; pass --socket PATH");
        std::process::exit(2);
    };
    // GTK's GApplication parses the process's own arguments again and
    // exits on any it does not know ("Unknown option --socket"): hand ours
    // over in the environment and start again without arguments.
    if std::env::args_os().len() > 1 {
        let err = std::process::Command::new(
            std::env::current_exe().unwrap_or_else(|_| PathBuf::from("anonchat-gui")),
        )
        .env("ANONCHAT_SOCKET", &socket)
        .exec();
        eprintln!(
            "anonchat-gui: cannot restart itself without arguments: {err} (set ANONCHAT_SOCKET instead of passing --socket)"
        );
        std::process::exit(1);
    }
    let settings_path = settings::default_path();
    let stored = settings_path
        .as_deref()
        .map(Settings::load)
        .unwrap_or_default();
    let size = settings::usable_size(&stored, MIN_SIZE).unwrap_or(DEFAULT_SIZE);
    let (tx, rx) = worker::channel();
    let window = WindowDesc::new(ui::root(tx.clone(), settings_path.clone()))
        .title(|d: &AppState, _: &Env| model::title(d))
        .window_size(size)
        .with_min_size(MIN_SIZE);
    let launcher = AppLauncher::with_window(window).delegate(Delegate {
        tx,
        notifier: notify::Notifier::default(),
        settings: settings_path,
        size: Some(size),
    });
    worker::spawn(socket.clone(), launcher.get_external_handle(), rx);
    let mut state = AppState::new(socket.display().to_string());
    state.notify_text = stored.notify_text;
    if let Err(e) = launcher.launch(state) {
        eprintln!(
            "anonchat-gui: cannot open the window: {e} (is there a display? try `xvfb-run anonchat-gui` for a headless one)"
        );
        std::process::exit(1);
    }
}
