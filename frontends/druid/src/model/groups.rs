//! Groups in the window's state: the group list, the invitations, the
//! new-group form, group events, and the traffic line of the status bar.
//! A group conversation is selected as `#` + its name (as the daemon
//! addresses it).

use std::fmt::Write as _;

use anonchat_ipc::{DeliveredTo, Delivery, GroupInfo, GroupMember, Invitation, Traffic};
use druid::{Data, Lens};

use super::{AppState, MessageRow, clock};

#[derive(Debug, Clone, PartialEq, Eq, Data, Lens)]
pub struct GroupRow {
    /// Its name, without the `#`.
    pub name: String,
    /// Whether we own it (only the owner invites).
    pub owner: bool,
    /// Members, us included.
    pub members: u32,
    /// "you, bob, dave (keys not yet exchanged); invited: carol".
    pub members_line: String,
    pub unread: u32,
    pub selected: bool,
}

impl GroupRow {
    /// How the conversation is addressed: `#name`.
    pub fn key(&self) -> String {
        format!("#{}", self.name)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Data, Lens)]
pub struct InvitationRow {
    pub group: String,
    /// The group's id (32 hex digits): what Accept and Decline send, so
    /// that two invitations with one name stay apart.
    pub id: String,
    pub from: String,
    pub members: u32,
}

/// The new-group panel.
#[derive(Debug, Clone, Default, PartialEq, Eq, Data, Lens)]
pub struct GroupForm {
    pub open: bool,
    pub name: String,
    /// Contacts to invite, separated by commas or spaces.
    pub with: String,
}

/// The group a selection names (`#name`), if it is one.
pub fn group_of(selected: &str) -> Option<&str> {
    selected.strip_prefix('#')
}

/// The selected group's row, if a group is selected.
pub fn selected_group(state: &AppState) -> Option<&GroupRow> {
    let name = group_of(state.selected.as_deref()?)?;
    state.groups.iter().find(|g| g.name == name)
}

fn member_word(m: &GroupMember) -> String {
    let who = match (&m.contact, m.me) {
        (_, true) => "you".to_owned(),
        (Some(c), false) => c.clone(),
        (None, false) => {
            let short: String = m.fingerprint_hex.chars().take(16).collect();
            format!("{short} (not a contact)")
        }
    };
    if !m.me && !m.readable && m.contact.is_some() {
        format!("{who} (keys not yet exchanged)")
    } else {
        who
    }
}

fn members_line(g: &GroupInfo) -> String {
    let mut line = g
        .members
        .iter()
        .map(member_word)
        .collect::<Vec<_>>()
        .join(", ");
    if !g.invited.is_empty() {
        line.push_str("; invited: ");
        line.push_str(&g.invited.join(", "));
    }
    line
}

/// Replaces the group list, keeping unread counts; a group that is gone
/// (left, or we were removed) closes its conversation.
pub fn apply_groups(state: &mut AppState, list: &[GroupInfo]) {
    let old = state.groups.clone();
    let selected = state.selected.as_deref().and_then(group_of);
    state.groups = list
        .iter()
        .map(|g| GroupRow {
            name: g.name.clone(),
            owner: g.owner,
            members: u32::try_from(g.members.len()).unwrap_or(u32::MAX),
            members_line: members_line(g),
            unread: old
                .iter()
                .find(|o| o.name == g.name)
                .map_or(0, |o| o.unread),
            selected: selected == Some(g.name.as_str()),
        })
        .collect();
    if let Some(sel) = selected
        && !list.iter().any(|g| g.name == sel)
    {
        state.selected = None;
        state.conversation.clear();
    }
}

/// Replaces the pending invitations.
pub fn apply_invitations(state: &mut AppState, list: &[Invitation]) {
    state.invitations = list
        .iter()
        .map(|i| InvitationRow {
            group: i.group.clone(),
            id: i.id.clone(),
            from: i.from.clone(),
            members: i.members,
        })
        .collect();
}

/// An invitation answered (accepted or declined): gone from the list
/// before the daemon's next list arrives.
pub fn answered(state: &mut AppState, id: &str) {
    state.invitations.retain(|i| i.id != id);
}

/// "2 of 3" while a group message is not with every member yet.
pub fn progress(state: Delivery, d: Option<DeliveredTo>) -> String {
    match d {
        Some(d) if state != Delivery::Delivered && d.of > 0 => format!("{} of {}", d.to, d.of),
        _ => String::new(),
    }
}

