//! Protocol properties of the end-to-end layer, one per test, and the
//! known-answer vectors of the primitives as wired.

use std::sync::OnceLock;

use base64::Engine as _;
use rand::seq::SliceRandom as _;
use zeroize::Zeroizing;

use super::kdf::{hex, unhex};
use super::*;
use crate::wire::RelayAddress;

const CELL: usize = 512;
/// The longest retransmit wait; the first is an eighth of it (5 s).
const RETRANSMIT_MS: u64 = 40_000;

fn relay() -> RelayAddress {
    "anonchat://relay.example.org:7766/#koWuqqSQio35N74_nV0vd3RLf1kYxy7b-9Bd1VH6RnY"
        .parse()
        .unwrap()
}

/// RSA-3072 generation is slow: make each test identity once and clone it
/// through its secret encoding.
fn identity(n: usize) -> PrivateIdentity {
    static IDS: OnceLock<Vec<Zeroizing<Vec<u8>>>> = OnceLock::new();
    let ids = IDS.get_or_init(|| {
        [
            "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi",
        ]
        .iter()
        .map(|name| {
            PrivateIdentity::generate(&mut rand::rng(), name, &relay(), 7, 1_764_000_000)
                .unwrap()
                .to_secret_bytes()
                .unwrap()
        })
        .collect()
    });
    PrivateIdentity::from_secret_bytes(&ids[n]).unwrap()
}

fn config() -> Config {
    Config {
        cell_size: CELL,
        retransmit_after_ms: RETRANSMIT_MS,
    }
}

/// The round length of the test relay.
const ROUND_MS: u64 = 500;
/// A wall clock time (ms) the tests start from.
const T0: u64 = 1_764_000_000_000;

fn router(i: usize) -> Router {
    let mut r = Router::new(identity(i), config()).unwrap();
    r.set_round_ms(ROUND_MS).unwrap();
    r
}

fn import(i: usize, state: &[u8]) -> Result<Router, StateError> {
    let mut r = Router::import_state(&mut rand::rng(), identity(i), config(), state)?;
    r.set_round_ms(ROUND_MS).unwrap();
    Ok(r)
}

/// Routers that know each other as contacts: ContactId(j) is party j.
fn parties(n: usize, pairs: &[(usize, usize)]) -> Vec<Router> {
    let mut routers: Vec<Router> = (0..n).map(router).collect();
    let publics: Vec<PublicIdentity> = routers.iter().map(|r| r.identity().clone()).collect();
    let mut rng = rand::rng();
    for &(a, b) in pairs {
        routers[a]
            .add_contact(&mut rng, ContactId(b as u64), publics[b].clone())
            .unwrap();
        routers[b]
            .add_contact(&mut rng, ContactId(a as u64), publics[a].clone())
            .unwrap();
    }
    routers
}

/// Feeds one batch to a router at the round's own time.
fn feed(r: &mut Router, round: u64, cells: &[Vec<u8>]) -> Vec<Event> {
    let refs: Vec<&[u8]> = cells.iter().map(Vec::as_slice).collect();
    r.receive_batch(&mut rand::rng(), round, round * ROUND_MS, &refs)
        .unwrap()
}

/// The cell a router sends in `round`, at the round's own time.
fn emit(r: &mut Router, round: u64) -> (Vec<u8>, Vec<Event>) {
    r.next_cell(&mut rand::rng(), round, round * ROUND_MS)
        .unwrap()
}

/// The messages among `events`, as text.
fn texts(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event {
                kind: EventKind::Received { body, .. },
                ..
            } => Some(String::from_utf8(body.to_vec()).unwrap()),
            _ => None,
        })
        .collect()
}

/// One round: every party emits one cell, the shuffled batch goes to all.
/// `keep` decides, per (sender, cell), whether the relay delivers it.
struct Net {
    routers: Vec<Router>,
    round: u64,
    events: Vec<Vec<Event>>,
    sent_cells: Vec<Vec<Vec<u8>>>,
}

impl Net {
    fn new(routers: Vec<Router>) -> Self {
        let n = routers.len();
        Self {
            routers,
            round: T0 / ROUND_MS,
            events: (0..n).map(|_| Vec::new()).collect(),
            sent_cells: (0..n).map(|_| Vec::new()).collect(),
        }
    }

