//! One contact: the handshake cell keys, the sessions, the replay record,
//! and the message state machines on both sides. Handshake cells are in
//! [`init`](super::init), the handshake in [`handshake`](super::handshake),
//! the sessions' lifecycle in [`lifecycle`](super::lifecycle).

use std::collections::{BTreeSet, VecDeque};

use rand::CryptoRng;
use zeroize::Zeroizing;

use super::handshake::{self, Incarnation, Initiator, Message};
use super::identity::{PrivateIdentity, PublicIdentity};
use super::init::{Added, InitFragment, InitId, InitKeys, OutgoingInit, PeerInits};
use super::kdf::CellTag;
use super::lifecycle::{self, Active, Sessions, Starting};
use super::messages::{Delivery, Inbox, MAX_MSG_ID, OutEvent, Outbox, Received};
use super::payload::{ACK_LEN, ACKS_PER_CELL, DATA_OVERHEAD, Records};
use super::ratchet::Epoch;
use super::router::EventKind as Ev;
use super::session::{ROUND_WINDOW, Role, SESSION_OVERHEAD, Session};

/// Rounds remembered per contact in the (RAM-only) replay record.
const REPLAY_RECORD: usize = ROUND_WINDOW as usize;
use super::writer::Writer;
use super::{MAX_MESSAGE_LEN, SendError};
use crate::wire::WireError;
use crate::wire::reader::Reader;

/// A peer unheard for this many times the longest retransmit wait, while
/// our sent messages wait, gets a new session start.
const DEAF_AFTER: u64 = 2;

/// Pending acknowledgements kept per contact.
const MAX_PENDING_ACKS: usize = 64;

/// Which kind of cell a tag announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Slot {
    /// A handshake cell (INIT or ACCEPT).
    Handshake,
    /// A cell of the active session, in one of its receiving epochs.
    Active(Epoch),
    /// A cell of the session being started (our answer to the peer's INIT).
    Starting(Epoch),
}

pub(crate) struct Contact {
    pub(crate) peer: PublicIdentity,
    cell_size: usize,
    init_keys: InitKeys,
    /// Round indexes (see [`Router`](super::Router)) in which a cell from
    /// this contact was accepted: a second line against replays behind the
    /// router's one-batch-per-round rule. RAM only: a saved record would
    /// tell a thief of the state when this contact last talked.
    seen: BTreeSet<u64>,
    /// Nothing at or below this index is accepted (the oldest forgotten).
    floor: u64,
    /// When a cell from this contact was last accepted (ms; RAM only,
    /// `None` until the first poll after a start).
    last_heard_ms: Option<u64>,
    peer_inits: PeerInits,
    sessions: Sessions,
    outbox: Outbox,
    inbox: Inbox,
    acks: VecDeque<u64>,
    next_msg_id: u64,
    /// Ours for this contact record (see [`Incarnation`]).
    incarnation: Incarnation,
    /// The peer's, as its last proven session start carried it.
    peer_incarnation: Option<Incarnation>,
    /// We finished a session start as initiator: send a cell on it soon
    /// even with nothing else to say, so that the peer can prove it.
    confirm: bool,
    /// Control messages received, in order, for the router to take (RAM;
    /// bounded by what one batch can complete).
    controls: Vec<Zeroizing<Vec<u8>>>,
}

/// Payload bytes of a session cell.
pub(crate) fn payload_len(cell_size: usize) -> usize {
    cell_size - SESSION_OVERHEAD
}

/// Message bytes per fragment, leaving room for acknowledgements.
pub(crate) fn fragment_len(cell_size: usize) -> usize {
    payload_len(cell_size) - DATA_OVERHEAD - ACKS_PER_CELL * ACK_LEN
}

