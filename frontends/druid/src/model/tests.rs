//! The model's tests for contacts, status and compose (groups: `group_tests`).

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
