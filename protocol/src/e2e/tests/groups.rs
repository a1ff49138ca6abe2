//! Groups over full routers: membership by invitation, one cell per
//! fragment whatever the group's size, removal, forgery by a member,
//! loss and retransmission, and the work of non-members.

use super::*;
use crate::e2e::group::group_payload_len;
use crate::e2e::group::state::{GroupRecords, group_fragment_len};
use crate::e2e::payload::Fragment;

/// `n` parties, all contacts of each other.
fn everyone(n: usize) -> Net {
    let pairs: Vec<(usize, usize)> = (0..n)
        .flat_map(|a| ((a + 1)..n).map(move |b| (a, b)))
        .collect();
    Net::new(parties(n, &pairs))
}

/// Group events of every party, collected round by round.
struct Groups {
    net: Net,
    events: Vec<Vec<GroupEvent>>,
}

impl Groups {
    fn new(net: Net) -> Self {
        let n = net.routers.len();
        Self {
            net,
            events: (0..n).map(|_| Vec::new()).collect(),
        }
    }

    fn collect(&mut self) {
        for (i, r) in self.net.routers.iter_mut().enumerate() {
            self.events[i].extend(r.take_group_events());
        }
    }

    fn rounds(&mut self, n: usize) {
        for _ in 0..n {
            self.net.rounds(1);
            self.collect();
        }
    }

    /// Rounds until `done` holds (at most `max`); how many it took.
    fn until(&mut self, max: usize, mut done: impl FnMut(&Self) -> bool) -> usize {
        for i in 0..max {
            if done(self) {
                return i;
            }
            self.rounds(1);
        }
        panic!("not done after {max} rounds");
    }

    fn texts(&self, party: usize) -> Vec<String> {
        self.events[party]
            .iter()
            .filter_map(|e| match e {
                GroupEvent::Received { body, .. } => {
                    Some(String::from_utf8(body.to_vec()).unwrap())
                }
                _ => None,
            })
            .collect()
    }

    fn fp(&self, party: usize) -> Fingerprint {
        self.net.routers[party].identity().fingerprint()
    }

    /// Whether every member reads every other member (in each member's
    /// first group, or in group `gid`).
    fn keyed(&self, members: &[usize]) -> bool {
        self.keyed_where(members, |_| true)
    }

    fn keyed_in(&self, gid: GroupId, members: &[usize]) -> bool {
        self.keyed_where(members, |g| g.id == gid)
    }

    fn keyed_where(&self, members: &[usize], which: impl Fn(&GroupInfo) -> bool) -> bool {
        members.iter().all(|&m| {
            self.net.routers[m]
                .groups()
                .iter()
                .find(|g| which(g))
                .is_some_and(|g| {
                    g.members.len() == members.len()
                        && g.members.iter().all(|x| x.is_me || x.readable)
                })
        })
    }

    /// Party 0 creates group `name` with `members` (party 0 among them),
    /// everyone accepts, and rounds run until every member reads every
    /// other.
    fn form(&mut self, name: &str, members: &[usize]) -> GroupId {
        let gid = self.net.routers[0]
            .create_group(&mut rand::rng(), name)
            .unwrap();
        for &m in members.iter().filter(|&&m| m != 0) {
            self.net.routers[0]
                .invite(gid, ContactId(m as u64))
                .unwrap();
        }
        self.until(400, |g| {
            members
                .iter()
                .filter(|&&m| m != 0)
                .all(|&m| g.net.routers[m].invitations().iter().any(|i| i.id == gid))
        });
        for &m in members.iter().filter(|&&m| m != 0) {
            self.net.routers[m].accept_invite(gid).unwrap();
        }
        self.until(1500, |g| g.keyed_in(gid, members));
        gid
    }
}

