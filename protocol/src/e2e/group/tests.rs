//! Group cell properties: round trip, out of order within bounds, replay,
//! tamper, forgery by another member, epochs, forward secrecy, and cells
//! that look like any other cell.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;

const CELL: usize = 512;
const GROUP: GroupId = GroupId([7; GROUP_ID_LEN]);
const ALICE: Fingerprint = Fingerprint([0xa1; 32]);
const MALLORY: Fingerprint = Fingerprint([0xee; 32]);

fn payload(i: u8) -> Vec<u8> {
    vec![i; group_payload_len(CELL)]
}

fn pair() -> (SenderKey, ReceiverChain) {
    let alice = SenderKey::generate(&mut rand::rng(), &ALICE, GROUP, 1);
    let at_bob = ReceiverChain::new(
        &SenderKeyBundle::decode(&alice.bundle().encode()).unwrap(),
        &ALICE,
    );
    (alice, at_bob)
}

#[test]
fn a_cell_opens_for_every_member_who_holds_the_bundle() {
    let (mut alice, mut bob) = pair();
    let mut carol = ReceiverChain::new(&alice.bundle(), &ALICE);
    let cell = alice.seal(100, &payload(1), CELL).unwrap();
    assert_eq!(cell.len(), CELL);
    assert_eq!(&cell[..CELL_TAG_LEN], &bob.expected_tag(100));
    for r in [&mut bob, &mut carol] {
        let o = r.open(100, &cell, CELL).unwrap();
        assert_eq!(o.index, 0);
        assert_eq!(&o.payload[..], &payload(1)[..]);
    }
}

/// Checked against keeping no skipped keys: the earlier cells were then
/// "duplicates".
#[test]
fn out_of_order_within_the_bound_and_each_once() {
    let (mut alice, mut bob) = pair();
    let cells: Vec<(u64, Vec<u8>)> = (0..5u8)
        .map(|i| {
            let round = 10 + u64::from(i);
            (round, alice.seal(round, &payload(i), CELL).unwrap())
        })
        .collect();
    for &k in &[3usize, 0, 4, 1, 2] {
        let (round, cell) = &cells[k];
        let o = bob.open(*round, cell, CELL).unwrap();
        assert_eq!(o.index as usize, k);
        assert_eq!(o.payload[0] as usize, k);
    }
    // Every one of them again: a replay.
    for (round, cell) in &cells {
        assert_eq!(
            bob.open(*round, cell, CELL).err(),
            Some(GroupError::Duplicate)
        );
    }
}

/// A cell replayed in another round does not even match the tag.
#[test]
fn a_cell_replayed_in_another_round_is_not_ours() {
    let (mut alice, mut bob) = pair();
    let cell = alice.seal(50, &payload(9), CELL).unwrap();
    assert_eq!(bob.open(51, &cell, CELL).err(), Some(GroupError::NotOurs));
    assert!(bob.open(50, &cell, CELL).is_ok());
}

/// Every flipped bit is refused and changes nothing: the real cell opens
/// afterwards. Checked against moving the chain before the body and
/// signature checks: the real cell was then a "duplicate". (The body's
/// AEAD refuses every flip, the signature's bytes included; the signature
/// check itself is the forgery test's.)
#[test]
fn every_flipped_bit_is_refused_and_changes_nothing() {
    let (mut alice, mut bob) = pair();
    let cell = alice.seal(7, &payload(3), CELL).unwrap();
    for bit in (0..CELL * 8).step_by(7) {
        let mut bad = cell.clone();
        bad[bit / 8] ^= 1 << (bit % 8);
        let err = bob.open(7, &bad, CELL).err().unwrap();
        if bit < CELL_TAG_LEN * 8 {
            assert_eq!(err, GroupError::NotOurs);
        } else {
            assert_eq!(err, GroupError::Forged, "bit {bit}");
        }
    }
    assert_eq!(bob.open(7, &cell, CELL).unwrap().payload[0], 3);
}

