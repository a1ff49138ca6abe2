#![no_main]
//! What a member or the relay can do to group cells: strict payload
//! decoding, mutated cells never open, a cell opens once. See
//! `anonchat_protocol::fuzzing::group_cell`.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| anonchat_protocol::fuzzing::group_cell(data));
