//! Bearer tokens: `JwtKey::verify` on any text never panics, accepts only
//! what the key signed, within its lifetime cap; and any `sub` the verifier
//! can name round-trips through `sign`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stampede_app::auth::JwtKey;
use stampede_domain::account::Role;
use stampede_domain::ids::UserId;
use stampede_domain::time::Timestamp;

const NOW: Timestamp = Timestamp::from_millis(1_800_000_000_000);

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let key = JwtKey::new(b"fuzz-secret");
    let now = NOW.as_millis() / 1000;
    if let Ok(claims) = key.verify(text, NOW) {
        assert!(claims.exp > now, "an expired token verified");
        assert!(
            claims.exp - now <= i64::from(JwtKey::DEFAULT_MAX_TTL_SECS),
            "a token past the lifetime cap verified"
        );
        assert!(
            JwtKey::new(b"another secret").verify(text, NOW).is_err(),
            "a token verified under two keys"
        );
    }
    if let Ok(user) = UserId::parse(text) {
        let token = key.sign(&user, Role::Admin, now + 60);
        let claims = key.verify(&token, NOW).expect("a token we signed");
        assert_eq!(claims.user, user);
        assert_eq!(claims.role, Role::Admin);
    }
});
