//! The window's state and the pure functions that update it. No widget, no
//! I/O: every function here is tested without a display.

use anonchat_ipc::{
    ContactInfo, Delivery, Direction, Event, HistoryEntry, IdentityInfo, IdentityState, LinkState,
    Status,
};
use druid::im::Vector;
use druid::{Data, Lens};

use crate::secret::Secret;

/// Which screen the window shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Data)]
pub enum Screen {
    /// Trying to reach the daemon.
    Connecting,
    /// No daemon on the socket: offer to start it.
    NoDaemon,
    /// The daemon has no identity: the first-run form.
    FirstRun,
    /// Keys on disk, not in memory: the passphrase field.
    Locked,
    /// Contacts and conversations.
    Main,
}

#[derive(Debug, Clone, PartialEq, Eq, Data, Lens)]
pub struct ContactRow {
    pub name: String,
    pub nickname: String,
    pub fingerprint: String,
    pub verified: bool,
    pub unread: u32,
    pub selected: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Data, Lens)]
pub struct MessageRow {
    pub id: u64,
    pub incoming: bool,
    pub text: String,
    pub time: String,
    /// "", "…" queued, "✓" sent, "✓✓" delivered.
    pub mark: String,
}

/// The add-contact panel.
#[derive(Debug, Clone, Default, PartialEq, Eq, Data, Lens)]
pub struct AddContact {
    pub open: bool,
    /// The friend's identity file, as text (from the open dialog).
    pub file_text: String,
    pub file_name: String,
    /// Or the armored identity text, pasted.
    pub pasted: String,
    pub name: String,
    /// After adding: the fingerprint to compare aloud.
    pub added_fingerprint: String,
    pub added_name: String,
}

#[derive(Debug, Clone, Data, Lens)]
pub struct AppState {
    pub screen: Screen,
    pub socket: String,
    /// Why the daemon could not be reached, or the last error, for the user.
    pub error: String,
    /// Banners that stay: unprotected keys, relay unreachable.
    pub banner: String,
    pub my_name: String,
    pub my_fingerprint: String,
    pub relay_line: String,
    pub status_line: String,
    pub contacts: Vector<ContactRow>,
    pub selected: Option<String>,
    pub conversation: Vector<MessageRow>,
    pub compose: String,
    /// The unlock field (a shared zeroized buffer, not a copy per clone).
    pub passphrase: Secret,
    pub form_name: String,
    pub form_relay: String,
    pub form_passphrase: Secret,
    pub add: AddContact,
    /// Show message text in desktop notifications (off: the sender only).
    pub notify_text: bool,
}

impl AppState {
    pub fn new(socket: String) -> Self {
        Self {
            screen: Screen::Connecting,
            socket,
            error: String::new(),
            banner: String::new(),
            my_name: String::new(),
            my_fingerprint: String::new(),
            relay_line: String::new(),
            status_line: "connecting to the daemon…".into(),
            contacts: Vector::new(),
            selected: None,
            conversation: Vector::new(),
            compose: String::new(),
            passphrase: Secret::new(),
            form_name: String::new(),
            form_relay: String::new(),
            form_passphrase: Secret::new(),
            add: AddContact::default(),
            notify_text: false,
        }
    }
}

fn link_word(s: LinkState) -> &'static str {
    match s {
        LinkState::Offline => "offline",
        LinkState::Connecting => "connecting",
        LinkState::Connected => "connected",
        LinkState::Retrying => "unreachable, retrying",
    }
}

/// `HH:MM` (UTC) of a Unix time in milliseconds.
pub fn clock(time_ms: u64) -> String {
    let m = time_ms / 60_000;
    format!("{:02}:{:02}", (m / 60) % 24, m % 60)
}

/// The daemon could not be reached.
pub fn daemon_unreachable(state: &mut AppState, why: String) {
    state.screen = Screen::NoDaemon;
    state.error = why;
    state.status_line = "no daemon".into();
}

