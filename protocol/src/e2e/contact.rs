//! One contact: init cells (session start), the session, and the message
//! state machines on both sides.
//!
//! Init cell: `tag(16) || AEAD(k_j, aad = tag, init_id(8) || index(1) ||
//! count(1) || len(2) || data || zeros)`, with tags and keys derived from
//! the static-static X25519 secret only, so the peer recognises them
//! before any session exists.

use std::collections::{BTreeSet, VecDeque};

use rand::CryptoRng;
use zeroize::Zeroizing;

use super::identity::{PrivateIdentity, PublicIdentity};
use super::kdf::{
    AEAD_TAG, LABEL_CELL_KEY, LABEL_INIT, LABEL_INIT_CELLS, LABEL_INIT_TAGS, Secret, hkdf32, open,
    prf, seal, tag16,
};
use super::messages::{Delivery, Inbox, OutEvent, Outbox, Received};
use super::payload::{ACK_LEN, ACKS_PER_CELL, DATA_OVERHEAD, Records};
use super::session::{ROUND_WINDOW, Role, SESSION_OVERHEAD, Session, TAG_LEN, x25519};
use super::writer::Writer;
use super::{MAX_MESSAGE_LEN, SendError};
use crate::wire::WireError;
use crate::wire::reader::Reader;

const INIT_HEADER: usize = 8 + 1 + 1 + 2;
/// Most cells an init may span.
const MAX_INIT_FRAGMENTS: u8 = 16;
/// Pending acknowledgements kept per contact.
const MAX_PENDING_ACKS: usize = 64;

/// Which kind of cell a tag announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Slot {
    Init,
    Session,
}

/// What happened, for the router to attach a contact id to.
#[derive(Debug)]
pub(crate) enum Ev {
    Received(u64, Zeroizing<Vec<u8>>),
    Sent(u64),
    Delivered(u64),
    Retransmitting(u64),
    SessionStarted,
}

struct MyInit {
    id: [u8; 8],
    data: Zeroizing<Vec<u8>>,
    queue: VecDeque<u8>,
}

struct PeerInit {
    id: [u8; 8],
    parts: Vec<Option<Zeroizing<Vec<u8>>>>,
}

pub(crate) struct Contact {
    pub(crate) peer: PublicIdentity,
    cell_size: usize,
    init_send_tags: Secret,
    init_send_cells: Secret,
    init_recv_tags: Secret,
    init_recv_cells: Secret,
    /// Rounds in which a cell from this contact was accepted (replays).
    seen: BTreeSet<u64>,
    /// The newest such round.
    newest: u64,
    peer_init: Option<PeerInit>,
    last_peer_init: Option<[u8; 8]>,
    my_init: Option<MyInit>,
    session: Option<Session>,
    outbox: Outbox,
    inbox: Inbox,
    acks: VecDeque<u64>,
    next_msg_id: u64,
}

struct InitKeys {
    send_tags: Secret,
    send_cells: Secret,
    recv_tags: Secret,
    recv_cells: Secret,
}

/// Init keys from the static-static secret, per direction.
fn init_keys(me: &PrivateIdentity, peer: &PublicIdentity) -> Option<InitKeys> {
    let dh = x25519(me, peer.x25519().as_bytes())?;
    let mine = me.public().fingerprint().0;
    let theirs = peer.fingerprint().0;
    let (low, high) = if mine < theirs {
        (mine, theirs)
    } else {
        (theirs, mine)
    };
    let secret = hkdf32(&[0u8; 32], dh.as_ref(), &[LABEL_INIT, &low, &high]);
    let k = |label: &[u8], from: &[u8; 32], to: &[u8; 32]| {
        hkdf32(&[0u8; 32], secret.as_ref(), &[label, from, to])
    };
    Some(InitKeys {
        send_tags: k(LABEL_INIT_TAGS, &mine, &theirs),
        send_cells: k(LABEL_INIT_CELLS, &mine, &theirs),
        recv_tags: k(LABEL_INIT_TAGS, &theirs, &mine),
        recv_cells: k(LABEL_INIT_CELLS, &theirs, &mine),
    })
}

/// Payload bytes of a session cell.
pub(crate) fn payload_len(cell_size: usize) -> usize {
    cell_size - SESSION_OVERHEAD
}

/// Message bytes per fragment, leaving room for acknowledgements.
pub(crate) fn fragment_len(cell_size: usize) -> usize {
    payload_len(cell_size) - DATA_OVERHEAD - ACKS_PER_CELL * ACK_LEN
}

fn init_data_per_cell(cell_size: usize) -> usize {
    cell_size - TAG_LEN - AEAD_TAG - INIT_HEADER
}

