//! `watch` (an event stream) and `chat` (interactive, line by line).

use std::io::Write as _;

use anonchat_ipc::{AnonchatClient as _, Delivery, Direction, Event, HistoryEntry};
use jsonrpsee::async_client::Client;
use tokio::io::{AsyncBufReadExt as _, BufReader};

use crate::fail::Fail;
use crate::show;

/// An event as a line for people (names and text made safe).
fn describe(e: &Event) -> String {
    use show::safe;
    match e {
        Event::MessageReceived {
            contact,
            text,
            time_ms,
            ..
        } => {
            format!(
                "[{}] {}: {}",
                show::clock(*time_ms),
                safe(contact),
                safe(text)
            )
        }
        Event::DeliveryChanged { contact, id, state } => {
            format!("message {id} to {}: {}", safe(contact), state.as_str())
        }
        Event::ContactAdded { contact } => format!("contact added: {}", safe(contact)),
        Event::ContactRemoved { contact } => format!("contact removed: {}", safe(contact)),
        Event::ContactVerified { contact } => format!("contact verified: {}", safe(contact)),
        Event::RelayStateChanged { state, round } => format!(
            "relay: {}{}",
            state.as_str(),
            round.map(|r| format!(" (round {r})")).unwrap_or_default()
        ),
        Event::Locked => "daemon locked".into(),
        Event::Unlocked => "daemon unlocked".into(),
        Event::Lagged { missed } => format!("({missed} events missed; see `anonctl history`)"),
        Event::GroupMessageReceived {
            group,
            sender,
            text,
            time_ms,
            ..
        } => format!(
            "[{}] {} → #{}: {}",
            show::clock(*time_ms),
            safe(sender),
            safe(group),
            safe(text)
        ),
        Event::GroupDeliveryChanged {
            group,
            id,
            state,
            delivered_to,
            ..
        } => format!(
            "message {id} to #{}: {} ({} of {})",
            safe(group),
            state.as_str(),
            delivered_to.to,
            delivered_to.of
        ),
        Event::GroupInvited { group, from, .. } => format!(
            "{} invites you to #{} (anonctl group accept '#{}')",
            safe(from),
            safe(group),
            safe(group)
        ),
        Event::GroupMembersChanged { group, members, .. } => {
            format!("#{}: now {members} members", safe(group))
        }
        Event::GroupRemoved { group, .. } => format!("you were removed from #{}", safe(group)),
    }
}

/// Prints every event (those after `since` of `stream` first) until the
/// daemon closes the stream (an error then).
pub(crate) async fn watch(
    c: &Client,
    json: bool,
    since: Option<u64>,
    stream: Option<String>,
) -> Result<(), Fail> {
    let mut events = c.events_since(since, stream).await?;
    while let Some(e) = events.next().await {
        let e = e.map_err(|e| Fail::Other(format!("event stream: {e}")))?;
        if json {
            show::json(&e);
        } else {
            println!("#{} {}", e.seq, describe(&e.event));
        }
    }
    Err(Fail::Unreachable(
        "the daemon closed the event stream".into(),
    ))
}

/// Chats with `name`: shows the last 20 messages (not with --json; paged,
/// so that long ones fit the socket's lines), then sends each non-empty
/// line typed and prints the events about that contact and the relay,
/// until end of input.
pub(crate) async fn chat(c: &Client, name: &str, json: bool) -> Result<(), Fail> {
    let mut events = c.events().await?;
    if !json {
        for e in anonchat_ipc::client::history(c, name, Some(20)).await? {
            println!("{}", show::line(name, &e));
        }
        println!(
            "-- chatting with {}; type a line and Enter to send, Ctrl-D to leave --",
            show::safe(name)
        );
    }
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    loop {
        tokio::select! {
            line = lines.next_line() => match line {
                Ok(Some(text)) if text.trim().is_empty() => {}
                Ok(Some(text)) => match c.messages_send(name.to_owned(), text).await {
                    Ok(sent) if json => show::json(&serde_json::json!({"sent": sent.id})),
                    Ok(_) => {}
                    Err(e) => eprintln!("not sent: {}", show::safe(Fail::from(e).message_text())),
                },
                Ok(None) | Err(_) => return Ok(()),
            },
            e = events.next() => match e {
                Some(Ok(e)) => print_chat_event(name, &e, json),
                _ => return Err(Fail::Unreachable("the daemon closed the event stream".into())),
            },
        }
        let _ = std::io::stdout().flush();
    }
}

fn print_chat_event(name: &str, e: &Event, json: bool) {
    let ours = match e {
        Event::MessageReceived { contact, .. } | Event::DeliveryChanged { contact, .. } => {
            contact == name
        }
        Event::GroupMessageReceived { group, .. }
        | Event::GroupDeliveryChanged { group, .. }
        | Event::GroupMembersChanged { group, .. }
        | Event::GroupRemoved { group, .. } => name.strip_prefix('#') == Some(group.as_str()),
        Event::RelayStateChanged { .. }
        | Event::Locked
        | Event::Unlocked
        | Event::Lagged { .. } => true,
        _ => false,
    };
    if !ours {
        return;
    }
    if json {
        return show::json(e);
    }
    match e {
        Event::MessageReceived {
            id, text, time_ms, ..
        } => println!(
            "{}",
            show::line(
                name,
                &HistoryEntry {
                    id: *id,
                    direction: Direction::In,
                    text: text.clone(),
                    time_ms: *time_ms,
                    state: Delivery::Received,
                    sender: None,
                    delivered_to: None,
                }
            )
        ),
        Event::DeliveryChanged { id, state, .. } => {
            println!("   (message {id} {} {})", state.as_str(), state.mark());
        }
        Event::GroupMessageReceived { .. } => println!("{}", describe(e)),
        other => println!("   ({})", describe(other)),
    }
}
