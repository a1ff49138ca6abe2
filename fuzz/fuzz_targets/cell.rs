#![no_main]
//! Batches for a router with a live session, in the round its peer sent it
//! a real cell: random cells, the real cell, the real cell with bits
//! flipped after its tag, cells of the wrong size, in any order (round
//! consistent with the clock, rounds of 500 ms). Nothing may panic,
//! garbage never opens as a message, and the real message arrives exactly
//! when the first cell carrying its tag is the real one. See
//! `anonchat_protocol::fuzzing::cell`.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| anonchat_protocol::fuzzing::cell(data));