impl Contact {
    pub(crate) fn new<R: CryptoRng + ?Sized>(
        rng: &mut R,
        me: &PrivateIdentity,
        peer: PublicIdentity,
        cell_size: usize,
    ) -> Option<Self> {
        let init_keys = InitKeys::derive(me, &peer)?;
        Some(Self {
            peer,
            cell_size,
            init_keys,
            seen: BTreeSet::new(),
            floor: 0,
            last_heard_ms: None,
            peer_inits: PeerInits::default(),
            sessions: Sessions::default(),
            outbox: Outbox::default(),
            // A new record knows nothing of the peer's numbering: its first
            // fragment's floor says where it is (the peer may have talked
            // to an earlier record of us, removed since).
            inbox: Inbox::new_rebasing(),
            acks: VecDeque::new(),
            next_msg_id: 1,
            incarnation: rng.next_u64(),
            peer_incarnation: None,
            confirm: false,
            controls: Vec::new(),
        })
    }

    /// Queues a message: text, or a control message (`control`) whose
    /// progress the user is not told about.
    pub(crate) fn enqueue(&mut self, body: &[u8], control: bool) -> Result<u64, SendError> {
        if body.is_empty() {
            return Err(SendError::Empty);
        }
        if body.len() > MAX_MESSAGE_LEN {
            return Err(SendError::TooLong(body.len()));
        }
        if self.outbox.len() >= super::messages::MAX_OUTBOX {
            return Err(SendError::OutboxFull(self.outbox.len()));
        }
        let id = self.next_msg_id;
        self.next_msg_id += 1;
        self.outbox
            .push(id, body, fragment_len(self.cell_size), control);
        Ok(id)
    }

    #[cfg(test)]
    pub(crate) fn skip_message_ids(&mut self, n: u64) {
        self.next_msg_id += n;
    }

    /// Whether a handshake is under way (ours, or an answer to the peer's).
    #[cfg(test)]
    pub(crate) fn is_starting(&self) -> bool {
        self.sessions.starting.is_some()
    }

    #[cfg(test)]
    pub(crate) fn last_heard_ms(&self) -> Option<u64> {
        self.last_heard_ms
    }

    #[cfg(test)]
    pub(crate) fn forget_peer_inits(&mut self) {
        self.peer_inits.forget_all();
    }

    pub(crate) fn delivery(&self, id: u64) -> Option<Delivery> {
        if id >= self.next_msg_id || id == 0 {
            return None;
        }
        Some(self.outbox.state(id).unwrap_or(Delivery::Delivered))
    }

    pub(crate) fn undelivered(&self) -> usize {
        self.outbox.len()
    }

    /// Whether a session both sides have proven exists.
    pub(crate) fn has_session(&self) -> bool {
        self.sessions.active.is_some()
    }

    /// Timers and session start: starts a handshake when messages wait and
    /// no session exists, and sends handshake messages again when due.
    /// Returns events and whether the expected tags changed.
    pub(crate) fn poll<R: CryptoRng + ?Sized>(
        &mut self,
        me: &PrivateIdentity,
        rng: &mut R,
        now_ms: u64,
        retransmit_after_ms: u64,
    ) -> (Vec<Ev>, bool) {
        let mut events = Vec::new();
        let mut reindex = false;
        // An answer to an INIT that nobody follows up (a replay, or a peer
        // that started over) must not keep us from starting ourselves.
        let stale_answer = matches!(
            self.sessions.starting,
            Some(Starting::Responding { since_ms, .. })
                if now_ms.saturating_sub(since_ms) >= retransmit_after_ms
        );
        let idle = self.sessions.starting.is_none() || stale_answer;
        let heard = *self.last_heard_ms.get_or_insert(now_ms);
        // A session the peer no longer has (it removed and re-added us, or
        // restored an old state): our cells go unread for long. Start
        // again; the old session stays until the new one is proven.
        let deaf = self.sessions.active.is_some()
            && self.outbox.has_sent()
            && now_ms.saturating_sub(heard) >= DEAF_AFTER * retransmit_after_ms;
        if (self.sessions.active.is_none() || deaf) && idle && self.outbox.len() > 0 {
            match Initiator::start(rng, me, &self.peer, self.incarnation) {
                Ok((hs, data)) => {
                    let out = OutgoingInit::new(rng, data, self.cell_size);
                    self.sessions.starting = Some(Starting::Initiating {
                        hs: Box::new(hs),
                        out,
                    });
                    reindex = true;
                }
                Err(_) => return (events, reindex),
            }
        }
        for e in self.outbox.retransmit_due(now_ms, retransmit_after_ms) {
            if let OutEvent::Retransmitting(id) = e {
                events.push(Ev::Retransmitting { msg_id: id });
            }
        }
        // No answer yet: the INIT or the ACCEPT may have been lost; send
        // the INIT again (same data, fresh tags), backing off.
        if let Some(Starting::Initiating { out, .. }) = &mut self.sessions.starting {
            out.resend_if_due(now_ms, retransmit_after_ms, self.cell_size);
        }
        (events, reindex)
    }

