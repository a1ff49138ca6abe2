//! Known-answer vectors for the v2 key schedule, written by a second,
//! independent implementation (`vectors/kat_v2.py`, Python, from
//! `docs/protocol.md`) and checked here against the real code: the v2
//! handshake (INIT, ACCEPT, chaining key and transcript hash after each,
//! `Split`), the handshake cells, and a run of the Double Ratchet with
//! header encryption (root steps `KDF_RK_HE`, chain steps `KDF_CK`, tags,
//! header keys, message keys, the body nonce, skipped keys), each side's
//! ratchet keys compared after every step.
//!
//! Everything the code draws from its RNG is an input of the vectors:
//! the ML-KEM encapsulation randomness `m` and the ratchet key pairs, served
//! in order by [`Script`]; the handshake ephemerals go in through
//! [`Ephemerals`]. The identities are the fixture keys of `state-v1`.
//!
//! Checked against mutations of `kdf.rs`, each of which fails these
//! tests: `ChainKey::step` with its two outputs swapped (`KDF_CK`'s message
//! key used as the next chain key), the body nonce fixed at zero,
//! `RootKey::ratchet` with its next header and next tag keys swapped,
//! `Split` with the two directions' keys swapped, `MixKey` with `ck` and
//! `k` swapped, the cell tag taken from the last 16 bytes of the PRF, and
//! the header round key derived under the label "tag". The Python side was
//! checked the same way: `kdf_ck` swapped there, `--check` fails.
//!
//! To change the schedule: change the code and `docs/protocol.md`, then
//! `kat_v2.py` to match the document, run `python3 kat_v2.py --write`;
//! these tests must then pass unchanged. CI runs `kat_v2.py --check`.

use std::collections::VecDeque;

use ml_kem::kem::{Decapsulate as _, KeyExport as _};
use ml_kem::{DecapsulationKey768, Seed};
use x25519_dalek::{PublicKey, StaticSecret};

use super::super::handshake::{Ephemerals, Initiator, respond_with};
use super::super::init::{InitKeys, OutgoingInit};
use super::super::kdf::{KeyBytes as _, MessageKey, RoundKey, SymmetricState, open, open_body};
use super::super::ratchet::Epoch;
use super::super::session::Session;
use super::super::writer::Writer;
use super::*;
use crate::wire::reader::Reader;

const VECTORS: &str = include_str!("../vectors/kat_v2.json");
const ALICE_KEY: &[u8] = include_bytes!("../vectors/state-v1/alice.key");
const BOB_KEY: &[u8] = include_bytes!("../vectors/state-v1/bob.key");

/// An RNG that serves scripted draws: each `fill_bytes` takes the next
/// one, which must be exactly as long as asked (the protocol draws only
/// byte strings).
struct Script(VecDeque<Vec<u8>>);

impl rand::TryRng for Script {
    type Error = std::convert::Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        panic!("the protocol draws byte strings only")
    }

    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        panic!("the protocol draws byte strings only")
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        let draw = self
            .0
            .pop_front()
            .expect("the code drew more than scripted");
        assert_eq!(draw.len(), dst.len(), "a draw of another length");
        dst.copy_from_slice(&draw);
        Ok(())
    }
}

impl rand::TryCryptoRng for Script {}

/// Just enough JSON for the vector file (written by Python's `json`):
/// objects, arrays, strings without escapes, unsigned integers, `null`.
#[derive(Debug)]
enum Json {
    Null,
    Num(u64),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

impl Json {
    fn parse(text: &str) -> Self {
        let mut p = Parser {
            b: text.as_bytes(),
            i: 0,
        };
        let v = p.value();
        p.ws();
        assert_eq!(p.i, p.b.len(), "bytes after the JSON value");
        v
    }

