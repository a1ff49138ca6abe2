//! Messages over cells: fragmentation and the sender's state machine
//! (queued → sent → delivered, with retransmission), reassembly with bounds
//! and in-order, exactly-once delivery on the receiving side.

use std::collections::{BTreeMap, HashMap, VecDeque};

use zeroize::Zeroizing;

use super::payload::Fragment;

/// Largest message body, in bytes.
pub const MAX_MESSAGE_LEN: usize = 16 * 1024;
/// Most fragments a message may have (receiver bound).
pub const MAX_FRAGMENTS: u16 = 256;
/// Messages waiting to be delivered to one contact.
pub const MAX_OUTBOX: usize = 64;
/// Messages being reassembled from one contact at once.
pub const MAX_PARTIAL: usize = 8;
/// Complete messages held back for in-order delivery, per contact.
pub const MAX_READY: usize = 64;
/// How far ahead of the last delivered id a message id may be.
pub const MAX_ID_AHEAD: u64 = 1024;
/// The largest message id accepted (ids count up from 1, one per message,
/// and never get near it; the bound keeps every sum below overflow).
pub const MAX_MSG_ID: u64 = 1 << 62;

/// Where an outgoing message stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Not every fragment has gone out yet.
    Queued,
    /// Every fragment went out at least once; no acknowledgement yet.
    Sent,
    /// The peer acknowledged it.
    Delivered,
}

struct OutMsg {
    id: u64,
    fragments: Vec<Zeroizing<Vec<u8>>>,
    next: usize,
    /// When the last fragment went out (ms); `None` while not fully sent.
    sent_at: Option<u64>,
    ever_sent: bool,
    /// Retransmissions since the peer last showed it is alive: the wait
    /// before the next one doubles with each (see [`retransmit_wait`]).
    attempts: u32,
    /// A control message (group membership, sender keys), not text: the
    /// user is told nothing of its progress.
    control: bool,
}

/// How long a sent, unacknowledged message waits before it goes out again:
/// an eighth of `after_ms` at first, doubling with each attempt up to
/// `after_ms`. A lost cell is made good within seconds, while a peer that
/// is away for long costs at most one retransmission per `after_ms`.
pub(crate) fn retransmit_wait(after_ms: u64, attempts: u32) -> u64 {
    let first = (after_ms / 8).max(1);
    first.saturating_mul(1 << attempts.min(3)).min(after_ms)
}

/// What happened on the sending side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OutEvent {
    Sent(u64),
    Retransmitting(u64),
}

impl OutEvent {
    fn of(m: &OutMsg, make: fn(u64) -> Self) -> Option<Self> {
        (!m.control).then(|| make(m.id))
    }
}

#[derive(Default)]
pub(crate) struct Outbox {
    queue: VecDeque<OutMsg>,
}

impl Outbox {
    /// Persistent form: every waiting message (id, flags: 1 if it ever went
    /// out, 2 if it is a control message; the whole body), so that a lock, a restart or a crash loses no
    /// message the user was told is queued. Sealed by the caller with the
    /// rest of the state.
    pub(crate) fn encode(&self, w: &mut super::writer::Writer) {
        w.u32(self.queue.len() as u32);
        for m in &self.queue {
            w.u64(m.id);
            w.u8(u8::from(m.ever_sent) | (u8::from(m.control) << 1));
            // Straight into the (wiping) writer: no plain copy of the text.
            w.u32(m.fragments.iter().map(|f| f.len()).sum::<usize>() as u32);
            for f in &m.fragments {
                w.bytes(f);
            }
        }
    }

