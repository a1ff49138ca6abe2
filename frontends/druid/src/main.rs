//! `anonchat-gui`: the desktop window. Thin: flags, the window, and the
//! delegate that routes the worker's results into the model.

#![forbid(unsafe_code)]
// Doc comments here are clap's help text, read by people in a terminal.
#![allow(clippy::doc_markdown)]
// A binary: `pub` marks the interface of each module.
#![allow(unreachable_pub)]

mod model;
mod ui;
mod worker;

use std::path::PathBuf;

use clap::Parser;
use druid::{AppDelegate, AppLauncher, Command, DelegateCtx, Env, Handled, Target, WindowDesc};
use tokio::sync::mpsc::Sender;

use crate::model::AppState;
use crate::worker::Request;

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
}

impl Delegate {
    fn ask(&self, data: &mut AppState, req: Request) {
        if self.tx.try_send(req).is_err() {
            "the daemon connection is busy; try again in a moment".clone_into(&mut data.error);
        }
    }
}

impl AppDelegate<AppState> for Delegate {
    fn command(
        &mut self,
        _ctx: &mut DelegateCtx<'_>,
        _target: Target,
        cmd: &Command,
        data: &mut AppState,
        _env: &Env,
    ) -> Handled {
        if let Some(s) = cmd.get(worker::STATUS) {
            model::apply_status(data, s);
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
            model::select(data, name);
            data.add = model::AddContact::default();
            self.ask(data, Request::Select(name.clone()));
        } else if let Some(file) = cmd.get(druid::commands::OPEN_FILE) {
            match std::fs::read_to_string(file.path()) {
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
    let (tx, rx) = worker::channel();
    let window = WindowDesc::new(ui::root(tx.clone()))
        .title("anonchat")
        .window_size((900.0, 620.0))
        .with_min_size((560.0, 380.0));
    let launcher = AppLauncher::with_window(window).delegate(Delegate { tx });
    worker::spawn(socket.clone(), launcher.get_external_handle(), rx);
    let state = AppState::new(socket.display().to_string());
    if let Err(e) = launcher.launch(state) {
        eprintln!(
            "anonchat-gui: cannot open the window: {e} (is there a display? try `xvfb-run anonchat-gui` for a headless one)"
        );
        std::process::exit(1);
    }
}