/// A group message arrived: in the open conversation, or counted unread.
pub fn group_message(state: &mut AppState, group: &str, row: MessageRow) {
    if state.selected.as_deref().and_then(group_of) == Some(group) {
        state.conversation.push_back(row);
    } else if let Some(g) = state.groups.iter_mut().find(|g| g.name == group) {
        g.unread += 1;
    }
}

/// The row of an incoming group message.
pub fn incoming_row(sender: &str, id: u64, text: &str, time_ms: u64) -> MessageRow {
    MessageRow {
        id,
        incoming: true,
        sender: sender.to_owned(),
        text: text.to_owned(),
        time: clock(time_ms),
        mark: String::new(),
        progress: String::new(),
    }
}

/// One of our group messages reached more members, or all of them.
pub fn group_delivery(
    state: &mut AppState,
    group: &str,
    id: u64,
    s: Delivery,
    delivered_to: DeliveredTo,
) {
    if state.selected.as_deref().and_then(group_of) != Some(group) {
        return;
    }
    if let Some(m) = state
        .conversation
        .iter_mut()
        .find(|m| !m.incoming && m.id == id)
    {
        // Delivered is final.
        if m.mark != Delivery::Delivered.mark() {
            s.mark().clone_into(&mut m.mark);
            m.progress = progress(s, Some(delivered_to));
        }
    }
}

/// A new invitation, shown before the daemon's next list arrives.
pub fn invited(state: &mut AppState, group: &str, id: &str, from: &str) {
    if !state.invitations.iter().any(|i| i.id == id) {
        state.invitations.push_back(InvitationRow {
            group: group.to_owned(),
            id: id.to_owned(),
            from: from.to_owned(),
            members: 0,
        });
    }
}

/// A group's member count changed.
pub fn members_changed(state: &mut AppState, group: &str, members: u32) {
    if let Some(g) = state.groups.iter_mut().find(|g| g.name == group) {
        g.members = members;
    }
}

/// The owner removed us: the group and its conversation go.
pub fn removed(state: &mut AppState, group: &str) {
    state.groups.retain(|g| g.name != group);
    if state.selected.as_deref().and_then(group_of) == Some(group) {
        state.selected = None;
        state.conversation.clear();
    }
}

/// The new group to create from the form: its name (a leading `#` is
/// dropped) and the contacts to invite (commas or spaces between them).
/// `None` without a name.
pub fn new_group(form: &GroupForm) -> Option<(String, Vec<String>)> {
    let name = form.name.trim().trim_start_matches('#').trim().to_owned();
    if name.is_empty() {
        return None;
    }
    let with = form
        .with
        .split([',', ' ', '\n', '\t'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    Some((name, with))
}

/// Bytes in SI units, three significant digits: "950 B", "205 kB",
/// "17.7 GB" (as `anonctl status` shows them).
pub fn bytes(n: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB", "PB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 999.5 && u + 1 < units.len() {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else if v >= 99.95 {
        format!("{v:.0} {}", units[u])
    } else if v >= 9.995 {
        format!("{v:.1} {}", units[u])
    } else {
        format!("{v:.2} {}", units[u])
    }
}

/// What anonymity costs now, for the status bar: "↓ 205 kB/s (17.7
/// GB/day), 200 in your shard". Empty before the first batch.
pub fn traffic_line(t: &Traffic) -> String {
    let Some(down) = t.download_bytes_per_s else {
        return String::new();
    };
    let mut line = format!(
        "↓ {}/s ({}/day)",
        bytes(down),
        bytes(
            t.download_bytes_per_day
                .unwrap_or(down.saturating_mul(86_400))
        )
    );
    if let Some(n) = t.shard_clients {
        let _ = write!(line, ", {n} in your shard");
    }
    line
}

/// A fresh `daemon.traffic`.
pub fn apply_traffic(state: &mut AppState, t: &Traffic) {
    state.traffic_line = traffic_line(t);
}

/// The status bar: the status line, and the traffic line when known.
pub fn status_bar(state: &AppState) -> String {
    if state.traffic_line.is_empty() {
        state.status_line.clone()
    } else {
        format!("{}   ·   {}", state.status_line, state.traffic_line)
    }
}
