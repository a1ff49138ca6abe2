//! Entry points for the fuzz targets in `fuzz/` (feature `fuzzing`, which
//! nothing else enables; not an API). They reach the end-to-end parsers
//! and state machines that read what a peer, the relay or a state file
//! hands them, most of which are not public.
//!
//! Each function takes arbitrary bytes, returns nothing, and panics only
//! on a bug: the code under test panicked, or one of the properties
//! asserted here failed. Everything is deterministic (fixed identities,
//! seeded randomness, a fixed wall clock), so a crash input reproduces.
//!
//! The identities are the state-v1 test vectors' (`e2e/vectors/state-v1`):
//! parsing a stored identity is fast, generating RSA-3072 keys is not.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "a fuzz harness: a failed setup or property must crash"
)]

use std::collections::VecDeque;
use std::sync::OnceLock;

use rand::SeedableRng as _;
use rand::rngs::StdRng;
use zeroize::Zeroizing;

use crate::e2e::fuzz_access::{
    Added, Control, GroupRecords, Inbox, InitFragment, InitId, Initiator, Message, PeerInits,
    Records, respond,
};
use crate::e2e::group::{GroupId, ReceiverChain, SenderKey, group_payload_len};
use crate::e2e::{
    CELL_TAG_LEN, Config, ContactId, EventKind, MAX_E2E_CELL, MAX_MESSAGE_LEN, MIN_E2E_CELL,
    PrivateIdentity, Router, session_payload_len,
};

/// The vectors' identities: Alice, Bob, Carol (secret encodings).
const KEYS: [&[u8]; 3] = [
    include_bytes!("e2e/vectors/state-v1/alice.key"),
    include_bytes!("e2e/vectors/state-v1/bob.key"),
    include_bytes!("e2e/vectors/state-v1/carol.key"),
];
/// The vectors' saved states (format 1), in the order of [`KEYS`].
const STATES_V1: [&[u8]; 3] = [
    include_bytes!("e2e/vectors/state-v1/alice.state"),
    include_bytes!("e2e/vectors/state-v1/bob.state"),
    include_bytes!("e2e/vectors/state-v1/carol.state"),
];
const ALICE: usize = 0;
const BOB: usize = 1;

/// The cell size of the vectors and of every router here.
const CELL: usize = 512;
const CONFIG: Config = Config {
    cell_size: CELL,
    retransmit_after_ms: 40_000,
};
const ROUND_MS: u64 = 500;
/// The wall clock (ms) the scripted conversation starts at.
const T0: u64 = 1_764_000_000_000;
/// Rounds the scripted conversation lasts.
const SCRIPT_ROUNDS: u64 = 40;
/// The message Alice sends after the script, for [`cell`].
const LAST_WORD: &[u8] = b"fuzz";
/// The id our fixed INIT carries, for [`handshake_accept`].
const INIT_ID: InitId = *b"fuzz-id!";

fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

/// A fresh copy of identity `n` (`PrivateIdentity` has no `Clone`; each
/// router takes its own).
fn identity(n: usize) -> PrivateIdentity {
    PrivateIdentity::from_secret_bytes(KEYS[n]).expect("the vectors' identities parse")
}

/// Alice, Bob and Carol, parsed once (for what borrows an identity).
fn known() -> &'static [PrivateIdentity; 3] {
    static KNOWN: OnceLock<[PrivateIdentity; 3]> = OnceLock::new();
    KNOWN.get_or_init(|| [0, 1, 2].map(identity))
}

/// Alice and Bob, for the handshake functions.
fn pair() -> [&'static PrivateIdentity; 2] {
    [&known()[ALICE], &known()[BOB]]
}

/// Alice's INIT to Bob (id [`INIT_ID`]), answered by nobody yet.
fn initiator() -> &'static Initiator {
    static HS: OnceLock<Initiator> = OnceLock::new();
    HS.get_or_init(|| {
        let [alice, bob] = pair();
        Initiator::start(&mut rng(1), alice, bob.public(), 1)
            .expect("a fresh INIT")
            .0
    })
}

