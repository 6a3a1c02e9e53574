//! The payment webhook's `Stampede-Signature` header: `verify` on any header
//! and body never panics and accepts no signature made with another secret;
//! a header `sign` made verifies.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stampede_app::auth::signature;
use stampede_domain::time::Timestamp;

const NOW: Timestamp = Timestamp::from_millis(1_800_000_000_000);
const SECRET: &[u8] = b"fuzz-payment-secret";

fuzz_target!(|data: &[u8]| {
    // The first byte splits the input into a header and a body.
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let (header, body) = rest.split_at(usize::from(split).min(rest.len()));
    if let Ok(header) = std::str::from_utf8(header) {
        let _ = signature::verify(SECRET, header, body, NOW, 300);
    }
    let signed = signature::sign(SECRET, body, NOW);
    assert!(signature::verify(SECRET, &signed, body, NOW, 300).is_ok());
    assert!(signature::verify(b"another secret", &signed, body, NOW, 300).is_err());
});
