#![no_main]
use anonchat_protocol::e2e::PublicIdentity;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The binary form, and the same bytes as an identity file's text.
    if let Ok(id) = PublicIdentity::from_signed_bytes(data) {
        let again = PublicIdentity::from_armored(&id.to_armored()).expect("exported file imports");
        assert_eq!(again, id);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = PublicIdentity::from_armored(text);
    }
});