/// Bob reads `init` as an INIT from Alice: it never authenticates, since
/// it would take Alice's or Bob's static secrets to make one. `init` comes
/// through [`Message::parse`] or straight from the input, so that the
/// reader sees every length.
fn answer(init: &[u8]) {
    let [alice, bob] = pair();
    let answered = respond(&mut rng(2), bob, alice.public(), INIT_ID, init, 2);
    assert!(
        answered.is_err(),
        "Bob answered an INIT nobody with Alice's keys made"
    );
}

/// Alice reads `accept` as the answer to her INIT `init_id`: it never
/// authenticates (it would take Bob's static secrets, or Alice's INIT
/// ephemerals, to make one).
fn finish(init_id: InitId, accept: &[u8]) {
    let [alice, _] = pair();
    let finished = initiator().finish(&mut rng(3), alice, init_id, accept);
    assert!(
        finished.is_err(),
        "Alice accepted an ACCEPT nobody with Bob's keys made"
    );
}

/// A complete handshake message from the peer, as
/// `Contact::handshake_message` reads it.
fn read_message(data: &[u8]) {
    match Message::parse(data) {
        Ok(Message::Init(init)) => answer(init),
        Ok(Message::Accept { answers, body }) => finish(answers, body),
        Err(_) => {}
    }
}

/// `data` as a handshake message from the peer: sorted by
/// [`Message::parse`]; an INIT goes to `respond`, with fixed identities.
/// The raw bytes also go to `respond` directly (its reader alone).
pub fn handshake_init(data: &[u8]) {
    read_message(data);
    answer(data);
}

/// `data` as the ACCEPT to an INIT that Alice started with fixed
/// identities: `Initiator::finish` must refuse it, whether it names our
/// INIT's id or the id it carries.
pub fn handshake_accept(data: &[u8]) {
    read_message(data);
    finish(INIT_ID, data);
    if let Some(named) = data.get(2..10) {
        finish(named.try_into().expect("8 bytes"), data);
    }
}

/// `data` as a sequence of opened handshake cells (`len(1) || plaintext`)
/// fed to one contact's [`PeerInits`] as `Contact` does, checked against a
/// model of the completed ids it remembers; a completed message is read
/// as a handshake message. A length byte with its low bit set makes a
/// repeated id be read again (`forget` and `add`, as `Contact` does when
/// it holds no answer to it).
pub fn handshake_fragments(data: &[u8]) {
    /// The completed ids `PeerInits` remembers (`init::RECENT`).
    const RECENT: usize = 4;
    let mut inits = PeerInits::default();
    let mut recent: VecDeque<InitId> = VecDeque::new();
    let mut rest = data;
    while let Some((&len, tail)) = rest.split_first() {
        let (plain, next) = tail.split_at(usize::from(len).min(tail.len()));
        rest = next;
        let Some(fragment) = InitFragment::parse(plain) else {
            continue;
        };
        let id: InitId = plain[..8]
            .try_into()
            .expect("a fragment starts with its id");
        let mut added = inits.add(&fragment);
        if let Added::Repeat(repeated) = added {
            assert_eq!(repeated, id, "a repeat names another id");
            assert!(recent.contains(&id), "a repeat of an id never completed");
            if len & 1 == 0 {
                continue;
            }
            inits.forget(id);
            recent.retain(|r| *r != id);
            added = inits.add(&fragment);
        }
        match added {
            Added::Repeat(_) => panic!("an id forgotten or never completed repeats"),
            Added::Pending => {
                assert!(!recent.contains(&id), "a completed id is pending again");
            }
            Added::Complete(done, message) => {
                assert_eq!(done, id, "completed under another id");
                assert!(!recent.contains(&id), "an id completed twice");
                if recent.len() >= RECENT {
                    recent.pop_front();
                }
                recent.push_back(id);
                assert!(message.len() <= 16 * usize::from(u16::MAX));
                read_message(&message);
            }
        }
    }
}

