//! The daemon's view of the end-to-end layer: all contacts, one tag index
//! for all of them (a batch of N cells costs N look-ups), one cell out per
//! round (real or cover), and the persistent state.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use rand::CryptoRng;
use subtle::ConstantTimeEq as _;
use zeroize::Zeroizing;

mod groups;

pub use groups::{
    GroupEvent, GroupInfo, GroupOpError, InviteInfo, MAX_GROUPS, MAX_INVITES,
    MAX_INVITES_PER_CONTACT, MemberInfo,
};

use super::contact::{Contact, Slot};
use super::group::GroupId;
use super::group::state::Group;
use super::identity::{PrivateIdentity, PublicIdentity};
use super::kdf::{CELL_TAG_LEN, CellTag};
use super::messages::Delivery;
use super::rounds::{RoundClock, RoundError};
use super::session::SESSION_OVERHEAD;
use super::writer::Writer;
use super::{SendError, StateError};
use crate::wire::reader::Reader;

/// Smallest cell the end-to-end layer can work with.
pub const MIN_E2E_CELL: usize = 256;
/// Largest cell the end-to-end layer accepts.
pub const MAX_E2E_CELL: usize = crate::wire::MAX_CELL_SIZE;
/// Most contacts one router holds.
pub const MAX_CONTACTS: usize = 1024;

const STATE_MAGIC: &[u8; 4] = b"ACRS";

/// Whose cell a tag announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    /// A contact's, and which kind.
    Contact(ContactId, Slot),
    /// A group member's sender chain.
    Group(GroupId, super::identity::Fingerprint),
}

/// The tags expected in one round: per tag, whose cell it announces and
/// how many open attempts that target has left this round. Usually one
/// target per tag; a tag two targets share (a member who passed another's
/// keys off as its own) keeps both, each tried.
type TagIndex = HashMap<CellTag, Vec<(Target, u8)>>;

/// How far a saved last send round may lie ahead of the clock and still be
/// honoured (cover until the clock passes it): a clock set back by up to a
/// day mutes sending until it catches up. Further ahead, it is a lie
/// persisted by an older version, and forgotten.
pub(crate) const MAX_CLOCK_SET_BACK_MS: u64 = 24 * 60 * 60 * 1000;

/// Open attempts per round for a contact's tag: one (a mutated copy
/// placed first costs what dropping the cell would).
const CONTACT_ATTEMPTS: u8 = 1;
/// Open attempts per round for a group member's tag: two, so that another
/// member's junk cell under that tag (one per round: the relay takes one
/// cell per client) cannot make us skip the real one.
const GROUP_ATTEMPTS: u8 = 2;
/// Version of the exported state. 4 added groups and control messages;
/// 3 is protocol v2 (handshake sessions, incarnations, the last round
/// received); 2 added the outbox; 1 and 2 still import, without their v1
/// sessions.
const STATE_VERSION: u8 = 4;

/// A contact, as the daemon numbers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContactId(pub u64);

/// Settings fixed for a router's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// The relay's cell size.
    pub cell_size: usize,
    /// A message sent but not acknowledged within this time is sent again.
    pub retransmit_after_ms: u64,
}

/// What happened with one contact. `Debug` never prints a body.
pub enum EventKind {
    /// A complete message, in order, exactly once.
    Received {
        /// The sender's id for it.
        msg_id: u64,
        /// The text.
        body: Zeroizing<Vec<u8>>,
    },
    /// Every fragment of the message went out once.
    Sent {
        /// The id [`Router::send`] returned.
        msg_id: u64,
    },
    /// The peer acknowledged the message.
    Delivered {
        /// The id [`Router::send`] returned.
        msg_id: u64,
    },
    /// Not acknowledged in time: going out again.
    Retransmitting {
        /// The id [`Router::send`] returned.
        msg_id: u64,
    },
    /// A session with the contact is established (or replaced).
    SessionStarted,
}

impl fmt::Debug for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Received { msg_id, body } => {
                write!(f, "Received {{ msg_id: {msg_id}, len: {} }}", body.len())
            }
            Self::Sent { msg_id } => write!(f, "Sent {{ msg_id: {msg_id} }}"),
            Self::Delivered { msg_id } => write!(f, "Delivered {{ msg_id: {msg_id} }}"),
            Self::Retransmitting { msg_id } => write!(f, "Retransmitting {{ msg_id: {msg_id} }}"),
            Self::SessionStarted => f.write_str("SessionStarted"),
        }
    }
}