impl Contact {
    pub(crate) fn new(
        me: &PrivateIdentity,
        peer: PublicIdentity,
        cell_size: usize,
    ) -> Option<Self> {
        let keys = init_keys(me, &peer)?;
        Some(Self {
            peer,
            cell_size,
            init_send_tags: keys.send_tags,
            init_send_cells: keys.send_cells,
            init_recv_tags: keys.recv_tags,
            init_recv_cells: keys.recv_cells,
            seen: BTreeSet::new(),
            newest: 0,
            peer_init: None,
            last_peer_init: None,
            my_init: None,
            session: None,
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
        self.session.is_some()
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
        if self.session.is_none()
            && self.outbox.len() > 0
            && let Some((session, data)) = Session::initiate(rng, me, &self.peer)
        {
            self.start_my_init(session.init_id, data);
            self.session = Some(session);
            reindex = true;
        }
        for e in self.outbox.retransmit_due(now_ms, retransmit_after_ms) {
            if let OutEvent::Retransmitting(id) = e {
                events.push(Ev::Retransmitting(id));
            }
        }
        if !events.is_empty() {
            // Unconfirmed: the init may have been lost too; send it again
            // (same data, fresh tags).
            if let Some(init) = &mut self.my_init
                && init.queue.is_empty()
            {
                let count = init.data.len().div_ceil(init_data_per_cell(self.cell_size));
                init.queue = (0..count as u8).collect();
            }
        }
        (events, reindex)
    }

    fn start_my_init(&mut self, id: [u8; 8], data: Zeroizing<Vec<u8>>) {
        let count = data.len().div_ceil(init_data_per_cell(self.cell_size));
        self.my_init = Some(MyInit {
            id,
            data,
            queue: (0..count as u8).collect(),
        });
    }

    pub(crate) fn has_output(&self) -> bool {
        if self.my_init.as_ref().is_some_and(|i| !i.queue.is_empty()) {
            return true;
        }
        self.session.as_ref().is_some_and(Session::can_send)
            && (!self.acks.is_empty() || self.outbox.has_pending_fragment())
    }

    /// The next real cell for this contact, sent in `round`, if any.
    pub(crate) fn produce(&mut self, round: u64, now_ms: u64) -> Option<(Vec<u8>, Vec<Ev>)> {
        if let Some(cell) = self.next_init_cell(round) {
            return Some((cell, Vec::new()));
        }
        let session = self.session.as_mut()?;
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
                events.push(Ev::Sent(id));
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

    fn next_init_cell(&mut self, round: u64) -> Option<Vec<u8>> {
        let per_cell = init_data_per_cell(self.cell_size);
        let init = self.my_init.as_mut()?;
        let index = init.queue.pop_front()?;
        let count = init.data.len().div_ceil(per_cell) as u8;
        let start = usize::from(index) * per_cell;
        let chunk = &init.data[start..(start + per_cell).min(init.data.len())];
        let j = round;
        let tag = tag16(&self.init_send_tags, j);
        let mut pt = Vec::with_capacity(self.cell_size - TAG_LEN - AEAD_TAG);
        pt.extend_from_slice(&init.id);
        pt.push(index);
        pt.push(count);
        pt.extend_from_slice(&(chunk.len() as u16).to_be_bytes());
        pt.extend_from_slice(chunk);
        pt.resize(self.cell_size - TAG_LEN - AEAD_TAG, 0);
        seal(
            &prf(&self.init_send_cells, LABEL_CELL_KEY, j),
            &tag,
            &mut pt,
        );
        let mut cell = tag.to_vec();
        cell.extend_from_slice(&pt);
        Some(cell)
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
    pub(crate) fn expected(&self, round: u64) -> Vec<([u8; 16], Slot)> {
        if !self.accepts(round) {
            return Vec::new();
        }
        let mut v = vec![(tag16(&self.init_recv_tags, round), Slot::Init)];
        if let Some(s) = &self.session {
            v.push((s.recv_tag(round), Slot::Session));
        }
        v
    }

    /// The tag expected for `slot` in `round`, for the constant-time check.
    pub(crate) fn tag_at(&self, slot: Slot, round: u64) -> Option<[u8; 16]> {
        if !self.accepts(round) {
            return None;
        }
        match slot {
            Slot::Init => Some(tag16(&self.init_recv_tags, round)),
            Slot::Session => Some(self.session.as_ref()?.recv_tag(round)),
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

    fn receive_init(&mut self, me: &PrivateIdentity, j: u64, cell: &[u8]) -> Vec<Ev> {
        let key = prf(&self.init_recv_cells, LABEL_CELL_KEY, j);
        let Some(pt) = open(&key, &cell[..TAG_LEN], &cell[TAG_LEN..]) else {
            return Vec::new();
        };
        self.mark_seen(j);
        let mut r = Reader::new(&pt);
        let parsed = (|| {
            let id: [u8; 8] = r.array().ok()?;
            let index = r.u8().ok()?;
            let count = r.u8().ok()?;
            let len = usize::from(r.u16().ok()?);
            let data = r.take(len).ok()?;
            (count > 0 && count <= MAX_INIT_FRAGMENTS && index < count)
                .then_some((id, index, count, data))
        })();
        let Some((id, index, count, data)) = parsed else {
            return Vec::new();
        };
        if self.last_peer_init == Some(id) {
            return Vec::new();
        }
        let fresh = self
            .peer_init
            .as_ref()
            .is_none_or(|p| p.id != id || p.parts.len() != usize::from(count));
        if fresh {
            self.peer_init = Some(PeerInit {
                id,
                parts: vec![None; usize::from(count)],
            });
        }
        let Some(p) = self.peer_init.as_mut() else {
            return Vec::new();
        };
        p.parts[usize::from(index)] = Some(Zeroizing::new(data.to_vec()));
        if p.parts.iter().any(Option::is_none) {
            return Vec::new();
        }
        let Some(p) = self.peer_init.take() else {
            return Vec::new();
        };
        let mut all = Zeroizing::new(Vec::new());
        for part in p.parts.into_iter().flatten() {
            all.extend_from_slice(&part);
        }
        self.last_peer_init = Some(id);
        self.peer_started(me, id, &all)
    }

    /// The peer started a session. If both sides started at once, the
    /// session of the side with the smaller fingerprint wins, a rule both
    /// compute the same way.
    fn peer_started(&mut self, me: &PrivateIdentity, id: [u8; 8], data: &[u8]) -> Vec<Ev> {
        if let Some(s) = &self.session
            && s.role == Role::Initiator
            && !s.confirmed
            && me.public().fingerprint() < self.peer.fingerprint()
        {
            return Vec::new();
        }
        let Some(session) = Session::respond(me, &self.peer, id, data) else {
            return Vec::new();
        };
        self.session = Some(session);
        self.my_init = None;
        self.outbox.restart_all();
        vec![Ev::SessionStarted]
    }

    fn receive_session<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        i: u64,
        cell: &[u8],
    ) -> Vec<Ev> {
        let Some(session) = self.session.as_mut() else {
            return Vec::new();
        };
        let Ok(payload) = session.open(rng, i, cell) else {
            return Vec::new();
        };
        self.mark_seen(i);
        let Some(session) = self.session.as_mut() else {
            return Vec::new();
        };
        let mut events = Vec::new();
        if session.role == Role::Initiator && !session.confirmed {
            session.confirmed = true;
            self.my_init = None;
            events.push(Ev::SessionStarted);
        }
        let Some(records) = Records::decode(&payload) else {
            return events;
        };
        for id in records.acks {
            if self.outbox.ack(id) {
                events.push(Ev::Delivered(id));
            }
        }
        if let Some(f) = records.data {
            match self.inbox.add(&f) {
                Received::Complete | Received::Duplicate => {
                    if !self.acks.contains(&f.msg_id) {
                        if self.acks.len() >= MAX_PENDING_ACKS {
                            self.acks.pop_front();
                        }
                        self.acks.push_back(f.msg_id);
                    }
                }
                Received::Pending | Received::Dropped => {}
            }
            for (id, body) in self.inbox.deliverable() {
                events.push(Ev::Received(id, body));
            }
        }
        events
    }

    /// Persistent state: keys, counters, session. Messages stay in RAM.
    pub(crate) fn encode(&self, w: &mut Writer) {
        w.u16_prefixed(self.peer.signed_bytes());
        w.u64(self.newest);
        w.u32(self.seen.len() as u32);
        for r in &self.seen {
            w.u64(*r);
        }
        w.bool(self.last_peer_init.is_some());
        w.bytes(&self.last_peer_init.unwrap_or_default());
        w.bool(self.session.is_some());
        if let Some(s) = &self.session {
            s.encode(w);
        }
        match &self.my_init {
            Some(init) => {
                w.bool(true);
                w.bytes(&init.id);
                w.u16_prefixed(&init.data);
            }
            None => w.bool(false),
        }
        w.u64(self.next_msg_id);
        w.u64(self.inbox.delivered_upto());
    }

    pub(crate) fn decode(
        me: &PrivateIdentity,
        r: &mut Reader<'_>,
        cell_size: usize,
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
        let has_last = r.u8()? == 1;
        let last: [u8; 8] = r.array()?;
        c.last_peer_init = has_last.then_some(last);
        if r.u8()? == 1 {
            c.session = Some(Session::decode(r)?);
        }
        if r.u8()? == 1 {
            let id: [u8; 8] = r.array()?;
            let len = usize::from(r.u16()?);
            let data = Zeroizing::new(r.take(len)?.to_vec());
            c.my_init = Some(MyInit {
                id,
                data,
                queue: VecDeque::new(),
            });
        }
        c.next_msg_id = r.u64()?;
        if c.next_msg_id == 0 {
            return Err(WireError::BadField("message counter").into());
        }
        c.inbox = Inbox::new(r.u64()?);
        Ok(c)
    }
}