/// A genuine session start whose messages the relay tampers with: `data`
/// is `seed(8) || edits`, each edit `target(1) || offset(2) || xor(1)`
/// (target even: the INIT, odd: the ACCEPT). Any change to either message
/// must make it refused; an untouched handshake must give both sides one
/// session (a cell each way opens).
pub fn handshake_tampered(data: &[u8]) {
    let Some((seed, edits)) = data.split_first_chunk::<8>() else {
        return;
    };
    let [alice, bob] = pair();
    let mut rng = rng(u64::from_le_bytes(*seed));
    let (hs, init) = Initiator::start(&mut rng, alice, bob.public(), 11).expect("an INIT");
    let genuine_init = init.to_vec();
    let mut init = genuine_init.clone();
    let mut accept_edits = Vec::new();
    for e in edits.chunks_exact(4) {
        let at = usize::from(u16::from_be_bytes([e[1], e[2]]));
        if e[0] & 1 == 0 {
            let i = at % init.len();
            init[i] ^= e[3];
        } else {
            accept_edits.push((at, e[3]));
        }
    }
    let init_changed = init != genuine_init;
    let Ok(Message::Init(parsed)) = Message::parse(&init) else {
        assert!(init_changed, "a genuine INIT does not parse");
        return;
    };
    let answered = respond(&mut rng, bob, alice.public(), INIT_ID, parsed, 22);
    let Ok((mut bob_session, accept, alice_incarnation)) = answered else {
        assert!(init_changed, "a genuine INIT was refused");
        return;
    };
    assert!(!init_changed, "Bob answered a tampered INIT");
    assert_eq!(alice_incarnation, 11);
    let mut accept = accept.to_vec();
    let genuine = accept.clone();
    for (at, x) in accept_edits {
        let i = at % accept.len();
        accept[i] ^= x;
    }
    let Ok(Message::Accept { answers, body }) = Message::parse(&accept) else {
        assert!(accept != genuine, "a genuine ACCEPT does not parse");
        return;
    };
    let finished = hs.finish(&mut rng, alice, answers, body);
    let Ok((mut alice_session, bob_incarnation)) = finished else {
        assert!(accept != genuine, "a genuine ACCEPT was refused");
        return;
    };
    assert!(accept == genuine, "Alice accepted a tampered ACCEPT");
    assert_eq!(bob_incarnation, 22);
    // One cell each way: Alice first (Bob's sending chain starts when he
    // receives).
    let round = T0 / ROUND_MS;
    let payload = vec![0x5a; session_payload_len(CELL)];
    let cell = alice_session.seal(round, &payload).expect("Alice seals");
    let epoch = bob_session
        .expected(round)
        .into_iter()
        .find_map(|(t, e)| (t.as_ref().map(|t| &t[..]) == Some(&cell[..CELL_TAG_LEN])).then_some(e))
        .expect("Bob expects Alice's tag");
    let opened = bob_session
        .open(&mut rng, epoch, round, &cell)
        .expect("Bob opens");
    assert_eq!(*opened, payload);
    let cell = bob_session.seal(round + 1, &payload).expect("Bob seals");
    let epoch = alice_session
        .expected(round + 1)
        .into_iter()
        .find_map(|(t, e)| (t.as_ref().map(|t| &t[..]) == Some(&cell[..CELL_TAG_LEN])).then_some(e))
        .expect("Alice expects Bob's tag");
    let opened = alice_session
        .open(&mut rng, epoch, round + 1, &cell)
        .expect("Alice opens");
    assert_eq!(*opened, payload);
}

/// One round of the scripted conversation: both states after each sent
/// its cell for the round, and the batch the relay then delivers.
struct Snapshot {
    round: u64,
    states: [Zeroizing<Vec<u8>>; 2],
    batch: Vec<Vec<u8>>,
}

/// Alice and Bob add each other; Alice sends two messages (one of three
/// fragments), Bob answers one; every round's states are kept. Then Bob's
/// state and the cell Alice sends him next, holding [`LAST_WORD`].
struct Script {
    snapshots: Vec<Snapshot>,
    bob: Zeroizing<Vec<u8>>,
    round: u64,
    alice_cell: Vec<u8>,
}

