#![no_main]
//! What a contact can send as group control messages (invitations,
//! rosters, sender keys, leaves): strict decoding and every bound of the
//! group state. See `anonchat_protocol::fuzzing::group_control`.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| anonchat_protocol::fuzzing::group_control(data));
