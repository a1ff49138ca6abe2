//! The event stream: every API event gets the next sequence number of this
//! daemon run's stream, is kept in a bounded replay log (RAM only) and is
//! broadcast to live subscribers. A subscriber that names the last event it
//! saw gets what followed from the log first, then the live ones, with no
//! gap and no repeat: both are taken under one lock.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};

use anonchat_ipc::{Event, EventPosition, REPLAY_EVENTS, SequencedEvent};
use tokio::sync::broadcast;
use zeroize::Zeroize as _;

use crate::error::{Error, Result};

/// The most bytes of names and text the replay log holds (besides its
/// [`REPLAY_EVENTS`] count bound): oldest events go first beyond it.
pub const REPLAY_BYTES: usize = 4 * 1024 * 1024;
/// Events buffered per live subscriber before it counts as lagging.
pub const EVENT_BUFFER: usize = 1024;

/// Fixed cost counted per event, besides its strings.
const EVENT_OVERHEAD: usize = 64;

/// The bytes an event counts for in [`REPLAY_BYTES`].
fn weight(e: &Event) -> usize {
    EVENT_OVERHEAD
        + match e {
            Event::MessageReceived { contact, text, .. } => contact.len() + text.len(),
            Event::DeliveryChanged { contact, .. }
            | Event::ContactAdded { contact }
            | Event::ContactRemoved { contact }
            | Event::ContactVerified { contact } => contact.len(),
            Event::GroupMessageReceived {
                group,
                sender,
                text,
                ..
            } => group.len() + sender.len() + text.len() + 32,
            Event::GroupInvited {
                group, id, from, ..
            } => group.len() + id.len() + from.len(),
            Event::GroupDeliveryChanged {
                group, group_id, ..
            }
            | Event::GroupMembersChanged {
                group, group_id, ..
            }
            | Event::GroupRemoved { group, group_id } => group.len() + group_id.len(),
            Event::RelayStateChanged { .. }
            | Event::Locked
            | Event::Unlocked
            | Event::Lagged { .. } => 0,
        }
}

/// Overwrites the text of a message event (names are not secret from the
/// user, but message text is history: zeroized like it).
fn wipe(e: &mut SequencedEvent) {
    if let Event::MessageReceived { text, .. } | Event::GroupMessageReceived { text, .. } =
        &mut e.event
    {
        text.zeroize();
    }
}

impl Default for EventLog {
    fn default() -> Self {
        Self::with_bounds(REPLAY_EVENTS, REPLAY_BYTES)
    }
}

/// Lowercase hex of `bytes` (stream ids, group ids, fingerprints).
pub(super) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

struct Log {
    held: VecDeque<SequencedEvent>,
    bytes: usize,
    /// The newest event's number (0 before the first).
    last: u64,
}

impl Log {
    fn oldest(&self) -> u64 {
        self.held.front().map_or(self.last + 1, |e| e.seq)
    }

    fn drop_oldest(&mut self) {
        if let Some(mut e) = self.held.pop_front() {
            self.bytes -= weight(&e.event);
            wipe(&mut e);
        }
    }
}

impl Drop for Log {
    fn drop(&mut self) {
        self.held.iter_mut().for_each(wipe);
    }
}

/// What a subscriber gets: the events it missed, then the live ones (from
/// `live`, skipping any with `seq <= replay`'s last).
pub struct Attached {
    /// Events after `since`, oldest first.
    pub replay: Vec<SequencedEvent>,
    /// Everything emitted after the replay.
    pub live: broadcast::Receiver<SequencedEvent>,
}

/// The event stream of one daemon run.
pub struct EventLog {
    stream: String,
    log: Mutex<Log>,
    tx: broadcast::Sender<SequencedEvent>,
    max_events: usize,
    max_bytes: usize,
}

impl EventLog {
    /// A stream with a fresh random id, holding the newest
    /// [`REPLAY_EVENTS`] events and [`REPLAY_BYTES`].
    pub fn new() -> Self {
        Self::default()
    }