    pub(crate) fn has_output(&self) -> bool {
        if self
            .sessions
            .starting
            .as_ref()
            .is_some_and(|s| s.out().has_output())
        {
            return true;
        }
        self.sessions
            .active
            .as_ref()
            .is_some_and(|a| a.session.can_send())
            && (self.confirm || !self.acks.is_empty() || self.outbox.has_pending_fragment())
    }

    /// The next real cell for this contact, sent in `round`, if any.
    pub(crate) fn produce(&mut self, round: u64, now_ms: u64) -> Option<(Vec<u8>, Vec<Ev>)> {
        if let Some(starting) = &mut self.sessions.starting
            && let Some(cell) =
                starting
                    .out_mut()
                    .next_cell(&self.init_keys, round, now_ms, self.cell_size)
        {
            return Some((cell, Vec::new()));
        }
        let session = &mut self.sessions.active.as_mut()?.session;
        if !session.can_send() {
            return None;
        }
        let mut records = Records::default();
        while records.acks.len() < ACKS_PER_CELL {
            let Some(id) = self.acks.pop_front() else {
                break;
            };
            records.acks.push(id);
        }
        let mut events = Vec::new();
        if let Some((fragment, ev)) = self.outbox.next_fragment(now_ms, self.next_msg_id) {
            if let Some(OutEvent::Sent(id)) = ev {
                events.push(Ev::Sent { msg_id: id });
            }
            records.data = Some(fragment);
        }
        if records.is_empty() && !self.confirm {
            return None;
        }
        let payload = records.encode(payload_len(self.cell_size));
        let cell = session.seal(round, &payload).ok()?;
        self.confirm = false;
        Some((cell, events))
    }

    /// Whether a cell from this contact at round index `round` could be
    /// new: not seen yet, and above what the record forgot.
    fn accepts(&self, round: u64) -> bool {
        round > self.floor && !self.seen.contains(&round)
    }

    fn mark_seen(&mut self, round: u64, now_ms: u64) {
        self.last_heard_ms = Some(now_ms);
        self.seen.insert(round);
        while self.seen.len() > REPLAY_RECORD {
            if let Some(oldest) = self.seen.pop_first() {
                self.floor = self.floor.max(oldest);
            }
        }
    }

    /// Forgets a replay record that lies in the future of `latest` (a
    /// relay's lie): it would refuse every honest round from now on.
    pub(crate) fn forget_future(&mut self, latest: u64) {
        if self.floor > latest || self.seen.last().is_some_and(|&r| r > latest) {
            self.floor = 0;
            self.seen.clear();
        }
    }

    /// The tags a cell from this contact in `round` may carry.
    pub(crate) fn expected(&self, round: u64) -> Vec<(CellTag, Slot)> {
        if !self.accepts(round) {
            return Vec::new();
        }
        let mut v = vec![(self.init_keys.recv_tag(round), Slot::Handshake)];
        if let Some(a) = &self.sessions.active {
            v.extend(
                a.session
                    .expected(round)
                    .into_iter()
                    .filter_map(|(t, e)| Some((t?, Slot::Active(e)))),
            );
        }
        if let Some(s) = self.sessions.starting_session() {
            v.extend(
                s.expected(round)
                    .into_iter()
                    .filter_map(|(t, e)| Some((t?, Slot::Starting(e)))),
            );
        }
        v
    }

