//! Groups: the `groups.*` operations, `#NAME` addressing, group history
//! and the one place where the end-to-end layer's group events become API
//! events.

use anonchat_ipc::{Delivery, Direction, GroupInfo, GroupMember, Invitation, SentMessage};
use anonchat_protocol::e2e::{Fingerprint, GroupId, GroupInfo as E2eGroup, GroupOpError, Router};
use zeroize::Zeroizing;

use super::events::hex;
use super::messages::{Entry, push_bounded};
use super::{Core, Inner};
use crate::error::{Error, Result};

fn router(inner: &Inner) -> Result<&Router> {
    Ok(&inner.unlocked.as_ref().ok_or(Error::Locked)?.router)
}

/// The group `spec` names: `#NAME` (or `NAME`), or `#` and at least 8 hex
/// digits of its id. A name two groups share must be given as an id.
pub(super) fn resolve(inner: &Inner, spec: &str) -> Result<GroupId> {
    let key = spec.strip_prefix('#').unwrap_or(spec);
    let names = router(inner)?.group_names();
    let by_name: Vec<GroupId> = names
        .iter()
        .filter(|(_, n)| n == key)
        .map(|(id, _)| *id)
        .collect();
    match by_name.as_slice() {
        [one] => return Ok(*one),
        [] => {}
        _ => {
            return Err(Error::invalid(format!(
                "{} groups are called {key:?}: address one by its id (#<hex>, see `anonctl group list`)",
                by_name.len()
            )));
        }
    }
    let lower = key.to_ascii_lowercase();
    if lower.len() >= 8 && lower.chars().all(|c| c.is_ascii_hexdigit()) {
        let hits: Vec<GroupId> = names
            .iter()
            .filter(|(id, _)| hex(&id.0).starts_with(&lower))
            .map(|(id, _)| *id)
            .collect();
        if let [one] = hits.as_slice() {
            return Ok(*one);
        }
    }
    Err(Error::UnknownGroup(key.to_owned()))
}

/// How a member is shown: the contact's name, or the first 16 hex digits
/// of the fingerprint.
pub(super) fn member_name(
    inner: &Inner,
    fp: &Fingerprint,
    contact: Option<anonchat_protocol::e2e::ContactId>,
) -> String {
    contact
        .and_then(|c| inner.contacts.get(c))
        .map_or_else(|| hex(&fp.0[..8]), |c| c.name.clone())
}

fn info(inner: &Inner, g: &E2eGroup) -> GroupInfo {
    GroupInfo {
        name: g.name.clone(),
        id: hex(&g.id.0),
        owner: g.owner,
        epoch: g.epoch,
        members: g
            .members
            .iter()
            .map(|m| GroupMember {
                contact: m
                    .contact
                    .and_then(|c| inner.contacts.get(c))
                    .map(|c| c.name.clone()),
                fingerprint_hex: hex(&m.fingerprint.0),
                me: m.is_me,
                owner: m.is_owner,
                readable: m.is_me || m.readable,
            })
            .collect(),
        invited: g
            .invited
            .iter()
            .map(|fp| {
                let contact = inner
                    .contacts
                    .iter()
                    .find(|c| c.identity.fingerprint() == *fp)
                    .map(|c| c.id);
                member_name(inner, fp, contact)
            })
            .collect(),
        undelivered: u32::try_from(g.undelivered).unwrap_or(u32::MAX),
    }
}

impl Core {
    /// Runs a group operation under the lock, saves the state if it moved,
    /// and emits the events it made.
    fn group_op<T>(&self, op: impl FnOnce(&mut Inner) -> Result<T>) -> Result<T> {
        let now = self.now_ms();
        let mut guard = self.lock();
        let inner = &mut *guard;
        if inner.unlocked.is_none() {
            return Err(Error::Locked);
        }
        let out = op(inner)?;
        let unlocked = inner.unlocked.as_mut().ok_or(Error::Locked)?;
        if unlocked.dirty() {
            unlocked
                .save(&self.settings.paths)
                .map_err(Error::storage)?;
        }
        let events = unlocked.router.take_group_events();
        let events = super::group_events::apply(inner, now, events);
        drop(guard);
        self.emit_all(events);
        Ok(out)
    }

    /// Creates a group and invites `with`.
    pub fn groups_create(&self, name: &str, with: &[String]) -> Result<GroupInfo> {
        self.group_op(|inner| {
            let ids = with
                .iter()
                .map(|n| inner.contacts.by_name(n).map(|c| c.id))
                .collect::<Result<Vec<_>>>()?;
            if inner
                .unlocked
                .as_ref()
                .is_some_and(|u| u.router.group_names().iter().any(|(_, n)| n == name))
            {
                return Err(Error::invalid(format!(
                    "you are already in a group called {name:?}; choose another name"
                )));
            }
            let u = inner.unlocked.as_mut().ok_or(Error::Locked)?;
            let gid = u
                .router
                .create_group(&mut *inner.rng, name)
                .map_err(Error::GroupRefused)?;
            for id in ids {
                u.router.invite(gid, id).map_err(Error::GroupRefused)?;
            }
            let g = u.router.groups().into_iter().find(|g| g.id == gid);
            let g = g.ok_or(Error::GroupRefused(GroupOpError::UnknownGroup))?;
            Ok(info(inner, &g))
        })
    }

    /// Invites a contact to a group we own.
    pub fn groups_invite(&self, group: &str, contact: &str) -> Result<()> {
        self.group_op(|inner| {
            let gid = resolve(inner, group)?;
            let id = inner.contacts.by_name(contact)?.id;
            inner
                .unlocked()?
                .router
                .invite(gid, id)
                .map_err(Error::GroupRefused)
        })
    }