/// Party 0 creates a group with `members` (party 0 among them), everyone
/// accepts, and rounds run until every member reads every other.
fn group_of(n: usize, members: &[usize]) -> (Groups, GroupId) {
    let mut g = Groups::new(everyone(n));
    let gid = g.form("friends", members);
    (g, gid)
}

/// Party `from` sends `text` to the group; rounds run until every other
/// member has it. Returns how many real cells `from` sent meanwhile.
fn send_and_count(
    g: &mut Groups,
    gid: GroupId,
    from: usize,
    members: &[usize],
    text: &str,
) -> usize {
    g.net.routers[from]
        .send_group(gid, text.as_bytes())
        .unwrap();
    let mut real = 0;
    for _ in 0..400 {
        if members
            .iter()
            .filter(|&&m| m != from)
            .all(|&m| g.texts(m).iter().any(|t| t == text))
        {
            return real;
        }
        g.net.round_with_real(|i, _, is_real| {
            if i == from && is_real {
                real += 1;
            }
            true
        });
        g.collect();
    }
    panic!("{text:?} not delivered");
}

/// One cell per fragment, whatever the group's size: a three-fragment
/// message costs its sender three cells in a group of three and in a group
/// of eight (its real cells are counted while the message goes out).
#[test]
fn a_group_message_costs_one_cell_per_fragment_whatever_the_size() {
    let text: String = "x".repeat(group_fragment_len(CELL) * 2 + 10);
    for members in [&[0usize, 1, 2][..], &[0, 1, 2, 3, 4, 5, 6, 7][..]] {
        let (mut g, gid) = group_of(members.len(), members);
        g.rounds(5);
        let real_before = g.net.routers[1].real_cells_sent();
        let group_before = g.net.routers[1].group_cells_sent();
        let cells = send_and_count(&mut g, gid, 1, members, &text);
        assert_eq!(cells, 3, "group of {}", members.len());
        // The router's own counters (what `daemon.traffic` reports) say
        // the same (mutation run: either counter returning 0 or 1).
        assert_eq!(g.net.routers[1].real_cells_sent() - real_before, 3);
        assert_eq!(g.net.routers[1].group_cells_sent() - group_before, 3);
        for &m in members.iter().filter(|&&m| m != 1) {
            assert_eq!(g.texts(m), vec![text.clone()], "member {m}");
        }
        // Everyone acknowledges: "delivered to n-1 of n-1".
        let of = members.len() - 1;
        g.until(200, |g| {
            g.events[1].iter().any(
                |e| matches!(e, GroupEvent::Delivered { to, of: o, .. } if *to == of && *o == of),
            )
        });
        assert_eq!(g.net.routers[1].groups()[0].undelivered, 0);
    }
}

/// A removed member reads nothing sent after its removal, live or from a
/// copy of its state taken just before: the new epoch's bundles go only
/// to the new roster. (With bundles sent to every contact and the removal
/// ignored, the test goes red.)
#[test]
fn a_removed_member_reads_nothing_sent_afterwards() {
    let members = [0usize, 1, 2];
    let (mut g, gid) = group_of(3, &members);
    send_and_count(&mut g, gid, 1, &members, "before");
    assert!(g.texts(2).contains(&"before".to_string()));
    let copy = g.net.routers[2].export_state();
    let fp2 = g.fp(2);
    g.net.routers[0]
        .remove_member(&mut rand::rng(), gid, &fp2)
        .unwrap();
    g.until(600, |g| g.keyed(&[0, 1]));
    assert!(
        g.events[2]
            .iter()
            .any(|e| matches!(e, GroupEvent::Removed { .. }))
    );
    assert!(g.net.routers[2].groups().is_empty());
    // The copy from before the removal joins the relay as a fourth party.
    let mut copy = import(2, &copy).unwrap();
    let mut copy_events = Vec::new();
    g.net.routers[1].send_group(gid, b"after").unwrap();
    for _ in 0..300 {
        let round = g.net.round + 1;
        let mut seen = Vec::new();
        g.net.round_with(|_, cell| {
            seen.push(cell.to_vec());
            true
        });
        g.collect();
        feed(&mut copy, round, &seen);
        copy_events.extend(copy.take_group_events());
    }
    assert!(g.texts(0).contains(&"after".to_string()));
    for events in [&g.events[2], &copy_events] {
        assert!(
            !events
                .iter()
                .any(|e| matches!(e, GroupEvent::Received { body, .. } if &body[..] == b"after")),
            "the removed member read a later message"
        );
    }
}

