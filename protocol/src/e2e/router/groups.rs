//! Groups in the router: membership over the pairwise sessions (control
//! messages), one group cell per fragment in the shared schedule, group
//! cells in the tag index, and the groups' part of the saved state.
//!
//! Membership rules: the owner (the creator, or after the owner leaves the
//! member with the smallest fingerprint) alone invites and removes; an
//! invitation names the whole roster and must be accepted; every change
//! starts a new epoch, in which every member draws a new sender chain and
//! sends its bundle to every other member it has as a contact. A member
//! who is not our contact can neither read us nor be read by us (the
//! pairwise session is the only authenticated way to hand over a chain);
//! [`GroupInfo`] says so per member.

use std::collections::BTreeMap;
use std::fmt;

use rand::CryptoRng;
use zeroize::Zeroizing;

use super::{ContactId, Router};
use crate::e2e::MAX_MESSAGE_LEN;
use crate::e2e::group::control::{Control, MAX_GROUP_MEMBERS, Roster, check_group_name};
use crate::e2e::group::state::{Group, GroupOut};
use crate::e2e::group::{BUNDLE_LEN, GROUP_ID_LEN, GroupId, SenderKey, SenderKeyBundle};
use crate::e2e::identity::Fingerprint;
use crate::e2e::messages::MAX_OUTBOX;
use crate::e2e::writer::Writer;
use crate::wire::WireError;
use crate::wire::reader::Reader;

/// Most groups one router holds.
pub const MAX_GROUPS: usize = 64;
/// Most invitations waiting for an answer.
pub const MAX_INVITES: usize = 16;
/// Most invitations from one contact waiting for an answer.
pub const MAX_INVITES_PER_CONTACT: usize = 4;

/// An invitation we received and have not answered (or accepted, and
/// wait for the owner's roster).
pub(crate) struct Invite {
    pub(crate) from: ContactId,
    pub(crate) roster: Roster,
    /// Bundles of members that came before the owner's roster (accepted
    /// invitations only; at most one per member).
    pub(crate) bundles: Vec<(Fingerprint, Box<SenderKeyBundle>)>,
}

/// How far a roster's epoch may jump ahead of ours: the owner moves one
/// epoch per change, and its rosters reach us in order.
const MAX_EPOCH_JUMP: u32 = 16;

/// What happened in a group. `Debug` never prints a body.
pub enum GroupEvent {
    /// A contact invites us (see [`Router::accept_invite`]).
    Invited {
        /// The group.
        group: GroupId,
        /// Who invites (the group's owner).
        from: ContactId,
        /// The group's name.
        name: String,
        /// How many members it has.
        members: usize,
    },
    /// A contact declined our invitation.
    Declined {
        /// The group.
        group: GroupId,
        /// Who declined.
        by: ContactId,
    },
    /// The membership changed (a new epoch), or we joined.
    MembersChanged {
        /// The group.
        group: GroupId,
        /// The new epoch.
        epoch: u32,
        /// Every member, us included.
        members: Vec<Fingerprint>,
    },
    /// The owner removed us: the group is gone from this router.
    Removed {
        /// The group.
        group: GroupId,
        /// Its name.
        name: String,
    },
    /// A member said it leaves.
    MemberLeft {
        /// The group.
        group: GroupId,
        /// Who.
        member: Fingerprint,
    },
    /// A group message, in order per sender, exactly once.
    Received {
        /// The group.
        group: GroupId,
        /// Who sent it.
        sender: Fingerprint,
        /// The sender as our contact, if it is one.
        contact: Option<ContactId>,
        /// The sender's id for it.
        msg_id: u64,
        /// The text.
        body: Zeroizing<Vec<u8>>,
    },
    /// Every fragment of our message went out once.
    Sent {
        /// The group.
        group: GroupId,
        /// The id [`Router::send_group`] returned.
        msg_id: u64,
    },
    /// More members hold our message: `to` of `of`.
    Delivered {
        /// The group.
        group: GroupId,
        /// The id [`Router::send_group`] returned.
        msg_id: u64,
        /// Members who acknowledged it.
        to: usize,
        /// Members it must reach (those we can reach).
        of: usize,
    },
    /// Not acknowledged by every member in time: going out again.
    Retransmitting {
        /// The group.
        group: GroupId,
        /// The id [`Router::send_group`] returned.
        msg_id: u64,
    },
}

