#![no_main]
//! Feeds arbitrary cells (and round numbers) to a router that has a contact
//! and an established session: nothing may panic, and garbage must never
//! produce a message.
use std::sync::{Mutex, OnceLock};

use anonchat_protocol::e2e::{Config, ContactId, EventKind, PrivateIdentity, Router};
use anonchat_protocol::wire::RelayAddress;
use libfuzzer_sys::fuzz_target;

const CELL: usize = 512;

fn router() -> &'static Mutex<Router> {
    static R: OnceLock<Mutex<Router>> = OnceLock::new();
    R.get_or_init(|| {
        let relay = RelayAddress::new("127.0.0.1", 1, [7; 32]).unwrap();
        let mut rng = rand::rng();
        let a = PrivateIdentity::generate(&mut rng, "a", &relay, 1, 0).unwrap();
        let b = PrivateIdentity::generate(&mut rng, "b", &relay, 1, 0).unwrap();
        let config = Config { cell_size: CELL, retransmit_after_ms: 1000 };
        let (pa, pb) = (a.public().clone(), b.public().clone());
        let mut alice = Router::new(a, config).unwrap();
        let mut bob = Router::new(b, config).unwrap();
        alice.add_contact(ContactId(1), pb).unwrap();
        bob.add_contact(ContactId(0), pa).unwrap();
        alice.send(ContactId(1), b"hello").unwrap();
        for round in 1..8 {
            let (cell, _) = alice.next_cell(&mut rng, round, round * 500);
            bob.receive_cell(&mut rng, round, &cell);
        }
        Mutex::new(bob)
    })
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 8 {
        return;
    }
    let round = u64::from_le_bytes(data[..8].try_into().unwrap()) % 64;
    let mut cell = data[8..].to_vec();
    cell.resize(CELL, 0);
    let mut r = router().lock().unwrap();
    for e in r.receive_cell(&mut rand::rng(), round, &cell) {
        assert!(!matches!(e.kind, EventKind::Received { .. }), "garbage opened as a message");
    }
});