/// A member posing as another (the victim's symmetric chain keys, which
/// every member holds, and a signing key of its own) is refused by every
/// member. (Checked against skipping the signature check: the forgery
/// was delivered as the victim's message 1.)
#[test]
fn a_member_cannot_send_under_another_members_chain() {
    let members = [0usize, 1, 2];
    let (mut g, gid) = group_of(3, &members);
    g.rounds(5);
    let victim = g.fp(1);
    let mut forged = g.net.routers[2].forge_as(gid, &victim).unwrap();
    let round = g.net.round + 1;
    let payload = GroupRecords {
        acks: Vec::new(),
        data: Some(Fragment {
            msg_id: 1,
            floor: 1,
            index: 0,
            count: 1,
            data: Zeroizing::new(b"forged".to_vec()),
            control: false,
        }),
    }
    .encode(group_payload_len(CELL));
    let cell = forged.seal(round * ROUND_MS, &payload, CELL).unwrap();
    // The relay delivers the forgery in a round where the victim is idle.
    let mut cells = Vec::new();
    for r in &mut g.net.routers {
        cells.push(emit(r, round).0);
    }
    cells.push(cell);
    for r in &mut g.net.routers {
        feed(r, round, &cells);
    }
    g.net.round = round;
    g.collect();
    // A real message from the victim still goes through afterwards.
    send_and_count(&mut g, gid, 1, &members, "real");
    for m in [0usize, 2] {
        assert_eq!(g.texts(m), vec!["real".to_string()], "member {m}");
    }
}

/// The relay drops every batch to one member for a while: retransmission
/// completes delivery, and nobody gets a message twice.
#[test]
fn lost_batches_are_made_good_without_duplicates() {
    let members = [0usize, 1, 2];
    let (mut g, gid) = group_of(3, &members);
    g.net.routers[0].send_group(gid, b"one").unwrap();
    g.net.routers[0].send_group(gid, b"two").unwrap();
    // Member 2 sees nothing for 10 rounds: the relay drops its batches.
    for _ in 0..10 {
        let round = g.net.round + 1;
        let mut batch = Vec::new();
        for r in &mut g.net.routers {
            batch.push(emit(r, round).0);
        }
        for (i, r) in g.net.routers.iter_mut().enumerate() {
            if i != 2 {
                feed(r, round, &batch);
            }
        }
        g.net.round = round;
        g.collect();
    }
    assert_eq!(g.texts(1), vec!["one", "two"]);
    assert!(g.texts(2).is_empty());
    g.until(400, |g| g.texts(2).len() == 2);
    g.rounds(200);
    assert_eq!(g.texts(1), vec!["one", "two"], "no duplicates");
    assert_eq!(g.texts(2), vec!["one", "two"], "no duplicates");
}