fn script() -> &'static Script {
    static SCRIPT: OnceLock<Script> = OnceLock::new();
    SCRIPT.get_or_init(|| {
        let mut rng = rng(0x5eed);
        let mut routers = [ALICE, BOB].map(|n| {
            let mut r = Router::new(identity(n), CONFIG).expect("a router");
            r.set_round_ms(ROUND_MS).expect("a valid round length");
            r
        });
        let publics = routers.each_ref().map(|r| r.identity().clone());
        for (me, peer) in [(0, 1), (1, 0)] {
            routers[me]
                .add_contact(&mut rng, ContactId(peer as u64), publics[peer].clone())
                .expect("a contact");
        }
        routers[0].send(ContactId(1), b"hello").expect("queued");
        routers[0]
            .send(ContactId(1), &[b'x'; 1000])
            .expect("queued");
        let mut snapshots = Vec::new();
        let mut round = T0 / ROUND_MS;
        let mut received = 0;
        for step in 0..SCRIPT_ROUNDS {
            if step == SCRIPT_ROUNDS / 2 {
                routers[1].send(ContactId(0), b"hi").expect("queued");
            }
            round += 1;
            let now = round * ROUND_MS;
            let batch: Vec<Vec<u8>> = routers
                .iter_mut()
                .map(|r| r.next_cell(&mut rng, round, now).expect("a cell").0)
                .collect();
            snapshots.push(Snapshot {
                round,
                states: routers.each_ref().map(Router::export_state),
                batch: batch.clone(),
            });
            let refs: Vec<&[u8]> = batch.iter().map(Vec::as_slice).collect();
            for r in &mut routers {
                let events = r
                    .receive_batch(&mut rng, round, now, &refs)
                    .expect("a batch");
                received += events
                    .iter()
                    .filter(|e| matches!(e.kind, EventKind::Received { .. }))
                    .count();
            }
        }
        assert_eq!(received, 3, "the script delivers its three messages");
        assert_eq!(routers[0].undelivered() + routers[1].undelivered(), 0);
        routers[0].send(ContactId(1), LAST_WORD).expect("queued");
        round += 1;
        let (alice_cell, _) = routers[0]
            .next_cell(&mut rng, round, round * ROUND_MS)
            .expect("a cell");
        let script = Script {
            snapshots,
            bob: routers[1].export_state(),
            round,
            alice_cell,
        };
        let delivered = receive(&script, &[&script.alice_cell]);
        assert_eq!(delivered, 1, "Bob reads Alice's last cell");
        script
    })
}

/// Bob, restored from the end of the script, reads `cells` as the batch of
/// the next round: how many messages he received ([`LAST_WORD`] only).
fn receive(script: &Script, cells: &[&[u8]]) -> usize {
    let mut bob = Router::import_state(&mut rng(4), identity(BOB), CONFIG, &script.bob)
        .expect("Bob's state imports");
    bob.set_round_ms(ROUND_MS).expect("a valid round length");
    let round = script.round;
    let events = bob
        .receive_batch(&mut rng(5), round, round * ROUND_MS, cells)
        .expect("the round agrees with the clock");
    let mut received = 0;
    for e in events {
        match e.kind {
            EventKind::Received { body, .. } => {
                assert_eq!(&body[..], LAST_WORD, "garbage opened as a message");
                received += 1;
            }
            other => panic!("a batch from the relay made {other:?}"),
        }
    }
    received
}