    /// Reads what [`Outbox::encode`] wrote. Ids must increase and stay below
    /// `next_id`; bodies are checked like new messages. Everything restored
    /// goes out again from its first fragment (the peer drops what it
    /// already has and acknowledges it again).
    /// State formats before 4 have no control flag (flags 0 or 1).
    pub(crate) fn decode(
        r: &mut crate::wire::reader::Reader<'_>,
        next_id: u64,
        fragment_len: usize,
        version: u8,
    ) -> Result<Self, crate::wire::WireError> {
        use crate::wire::WireError;
        let count = r.u32()? as usize;
        if count > MAX_OUTBOX {
            return Err(WireError::BadField("outbox length"));
        }
        let mut outbox = Self::default();
        let mut last = 0;
        for _ in 0..count {
            let id = r.u64()?;
            if id <= last || id >= next_id {
                return Err(WireError::BadField("outbox message id"));
            }
            last = id;
            let flags = r.u8()?;
            let known = if version >= 4 { 3 } else { 1 };
            if flags & !known != 0 {
                return Err(WireError::BadField("outbox flag"));
            }
            let len = r.u32()? as usize;
            if len == 0 || len > MAX_MESSAGE_LEN {
                return Err(WireError::BadField("outbox message length"));
            }
            outbox.push(id, r.take(len)?, fragment_len, flags & 2 != 0);
            if let Some(m) = outbox.queue.back_mut() {
                m.ever_sent = flags & 1 != 0;
            }
        }
        Ok(outbox)
    }

    pub(crate) fn len(&self) -> usize {
        self.queue.len()
    }

    pub(crate) fn push(&mut self, id: u64, body: &[u8], fragment_len: usize, control: bool) {
        let fragments = body
            .chunks(fragment_len.max(1))
            .map(|c| Zeroizing::new(c.to_vec()))
            .collect();
        self.queue.push_back(OutMsg {
            id,
            fragments,
            next: 0,
            sent_at: None,
            ever_sent: false,
            attempts: 0,
            control,
        });
    }

    /// The lowest id not yet acknowledged, or `next_id` if none is waiting.
    pub(crate) fn floor(&self, next_id: u64) -> u64 {
        self.queue.iter().map(|m| m.id).min().unwrap_or(next_id)
    }

    /// Restarts messages that were sent and not acknowledged in time (see
    /// [`retransmit_wait`]; `after_ms` is the longest wait).
    pub(crate) fn retransmit_due(&mut self, now_ms: u64, after_ms: u64) -> Vec<OutEvent> {
        let mut events = Vec::new();
        for m in &mut self.queue {
            if let Some(at) = m.sent_at
                && now_ms.saturating_sub(at) >= retransmit_wait(after_ms, m.attempts)
            {
                m.next = 0;
                m.sent_at = None;
                m.attempts = m.attempts.saturating_add(1);
                events.extend(OutEvent::of(m, OutEvent::Retransmitting));
            }
        }
        events
    }

    /// The peer showed it is alive (a cell from it was accepted): what it
    /// has not acknowledged goes out again after the shortest wait, so a
    /// peer that comes back (a restart, a reconnect) gets what it missed
    /// within a few rounds rather than after the longest backoff.
    pub(crate) fn peer_alive(&mut self) {
        for m in &mut self.queue {
            m.attempts = 0;
        }
    }

    /// Starts every unacknowledged message again (the session changed).
    pub(crate) fn restart_all(&mut self) {
        for m in &mut self.queue {
            m.next = 0;
            m.sent_at = None;
        }
    }

    /// Whether a message went out and waits for its acknowledgement.
    pub(crate) fn has_sent(&self) -> bool {
        self.queue.iter().any(|m| m.ever_sent)
    }

    pub(crate) fn has_pending_fragment(&self) -> bool {
        self.queue.iter().any(|m| m.next < m.fragments.len())
    }

    /// The next fragment to send, oldest message first.
    pub(crate) fn next_fragment(
        &mut self,
        now_ms: u64,
        next_id: u64,
    ) -> Option<(Fragment, Option<OutEvent>)> {
        let floor = self.floor(next_id);
        let m = self.queue.iter_mut().find(|m| m.next < m.fragments.len())?;
        let index = m.next;
        m.next += 1;
        let mut event = None;
        if m.next == m.fragments.len() {
            m.sent_at = Some(now_ms);
            if !m.ever_sent {
                m.ever_sent = true;
                event = OutEvent::of(m, OutEvent::Sent);
            }
        }
        Some((
            Fragment {
                msg_id: m.id,
                floor,
                index: index as u16,
                count: m.fragments.len() as u16,
                data: m.fragments[index].clone(),
                control: m.control,
            },
            event,
        ))
    }