/// A fresh `daemon.status`: picks the screen, the banner, the status bar.
pub fn apply_status(state: &mut AppState, s: &Status) {
    state.screen = match s.identity {
        IdentityState::None => Screen::FirstRun,
        IdentityState::Locked => Screen::Locked,
        IdentityState::Unlocked => Screen::Main,
    };
    // A half-typed passphrase does not outlive its screen.
    if state.screen != Screen::Locked {
        state.passphrase.clear();
    }
    if state.screen != Screen::FirstRun {
        state.form_passphrase.clear();
    }
    let mut banners = Vec::new();
    if s.keys_protected == Some(false) {
        banners.push("Your keys are stored without a passphrase.".to_owned());
    }
    if s.relay.state == LinkState::Retrying {
        banners.push(format!(
            "The relay is unreachable ({}); retrying.",
            s.relay.last_error.as_deref().unwrap_or("no answer")
        ));
    }
    state.banner = banners.join("  ");
    state.relay_line = s.relay.address.clone().unwrap_or_default();
    state.status_line = format!(
        "relay {}{}   ·   {}   ·   {} contact(s)   ·   {} undelivered",
        link_word(s.relay.state),
        s.relay
            .round
            .map(|r| format!(", round {r}"))
            .unwrap_or_default(),
        s.relay
            .proxy
            .as_deref()
            .map_or_else(|| "no proxy".to_owned(), |p| format!("via {p}")),
        s.contacts,
        s.undelivered
    );
}

/// Our own identity, for the sidebar.
pub fn apply_identity(state: &mut AppState, info: &IdentityInfo) {
    state.my_name.clone_from(&info.name);
    state.my_fingerprint.clone_from(&info.fingerprint);
}

/// Replaces the contact list, keeping unread counts and the selection.
pub fn apply_contacts(state: &mut AppState, list: &[ContactInfo]) {
    let old = state.contacts.clone();
    state.contacts = list
        .iter()
        .map(|c| ContactRow {
            name: c.name.clone(),
            nickname: c.nickname.clone(),
            fingerprint: c.fingerprint.clone(),
            verified: c.verified,
            unread: old
                .iter()
                .find(|o| o.name == c.name)
                .map_or(0, |o| o.unread),
            selected: state.selected.as_deref() == Some(c.name.as_str()),
        })
        .collect();
    if let Some(sel) = &state.selected
        && !list.iter().any(|c| &c.name == sel)
    {
        state.selected = None;
        state.conversation.clear();
    }
}

/// The conversation to open when none is: the first contact's. `None` if
/// one is open or there are no contacts.
pub fn default_selection(state: &AppState) -> Option<String> {
    if state.selected.is_some() {
        return None;
    }
    state.contacts.front().map(|c| c.name.clone())
}

/// Opens a conversation: clears its unread count. The caller then loads
/// its history.
pub fn select(state: &mut AppState, name: &str) {
    state.selected = Some(name.to_owned());
    state.conversation.clear();
    for c in state.contacts.iter_mut() {
        c.selected = c.name == name;
        if c.selected {
            c.unread = 0;
        }
    }
}

fn row(e: &HistoryEntry) -> MessageRow {
    MessageRow {
        id: e.id,
        incoming: e.direction == Direction::In,
        text: e.text.clone(),
        time: clock(e.time_ms),
        mark: e.state.mark().to_owned(),
    }
}

/// The selected conversation's history, oldest first.
pub fn apply_history(state: &mut AppState, with: &str, entries: &[HistoryEntry]) {
    if state.selected.as_deref() == Some(with) {
        state.conversation = entries.iter().map(row).collect();
    }
}

/// One event from the daemon. Returns true if the status should be
/// re-read (identity or relay changed, contacts changed).
pub fn apply_event(state: &mut AppState, e: &Event) -> bool {
    match e {
        Event::MessageReceived {
            contact,
            id,
            text,
            time_ms,
        } => {
            if state.selected.as_deref() == Some(contact.as_str()) {
                state.conversation.push_back(MessageRow {
                    id: *id,
                    incoming: true,
                    text: text.clone(),
                    time: clock(*time_ms),
                    mark: String::new(),
                });
            } else if let Some(c) = state.contacts.iter_mut().find(|c| &c.name == contact) {
                c.unread += 1;
            }
            false
        }
        Event::DeliveryChanged {
            contact,
            id,
            state: s,
        } => {
            if state.selected.as_deref() == Some(contact.as_str())
                && let Some(m) = state
                    .conversation
                    .iter_mut()
                    .find(|m| !m.incoming && m.id == *id)
            {
                // Delivered is final.
                if m.mark != Delivery::Delivered.mark() {
                    s.mark().clone_into(&mut m.mark);
                }
            }
            true
        }
        Event::GroupMessageReceived {
            group,
            sender,
            id,
            text,
            time_ms,
        } => {
            if state.selected.as_deref().and_then(|s| s.strip_prefix('#')) == Some(group.as_str()) {
                state.conversation.push_back(MessageRow {
                    id: *id,
                    incoming: true,
                    text: format!("{sender}: {text}"),
                    time: clock(*time_ms),
                    mark: String::new(),
                });
            }
            false
        }
        Event::GroupDeliveryChanged { .. }
        | Event::GroupInvited { .. }
        | Event::GroupMembersChanged { .. }
        | Event::GroupRemoved { .. }
        | Event::Lagged { .. }
        | Event::ContactAdded { .. }
        | Event::ContactRemoved { .. }
        | Event::ContactVerified { .. }
        | Event::RelayStateChanged { .. }
        | Event::Locked
        | Event::Unlocked => true,
    }
}

