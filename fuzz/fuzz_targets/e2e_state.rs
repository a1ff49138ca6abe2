#![no_main]
//! Session state import. First byte even: the rest is a saved state as is;
//! odd: edits to a real saved state (format 1 vectors, or a state from a
//! scripted conversation, whose next batch is then read). What imports
//! must export to a fixed point (export, import, export: the same bytes)
//! and live on without panicking. See
//! `anonchat_protocol::fuzzing::state_import` and `state_edited`.
use anonchat_protocol::fuzzing;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    if which % 2 == 0 {
        fuzzing::state_import(rest);
    } else {
        fuzzing::state_edited(rest);
    }
});