    /// An acknowledgement: `Some(control)` if it completed a waiting
    /// message (a control message when `true`).
    pub(crate) fn ack(&mut self, id: u64) -> Option<bool> {
        let at = self.queue.iter().position(|m| m.id == id)?;
        self.queue.remove(at).map(|m| m.control)
    }

    /// The ids waiting, oldest first.
    pub(crate) fn ids(&self) -> impl Iterator<Item = u64> + '_ {
        self.queue.iter().map(|m| m.id)
    }

    pub(crate) fn state(&self, id: u64) -> Option<Delivery> {
        self.queue.iter().find(|m| m.id == id).map(|m| {
            if m.ever_sent {
                Delivery::Sent
            } else {
                Delivery::Queued
            }
        })
    }
}

struct Partial {
    control: bool,
    count: u16,
    parts: Vec<Option<Zeroizing<Vec<u8>>>>,
    bytes: usize,
}

/// What reassembly made of a fragment.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Received {
    /// Stored; the message is not complete yet.
    Pending,
    /// The message is complete. It is acknowledged once it is delivered
    /// (in order, see [`Inbox::deliverable`]), not before: a complete
    /// message held back for an earlier one lives only in RAM, and a lock or
    /// a restart would lose it after the sender had dropped it.
    Complete,
    /// Complete already and held back for an earlier message: not
    /// acknowledged yet (see `Complete`).
    Held,
    /// Already delivered: acknowledge again, deliver nothing.
    Duplicate,
    /// Out of bounds or inconsistent: dropped (the sender retransmits).
    Dropped,
}

pub(crate) struct Inbox {
    delivered_upto: u64,
    /// The peer's numbering is unknown (its contact record is new): the
    /// first fragment's floor sets where delivery continues.
    rebase: bool,
    floor: u64,
    partial: HashMap<u64, Partial>,
    /// Complete messages held for in-order delivery (control flag, body).
    ready: BTreeMap<u64, (bool, Zeroizing<Vec<u8>>)>,
}

impl Inbox {
    pub(crate) fn new(delivered_upto: u64) -> Self {
        Self {
            delivered_upto,
            rebase: false,
            floor: 0,
            partial: HashMap::new(),
            ready: BTreeMap::new(),
        }
    }

    pub(crate) fn delivered_upto(&self) -> u64 {
        self.delivered_upto
    }

    /// Nothing received yet, and the numbering not known.
    pub(crate) fn is_fresh(&self) -> bool {
        self.rebase && self.partial.is_empty() && self.ready.is_empty()
    }

    /// The peer's message numbering started over (it re-added us): forget
    /// what we hold and continue from the floor of its next fragment.
    pub(crate) fn rebase(&mut self) {
        *self = Self::new_rebasing();
    }

    /// An inbox that takes its starting point from the first fragment's
    /// floor.
    pub(crate) fn new_rebasing() -> Self {
        let mut inbox = Self::new(0);
        inbox.rebase = true;
        inbox
    }

    /// Persistent part: `delivered_upto || rebase`.
    pub(crate) fn encode(&self, w: &mut super::writer::Writer) {
        w.u64(self.delivered_upto);
        w.bool(self.rebase);
    }

    pub(crate) fn decode(
        r: &mut crate::wire::reader::Reader<'_>,
    ) -> Result<Self, crate::wire::WireError> {
        let delivered = r.u64()?;
        if delivered >= MAX_MSG_ID {
            return Err(crate::wire::WireError::BadField("delivered message id"));
        }
        let mut inbox = Self::new(delivered);
        inbox.rebase = super::writer::read_bool(r)?;
        Ok(inbox)
    }