/// Unread messages over all contacts.
pub fn total_unread(state: &AppState) -> u32 {
    state.contacts.iter().map(|c| c.unread).sum()
}

/// The window title: the unread count, when there is one.
pub fn title(state: &AppState) -> String {
    match total_unread(state) {
        0 => "anonchat".to_owned(),
        n => format!("anonchat ({n} unread)"),
    }
}

/// The contact `delta` rows from the selected one (arrow keys), stopping
/// at either end; the first (or last) one if none is selected.
pub fn neighbour(state: &AppState, delta: i32) -> Option<String> {
    let n = state.contacts.len();
    if n == 0 {
        return None;
    }
    let here = state
        .selected
        .as_deref()
        .and_then(|s| state.contacts.iter().position(|c| c.name == s));
    let i = match here {
        None if delta < 0 => n - 1,
        None => 0,
        Some(i) => i.saturating_add_signed(delta as isize).min(n - 1),
    };
    Some(state.contacts[i].name.clone())
}

/// The identity text to add: the pasted block if there is one, else the
/// chosen file's. `None` if neither.
pub fn identity_text(add: &AddContact) -> Option<String> {
    [&add.pasted, &add.file_text]
        .into_iter()
        .find(|t| !t.trim().is_empty())
        .map(|t| t.trim().to_owned())
}

/// A desktop notification for a message from `contact`: its summary and
/// body. The text only if the user asked for it (a lock screen shows
/// notifications).
pub fn notification(contact: &str, text: &str, show_text: bool) -> (String, String) {
    let summary = format!("anonchat: message from {contact}");
    let body = if show_text {
        text.to_owned()
    } else {
        String::new()
    };
    (summary, body)
}

/// The message to send, if the compose box holds one; clears it.
pub fn take_compose(state: &mut AppState) -> Option<(String, String)> {
    let to = state.selected.clone()?;
    let text = state.compose.trim_end_matches(['\n', '\r']).to_owned();
    if text.trim().is_empty() {
        return None;
    }
    state.compose.clear();
    Some((to, text))
}

/// A message just queued: shown at once as "queued".
pub fn apply_sent(state: &mut AppState, to: &str, id: u64, text: String, time_ms: u64) {
    if state.selected.as_deref() == Some(to)
        && !state.conversation.iter().any(|m| !m.incoming && m.id == id)
    {
        state.conversation.push_back(MessageRow {
            id,
            incoming: false,
            text,
            time: clock(time_ms),
            mark: Delivery::Queued.mark().to_owned(),
        });
    }
}

#[cfg(test)]
mod tests {
    use anonchat_ipc::RelayStatus;

    use super::*;

    fn status(identity: IdentityState, protected: Option<bool>, link: LinkState) -> Status {
        Status {
            api_version: 1,
            daemon_version: "0".into(),
            identity,
            keys_protected: protected,
            relay: RelayStatus {
                state: link,
                address: Some("anonchat://r:1/#k".into()),
                shard: Some(0),
                round: Some(42),
                last_error: Some("connection refused".into()),
                proxy: None,
            },
            contacts: 1,
            undelivered: 0,
            warnings: vec![],
        }
    }

    fn contact(name: &str) -> ContactInfo {
        ContactInfo {
            name: name.into(),
            nickname: name.into(),
            fingerprint: "1 2 3".into(),
            fingerprint_hex: "ab".into(),
            verified: false,
            relay: String::new(),
            shard: 0,
        }
    }

