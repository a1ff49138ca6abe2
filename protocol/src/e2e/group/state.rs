//! One group as a member holds it: the roster, our sender chain of the
//! current epoch, every other member's chain and reassembly state, our
//! outgoing messages and who acknowledged them.
//!
//! A group cell's payload is a list of records, then zero padding:
//! ```text
//! 0x00 END
//! 0x01 DATA  as in a pairwise cell (msg_id, floor, index, count, len, bytes)
//! 0x04 GACK  member u8 (position in the roster) | upto u64
//! ```
//! `GACK m u` says: of member `m`'s messages, everything up to `u` is
//! delivered here. Each member numbers its group messages from 1, across
//! epochs.

use std::collections::BTreeMap;

use zeroize::Zeroizing;

use super::control::Roster;
use super::{ReceiverChain, SenderKey, SenderKeyBundle, group_payload_len};
use crate::e2e::identity::Fingerprint;
use crate::e2e::messages::{Inbox, MAX_MSG_ID, OutEvent, Outbox, Received};
use crate::e2e::payload::{DATA_OVERHEAD, Fragment};
use crate::e2e::writer::{Writer, read_bool};
use crate::wire::WireError;
use crate::wire::reader::Reader;

const END: u8 = 0x00;
const DATA: u8 = 0x01;
const GACK: u8 = 0x04;
/// Bytes of a GACK record.
pub(crate) const GACK_LEN: usize = 1 + 1 + 8;
/// GACK records a full data cell leaves room for.
const GACKS_WITH_DATA: usize = 4;
/// Bundles held for a later epoch than ours, per group.
const MAX_PENDING_BUNDLES: usize = super::control::MAX_GROUP_MEMBERS;
/// How far ahead of our epoch a held bundle may be.
const MAX_EPOCH_AHEAD: u32 = 16;

/// Message bytes per group fragment.
pub(crate) fn group_fragment_len(cell_size: usize) -> usize {
    group_payload_len(cell_size).saturating_sub(DATA_OVERHEAD + GACKS_WITH_DATA * GACK_LEN)
}

/// What a group cell's payload carries.
#[derive(Default)]
pub(crate) struct GroupRecords {
    pub(crate) acks: Vec<(u8, u64)>,
    pub(crate) data: Option<Fragment>,
}

impl GroupRecords {
    pub(crate) fn encode(&self, size: usize) -> Zeroizing<Vec<u8>> {
        let mut b = Zeroizing::new(Vec::with_capacity(size));
        if let Some(f) = &self.data {
            b.push(DATA);
            f.write_fields(&mut b);
        }
        for (m, upto) in &self.acks {
            b.push(GACK);
            b.push(*m);
            b.extend_from_slice(&upto.to_be_bytes());
        }
        debug_assert!(b.len() <= size);
        b.resize(size, END);
        b
    }

    /// Strict, like pairwise records: unknown kinds, a second DATA, more
    /// GACKs than members, or non-zero padding refuse the whole payload.
    pub(crate) fn decode(b: &[u8]) -> Option<Self> {
        let mut r = Reader::new(b);
        let mut out = Self::default();
        loop {
            let Ok(kind) = r.u8() else { return Some(out) };
            match kind {
                END => {
                    r.expect_zero_padding().ok()?;
                    return Some(out);
                }
                GACK if out.acks.len() < super::control::MAX_GROUP_MEMBERS => {
                    let m = r.u8().ok()?;
                    let upto = r.u64().ok()?;
                    out.acks.push((m, upto));
                }
                DATA if out.data.is_none() => {
                    out.data = Some(Fragment::read_fields(&mut r, false)?);
                }
                _ => return None,
            }
        }
    }
}

