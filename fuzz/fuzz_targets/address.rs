#![no_main]
use anonchat_protocol::wire::RelayAddress;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(addr) = s.parse::<RelayAddress>() {
            // What parses prints back to something that parses to the same.
            let again: RelayAddress = addr.to_string().parse().expect("printed address parses");
            assert_eq!(again, addr);
        }
    }
});