/// What the end-to-end layer tells its caller: which contact, and what
/// happened. Made once, where the contact's events leave the router; the
/// daemon turns it into an API event in one place.
#[derive(Debug)]
pub struct Event {
    /// The contact it concerns.
    pub contact: ContactId,
    /// What happened.
    pub kind: EventKind,
}

fn attach(contact: ContactId, evs: Vec<EventKind>) -> impl Iterator<Item = Event> {
    evs.into_iter().map(move |kind| Event { contact, kind })
}

/// Why a contact could not be added.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContactError {
    /// The identity is the router's own.
    #[error("that identity is your own")]
    Myself,
    /// The id is taken.
    #[error("a contact with this id already exists")]
    DuplicateId,
    /// The identity is already a contact under another id.
    #[error("this identity is already a contact")]
    DuplicateIdentity,
    /// The router holds [`MAX_CONTACTS`] already.
    #[error("too many contacts (at most {MAX_CONTACTS})")]
    TooMany,
    /// The contact's X25519 key gives no usable shared secret with ours.
    #[error("the contact's X25519 key is unusable")]
    BadKey,
}

/// Why a router could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the relay's cell size {0} is outside {MIN_E2E_CELL}..={MAX_E2E_CELL}; use another relay")]
pub struct CellSizeError(pub usize);

/// The end-to-end layer for one identity: its contacts and their sessions,
/// one cell in and out per round, and the state to persist. Sans-io: the
/// caller passes randomness, rounds and the time.
pub struct Router {
    me: PrivateIdentity,
    config: Config,
    /// Boxed, so that the map's node splits and removals move pointers,
    /// not a contact's keys (a move leaves an unwiped copy behind).
    contacts: BTreeMap<ContactId, Box<Contact>>,
    cursor: u64,
    /// The relay's round length, checked against the documented range.
    clock: Option<RoundClock>,
    /// The last round a cell was produced for: never two cells for a round.
    last_send_round: Option<u64>,
    /// The last round whose batch was read: every batch is read once.
    last_received_round: Option<u64>,
    /// Counts changes to the persistent state (see [`Router::changes`]).
    changes: u64,
    /// Groups we are a member of.
    groups: BTreeMap<GroupId, Group>,
    /// Invitations not answered yet.
    invites: BTreeMap<GroupId, groups::Invite>,
    /// Invitations accepted, waiting for the owner's roster.
    joining: BTreeMap<GroupId, groups::Invite>,
    /// Group events for the caller ([`Router::take_group_events`]).
    group_events: Vec<GroupEvent>,
    /// Alternates the round's real cell between pairwise and group cells
    /// when both wait.
    group_turn: bool,
    /// The group whose cell went out last (round robin among groups).
    group_cursor: Option<GroupId>,
    /// Real cells produced since this router was made (RAM only).
    real_cells: u64,
    /// The time of the batch or round being handled (ms; for control
    /// messages' rate limits).
    now_ms: u64,
    /// Of them, group cells.
    group_cells: u64,
    /// Open attempts so far (tests of the work bound).
    #[cfg(test)]
    pub(crate) opens: u64,
}

impl fmt::Debug for Router {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Router {{ contacts: {} }}", self.contacts.len())
    }
}

impl Router {
    /// A router with no contacts; refuses a cell size outside
    /// [`MIN_E2E_CELL`]`..=`[`MAX_E2E_CELL`].
    pub fn new(me: PrivateIdentity, config: Config) -> Result<Self, CellSizeError> {
        if !(MIN_E2E_CELL..=MAX_E2E_CELL).contains(&config.cell_size) {
            return Err(CellSizeError(config.cell_size));
        }
        Ok(Self {
            me,
            config,
            contacts: BTreeMap::new(),
            cursor: 0,
            clock: None,
            last_send_round: None,
            last_received_round: None,
            changes: 0,
            groups: BTreeMap::new(),
            invites: BTreeMap::new(),
            joining: BTreeMap::new(),
            group_events: Vec::new(),
            group_turn: false,
            group_cursor: None,
            real_cells: 0,
            now_ms: 0,
            group_cells: 0,
            #[cfg(test)]
            opens: 0,
        })
    }

    /// Our own public identity.
    pub fn identity(&self) -> &PublicIdentity {
        self.me.public()
    }

    /// The settings it was built with.
    pub fn config(&self) -> Config {
        self.config
    }

