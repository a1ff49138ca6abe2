#![no_main]
//! What an authenticated contact puts in its session cells: the records
//! decoder (decode, encode, decode is stable) and the inbox behind it
//! (messages in order, once, at once whatever the ids and floors). See
//! `anonchat_protocol::fuzzing::payload`.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| anonchat_protocol::fuzzing::payload(data));