/// A batch for Bob, who has a live session with Alice, in the round Alice
/// sent him a real cell: `data` is a sequence of cells, each
/// `kind(1) || ...`: kind 0 a cell of random bytes (the next `CELL`
/// bytes, zero-padded), 1 Alice's real cell, 2 Alice's cell with its
/// bytes after the tag `XOR`ed with `len(1) || bytes`, 3 a cell of the wrong
/// size (`len(2)`, zeros). Bob must receive Alice's message exactly when
/// the first cell of the right size carrying her tag is her real cell (a
/// tag is tried once per round), and nothing else.
pub fn cell(data: &[u8]) {
    let script = script();
    let real = &script.alice_cell;
    let mut cells: Vec<Vec<u8>> = Vec::new();
    let mut rest = data;
    while let Some((&kind, tail)) = rest.split_first() {
        rest = tail;
        match kind % 4 {
            0 => {
                let (bytes, tail) = rest.split_at(CELL.min(rest.len()));
                rest = tail;
                let mut c = bytes.to_vec();
                c.resize(CELL, 0);
                cells.push(c);
            }
            1 => cells.push(real.clone()),
            2 => {
                let Some((&len, tail)) = rest.split_first() else {
                    break;
                };
                let (xor, tail) = tail.split_at(usize::from(len).min(tail.len()));
                rest = tail;
                let mut c = real.clone();
                for (b, x) in c[CELL_TAG_LEN..].iter_mut().zip(xor) {
                    *b ^= x;
                }
                cells.push(c);
            }
            _ => {
                let Some((len, tail)) = rest.split_first_chunk::<2>() else {
                    break;
                };
                rest = tail;
                cells.push(vec![0; usize::from(u16::from_be_bytes(*len)) % (2 * CELL)]);
            }
        }
    }
    let expected = usize::from(
        cells
            .iter()
            .find(|c| c.len() == CELL && c[..CELL_TAG_LEN] == real[..CELL_TAG_LEN])
            .is_some_and(|c| c == real),
    );
    let refs: Vec<&[u8]> = cells.iter().map(Vec::as_slice).collect();
    assert_eq!(receive(script, &refs), expected);
}

/// Whose state `bytes` claim to be (the fingerprint after the magic and
/// the version), among the vectors' identities; Alice if nobody's.
fn owner(bytes: &[u8]) -> usize {
    let claimed = bytes.get(5..37);
    (0..KEYS.len())
        .find(|&n| claimed == Some(&known()[n].public().fingerprint().0[..]))
        .unwrap_or(ALICE)
}

/// The cell size `bytes` claim, if a router can have it; else the
/// vectors'.
fn cell_size(bytes: &[u8]) -> usize {
    bytes
        .get(37..41)
        .map(|b| u32::from_be_bytes(b.try_into().expect("4 bytes")) as usize)
        .filter(|c| (MIN_E2E_CELL..=MAX_E2E_CELL).contains(c))
        .unwrap_or(CELL)
}

/// Exports `router`, imports the export (with other randomness), and
/// checks that the second export is the first: what a router writes it
/// reads back, and randomness drawn at import is not part of it.
fn fixed_point(router: &Router, owner: usize, config: Config, seed: u64) -> Router {
    let first = router.export_state();
    let again = Router::import_state(&mut rng(seed), identity(owner), config, &first)
        .unwrap_or_else(|e| panic!("an exported state does not import: {e}"));
    let second = again.export_state();
    if first.as_slice() != second.as_slice() {
        let at = first.iter().zip(second.iter()).position(|(a, b)| a != b);
        panic!(
            "export -> import -> export differs: {} then {} bytes, first difference at {at:?}",
            first.len(),
            second.len()
        );
    }
    again
}

/// Imports `bytes` as a state (owner and cell size as it claims them);
/// if it imports, checks that its export is a fixed point, lives a few
/// rounds (reading `batch` in `round` if given, sending to every contact)
/// and checks the export again. Nothing may panic. Whether it imported.
fn import_and_live(bytes: &[u8], batch: Option<(u64, &[Vec<u8>])>) -> bool {
    let owner = owner(bytes);
    let config = Config {
        cell_size: cell_size(bytes),
        ..CONFIG
    };
    let Ok(router) = Router::import_state(&mut rng(6), identity(owner), config, bytes) else {
        return false;
    };
    let mut router = fixed_point(&router, owner, config, 7);
    router.set_round_ms(ROUND_MS).expect("a valid round length");
    let mut rng = rng(8);
    let (round, cells) = batch.unwrap_or((T0 / ROUND_MS + 1, &[]));
    let refs: Vec<&[u8]> = cells.iter().map(Vec::as_slice).collect();
    let _ = router.receive_batch(&mut rng, round, round * ROUND_MS, &refs);
    let ids: Vec<ContactId> = router.contact_ids().collect();
    for id in ids {
        let _ = router.send(id, b"after the import");
    }
    for r in round + 1..round + 3 {
        router
            .next_cell(&mut rng, r, r * ROUND_MS)
            .expect("a round that agrees with the clock is served");
    }
    fixed_point(&router, owner, config, 9);
    true
}