impl fmt::Debug for GroupEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Invited { members, .. } => write!(f, "Invited {{ members: {members} }}"),
            Self::Declined { by, .. } => write!(f, "Declined {{ by: {by:?} }}"),
            Self::MembersChanged { epoch, members, .. } => {
                write!(
                    f,
                    "MembersChanged {{ epoch: {epoch}, members: {} }}",
                    members.len()
                )
            }
            Self::Removed { .. } => f.write_str("Removed"),
            Self::MemberLeft { .. } => f.write_str("MemberLeft"),
            Self::Received { msg_id, body, .. } => {
                write!(f, "Received {{ msg_id: {msg_id}, len: {} }}", body.len())
            }
            Self::Sent { msg_id, .. } => write!(f, "Sent {{ msg_id: {msg_id} }}"),
            Self::Delivered { msg_id, to, of, .. } => {
                write!(f, "Delivered {{ msg_id: {msg_id}, {to} of {of} }}")
            }
            Self::Retransmitting { msg_id, .. } => {
                write!(f, "Retransmitting {{ msg_id: {msg_id} }}")
            }
        }
    }
}

/// Why a group operation was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum GroupOpError {
    /// No group with that id.
    #[error("no such group; see the list of groups")]
    UnknownGroup,
    /// No invitation for that group.
    #[error("no invitation to that group is waiting")]
    NoInvitation,
    /// Only the owner changes the membership.
    #[error("only the group's owner can change who is in it; ask them")]
    NotOwner,
    /// The contact is unknown.
    #[error("no such contact; add them first")]
    UnknownContact,
    /// Already a member (or invited).
    #[error("they are already a member of the group, or invited")]
    AlreadyMember,
    /// Not a member.
    #[error("they are not a member of the group")]
    NotMember,
    /// The group is full.
    #[error("a group has at most {MAX_GROUP_MEMBERS} members")]
    Full,
    /// Too many groups or invitations.
    #[error("too many groups (at most {MAX_GROUPS}); leave one first")]
    TooManyGroups,
    /// A bad name.
    #[error(
        "a group name must be 1 to 64 bytes of printable text, not starting with '#'; choose another"
    )]
    BadName,
    /// The message is empty or too long.
    #[error("the message is empty or longer than {MAX_MESSAGE_LEN} bytes")]
    BadMessage,
    /// Too many messages wait.
    #[error("{MAX_OUTBOX} messages already wait in this group; wait until some are delivered")]
    OutboxFull,
    /// We are the only member.
    #[error("nobody else is in the group yet; invite someone first")]
    Alone,
}

/// A member as [`Router::groups`] shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberInfo {
    /// Their fingerprint.
    pub fingerprint: Fingerprint,
    /// Us.
    pub is_me: bool,
    /// The owner.
    pub is_owner: bool,
    /// Our contact, if they are one (else we cannot exchange keys).
    pub contact: Option<ContactId>,
    /// We hold their sender chain of the current epoch (we read them).
    pub readable: bool,
}

/// A group as [`Router::groups`] shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupInfo {
    /// The group.
    pub id: GroupId,
    /// Its name.
    pub name: String,
    /// The current epoch.
    pub epoch: u32,
    /// We own it.
    pub owner: bool,
    /// Every member, in fingerprint order.
    pub members: Vec<MemberInfo>,
    /// Contacts invited who have not answered.
    pub invited: Vec<Fingerprint>,
    /// Our messages not yet held by every member.
    pub undelivered: usize,
}