    pub(crate) fn add(&mut self, f: &Fragment) -> Received {
        let id = f.msg_id;
        // The sender's floor is its lowest unacknowledged id, so at most
        // the id of a message it is still sending: anything higher is a lie
        // (and would let a contact make us skip, or count, without end).
        if f.floor > id || id > MAX_MSG_ID {
            return Received::Dropped;
        }
        if self.rebase {
            self.rebase = false;
            self.delivered_upto = f.floor.saturating_sub(1);
        }
        if id <= self.delivered_upto + MAX_ID_AHEAD && f.floor > self.floor {
            self.floor = f.floor;
            // A message partly received and then abandoned by the sender
            // (it restarted from an older state) lies below the new floor:
            // it never completes and must not hold back the ones after it.
            let floor = self.floor;
            self.partial.retain(|&held, _| held >= floor);
        }
        if id <= self.delivered_upto {
            return Received::Duplicate;
        }
        if self.ready.contains_key(&id) {
            return Received::Held;
        }
        if id > self.delivered_upto + MAX_ID_AHEAD
            || f.count > MAX_FRAGMENTS
            || f.data.len() > MAX_MESSAGE_LEN
        {
            return Received::Dropped;
        }
        if !self.partial.contains_key(&id) {
            if !self.make_room_for(id) {
                return Received::Dropped;
            }
            self.partial.insert(
                id,
                Partial {
                    control: f.control,
                    count: f.count,
                    parts: vec![None; usize::from(f.count)],
                    bytes: 0,
                },
            );
        }
        let Some(p) = self.partial.get_mut(&id) else {
            return Received::Dropped;
        };
        let slot = usize::from(f.index);
        if p.count != f.count || p.control != f.control || p.bytes + f.data.len() > MAX_MESSAGE_LEN
        {
            return Received::Dropped;
        }
        if p.parts[slot].is_none() {
            p.bytes += f.data.len();
            p.parts[slot] = Some(f.data.clone());
        }
        if p.parts.iter().any(Option::is_none) {
            return Received::Pending;
        }
        let Some(p) = self.partial.remove(&id) else {
            return Received::Dropped;
        };
        let mut body = Zeroizing::new(Vec::with_capacity(p.bytes));
        for part in p.parts.into_iter().flatten() {
            body.extend_from_slice(&part);
        }
        self.ready.insert(id, (p.control, body));
        Received::Complete
    }

    /// Makes room to reassemble a new message `id` within the bounds on
    /// partial and held messages: when full, the highest message held
    /// (above `id`) is dropped. Nothing held is acknowledged yet, so its
    /// sender sends it again. The lowest ids therefore always fit, and
    /// in-order delivery cannot deadlock on held messages waiting for an id
    /// that no longer fits (the lost-conversation bug of issue 15).
    fn make_room_for(&mut self, id: u64) -> bool {
        while self.partial.len() >= MAX_PARTIAL {
            match self.partial.keys().max().copied() {
                Some(top) if top > id => {
                    self.partial.remove(&top);
                }
                _ => return false,
            }
        }
        while self.ready.len() >= MAX_READY {
            match self.ready.keys().next_back().copied() {
                Some(top) if top > id => {
                    self.ready.remove(&top);
                }
                _ => return false,
            }
        }
        true
    }

    /// Messages deliverable now, in id order. Ids below the sender's floor
    /// that never arrived are skipped (the sender abandoned them), in one
    /// step, not one id at a time.
    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn deliverable(&mut self) -> Vec<(u64, Zeroizing<Vec<u8>>)> {
        self.deliverable_kinds()
            .into_iter()
            .map(|(id, _, body)| (id, body))
            .collect()
    }

