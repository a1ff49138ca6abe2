//! The model's tests for groups and the traffic line.

use anonchat_ipc::{
    ContactInfo, DeliveredTo, Delivery, Direction, Event, GroupInfo, GroupMember, HistoryEntry,
    Invitation, Traffic,
};

use super::*;

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

fn member(contact: Option<&str>, me: bool, readable: bool) -> GroupMember {
    GroupMember {
        contact: contact.map(Into::into),
        fingerprint_hex: "0123456789abcdef0123".into(),
        me,
        owner: me,
        readable,
    }
}

fn group(name: &str) -> GroupInfo {
    GroupInfo {
        name: name.into(),
        id: format!("{name:0>32}"),
        owner: true,
        epoch: 1,
        members: vec![
            member(None, true, true),
            member(Some("bob"), false, true),
            member(Some("carol"), false, true),
        ],
        invited: vec![],
        undelivered: 0,
    }
}

/// alice's window: contacts bob and carol, groups #team and #fam.
fn state() -> AppState {
    let mut s = AppState::new("sock".into());
    apply_groups(&mut s, &[group("team"), group("fam")]);
    apply_contacts(&mut s, &[contact("bob"), contact("carol")]);
    s
}

fn group_msg(group: &str, sender: &str, id: u64) -> Event {
    Event::GroupMessageReceived {
        group: group.into(),
        group_id: "0".repeat(32),
        sender: sender.into(),
        id,
        text: "hi all".into(),
        time_ms: 0,
    }
}

/// Groups come after the contacts, addressed `#name`; selecting one is
/// not selecting a contact of that name. Mutations: `neighbour` over the
/// contacts only, or `select` not marking groups, fail here.
#[test]
fn groups_follow_the_contacts_and_are_selected_as_hash_name() {
    let mut s = state();
    assert_eq!(conversations(&s), ["bob", "carol", "#team", "#fam"]);
    select(&mut s, "carol");
    assert_eq!(neighbour(&s, 1).as_deref(), Some("#team"));
    s.leave_armed = true;
    select(&mut s, "#team");
    assert!(
        !s.leave_armed,
        "a Leave pressed once does not follow to another group"
    );
    assert!(s.groups[0].selected && !s.groups[1].selected);
    assert!(s.contacts.iter().all(|c| !c.selected));
    assert_eq!(selected_group(&s).map(|g| g.name.as_str()), Some("team"));
    assert_eq!(neighbour(&s, -1).as_deref(), Some("carol"));
    assert_eq!(neighbour(&s, 5).as_deref(), Some("#fam"));
    select(&mut s, "bob");
    assert!(selected_group(&s).is_none());
    assert!(!s.groups[0].selected);
    // A refreshed contact list keeps a group selected…
    select(&mut s, "#fam");
    apply_contacts(&mut s, &[contact("bob")]);
    assert_eq!(s.selected.as_deref(), Some("#fam"));
    // …and a group that is gone closes its conversation.
    s.conversation
        .push_back(groups::incoming_row("bob", 1, "x", 0));
    apply_groups(&mut s, &[group("team")]);
    assert!(s.selected.is_none() && s.conversation.is_empty());
    // With no contact, the first group opens.
    let mut only = AppState::new("sock".into());
    apply_groups(&mut only, &[group("team")]);
    assert_eq!(default_selection(&only).as_deref(), Some("#team"));
}