/// An invitation as [`Router::invitations`] shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InviteInfo {
    /// The group.
    pub id: GroupId,
    /// Its name.
    pub name: String,
    /// Who invites.
    pub from: ContactId,
    /// Its current members.
    pub members: usize,
}

fn group_outs(
    group: GroupId,
    outs: Vec<GroupOut>,
    contact: impl Fn(&Fingerprint) -> Option<ContactId>,
) -> impl Iterator<Item = GroupEvent> {
    outs.into_iter().map(move |o| match o {
        GroupOut::Received {
            sender,
            msg_id,
            body,
        } => GroupEvent::Received {
            group,
            sender,
            contact: contact(&sender),
            msg_id,
            body,
        },
        GroupOut::Sent(msg_id) => GroupEvent::Sent { group, msg_id },
        GroupOut::Retransmitting(msg_id) => GroupEvent::Retransmitting { group, msg_id },
        GroupOut::Delivered { msg_id, to, of } => GroupEvent::Delivered {
            group,
            msg_id,
            to,
            of,
        },
    })
}

/// The member who owns a group once `leaving` (its owner) is gone: the
/// smallest other fingerprint.
fn successor(roster: &Roster, leaving: &Fingerprint) -> Option<Fingerprint> {
    roster.members.iter().find(|m| *m != leaving).copied()
}

impl Router {
    fn me_fp(&self) -> Fingerprint {
        self.me.public().fingerprint()
    }

    /// The contact with this fingerprint.
    pub(crate) fn contact_of(&self, fp: &Fingerprint) -> Option<ContactId> {
        self.contacts
            .iter()
            .find(|(_, c)| c.peer.fingerprint() == *fp)
            .map(|(id, _)| *id)
    }

    /// The members of `roster` we can reach (our contacts), not us.
    pub(crate) fn audience(&self, roster: &Roster) -> Vec<Fingerprint> {
        let me = self.me_fp();
        roster
            .members
            .iter()
            .filter(|m| **m != me && self.contact_of(m).is_some())
            .copied()
            .collect()
    }

    /// Sends a control message to a contact (dropped, with the reason in
    /// the debug log only, if its outbox is full: membership then heals
    /// with the next change).
    fn send_control(&mut self, to: ContactId, c: &Control) {
        if let Some(contact) = self.contacts.get_mut(&to)
            && contact.enqueue(&c.encode(), true).is_ok()
        {
            self.changes += 1;
        }
    }

    fn send_control_fp(&mut self, to: &Fingerprint, c: &Control) {
        if let Some(id) = self.contact_of(to) {
            self.send_control(id, c);
        }
    }

    /// Enters `roster`'s epoch: a new chain of ours, its bundle to every
    /// other member we can reach.
    fn enter<R: CryptoRng + ?Sized>(&mut self, rng: &mut R, roster: Roster) {
        let me = self.me_fp();
        let gid = roster.group;
        let key = Box::new(SenderKey::generate(rng, &me, gid, roster.epoch));
        let mut bundle = key.bundle();
        bundle.first_msg = self.groups.get(&gid).map_or(1, |g| g.next_msg_id);
        let bundle = Control::Bundle(Box::new(bundle));
        let members = roster.members.clone();
        let epoch = roster.epoch;
        if let Some(g) = self.groups.get_mut(&gid) {
            g.enter_epoch(&me, roster, key);
        } else {
            let mut g = Group::new(roster.clone());
            g.enter_epoch(&me, roster, key);
            self.groups.insert(gid, g);
        }
        for m in &members {
            if *m != me {
                self.send_control_fp(m, &bundle);
            }
        }
        self.changes += 1;
        self.group_events.push(GroupEvent::MembersChanged {
            group: gid,
            epoch,
            members,
        });
    }