/// Another member, as we hold them.
pub(crate) struct Peer {
    /// Their chain of our current epoch, once their bundle arrived.
    /// Boxed (as `mine`), so that map operations move only a pointer.
    pub(crate) chain: Option<Box<ReceiverChain>>,
    /// Reassembly and in-order delivery of their messages (across epochs).
    pub(crate) inbox: Inbox,
    /// Up to which of our messages they acknowledged.
    pub(crate) acked: u64,
    /// The epoch in which we first shared the group with them (they
    /// joined, or we did): their messages from before it are not ours to
    /// read.
    pub(crate) since_epoch: u32,
}

impl Peer {
    fn new(epoch: u32) -> Self {
        Self {
            chain: None,
            inbox: Inbox::new_rebasing(),
            acked: 0,
            since_epoch: epoch,
        }
    }
}

/// What happened in a group (inside the protocol crate).
pub(crate) enum GroupOut {
    Received {
        sender: Fingerprint,
        msg_id: u64,
        body: Zeroizing<Vec<u8>>,
    },
    Sent(u64),
    Retransmitting(u64),
    /// `to` of `of` members now hold the message.
    Delivered {
        msg_id: u64,
        to: usize,
        of: usize,
    },
}

/// One group we are a member of.
pub(crate) struct Group {
    pub(crate) roster: Roster,
    /// Our chain of the current epoch.
    /// Boxed, so that moving the group (maps, imports) leaves no copy of
    /// the signing and chain keys behind.
    pub(crate) mine: Option<Box<SenderKey>>,
    /// Every other member.
    pub(crate) peers: BTreeMap<Fingerprint, Peer>,
    pub(crate) outbox: Outbox,
    pub(crate) next_msg_id: u64,
    /// A GACK is owed (something was delivered, or a duplicate came in).
    pub(crate) ack_due: bool,
    /// Bundles that arrived before the roster of their epoch.
    pub(crate) pending: BTreeMap<Fingerprint, Box<SenderKeyBundle>>,
    /// Contacts the owner invited and who have not answered (owner only).
    pub(crate) invited: Vec<Fingerprint>,
    /// Per message, how many members held it when last reported (RAM).
    reported: BTreeMap<u64, usize>,
    /// A roster from the owner's successor that came before the owner's
    /// LEAVE (RAM; applied when the LEAVE comes).
    pub(crate) held: Option<(Fingerprint, Roster)>,
    /// Our next message id when we entered the epoch (what our bundles
    /// of this epoch name as `first_msg`).
    pub(crate) epoch_first_msg: u64,
    /// When we last asked for missing bundles, or entered the epoch (ms;
    /// RAM, `None` after a restart: asked at the first poll).
    pub(crate) asked_at: Option<u64>,
    /// When we last answered each member's request (ms; RAM): one answer
    /// per member per retransmit period.
    pub(crate) answered: BTreeMap<Fingerprint, u64>,
}

impl Group {
    pub(crate) fn new(roster: Roster) -> Self {
        Self {
            roster,
            mine: None,
            peers: BTreeMap::new(),
            outbox: Outbox::default(),
            next_msg_id: 1,
            ack_due: false,
            pending: BTreeMap::new(),
            invited: Vec::new(),
            reported: BTreeMap::new(),
            held: None,
            epoch_first_msg: 1,
            asked_at: None,
            answered: BTreeMap::new(),
        }
    }

    /// Moves to `roster`'s epoch: members who left are forgotten, new ones
    /// start fresh, every chain of the old epoch is dropped (held bundles
    /// of the new epoch are installed), and our unacknowledged messages go
    /// out again under our new chain `mine`.
    pub(crate) fn enter_epoch(&mut self, me: &Fingerprint, roster: Roster, mine: Box<SenderKey>) {
        self.peers.retain(|fp, _| roster.has(fp));
        for fp in &roster.members {
            if fp != me {
                self.peers
                    .entry(*fp)
                    .or_insert_with(|| Peer::new(roster.epoch))
                    .chain = None;
            }
        }
        let epoch = roster.epoch;
        self.invited.retain(|fp| !roster.has(fp));
        self.roster = roster;
        self.epoch_first_msg = self.next_msg_id;
        self.answered.clear();
        self.asked_at = None;
        let pending = std::mem::take(&mut self.pending);
        for (fp, b) in pending {
            if b.epoch == epoch {
                self.install(fp, &b);
            } else if b.epoch > epoch {
                self.pending.insert(fp, b);
            }
        }
        self.mine = Some(mine);
        self.outbox.restart_all();
        self.reported.clear();
    }