/// Only the cells of members' chains are opened. Party 3 is not in the
/// group but shares another group with party 0 (so it holds a chain of
/// party 0, whose tags it looks up every round): it opens nothing while
/// the first group talks. Member 0 opens member 1's group cells (and
/// member 2's acknowledgements), each once: cover cells and the other
/// members' pairwise cells cost it look-ups only. (Checked against
/// indexing every chain of every group under every tag: party 3 then
/// opened group cells it cannot read.)
#[test]
fn non_members_and_cover_cells_cost_only_lookups() {
    let members = [0usize, 1, 2];
    let mut g = Groups::new(everyone(4));
    let gid = g.net.routers[0]
        .create_group(&mut rand::rng(), "friends")
        .unwrap();
    let other = g.net.routers[0]
        .create_group(&mut rand::rng(), "other")
        .unwrap();
    for m in [1u64, 2] {
        g.net.routers[0].invite(gid, ContactId(m)).unwrap();
    }
    g.net.routers[0].invite(other, ContactId(3)).unwrap();
    g.until(400, |g| {
        (1..4).all(|m| !g.net.routers[m].invitations().is_empty())
    });
    for m in [1usize, 2, 3] {
        let id = g.net.routers[m].invitations()[0].id;
        g.net.routers[m].accept_invite(id).unwrap();
    }
    let ready = |g: &Groups, who: usize, gid: GroupId, n: usize| {
        g.net.routers[who]
            .groups()
            .iter()
            .find(|x| x.id == gid)
            .is_some_and(|x| {
                x.members.len() == n && x.members.iter().all(|m| m.is_me || m.readable)
            })
    };
    g.until(1500, |g| {
        members.iter().all(|&m| ready(g, m, gid, 3))
            && ready(g, 0, other, 2)
            && ready(g, 3, other, 2)
    });
    g.rounds(50);
    let opens: Vec<u64> = g.net.routers.iter().map(|r| r.opens).collect();
    let mut real_group_cells = 0u64;
    g.net.routers[1].send_group(gid, b"hello").unwrap();
    for _ in 0..60 {
        g.net.round_with_real(|i, _, real| {
            if i == 1 && real {
                real_group_cells += 1;
            }
            true
        });
        g.collect();
    }
    assert_eq!(g.texts(0), vec!["hello"]);
    assert_eq!(
        g.net.routers[3].opens, opens[3],
        "the non-member opened a cell"
    );
    // Member 1 sent one cell (and maybe a GACK cell); member 2 one GACK
    // cell or two. Nothing else is opened.
    let opened = g.net.routers[0].opens - opens[0];
    assert!(
        opened >= real_group_cells && opened <= real_group_cells + 2,
        "member 0 opened {opened} for {real_group_cells} real cells of member 1"
    );
}

/// A group survives a restart of its members (their state exported and
/// imported): keys, numbering and outbox carry on, and a message queued
/// before the restart is delivered once.
#[test]
fn a_group_survives_a_restart_of_its_members() {
    let members = [0usize, 1, 2];
    let (mut g, gid) = group_of(3, &members);
    send_and_count(&mut g, gid, 1, &members, "first");
    g.net.routers[1].send_group(gid, b"queued").unwrap();
    for i in 0..3 {
        let state = g.net.routers[i].export_state();
        let again = import(i, &state).unwrap();
        assert_eq!(again.export_state().as_slice(), state.as_slice(), "stable");
        g.net.routers[i] = again;
    }
    assert_eq!(
        g.net.routers[0].groups(),
        import(0, &g.net.routers[0].export_state())
            .unwrap()
            .groups()
    );
    g.until(400, |g| g.texts(0).len() == 2 && g.texts(2).len() == 2);
    send_and_count(&mut g, gid, 2, &members, "after");
    g.rounds(100);
    assert_eq!(g.texts(0), vec!["first", "queued", "after"]);
    assert_eq!(g.texts(1), vec!["after"]);
}