    fn round_with(&mut self, mut keep: impl FnMut(usize, &[u8]) -> bool) {
        self.round_with_real(|i, cell, _| keep(i, cell));
    }

    /// A round where `keep` also learns whether the cell was real (it
    /// moved the sender's state) or cover.
    fn round_with_real(&mut self, mut keep: impl FnMut(usize, &[u8], bool) -> bool) {
        let mut batch: Vec<Vec<u8>> = self
            .emit_all()
            .into_iter()
            .enumerate()
            .filter(|(i, (cell, real))| keep(*i, cell, *real))
            .map(|(_, (cell, _))| cell)
            .collect();
        batch.shuffle(&mut rand::rng());
        self.feed_all(&batch);
    }

    /// The first half of a round: the next round begins and every party
    /// emits its cell, with whether it was real (it moved the sender's
    /// state) or cover.
    fn emit_all(&mut self) -> Vec<(Vec<u8>, bool)> {
        self.round += 1;
        let round = self.round;
        let mut cells = Vec::new();
        for (i, r) in self.routers.iter_mut().enumerate() {
            let before = r.changes();
            let (cell, evs) = emit(r, round);
            assert_eq!(cell.len(), CELL);
            self.events[i].extend(evs);
            self.sent_cells[i].push(cell.clone());
            cells.push((cell, r.changes() > before));
        }
        cells
    }

    /// The second half: `batch` goes to every party.
    fn feed_all(&mut self, batch: &[Vec<u8>]) {
        for (i, r) in self.routers.iter_mut().enumerate() {
            let evs = feed(r, self.round, batch);
            self.events[i].extend(evs);
        }
    }

    fn rounds(&mut self, n: usize) {
        for _ in 0..n {
            self.round_with(|_, _| true);
        }
    }

    fn received(&self, party: usize, from: u64) -> Vec<String> {
        self.events[party]
            .iter()
            .filter_map(|e| match e {
                Event {
                    contact,
                    kind: EventKind::Received { body, .. },
                } if contact.0 == from => Some(String::from_utf8(body.to_vec()).unwrap()),
                _ => None,
            })
            .collect()
    }

    fn delivered(&self, party: usize, to: u64) -> Vec<u64> {
        self.events[party]
            .iter()
            .filter_map(|e| match e {
                Event {
                    contact,
                    kind: EventKind::Delivered { msg_id },
                } if contact.0 == to => Some(*msg_id),
                _ => None,
            })
            .collect()
    }

    fn sessions_started(&self, party: usize) -> usize {
        self.events[party]
            .iter()
            .filter(|e| matches!(e.kind, EventKind::SessionStarted))
            .count()
    }
}

// ---------------------------------------------------------------- identity

#[test]
fn identity_file_round_trips_and_carries_no_secret() {
    let me = identity(0);
    let text = me.public().to_armored();
    assert!(text.starts_with(BEGIN));
    assert!(text.trim_end().ends_with(END));
    assert!(text.len() < 4096, "a few KiB at most: {}", text.len());
    let back = PublicIdentity::from_armored(&text).unwrap();
    assert_eq!(&back, me.public());
    // The signed fields read back as made (mutation run:
    // `created_unix` returning 0 or 1).
    assert_eq!(back.created_unix(), 1_764_000_000);
    assert_eq!(back.nickname(), "alice");
    assert_eq!(back.shard(), 7);
    assert_eq!(back.relay(), &relay());
    // The file holds none of the secrets' bytes.
    let secrets = me.to_secret_bytes().unwrap();
    let signed = back.signed_bytes();
    let x_secret = &secrets[secrets.len() - signed.len() - 2 - 64 - 32..][..32];
    assert!(!signed.windows(32).any(|w| w == x_secret));
    // Windows line ends and surrounding blank lines are fine.
    let crlf = format!("\r\n\n{}\r\n", text.replace('\n', "\r\n"));
    assert_eq!(PublicIdentity::from_armored(&crlf).unwrap(), back);
}

#[test]
fn fingerprint_reads_aloud_in_twelve_groups_of_five_digits() {
    let fp = identity(1).public().fingerprint();
    let groups = fp.groups();
    assert!(
        groups
            .iter()
            .all(|g| g.len() == 5 && g.bytes().all(|b| b.is_ascii_digit()))
    );
    assert_eq!(fp.hex().len(), 64);
    assert!(fp.matches(&fp.readable()));
    assert!(fp.matches(&fp.hex().to_uppercase()));
    assert!(!fp.matches(&identity(0).public().fingerprint().readable()));
    assert_ne!(fp, identity(0).public().fingerprint());
}