    /// A member's bundle: installed if it is of our epoch and we have none
    /// from them yet (a second one would reset the replay state), held if
    /// it is of a later epoch (within bounds), ignored otherwise.
    pub(crate) fn add_bundle(&mut self, from: Fingerprint, b: Box<SenderKeyBundle>) {
        if b.group != self.roster.group {
            return;
        }
        if b.epoch == self.roster.epoch {
            if self.peers.get(&from).is_some_and(|p| p.chain.is_none()) {
                self.install(from, &b);
            }
        } else if b.epoch > self.roster.epoch
            && b.epoch - self.roster.epoch <= MAX_EPOCH_AHEAD
            && (self.pending.contains_key(&from) || self.pending.len() < MAX_PENDING_BUNDLES)
        {
            self.pending.insert(from, b);
        }
    }

    /// A member's chain of our epoch. A member we share the group with
    /// since this epoch is read from the message id its bundle names: what
    /// it sent before we shared the group stays unread (its unacknowledged
    /// messages go out again in the new epoch, to everyone).
    fn install(&mut self, from: Fingerprint, b: &SenderKeyBundle) {
        if let Some(p) = self.peers.get_mut(&from) {
            p.chain = Some(Box::new(ReceiverChain::new(b, &from)));
            if p.since_epoch == b.epoch && p.inbox.is_fresh() {
                p.inbox = Inbox::new(b.first_msg - 1);
            }
        }
    }

    /// Whether we have a cell to send.
    pub(crate) fn has_output(&self) -> bool {
        self.mine.is_some() && (self.ack_due || self.outbox.has_pending_fragment())
    }

    /// Our acknowledgements: every member whose messages reached us.
    fn acks(&self) -> Vec<(u8, u64)> {
        self.peers
            .iter()
            .filter(|(_, p)| p.inbox.delivered_upto() > 0)
            .filter_map(|(fp, p)| {
                let at = self.roster.position(fp)?;
                Some((u8::try_from(at).ok()?, p.inbox.delivered_upto()))
            })
            .collect()
    }

    /// Our next cell for `round`, if we have something to say.
    pub(crate) fn produce(
        &mut self,
        round: u64,
        now_ms: u64,
        cell_size: usize,
    ) -> Option<(Vec<u8>, Vec<GroupOut>)> {
        if !self.has_output() {
            return None;
        }
        let plen = group_payload_len(cell_size);
        let mut records = GroupRecords::default();
        let mut events = Vec::new();
        if let Some((f, ev)) = self.outbox.next_fragment(now_ms, self.next_msg_id) {
            if let Some(OutEvent::Sent(id)) = ev {
                events.push(GroupOut::Sent(id));
            }
            records.data = Some(f);
        }
        let used = records
            .data
            .as_ref()
            .map_or(0, |f| DATA_OVERHEAD + f.data.len());
        let acks = self.acks();
        let room = plen.saturating_sub(used) / GACK_LEN;
        if acks.len() <= room {
            self.ack_due = false;
        }
        // Rotate so that every member's acknowledgement gets its turn.
        let skip = if acks.len() > room {
            (round as usize) % acks.len()
        } else {
            0
        };
        records.acks = acks
            .iter()
            .cycle()
            .skip(skip)
            .take(room.min(acks.len()))
            .copied()
            .collect();
        let payload = records.encode(plen);
        let cell = self.mine.as_mut()?.seal(round, &payload, cell_size).ok()?;
        Some((cell, events))
    }

