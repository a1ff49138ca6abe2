#![no_main]
//! The v2 session start. The first byte picks what the rest is:
//! 0 a handshake message Bob reads as an INIT from Alice (refused: nobody
//! without their keys can make one), 1 an ACCEPT to Alice's INIT (refused
//! likewise), 2 opened handshake cells fed to the reassembly, 3 a genuine
//! handshake's seed and the relay's edits (any edit refused, none: one
//! session both ways). See `anonchat_protocol::fuzzing::handshake_*`.
use anonchat_protocol::fuzzing;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    match which % 4 {
        0 => fuzzing::handshake_init(rest),
        1 => fuzzing::handshake_accept(rest),
        2 => fuzzing::handshake_fragments(rest),
        _ => fuzzing::handshake_tampered(rest),
    }
});