    fn opt(&self, key: &str) -> Option<&Self> {
        let Self::Obj(fields) = self else {
            panic!("not an object: looking for {key}")
        };
        fields.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    fn get(&self, key: &str) -> &Self {
        self.opt(key)
            .unwrap_or_else(|| panic!("no field {key} in the vectors"))
    }

    fn str(&self) -> &str {
        let Self::Str(s) = self else {
            panic!("not a string: {self:?}")
        };
        s
    }

    fn bytes(&self) -> Vec<u8> {
        unhex(self.str())
    }

    fn array<const N: usize>(&self) -> [u8; N] {
        self.bytes().try_into().expect("a value of another length")
    }

    fn u64(&self) -> u64 {
        let Self::Num(n) = self else {
            panic!("not a number: {self:?}")
        };
        *n
    }

    fn list(&self) -> &[Self] {
        let Self::Arr(v) = self else {
            panic!("not an array: {self:?}")
        };
        v
    }
}

struct Parser<'a> {
    b: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while self.b.get(self.i).is_some_and(u8::is_ascii_whitespace) {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        self.ws();
        let found = self.b.get(self.i) == Some(&c);
        if found {
            self.i += 1;
        }
        found
    }

    /// The items of an array or the fields of an object, up to `close`.
    fn items<T>(&mut self, close: u8, mut item: impl FnMut(&mut Self) -> T) -> Vec<T> {
        let mut v = Vec::new();
        if self.eat(close) {
            return v;
        }
        loop {
            v.push(item(self));
            if self.eat(close) {
                return v;
            }
            assert!(self.eat(b','), "expected ',' at byte {}", self.i);
        }
    }

    fn value(&mut self) -> Json {
        self.ws();
        let rest = &self.b[self.i..];
        if self.eat(b'{') {
            Json::Obj(self.items(b'}', |p| {
                p.ws();
                let k = p.string();
                assert!(p.eat(b':'), "expected ':' at byte {}", p.i);
                (k, p.value())
            }))
        } else if self.eat(b'[') {
            Json::Arr(self.items(b']', Self::value))
        } else if rest.starts_with(b"\"") {
            Json::Str(self.string())
        } else if rest.starts_with(b"null") {
            self.i += 4;
            Json::Null
        } else {
            let len = rest.iter().take_while(|c| c.is_ascii_digit()).count();
            assert!(len > 0, "unexpected JSON at byte {}", self.i);
            self.i += len;
            Json::Num(std::str::from_utf8(&rest[..len]).unwrap().parse().unwrap())
        }
    }