    /// The tag expected for `slot` in `round`, for the constant-time check.
    pub(crate) fn tag_at(&self, slot: Slot, round: u64) -> Option<CellTag> {
        self.expected(round)
            .into_iter()
            .find(|(_, s)| *s == slot)
            .map(|(t, _)| t)
    }

    /// Opens a cell whose tag matched `slot`. `None` if it does not
    /// authenticate (nothing changed then); else the events.
    pub(crate) fn receive<R: CryptoRng + ?Sized>(
        &mut self,
        me: &PrivateIdentity,
        rng: &mut R,
        slot: Slot,
        round: u64,
        now_ms: u64,
        cell: &[u8],
    ) -> Option<Vec<Ev>> {
        match slot {
            Slot::Handshake => self.receive_handshake(me, rng, round, now_ms, cell),
            Slot::Active(epoch) => {
                let session = &mut self.sessions.active.as_mut()?.session;
                let payload = session.open(rng, epoch, round, cell).ok()?;
                self.mark_seen(round, now_ms);
                Some(self.apply_records(&payload, Vec::new()))
            }
            Slot::Starting(epoch) => {
                let Some(Starting::Responding { session, .. }) = &mut self.sessions.starting else {
                    return None;
                };
                let payload = session.open(rng, epoch, round, cell).ok()?;
                self.mark_seen(round, now_ms);
                // The peer proved the session: it replaces the old one.
                let Some(Starting::Responding {
                    session,
                    peer_incarnation,
                    their_init,
                    ..
                }) = self.sessions.starting.take()
                else {
                    return None;
                };
                self.activate(
                    session,
                    Role::Responder,
                    (Some(their_init), round),
                    peer_incarnation,
                );
                Some(self.apply_records(&payload, vec![Ev::SessionStarted]))
            }
        }
    }

    fn receive_handshake<R: CryptoRng + ?Sized>(
        &mut self,
        me: &PrivateIdentity,
        rng: &mut R,
        round: u64,
        now_ms: u64,
        cell: &[u8],
    ) -> Option<Vec<Ev>> {
        let plain = self.init_keys.open(round, cell)?;
        self.mark_seen(round, now_ms);
        let Some(fragment) = InitFragment::parse(&plain) else {
            return Some(Vec::new());
        };
        let mut added = self.peer_inits.add(&fragment);
        if let Added::Repeat(id) = added {
            // The INIT our active session came from, still arriving (or
            // replayed): done.
            if self.came_from(id, round) {
                return Some(Vec::new());
            }
            if let Some(Starting::Responding {
                their_init, out, ..
            }) = &mut self.sessions.starting
                && *their_init == id
            {
                // The peer sends its INIT again: our ACCEPT did not arrive.
                out.requeue(self.cell_size);
                return Some(Vec::new());
            }
            // A message read before whose answer we no longer hold (we
            // gave up on it, or started one ourselves since): read it again
            // in full, so that it is answered by today's rules rather than
            // ignored for good.
            self.peer_inits.forget(id);
            added = self.peer_inits.add(&fragment);
        }
        if let Added::Complete(id, data) = added {
            return Some(self.handshake_message(me, rng, id, &data, round, now_ms));
        }
        Some(Vec::new())
    }

    /// Whether a copy of INIT `id` in `round` belongs to the session in
    /// use: it came from that INIT, and the round is no later than the one
    /// that proved it. A later copy was sealed by a peer that restored a
    /// state from before the session (the relay cannot make a cell for a
    /// round the peer did not seal): it is answered, or the pair would
    /// never talk again.
    fn came_from(&self, id: InitId, round: u64) -> bool {
        self.sessions
            .active
            .as_ref()
            .is_some_and(|a| a.their_init == Some(id) && round <= a.proven_at)
    }

    /// After a restart: copies of the active session's INIT up to `round`
    /// (the last round read before the save) are not answered.
    pub(crate) fn set_proven_at(&mut self, round: u64) {
        if let Some(a) = &mut self.sessions.active {
            a.proven_at = round;
        }
    }