    /// A cell from member `from` opened to `payload`. `audience` is every
    /// member we can reach (contacts), whom a message must reach.
    pub(crate) fn receive(
        &mut self,
        me: &Fingerprint,
        from: Fingerprint,
        payload: &[u8],
        audience: &[Fingerprint],
    ) -> Vec<GroupOut> {
        let mut events = Vec::new();
        let Some(records) = GroupRecords::decode(payload) else {
            return events;
        };
        let my_pos = self.roster.position(me);
        let mut acked_moved = false;
        for (m, upto) in records.acks {
            if my_pos == Some(usize::from(m))
                && upto < self.next_msg_id
                && let Some(p) = self.peers.get_mut(&from)
                && upto > p.acked
            {
                p.acked = upto;
                acked_moved = true;
            }
        }
        if acked_moved {
            events.extend(self.settle(audience));
        }
        if let Some(f) = records.data
            && let Some(p) = self.peers.get_mut(&from)
        {
            // A duplicate: acknowledge again (the sender missed our GACK).
            if p.inbox.add(&f) == Received::Duplicate {
                self.ack_due = true;
            }
            for (id, control, body) in p.inbox.deliverable_kinds() {
                if control {
                    continue;
                }
                self.ack_due = true;
                events.push(GroupOut::Received {
                    sender: from,
                    msg_id: id,
                    body,
                });
            }
        }
        events
    }

    /// Reports progress of our messages, and drops those every member of
    /// `audience` holds.
    pub(crate) fn settle(&mut self, audience: &[Fingerprint]) -> Vec<GroupOut> {
        let of = audience.len();
        let mut events = Vec::new();
        let ids: Vec<u64> = self.outbox.ids().collect();
        for id in ids {
            let to = audience
                .iter()
                .filter(|fp| self.peers.get(fp).is_some_and(|p| p.acked >= id))
                .count();
            let before = self.reported.get(&id).copied().unwrap_or(0);
            if to > before {
                self.reported.insert(id, to);
                events.push(GroupOut::Delivered { msg_id: id, to, of });
            }
            if to == of && of > 0 {
                self.outbox.ack(id);
                self.reported.remove(&id);
            }
        }
        events
    }

    /// Queues a message of ours.
    pub(crate) fn enqueue(&mut self, body: &[u8], cell_size: usize) -> u64 {
        let id = self.next_msg_id;
        self.next_msg_id += 1;
        self.outbox
            .push(id, body, group_fragment_len(cell_size), false);
        id
    }

    /// Members of our epoch whose bundle we still lack, if it is time to
    /// ask them again (every `after_ms`, the first time `after_ms` after
    /// entering the epoch: bundles in flight usually arrive before).
    pub(crate) fn missing_bundles(&mut self, now_ms: u64, after_ms: u64) -> Vec<Fingerprint> {
        if self.mine.is_none() {
            return Vec::new();
        }
        let Some(at) = self.asked_at else {
            self.asked_at = Some(now_ms);
            return Vec::new();
        };
        if now_ms.saturating_sub(at) < after_ms {
            return Vec::new();
        }
        let missing: Vec<Fingerprint> = self
            .peers
            .iter()
            .filter(|(_, p)| p.chain.is_none())
            .map(|(fp, _)| *fp)
            .collect();
        if !missing.is_empty() {
            self.asked_at = Some(now_ms);
        }
        missing
    }

    /// Whether to answer `from`'s request for our bundle now (at most once
    /// per `after_ms` per member).
    pub(crate) fn may_answer(&mut self, from: Fingerprint, now_ms: u64, after_ms: u64) -> bool {
        if self.mine.is_none() || !self.roster.has(&from) {
            return false;
        }
        if self
            .answered
            .get(&from)
            .is_some_and(|&at| now_ms.saturating_sub(at) < after_ms)
        {
            return false;
        }
        self.answered.insert(from, now_ms);
        true
    }