    #[test]
    fn status_picks_the_screen_and_the_banners() {
        let mut s = AppState::new("sock".into());
        apply_status(
            &mut s,
            &status(IdentityState::None, None, LinkState::Offline),
        );
        assert_eq!(s.screen, Screen::FirstRun);
        assert!(s.banner.is_empty());
        apply_status(
            &mut s,
            &status(IdentityState::Locked, Some(true), LinkState::Offline),
        );
        assert_eq!(s.screen, Screen::Locked);
        apply_status(
            &mut s,
            &status(IdentityState::Unlocked, Some(false), LinkState::Retrying),
        );
        assert_eq!(s.screen, Screen::Main);
        assert!(s.banner.contains("without a passphrase"));
        assert!(s.banner.contains("unreachable (connection refused)"));
        assert!(s.status_line.contains("round 42"));
        assert!(s.status_line.contains("no proxy"));
        let mut via = status(IdentityState::Unlocked, Some(true), LinkState::Connected);
        via.relay.proxy = Some("socks5://127.0.0.1:9050".into());
        apply_status(&mut s, &via);
        assert!(s.status_line.contains("via socks5://127.0.0.1:9050"));
        daemon_unreachable(&mut s, "no socket".into());
        assert_eq!(s.screen, Screen::NoDaemon);
    }

    #[test]
    fn incoming_messages_count_as_unread_until_selected() {
        let mut s = AppState::new("sock".into());
        apply_contacts(&mut s, &[contact("bob"), contact("carol")]);
        let msg = |who: &str, id| Event::MessageReceived {
            contact: who.into(),
            id,
            text: "hi".into(),
            time_ms: 3_600_000,
        };
        assert!(!apply_event(&mut s, &msg("bob", 1)));
        apply_event(&mut s, &msg("bob", 2));
        assert_eq!(s.contacts[0].unread, 2);
        // A refreshed contact list keeps the count.
        apply_contacts(&mut s, &[contact("bob"), contact("carol")]);
        assert_eq!(s.contacts[0].unread, 2);
        select(&mut s, "bob");
        assert_eq!(s.contacts[0].unread, 0);
        assert!(s.contacts[0].selected && !s.contacts[1].selected);
        apply_event(&mut s, &msg("bob", 3));
        assert_eq!(s.conversation.len(), 1);
        assert_eq!(s.conversation[0].time, "01:00");
        assert_eq!(s.contacts[0].unread, 0);
    }

    #[test]
    fn sending_shows_queued_then_delivery_marks() {
        let mut s = AppState::new("sock".into());
        apply_contacts(&mut s, &[contact("bob")]);
        assert!(take_compose(&mut s).is_none(), "nobody selected");
        select(&mut s, "bob");
        s.compose = "   \n".into();
        assert!(take_compose(&mut s).is_none(), "blank");
        s.compose = "hello\nworld\n".into();
        let (to, text) = take_compose(&mut s).unwrap();
        assert_eq!((to.as_str(), text.as_str()), ("bob", "hello\nworld"));
        assert!(s.compose.is_empty());
        apply_sent(&mut s, "bob", 7, text, 0);
        assert_eq!(s.conversation[0].mark, "…");
        let change = |st| Event::DeliveryChanged {
            contact: "bob".into(),
            id: 7,
            state: st,
        };
        apply_event(&mut s, &change(Delivery::Sent));
        assert_eq!(s.conversation[0].mark, "✓");
        apply_event(&mut s, &change(Delivery::Delivered));
        apply_event(&mut s, &change(Delivery::Sent));
        assert_eq!(s.conversation[0].mark, "✓✓", "delivered stays delivered");
    }

    #[test]
    fn the_first_contact_opens_when_none_is_selected() {
        let mut s = AppState::new("sock".into());
        assert_eq!(default_selection(&s), None);
        apply_contacts(&mut s, &[contact("bob"), contact("carol")]);
        assert_eq!(default_selection(&s).as_deref(), Some("bob"));
        select(&mut s, "carol");
        assert_eq!(default_selection(&s), None);
        let info = IdentityInfo {
            name: "alice".into(),
            fingerprint: "1 2".into(),
            fingerprint_hex: "ab".into(),
            relay: String::new(),
            shard: 0,
            created_unix: 0,
            keys_protected: true,
        };
        apply_identity(&mut s, &info);
        assert_eq!(s.my_name, "alice");
    }

