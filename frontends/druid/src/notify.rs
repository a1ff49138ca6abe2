//! Desktop notifications (the freedesktop notification spec, over the
//! session D-Bus through GIO, which the window's GTK already links) for
//! messages that arrive while the window is not in front.

use std::collections::HashMap;

use gtk::prelude::*;
use gtk::{gio, glib};

/// Whether one of our windows has the keyboard focus.
pub fn window_active() -> bool {
    gtk::Window::list_toplevels()
        .iter()
        .filter_map(|w| w.downcast_ref::<gtk::Window>())
        .any(GtkWindowExt::is_active)
}

/// Text fit for a notification: no control characters; `&`, `<` and `>`
/// escaped (servers may read the body as markup).
pub fn plain(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            // Controls, bidi overrides and invisible characters: a
            // contact's text must not reorder or hide what the
            // notification shows.
            c if anonchat_ipc::is_hidden(c) => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// Notifications queued for the D-Bus thread at most; more are dropped.
const QUEUE: usize = 16;

/// Posts notifications from a thread of its own with its own session-bus
/// connection: the window never waits for the bus or the notification
/// server (a synchronous call on GTK's thread can wait on GTK's own bus
/// set-up, which waits on that thread).
pub struct Notifier {
    tx: Option<std::sync::mpsc::SyncSender<(String, String)>>,
}

impl Default for Notifier {
    fn default() -> Self {
        let (tx, rx) = std::sync::mpsc::sync_channel::<(String, String)>(QUEUE);
        let spawned = std::thread::Builder::new()
            .name("notifications".into())
            .spawn(move || {
                // The bus is reached at the first notification, not at
                // start: a window that never notifies never touches it.
                let mut bus = None;
                while let Ok((summary, body)) = rx.recv() {
                    if bus.is_none() {
                        bus = connect();
                    }
                    let Some(bus) = &bus else { return };
                    post(bus, &summary, &body);
                }
            });
        Self {
            tx: spawned.ok().map(|_| tx),
        }
    }
}

impl Notifier {
    /// Queues a notification; dropped if the queue is full or there is no
    /// session bus.
    pub fn notify(&self, summary: &str, body: &str) {
        if let Some(tx) = &self.tx {
            let _ = tx.try_send((plain(summary), plain(body)));
        }
    }
}

/// A private connection to the session bus; `None` (said once) without one.
fn connect() -> Option<gio::DBusConnection> {
    let connected =
        gio::dbus_address_get_for_bus_sync(gio::BusType::Session, gio::Cancellable::NONE).and_then(
            |address| {
                gio::DBusConnection::for_address_sync(
                    &address,
                    gio::DBusConnectionFlags::AUTHENTICATION_CLIENT
                        | gio::DBusConnectionFlags::MESSAGE_BUS_CONNECTION,
                    None,
                    gio::Cancellable::NONE,
                )
            },
        );
    match connected {
        Ok(c) => Some(c),
        Err(e) => {
            eprintln!(
                "anonchat-gui: no desktop notifications: cannot reach the session bus ({e}); log in to a desktop session to get them"
            );
            None
        }
    }
}

/// One `org.freedesktop.Notifications.Notify` call.
fn post(bus: &gio::DBusConnection, summary: &str, body: &str) {
    let hints: HashMap<String, glib::Variant> = HashMap::from([
        ("category".to_owned(), "im.received".to_variant()),
        ("urgency".to_owned(), 1u8.to_variant()),
    ]);
    let params = (
        "anonchat",
        0u32,
        "",
        summary,
        body,
        Vec::<String>::new(),
        hints,
        -1i32,
    )
        .to_variant();
    if let Err(e) = bus.call_sync(
        Some("org.freedesktop.Notifications"),
        "/org/freedesktop/Notifications",
        "org.freedesktop.Notifications",
        "Notify",
        Some(&params),
        glib::VariantTy::new("(u)").ok(),
        gio::DBusCallFlags::NONE,
        5_000,
        gio::Cancellable::NONE,
    ) {
        eprintln!("anonchat-gui: the notification server refused a notification: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notification_text_is_plain() {
        assert_eq!(plain("a<b>&\u{1b}[2J\n"), "a&lt;b&gt;&amp; [2J ");
    }
}