/// The safety-number digits are pinned by vectors computed independently
/// (Python's `hashlib`: SHA-512 over the label and the fingerprint, twelve
/// 40-bit big-endian chunks mod 100000). Mutation run: `i * 5` into
/// `i + 5` or `i / 5`, and `<<`/`|` in the fold, all passed the format
/// checks above and fail here.
#[test]
fn fingerprint_digits_match_the_vectors() {
    let counting: [u8; 32] = core::array::from_fn(|i| i as u8);
    assert_eq!(
        Fingerprint(counting).readable(),
        "92802 98494 53276 81792 25984 09659 90949 07534 70664 15013 00142 79280"
    );
    assert_eq!(
        Fingerprint([0xff; 32]).readable(),
        "51820 22172 10185 45765 71192 21007 39280 78375 11779 49393 64883 89929"
    );
    // Display is the digits, Debug the hex (mutation run: either `fmt`
    // emptied).
    let fp = Fingerprint(counting);
    assert_eq!(fp.to_string(), fp.readable());
    assert_eq!(format!("{fp:?}"), format!("Fingerprint({})", fp.hex()));
}

/// Two people's identities differ, and a `Debug` of one names who it is
/// (nickname, fingerprint) without its keys. Mutation run: `eq` always
/// true, `Debug` emptied.
#[test]
fn identities_compare_by_their_signed_bytes_and_debug_names_them() {
    use super::identity::sign_raw;
    let (x, y) = (identity(0), identity(1));
    let (a, b) = (x.public(), y.public());
    assert_ne!(a, b);
    assert_eq!(a, &PublicIdentity::from_armored(&a.to_armored()).unwrap());
    // The same key and fingerprint, another shard: another identity (an
    // `eq` over fingerprints only would call them equal).
    let signed = a.signed_bytes();
    let mut bundle = signed[..signed.len() - 2 - SIGNATURE_LEN].to_vec();
    bundle[13..17].copy_from_slice(&8u32.to_be_bytes());
    let moved = PublicIdentity::from_signed_bytes(&sign_raw(x.signing_key(), &bundle)).unwrap();
    assert_eq!(moved.fingerprint(), a.fingerprint());
    assert_eq!(moved.shard(), 8);
    assert_ne!(&moved, a);
    // Exactly these fields: no key, no signed bytes.
    assert_eq!(
        format!("{a:?}"),
        format!(
            "PublicIdentity {{ nickname: \"alice\", relay: {:?}, shard: 7, fingerprint: Fingerprint({}), .. }}",
            a.relay(),
            a.fingerprint().hex()
        )
    );
}

#[test]
fn private_identity_survives_its_secret_encoding_and_checks_it() {
    let me = identity(2);
    let bytes = me.to_secret_bytes().unwrap();
    let back = PrivateIdentity::from_secret_bytes(&bytes).unwrap();
    assert_eq!(back.public(), me.public());
    let mut damaged = bytes.to_vec();
    let last = damaged.len() - 1;
    damaged[last] ^= 1;
    assert!(PrivateIdentity::from_secret_bytes(&damaged).is_err());
    assert!(PrivateIdentity::from_secret_bytes(&bytes[..100]).is_err());
    // Swap in another identity's public part: refused as inconsistent.
    let other = identity(0);
    let ob = other.to_secret_bytes().unwrap();
    let tail = other.public().signed_bytes().len() + 2;
    let mut mixed = bytes[..bytes.len() - (me.public().signed_bytes().len() + 2)].to_vec();
    mixed.extend_from_slice(&ob[ob.len() - tail..]);
    assert_eq!(
        PrivateIdentity::from_secret_bytes(&mixed).err(),
        Some(IdentityError::Inconsistent)
    );
    // Each secret is checked on its own: the right RSA key with another
    // X25519 secret, or another ML-KEM seed, is refused (mutation run:
    // either `&&` of the check into `||`).
    let pkcs8_len = usize::from(u16::from_be_bytes([bytes[5], bytes[6]]));
    let x_at = 7 + pkcs8_len;
    // (Not the X25519 secret's first byte: clamping clears its low bits.)
    for at in [x_at + 1, x_at + 32] {
        let mut other = bytes.to_vec();
        other[at] ^= 1;
        assert_eq!(
            PrivateIdentity::from_secret_bytes(&other).err(),
            Some(IdentityError::Inconsistent),
            "byte {at}"
        );
    }
}