    /// Retransmissions due.
    pub(crate) fn poll(&mut self, now_ms: u64, after_ms: u64) -> Vec<GroupOut> {
        self.outbox
            .retransmit_due(now_ms, after_ms)
            .into_iter()
            .filter_map(|e| match e {
                OutEvent::Retransmitting(id) => Some(GroupOut::Retransmitting(id)),
                OutEvent::Sent(_) => None,
            })
            .collect()
    }

    /// Persistent form (secret): roster, our chain, each member's chain,
    /// delivery point and acknowledgement of ours, our counter and outbox,
    /// held bundles, open invitations.
    pub(crate) fn encode(&self, w: &mut Writer) {
        self.roster.write(w);
        w.bool(self.mine.is_some());
        if let Some(m) = &self.mine {
            m.encode(w);
        }
        w.u8(self.peers.len() as u8);
        for (fp, p) in &self.peers {
            w.bytes(&fp.0);
            p.inbox.encode(w);
            w.u64(p.acked);
            w.u32(p.since_epoch);
            w.bool(p.chain.is_some());
            if let Some(c) = &p.chain {
                c.encode(w);
            }
        }
        w.u64(self.next_msg_id);
        w.u64(self.epoch_first_msg);
        self.outbox.encode(w);
        w.u8(self.pending.len() as u8);
        for (fp, b) in &self.pending {
            w.bytes(&fp.0);
            w.bytes(&b.encode());
        }
        w.u8(self.invited.len() as u8);
        for fp in &self.invited {
            w.bytes(&fp.0);
        }
    }

    pub(crate) fn decode(r: &mut Reader<'_>, cell_size: usize) -> Result<Self, WireError> {
        let bad = WireError::BadField;
        let roster = Roster::read(r).ok_or(bad("group roster"))?;
        let mut g = Self::new(roster);
        if read_bool(r)? {
            g.mine = Some(Box::new(SenderKey::decode(r)?));
        }
        let n = usize::from(r.u8()?);
        if n > super::control::MAX_GROUP_MEMBERS {
            return Err(bad("group members"));
        }
        for _ in 0..n {
            let fp = Fingerprint(r.array::<32>()?);
            let inbox = Inbox::decode(r)?;
            let acked = r.u64()?;
            let since_epoch = r.u32()?;
            let chain = if read_bool(r)? {
                Some(Box::new(ReceiverChain::decode(r)?))
            } else {
                None
            };
            if !g.roster.has(&fp) {
                return Err(bad("group member"));
            }
            g.peers.insert(
                fp,
                Peer {
                    chain,
                    inbox,
                    acked,
                    since_epoch,
                },
            );
        }
        g.next_msg_id = r.u64()?;
        if g.next_msg_id == 0 || g.next_msg_id > MAX_MSG_ID {
            return Err(bad("group message counter"));
        }
        g.epoch_first_msg = r.u64()?;
        if g.epoch_first_msg == 0 || g.epoch_first_msg > g.next_msg_id {
            return Err(bad("group epoch's first message"));
        }
        g.outbox = Outbox::decode(r, g.next_msg_id, group_fragment_len(cell_size), 4)?;
        let n = usize::from(r.u8()?);
        if n > MAX_PENDING_BUNDLES {
            return Err(bad("group bundles"));
        }
        for _ in 0..n {
            let fp = Fingerprint(r.array::<32>()?);
            let b = SenderKeyBundle::decode(r.take(super::BUNDLE_LEN)?)
                .map_err(|_| bad("group bundle"))?;
            g.pending.insert(fp, Box::new(b));
        }
        let n = usize::from(r.u8()?);
        if n > super::control::MAX_GROUP_MEMBERS {
            return Err(bad("group invitations"));
        }
        for _ in 0..n {
            g.invited.push(Fingerprint(r.array::<32>()?));
        }
        Ok(g)
    }
}
