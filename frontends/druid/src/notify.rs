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
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// The session bus, reached on first use; `None` (said once) without one.
#[derive(Default)]
pub struct Notifier {
    bus: Option<gio::DBusConnection>,
    tried: bool,
}

impl Notifier {
    fn bus(&mut self) -> Option<&gio::DBusConnection> {
        if !self.tried {
            self.tried = true;
            match gio::bus_get_sync(gio::BusType::Session, gio::Cancellable::NONE) {
                Ok(c) => self.bus = Some(c),
                Err(e) => eprintln!(
                    "anonchat-gui: no desktop notifications: cannot reach the session bus ({e}); log in to a desktop session to get them"
                ),
            }
        }
        self.bus.as_ref()
    }

    /// Posts a notification (asynchronously: the window never waits for
    /// the notification server).
    pub fn notify(&mut self, summary: &str, body: &str) {
        let Some(bus) = self.bus() else { return };
        let hints: HashMap<String, glib::Variant> = HashMap::from([
            ("category".to_owned(), "im.received".to_variant()),
            ("urgency".to_owned(), 1u8.to_variant()),
        ]);
        let params = (
            "anonchat",
            0u32,
            "",
            plain(summary),
            plain(body),
            Vec::<String>::new(),
            hints,
            -1i32,
        )
            .to_variant();
        bus.call(
            Some("org.freedesktop.Notifications"),
            "/org/freedesktop/Notifications",
            "org.freedesktop.Notifications",
            "Notify",
            Some(&params),
            glib::VariantTy::new("(u)").ok(),
            gio::DBusCallFlags::NONE,
            5_000,
            gio::Cancellable::NONE,
            |r| {
                if let Err(e) = r {
                    eprintln!("anonchat-gui: the notification server refused a notification: {e}");
                }
            },
        );
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