    /// A stream with other bounds (tests).
    pub fn with_bounds(max_events: usize, max_bytes: usize) -> Self {
        let id: [u8; 8] = rand::random();
        Self {
            stream: hex(&id),
            log: Mutex::new(Log {
                held: VecDeque::new(),
                bytes: 0,
                last: 0,
            }),
            tx: broadcast::channel(EVENT_BUFFER).0,
            max_events,
            max_bytes,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Log> {
        self.log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Numbers, keeps and broadcasts `event`.
    pub fn emit(&self, event: Event) {
        let mut log = self.lock();
        log.last += 1;
        let e = SequencedEvent {
            stream: self.stream.clone(),
            seq: log.last,
            event,
        };
        log.bytes += weight(&e.event);
        log.held.push_back(e.clone());
        while log.held.len() > self.max_events || log.bytes > self.max_bytes {
            log.drop_oldest();
        }
        // Sent under the lock: a subscriber attaching now either finds the
        // event in the log or receives it live, never both or neither.
        let _ = self.tx.send(e);
    }

    /// Forgets every held event (at lock and exit: they hold message
    /// text). Numbering goes on: a subscriber that missed them is told.
    pub fn forget(&self) {
        let mut log = self.lock();
        while !log.held.is_empty() {
            log.drop_oldest();
        }
    }

    /// Where the stream stands.
    pub fn position(&self) -> EventPosition {
        let log = self.lock();
        self.position_of(&log)
    }

    fn position_of(&self, log: &Log) -> EventPosition {
        EventPosition {
            stream: self.stream.clone(),
            oldest: log.oldest(),
            last: log.last,
        }
    }

    /// Every event from now on.
    pub fn live(&self) -> broadcast::Receiver<SequencedEvent> {
        self.tx.subscribe()
    }

    /// Attaches a subscriber: from now on without `since`; else the held
    /// events after `since` first, if `stream` is this one and the log
    /// still holds every event after `since`.
    pub fn attach(&self, since: Option<u64>, stream: Option<&str>) -> Result<Attached> {
        let log = self.lock();
        let live = self.tx.subscribe();
        let Some(since) = since else {
            return Ok(Attached {
                replay: Vec::new(),
                live,
            });
        };
        let position = self.position_of(&log);
        match stream {
            None => {
                return Err(Error::invalid(
                    "`since` needs the `stream` of the event it names (each event carries it)",
                ));
            }
            Some(s) if s != self.stream => {
                return Err(Error::UnknownEventStream {
                    given: s.chars().take(64).collect(),
                    position,
                });
            }
            Some(_) => {}
        }
        if since > log.last {
            return Err(Error::invalid(format!(
                "`since` {since} is after the newest event ({})",
                log.last
            )));
        }
        if since + 1 < position.oldest {
            return Err(Error::EventsTooOld { since, position });
        }
        let replay = log.held.iter().filter(|e| e.seq > since).cloned().collect();
        Ok(Attached { replay, live })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contact_added(i: usize) -> Event {
        Event::ContactAdded {
            contact: format!("c{i}"),
        }
    }

    fn seqs(events: &[SequencedEvent]) -> Vec<u64> {
        events.iter().map(|e| e.seq).collect()
    }

    /// Replays exactly what followed `since`, then live events without a
    /// repeat. Mutation: emitting outside the lock or filtering with
    /// `seq >= since` makes the replay and live parts overlap.
    #[test]
    fn a_subscriber_gets_what_it_missed_then_live_events() {
        let log = EventLog::new();
        for i in 0..5 {
            log.emit(contact_added(i));
        }
        let stream = log.position().stream;
        let mut a = log.attach(Some(2), Some(&stream)).unwrap();
        assert_eq!(seqs(&a.replay), [3, 4, 5]);
        log.emit(contact_added(5));
        assert_eq!(a.live.try_recv().unwrap().seq, 6);
        assert!(a.live.try_recv().is_err());
        // Up to date: nothing to replay.
        assert!(
            log.attach(Some(6), Some(&stream))
                .unwrap()
                .replay
                .is_empty()
        );
        // Without since: live only.
        assert!(log.attach(None, None).unwrap().replay.is_empty());
    }

    /// The log is bounded by count and by bytes; a `since` whose followers
    /// are gone is refused as too old, with the position. Mutation: without
    /// the eviction loop the log grows past both bounds (and nothing is
    /// too old).
    #[test]
    fn the_log_is_bounded_and_old_positions_are_refused() {
        let log = EventLog::with_bounds(10, 1 << 20);
        for i in 0..25 {
            log.emit(contact_added(i));
        }
        let p = log.position();
        assert_eq!((p.oldest, p.last), (16, 25));
        let stream = p.stream.clone();
        assert_eq!(
            seqs(&log.attach(Some(15), Some(&stream)).unwrap().replay).len(),
            10
        );
        match log.attach(Some(14), Some(&stream)) {
            Err(Error::EventsTooOld {
                since: 14,
                position,
            }) => assert_eq!(position, p),
            other => panic!("{:?}", other.err()),
        }
        // Bytes: two 1000-byte messages do not fit in 1500 bytes.
        let log = EventLog::with_bounds(10, 1500);
        for id in 0..2 {
            log.emit(Event::MessageReceived {
                contact: "bob".into(),
                id,
                text: "x".repeat(1000),
                time_ms: 0,
            });
        }
        let p = log.position();
        assert_eq!((p.oldest, p.last), (2, 2));
    }

    /// Another run's stream id, a future `since` and `since` without its
    /// stream are refused, never applied to this run's numbers.
    /// Mutation: without the stream comparison, `since` 1 of another run
    /// replays this run's events.
    #[test]
    fn positions_of_another_run_are_refused() {
        let old = EventLog::new();
        let log = EventLog::new();
        log.emit(contact_added(0));
        log.emit(contact_added(1));
        let other = old.position().stream;
        assert_ne!(other, log.position().stream);
        assert!(matches!(
            log.attach(Some(1), Some(&other)),
            Err(Error::UnknownEventStream { position, .. }) if position.oldest == 1
        ));
        let stream = log.position().stream;
        assert!(matches!(
            log.attach(Some(3), Some(&stream)),
            Err(Error::InvalidInput(_))
        ));
        assert!(matches!(
            log.attach(Some(1), None),
            Err(Error::InvalidInput(_))
        ));
    }

    /// Lock forgets the held events (they hold message text) but keeps
    /// counting: a subscriber from before is told it is too old.
    #[test]
    fn forgetting_keeps_the_numbering() {
        let log = EventLog::new();
        log.emit(contact_added(0));
        log.emit(contact_added(1));
        log.forget();
        log.emit(Event::Locked);
        let p = log.position();
        assert_eq!((p.oldest, p.last), (3, 3));
        assert!(matches!(
            log.attach(Some(1), Some(&p.stream)),
            Err(Error::EventsTooOld { .. })
        ));
        assert_eq!(
            seqs(&log.attach(Some(2), Some(&p.stream)).unwrap().replay),
            [3]
        );
    }
}