    /// As `deliverable`, with each message's control flag.
    pub(crate) fn deliverable_kinds(&mut self) -> Vec<(u64, bool, Zeroizing<Vec<u8>>)> {
        let mut out = Vec::new();
        loop {
            let next = self.delivered_upto + 1;
            if let Some((control, body)) = self.ready.remove(&next) {
                self.delivered_upto = next;
                out.push((next, control, body));
                continue;
            }
            if next < self.floor {
                // The sender holds nothing below its floor: every id from
                // `next` up to the first one we hold (or the floor) is gone.
                let first_held = self
                    .ready
                    .keys()
                    .next()
                    .copied()
                    .into_iter()
                    .chain(self.partial.keys().copied())
                    .filter(|&h| h >= next)
                    .min();
                let target = first_held.map_or(self.floor, |h| h.min(self.floor));
                if target > next {
                    self.delivered_upto = target - 1;
                    continue;
                }
            }
            return out;
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn reassemble(body: &[u8], frag: usize, order: &[usize]) -> Option<Vec<u8>> {
        let mut out = Outbox::default();
        out.push(1, body, frag, false);
        let mut frags = Vec::new();
        while let Some((f, _)) = out.next_fragment(0, 2) {
            frags.push(f);
        }
        let mut inbox = Inbox::new(0);
        for &i in order {
            if let Some(f) = frags.get(i % frags.len()) {
                inbox.add(f);
            }
        }
        inbox.deliverable().pop().map(|(_, b)| b.to_vec())
    }

    /// A queued control message stays a control message across a save and
    /// a restore, and a sent one stays sent (no second "sent" event).
    /// Checked against the flags' `|` turned into `&` (both flags lost:
    /// the control message would reach the peer as text).
    #[test]
    fn saved_flags_survive_a_restore() {
        let mut out = Outbox::default();
        out.push(1, b"text", 100, false);
        out.push(2, b"control", 100, true);
        while out.next_fragment(0, 3).is_some() {}
        let mut w = crate::e2e::writer::Writer::new();
        out.encode(&mut w);
        let saved = w.into_secret();
        let mut back =
            Outbox::decode(&mut crate::wire::reader::Reader::new(&saved), 3, 100, 4).unwrap();
        let mut seen = Vec::new();
        while let Some((f, ev)) = back.next_fragment(0, 3) {
            assert!(ev.is_none(), "sent once already: {ev:?}");
            seen.push((f.msg_id, f.control));
        }
        assert_eq!(seen, vec![(1, false), (2, true)]);
    }

    /// A saved outbox of `MAX_OUTBOX` messages reads back; one more is
    /// refused. Checked against the bound's `>` turned into `==`.
    #[test]
    fn a_saved_outbox_beyond_its_bound_is_refused() {
        for (n, ok) in [(MAX_OUTBOX, true), (MAX_OUTBOX + 1, false)] {
            let mut out = Outbox::default();
            for id in 1..=n as u64 {
                out.push(id, b"m", 100, false);
            }
            let mut w = crate::e2e::writer::Writer::new();
            out.encode(&mut w);
            let saved = w.into_secret();
            let next = n as u64 + 1;
            let back = Outbox::decode(&mut crate::wire::reader::Reader::new(&saved), next, 100, 4);
            assert_eq!(back.is_ok(), ok, "{n}");
        }
    }

    /// Saved message ids must increase and stay below the counter: a
    /// repeated id, a decreasing one, or one at the counter is refused.
    /// Checked against the `||` turned into `&&`.
    #[test]
    fn saved_outbox_ids_must_increase_below_the_counter() {
        let saved = |ids: &[u64]| {
            let mut w = crate::e2e::writer::Writer::new();
            w.u32(ids.len() as u32);
            for id in ids {
                w.u64(*id);
                w.u8(0);
                w.u32(1);
                w.bytes(b"m");
            }
            w.into_secret()
        };
        let read = |ids: &[u64], next: u64| {
            Outbox::decode(
                &mut crate::wire::reader::Reader::new(&saved(ids)),
                next,
                100,
                4,
            )
            .is_ok()
        };
        assert!(read(&[1, 2, 5], 6));
        assert!(!read(&[1, 1], 6), "repeated");
        assert!(!read(&[3, 2], 6), "decreasing");
        assert!(!read(&[1, 6], 6), "at the counter");
        assert!(!read(&[0], 6), "zero");
    }

    /// A saved body is 1 to `MAX_MESSAGE_LEN` bytes, as a new message.
    /// Checked against the `||` turned into `&&`.
    #[test]
    fn saved_bodies_are_checked_like_new_messages() {
        let read = |len: usize| {
            let mut w = crate::e2e::writer::Writer::new();
            w.u32(1);
            w.u64(1);
            w.u8(0);
            w.u32(len as u32);
            w.bytes(&vec![b'm'; len]);
            let saved = w.into_secret();
            Outbox::decode(&mut crate::wire::reader::Reader::new(&saved), 2, 100, 4).is_ok()
        };
        assert!(read(1));
        assert!(read(MAX_MESSAGE_LEN));
        assert!(!read(0));
        assert!(!read(MAX_MESSAGE_LEN + 1));
    }

    #[test]
    fn states_go_queued_sent_delivered() {
        let mut out = Outbox::default();
        out.push(1, &[7; 50], 20, false);
        assert_eq!(out.state(1), Some(Delivery::Queued));
        let mut events = Vec::new();
        while let Some((_, e)) = out.next_fragment(10, 2) {
            events.extend(e);
        }
        assert_eq!(events, vec![OutEvent::Sent(1)]);
        assert_eq!(out.state(1), Some(Delivery::Sent));
        // Sent at 10; with a longest wait of 80, the first retry waits 10,
        // then 20, 40, 80, 80…
        assert!(out.retransmit_due(19, 80).is_empty());
        assert_eq!(
            out.retransmit_due(20, 80),
            vec![OutEvent::Retransmitting(1)]
        );
        assert!(out.has_pending_fragment());
        while out.next_fragment(100, 2).is_some() {}
        assert!(out.retransmit_due(119, 80).is_empty());
        assert_eq!(out.retransmit_due(120, 80).len(), 1);
        while out.next_fragment(200, 2).is_some() {}
        out.peer_alive();
        assert!(out.retransmit_due(209, 80).is_empty());
        assert_eq!(
            out.retransmit_due(210, 80).len(),
            1,
            "back to the shortest wait"
        );
        assert_eq!(out.ack(1), Some(false));
        assert_eq!(out.ack(1), None);
        assert_eq!(out.state(1), None);
    }

    #[test]
    fn messages_are_delivered_in_order_exactly_once() {
        let mut out = Outbox::default();
        out.push(1, b"first", 100, false);
        out.push(2, b"second", 100, false);
        let (f1, _) = out.next_fragment(0, 3).unwrap();
        let (f2, _) = out.next_fragment(0, 3).unwrap();
        let mut inbox = Inbox::new(0);
        assert_eq!(inbox.add(&f2), Received::Complete);
        assert!(inbox.deliverable().is_empty(), "waits for message 1");
        assert_eq!(inbox.add(&f1), Received::Complete);
        let got: Vec<u64> = inbox.deliverable().into_iter().map(|(id, _)| id).collect();
        assert_eq!(got, vec![1, 2]);
        assert_eq!(inbox.add(&f1), Received::Duplicate);
        assert!(inbox.deliverable().is_empty());
    }

    fn fragment(msg_id: u64, floor: u64) -> Fragment {
        Fragment {
            msg_id,
            floor,
            index: 0,
            count: 1,
            data: Zeroizing::new(format!("m{msg_id}").into_bytes()),
            control: false,
        }
    }

    /// A fragment whose id lies beyond the window is dropped and moves
    /// nothing, not even the floor it names: the next message in the
    /// window is still delivered (mutation run: the `&&` of the floor
    /// update turned into `||` let the dropped fragment raise the floor
    /// and skip every id below it).
    #[test]
    fn a_fragment_beyond_the_window_does_not_move_the_floor() {
        let mut inbox = Inbox::new(0);
        let far = 2 + MAX_ID_AHEAD;
        assert_eq!(inbox.add(&fragment(far, far)), Received::Dropped);
        // Read at once, as a contact does after every cell: a raised floor
        // would now skip every id below it.
        assert!(inbox.deliverable().is_empty());
        // Message 2 before message 1: it waits for 1.
        assert_eq!(inbox.add(&fragment(2, 1)), Received::Complete);
        assert!(inbox.deliverable().is_empty());
        assert_eq!(inbox.add(&fragment(1, 1)), Received::Complete);
        let got: Vec<u64> = inbox.deliverable().into_iter().map(|(id, _)| id).collect();
        assert_eq!(got, vec![1, 2]);
    }

    /// The inbox's own bounds, exactly (they stand behind the payload
    /// decoder's, for fragments a contact controls): the last id of the
    /// window is taken and the next one dropped; `MAX_FRAGMENTS` parts are
    /// taken and one more dropped; a part past `MAX_MESSAGE_LEN` bytes is
    /// dropped; a full set of partial messages gives way to a lower id.
    /// Mutation run: each `>` turned into `>=` or `==`, the `||` into `&&`,
    /// and the eviction's guard into `false`.
    #[test]
    fn the_inbox_bounds_are_exact() {
        let part = |msg_id: u64, index: u16, count: u16, len: usize| Fragment {
            msg_id,
            floor: 1,
            index,
            count,
            data: Zeroizing::new(vec![7; len]),
            control: false,
        };
        let mut inbox = Inbox::new(0);
        assert_eq!(inbox.add(&part(MAX_ID_AHEAD, 0, 2, 1)), Received::Pending);
        assert_eq!(
            inbox.add(&part(MAX_ID_AHEAD + 1, 0, 2, 1)),
            Received::Dropped
        );
        let mut inbox = Inbox::new(0);
        assert_eq!(inbox.add(&part(1, 0, MAX_FRAGMENTS, 1)), Received::Pending);
        assert_eq!(
            inbox.add(&part(2, 0, MAX_FRAGMENTS + 1, 1)),
            Received::Dropped
        );
        assert_eq!(
            inbox.add(&part(3, 0, 2, MAX_MESSAGE_LEN + 1)),
            Received::Dropped
        );
        // Two parts of one message, together one byte over the limit.
        assert_eq!(
            inbox.add(&part(4, 0, 2, MAX_MESSAGE_LEN)),
            Received::Pending
        );
        assert_eq!(inbox.add(&part(4, 1, 2, 1)), Received::Dropped);
        // Partial messages 10.. fill the set; id 5 still fits (the highest
        // gives way), and a higher one does not.
        let mut inbox = Inbox::new(0);
        for id in 10..10 + MAX_PARTIAL as u64 {
            assert_eq!(inbox.add(&part(id, 0, 2, 1)), Received::Pending);
        }
        assert_eq!(inbox.add(&part(5, 0, 2, 1)), Received::Pending);
        assert_eq!(inbox.add(&part(100, 0, 2, 1)), Received::Dropped);
    }

    /// The lost-conversation bug of issue 15: every held slot taken by
    /// messages waiting for a lost earlier one, which then no longer fits.
    /// Checked against the old rule (refuse any new id when full): message
    /// 1 is dropped and nothing is ever delivered.
    #[test]
    fn a_full_hold_never_blocks_the_message_it_waits_for() {
        let mut inbox = Inbox::new(0);
        for id in 2..2 + MAX_READY as u64 {
            assert_eq!(inbox.add(&fragment(id, 1)), Received::Complete);
        }
        assert!(inbox.deliverable().is_empty());
        assert_eq!(inbox.add(&fragment(1, 1)), Received::Complete);
        let got: Vec<u64> = inbox.deliverable().into_iter().map(|(id, _)| id).collect();
        // The highest held one made room; it comes again (it was never
        // acknowledged).
        assert_eq!(got, (1..=MAX_READY as u64).collect::<Vec<_>>());
        assert_eq!(
            inbox.add(&fragment(1 + MAX_READY as u64, 1)),
            Received::Complete
        );
        assert_eq!(inbox.deliverable().len(), 1);
        // A higher id than everything held still waits its turn.
        let mut full = Inbox::new(0);
        for id in 2..2 + MAX_READY as u64 {
            full.add(&fragment(id, 1));
        }
        assert_eq!(full.add(&fragment(500, 1)), Received::Dropped);
    }

    /// A contact claiming `floor = u64::MAX` (or any floor above the
    /// message it sends) is refused, and a large honest skip takes one
    /// step, not one per id.
    #[test]
    fn a_lying_floor_is_refused_and_skips_are_one_step() {
        let mut inbox = Inbox::new(0);
        assert_eq!(inbox.add(&fragment(1, u64::MAX)), Received::Dropped);
        assert_eq!(inbox.add(&fragment(1, 2)), Received::Dropped);
        assert!(inbox.deliverable().is_empty());
        // The sender abandoned 1..1000 (a restart from an old state).
        assert_eq!(inbox.add(&fragment(1000, 1000)), Received::Complete);
        let got: Vec<u64> = inbox.deliverable().into_iter().map(|(id, _)| id).collect();
        assert_eq!(got, vec![1000]);
        assert_eq!(inbox.delivered_upto(), 1000);
    }

    /// Checked against keeping stale partials: message 3 then holds back
    /// every later one until the partial limit drops new ones.
    #[test]
    fn a_message_abandoned_mid_way_does_not_block_later_ones() {
        let mut inbox = Inbox::new(2);
        let half = Fragment {
            msg_id: 3,
            floor: 3,
            index: 0,
            count: 2,
            data: Zeroizing::new(b"half".to_vec()),
            control: false,
        };
        assert_eq!(inbox.add(&half), Received::Pending);
        // The sender restarts from a state saved before message 3 went out
        // and abandons it: its next messages say so with their floor.
        let mut got = Vec::new();
        for id in 4..4 + 2 * MAX_PARTIAL as u64 {
            inbox.add(&fragment(id, 4));
            got.extend(inbox.deliverable().into_iter().map(|(id, _)| id));
        }
        assert_eq!(got, (4..4 + 2 * MAX_PARTIAL as u64).collect::<Vec<_>>());
    }

    /// A hostile contact's extreme ids and floors are refused at once and
    /// never overflow a counter (checked against removing the
    /// `MAX_MSG_ID` bound: the sums then overflow).
    #[test]
    fn extreme_ids_and_floors_return_at_once() {
        let mut inbox = Inbox::new(0);
        assert_eq!(inbox.add(&fragment(u64::MAX, u64::MAX)), Received::Dropped);
        inbox.rebase();
        assert_eq!(
            inbox.add(&fragment(u64::MAX - 1, u64::MAX - 1)),
            Received::Dropped
        );
        assert!(inbox.deliverable().is_empty());
        assert_eq!(
            inbox.add(&fragment(MAX_MSG_ID, MAX_MSG_ID)),
            Received::Complete
        );
        assert_eq!(inbox.deliverable().len(), 1);
    }

    #[test]
    fn ids_below_the_senders_floor_are_not_waited_for() {
        let mut inbox = Inbox::new(0);
        // The sender restarted: messages 1..=4 are gone, 5 carries floor 5.
        let f = Fragment {
            msg_id: 5,
            floor: 5,
            index: 0,
            count: 1,
            data: Zeroizing::new(b"after restart".to_vec()),
            control: false,
        };
        assert_eq!(inbox.add(&f), Received::Complete);
        let got: Vec<u64> = inbox.deliverable().into_iter().map(|(id, _)| id).collect();
        assert_eq!(got, vec![5]);
    }

    #[test]
    fn reassembly_is_bounded() {
        let mut inbox = Inbox::new(0);
        let frag = |id, count| Fragment {
            msg_id: id,
            floor: 1,
            index: 0,
            count,
            data: Zeroizing::new(vec![1]),
            control: false,
        };
        for id in 1..=MAX_PARTIAL as u64 {
            assert_eq!(inbox.add(&frag(id, 2)), Received::Pending);
        }
        assert_eq!(inbox.add(&frag(100, 2)), Received::Dropped);
        assert_eq!(inbox.add(&frag(MAX_ID_AHEAD + 1, 1)), Received::Dropped);
        assert_eq!(inbox.add(&frag(2, MAX_FRAGMENTS + 1)), Received::Dropped);
        assert_eq!(inbox.add(&frag(1, 3)), Received::Dropped, "count changed");
    }

    proptest! {
        #[test]
        fn fragmentation_round_trips_in_any_order(
            body in proptest::collection::vec(any::<u8>(), 1..3000),
            // At least 12 bytes a fragment keeps 3000 bytes within MAX_FRAGMENTS.
            frag in 12usize..500,
            shuffle in proptest::collection::vec(any::<usize>(), 0..40),
        ) {
            let n = body.len().div_ceil(frag);
            // Every fragment once, in a scrambled order, plus duplicates.
            let mut order: Vec<usize> = (0..n).collect();
            for (i, s) in shuffle.iter().enumerate() {
                let a = i % n;
                let b = s % n;
                order.swap(a, b);
            }
            order.extend(shuffle.iter().map(|s| s % n));
            prop_assert_eq!(reassemble(&body, frag, &order), Some(body.clone()));
        }

        #[test]
        fn a_missing_fragment_delivers_nothing(
            body in proptest::collection::vec(any::<u8>(), 2..3000),
            frag in 12usize..500,
        ) {
            let n = body.len().div_ceil(frag);
            prop_assume!(n > 1);
            let order: Vec<usize> = (1..n).collect();
            prop_assert_eq!(reassemble(&body, frag, &order), None);
        }
    }
}