    /// The invitation to `group` (by name or id).
    fn invitation(inner: &Inner, group: &str) -> Result<GroupId> {
        let key = group.strip_prefix('#').unwrap_or(group);
        let lower = key.to_ascii_lowercase();
        let all = router(inner)?.invitations();
        let by_name: Vec<GroupId> = all.iter().filter(|i| i.name == key).map(|i| i.id).collect();
        let hits = if by_name.is_empty() && lower.len() >= 8 {
            all.iter()
                .filter(|i| hex(&i.id.0).starts_with(&lower))
                .map(|i| i.id)
                .collect()
        } else {
            by_name
        };
        match hits.as_slice() {
            [one] => Ok(*one),
            [] => Err(Error::GroupRefused(GroupOpError::NoInvitation)),
            _ => Err(Error::invalid(format!(
                "{} invitations are to groups called {key:?}: answer one by its id (see `anonctl group invitations --json`)",
                hits.len()
            ))),
        }
    }

    /// Accepts an invitation.
    pub fn groups_accept(&self, group: &str) -> Result<()> {
        self.group_op(|inner| {
            let gid = Self::invitation(inner, group)?;
            inner
                .unlocked()?
                .router
                .accept_invite(gid)
                .map_err(Error::GroupRefused)
        })
    }

    /// Declines an invitation.
    pub fn groups_decline(&self, group: &str) -> Result<()> {
        self.group_op(|inner| {
            let gid = Self::invitation(inner, group)?;
            inner
                .unlocked()?
                .router
                .decline_invite(gid)
                .map_err(Error::GroupRefused)
        })
    }

    /// Invitations waiting for an answer.
    pub fn groups_invitations(&self) -> Result<Vec<Invitation>> {
        let inner = self.lock();
        Ok(router(&inner)?
            .invitations()
            .into_iter()
            .map(|i| Invitation {
                group: i.name,
                id: hex(&i.id.0),
                from: inner
                    .contacts
                    .get(i.from)
                    .map_or_else(String::new, |c| c.name.clone()),
                members: u32::try_from(i.members).unwrap_or(u32::MAX),
            })
            .collect())
    }

    /// Leaves a group; its history here goes with it.
    pub fn groups_leave(&self, group: &str) -> Result<()> {
        self.group_op(|inner| {
            let gid = resolve(inner, group)?;
            inner
                .unlocked()?
                .router
                .leave_group(gid)
                .map_err(Error::GroupRefused)?;
            inner.group_history.remove(&gid);
            Ok(())
        })
    }

    /// Removes a member (a contact's name or a fingerprint's hex).
    pub fn groups_remove(&self, group: &str, member: &str) -> Result<()> {
        self.group_op(|inner| {
            let gid = resolve(inner, group)?;
            let fp = if let Ok(c) = inner.contacts.by_name(member) {
                {
                    let id = c.id;
                    router(inner)?
                        .groups()
                        .into_iter()
                        .find(|g| g.id == gid)
                        .and_then(|g| g.members.into_iter().find(|m| m.contact == Some(id)))
                        .map(|m| m.fingerprint)
                        .ok_or(Error::GroupRefused(GroupOpError::NotMember))?
                }
            } else {
                {
                    let lower = member.to_ascii_lowercase();
                    let hits: Vec<Fingerprint> = router(inner)?
                        .groups()
                        .into_iter()
                        .find(|g| g.id == gid)
                        .map(|g| g.members)
                        .unwrap_or_default()
                        .into_iter()
                        .map(|m| m.fingerprint)
                        .filter(|fp| lower.len() >= 16 && hex(&fp.0).starts_with(&lower))
                        .collect();
                    match hits.as_slice() {
                        [one] => *one,
                        _ => return Err(Error::UnknownContact(member.to_owned())),
                    }
                }
            };
            let u = inner.unlocked.as_mut().ok_or(Error::Locked)?;
            u.router
                .remove_member(&mut *inner.rng, gid, &fp)
                .map_err(Error::GroupRefused)
        })
    }

    /// Every group.
    pub fn groups_list(&self) -> Result<Vec<GroupInfo>> {
        let inner = self.lock();
        let groups = router(&inner)?.groups();
        Ok(groups.iter().map(|g| info(&inner, g)).collect())
    }

    /// A group's members.
    pub fn groups_members(&self, group: &str) -> Result<Vec<GroupMember>> {
        let inner = self.lock();
        let gid = resolve(&inner, group)?;
        let g = router(&inner)?
            .groups()
            .into_iter()
            .find(|g| g.id == gid)
            .ok_or_else(|| Error::UnknownGroup(group.to_owned()))?;
        Ok(info(&inner, &g).members)
    }

    /// Queues a group message (`messages.send` with `#NAME`).
    pub(super) fn group_send(&self, to: &str, text: &str) -> Result<SentMessage> {
        let now = self.now_ms();
        self.group_op(|inner| {
            let gid = resolve(inner, to)?;
            let msg_id = inner
                .unlocked()?
                .router
                .send_group(gid, text.as_bytes())
                .map_err(Error::GroupRefused)?;
            push_bounded(
                inner.group_history.entry(gid).or_default(),
                Entry::new(msg_id, Direction::Out, Zeroizing::new(text.to_owned()), now),
            );
            Ok(SentMessage {
                id: msg_id,
                state: Delivery::Queued,
            })
        })
    }
}