/// The member next in line cannot take the group from an owner who did
/// not leave: its roster naming itself owner is held until the owner's
/// LEAVE, which never comes. (Before, it was applied at once, and the
/// owner found itself removed.)
#[test]
fn the_next_in_line_cannot_take_over_a_group_whose_owner_stays() {
    use crate::e2e::group::control::{Control, Roster};
    let members = [0usize, 1, 2];
    let (mut g, gid) = group_of(3, &members);
    let (fp1, fp2) = (g.fp(1), g.fp(2));
    let (heir, other) = if fp1 < fp2 { (1, 2) } else { (2, 1) };
    let info = g.net.routers[0].groups()[0].clone();
    let forged = Control::Members(Roster {
        group: gid,
        name: info.name.clone(),
        owner: g.fp(heir),
        epoch: info.epoch + 1,
        members: {
            let mut m = vec![g.fp(heir), g.fp(other)];
            m.sort();
            m
        },
    })
    .encode();
    for victim in [0usize, other] {
        g.net.routers[victim].fuzz_control(&mut rand::rng(), ContactId(heir as u64), &forged);
        g.collect();
        let groups = g.net.routers[victim].groups();
        assert_eq!(groups.len(), 1, "party {victim} lost the group");
        assert_eq!(
            groups[0].epoch, info.epoch,
            "party {victim} took the roster"
        );
        assert!(
            groups[0]
                .members
                .iter()
                .any(|m| m.is_owner && m.fingerprint == g.fp(0))
        );
    }
}

/// A member who installs another member's keys as its own does not get
/// that member's words, nor mute them: both chains claim the tag, both
/// are tried, and only the real sender's signature checks. (With one
/// target per tag, the later insert won and the victim was muted.)
#[test]
fn a_member_passing_off_anothers_keys_neither_steals_nor_mutes_them() {
    let members = [0usize, 1, 2];
    let (mut g, gid) = group_of(3, &members);
    // The thief's chain is indexed after the victim's (fingerprint
    // order): with one target per tag, it would be the one tried.
    let (v, t) = if g.fp(1) < g.fp(2) { (1, 2) } else { (2, 1) };
    let (victim, thief) = (g.fp(v), g.fp(t));
    g.net.routers[0].install_copied_chain(gid, &thief, &victim);
    send_and_count(&mut g, gid, v, &members, "mine");
    let senders: Vec<Fingerprint> = g.events[0]
        .iter()
        .filter_map(|e| match e {
            GroupEvent::Received { sender, .. } => Some(*sender),
            _ => None,
        })
        .collect();
    assert_eq!(senders, vec![victim]);
}

/// A second invitation to the same group id from another contact does
/// not replace the first: acceptance goes to the real owner.
#[test]
fn another_contacts_invitation_to_the_same_group_does_not_replace_the_first() {
    use crate::e2e::group::control::{Control, Roster};
    let mut g = Groups::new(everyone(3));
    let gid = g.net.routers[0]
        .create_group(&mut rand::rng(), "club")
        .unwrap();
    g.net.routers[0].invite(gid, ContactId(1)).unwrap();
    g.until(400, |g| !g.net.routers[1].invitations().is_empty());
    let fake = Control::Invite(Roster {
        group: gid,
        name: "club".into(),
        owner: g.fp(2),
        epoch: 0,
        members: vec![g.fp(2)],
    })
    .encode();
    g.net.routers[1].fuzz_control(&mut rand::rng(), ContactId(2), &fake);
    let inv = g.net.routers[1].invitations();
    assert_eq!(inv.len(), 1);
    assert_eq!(inv[0].from, ContactId(0));
}

