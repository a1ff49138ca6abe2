//! Messages: send, the RAM-only history, and the one place where the
//! end-to-end layer's events become API events.

use std::collections::VecDeque;

use anonchat_ipc::{
    DeliveredTo, Delivery, Direction, Event, HistoryCursor, HistoryEntry, HistoryPage, SentMessage,
};
use anonchat_protocol::e2e::{ContactId, Event as E2eEvent, EventKind, SendError};
use zeroize::Zeroizing;

use super::{Core, Inner};
use crate::error::{Error, Result};

/// Messages kept per contact in RAM; the oldest go first.
pub const HISTORY_PER_CONTACT: usize = 1000;

/// A message in RAM. The text is zeroized when dropped.
pub(super) struct Entry {
    pub(super) id: u64,
    pub(super) direction: Direction,
    pub(super) text: Zeroizing<String>,
    pub(super) time_ms: u64,
    pub(super) state: Delivery,
    /// Group messages: who sent it (incoming).
    pub(super) sender: Option<String>,
    /// Group messages: how many members hold it, of how many (outgoing).
    pub(super) delivered_to: Option<DeliveredTo>,
}

impl Entry {
    /// A message sent or received now.
    pub(super) fn new(id: u64, direction: Direction, text: Zeroizing<String>, now: u64) -> Self {
        Self {
            id,
            direction,
            text,
            time_ms: now,
            state: match direction {
                Direction::In => Delivery::Received,
                Direction::Out => Delivery::Queued,
            },
            sender: None,
            delivered_to: None,
        }
    }
}

/// Appends to a conversation, dropping its oldest entry when full.
pub(super) fn push_bounded(h: &mut VecDeque<Entry>, entry: Entry) {
    if h.len() >= HISTORY_PER_CONTACT {
        h.pop_front();
    }
    h.push_back(entry);
}

fn push_history(inner: &mut Inner, contact: ContactId, entry: Entry) {
    push_bounded(inner.history.entry(contact).or_default(), entry);
}

impl Core {
    /// Queues `text` for the contact `to` (or the group `#NAME`); it goes
    /// out one cell per round.
    pub fn messages_send(&self, to: &str, text: &str) -> Result<SentMessage> {
        if to.starts_with('#') {
            return self.group_send(to, text);
        }
        let now = self.now_ms();
        let mut guard = self.lock();
        let inner = &mut *guard;
        let unlocked = inner.unlocked.as_mut().ok_or(Error::Locked)?;
        let id = inner.contacts.by_name(to)?.id;
        let msg_id = match unlocked.router.send(id, text.as_bytes()) {
            Ok(id) => id,
            Err(SendError::OutboxFull(waiting)) => {
                // Room comes when the oldest is acknowledged: a round for
                // it to go, a round for the answer, a round of slack.
                let retry_after_ms = inner
                    .round_ms
                    .map_or(1000, |r| u64::from(r).saturating_mul(3).max(250));
                return Err(Error::OutboxFull {
                    waiting,
                    retry_after_ms,
                });
            }
            Err(e) => return Err(Error::MessageRejected(e)),
        };
        // The message id is persistent state. It is queued now; if this
        // save fails, no cell of it leaves before a later save succeeds
        // (prepare_cell saves first), so the answer is still "queued".
        if let Err(e) = unlocked.save(&self.settings.paths) {
            tracing::error!(error = %e, "cannot save session state after queueing a message; it goes out once a save succeeds");
        }
        push_history(
            inner,
            id,
            Entry::new(msg_id, Direction::Out, Zeroizing::new(text.to_owned()), now),
        );
        Ok(SentMessage {
            id: msg_id,
            state: Delivery::Queued,
        })
    }

    /// The conversation with `with`, oldest first; the last `limit` only if
    /// given. Unbounded: the RPC methods page with
    /// [`Core::messages_history_page`].
    pub fn messages_history(&self, with: &str, limit: Option<u32>) -> Result<Vec<HistoryEntry>> {
        self.messages_history_page(with, None, limit, usize::MAX)
            .map(|page| page.entries)
    }