    #[test]
    fn history_replaces_only_the_selected_conversation() {
        let mut s = AppState::new("sock".into());
        apply_contacts(&mut s, &[contact("bob"), contact("carol")]);
        select(&mut s, "bob");
        let h = vec![HistoryEntry {
            id: 1,
            direction: Direction::Out,
            text: "x".into(),
            time_ms: 0,
            state: Delivery::Delivered,
            sender: None,
            delivered_to: None,
        }];
        apply_history(&mut s, "carol", &h);
        assert!(s.conversation.is_empty());
        apply_history(&mut s, "bob", &h);
        assert_eq!(s.conversation[0].mark, "✓✓");
        // A removed contact closes its conversation.
        apply_contacts(&mut s, &[contact("carol")]);
        assert!(s.selected.is_none() && s.conversation.is_empty());
    }

    /// Mutation: `title` ignoring the unread count fails here.
    #[test]
    fn the_title_shows_the_unread_count() {
        let mut s = AppState::new("sock".into());
        apply_contacts(&mut s, &[contact("bob"), contact("carol")]);
        select(&mut s, "bob");
        assert_eq!(title(&s), "anonchat");
        let msg = |id| Event::MessageReceived {
            contact: "carol".into(),
            id,
            text: "hi".into(),
            time_ms: 0,
        };
        apply_event(&mut s, &msg(1));
        apply_event(&mut s, &msg(2));
        assert_eq!(title(&s), "anonchat (2 unread)");
        select(&mut s, "carol");
        assert_eq!(title(&s), "anonchat");
    }

    /// Mutation: `neighbour` wrapping around, or ignoring the selection,
    /// fails here.
    #[test]
    fn arrow_keys_walk_the_contact_list_and_stop_at_the_ends() {
        let mut s = AppState::new("sock".into());
        assert_eq!(neighbour(&s, 1), None);
        apply_contacts(&mut s, &[contact("a"), contact("b"), contact("c")]);
        assert_eq!(neighbour(&s, 1).as_deref(), Some("a"));
        assert_eq!(neighbour(&s, -1).as_deref(), Some("c"));
        select(&mut s, "b");
        assert_eq!(neighbour(&s, 1).as_deref(), Some("c"));
        assert_eq!(neighbour(&s, -1).as_deref(), Some("a"));
        select(&mut s, "c");
        assert_eq!(neighbour(&s, 1).as_deref(), Some("c"));
        select(&mut s, "a");
        assert_eq!(neighbour(&s, -1).as_deref(), Some("a"));
    }

    /// The pasted block wins over the chosen file; blank is nothing.
    /// Mutation: always sending `file_text` fails here.
    #[test]
    fn pasted_identity_text_is_what_gets_added() {
        let mut add = AddContact::default();
        assert_eq!(identity_text(&add), None);
        add.file_text = "from the file".into();
        assert_eq!(identity_text(&add).as_deref(), Some("from the file"));
        add.pasted = "\n  -----BEGIN ANONCHAT IDENTITY-----\nx\n".into();
        assert_eq!(
            identity_text(&add).as_deref(),
            Some("-----BEGIN ANONCHAT IDENTITY-----\nx")
        );
    }

    /// The sender only, unless the text is asked for. Mutation: a body
    /// that always holds the text fails here (and in the Xvfb smoke test).
    #[test]
    fn notifications_name_the_sender_and_show_text_only_when_asked() {
        let (summary, body) = notification("bob", "meet at noon", false);
        assert!(summary.contains("bob"));
        assert!(!summary.contains("noon") && body.is_empty());
        let (_, body) = notification("bob", "meet at noon", true);
        assert_eq!(body, "meet at noon");
    }

    /// A passphrase typed and left on its screen is wiped when the screen
    /// changes. Mutation: removing the `clear` calls in `apply_status`.
    #[test]
    fn leaving_a_passphrase_screen_wipes_the_field() {
        let mut s = AppState::new("sock".into());
        apply_status(
            &mut s,
            &status(IdentityState::Locked, Some(true), LinkState::Offline),
        );
        s.passphrase.push_str("half typed");
        apply_status(
            &mut s,
            &status(IdentityState::Locked, Some(true), LinkState::Offline),
        );
        assert_eq!(s.passphrase.chars(), 10, "same screen: kept");
        apply_status(
            &mut s,
            &status(IdentityState::Unlocked, Some(true), LinkState::Offline),
        );
        assert_eq!(s.passphrase.chars(), 0);
        assert!(!format!("{s:?}").contains("half typed"));
    }
}
