//! Signed webhooks, both ways: the payment provider's callbacks to Stampede and
//! Stampede's notifications to subscribers. The header is
//! `Stampede-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`
//! (the scheme Stripe made common): the timestamp is signed with the body, so a
//! captured request cannot be replayed outside the tolerance window, and the
//! comparison is constant-time.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use stampede_domain::time::Timestamp;

pub const HEADER: &str = "stampede-signature";

type HmacSha256 = Hmac<Sha256>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing or malformed signature header")]
    Malformed,
    #[error("signature does not match")]
    Mismatch,
    #[error("signature timestamp outside the tolerance window")]
    Stale,
}

fn mac(secret: &[u8], timestamp: i64, body: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
    let mut mac = match HmacSha256::new_from_slice(secret) {
        Ok(mac) => mac,
        Err(_) => unreachable_hmac(),
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

#[cold]
fn unreachable_hmac() -> ! {
    panic!("HMAC-SHA256 accepts keys of any length")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The header value for `body` signed at `now`.
pub fn sign(secret: &[u8], body: &[u8], now: Timestamp) -> String {
    let t = now.as_millis().div_euclid(1000);
    let signature = mac(secret, t, body).finalize().into_bytes();
    format!("t={t},v1={}", hex(&signature))
}

/// Checks a header value against `body`, accepting timestamps within
/// `tolerance_secs` of `now` either way. Several `v1=` entries are allowed
/// (secret rotation); one match is enough.
pub fn verify(
    secret: &[u8],
    header: &str,
    body: &[u8],
    now: Timestamp,
    tolerance_secs: i64,
) -> Result<(), SignatureError> {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", value)) => timestamp = value.parse::<i64>().ok(),
            Some(("v1", value)) => signatures.push(unhex(value).ok_or(SignatureError::Malformed)?),
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::Malformed)?;
    if signatures.is_empty() {
        return Err(SignatureError::Malformed);
    }
    // Checked: `t` is the sender's, and `now − t` overflows for a `t` near
    // i64::MIN or MAX, where wrapping could land inside the window.
    let now_secs = now.as_millis().div_euclid(1000);
    let age = now_secs.checked_sub(timestamp).and_then(i64::checked_abs);
    if age.is_none_or(|age| age > tolerance_secs) {
        return Err(SignatureError::Stale);
    }
    let expected = mac(secret, timestamp, body);
    if signatures
        .iter()
        .any(|candidate| expected.clone().verify_slice(candidate).is_ok())
    {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Timestamp = Timestamp::from_millis(1_800_000_000_000);

    #[test]
    fn a_signed_body_verifies_and_a_changed_one_does_not() {
        let header = sign(b"secret", b"{\"a\":1}", NOW);
        assert_eq!(verify(b"secret", &header, b"{\"a\":1}", NOW, 300), Ok(()));
        assert_eq!(
            verify(b"secret", &header, b"{\"a\":2}", NOW, 300),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(b"other", &header, b"{\"a\":1}", NOW, 300),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn replays_outside_the_tolerance_are_refused() {
        let header = sign(b"secret", b"body", NOW);
        let later = NOW.plus_secs(301);
        assert_eq!(
            verify(b"secret", &header, b"body", later, 300),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify(b"secret", &header, b"body", NOW.plus_secs(300), 300),
            Ok(())
        );
    }

    /// A header for `body` validly signed with timestamp `t`, whatever `t` is.
    fn signed_at(secret: &[u8], body: &[u8], t: i64) -> String {
        let signature = mac(secret, t, body).finalize().into_bytes();
        format!("t={t},v1={}", hex(&signature))
    }

    #[test]
    fn extreme_timestamps_are_stale_not_wrapped_into_the_window() {
        let now = NOW.as_millis() / 1000;
        for t in [
            i64::MIN + now, // now − 2^63: `now − t` wrapped to i64::MIN, whose abs wrapped too
            i64::MIN,
            i64::MIN + 1,
            i64::MAX,
            now.wrapping_add(i64::MAX),
            now - 301,
            now + 301,
        ] {
            let header = signed_at(b"secret", b"body", t);
            assert_eq!(
                verify(b"secret", &header, b"body", NOW, 300),
                Err(SignatureError::Stale),
                "t = {t}"
            );
        }
        for t in [now - 300, now, now + 300] {
            let header = signed_at(b"secret", b"body", t);
            assert_eq!(verify(b"secret", &header, b"body", NOW, 300), Ok(()));
        }
        // A server clock at either end of the range, against a `t` at the other.
        for (now, t) in [(i64::MIN / 1000, i64::MAX), (i64::MAX / 1000, i64::MIN)] {
            let at = Timestamp::from_millis(now * 1000);
            let header = signed_at(b"secret", b"body", t);
            assert_eq!(
                verify(b"secret", &header, b"body", at, 300),
                Err(SignatureError::Stale)
            );
            let header = signed_at(b"secret", b"body", now);
            assert_eq!(verify(b"secret", &header, b"body", at, 300), Ok(()));
        }
    }

    #[test]
    fn malformed_headers_are_refused() {
        for bad in ["", "t=1", "v1=00", "t=x,v1=00", "t=1,v1=zz", "t=1,v1=0"] {
            assert!(verify(b"s", bad, b"", NOW, i64::MAX).is_err(), "{bad}");
        }
    }

    #[test]
    fn one_matching_signature_among_several_is_enough() {
        let good = sign(b"new", b"body", NOW);
        let v1 = good.split_once(",v1=").unwrap().1;
        let header = format!(
            "t={},v1={},v1={v1}",
            NOW.as_millis() / 1000,
            "00".repeat(32)
        );
        assert_eq!(verify(b"new", &header, b"body", NOW, 300), Ok(()));
    }
}
