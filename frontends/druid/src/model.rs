//! The window's state and the pure functions that update it. No widget, no
//! I/O: every function here is tested without a display.

use anonchat_ipc::{
    ContactInfo, Delivery, Direction, Event, HistoryEntry, IdentityInfo, IdentityState, LinkState,
    Status,
};
use druid::im::Vector;
use druid::{Data, Lens};

use crate::secret::Secret;

mod groups;

pub use groups::{
    GroupForm, GroupRow, InvitationRow, answered, apply_groups, apply_invitations, apply_traffic,
    group_of, new_group, selected_group, status_bar,
};

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
    /// Who sent an incoming group message ("" otherwise).
    pub sender: String,
    pub text: String,
    pub time: String,
    /// "", "…" queued, "✓" sent, "✓✓" delivered.
    pub mark: String,
    /// "2 of 3": a group message not yet with every member ("" otherwise).
    pub progress: String,
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
    /// What anonymity costs, from `daemon.traffic` ("" until known).
    pub traffic_line: String,
    pub contacts: Vector<ContactRow>,
    /// After the contacts in the list.
    pub groups: Vector<GroupRow>,
    /// Invitations to groups, waiting for Accept or Decline.
    pub invitations: Vector<InvitationRow>,
    /// A contact name, or `#` and a group's name.
    pub selected: Option<String>,
    pub conversation: Vector<MessageRow>,
    pub compose: String,
    /// The unlock field (a shared zeroized buffer, not a copy per clone).
    pub passphrase: Secret,
    pub form_name: String,
    pub form_relay: String,
    pub form_passphrase: Secret,
    pub add: AddContact,
    pub new_group: GroupForm,
    /// The contact to invite to the selected group.
    pub invite: String,
    /// "Leave group" was pressed once: the next press leaves.
    pub leave_armed: bool,
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
            traffic_line: String::new(),
            contacts: Vector::new(),
            groups: Vector::new(),
            invitations: Vector::new(),
            selected: None,
            conversation: Vector::new(),
            compose: String::new(),
            passphrase: Secret::new(),
            form_name: String::new(),
            form_relay: String::new(),
            form_passphrase: Secret::new(),
            add: AddContact::default(),
            new_group: GroupForm::default(),
            invite: String::new(),
            leave_armed: false,
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
        && group_of(sel).is_none()
        && !list.iter().any(|c| &c.name == sel)
    {
        state.selected = None;
        state.conversation.clear();
    }
}

/// Every conversation in list order: the contacts, then the groups
/// (`#name`).
pub fn conversations(state: &AppState) -> Vec<String> {
    state
        .contacts
        .iter()
        .map(|c| c.name.clone())
        .chain(state.groups.iter().map(GroupRow::key))
        .collect()
}

/// The conversation to open when none is: the first contact's (or the
/// first group's). `None` if one is open or there is none.
pub fn default_selection(state: &AppState) -> Option<String> {
    if state.selected.is_some() {
        return None;
    }
    conversations(state).into_iter().next()
}

/// Opens a conversation: clears its unread count. The caller then loads
/// its history.
pub fn select(state: &mut AppState, name: &str) {
    state.selected = Some(name.to_owned());
    state.conversation.clear();
    state.leave_armed = false;
    for c in state.contacts.iter_mut() {
        c.selected = c.name == name;
        if c.selected {
            c.unread = 0;
        }
    }
    let group = group_of(name);
    for g in state.groups.iter_mut() {
        g.selected = group == Some(g.name.as_str());
        if g.selected {
            g.unread = 0;
        }
    }
}

fn row(e: &HistoryEntry) -> MessageRow {
    let incoming = e.direction == Direction::In;
    MessageRow {
        id: e.id,
        incoming,
        sender: e.sender.clone().unwrap_or_default(),
        text: e.text.clone(),
        time: clock(e.time_ms),
        mark: e.state.mark().to_owned(),
        progress: if incoming {
            String::new()
        } else {
            groups::progress(e.state, e.delivered_to)
        },
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
                    sender: String::new(),
                    text: text.clone(),
                    time: clock(*time_ms),
                    mark: String::new(),
                    progress: String::new(),
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
            ..
        } => {
            groups::group_message(
                state,
                group,
                groups::incoming_row(sender, *id, text, *time_ms),
            );
            false
        }
        Event::GroupDeliveryChanged {
            group,
            id,
            state: s,
            delivered_to,
            ..
        } => {
            groups::group_delivery(state, group, *id, *s, *delivered_to);
            // The undelivered counts change once it is with everyone.
            *s == Delivery::Delivered
        }
        // Each of these re-reads the group list and the invitations.
        Event::GroupInvited {
            group, id, from, ..
        } => {
            groups::invited(state, group, id, from);
            true
        }
        Event::GroupMembersChanged { group, members, .. } => {
            groups::members_changed(state, group, *members);
            true
        }
        Event::GroupRemoved { group, .. } => {
            groups::removed(state, group);
            true
        }
        Event::Lagged { .. }
        | Event::ContactAdded { .. }
        | Event::ContactRemoved { .. }
        | Event::ContactVerified { .. }
        | Event::RelayStateChanged { .. }
        | Event::Locked
        | Event::Unlocked => true,
    }
}

/// Unread messages over all contacts and groups.
pub fn total_unread(state: &AppState) -> u32 {
    state.contacts.iter().map(|c| c.unread).sum::<u32>()
        + state.groups.iter().map(|g| g.unread).sum::<u32>()
}

/// The window title: the unread count, when there is one.
pub fn title(state: &AppState) -> String {
    match total_unread(state) {
        0 => "anonchat".to_owned(),
        n => format!("anonchat ({n} unread)"),
    }
}

/// The conversation `delta` rows from the selected one (arrow keys),
/// contacts then groups, stopping at either end; the first (or last) one
/// if none is selected.
pub fn neighbour(state: &AppState, delta: i32) -> Option<String> {
    let all = conversations(state);
    let n = all.len();
    if n == 0 {
        return None;
    }
    let here = state
        .selected
        .as_deref()
        .and_then(|s| all.iter().position(|c| c == s));
    let i = match here {
        None if delta < 0 => n - 1,
        None => 0,
        Some(i) => i.saturating_add_signed(delta as isize).min(n - 1),
    };
    all.into_iter().nth(i)
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
            sender: String::new(),
            text,
            time: clock(time_ms),
            mark: Delivery::Queued.mark().to_owned(),
            progress: String::new(),
        });
    }
}

#[cfg(test)]
mod group_tests;
#[cfg(test)]
mod tests;
