//! Group control messages: what members tell each other over their
//! pairwise sessions (record CONTROL, see `payload`), which are
//! authenticated and forward-secret. The relay sees none of it: a control
//! message is a pairwise message like any other.
//!
//! ```text
//! format 1 | kind u8 | ...
//! 1 INVITE   roster            owner -> invitee
//! 2 ACCEPT   group id          invitee -> owner
//! 3 DECLINE  group id          invitee -> owner
//! 4 MEMBERS  roster            owner -> every member, old and new
//! 5 BUNDLE   sender key bundle member -> every other member
//! 6 LEAVE    group id          member -> every other member
//! 7 REQUEST  group id | epoch  member -> a member whose bundle never came
//! roster = group id(16) | name u8-prefixed | owner fp(32) | epoch u32 |
//!          n u8 | n member fps(32 each, increasing, owner among them)
//! ```

use zeroize::Zeroizing;

use super::{GROUP_ID_LEN, GroupId, SenderKeyBundle};
use crate::e2e::identity::Fingerprint;
use crate::e2e::writer::Writer;
use crate::wire::reader::Reader;

/// Most members a group may have (the owner included).
pub const MAX_GROUP_MEMBERS: usize = 32;
/// Longest group name, in bytes.
pub const MAX_GROUP_NAME: usize = 64;

const FORMAT: u8 = 1;
const INVITE: u8 = 1;
const ACCEPT: u8 = 2;
const DECLINE: u8 = 3;
const MEMBERS: u8 = 4;
const BUNDLE: u8 = 5;
const LEAVE: u8 = 6;
const REQUEST: u8 = 7;

/// A group's name, owner, epoch and members, as the owner announces it.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Roster {
    /// The group.
    pub group: GroupId,
    /// Its name (printable, at most [`MAX_GROUP_NAME`] bytes).
    pub name: String,
    /// Who may change the membership.
    pub owner: Fingerprint,
    /// Bumped on every membership change.
    pub epoch: u32,
    /// Every member, the owner included, in increasing order.
    pub members: Vec<Fingerprint>,
}

/// Why a group name is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum GroupNameError {
    /// Empty, too long, or with control or invisible characters.
    #[error(
        "a group name must be 1 to {MAX_GROUP_NAME} bytes of printable text without '#' at its start; choose another"
    )]
    Invalid,
}

/// Checks a group name: printable, 1 to [`MAX_GROUP_NAME`] bytes, and not
/// starting with `#` (the CLI's prefix for groups).
pub fn check_group_name(name: &str) -> Result<(), GroupNameError> {
    let bad = name.trim().is_empty()
        || name.len() > MAX_GROUP_NAME
        || name.starts_with('#')
        || name.trim() != name
        || name
            .chars()
            .any(|c| c.is_control() || crate::wire::is_non_printing(c));
    if bad {
        Err(GroupNameError::Invalid)
    } else {
        Ok(())
    }
}

impl Roster {
    /// Whether `fp` is a member.
    pub fn has(&self, fp: &Fingerprint) -> bool {
        self.members.binary_search(fp).is_ok()
    }

    /// A member's position (what group acknowledgements name).
    pub(crate) fn position(&self, fp: &Fingerprint) -> Option<usize> {
        self.members.binary_search(fp).ok()
    }

    fn encode(&self, w: &mut Writer) {
        w.bytes(&self.group.0);
        w.u8_prefixed(self.name.as_bytes());
        w.bytes(&self.owner.0);
        w.u32(self.epoch);
        w.u8(self.members.len() as u8);
        for m in &self.members {
            w.bytes(&m.0);
        }
    }

    /// Strict: a valid name, 1..=[`MAX_GROUP_MEMBERS`] members in strictly
    /// increasing order, the owner among them.
    fn decode(r: &mut Reader<'_>) -> Option<Self> {
        let group = GroupId(r.array::<GROUP_ID_LEN>().ok()?);
        let len = usize::from(r.u8().ok()?);
        let name = String::from_utf8(r.take(len).ok()?.to_vec()).ok()?;
        check_group_name(&name).ok()?;
        let owner = Fingerprint(r.array::<32>().ok()?);
        let epoch = r.u32().ok()?;
        let n = usize::from(r.u8().ok()?);
        if n == 0 || n > MAX_GROUP_MEMBERS {
            return None;
        }
        let mut members = Vec::with_capacity(n);
        for _ in 0..n {
            let fp = Fingerprint(r.array::<32>().ok()?);
            if members.last().is_some_and(|last| *last >= fp) {
                return None;
            }
            members.push(fp);
        }
        let roster = Self {
            group,
            name,
            owner,
            epoch,
            members,
        };
        roster.has(&owner).then_some(roster)
    }