    /// Sets the round length the relay announced; refused outside
    /// [`MIN_ROUND_MS`](super::MIN_ROUND_MS)`..=`[`MAX_ROUND_MS`](super::MAX_ROUND_MS),
    /// whatever the relay says.
    pub fn set_round_ms(&mut self, round_ms: u64) -> Result<(), RoundError> {
        self.clock = Some(RoundClock::new(round_ms)?);
        Ok(())
    }

    /// Checks `round` against the wall clock and the round length (see
    /// [`RoundClock::check`]).
    fn check_round(&self, round: u64, now_ms: u64) -> Result<RoundClock, RoundError> {
        let clock = self.clock.ok_or(RoundError::NoRoundLength)?;
        clock.check(round, now_ms)?;
        Ok(clock)
    }

    /// Adds a contact under `id`.
    pub fn add_contact<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        id: ContactId,
        peer: PublicIdentity,
    ) -> Result<(), ContactError> {
        if peer.fingerprint() == self.me.public().fingerprint() {
            return Err(ContactError::Myself);
        }
        if self.contacts.contains_key(&id) {
            return Err(ContactError::DuplicateId);
        }
        if self
            .contacts
            .values()
            .any(|c| c.peer.fingerprint() == peer.fingerprint())
        {
            return Err(ContactError::DuplicateIdentity);
        }
        if self.contacts.len() >= MAX_CONTACTS {
            return Err(ContactError::TooMany);
        }
        let contact =
            Contact::new(rng, &self.me, peer, self.config.cell_size).ok_or(ContactError::BadKey)?;
        self.contacts.insert(id, Box::new(contact));
        self.changes += 1;
        Ok(())
    }

    /// Forgets a contact, its session and its queued messages; whether it
    /// existed.
    pub fn remove_contact(&mut self, id: ContactId) -> bool {
        let removed = self.contacts.remove(&id).is_some();
        self.invites.retain(|_, i| i.from != id);
        self.joining.retain(|_, i| i.from != id);
        self.changes += 1;
        removed
    }

    /// Every contact's id, in increasing order.
    pub fn contact_ids(&self) -> impl Iterator<Item = ContactId> + '_ {
        self.contacts.keys().copied()
    }

    /// Whether a session with the contact exists (confirmed or not).
    pub fn has_session(&self, id: ContactId) -> bool {
        self.contacts.get(&id).is_some_and(|c| c.has_session())
    }

    /// Real cells (not cover) produced since this router was made or
    /// imported.
    pub fn real_cells_sent(&self) -> u64 {
        self.real_cells
    }

    /// Group cells (fragments and acknowledgements) among
    /// [`Router::real_cells_sent`].
    pub fn group_cells_sent(&self) -> u64 {
        self.group_cells
    }

    /// Queues a message; it goes out one cell per round.
    pub fn send(&mut self, id: ContactId, body: &[u8]) -> Result<u64, SendError> {
        let msg_id = self
            .contacts
            .get_mut(&id)
            .ok_or(SendError::UnknownContact)?
            .enqueue(body, false)?;
        self.changes += 1;
        Ok(msg_id)
    }

    /// A counter that grows whenever the persistent state changed (a cell
    /// accepted, a real cell produced, a message id used, a contact added
    /// or removed). The daemon saves the state when it moved, and always
    /// before it sends a real cell, so no message key is ever reused after
    /// a crash.
    pub fn changes(&self) -> u64 {
        self.changes
    }

    /// Outgoing messages not yet acknowledged, over all contacts.
    pub fn undelivered(&self) -> usize {
        self.contacts.values().map(|c| c.undelivered()).sum()
    }

    /// Where message `msg_id` to contact `id` stands; `None` for an unknown
    /// contact or an id not yet used. An id no longer in the outbox (which
    /// is persisted) was acknowledged, or abandoned by a format-1 state.
    pub fn delivery(&self, id: ContactId, msg_id: u64) -> Option<Delivery> {
        self.contacts.get(&id)?.delivery(msg_id)
    }

    /// Reads the batch of `round`, received at `now_ms`.
    ///
    /// The work is bounded by the number of contacts, not by what the relay
    /// sends: the expected tags of the round are computed once (a few
    /// HMACs per contact); a cell whose tag is not expected costs one hash
    /// look-up; a tag is tried at most once per round (a duplicated or
    /// mutated copy of a cell already tried costs a look-up and nothing
    /// else); once a contact's cell opens, nothing else of that contact is
    /// tried in the round (a peer sends one cell per round).
    ///
    /// A round that disagrees with the wall clock, or that is not after the
    /// last one read, is refused whole: the relay lies, and nothing of it
    /// is kept.
    pub fn receive_batch<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        round: u64,
        now_ms: u64,
        cells: &[&[u8]],
    ) -> Result<Vec<Event>, RoundError> {
        let clock = self.check_round(round, now_ms)?;
        self.now_ms = now_ms;
        let latest = clock.index(clock.latest(now_ms));
        // Everything below is indexed by the round's start time, so that a
        // change of the announced round length cannot make an index (a
        // tag, a header key) come back.
        let round_ms = clock.round_ms();
        let round = clock.index(round);
        if self.last_received_round.is_some_and(|r| r > latest) {
            // A lie persisted by an older version: forget it.
            self.last_received_round = None;
        }
        if let Some(last) = self.last_received_round
            && round <= last
        {
            return Err(RoundError::Repeated {
                round: round / round_ms,
                last: last / round_ms,
            });
        }
        // Not a change worth a save of its own: it is saved with the next.
        self.last_received_round = Some(round);
        let mut index: TagIndex = HashMap::with_capacity(self.contacts.len() * 5);
        for (&id, c) in &mut self.contacts {
            c.forget_future(latest);
            for (tag, slot) in c.expected(round) {
                index
                    .entry(tag)
                    .or_default()
                    .push((Target::Contact(id, slot), CONTACT_ATTEMPTS));
            }
        }
        for (&gid, g) in &self.groups {
            for (fp, p) in &g.peers {
                if let Some(chain) = &p.chain {
                    index
                        .entry(chain.expected_tag(round))
                        .or_default()
                        .push((Target::Group(gid, *fp), GROUP_ATTEMPTS));
                }
            }
        }
        let mut events = Vec::new();
        for cell in cells {
            if cell.len() != self.config.cell_size {
                continue;
            }
            let Ok(tag) = CellTag::try_from(&cell[..CELL_TAG_LEN]) else {
                continue;
            };
            // Each target of the tag is tried within its attempts left;
            // an attempt is spent before the open.
            let Some(list) = index.get_mut(&tag) else {
                continue;
            };
            let targets: Vec<Target> = list.iter().map(|(t, _)| *t).collect();
            for (_, left) in list.iter_mut() {
                *left -= 1;
            }
            list.retain(|(_, left)| *left > 0);
            for target in targets {
                match target {
                    Target::Group(gid, fp) => {
                        #[cfg(test)]
                        {
                            self.opens += 1;
                        }
                        if self.receive_group_cell(gid, fp, round, cell) {
                            for list in index.values_mut() {
                                list.retain(|(t, _)| *t != target);
                            }
                            break;
                        }
                    }
                    Target::Contact(id, slot) => {
                        let Some(contact) = self.contacts.get_mut(&id) else {
                            continue;
                        };
                        // Confirm in constant time against the contact's
                        // own record.
                        if !contact
                            .tag_at(slot, round)
                            .is_some_and(|t| bool::from(t.ct_eq(&tag)))
                        {
                            continue;
                        }
                        #[cfg(test)]
                        {
                            self.opens += 1;
                        }
                        if let Some(evs) = contact.receive(&self.me, rng, slot, round, now_ms, cell)
                        {
                            self.changes += 1;
                            for list in index.values_mut() {
                                list.retain(
                                    |(t, _)| !matches!(t, Target::Contact(other, _) if *other == id),
                                );
                            }
                            events.extend(attach(id, evs));
                            break;
                        }
                    }
                }
            }
        }
        self.take_controls(rng);
        Ok(events)
    }

    /// A cell under a group member's chain: opened (one attempt), and
    /// applied if the header, body and signature check; whether it opened.
    fn receive_group_cell(
        &mut self,
        gid: GroupId,
        fp: super::identity::Fingerprint,
        round: u64,
        cell: &[u8],
    ) -> bool {
        let me = self.me.public().fingerprint();
        let cell_size = self.config.cell_size;
        let Some(chain) = self
            .groups
            .get_mut(&gid)
            .and_then(|g| g.peers.get_mut(&fp))
            .and_then(|p| p.chain.as_mut())
        else {
            return false;
        };
        let Ok(opened) = chain.open(round, cell, cell_size) else {
            return false;
        };
        self.changes += 1;
        // Only for a cell that opened: who we acknowledge to (members who
        // are our contacts) is worked out once per real cell, never for a
        // relay's junk under a member's tag.
        let Some(roster) = self.groups.get(&gid).map(|g| g.roster.clone()) else {
            return false;
        };
        let audience = self.audience(&roster);
        let Some(g) = self.groups.get_mut(&gid) else {
            return false;
        };
        let outs = g.receive(&me, fp, &opened.payload, &audience);
        self.push_group_outs(gid, outs);
        true
    }

    /// The next group cell, round robin among groups.
    fn produce_group(&mut self, round: u64, now_ms: u64) -> Option<Vec<u8>> {
        let ids: Vec<GroupId> = self.groups.keys().copied().collect();
        let start = self
            .group_cursor
            .map_or(0, |c| ids.partition_point(|id| *id <= c));
        let order: Vec<GroupId> = ids[start..].iter().chain(&ids[..start]).copied().collect();
        for gid in order {
            let Some(g) = self.groups.get_mut(&gid) else {
                continue;
            };
            if let Some((cell, outs)) = g.produce(round, now_ms, self.config.cell_size) {
                self.group_cursor = Some(gid);
                self.changes += 1;
                self.group_cells += 1;
                self.push_group_outs(gid, outs);
                return Some(cell);
            }
        }
        None
    }

    /// The cell to send in `round`: the next real cell of some contact
    /// (round robin), or a cover cell of random bytes. Always exactly
    /// `cell_size` bytes. Call it once per round with increasing rounds; a
    /// second call for a round already used gets a cover cell and changes
    /// nothing, so no tag is ever used twice. A round that disagrees with
    /// the wall clock is refused.
    pub fn next_cell<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        round: u64,
        now_ms: u64,
    ) -> Result<(Vec<u8>, Vec<Event>), RoundError> {
        let clock = self.check_round(round, now_ms)?;
        let latest = clock.index(clock.latest(now_ms));
        let round = clock.index(round);
        let mut events = Vec::new();
        let mut cover = vec![0u8; self.config.cell_size];
        rng.fill_bytes(&mut cover);
        // A last round ahead of the clock (the clock was set back) is
        // honoured: cover until the clock passes it, so that no round's tag
        // and header key is used twice. Only one beyond any set-back (a lie
        // persisted by an older version) is forgotten.
        if self.last_send_round.is_some_and(|last| {
            round <= last && last <= latest.saturating_add(MAX_CLOCK_SET_BACK_MS)
        }) {
            return Ok((cover, events));
        }
        self.last_send_round = Some(round);
        let ids: Vec<ContactId> = self.contacts.keys().copied().collect();
        for &id in &ids {
            let Some(c) = self.contacts.get_mut(&id) else {
                continue;
            };
            let (evs, _) = c.poll(&self.me, rng, now_ms, self.config.retransmit_after_ms);
            events.extend(attach(id, evs));
        }
        let gids: Vec<GroupId> = self.groups.keys().copied().collect();
        for gid in gids {
            if let Some(g) = self.groups.get_mut(&gid) {
                let outs = g.poll(now_ms, self.config.retransmit_after_ms);
                self.push_group_outs(gid, outs);
            }
        }
        self.ask_missing_bundles(now_ms);
        let group_first = self.group_turn;
        self.group_turn = !self.group_turn;
        if group_first && let Some(cell) = self.produce_group(round, now_ms) {
            self.real_cells += 1;
            return Ok((cell, events));
        }
        let start = ids.partition_point(|id| id.0 <= self.cursor);
        let order = ids[start..].iter().chain(&ids[..start]);
        for &id in order {
            let Some(c) = self.contacts.get_mut(&id) else {
                continue;
            };
            if !c.has_output() {
                continue;
            }
            if let Some((cell, evs)) = c.produce(round, now_ms) {
                self.cursor = id.0;
                self.changes += 1;
                events.extend(attach(id, evs));
                debug_assert_eq!(cell.len(), self.config.cell_size);
                self.real_cells += 1;
                return Ok((cell, events));
            }
        }
        if !group_first && let Some(cell) = self.produce_group(round, now_ms) {
            self.real_cells += 1;
            return Ok((cell, events));
        }
        Ok((cover, events))
    }

    /// Moves a contact's message numbering on by `n` (tests of large ids).
    #[cfg(test)]
    pub(crate) fn skip_message_ids(&mut self, id: ContactId, n: u64) {
        if let Some(c) = self.contacts.get_mut(&id) {
            c.skip_message_ids(n);
        }
    }

    /// Whether a handshake with contact `id` is under way.
    #[cfg(test)]
    pub(crate) fn is_starting(&self, id: ContactId) -> bool {
        self.contacts.get(&id).is_some_and(|c| c.is_starting())
    }

    /// When a cell of contact `id` last opened (ms).
    #[cfg(test)]
    pub(crate) fn last_heard_ms(&self, id: ContactId) -> Option<u64> {
        self.contacts.get(&id).and_then(|c| c.last_heard_ms())
    }

    /// Drops the record of the INITs read from contact `id`, as if newer
    /// ones had pushed them out.
    #[cfg(test)]
    pub(crate) fn forget_peer_inits(&mut self, id: ContactId) {
        if let Some(c) = self.contacts.get_mut(&id) {
            c.forget_peer_inits();
        }
    }

    /// Wipes every replay record, so that a test can show that only the
    /// keys stand between an old cell and its plaintext.
    #[cfg(test)]
    pub(crate) fn forget_replay_records(&mut self) {
        self.last_received_round = None;
        for c in self.contacts.values_mut() {
            c.forget_future(0);
        }
    }

    /// Everything to persist (encrypted by the caller): sessions, counters,
    /// contacts' public identities, and the messages not yet acknowledged
    /// (their text: the caller must seal this state). Received history is
    /// not part of it.
    pub fn export_state(&self) -> Zeroizing<Vec<u8>> {
        let mut w = Writer::new();
        w.bytes(STATE_MAGIC);
        w.u8(STATE_VERSION);
        w.bytes(&self.me.public().fingerprint().0);
        w.u32(self.config.cell_size as u32);
        w.u64(self.last_send_round.unwrap_or(0));
        w.u64(self.last_received_round.unwrap_or(0));
        w.u32(self.contacts.len() as u32);
        for (id, c) in &self.contacts {
            w.u64(id.0);
            let mut inner = Writer::new();
            c.encode(&mut inner);
            w.u32_prefixed(&inner.into_secret());
        }
        self.encode_groups(&mut w);
        w.into_secret()
    }

    /// Restores a router from [`export_state`](Self::export_state).
    /// Formats 1 and 2 (protocol v1) keep contacts, counters and queued
    /// messages but not their sessions (see `docs/protocol.md`).
    pub fn import_state<R: CryptoRng + ?Sized>(
        rng: &mut R,
        me: PrivateIdentity,
        config: Config,
        bytes: &[u8],
    ) -> Result<Self, StateError> {
        let mut r = Reader::new(bytes);
        if &r.array::<4>()? != STATE_MAGIC {
            return Err(StateError::Damaged);
        }
        let version = r.u8()?;
        if !(1..=STATE_VERSION).contains(&version) {
            return Err(StateError::UnknownVersion(version));
        }
        if r.array::<32>()? != me.public().fingerprint().0 {
            return Err(StateError::WrongIdentity);
        }
        let cell_size = r.u32()? as usize;
        if cell_size != config.cell_size {
            return Err(StateError::Damaged);
        }
        let last_send_round = r.u64()?;
        let last_received_round = if version >= 3 { r.u64()? } else { 0 };
        let count = r.u32()? as usize;
        if count > MAX_CONTACTS {
            return Err(StateError::Damaged);
        }
        let mut router = Self::new(me, config).map_err(|_| StateError::Damaged)?;
        router.last_send_round = (last_send_round != 0).then_some(last_send_round);
        router.last_received_round = (last_received_round != 0).then_some(last_received_round);
        for _ in 0..count {
            let id = ContactId(r.u64()?);
            let len = r.u32()? as usize;
            let mut inner = Reader::new(r.take(len)?);
            let mut contact =
                Contact::decode(rng, &router.me, &mut inner, config.cell_size, version)?;
            inner.expect_end()?;
            // The round that proved a session is not saved: the last round
            // read is no earlier (unknown: never answer its INIT again).
            contact.set_proven_at(router.last_received_round.unwrap_or(u64::MAX));
            router.contacts.insert(id, Box::new(contact));
        }
        if version >= 4 {
            router.decode_groups(&mut r)?;
        }
        r.expect_end()?;
        Ok(router)
    }
}

/// Payload capacity of a session cell at `cell_size` (for documentation
/// and tests).
pub fn session_payload_len(cell_size: usize) -> usize {
    cell_size - SESSION_OVERHEAD
}