    fn string(&mut self) -> String {
        assert!(self.eat(b'"'), "expected a string at byte {}", self.i);
        let len = self.b[self.i..].iter().position(|&c| c == b'"').unwrap();
        let s = &self.b[self.i..self.i + len];
        assert!(!s.contains(&b'\\'), "the vectors use no escapes");
        self.i += len + 1;
        String::from_utf8(s.to_vec()).unwrap()
    }
}

/// `got` equals the hex value `want` (compared as hex, to print both).
#[track_caller]
fn check(what: &str, got: &[u8], want: &Json) {
    assert_eq!(hex(got), want.str(), "{what}");
}

/// The keys a ratchet state holds, in the order of
/// [`Session::all_key_bytes`]: dhs, rk, nhks, ntks, nhkr, ntkr, the sending
/// chain's header, tag and chain keys, the receiving chain's, the skipped
/// message keys.
fn state_keys(state: &Json) -> Vec<String> {
    let mut v: Vec<String> = ["dhs", "rk", "nhks", "ntks", "nhkr", "ntkr"]
        .iter()
        .map(|k| state.get(k).str().to_owned())
        .collect();
    for chain in ["send", "recv"] {
        let c = state.get(chain);
        if !matches!(c, Json::Null) {
            v.extend(["header", "tags", "ck"].map(|k| c.get(k).str().to_owned()));
        }
    }
    v.extend(
        state
            .get("skipped")
            .list()
            .iter()
            .map(|s| s.get("mk").str().to_owned()),
    );
    v
}

#[track_caller]
fn check_state(what: &str, session: &Session, want: &Json) {
    let got: Vec<String> = session.all_key_bytes().iter().map(|k| hex(k)).collect();
    assert_eq!(got, state_keys(want), "{what}: ratchet keys");
}

/// The vector file's inputs and expected outputs.
fn vectors() -> (Json, Json) {
    let Json::Obj(mut fields) = Json::parse(VECTORS) else {
        panic!("the vectors are not an object")
    };
    let mut take = |name: &str| {
        let at = fields.iter().position(|(k, _)| k == name).unwrap();
        fields.swap_remove(at).1
    };
    (take("inputs"), take("expected"))
}

/// Both sides right after the real handshake, run on the vectors' inputs
/// (which [`handshake`] checks along the way).
struct Sides {
    alice: PrivateIdentity,
    bob: PrivateIdentity,
    init: Zeroizing<Vec<u8>>,
    accept: Zeroizing<Vec<u8>>,
    /// Alice's (the initiator's), then Bob's.
    sessions: [Session; 2],
    rngs: [Script; 2],
}

/// Runs the handshake: the INIT, the initiator's chaining key and
/// transcript hash after it, the ACCEPT, and both sides' ratchet keys at
/// the start are the vectors'.
fn handshake(inputs: &Json, expected: &Json) -> Sides {
    let (ini, resp) = (inputs.get("initiator"), inputs.get("responder"));
    let (kem, want) = (inputs.get("mlkem"), expected.get("handshake"));
    let alice = PrivateIdentity::from_secret_bytes(ALICE_KEY).unwrap();
    let bob = PrivateIdentity::from_secret_bytes(BOB_KEY).unwrap();
    assert_eq!(ini.get("key_file").str(), "state-v1/alice.key");
    assert_eq!(resp.get("key_file").str(), "state-v1/bob.key");
    for (side, id) in [(ini, &alice), (resp, &bob)] {
        check(
            "static X25519 secret",
            &id.x25519().to_bytes(),
            side.get("x25519_secret"),
        );
        check(
            "fingerprint",
            &id.public().fingerprint().0,
            side.get("fingerprint"),
        );
    }

    // What each side draws, in the order the code draws it: the ML-KEM
    // encapsulations' m, then ratchet key pairs.
    let m = |ct: &str| kem.get(ct).get("m").bytes();
    let ratchet_keys = |side: &Json| -> Vec<Vec<u8>> {
        let keys = side.get("ratchet_x25519_secrets").list();
        keys.iter().map(Json::bytes).collect()
    };
    let mut alice_rng = Script([m("ct1")].into_iter().chain(ratchet_keys(ini)).collect());
    let mut bob_rng = Script(
        [m("ct2"), m("ct3")]
            .into_iter()
            .chain(ratchet_keys(resp))
            .collect(),
    );

    let eph = Ephemerals {
        x25519: ini.get("handshake_x25519_secret").array(),
        kem_seed: ini.get("handshake_mlkem_seed").array(),
    };
    let incarnation = (ini.get("incarnation").u64(), resp.get("incarnation").u64());
    let (initiator, init) =
        Initiator::start_with(&mut alice_rng, &eph, &alice, bob.public(), incarnation.0).unwrap();
    check("INIT", &init, want.get("init").get("message"));
    // The initiator's saved state is e || kem_seed || ck || h.
    let mut w = Writer::new();
    initiator.encode(&mut w);
    let saved = w.into_secret();
    assert_eq!(saved.len(), 32 + 64 + 32 + 32);
    check(
        "ck after INIT",
        &saved[96..128],
        want.get("init").get("chaining_key"),
    );
    check(
        "h after INIT",
        &saved[128..],
        want.get("init").get("transcript_hash"),
    );

    // The responder's handshake has no ML-KEM key of its own.
    let eph = Ephemerals {
        x25519: resp.get("handshake_x25519_secret").array(),
        kem_seed: [0; 64],
    };
    let init_id: [u8; 8] = inputs.get("init_id").array();
    let (bob_session, accept, peer) = respond_with(
        &mut bob_rng,
        &eph,
        &bob,
        alice.public(),
        init_id,
        &init,
        incarnation.1,
    )
    .unwrap();
    assert_eq!(peer, incarnation.0);
    check("ACCEPT", &accept, want.get("accept").get("message"));
    check_state(
        "responder at the start",
        &bob_session,
        want.get("responder_state"),
    );

    let (alice_session, peer) = initiator
        .finish(&mut alice_rng, &alice, init_id, &accept)
        .unwrap();
    assert_eq!(peer, incarnation.1);
    check_state(
        "initiator at the start",
        &alice_session,
        want.get("initiator_state"),
    );
    Sides {
        alice,
        bob,
        init,
        accept,
        sessions: [alice_session, bob_session],
        rngs: [alice_rng, bob_rng],
    }
}

/// The handshake's inputs and outputs: the ML-KEM values are what the
/// ml-kem crate computes, the DH outputs what x25519-dalek computes, and
/// the real `Split` of the vectors' chaining key and transcript hash after
/// the ACCEPT gives the vectors' keys, which both sessions started from.
#[test]
fn handshake_matches_the_vectors() {
    let (inputs, expected) = vectors();
    let sides = handshake(&inputs, &expected);
    let (ini, resp) = (inputs.get("initiator"), inputs.get("responder"));
    let (kem, want) = (inputs.get("mlkem"), expected.get("handshake"));

    let ephemeral =
        DecapsulationKey768::from_seed(Seed::from(ini.get("handshake_mlkem_seed").array::<64>()));
    let ek = ephemeral.encapsulation_key().to_bytes();
    check("ephemeral ML-KEM key", &ek, kem.get("handshake_ek"));
    let ct1 = &sides.init[34 + ek.len()..34 + ek.len() + MLKEM_CT_LEN];
    let ct2 = &sides.accept[42..42 + MLKEM_CT_LEN];
    let ct3 = &sides.accept[42 + MLKEM_CT_LEN..42 + 2 * MLKEM_CT_LEN];
    let k2: [u8; 32] = ephemeral.decapsulate_slice(ct2).unwrap().into();
    for (name, ct, shared) in [
        ("ct1", ct1, *sides.bob.decapsulate(ct1).unwrap().as_bytes()),
        ("ct2", ct2, k2),
        (
            "ct3",
            ct3,
            *sides.alice.decapsulate(ct3).unwrap().as_bytes(),
        ),
    ] {
        check(name, ct, kem.get(name).get("ct"));
        check(name, &shared, kem.get(name).get("shared"));
    }

    let secret = |side: &Json, k: &str| StaticSecret::from(side.get(k).array::<32>());
    let (s_i, s_r) = (secret(ini, "x25519_secret"), secret(resp, "x25519_secret"));
    let e_i = secret(ini, "handshake_x25519_secret");
    let e_r = secret(resp, "handshake_x25519_secret");
    let dh = |a: &StaticSecret, b: &StaticSecret| a.diffie_hellman(&PublicKey::from(b)).to_bytes();
    for (name, out) in [
        ("es", dh(&e_i, &s_r)),
        ("ss", dh(&s_i, &s_r)),
        ("ee", dh(&e_r, &e_i)),
        ("se", dh(&e_r, &s_i)),
    ] {
        check(name, &out, want.get("dh").get(name));
    }

    let after = want.get("accept");
    let mut ck_h = after.get("chaining_key").bytes();
    ck_h.extend(after.get("transcript_hash").bytes());
    let state = SymmetricState::decode(&mut Reader::new(&ck_h)).unwrap();
    check("decoded h", &state.hash(), after.get("transcript_hash"));
    let seed = state.split();
    let split = want.get("split");
    check("root", seed.root.as_bytes(), split.get("root"));
    check(
        "i2r header",
        seed.i2r_header.as_bytes(),
        split.get("i2r_header"),
    );
    check("i2r tags", seed.i2r_tags.as_bytes(), split.get("i2r_tags"));
    check(
        "r2i header",
        seed.r2i_header.as_bytes(),
        split.get("r2i_header"),
    );
    check("r2i tags", seed.r2i_tags.as_bytes(), split.get("r2i_tags"));
    // Bob's session holds the Split's keys as they are (Alice's has taken
    // its first root step already).
    let bob_keys = sides.sessions[1].all_key_bytes();
    assert_eq!(bob_keys[1], *seed.root.as_bytes());
    assert_eq!(bob_keys[2], *seed.r2i_header.as_bytes());
    assert_eq!(bob_keys[5], *seed.i2r_tags.as_bytes());
}

/// The handshake cells carrying the INIT and the ACCEPT: the sender's real
/// cell is the vectors', and the receiver's expected tag and opening agree.
#[test]
fn handshake_cells_match_the_vectors() {
    let (inputs, expected) = vectors();
    let sides = handshake(&inputs, &expected);
    let cell_size = usize::try_from(inputs.get("cell_size").u64()).unwrap();
    let specs = inputs.get("handshake_cells").list();
    let wants = expected.get("handshake_cells").list();
    assert_eq!(specs.len(), wants.len());
    for (spec, want) in specs.iter().zip(wants) {
        let (from, to, message, name) = match spec.get("from").str() {
            "initiator" => (&sides.alice, &sides.bob, &sides.init, "init"),
            _ => (&sides.bob, &sides.alice, &sides.accept, "accept"),
        };
        assert_eq!(spec.get("message").str(), name);
        let mut w = Writer::new();
        w.bytes(&spec.get("msg_id").bytes());
        w.u16_prefixed(message);
        let mut outgoing = OutgoingInit::decode(&mut Reader::new(&w.into_vec())).unwrap();
        outgoing.requeue(cell_size);
        let keys = InitKeys::derive(from, to.public()).unwrap();
        let round = spec.get("round").u64();
        let mut cell = None;
        for _ in 0..=spec.get("index").u64() {
            cell = outgoing.next_cell(&keys, round, 0, cell_size);
        }
        let cell = cell.unwrap();
        check("handshake cell", &cell, want.get("cell"));
        let theirs = InitKeys::derive(to, from.public()).unwrap();
        check(
            "handshake cell tag",
            &theirs.recv_tag(round),
            want.get("tag"),
        );
        let plain = theirs.open(round, &cell).unwrap();
        check("handshake cell plaintext", &plain, want.get("plaintext"));
    }
}

/// The Double Ratchet: cells sealed and opened in the vectors' order. Each
/// real cell is the vectors'; the vectors' header round key and message key
/// open it (the body under the round as nonce); after each step, the keys
/// of the side that moved are the vectors'.
#[test]
fn ratchet_matches_the_vectors() {
    let (inputs, expected) = vectors();
    let Sides {
        mut sessions,
        mut rngs,
        ..
    } = handshake(&inputs, &expected);
    let cells = inputs.get("cells").list();
    let events = inputs.get("events").list();
    assert_eq!(events.len(), expected.get("events").list().len());
    let mut sealed: Vec<Option<Vec<u8>>> = vec![None; cells.len()];
    for (event, want) in events.iter().zip(expected.get("events").list()) {
        let (n, sealing) = match event.opt("seal") {
            Some(n) => (n.u64(), true),
            None => (event.get("open").u64(), false),
        };
        let n = usize::try_from(n).unwrap();
        let spec = &cells[n];
        let from = usize::from(spec.get("from").str() != "initiator");
        let round = spec.get("round").u64();
        let payload = spec.get("payload").bytes();
        let what = |s: &str| format!("cell {n} ({}): {s}", if sealing { "seal" } else { "open" });
        if sealing {
            let cell = sessions[from].seal(round, &payload).unwrap();
            check(&what("tag"), &cell[..CELL_TAG_LEN], want.get("tag"));
            let header_end = CELL_TAG_LEN + HEADER_LEN + 16;
            let hk = RoundKey::from_bytes(want.get("header_round_key").array());
            let header = open(&hk, &cell[..CELL_TAG_LEN], &cell[CELL_TAG_LEN..header_end]);
            let header = header.map(|h| hex(&h));
            let want_header = want.get("header").str();
            assert_eq!(header.as_deref(), Some(want_header), "{}", what("header"));
            let mk = MessageKey::from_bytes(want.get("message_key").array());
            let body = open_body(&mk, round, &cell[..header_end], &cell[header_end..]);
            let body = body.map(|b| hex(&b));
            assert_eq!(body, Some(hex(&payload)), "{}", what("body"));
            check(&what("cell"), &cell, want.get("cell"));
            check_state(&what("sender"), &sessions[from], want.get("state"));
            sealed[n] = Some(cell);
        } else {
            let to = 1 - from;
            let cell = sealed[n].as_ref().unwrap();
            let epoch = sessions[to]
                .expected(round)
                .into_iter()
                .find(|(t, _)| t.is_some_and(|t| t[..] == cell[..CELL_TAG_LEN]))
                .map_or_else(|| panic!("{}", what("no expected tag matches")), |(_, e)| e);
            let named = match epoch {
                Epoch::Current => "current",
                Epoch::Next => "next",
            };
            assert_eq!(named, want.get("epoch").str(), "{}", what("epoch"));
            let opened = sessions[to]
                .open(&mut rngs[to], epoch, round, cell)
                .unwrap();
            assert_eq!(hex(&opened), hex(&payload), "{}", what("payload"));
            check_state(&what("receiver"), &sessions[to], want.get("state"));
        }
    }
    assert!(
        rngs.iter().all(|r| r.0.is_empty()),
        "scripted draws left over"
    );
}

/// The group sender chain on the inputs of `vectors/kat_group.json`
/// (written by `kat_group.py`, an independent implementation): the
/// bundle, and every cell byte for byte (tag, sealed index, body with the
/// Ed25519 signature inside); a reader of the bundle opens each.
#[test]
fn group_chain_matches_the_vectors() {
    use crate::e2e::group::{GroupId, ReceiverChain, SenderKey};
    let Json::Obj(mut fields) = Json::parse(include_str!("../vectors/kat_group.json")) else {
        panic!("the group vectors are not an object")
    };
    let mut take = |name: &str| {
        let at = fields.iter().position(|(k, _)| k == name).unwrap();
        fields.swap_remove(at).1
    };
    let (inp, exp) = (take("inputs"), take("expected"));
    let sender = Fingerprint(inp.get("sender_fingerprint").array::<32>());
    let group = GroupId(inp.get("group").array::<16>());
    let epoch = u32::try_from(inp.get("epoch").u64()).unwrap();
    let cell_size = usize::try_from(inp.get("cell_size").u64()).unwrap();
    let mut key = SenderKey::from_secrets(
        &sender,
        group,
        epoch,
        &inp.get("seed").array::<32>(),
        &inp.get("signing_key").array::<32>(),
    );
    let mut bundle = key.bundle();
    bundle.first_msg = inp.get("first_msg").u64();
    check("bundle", &bundle.encode(), exp.get("bundle"));
    check(
        "verifying key",
        &bundle.verifying_key(),
        exp.get("verifying_key"),
    );
    let mut reader = ReceiverChain::new(&bundle, &sender);
    for (i, (spec, want)) in inp
        .get("cells")
        .list()
        .iter()
        .zip(exp.get("cells").list())
        .enumerate()
    {
        let round = spec.get("round").u64();
        let payload = spec.get("payload").bytes();
        let cell = key.seal(round, &payload, cell_size).unwrap();
        check(
            &format!("group cell {i} tag"),
            &cell[..CELL_TAG_LEN],
            want.get("tag"),
        );
        check(&format!("group cell {i}"), &cell, want.get("cell"));
        let opened = reader.open(round, &cell, cell_size).unwrap();
        assert_eq!(&opened.payload[..], &payload[..]);
        assert_eq!(opened.index as usize, i);
    }
}