    /// Persistent form (same as on the wire).
    pub(crate) fn write(&self, w: &mut Writer) {
        self.encode(w);
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Option<Self> {
        Self::decode(r)
    }
}

/// One control message.
pub(crate) enum Control {
    Invite(Roster),
    Accept(GroupId),
    Decline(GroupId),
    Members(Roster),
    Bundle(Box<SenderKeyBundle>),
    Leave(GroupId),
    /// "Send me your bundle of this epoch again" (it never arrived).
    Request(GroupId, u32),
}

impl Control {
    pub(crate) fn encode(&self) -> Zeroizing<Vec<u8>> {
        let mut w = Writer::new();
        w.u8(FORMAT);
        match self {
            Self::Invite(r) => {
                w.u8(INVITE);
                r.encode(&mut w);
            }
            Self::Accept(g) => {
                w.u8(ACCEPT);
                w.bytes(&g.0);
            }
            Self::Decline(g) => {
                w.u8(DECLINE);
                w.bytes(&g.0);
            }
            Self::Members(r) => {
                w.u8(MEMBERS);
                r.encode(&mut w);
            }
            Self::Bundle(b) => {
                w.u8(BUNDLE);
                w.bytes(&b.encode());
            }
            Self::Leave(g) => {
                w.u8(LEAVE);
                w.bytes(&g.0);
            }
            Self::Request(g, epoch) => {
                w.u8(REQUEST);
                w.bytes(&g.0);
                w.u32(*epoch);
            }
        }
        w.into_secret()
    }

    /// Strict: an unknown format or kind, a bad field or trailing bytes
    /// give `None` (the message is ignored).
    pub(crate) fn decode(bytes: &[u8]) -> Option<Self> {
        let mut r = Reader::new(bytes);
        if r.u8().ok()? != FORMAT {
            return None;
        }
        let group = |r: &mut Reader<'_>| r.array::<GROUP_ID_LEN>().ok().map(GroupId);
        let out = match r.u8().ok()? {
            INVITE => Self::Invite(Roster::decode(&mut r)?),
            ACCEPT => Self::Accept(group(&mut r)?),
            DECLINE => Self::Decline(group(&mut r)?),
            MEMBERS => Self::Members(Roster::decode(&mut r)?),
            BUNDLE => {
                let b = r.take(super::BUNDLE_LEN).ok()?;
                Self::Bundle(Box::new(SenderKeyBundle::decode(b).ok()?))
            }
            LEAVE => Self::Leave(group(&mut r)?),
            REQUEST => Self::Request(group(&mut r)?, r.u32().ok()?),
            _ => return None,
        };
        r.expect_end().ok()?;
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use proptest::prelude::*;

    use super::*;

    fn roster() -> Roster {
        Roster {
            group: GroupId([1; GROUP_ID_LEN]),
            name: "friends".into(),
            owner: Fingerprint([2; 32]),
            epoch: 3,
            members: vec![Fingerprint([2; 32]), Fingerprint([5; 32])],
        }
    }

    #[test]
    fn control_messages_round_trip() {
        for c in [
            Control::Invite(roster()),
            Control::Members(roster()),
            Control::Accept(GroupId([9; GROUP_ID_LEN])),
            Control::Leave(GroupId([9; GROUP_ID_LEN])),
            Control::Request(GroupId([9; GROUP_ID_LEN]), 7),
        ] {
            let bytes = c.encode();
            let back = Control::decode(&bytes).unwrap();
            assert_eq!(back.encode(), bytes);
        }
    }

    #[test]
    fn malformed_rosters_are_refused() {
        let good = Control::Members(roster()).encode().to_vec();
        assert!(Control::decode(&good).is_some());
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(Control::decode(&trailing).is_none(), "trailing byte");
        // Owner not a member.
        let mut r = roster();
        r.owner = Fingerprint([3; 32]);
        assert!(Control::decode(&Control::Members(r).encode()).is_none());
        // Members out of order (or repeated).
        let mut r = roster();
        r.members.reverse();
        assert!(Control::decode(&Control::Members(r).encode()).is_none());
        let mut r = roster();
        r.members = vec![Fingerprint([2; 32]), Fingerprint([2; 32])];
        assert!(Control::decode(&Control::Members(r).encode()).is_none());
        // A name with a direction override.
        let mut r = roster();
        r.name = "a\u{202e}b".into();
        assert!(Control::decode(&Control::Members(r).encode()).is_none());
    }

    #[test]
    fn group_names_are_checked() {
        assert!(check_group_name("book club").is_ok());
        for bad in [
            "",
            " ",
            "#x",
            " lead",
            "a\nb",
            "a\u{200f}b",
            &"x".repeat(65),
        ] {
            assert!(check_group_name(bad).is_err(), "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = Control::decode(&bytes);
        }
    }
}