    /// One page of the conversation with `with`, back in time: the newest
    /// entries older than `before` (the newest of all without it), at most
    /// `limit` of them, and at most `max_bytes` of them serialized as JSON
    /// (but at least one, if any remain), oldest first; `more` if older
    /// ones remain. A `before` no longer in memory (dropped as the oldest,
    /// or by a lock) has nothing older left: an empty page.
    pub fn messages_history_page(
        &self,
        with: &str,
        before: Option<HistoryCursor>,
        limit: Option<u32>,
        max_bytes: usize,
    ) -> Result<HistoryPage> {
        let inner = self.lock();
        if inner.unlocked.is_none() {
            return Err(Error::Locked);
        }
        let empty = VecDeque::new();
        let history = if with.starts_with('#') {
            let gid = super::groups::resolve(&inner, with)?;
            inner.group_history.get(&gid).unwrap_or(&empty)
        } else {
            let id = inner.contacts.by_name(with)?.id;
            inner.history.get(&id).unwrap_or(&empty)
        };
        // Searched from the newest end: ids only repeat if a contact's
        // state went back in time, and then the newest match is the one
        // the previous page began with.
        let end = match before {
            None => history.len(),
            Some(c) => match history
                .iter()
                .rposition(|e| e.direction == c.direction && e.id == c.id)
            {
                Some(i) => i,
                None => {
                    return Ok(HistoryPage {
                        entries: Vec::new(),
                        more: false,
                    });
                }
            },
        };
        let max_count = limit.map_or(usize::MAX, |l| l as usize);
        let mut entries = Vec::new();
        let mut bytes = 0usize;
        let mut start = end;
        while start > 0 && entries.len() < max_count {
            let e = &history[start - 1];
            let mut entry = HistoryEntry {
                id: e.id,
                direction: e.direction,
                text: e.text.to_string(),
                time_ms: e.time_ms,
                state: e.state,
                sender: e.sender.clone(),
                delivered_to: e.delivered_to,
            };
            // Its JSON and the comma before it.
            let size = entry.json_len() + 1;
            if !entries.is_empty() && bytes.saturating_add(size) > max_bytes {
                zeroize::Zeroize::zeroize(&mut entry.text);
                break;
            }
            bytes += size;
            entries.push(entry);
            start -= 1;
        }
        entries.reverse();
        Ok(HistoryPage {
            entries,
            more: start > 0,
        })
    }
}

/// Turns the end-to-end layer's events into history updates and API
/// events: the one place they are translated. A contact removed meanwhile
/// gets no event.
pub(super) fn apply(inner: &mut Inner, now_ms: u64, events: Vec<E2eEvent>) -> Vec<Event> {
    let mut out = Vec::new();
    for E2eEvent { contact, kind } in events {
        let (msg_id, state) = match kind {
            EventKind::Received { msg_id, body } => {
                let text = Zeroizing::new(String::from_utf8_lossy(&body).into_owned());
                if let Some(c) = inner.contacts.get(contact) {
                    out.push(Event::MessageReceived {
                        contact: c.name.clone(),
                        id: msg_id,
                        text: text.to_string(),
                        time_ms: now_ms,
                    });
                }
                push_history(
                    inner,
                    contact,
                    Entry::new(msg_id, Direction::In, text, now_ms),
                );
                continue;
            }
            EventKind::Sent { msg_id } => (msg_id, Delivery::Sent),
            EventKind::Delivered { msg_id } => (msg_id, Delivery::Delivered),
            EventKind::Retransmitting { .. } | EventKind::SessionStarted => continue,
        };
        if let Some(entry) = inner.history.get_mut(&contact).and_then(|h| {
            h.iter_mut()
                .find(|e| e.direction == Direction::Out && e.id == msg_id)
        }) {
            // Delivered is final; a late "sent" does not undo it.
            if entry.state == Delivery::Delivered {
                continue;
            }
            entry.state = state;
        }
        if let Some(c) = inner.contacts.get(contact) {
            out.push(Event::DeliveryChanged {
                contact: c.name.clone(),
                id: msg_id,
                state,
            });
        }
    }
    out
}
