//! One contact: the init keys, the session's lifecycle, the replay record,
//! and the message state machines on both sides. Init cells are in
//! [`init`](super::init), the lifecycle in [`lifecycle`](super::lifecycle).

use std::collections::{BTreeSet, VecDeque};

use rand::CryptoRng;

use super::identity::{PrivateIdentity, PublicIdentity};
use super::init::{InitFragment, InitId, InitKeys, OutgoingInit, PeerInits};
use super::kdf::CellTag;
use super::lifecycle::SessionState;
use super::messages::{Delivery, Inbox, OutEvent, Outbox, Received};
use super::payload::{ACK_LEN, ACKS_PER_CELL, DATA_OVERHEAD, Records};
use super::router::EventKind as Ev;
use super::session::{ROUND_WINDOW, Role, SESSION_OVERHEAD, Session};
use super::writer::Writer;
use super::{MAX_MESSAGE_LEN, SendError};
use crate::wire::WireError;
use crate::wire::reader::Reader;

/// Pending acknowledgements kept per contact.
const MAX_PENDING_ACKS: usize = 64;

/// Which kind of cell a tag announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Slot {
    Init,
    Session,
}

pub(crate) struct Contact {
    pub(crate) peer: PublicIdentity,
    cell_size: usize,
    init_keys: InitKeys,
    /// Rounds in which a cell from this contact was accepted (replays).
    seen: BTreeSet<u64>,
    /// The newest such round.
    newest: u64,
    peer_inits: PeerInits,
    state: SessionState,
    outbox: Outbox,
    inbox: Inbox,
    acks: VecDeque<u64>,
    next_msg_id: u64,
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
    pub(crate) fn new(
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
            newest: 0,
            peer_inits: PeerInits::default(),
            state: SessionState::None,
            outbox: Outbox::default(),
            inbox: Inbox::new(0),
            acks: VecDeque::new(),
            next_msg_id: 1,
        })
    }

    pub(crate) fn enqueue(&mut self, body: &[u8]) -> Result<u64, SendError> {
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
        self.outbox.push(id, body, fragment_len(self.cell_size));
        Ok(id)
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

    pub(crate) fn has_session(&self) -> bool {
        self.state.session().is_some()
    }

    /// Timers and session start. Returns events and whether the expected
    /// tags changed.
    pub(crate) fn poll<R: CryptoRng + ?Sized>(
        &mut self,
        me: &PrivateIdentity,
        rng: &mut R,
        now_ms: u64,
        retransmit_after_ms: u64,
    ) -> (Vec<Ev>, bool) {
        let mut events = Vec::new();
        let mut reindex = false;
        if matches!(self.state, SessionState::None)
            && self.outbox.len() > 0
            && let Some((session, data)) = Session::initiate(rng, me, &self.peer)
        {
            let init = OutgoingInit::new(rng, data, self.cell_size);
            self.state = SessionState::Initiating { session, init };
            reindex = true;
        }
        for e in self.outbox.retransmit_due(now_ms, retransmit_after_ms) {
            if let OutEvent::Retransmitting(id) = e {
                events.push(Ev::Retransmitting { msg_id: id });
            }
        }
        // Unconfirmed: the init may have been lost too; send it again
        // (same data, fresh tags).
        if !events.is_empty()
            && let SessionState::Initiating { init, .. } = &mut self.state
        {
            init.requeue(self.cell_size);
        }
        (events, reindex)
    }

    pub(crate) fn has_output(&self) -> bool {
        if let SessionState::Initiating { init, .. } = &self.state
            && init.has_output()
        {
            return true;
        }
        self.state.session().is_some_and(Session::can_send)
            && (!self.acks.is_empty() || self.outbox.has_pending_fragment())
    }

    /// The next real cell for this contact, sent in `round`, if any.
    pub(crate) fn produce(&mut self, round: u64, now_ms: u64) -> Option<(Vec<u8>, Vec<Ev>)> {
        if let SessionState::Initiating { init, .. } = &mut self.state
            && let Some(cell) = init.next_cell(&self.init_keys, round, self.cell_size)
        {
            return Some((cell, Vec::new()));
        }
        let session = self.state.session_mut()?;
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
        if records.is_empty() {
            return None;
        }
        let payload = records.encode(payload_len(self.cell_size));
        let cell = session.seal(round, &payload).ok()?;
        Some((cell, events))
    }

    /// Whether a cell from this contact in `round` could be new: not seen
    /// yet, and not older than the replay record reaches.
    fn accepts(&self, round: u64) -> bool {
        round.saturating_add(ROUND_WINDOW) >= self.newest && !self.seen.contains(&round)
    }

    fn mark_seen(&mut self, round: u64) {
        self.seen.insert(round);
        self.newest = self.newest.max(round);
        let oldest = self.newest.saturating_sub(ROUND_WINDOW);
        while self.seen.first().is_some_and(|&r| r < oldest) {
            self.seen.pop_first();
        }
    }

    /// The tags a cell from this contact in `round` may carry.
    pub(crate) fn expected(&self, round: u64) -> Vec<(CellTag, Slot)> {
        if !self.accepts(round) {
            return Vec::new();
        }
        let mut v = vec![(self.init_keys.recv_tag(round), Slot::Init)];
        if let Some(s) = self.state.session() {
            v.push((s.recv_tag(round), Slot::Session));
        }
        v
    }

    /// The tag expected for `slot` in `round`, for the constant-time check.
    pub(crate) fn tag_at(&self, slot: Slot, round: u64) -> Option<CellTag> {
        if !self.accepts(round) {
            return None;
        }
        match slot {
            Slot::Init => Some(self.init_keys.recv_tag(round)),
            Slot::Session => Some(self.state.session()?.recv_tag(round)),
        }
    }

    pub(crate) fn receive<R: CryptoRng + ?Sized>(
        &mut self,
        me: &PrivateIdentity,
        rng: &mut R,
        slot: Slot,
        round: u64,
        cell: &[u8],
    ) -> Vec<Ev> {
        match slot {
            Slot::Init => self.receive_init(me, round, cell),
            Slot::Session => self.receive_session(rng, round, cell),
        }
    }

    fn receive_init(&mut self, me: &PrivateIdentity, round: u64, cell: &[u8]) -> Vec<Ev> {
        let Some(plain) = self.init_keys.open(round, cell) else {
            return Vec::new();
        };
        self.mark_seen(round);
        let Some((id, data)) = InitFragment::parse(&plain).and_then(|f| self.peer_inits.add(&f))
        else {
            return Vec::new();
        };
        self.peer_started(me, id, &data)
    }

    /// The peer started a session. If both sides started at once, the
    /// session of the side with the smaller fingerprint wins, a rule both
    /// compute the same way.
    fn peer_started(&mut self, me: &PrivateIdentity, id: InitId, data: &[u8]) -> Vec<Ev> {
        if matches!(self.state, SessionState::Initiating { .. })
            && me.public().fingerprint() < self.peer.fingerprint()
        {
            return Vec::new();
        }
        let Some(session) = Session::respond(me, &self.peer, data) else {
            return Vec::new();
        };
        self.state = SessionState::Established {
            session,
            role: Role::Responder,
            init_id: id,
        };
        self.outbox.restart_all();
        vec![Ev::SessionStarted]
    }

    fn receive_session<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        i: u64,
        cell: &[u8],
    ) -> Vec<Ev> {
        let Some(session) = self.state.session_mut() else {
            return Vec::new();
        };
        let Ok(payload) = session.open(rng, i, cell) else {
            return Vec::new();
        };
        self.mark_seen(i);
        let mut events = Vec::new();
        if self.state.confirm() {
            events.push(Ev::SessionStarted);
        }
        let Some(records) = Records::decode(&payload) else {
            return events;
        };
        self.outbox.peer_alive();
        for id in records.acks {
            if self.outbox.ack(id) {
                events.push(Ev::Delivered { msg_id: id });
            }
        }
        if let Some(f) = records.data {
            // Acknowledge what is delivered (now or before), never what is
            // only held: see `Received::Complete`.
            if self.inbox.add(&f) == Received::Duplicate {
                self.queue_ack(f.msg_id);
            }
            for (id, body) in self.inbox.deliverable() {
                self.queue_ack(id);
                events.push(Ev::Received { msg_id: id, body });
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

    /// Persistent state: keys, counters, session, and the outbox (messages
    /// not yet acknowledged). Received messages stay in RAM.
    pub(crate) fn encode(&self, w: &mut Writer) {
        w.u16_prefixed(self.peer.signed_bytes());
        w.u64(self.newest);
        w.u32(self.seen.len() as u32);
        for r in &self.seen {
            w.u64(*r);
        }
        self.peer_inits.encode(w);
        self.state.encode(w);
        w.u64(self.next_msg_id);
        w.u64(self.inbox.delivered_upto());
        self.outbox.encode(w);
    }

    /// Reads a contact of state `version` (1: no outbox; 2: with it).
    pub(crate) fn decode(
        me: &PrivateIdentity,
        r: &mut Reader<'_>,
        cell_size: usize,
        version: u8,
    ) -> Result<Self, super::StateError> {
        let signed_len = usize::from(r.u16()?);
        let peer = PublicIdentity::from_signed_bytes(r.take(signed_len)?)?;
        let mut c = Self::new(me, peer, cell_size).ok_or(super::StateError::Damaged)?;
        c.newest = r.u64()?;
        let seen = r.u32()? as usize;
        if seen > ROUND_WINDOW as usize + 1 {
            return Err(WireError::BadField("replay record").into());
        }
        for _ in 0..seen {
            c.seen.insert(r.u64()?);
        }
        c.peer_inits = PeerInits::decode(r)?;
        c.state = SessionState::decode(r)?;
        c.next_msg_id = r.u64()?;
        if c.next_msg_id == 0 {
            return Err(WireError::BadField("message counter").into());
        }
        c.inbox = Inbox::new(r.u64()?);
        if version >= 2 {
            c.outbox = Outbox::decode(r, c.next_msg_id, fragment_len(cell_size))?;
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