/// A group message shows its sender in the open conversation, and counts
/// as unread (in the title too) elsewhere; a refreshed list keeps counts.
#[test]
fn group_messages_show_the_sender_or_count_as_unread() {
    let mut s = state();
    select(&mut s, "bob");
    assert!(!apply_event(&mut s, &group_msg("team", "carol", 1)));
    apply_event(&mut s, &group_msg("team", "bob", 1));
    assert!(s.conversation.is_empty(), "not the open conversation");
    assert_eq!(s.groups[0].unread, 2);
    assert_eq!(title(&s), "anonchat (2 unread)");
    apply_groups(&mut s, &[group("team"), group("fam")]);
    assert_eq!(s.groups[0].unread, 2);
    select(&mut s, "#team");
    assert_eq!(s.groups[0].unread, 0);
    apply_event(&mut s, &group_msg("team", "carol", 2));
    apply_event(&mut s, &group_msg("fam", "bob", 2));
    assert_eq!(s.conversation.len(), 1);
    assert_eq!(s.conversation[0].sender, "carol");
    assert_eq!(s.conversation[0].text, "hi all");
    assert!(s.conversation[0].incoming);
    assert_eq!(s.groups[1].unread, 1);
    // A direct message from bob is not a group message.
    apply_event(
        &mut s,
        &Event::MessageReceived {
            contact: "bob".into(),
            id: 9,
            text: "direct".into(),
            time_ms: 0,
        },
    );
    assert_eq!(s.conversation.len(), 1);
    assert_eq!(s.contacts[0].unread, 1);
}

/// History rows carry the sender of incoming group messages and "n of m"
/// on outgoing ones until every member holds them; live delivery events
/// move the mark and the count, and delivered is final. Mutation:
/// `progress` ignoring the state (a "3 of 3" left on delivered) fails.
#[test]
fn group_rows_show_senders_and_delivery_to_n_of_m() {
    let mut s = state();
    select(&mut s, "#team");
    let entry = |id, direction, state, sender: Option<&str>, to: Option<(u32, u32)>| HistoryEntry {
        id,
        direction,
        text: "t".into(),
        time_ms: 0,
        state,
        sender: sender.map(Into::into),
        delivered_to: to.map(|(to, of)| DeliveredTo { to, of }),
    };
    let h = vec![
        entry(1, Direction::In, Delivery::Received, Some("bob"), None),
        entry(1, Direction::Out, Delivery::Sent, None, Some((1, 2))),
        entry(2, Direction::Out, Delivery::Delivered, None, Some((2, 2))),
    ];
    apply_history(&mut s, "#team", &h);
    let rows: Vec<(&str, &str, &str)> = s
        .conversation
        .iter()
        .map(|m| (m.sender.as_str(), m.mark.as_str(), m.progress.as_str()))
        .collect();
    assert_eq!(rows, [("bob", "", ""), ("", "✓", "1 of 2"), ("", "✓✓", "")]);

    apply_sent(&mut s, "#team", 3, "new".into(), 0);
    assert_eq!(s.conversation[3].mark, "…");
    let change = |group: &str, id, state, to| Event::GroupDeliveryChanged {
        group: group.into(),
        group_id: "0".repeat(32),
        id,
        state,
        delivered_to: DeliveredTo { to, of: 3 },
    };
    assert!(!apply_event(&mut s, &change("team", 3, Delivery::Sent, 2)));
    assert_eq!(
        (
            s.conversation[3].mark.as_str(),
            s.conversation[3].progress.as_str()
        ),
        ("✓", "2 of 3")
    );
    // The same id in another group: untouched. Our id 1 is not bob's.
    apply_event(&mut s, &change("fam", 3, Delivery::Sent, 3));
    assert_eq!(s.conversation[3].progress, "2 of 3");
    apply_event(&mut s, &change("team", 1, Delivery::Delivered, 3));
    assert_eq!(s.conversation[0].mark, "");
    assert_eq!(s.conversation[1].mark, "✓✓");
    assert!(apply_event(
        &mut s,
        &change("team", 3, Delivery::Delivered, 3)
    ));
    assert_eq!(
        (
            s.conversation[3].mark.as_str(),
            s.conversation[3].progress.as_str()
        ),
        ("✓✓", "")
    );
    apply_event(&mut s, &change("team", 3, Delivery::Sent, 1));
    assert_eq!(s.conversation[3].mark, "✓✓", "delivered stays delivered");
}

