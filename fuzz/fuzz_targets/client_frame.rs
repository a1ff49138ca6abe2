#![no_main]
use anonchat_protocol::wire::{frame_plaintext_len, ClientFrame, MIN_CELL_SIZE};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let cell = MIN_CELL_SIZE;
    let mut plain = data.to_vec();
    plain.resize(frame_plaintext_len(cell), 0);
    for input in [data, plain.as_slice()] {
        if let Ok(frame) = ClientFrame::decode(input, cell) {
            let encoded = frame.encode(cell).expect("decoded frame encodes");
            assert_eq!(encoded, input, "decode -> encode is the identity");
            assert_eq!(ClientFrame::decode(&encoded, cell).unwrap(), frame);
        }
    }
});