/// `data` as a saved router state (`Router::import_state`), owned by
/// whichever fixed identity its header names: if it imports, the export
/// must be a fixed point (export, import, export gives the same bytes),
/// and the router must live on without panicking.
pub fn state_import(data: &[u8]) {
    import_and_live(data, None);
}

/// The number of real states [`state_edited`] starts from.
fn bases() -> usize {
    STATES_V1.len() + 2 * script().snapshots.len()
}

/// A real saved state, edited: `data` is `base(1) || edits`. The base is
/// one of the vectors' format-1 states or one of Alice's or Bob's states
/// at a round of the scripted conversation (then the round's batch is
/// read after the import). Each edit is `op(1) || offset(2) || value(1)`:
/// XOR, set, insert or remove a byte, set 8 bytes to 0xff, or set a
/// big-endian u32 to `value` (lengths, counts). Deep states carry signed
/// identities that raw bytes never reach.
pub fn state_edited(data: &[u8]) {
    edit_and_import(data);
}

/// [`state_edited`]; whether the edited state imported.
fn edit_and_import(data: &[u8]) -> bool {
    let Some((&base, edits)) = data.split_first() else {
        return false;
    };
    let script = script();
    let base = usize::from(base) % bases();
    let (mut bytes, batch) = if base < STATES_V1.len() {
        (STATES_V1[base].to_vec(), None)
    } else {
        let i = base - STATES_V1.len();
        let s = &script.snapshots[i / 2];
        (
            s.states[i % 2].to_vec(),
            Some((s.round, s.batch.as_slice())),
        )
    };
    for e in edits.chunks_exact(4) {
        let at = usize::from(u16::from_be_bytes([e[1], e[2]]));
        let value = e[3];
        match e[0] % 6 {
            0 | 1 | 3 | 4 | 5 if bytes.is_empty() => {}
            0 => {
                let i = at % bytes.len();
                bytes[i] ^= value;
            }
            1 => {
                let i = at % bytes.len();
                bytes[i] = value;
            }
            2 => bytes.insert(at % (bytes.len() + 1), value),
            3 => {
                bytes.remove(at % bytes.len());
            }
            4 => {
                let i = at % bytes.len();
                let end = (i + 8).min(bytes.len());
                bytes[i..end].fill(0xff);
            }
            _ => {
                let i = at % bytes.len();
                let end = (i + 4).min(bytes.len());
                let v = u32::from(value).to_be_bytes();
                bytes[i..end].copy_from_slice(&v[..end - i]);
            }
        }
    }
    import_and_live(&bytes, batch)
}

/// `data` as the opened payloads of a contact's session cells
/// (`len(2) || payload`, repeated; a first byte with its low bit set
/// means the contact was re-added, so its numbering is unknown): each is
/// decoded strictly, must re-encode to what decodes the same, and its
/// fragment goes to one inbox. Messages come out in increasing id order,
/// each once, never longer than allowed, and at once (a contact's
/// `floor` must never make the receiver count).
pub fn payload(data: &[u8]) {
    let Some((&flags, mut rest)) = data.split_first() else {
        return;
    };
    let mut inbox = Inbox::new(0);
    if flags & 1 == 1 {
        inbox.rebase();
    }
    let mut last = 0;
    while let Some((len, tail)) = rest.split_first_chunk::<2>() {
        let (chunk, tail) = tail.split_at(usize::from(u16::from_be_bytes(*len)).min(tail.len()));
        rest = tail;
        let Some(records) = Records::decode(chunk) else {
            continue;
        };
        let again = records.encode(chunk.len());
        assert_eq!(
            Records::decode(&again).as_ref(),
            Some(&records),
            "decode -> encode -> decode changed the records"
        );
        let Some(fragment) = &records.data else {
            continue;
        };
        let _ = inbox.add(fragment);
        for (id, body) in inbox.deliverable() {
            assert!(id > last, "message {id} delivered after {last}");
            assert!(body.len() <= MAX_MESSAGE_LEN);
            last = id;
        }
    }
}