/// Adding a contact is a change to save (mutation run: `+=` into `*=`
/// in `add_contact`; a fresh router counts 0 changes).
#[test]
fn adding_a_contact_is_a_change_to_save() {
    let mut r = router(0);
    let before = r.changes();
    r.add_contact(&mut rand::rng(), ContactId(1), identity(1).public().clone())
        .unwrap();
    assert!(r.changes() > before);
}

/// A router's `Debug` says how many contacts it has and nothing else
/// (mutation run: `fmt` emptied).
#[test]
fn a_routers_debug_is_its_contact_count() {
    let net = properties::established();
    assert_eq!(format!("{:?}", net.routers[0]), "Router { contacts: 1 }");
}

fn armor(bytes: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
    format!("{BEGIN}\n{b64}\n{END}\n")
}

#[test]
fn every_malformed_identity_file_has_its_own_error() {
    let me = identity(0);
    let good = me.public().to_armored();
    let signed = me.public().signed_bytes().to_vec();
    let e = |t: &str| PublicIdentity::from_armored(t).unwrap_err();

    assert_eq!(e(&"A".repeat(MAX_FILE_LEN + 1)), IdentityError::TooLarge);
    assert_eq!(e("hello"), IdentityError::NotArmored);
    assert_eq!(
        e(&good.replace("IDENTITY-----\n", "IDENTITY----\n")),
        IdentityError::NotArmored
    );
    assert_eq!(e(&good.replace(END, "")), IdentityError::MissingEnd);
    assert_eq!(e(&format!("{good}junk\n")), IdentityError::TextAfterEnd);
    let mut lines: Vec<&str> = good.lines().collect();
    lines[3] = "!!!not base64!!!";
    assert_eq!(e(&lines.join("\n")), IdentityError::Base64(4));
    // The number is the file's line (1-based, BEGIN is line 1): on line 2
    // as well, where `n * 2` would say 0 (mutation run: `+` into `*`).
    let mut lines: Vec<&str> = good.lines().collect();
    lines[1] = "!!!not base64!!!";
    assert_eq!(e(&lines.join("\n")), IdentityError::Base64(2));

    let mut v = signed.clone();
    v[4] = 9;
    assert_eq!(e(&armor(&v)), IdentityError::UnknownVersion(9));
    let mut v = signed.clone();
    v[0] = b'X';
    assert_eq!(e(&armor(&v)), IdentityError::BadMagic);
    assert_eq!(
        e(&armor(&signed[..signed.len() - 10])),
        IdentityError::Truncated
    );
    let mut v = signed.clone();
    v.extend_from_slice(b"trailing");
    assert_eq!(e(&armor(&v)), IdentityError::TrailingBytes(8));
    // Any change to a signed field breaks the signature.
    let mut v = signed.clone();
    let nick_at = signed.len() - 2 - SIGNATURE_LEN - 5;
    v[nick_at] = b'A';
    assert_eq!(e(&armor(&v)), IdentityError::BadSignature);
    let mut v = signed.clone();
    let sig_at = signed.len() - 1;
    v[sig_at] ^= 1;
    assert_eq!(e(&armor(&v)), IdentityError::BadSignature);
}

/// The size limit is "at most [`MAX_FILE_LEN`] bytes": a good file padded
/// with blank lines to exactly the limit is read, one byte more is refused
/// for its size (mutation run: `>` turned into `>=` in `from_armored`
/// refuses the file at the limit and turns this red).
#[test]
fn an_identity_file_of_exactly_the_limit_is_read() {
    let me = identity(0);
    let good = me.public().to_armored();
    let pad = MAX_FILE_LEN - good.len();
    let at_limit = format!("{good}{}", "\n".repeat(pad));
    assert_eq!(at_limit.len(), MAX_FILE_LEN);
    assert_eq!(
        PublicIdentity::from_armored(&at_limit).unwrap(),
        *me.public()
    );
    let over = format!("{at_limit}\n");
    assert_eq!(
        PublicIdentity::from_armored(&over).unwrap_err(),
        IdentityError::TooLarge
    );
}

