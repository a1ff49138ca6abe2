//! Group events from the end-to-end layer become history updates and API
//! events here, in one place.

use std::collections::VecDeque;

use anonchat_ipc::{DeliveredTo, Delivery, Direction, Event};
use anonchat_protocol::e2e::{GroupEvent, GroupId};
use zeroize::Zeroizing;

use super::Inner;
use super::events::hex;
use super::groups::member_name;
use super::messages::{Entry, push_bounded};

/// Turns group events into history updates and API events.
pub(super) fn apply(inner: &mut Inner, now_ms: u64, events: Vec<GroupEvent>) -> Vec<Event> {
    if events.is_empty() {
        return Vec::new();
    }
    let names = inner
        .unlocked
        .as_ref()
        .map(|u| u.router.group_names())
        .unwrap_or_default();
    let name_of = |gid: &GroupId| {
        names
            .iter()
            .find(|(id, _)| id == gid)
            .map_or_else(|| hex(&gid.0), |(_, n)| n.clone())
    };
    let mut out = Vec::new();
    for e in events {
        match e {
            GroupEvent::Received {
                group,
                sender,
                contact,
                msg_id,
                body,
            } => {
                let text = Zeroizing::new(String::from_utf8_lossy(&body).into_owned());
                let who = member_name(inner, &sender, contact);
                out.push(Event::GroupMessageReceived {
                    group: name_of(&group),
                    group_id: hex(&group.0),
                    sender: who.clone(),
                    id: msg_id,
                    text: text.to_string(),
                    time_ms: now_ms,
                });
                let mut entry = Entry::new(msg_id, Direction::In, text, now_ms);
                entry.sender = Some(who);
                push_bounded(inner.group_history.entry(group).or_default(), entry);
            }
            GroupEvent::Sent { group, msg_id } => {
                out.extend(update(inner, &name_of(&group), group, msg_id, None));
            }
            GroupEvent::Delivered {
                group,
                msg_id,
                to,
                of,
            } => {
                let d = DeliveredTo {
                    to: u32::try_from(to).unwrap_or(u32::MAX),
                    of: u32::try_from(of).unwrap_or(u32::MAX),
                };
                out.extend(update(inner, &name_of(&group), group, msg_id, Some(d)));
            }
            GroupEvent::Retransmitting { .. }
            | GroupEvent::MemberLeft { .. }
            | GroupEvent::Declined { .. } => {}
            GroupEvent::Invited {
                group,
                from,
                name,
                members,
            } => {
                if let Some(c) = inner.contacts.get(from) {
                    out.push(Event::GroupInvited {
                        group: name,
                        id: hex(&group.0),
                        from: c.name.clone(),
                        members: u32::try_from(members).unwrap_or(u32::MAX),
                    });
                }
            }
            GroupEvent::MembersChanged { group, members, .. } => {
                out.push(Event::GroupMembersChanged {
                    group: name_of(&group),
                    group_id: hex(&group.0),
                    members: u32::try_from(members.len()).unwrap_or(u32::MAX),
                });
            }
            GroupEvent::Removed { group, name } => {
                inner.group_history.remove(&group);
                out.push(Event::GroupRemoved {
                    group: name,
                    group_id: hex(&group.0),
                });
            }
        }
    }
    out
}

/// A group message of ours moved: its history entry and the API event.
fn update(
    inner: &mut Inner,
    name: &str,
    gid: GroupId,
    msg_id: u64,
    delivered: Option<DeliveredTo>,
) -> Option<Event> {
    let h: &mut VecDeque<Entry> = inner.group_history.get_mut(&gid)?;
    let entry = h
        .iter_mut()
        .find(|e| e.direction == Direction::Out && e.id == msg_id)?;
    if entry.state == Delivery::Delivered {
        return None;
    }
    let state = match delivered {
        Some(d) if d.to >= d.of => Delivery::Delivered,
        _ => Delivery::Sent,
    };
    entry.state = state;
    if delivered.is_some() {
        entry.delivered_to = delivered;
    }
    Some(Event::GroupDeliveryChanged {
        group: name.to_owned(),
        group_id: hex(&gid.0),
        id: msg_id,
        state,
        delivered_to: entry.delivered_to.unwrap_or(DeliveredTo { to: 0, of: 0 }),
    })
}