/// A member who joins reads nothing sent before it joined, even what is
/// sent again (in the new epoch) for a member who was away; the member
/// who was away gets it. (Checked against starting the joiner's inbox at
/// the sender's floor: it read the old message.)
#[test]
fn a_new_member_does_not_read_what_was_sent_before_it_joined() {
    let members = [0usize, 1, 2];
    let mut g = Groups::new(everyone(4));
    let gid = g.net.routers[0]
        .create_group(&mut rand::rng(), "club")
        .unwrap();
    for m in [1u64, 2] {
        g.net.routers[0].invite(gid, ContactId(m)).unwrap();
    }
    g.until(400, |g| {
        (1..3).all(|m| !g.net.routers[m].invitations().is_empty())
    });
    for m in [1usize, 2] {
        g.net.routers[m].accept_invite(gid).unwrap();
    }
    g.until(1500, |g| g.keyed(&members));
    // Member 2 is away (the relay drops its batches) while member 1
    // sends, and while member 3 joins.
    let away = |g: &mut Groups| {
        let round = g.net.round + 1;
        let mut batch = Vec::new();
        for r in &mut g.net.routers {
            batch.push(emit(r, round).0);
        }
        for (i, r) in g.net.routers.iter_mut().enumerate() {
            if i != 2 {
                feed(r, round, &batch);
            }
        }
        g.net.round = round;
        g.collect();
    };
    g.net.routers[1].send_group(gid, b"old").unwrap();
    for _ in 0..30 {
        away(&mut g);
    }
    assert_eq!(g.texts(0), vec!["old"]);
    g.net.routers[0].invite(gid, ContactId(3)).unwrap();
    for _ in 0..1500 {
        if !g.net.routers[3].invitations().is_empty() {
            break;
        }
        away(&mut g);
    }
    g.net.routers[3].accept_invite(gid).unwrap();
    let reads = |g: &Groups, who: usize, whom: usize| {
        g.net.routers[who].groups().first().is_some_and(|x| {
            x.members
                .iter()
                .any(|m| m.fingerprint == g.fp(whom) && m.readable)
        })
    };
    for _ in 0..1500 {
        if reads(&g, 3, 1) && reads(&g, 1, 3) {
            break;
        }
        away(&mut g);
    }
    assert!(reads(&g, 3, 1), "the new member reads member 1");
    // Member 1 sends "old" again in the new epoch (member 2 never
    // acknowledged it); the joiner must not take it.
    for _ in 0..200 {
        away(&mut g);
    }
    assert!(
        g.texts(3).is_empty(),
        "the new member read {:?}",
        g.texts(3)
    );
    // Member 2 comes back and gets it.
    g.until(2000, |g| g.texts(2) == ["old"]);
    g.until(1500, |g| g.keyed(&[0, 1, 2, 3]));
    send_and_count(&mut g, gid, 1, &[0, 1, 2, 3], "new");
    assert_eq!(g.texts(3), vec!["new"]);
}

/// A member whose bundle never arrived (a pairwise outbox was full, a
/// cell lost for good) is asked for it again after the longest
/// retransmit wait, and read afterwards. (Checked against never asking:
/// member 0 never read member 1 again.)
#[test]
fn a_lost_bundle_is_asked_for_again() {
    let members = [0usize, 1, 2];
    let (mut g, gid) = group_of(3, &members);
    let fp1 = g.fp(1);
    g.net.routers[0].forget_chain(gid, &fp1);
    assert!(!g.keyed(&members));
    // RETRANSMIT_MS is 40 s: 80 rounds of 500 ms, then a few to answer.
    g.until(400, |g| g.keyed(&members));
    send_and_count(&mut g, gid, 1, &members, "after");
    assert_eq!(g.texts(0), vec!["after"]);
}

/// An INVITE control message from `owner` to group `[n; 16]`, with the
/// owner alone in it, as the owner's router would encode it.
fn invite(owner: Fingerprint, n: u8) -> Zeroizing<Vec<u8>> {
    use crate::e2e::group::control::{Control, Roster};
    Control::Invite(Roster {
        group: GroupId([n; 16]),
        name: format!("g{n}"),
        owner,
        epoch: 0,
        members: vec![owner],
    })
    .encode()
}