/// Bundles signed correctly but with unusable fields are refused for the
/// field, not for the signature.
#[test]
fn well_signed_bundles_with_bad_fields_are_refused() {
    use super::identity::sign_raw;
    let me = identity(0);
    let signed = me.public().signed_bytes();
    let bundle_len = signed.len() - 2 - SIGNATURE_LEN;
    let bundle = &signed[..bundle_len];
    let resign = |edit: &dyn Fn(&mut Vec<u8>)| {
        let mut b = bundle.to_vec();
        edit(&mut b);
        PublicIdentity::from_signed_bytes(&sign_raw(me.signing_key(), &b)).unwrap_err()
    };
    // Layout: magic 4, version 1, created 8, shard 4, x25519 32, ek 1184.
    assert_eq!(resign(&|b| b[17..49].fill(0)), IdentityError::BadX25519);
    assert_eq!(
        resign(&|b| b[49..49 + MLKEM_EK_LEN].fill(0xff)),
        IdentityError::BadMlKem
    );
    assert_eq!(
        resign(&|b| {
            let at = b.len() - 5;
            b[at] = 0x07;
        }),
        IdentityError::BadNickname("it contains control characters")
    );
    // A key encoding declared longer than 600 bytes is refused for that,
    // before anything is read from it (mutation run: `>` into `==` let
    // 601 through to a truncation error).
    for declared in [601u16, u16::MAX] {
        assert_eq!(
            resign(&|b| b[49 + MLKEM_EK_LEN..51 + MLKEM_EK_LEN]
                .copy_from_slice(&declared.to_be_bytes())),
            IdentityError::BadRsaKey("the key encoding is too long"),
            "{declared}"
        );
    }
    // Exactly 600 bytes is within the bound: such an encoding is read,
    // and refused as no RSA key (mutation run: `>` into `>=`).
    let at = 49 + MLKEM_EK_LEN;
    let old_len = usize::from(u16::from_be_bytes([bundle[at], bundle[at + 1]]));
    assert_eq!(
        resign(&|b| {
            let rest = b[at + 2 + old_len..].to_vec();
            b.truncate(at);
            b.extend_from_slice(&600u16.to_be_bytes());
            b.extend_from_slice(&[0x30; 600]);
            b.extend_from_slice(&rest);
        }),
        IdentityError::BadRsaKey("the key is not a valid RSA public key")
    );
    // The bundle with another RSA key in it, signed by that key.
    let with_key = |bits: usize| {
        let key = rsa::pss::SigningKey::<sha2::Sha256>::random(&mut rand::rng(), bits).unwrap();
        let spki = rsa::pkcs8::EncodePublicKey::to_public_key_der(
            &rsa::signature::Keypair::verifying_key(&key),
        )
        .unwrap();
        let mut b = bundle[..49 + MLKEM_EK_LEN].to_vec();
        let rest_at = 49
            + MLKEM_EK_LEN
            + 2
            + usize::from(u16::from_be_bytes([
                bundle[49 + MLKEM_EK_LEN],
                bundle[50 + MLKEM_EK_LEN],
            ]));
        b.extend_from_slice(&(spki.as_bytes().len() as u16).to_be_bytes());
        b.extend_from_slice(spki.as_bytes());
        b.extend_from_slice(&bundle[rest_at..]);
        PublicIdentity::from_signed_bytes(&sign_raw(&key, &b)).unwrap_err()
    };
    // A 2048-bit key is refused for its size, and so is a 3071-bit one,
    // whose modulus fills the same 384 bytes with its top bit clear
    // (mutation run: `n[0] & 0x80` into `|` or `^` let it through).
    for bits in [2048, 3071] {
        assert_eq!(
            with_key(bits),
            IdentityError::BadRsaKey("the key is not 3072 bits"),
            "{bits}"
        );
    }
}

#[test]
fn nicknames_are_checked_at_creation() {
    let r = relay();
    for bad in [
        "",
        "   ",
        "tab\there",
        &"x".repeat(65),
        "alice\u{202E}gnp.exe",
        "zero\u{200B}width",
        "\u{2066}isolated",
        "bom\u{FEFF}",
    ] {
        assert!(matches!(
            PrivateIdentity::generate(&mut rand::rng(), bad, &r, 1, 0),
            Err(IdentityError::BadNickname(_))
        ));
    }
}