/// `data` as group control messages from Alice's contacts
/// (`from(1) || len(2) || bytes`, repeated; `from` picks Bob or Carol).
/// Alice owns a group and has invited Bob. Each message is decoded
/// strictly (and what decodes re-encodes to the same bytes) and applied.
/// Whatever the contacts send, every bound holds and the state exports
/// and imports to the same bytes.
pub fn group_control(data: &[u8]) {
    let _ = group_control_run(data);
}

fn group_control_run(data: &[u8]) -> Router {
    let mut r = rng(7);
    let mut alice = Router::new(identity(ALICE), CONFIG).expect("cell size");
    alice.set_round_ms(ROUND_MS).expect("round length");
    for (id, n) in [(1, BOB), (2, 2)] {
        alice
            .add_contact(&mut r, ContactId(id), known()[n].public().clone())
            .expect("contact");
    }
    let gid = alice.create_group(&mut r, "fuzz").expect("group");
    alice.invite(gid, ContactId(1)).expect("invite");
    let mut rest = data;
    while let Some((&from, tail)) = rest.split_first() {
        let Some((len, tail)) = tail.split_first_chunk::<2>() else {
            break;
        };
        let (bytes, tail) = tail.split_at(usize::from(u16::from_be_bytes(*len)).min(tail.len()));
        rest = tail;
        if let Some(c) = Control::decode(bytes) {
            assert_eq!(
                &c.encode()[..],
                bytes,
                "a control message re-encodes differently"
            );
        }
        alice.fuzz_control(&mut r, ContactId(1 + u64::from(from % 2)), bytes);
        let groups = alice.groups();
        assert!(groups.len() <= crate::e2e::MAX_GROUPS);
        assert!(alice.invitations().len() <= crate::e2e::MAX_INVITES);
        for g in &groups {
            assert!(g.members.len() <= crate::e2e::MAX_GROUP_MEMBERS);
            assert!(g.members.iter().any(|m| m.is_me), "a group without us");
        }
    }
    let state = alice.export_state();
    let again = Router::import_state(&mut r, identity(ALICE), CONFIG, &state)
        .expect("our own export imports");
    assert_eq!(&again.export_state()[..], &state[..], "export is stable");
    again
}

/// `data` as a group member's cells: `kind(1) || ...`, kind 0 a group
/// payload (`len(2) || bytes`: decoded strictly, re-encoded the same),
/// kind 1 the sender's real cell with bytes `XOR`ed (`len(1) || bytes`),
/// kind 2 the real cell unchanged. A reader opens the real cell once and
/// nothing else: a mutated cell never opens, and a second copy is a
/// duplicate.
pub fn group_cell(data: &[u8]) {
    let mut r = rng(9);
    let group = GroupId([3; 16]);
    let who = known()[ALICE].public().fingerprint();
    let mut sender = SenderKey::generate(&mut r, &who, group, 1);
    let mut reader = ReceiverChain::new(&sender.bundle(), &who);
    let round = T0;
    let payload = vec![0u8; group_payload_len(CELL)];
    let real = sender.seal(round, &payload, CELL).expect("seal");
    let mut opened = 0;
    let mut rest = data;
    while let Some((&kind, tail)) = rest.split_first() {
        rest = tail;
        match kind % 3 {
            0 => {
                let Some((len, tail)) = rest.split_first_chunk::<2>() else {
                    break;
                };
                let (bytes, tail) =
                    tail.split_at(usize::from(u16::from_be_bytes(*len)).min(tail.len()));
                rest = tail;
                if let Some(rec) = GroupRecords::decode(bytes) {
                    let again = rec.encode(bytes.len().max(1));
                    let back = GroupRecords::decode(&again).expect("re-encoded records decode");
                    assert_eq!(back.acks, rec.acks);
                    assert_eq!(back.data, rec.data);
                }
            }
            1 => {
                let Some((&len, tail)) = rest.split_first() else {
                    break;
                };
                let (xor, tail) = tail.split_at(usize::from(len).min(tail.len()));
                rest = tail;
                let mut cell = real.clone();
                for (c, x) in cell.iter_mut().zip(xor) {
                    *c ^= x;
                }
                let changed = cell != real;
                if reader.open(round, &cell, CELL).is_ok() {
                    assert!(!changed, "a mutated group cell opened");
                    opened += 1;
                }
            }
            _ => {
                if reader.open(round, &real, CELL).is_ok() {
                    opened += 1;
                }
            }
        }
        assert!(opened <= 1, "the real cell opened twice");
    }
}

