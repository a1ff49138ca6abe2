#![no_main]
use anonchat_protocol::wire::{respond, RelayKeypair, RelayParams, DEFAULT_CELL_SIZE};
use libfuzzer_sys::fuzz_target;

/// A fixed relay key: the fuzzer explores the parser, not the RNG.
const KEY: [u8; 32] = [0x42; 32];

fuzz_target!(|data: &[u8]| {
    let kp = RelayKeypair::from_private(KEY.into());
    let params = RelayParams {
        cell_size: DEFAULT_CELL_SIZE,
        round_ms: 500,
    };
    let _ = respond(&kp, data, params);
});