/// One contact cannot crowd out the others' invitations: at most
/// `MAX_INVITES_PER_CONTACT` of its invitations wait at once, and another
/// contact's still gets in.
#[test]
fn one_contact_fills_at_most_its_share_of_invitations() {
    let mut routers = parties(3, &[(0, 1), (0, 2)]);
    let fp1 = routers[1].identity().fingerprint();
    let fp2 = routers[2].identity().fingerprint();
    for n in 0..10 {
        routers[0].fuzz_control(&mut rand::rng(), ContactId(1), &invite(fp1, n));
    }
    assert_eq!(routers[0].invitations().len(), MAX_INVITES_PER_CONTACT);
    routers[0].fuzz_control(&mut rand::rng(), ContactId(2), &invite(fp2, 99));
    assert_eq!(routers[0].invitations().len(), MAX_INVITES_PER_CONTACT + 1);
}

/// Removing a contact drops its invitations, waiting or accepted (whose
/// roster is still awaited), and no one else's; the state counts as
/// changed, and the contact is gone from the list. Mutation run: `!=` into
/// `==` in either `retain` of `remove_contact`, `changes` not grown, and
/// `contact_ids` empty.
#[test]
fn removing_a_contact_drops_its_invitations_and_no_one_elses() {
    let mut routers = parties(3, &[(0, 1), (0, 2)]);
    let fp1 = routers[1].identity().fingerprint();
    let fp2 = routers[2].identity().fingerprint();
    for (contact, fp, n) in [(1, fp1, 1), (1, fp1, 2), (2, fp2, 3), (2, fp2, 4)] {
        routers[0].fuzz_control(&mut rand::rng(), ContactId(contact), &invite(fp, n));
    }
    routers[0].accept_invite(GroupId([1; 16])).unwrap();
    routers[0].accept_invite(GroupId([3; 16])).unwrap();
    assert_eq!(
        routers[0].contact_ids().collect::<Vec<_>>(),
        vec![ContactId(1), ContactId(2)]
    );
    let before = routers[0].changes();
    assert!(routers[0].remove_contact(ContactId(1)));
    assert!(routers[0].changes() > before);
    let waiting: Vec<GroupId> = routers[0].invitations().iter().map(|i| i.id).collect();
    assert_eq!(waiting, vec![GroupId([4; 16])]);
    assert_eq!(routers[0].joining_groups(), vec![GroupId([3; 16])]);
    assert_eq!(
        routers[0].contact_ids().collect::<Vec<_>>(),
        vec![ContactId(2)]
    );
}

/// Junk under a member's tag, ahead of that member's real group cell in
/// the same batch, does not cost the real cell its open: a group tag gets
/// two attempts a round. Mutation run: `*left > 0` into `*left < 0`
/// dropped the tag after its first attempt, and the message waited for a
/// retransmission.
#[test]
fn junk_ahead_of_a_members_cell_does_not_cost_it_its_open() {
    let members = [0usize, 1, 2];
    let (mut g, gid) = group_of(3, &members);
    g.rounds(5);
    g.net.routers[1].send_group(gid, b"through").unwrap();
    for _ in 0..10 {
        let group_before = g.net.routers[1].group_cells_sent();
        let changes_before = g.net.routers[1].changes();
        let mut batch: Vec<Vec<u8>> = g.net.emit_all().into_iter().map(|(c, _)| c).collect();
        let tried = g.net.routers[1].group_cells_sent() > group_before;
        if tried {
            // A group cell produced is a change to save before it leaves
            // (mutation run: `+=` into `*=` in `produce_group`).
            assert!(g.net.routers[1].changes() > changes_before);
            let mut bad = batch[1].clone();
            bad[CELL - 1] ^= 1;
            batch.insert(0, bad);
        }
        let read_before: Vec<u64> = g.net.routers.iter().map(Router::changes).collect();
        g.net.feed_all(&batch);
        g.collect();
        if tried {
            // A group cell read is a change to save (mutation run: `+=`
            // into `-=` or `*=` in `receive_group_cell`).
            for m in [0, 2] {
                assert!(g.net.routers[m].changes() > read_before[m], "member {m}");
            }
            for m in [0, 2] {
                assert_eq!(g.texts(m), vec!["through".to_owned()], "member {m}");
            }
            return;
        }
    }
    panic!("member 1 sent no group cell");
}