/// Bob holds Alice's chain keys (every member does) and builds a cell
/// under them, signed with his own key: Carol refuses it and still reads
/// Alice's real cell of that index. Checked against skipping the
/// signature check: Carol then took Bob's text as Alice's.
#[test]
fn a_member_cannot_forge_another_members_cells() {
    let (mut alice, _) = pair();
    let bundle = alice.bundle();
    let mut carol = ReceiverChain::new(&bundle, &ALICE);
    // Bob: Alice's symmetric keys, his own signing key.
    let mut forger = SenderKey {
        sender: ALICE.0,
        group: GROUP,
        epoch: 1,
        signing: SigningKey::from_bytes(&[42; 32]),
        keys: bundle.keys.copy(),
        next: 0,
    };
    let fake = forger.seal(20, &payload(0xbb), CELL).unwrap();
    assert_eq!(carol.open(20, &fake, CELL).err(), Some(GroupError::Forged));
    let real = alice.seal(20, &payload(0xaa), CELL).unwrap();
    assert_eq!(carol.open(20, &real, CELL).unwrap().payload[0], 0xaa);
}

/// The index may run at most `MAX_GROUP_SKIP` ahead. Checked against
/// removing the bound: the cell 257 ahead then opened.
#[test]
fn an_index_too_far_ahead_is_refused_without_work() {
    let (mut alice, mut bob) = pair();
    for r in 0..=u64::from(MAX_GROUP_SKIP) {
        alice.seal(r, &payload(0), CELL).unwrap();
    }
    let far = alice.seal(1000, &payload(1), CELL).unwrap();
    assert_eq!(
        bob.open(1000, &far, CELL).err(),
        Some(GroupError::TooFarAhead)
    );
    // Within the bound still works (one more cell is at MAX_GROUP_SKIP + 2).
    let (mut alice, mut bob) = pair();
    for r in 0..u64::from(MAX_GROUP_SKIP) {
        alice.seal(r, &payload(0), CELL).unwrap();
    }
    let edge = alice.seal(2000, &payload(2), CELL).unwrap();
    assert_eq!(bob.open(2000, &edge, CELL).unwrap().index, MAX_GROUP_SKIP);
}

/// Skipped keys are bounded: the oldest go first.
#[test]
fn skipped_keys_are_bounded() {
    let (mut alice, mut bob) = pair();
    let mut kept = Vec::new();
    let mut round = 0;
    // Three jumps of MAX_GROUP_SKIP: 768 skipped keys, 512 kept.
    for _ in 0..3 {
        for _ in 0..MAX_GROUP_SKIP {
            kept.push((round, alice.seal(round, &payload(0), CELL).unwrap()));
            round += 1;
        }
        let jump = alice.seal(round, &payload(1), CELL).unwrap();
        bob.open(round, &jump, CELL).unwrap();
        round += 1;
    }
    assert_eq!(bob.skipped.len(), MAX_GROUP_SKIPPED);
    let (r0, c0) = &kept[0];
    assert_eq!(bob.open(*r0, c0, CELL).err(), Some(GroupError::Duplicate));
    let (rl, cl) = kept.last().unwrap();
    assert!(bob.open(*rl, cl, CELL).is_ok());
}

/// A member removed at the epoch change holds only the old epoch's
/// bundle: nothing of the new epoch opens for it, not even the tag.
#[test]
fn a_removed_member_reads_nothing_of_the_next_epoch() {
    let mut alice1 = SenderKey::generate(&mut rand::rng(), &ALICE, GROUP, 1);
    let mut removed = ReceiverChain::new(&alice1.bundle(), &ALICE);
    let c = alice1.seal(5, &payload(1), CELL).unwrap();
    assert!(removed.open(5, &c, CELL).is_ok());
    let mut alice2 = SenderKey::generate(&mut rand::rng(), &ALICE, GROUP, 2);
    let mut stays = ReceiverChain::new(&alice2.bundle(), &ALICE);
    let c = alice2.seal(6, &payload(2), CELL).unwrap();
    assert_eq!(removed.open(6, &c, CELL).err(), Some(GroupError::NotOurs));
    assert_eq!(stays.open(6, &c, CELL).unwrap().payload[0], 2);
}

/// A member who gets a bundle mid-epoch reads what follows and nothing
/// before: the bundle carries the chain key at its start, not the seed.
#[test]
fn a_late_bundle_reads_nothing_sent_before_it() {
    let mut alice = SenderKey::generate(&mut rand::rng(), &ALICE, GROUP, 1);
    let early = alice.seal(1, &payload(1), CELL).unwrap();
    let late = ReceiverChain::new(&alice.bundle(), &ALICE);
    let mut late_reader = late;
    let next = alice.seal(2, &payload(2), CELL).unwrap();
    assert_eq!(
        late_reader.open(1, &early, CELL).err(),
        Some(GroupError::Duplicate)
    );
    assert_eq!(late_reader.open(2, &next, CELL).unwrap().index, 1);
}