    /// A complete INIT or ACCEPT from the peer.
    fn handshake_message<R: CryptoRng + ?Sized>(
        &mut self,
        me: &PrivateIdentity,
        rng: &mut R,
        id: InitId,
        data: &[u8],
        round: u64,
        now_ms: u64,
    ) -> Vec<Ev> {
        match Message::parse(data) {
            Ok(Message::Init(init)) => {
                // The INIT our session in use came from (read again after
                // its record was dropped, or replayed by the relay): not
                // answered twice.
                if self.came_from(id, round) {
                    return Vec::new();
                }
                // Both sides started at once: the INIT of the side with the
                // smaller fingerprint wins, a rule both compute the same way.
                if matches!(self.sessions.starting, Some(Starting::Initiating { .. }))
                    && me.public().fingerprint() < self.peer.fingerprint()
                {
                    return Vec::new();
                }
                let Ok((session, accept, peer_incarnation)) =
                    handshake::respond(rng, me, &self.peer, id, init, self.incarnation)
                else {
                    return Vec::new();
                };
                let out = OutgoingInit::new(rng, accept, self.cell_size);
                self.sessions.starting = Some(Starting::Responding {
                    their_init: id,
                    session: Box::new(session),
                    out,
                    since_ms: now_ms,
                    peer_incarnation,
                });
                Vec::new()
            }
            Ok(Message::Accept { answers, body }) => {
                let Some(Starting::Initiating { hs, out }) = &self.sessions.starting else {
                    return Vec::new();
                };
                if out.id != answers {
                    return Vec::new();
                }
                // An ACCEPT that does not authenticate is not the peer's:
                // keep waiting for the real one.
                let Ok((session, peer_incarnation)) = hs.finish(rng, me, answers, body) else {
                    return Vec::new();
                };
                self.activate(
                    Box::new(session),
                    Role::Initiator,
                    (None, u64::MAX),
                    peer_incarnation,
                );
                self.confirm = true;
                vec![Ev::SessionStarted]
            }
            Err(_) => Vec::new(),
        }
    }

    /// A proven session becomes the one we use. If the peer's contact
    /// record is not the one we talked to before (it removed and re-added
    /// us), its message numbering started over: so does our inbox.
    fn activate(
        &mut self,
        session: Box<Session>,
        role: Role,
        (their_init, proven_at): (Option<InitId>, u64),
        peer_incarnation: Incarnation,
    ) {
        self.sessions.active = Some(Active {
            session,
            role,
            their_init,
            proven_at,
        });
        self.sessions.starting = None;
        self.outbox.restart_all();
        if self.peer_incarnation != Some(peer_incarnation) {
            if self.peer_incarnation.is_some() || self.inbox.delivered_upto() > 0 {
                self.inbox.rebase();
                self.acks.clear();
            }
            self.peer_incarnation = Some(peer_incarnation);
        }
    }

    fn apply_records(&mut self, payload: &[u8], mut events: Vec<Ev>) -> Vec<Ev> {
        let Some(records) = Records::decode(payload) else {
            return events;
        };
        self.outbox.peer_alive();
        for id in records.acks {
            if self.outbox.ack(id) == Some(false) {
                events.push(Ev::Delivered { msg_id: id });
            }
        }
        if let Some(f) = records.data {
            // Acknowledge what is delivered (now or before), never what is
            // only held: see `Received::Complete`.
            if self.inbox.add(&f) == Received::Duplicate {
                self.queue_ack(f.msg_id);
            }
            for (id, control, body) in self.inbox.deliverable_kinds() {
                self.queue_ack(id);
                if control {
                    self.controls.push(body);
                } else {
                    events.push(Ev::Received { msg_id: id, body });
                }
            }
        }
        events
    }

    /// Queues an acknowledgement for `id` (once; the oldest goes if too
    /// many wait: the sender retransmits and the ack is queued again).
    fn queue_ack(&mut self, id: u64) {
        if !self.acks.contains(&id) {
            if self.acks.len() >= MAX_PENDING_ACKS {
                self.acks.pop_front();
            }
            self.acks.push_back(id);
        }
    }

    /// Control messages received since the last call, in order.
    pub(crate) fn take_controls(&mut self) -> Vec<Zeroizing<Vec<u8>>> {
        std::mem::take(&mut self.controls)
    }