/// Invitations: listed, added by the event (once), gone when answered;
/// membership events ask for a refresh; removal closes the conversation.
#[test]
fn invitations_and_membership_events() {
    let mut s = state();
    let inv = Invitation {
        group: "club".into(),
        id: "c".repeat(32),
        from: "bob".into(),
        members: 4,
    };
    apply_invitations(&mut s, std::slice::from_ref(&inv));
    assert_eq!(s.invitations.len(), 1);
    let invited = Event::GroupInvited {
        group: "club".into(),
        id: inv.id.clone(),
        from: "bob".into(),
        members: 4,
    };
    assert!(apply_event(&mut s, &invited));
    assert_eq!(s.invitations.len(), 1, "the same invitation once");
    let other = Event::GroupInvited {
        group: "club".into(),
        id: "d".repeat(32),
        from: "carol".into(),
        members: 3,
    };
    apply_event(&mut s, &other);
    assert_eq!(s.invitations.len(), 2, "same name, another group");
    answered(&mut s, &inv.id);
    assert_eq!(s.invitations.len(), 1);
    assert_eq!(s.invitations[0].from, "carol");

    let changed = Event::GroupMembersChanged {
        group: "team".into(),
        group_id: "0".repeat(32),
        members: 4,
    };
    assert!(apply_event(&mut s, &changed));
    assert_eq!(s.groups[0].members, 4);

    select(&mut s, "#team");
    s.conversation
        .push_back(groups::incoming_row("bob", 1, "x", 0));
    assert!(apply_event(
        &mut s,
        &Event::GroupRemoved {
            group: "team".into(),
            group_id: "0".repeat(32),
        }
    ));
    assert!(s.selected.is_none() && s.conversation.is_empty());
    assert_eq!(conversations(&s), ["bob", "carol", "#fam"]);
}

/// The members line names us, contacts, strangers by fingerprint, keys
/// not yet exchanged, and who is invited.
#[test]
fn the_members_line_says_who_is_in_and_who_is_invited() {
    let mut s = AppState::new("sock".into());
    let mut g = group("team");
    g.members[2].readable = false;
    g.members.push(member(None, false, false));
    g.invited = vec!["dave".into()];
    apply_groups(&mut s, &[g]);
    assert_eq!(s.groups[0].members, 4);
    assert_eq!(
        s.groups[0].members_line,
        "you, bob, carol (keys not yet exchanged), 0123456789abcdef (not a contact); invited: dave"
    );
}

/// The new-group form: a name (a `#` is dropped) and contacts separated
/// by commas or spaces; no name, no group.
#[test]
fn the_new_group_form_reads_a_name_and_contacts() {
    let mut f = GroupForm {
        open: true,
        name: "  ".into(),
        with: "bob".into(),
    };
    assert_eq!(new_group(&f), None);
    f.name = " #team ".into();
    f.with = " bob, carol  dave,,".into();
    let (name, with) = new_group(&f).unwrap();
    assert_eq!(name, "team");
    assert_eq!(with, ["bob", "carol", "dave"]);
}

/// "↓ 205 kB/s (17.7 GB/day), 200 in your shard" in the status bar;
/// nothing before the first batch. Mutation: `bytes` with the wrong unit
/// or rounding fails here.
#[test]
fn the_status_bar_shows_what_anonymity_costs() {
    assert_eq!(groups::bytes(950), "950 B");
    assert_eq!(groups::bytes(1_120), "1.12 kB");
    assert_eq!(groups::bytes(205_152), "205 kB");
    assert_eq!(groups::bytes(17_725_132_800), "17.7 GB");
    let mut s = AppState::new("sock".into());
    s.status_line = "relay connected".into();
    let mut t = Traffic {
        batches: 10,
        round_ms: Some(500),
        shard_clients: Some(200),
        download_bytes_per_s: Some(205_152),
        download_bytes_per_day: Some(17_725_132_800),
        upload_bytes_per_s: Some(1_120),
        real_cells_sent: 0,
        group_cells_sent: 0,
    };
    apply_traffic(&mut s, &t);
    assert_eq!(
        status_bar(&s),
        "relay connected   ·   ↓ 205 kB/s (17.7 GB/day), 200 in your shard"
    );
    t.download_bytes_per_s = None;
    apply_traffic(&mut s, &t);
    assert_eq!(status_bar(&s), "relay connected");
}