/// A member with messages waiting in two groups sends their cells in
/// turn, group by group, not all of one group first. Mutation run: the
/// round robin's `<=` into `>` sent every message of the first group
/// before any of the second.
#[test]
fn a_member_in_two_groups_sends_their_cells_in_turn() {
    let members = [0usize, 1, 2];
    let (mut g, first) = group_of(3, &members);
    let second = g.form("family", &members);
    g.rounds(10);
    for n in 1..=3 {
        for (gid, name) in [(first, "first"), (second, "second")] {
            g.net.routers[1]
                .send_group(gid, format!("{name} {n}").as_bytes())
                .unwrap();
        }
    }
    g.until(200, |g| g.texts(0).len() == 6);
    // Group ids are random: either group may lead, but they alternate.
    let got = g.texts(0);
    let groups: Vec<&str> = got.iter().map(|t| t.split(' ').next().unwrap()).collect();
    assert!(
        groups.windows(2).all(|w| w[0] != w[1]),
        "not in turn: {got:?}"
    );
}

/// With pairwise and group messages waiting, a member's rounds alternate
/// between them: neither kind waits for the other to drain. Mutation run:
/// the `!` that flips the turn deleted sent every pairwise message first.
#[test]
fn pairwise_and_group_cells_take_turns() {
    let members = [0usize, 1, 2];
    let (mut g, gid) = group_of(3, &members);
    g.rounds(10);
    let (pair_before, group_before) = (g.net.received(0, 1).len(), g.texts(0).len());
    for n in 0..3 {
        g.net.routers[1]
            .send(ContactId(0), format!("pair {n}").as_bytes())
            .unwrap();
        g.net.routers[1]
            .send_group(gid, format!("group {n}").as_bytes())
            .unwrap();
    }
    g.rounds(4);
    assert_eq!(g.net.received(0, 1).len() - pair_before, 2, "pairwise");
    assert_eq!(g.texts(0).len() - group_before, 2, "group");
}

/// With only group messages waiting, a group cell leaves every round, on
/// either turn: a three-fragment message is read after three rounds, and
/// the sender's counter of real cells says three. Mutation run: the `!`
/// of the second turn's check deleted left every other round to cover;
/// `+=` into `-=` or `*=` on the counter there.
#[test]
fn group_cells_leave_every_round_when_nothing_else_waits() {
    let members = [0usize, 1, 2];
    let (mut g, gid) = group_of(3, &members);
    g.rounds(10);
    let text: String = "y".repeat(group_fragment_len(CELL) * 2 + 10);
    let real_before = g.net.routers[1].real_cells_sent();
    g.net.routers[1].send_group(gid, text.as_bytes()).unwrap();
    g.rounds(3);
    for m in [0, 2] {
        assert_eq!(g.texts(m), vec![text.clone()], "member {m}");
    }
    assert_eq!(g.net.routers[1].real_cells_sent() - real_before, 3);
}

/// Every message's delivery is counted, not only the first's: two
/// messages are each reported delivered to every member, and nothing
/// stays undelivered. Mutation run (`messages.rs`): `Outbox::ids`
/// yielding only id 1 left the second message undelivered for good.
#[test]
fn every_group_message_is_counted_delivered() {
    let members = [0usize, 1, 2];
    let (mut g, gid) = group_of(3, &members);
    g.rounds(5);
    let ids: Vec<u64> = ["one", "two"]
        .iter()
        .map(|t| g.net.routers[1].send_group(gid, t.as_bytes()).unwrap())
        .collect();
    g.until(300, |g| g.net.routers[1].groups()[0].undelivered == 0);
    for id in ids {
        assert!(
            g.events[1].iter().any(|e| matches!(
                e,
                GroupEvent::Delivered { msg_id, to: 2, of: 2, .. } if *msg_id == id
            )),
            "message {id}"
        );
    }
}