    /// Persistent state: the peer, the replay record, the sessions, the
    /// counters and the outbox (messages not yet acknowledged). Received
    /// messages stay in RAM.
    pub(crate) fn encode(&self, w: &mut Writer) {
        w.u16_prefixed(self.peer.signed_bytes());
        self.peer_inits.encode(w);
        self.sessions.encode(w);
        w.u64(self.next_msg_id);
        self.inbox.encode(w);
        w.u64(self.incarnation);
        w.bool(self.peer_incarnation.is_some());
        w.u64(self.peer_incarnation.unwrap_or(0));
        self.outbox.encode(w);
    }

    /// Reads a contact of state `version`. Formats 1 and 2 (protocol v1)
    /// keep the contact, its counters and its outbox; their sessions are
    /// dropped, and a v2 handshake starts when a message waits.
    pub(crate) fn decode<R: CryptoRng + ?Sized>(
        rng: &mut R,
        me: &PrivateIdentity,
        r: &mut Reader<'_>,
        cell_size: usize,
        version: u8,
    ) -> Result<Self, super::StateError> {
        let signed_len = usize::from(r.u16()?);
        let peer = PublicIdentity::from_signed_bytes(r.take(signed_len)?)?;
        let mut c = Self::new(rng, me, peer, cell_size).ok_or(super::StateError::Damaged)?;
        if version < 3 {
            // The replay record of formats 1 and 2 (newest round, rounds
            // seen), no longer kept: skipped.
            r.u64()?;
            let seen = r.u32()? as usize;
            if seen > ROUND_WINDOW as usize + 1 {
                return Err(WireError::BadField("replay record").into());
            }
            r.take(seen * 8)?;
        }
        if version >= 3 {
            c.peer_inits = PeerInits::decode(r)?;
            c.sessions = Sessions::decode(r)?;
        } else {
            r.take(9)?;
            lifecycle::skip_v1(r)?;
        }
        c.next_msg_id = r.u64()?;
        if c.next_msg_id == 0 || c.next_msg_id > MAX_MSG_ID {
            return Err(WireError::BadField("message counter").into());
        }
        if version >= 3 {
            c.inbox = Inbox::decode(r)?;
            c.incarnation = r.u64()?;
            let known = super::writer::read_bool(r)?;
            let peer = r.u64()?;
            c.peer_incarnation = known.then_some(peer);
        } else {
            let delivered = r.u64()?;
            if delivered >= MAX_MSG_ID {
                return Err(WireError::BadField("delivered message id").into());
            }
            c.inbox = Inbox::new(delivered);
        }
        if version >= 2 {
            c.outbox = Outbox::decode(r, c.next_msg_id, fragment_len(cell_size), version)?;
        }
        // Back from a restart: tell the peer at once (an acknowledgement of
        // the last message delivered, which it drops as a duplicate) so
        // that it sends again what we may have missed meanwhile without
        // waiting for its timer (see `Outbox::peer_alive`).
        if c.inbox.delivered_upto() > 0 {
            c.queue_ack(c.inbox.delivered_upto());
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::e2e::payload::{Fragment, Records};

    /// A full fragment and every ACK a cell may carry fill the payload
    /// exactly. Checked against `fragment_len`'s `-` and `*` changed (the
    /// records then overflow the payload or leave room unused).
    #[test]
    fn a_full_fragment_and_its_acks_fill_the_payload_exactly() {
        for cell in [512, 1024, 4096] {
            let len = fragment_len(cell);
            let r = Records {
                acks: (1..=ACKS_PER_CELL as u64).collect(),
                data: Some(Fragment {
                    msg_id: 1,
                    floor: 0,
                    index: 0,
                    count: 1,
                    data: Zeroizing::new(vec![0xee; len]),
                    control: false,
                }),
            };
            let b = r.encode(payload_len(cell));
            assert_eq!(b.len(), payload_len(cell));
            assert_eq!(b.last(), Some(&0xee), "{cell}: no room left unused");
        }
    }
}