/// Forward secrecy: after reading a cell the reader holds no key that
/// opens it again, and its chain key differs from the one before.
#[test]
fn a_read_cell_cannot_be_read_again_from_the_state() {
    let (mut alice, mut bob) = pair();
    let before = *bob.chain.as_bytes();
    let cell = alice.seal(3, &payload(5), CELL).unwrap();
    bob.open(3, &cell, CELL).unwrap();
    assert_ne!(*bob.chain.as_bytes(), before);
    assert!(bob.skipped.is_empty());
    assert_eq!(bob.open(3, &cell, CELL).err(), Some(GroupError::Duplicate));
}

/// A group cell has no fixed bytes: over many cells of one chain, every
/// byte position takes many values (a signature in clear would show its
/// scalar's zero top bits at a fixed place; a fixed header would show).
#[test]
fn group_cells_have_no_fixed_bytes() {
    let mut alice = SenderKey::generate(&mut rand::rng(), &ALICE, GROUP, 1);
    let cells: Vec<Vec<u8>> = (0..64)
        .map(|r| alice.seal(r, &payload(0), CELL).unwrap())
        .collect();
    for pos in 0..CELL {
        let distinct: std::collections::BTreeSet<u8> = cells.iter().map(|c| c[pos]).collect();
        assert!(
            distinct.len() > 16,
            "byte {pos} takes only {} values",
            distinct.len()
        );
    }
}

#[test]
fn bundles_round_trip_and_bad_ones_are_refused() {
    let alice = SenderKey::generate(&mut rand::rng(), &ALICE, GROUP, 9);
    let b = alice.bundle().encode();
    assert_eq!(b.len(), BUNDLE_LEN);
    let back = SenderKeyBundle::decode(&b).unwrap();
    assert_eq!((back.group, back.epoch, back.start), (GROUP, 9, 0));
    assert_eq!(
        back.verifying_key(),
        alice.signing.verifying_key().to_bytes()
    );
    assert!(SenderKeyBundle::decode(&b[..BUNDLE_LEN - 1]).is_err());
    let mut wrong_format = b.to_vec();
    wrong_format[0] = 2;
    assert!(SenderKeyBundle::decode(&wrong_format).is_err());
    // The identity point is a weak key.
    let mut weak = b.to_vec();
    let at = BUNDLE_LEN - 32;
    weak[at..].copy_from_slice(&[0; 32]);
    weak[at] = 1;
    assert_eq!(
        SenderKeyBundle::decode(&weak).err(),
        Some(GroupError::BadBundle)
    );
}

#[test]
fn wrong_sizes_are_refused() {
    let (mut alice, mut bob) = pair();
    assert_eq!(
        alice.seal(1, &payload(0)[1..], CELL).err(),
        Some(GroupError::WrongSize)
    );
    assert_eq!(
        alice.seal(1, &[], GROUP_OVERHEAD).err(),
        Some(GroupError::WrongSize)
    );
    let cell = alice.seal(1, &payload(0), CELL).unwrap();
    assert_eq!(
        bob.open(1, &cell[..CELL - 1], CELL).err(),
        Some(GroupError::WrongSize)
    );
}

/// A member who passes another member's bundle off as its own gains
/// nothing: the sender's fingerprint is signed into every cell, so Alice's
/// cells do not open under a chain installed as Mallory's. (Checked
/// against leaving the fingerprint out of the signed message: they
/// opened, as Mallory's words.)
#[test]
fn a_copied_bundle_does_not_make_its_cells_someone_elses() {
    let mut alice = SenderKey::generate(&mut rand::rng(), &ALICE, GROUP, 1);
    let bundle = alice.bundle();
    let mut as_mallory = ReceiverChain::new(&bundle, &MALLORY);
    let mut as_alice = ReceiverChain::new(&bundle, &ALICE);
    let cell = alice.seal(40, &payload(5), CELL).unwrap();
    assert_eq!(
        as_mallory.open(40, &cell, CELL).err(),
        Some(GroupError::Forged)
    );
    assert!(as_alice.open(40, &cell, CELL).is_ok());
}