/// "At most 64 bytes", counted in bytes: 64 one-byte or 32 two-byte
/// characters are a nickname, one byte more is not (mutation run: `>`
/// into `>=` in `validate_nickname`).
#[test]
fn a_nickname_of_exactly_64_bytes_is_accepted() {
    use super::identity::validate_nickname;
    assert!(validate_nickname(&"x".repeat(64)).is_ok());
    assert!(validate_nickname(&"\u{e9}".repeat(32)).is_ok());
    assert!(validate_nickname(&"x".repeat(65)).is_err());
    assert!(validate_nickname(&format!("x{}", "\u{e9}".repeat(32))).is_err());
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    #[test]
    fn import_never_panics_on_text(s in "\\PC{0,3000}") {
        let _ = PublicIdentity::from_armored(&s);
    }

    #[test]
    fn mutated_identity_files_are_refused_or_unchanged(
        at in 0usize..2200, byte: u8, cut in 0usize..2200
    ) {
        let me = identity(1);
        let signed = me.public().signed_bytes().to_vec();
        let mut v = signed.clone();
        let i = at % v.len();
        v[i] = byte;
        v.truncate(v.len() - cut % 8);
        if let Ok(p) = PublicIdentity::from_signed_bytes(&v) {
            proptest::prop_assert_eq!(p.signed_bytes(), signed.as_slice());
        }
    }
}

// ------------------------------------------------------- known answers

/// RFC 7748 section 6.1: X25519 between Alice's private and Bob's public key.
#[test]
fn x25519_rfc7748_shared_secret_vector() {
    let a: [u8; 32] = unhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
        .try_into()
        .unwrap();
    let b_pub: [u8; 32] = unhex("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
        .try_into()
        .unwrap();
    let shared = x25519_dalek::StaticSecret::from(a).diffie_hellman(&b_pub.into());
    assert_eq!(
        hex(shared.as_bytes()),
        "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742"
    );
}

/// RSA-PSS/SHA-256 (salt 32) signature made by OpenSSL 3.0 with a fixed
/// 3072-bit key, verified through the same calls identity import makes.
#[test]
fn rsa_pss_sha256_verifies_an_openssl_signature() {
    use rsa::pkcs8::DecodePublicKey as _;
    use rsa::signature::Verifier as _;
    let spki = include_bytes!("../vectors/rsa3072-pub.der");
    let sig = include_bytes!("../vectors/rsa3072-pss-sha256.sig");
    let key = rsa::pss::VerifyingKey::<sha2::Sha256>::from_public_key_der(spki).unwrap();
    let sig = rsa::pss::Signature::try_from(&sig[..]).unwrap();
    let msg = b"anonchat RSA-PSS known-answer test";
    key.verify(msg, &sig).unwrap();
    assert!(
        key.verify(b"anonchat RSA-PSS known-answer tesT", &sig)
            .is_err()
    );
}

/// ML-KEM-768 key generation from the seed 00 01 .. 3f, against the public
/// key published with the IETF LAMPS ML-KEM examples (as shipped in the
/// ml-kem crate's tests/examples/ML-KEM-768.pub); then a round trip.
#[test]
fn ml_kem_768_seed_vector_and_round_trip() {
    use ml_kem::kem::{Decapsulate as _, Encapsulate as _, KeyExport as _};
    use sha2::Digest as _;
    let seed: [u8; 64] = core::array::from_fn(|i| i as u8);
    let dk = ml_kem::DecapsulationKey768::from_seed(seed.into());
    let ek = dk.encapsulation_key().to_bytes();
    assert_eq!(ek.len(), MLKEM_EK_LEN);
    assert_eq!(
        hex(&sha2::Sha256::digest(ek)),
        "0b7934c83125c788995e2ba6bd761e33046b3e40571be53e023309a29f398cc9"
    );
    let (ct, k1) = dk
        .encapsulation_key()
        .encapsulate_with_rng(&mut rand::rng());
    assert_eq!(ct.len(), MLKEM_CT_LEN);
    assert_eq!(dk.decapsulate(&ct), k1);
}

mod adversary;
mod groups;
mod kat;
mod properties;
mod state;