    /// As owner: a new epoch with `members`, announced to every member
    /// old and new (a removed one learns it is out).
    fn rekey<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        gid: GroupId,
        mut members: Vec<Fingerprint>,
    ) {
        let Some(g) = self.groups.get(&gid) else {
            return;
        };
        members.sort();
        members.dedup();
        let me = self.me_fp();
        let old = g.roster.clone();
        // An epoch counter at its end would freeze the group; it takes 4
        // billion changes.
        let Some(epoch) = old.epoch.checked_add(1) else {
            return;
        };
        let roster = Roster {
            group: gid,
            name: old.name.clone(),
            owner: me,
            epoch,
            members,
        };
        let announce = Control::Members(roster.clone());
        let mut told: Vec<Fingerprint> = old.members.clone();
        told.extend(roster.members.iter().copied());
        told.sort();
        told.dedup();
        for m in told.iter().filter(|m| **m != me) {
            self.send_control_fp(m, &announce);
        }
        self.enter(rng, roster);
    }

    /// Creates a group with us alone in it (invite others next).
    pub fn create_group<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        name: &str,
    ) -> Result<GroupId, GroupOpError> {
        check_group_name(name).map_err(|_| GroupOpError::BadName)?;
        if self.groups.len() >= MAX_GROUPS {
            return Err(GroupOpError::TooManyGroups);
        }
        let mut id = [0u8; GROUP_ID_LEN];
        rng.fill_bytes(&mut id);
        let roster = Roster {
            group: GroupId(id),
            name: name.to_owned(),
            owner: self.me_fp(),
            epoch: 0,
            members: vec![self.me_fp()],
        };
        self.enter(rng, roster);
        Ok(GroupId(id))
    }

    /// Invites a contact (owner only); they join when they accept.
    pub fn invite(&mut self, gid: GroupId, contact: ContactId) -> Result<(), GroupOpError> {
        let me = self.me_fp();
        let fp = self
            .contacts
            .get(&contact)
            .ok_or(GroupOpError::UnknownContact)?
            .peer
            .fingerprint();
        let g = self
            .groups
            .get_mut(&gid)
            .ok_or(GroupOpError::UnknownGroup)?;
        if g.roster.owner != me {
            return Err(GroupOpError::NotOwner);
        }
        if g.roster.has(&fp) {
            return Err(GroupOpError::AlreadyMember);
        }
        if g.roster.members.len() + g.invited.len() >= MAX_GROUP_MEMBERS {
            return Err(GroupOpError::Full);
        }
        if !g.invited.contains(&fp) {
            g.invited.push(fp);
        }
        let invite = Control::Invite(g.roster.clone());
        self.send_control(contact, &invite);
        Ok(())
    }

    /// The groups whose invitation we accepted and whose roster we await.
    #[cfg(test)]
    pub(crate) fn joining_groups(&self) -> Vec<GroupId> {
        self.joining.keys().copied().collect()
    }

    /// Accepts an invitation: the owner adds us in a new epoch.
    pub fn accept_invite(&mut self, gid: GroupId) -> Result<(), GroupOpError> {
        if self.groups.len() + self.joining.len() >= MAX_GROUPS {
            return Err(GroupOpError::TooManyGroups);
        }
        let inv = self
            .invites
            .remove(&gid)
            .ok_or(GroupOpError::NoInvitation)?;
        self.send_control(inv.from, &Control::Accept(gid));
        self.joining.insert(gid, inv);
        self.changes += 1;
        Ok(())
    }

    /// Declines an invitation.
    pub fn decline_invite(&mut self, gid: GroupId) -> Result<(), GroupOpError> {
        let inv = self
            .invites
            .remove(&gid)
            .ok_or(GroupOpError::NoInvitation)?;
        self.send_control(inv.from, &Control::Decline(gid));
        self.changes += 1;
        Ok(())
    }

    /// Leaves a group: every member we reach is told, and the group and
    /// its keys are gone from here.
    pub fn leave_group(&mut self, gid: GroupId) -> Result<(), GroupOpError> {
        let g = self.groups.remove(&gid).ok_or(GroupOpError::UnknownGroup)?;
        let me = self.me_fp();
        for m in g.roster.members.iter().filter(|m| **m != me) {
            self.send_control_fp(m, &Control::Leave(gid));
        }
        self.changes += 1;
        Ok(())
    }

    /// Removes a member (owner only): a new epoch without them, whose
    /// chains they never get.
    pub fn remove_member<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        gid: GroupId,
        member: &Fingerprint,
    ) -> Result<(), GroupOpError> {
        let me = self.me_fp();
        let g = self
            .groups
            .get_mut(&gid)
            .ok_or(GroupOpError::UnknownGroup)?;
        if g.roster.owner != me {
            return Err(GroupOpError::NotOwner);
        }
        if *member == me {
            return Err(GroupOpError::NotMember);
        }
        if !g.roster.has(member) {
            if let Some(at) = g.invited.iter().position(|f| f == member) {
                g.invited.remove(at);
                self.changes += 1;
                return Ok(());
            }
            return Err(GroupOpError::NotMember);
        }
        let members = g
            .roster
            .members
            .iter()
            .filter(|m| *m != member)
            .copied()
            .collect();
        self.rekey(rng, gid, members);
        Ok(())
    }

    /// Queues a group message: one cell per fragment, whatever the size.
    pub fn send_group(&mut self, gid: GroupId, body: &[u8]) -> Result<u64, GroupOpError> {
        let cell_size = self.config.cell_size;
        let g = self
            .groups
            .get_mut(&gid)
            .ok_or(GroupOpError::UnknownGroup)?;
        if body.is_empty() || body.len() > MAX_MESSAGE_LEN {
            return Err(GroupOpError::BadMessage);
        }
        if g.roster.members.len() < 2 {
            return Err(GroupOpError::Alone);
        }
        if g.outbox.len() >= MAX_OUTBOX {
            return Err(GroupOpError::OutboxFull);
        }
        let id = g.enqueue(body, cell_size);
        self.changes += 1;
        Ok(id)
    }

    /// Every group, in id order.
    pub fn groups(&self) -> Vec<GroupInfo> {
        let me = self.me_fp();
        self.groups
            .values()
            .map(|g| GroupInfo {
                id: g.roster.group,
                name: g.roster.name.clone(),
                epoch: g.roster.epoch,
                owner: g.roster.owner == me,
                members: g
                    .roster
                    .members
                    .iter()
                    .map(|fp| MemberInfo {
                        fingerprint: *fp,
                        is_me: *fp == me,
                        is_owner: *fp == g.roster.owner,
                        contact: self.contact_of(fp),
                        readable: g.peers.get(fp).is_some_and(|p| p.chain.is_some()),
                    })
                    .collect(),
                invited: g.invited.clone(),
                undelivered: g.outbox.len(),
            })
            .collect()
    }

    /// Every group's id and name, in id order (cheaper than
    /// [`Router::groups`]).
    pub fn group_names(&self) -> Vec<(GroupId, String)> {
        self.groups
            .iter()
            .map(|(id, g)| (*id, g.roster.name.clone()))
            .collect()
    }

    /// Invitations waiting for an answer.
    pub fn invitations(&self) -> Vec<InviteInfo> {
        self.invites
            .iter()
            .map(|(id, i)| InviteInfo {
                id: *id,
                name: i.roster.name.clone(),
                from: i.from,
                members: i.roster.members.len(),
            })
            .collect()
    }

    /// A forger's chain posing as `victim` in `gid` (tests): the
    /// symmetric keys this router holds for the victim, a signing key of
    /// its own.
    #[cfg(test)]
    pub(crate) fn forge_as(&self, gid: GroupId, victim: &Fingerprint) -> Option<SenderKey> {
        let chain = self.groups.get(&gid)?.peers.get(victim)?.chain.as_ref()?;
        Some(chain.forge(&mut rand::rng()))
    }

    /// Replaces the chain we hold for `member` with one of `keys_of`'s
    /// keys, as if `member` had passed `keys_of`'s bundle off as its own
    /// (tests).
    #[cfg(test)]
    pub(crate) fn install_copied_chain(
        &mut self,
        gid: GroupId,
        member: &Fingerprint,
        keys_of: &Fingerprint,
    ) {
        let Some(g) = self.groups.get_mut(&gid) else {
            return;
        };
        let Some(bundle) = g
            .peers
            .get(keys_of)
            .and_then(|p| p.chain.as_ref())
            .map(|c| c.to_bundle())
        else {
            return;
        };
        if let Some(p) = g.peers.get_mut(member) {
            p.chain = Some(Box::new(crate::e2e::group::ReceiverChain::new(
                &bundle, member,
            )));
        }
    }

    /// Drops the chain we hold for `member`, as if its bundle had been
    /// lost (tests).
    #[cfg(test)]
    pub(crate) fn forget_chain(&mut self, gid: GroupId, member: &Fingerprint) {
        if let Some(p) = self
            .groups
            .get_mut(&gid)
            .and_then(|g| g.peers.get_mut(member))
        {
            p.chain = None;
        }
    }

    /// Group events since the last call.
    pub fn take_group_events(&mut self) -> Vec<GroupEvent> {
        std::mem::take(&mut self.group_events)
    }

    /// Applies the control messages every contact received.
    pub(crate) fn take_controls<R: CryptoRng + ?Sized>(&mut self, rng: &mut R) {
        let ids: Vec<ContactId> = self.contacts.keys().copied().collect();
        for id in ids {
            let Some(c) = self.contacts.get_mut(&id) else {
                continue;
            };
            for bytes in c.take_controls() {
                if let Some(control) = Control::decode(&bytes) {
                    self.on_control(rng, id, control);
                }
            }
        }
    }

    /// A control message from contact `from`, as if it had arrived over
    /// the pairwise session (fuzz targets and tests).
    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn fuzz_control<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        from: ContactId,
        bytes: &[u8],
    ) {
        if let Some(c) = Control::decode(bytes) {
            self.on_control(rng, from, c);
        }
    }

    fn on_control<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        from: ContactId,
        control: Control,
    ) {
        let Some(fp) = self.contacts.get(&from).map(|c| c.peer.fingerprint()) else {
            return;
        };
        let me = self.me_fp();
        self.changes += 1;
        match control {
            Control::Invite(roster) => self.on_invite(from, fp, roster),
            Control::Accept(gid) => {
                let Some(g) = self.groups.get_mut(&gid) else {
                    return;
                };
                let Some(at) = g.invited.iter().position(|f| *f == fp) else {
                    return;
                };
                if g.roster.owner != me {
                    return;
                }
                g.invited.remove(at);
                let mut members = g.roster.members.clone();
                members.push(fp);
                self.rekey(rng, gid, members);
            }
            Control::Decline(gid) => {
                if let Some(g) = self.groups.get_mut(&gid)
                    && let Some(at) = g.invited.iter().position(|f| *f == fp)
                {
                    g.invited.remove(at);
                    self.group_events.push(GroupEvent::Declined {
                        group: gid,
                        by: from,
                    });
                }
            }
            Control::Members(roster) => self.on_members(rng, fp, roster),
            Control::Request(gid, epoch) => {
                let (now, after) = (self.now_ms, self.config.retransmit_after_ms);
                let Some(g) = self.groups.get_mut(&gid) else {
                    return;
                };
                if epoch != g.roster.epoch || !g.may_answer(fp, now, after) {
                    return;
                }
                let first = g.epoch_first_msg;
                if let Some(mine) = &g.mine {
                    let mut b = mine.bundle();
                    b.first_msg = first;
                    self.send_control(from, &Control::Bundle(Box::new(b)));
                }
            }
            Control::Bundle(b) => {
                if fp == me {
                    return;
                }
                if let Some(g) = self.groups.get_mut(&b.group) {
                    g.add_bundle(fp, b);
                } else if let Some(j) = self.joining.get_mut(&b.group) {
                    // Before the owner's roster: kept for it (one per
                    // member, bounded).
                    j.bundles.retain(|(f, _)| *f != fp);
                    if j.bundles.len() < MAX_GROUP_MEMBERS {
                        j.bundles.push((fp, b));
                    }
                }
            }
            Control::Leave(gid) => {
                let Some(g) = self.groups.get_mut(&gid) else {
                    // Left before we joined: we may be waiting for them.
                    if self.joining.get(&gid).is_some_and(|i| i.from == from) {
                        self.joining.remove(&gid);
                    }
                    return;
                };
                if !g.roster.has(&fp) {
                    return;
                }
                self.group_events.push(GroupEvent::MemberLeft {
                    group: gid,
                    member: fp,
                });
                if g.roster.owner == fp {
                    let Some(next) = successor(&g.roster, &fp) else {
                        return;
                    };
                    g.roster.owner = next;
                    // The successor's roster may have come first.
                    if let Some((by, held)) = g.held.take()
                        && by == next
                    {
                        self.on_members(rng, by, held);
                        return;
                    }
                }
                if g.roster.owner == me {
                    let members = g
                        .roster
                        .members
                        .iter()
                        .filter(|m| **m != fp)
                        .copied()
                        .collect();
                    self.rekey(rng, gid, members);
                }
            }
        }
    }

    /// An INVITE from `from` (fingerprint `fp`).
    fn on_invite(&mut self, from: ContactId, fp: Fingerprint, roster: Roster) {
        let me = self.me_fp();
        let gid = roster.group;
        if roster.owner != fp
            || roster.has(&me)
            || self.groups.contains_key(&gid)
            || self.joining.contains_key(&gid)
        {
            return;
        }
        // At most 16 open invitations, at most 4 of them from one contact
        // (one contact cannot crowd out the others).
        let full = self.invites.len() >= MAX_INVITES
            || self.invites.values().filter(|i| i.from == from).count() >= MAX_INVITES_PER_CONTACT;
        match self.invites.get_mut(&gid) {
            // Another contact's invitation to the same id is not
            // allowed to replace the first (it would lure our
            // acceptance into a group of its own making).
            Some(held) if held.from != from => {}
            Some(held) => held.roster = roster,
            None if full => {}
            None => {
                self.group_events.push(GroupEvent::Invited {
                    group: gid,
                    from,
                    name: roster.name.clone(),
                    members: roster.members.len(),
                });
                self.invites.insert(
                    gid,
                    Invite {
                        from,
                        roster,
                        bundles: Vec::new(),
                    },
                );
            }
        }
    }

    /// A roster from `fp`: applied if `fp` owns the group (or is its
    /// owner's successor, when the owner left and the announcement of the
    /// new owner arrived before the old owner's goodbye) and its epoch is
    /// newer; if we are not in it, we were removed.
    fn on_members<R: CryptoRng + ?Sized>(&mut self, rng: &mut R, fp: Fingerprint, roster: Roster) {
        let me = self.me_fp();
        let gid = roster.group;
        if let Some(g) = self.groups.get_mut(&gid) {
            let owner = g.roster.owner;
            let newer = roster.epoch > g.roster.epoch
                && roster.epoch - g.roster.epoch <= MAX_EPOCH_JUMP
                && roster.owner == fp;
            if !newer {
                return;
            }
            if fp != owner {
                // The owner's successor, before the owner's LEAVE reached
                // us: held until it does (never applied on the
                // successor's word alone, or the next member in line
                // could take the group from an owner who never left).
                if !roster.has(&owner) && successor(&g.roster, &owner) == Some(fp) {
                    g.held = Some((fp, roster));
                }
                return;
            }
            if roster.has(&me) {
                self.enter(rng, roster);
            } else {
                let name = g.roster.name.clone();
                self.groups.remove(&gid);
                self.group_events
                    .push(GroupEvent::Removed { group: gid, name });
            }
            return;
        }
        let Some(inv) = self.joining.get(&gid) else {
            return;
        };
        if inv.roster.owner != fp || roster.owner != fp || !roster.has(&me) {
            return;
        }
        if self.groups.len() >= MAX_GROUPS {
            return;
        }
        let Some(inv) = self.joining.remove(&gid) else {
            return;
        };
        // Bundles that came first wait in the new group for its epoch.
        let mut g = Group::new(roster.clone());
        for (f, b) in inv.bundles {
            g.add_bundle(f, b);
        }
        self.groups.insert(gid, g);
        self.enter(rng, roster);
    }

    /// Asks the members whose bundle of our epoch never came to send it
    /// again (a pairwise outbox was full, a cell was lost for good).
    pub(crate) fn ask_missing_bundles(&mut self, now_ms: u64) {
        let after = self.config.retransmit_after_ms;
        let gids: Vec<GroupId> = self.groups.keys().copied().collect();
        for gid in gids {
            let Some(g) = self.groups.get_mut(&gid) else {
                continue;
            };
            let epoch = g.roster.epoch;
            for fp in g.missing_bundles(now_ms, after) {
                self.send_control_fp(&fp, &Control::Request(gid, epoch));
            }
        }
    }

    /// Group events made inside the router (cells received or produced).
    pub(crate) fn push_group_outs(&mut self, gid: GroupId, outs: Vec<GroupOut>) {
        let contacts: BTreeMap<Fingerprint, ContactId> = self
            .contacts
            .iter()
            .map(|(id, c)| (c.peer.fingerprint(), *id))
            .collect();
        self.group_events
            .extend(group_outs(gid, outs, |fp| contacts.get(fp).copied()));
    }

    /// The groups' part of the state (format 4): groups, invitations,
    /// accepted invitations waiting for the roster.
    pub(crate) fn encode_groups(&self, w: &mut Writer) {
        w.u8(self.groups.len() as u8);
        for g in self.groups.values() {
            let mut inner = Writer::new();
            g.encode(&mut inner);
            w.u32_prefixed(&inner.into_secret());
        }
        for map in [&self.invites, &self.joining] {
            w.u8(map.len() as u8);
            for i in map.values() {
                w.u64(i.from.0);
                i.roster.write(w);
                w.u8(i.bundles.len() as u8);
                for (fp, b) in &i.bundles {
                    w.bytes(&fp.0);
                    w.bytes(&b.encode());
                }
            }
        }
    }

    pub(crate) fn decode_groups(&mut self, r: &mut Reader<'_>) -> Result<(), WireError> {
        let n = usize::from(r.u8()?);
        if n > MAX_GROUPS {
            return Err(WireError::BadField("groups"));
        }
        for _ in 0..n {
            let len = r.u32()? as usize;
            let mut inner = Reader::new(r.take(len)?);
            let g = Group::decode(&mut inner, self.config.cell_size)?;
            inner.expect_end()?;
            self.groups.insert(g.roster.group, g);
        }
        for joining in [false, true] {
            let n = usize::from(r.u8()?);
            if n > MAX_GROUPS {
                return Err(WireError::BadField("group invitations"));
            }
            for _ in 0..n {
                let from = ContactId(r.u64()?);
                let roster = Roster::read(r).ok_or(WireError::BadField("invitation"))?;
                let n = usize::from(r.u8()?);
                if n > MAX_GROUP_MEMBERS {
                    return Err(WireError::BadField("invitation bundles"));
                }
                let mut bundles = Vec::with_capacity(n);
                for _ in 0..n {
                    let fp = Fingerprint(r.array::<32>()?);
                    let b = SenderKeyBundle::decode(r.take(BUNDLE_LEN)?)
                        .map_err(|_| WireError::BadField("invitation bundle"))?;
                    bundles.push((fp, Box::new(b)));
                }
                let map = if joining {
                    &mut self.joining
                } else {
                    &mut self.invites
                };
                map.insert(
                    roster.group,
                    Invite {
                        from,
                        roster,
                        bundles,
                    },
                );
            }
        }
        Ok(())
    }
}