/// The harness itself: the structured inputs must reach the paths they
/// are for, or the targets would only fuzz refusals.
#[cfg(test)]
mod tests {
    use super::*;

    /// A well-formed invitation from Bob reaches the invitations, and the
    /// real group cell opens once.
    #[test]
    fn the_group_targets_reach_their_paths() {
        use crate::e2e::group::control::Roster;
        let bob = known()[BOB].public().fingerprint();
        let invite = Control::Invite(Roster {
            group: GroupId([5; 16]),
            name: "book club".into(),
            owner: bob,
            epoch: 2,
            members: vec![bob],
        })
        .encode();
        let mut data = vec![0u8];
        data.extend_from_slice(&(invite.len() as u16).to_be_bytes());
        data.extend_from_slice(&invite);
        assert_eq!(group_control_run(&data).invitations().len(), 1);
        assert_eq!(group_control_run(&[]).invitations().len(), 0);
        group_cell(&[2, 2, 1, 1, 0xff]);
    }

    #[test]
    fn every_base_state_imports_and_lives_unedited() {
        assert!(bases() <= 256, "a base is picked by one byte");
        for base in 0..bases() {
            assert!(edit_and_import(&[base as u8]), "base {base}");
        }
        // An edit past the header makes a state refused or imported, and
        // the magic edited away makes it refused.
        assert!(!edit_and_import(&[0, 0, 0, 0, 0xff]));
    }

    #[test]
    fn a_clean_handshake_completes_and_an_edited_one_is_refused() {
        handshake_tampered(b"12345678");
        handshake_tampered(b"12345678\x00\x00\x05\x01");
        handshake_tampered(b"12345678\x01\x00\x05\x01");
        handshake_tampered(b"12345678\x01\x00\x00\x01");
    }

    #[test]
    fn the_real_cell_arrives_unless_a_copy_took_its_tag() {
        cell(&[1]);
        cell(&[2, 2, 0, 0, 1]);
        cell(&[2, 1, 1, 1]);
        cell(&[0, 0, 1, 3, 2, 0]);
    }

    #[test]
    fn fragments_complete_and_repeat() {
        let fragment = |id: u8, index: u8, count: u8, data: &[u8]| {
            let mut f = vec![id; 8];
            f.extend_from_slice(&[index, count]);
            f.extend_from_slice(&(data.len() as u16).to_be_bytes());
            f.extend_from_slice(data);
            let mut cell = vec![f.len() as u8];
            cell.extend_from_slice(&f);
            cell
        };
        let mut input = Vec::new();
        for part in [
            fragment(1, 0, 2, b"ab"),
            fragment(1, 1, 2, b"cd"),
            fragment(1, 0, 2, b"ab"),
            fragment(2, 0, 1, &[2, 2, 0]),
        ] {
            input.extend_from_slice(&part);
        }
        handshake_fragments(&input);
    }
}
