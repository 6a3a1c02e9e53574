//! HS256 JSON Web Tokens (RFC 7519), signed and verified with one shared secret.
//!
//! Hand-written on `hmac` + `sha2` rather than a JWT crate: we accept exactly one
//! algorithm, and the verifier sits on the hot path of every purchase, where a
//! general library's algorithm dispatch and allocations cost measurably.
//! Verification compares the MAC in constant time, requires `exp` no further
//! ahead than the key's longest lifetime (a leaked token must not work for
//! ever), and honours `nbf`; `iat` is optional and ignored.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use stampede_domain::account::Role;
use stampede_domain::ids::UserId;
use stampede_domain::time::Timestamp;

use super::verified::Verified;

type HmacSha256 = Hmac<Sha256>;

/// `{"alg":"HS256","typ":"JWT"}`, encoded once.
const HEADER: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9";

/// What a valid token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    pub user: UserId,
    pub role: Role,
    /// Expiry, seconds since the epoch.
    pub exp: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("malformed token")]
    Malformed,
    #[error("unsupported token algorithm")]
    Algorithm,
    #[error("bad token signature")]
    Signature,
    #[error("token expired")]
    Expired,
    #[error("token not valid yet")]
    NotYetValid,
    #[error("token lifetime too long")]
    TooLong,
    #[error("invalid token claims")]
    Claims,
}

#[derive(Deserialize)]
struct Header<'a> {
    alg: &'a str,
}

#[derive(Serialize, Deserialize)]
struct RawClaims {
    sub: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    role: Option<String>,
    exp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nbf: Option<i64>,
}

/// The shared secret, ready to sign and verify. Clones share the memory of
/// tokens verified lately.
#[derive(Clone)]
pub struct JwtKey {
    mac: HmacSha256,
    /// Tokens whose `exp` is further ahead than this are refused.
    max_ttl_secs: i64,
    verified: Arc<Verified>,
}

impl std::fmt::Debug for JwtKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JwtKey(***)")
    }
}

impl JwtKey {
    /// The longest token lifetime accepted unless configured: 7 days.
    pub const DEFAULT_MAX_TTL_SECS: u32 = 7 * 24 * 3600;

    pub fn new(secret: &[u8]) -> Self {
        // HMAC takes keys of any length.
        let mac = match HmacSha256::new_from_slice(secret) {
            Ok(mac) => mac,
            Err(_) => unreachable_hmac(),
        };
        Self {
            mac,
            max_ttl_secs: i64::from(Self::DEFAULT_MAX_TTL_SECS),
            verified: Arc::new(Verified::new()),
        }
    }

    /// Refuses tokens whose `exp` is more than `secs` ahead.
    pub fn with_max_ttl(self, secs: u32) -> Self {
        Self {
            max_ttl_secs: i64::from(secs),
            // Verified under the old bound: forget.
            verified: Arc::new(Verified::new()),
            ..self
        }
    }

    /// A signed token for `user` with `role`, valid until `exp` (epoch seconds).
    pub fn sign(&self, user: &UserId, role: Role, exp: i64) -> String {
        let claims = RawClaims {
            sub: user.as_str().to_owned(),
            role: Some(role.as_str().to_owned()),
            exp,
            nbf: None,
        };
        // Serialising a struct of strings and integers cannot fail.
        let payload = serde_json::to_vec(&claims).unwrap_or_default();
        let mut token = String::with_capacity(HEADER.len() + payload.len() * 4 / 3 + 48);
        token.push_str(HEADER);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(&payload, &mut token);
        let mut mac = self.mac.clone();
        mac.update(token.as_bytes());
        let signature = mac.finalize().into_bytes();
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(signature, &mut token);
        token
    }

    /// Checks signature, algorithm, validity period and claims; a token
    /// verified lately only has its validity period checked again.
    pub fn verify(&self, token: &str, now: Timestamp) -> Result<Claims, JwtError> {
        let now_secs = now.as_millis().div_euclid(1000);
        if let Some(claims) = self.verified.get(token, now_secs, self.max_ttl_secs) {
            return Ok(claims);
        }
        let (claims, nbf) = self.verify_fully(token, now_secs)?;
        self.verified.put(token, &claims, nbf);
        Ok(claims)
    }

    fn verify_fully(&self, token: &str, now_secs: i64) -> Result<(Claims, Option<i64>), JwtError> {
        let (signed, signature) = token.rsplit_once('.').ok_or(JwtError::Malformed)?;
        let (header, payload) = signed.split_once('.').ok_or(JwtError::Malformed)?;
        let mut signature_bytes = [0u8; 32];
        match URL_SAFE_NO_PAD.decode_slice(signature, &mut signature_bytes) {
            Ok(32) => {}
            _ => return Err(JwtError::Signature),
        }
        let mut mac = self.mac.clone();
        mac.update(signed.as_bytes());
        mac.verify_slice(&signature_bytes)
            .map_err(|_| JwtError::Signature)?;

        // Only now, with the signature good, look inside.
        if header != HEADER {
            let bytes = URL_SAFE_NO_PAD
                .decode(header)
                .map_err(|_| JwtError::Malformed)?;
            let header: Header<'_> =
                serde_json::from_slice(&bytes).map_err(|_| JwtError::Malformed)?;
            if header.alg != "HS256" {
                return Err(JwtError::Algorithm);
            }
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| JwtError::Malformed)?;
        let raw: RawClaims = serde_json::from_slice(&bytes).map_err(|_| JwtError::Claims)?;
        if raw.exp <= now_secs {
            return Err(JwtError::Expired);
        }
        // `exp` is past `now`, so the difference is positive; saturating
        // keeps `exp = i64::MAX` from wrapping.
        if raw.exp.saturating_sub(now_secs) > self.max_ttl_secs {
            return Err(JwtError::TooLong);
        }
        if raw.nbf.is_some_and(|nbf| nbf > now_secs) {
            return Err(JwtError::NotYetValid);
        }
        let role = match raw.role.as_deref() {
            None => Role::Customer,
            Some(text) => Role::parse(text).ok_or(JwtError::Claims)?,
        };
        let user = UserId::parse(raw.sub).map_err(|_| JwtError::Claims)?;
        let claims = Claims {
            user,
            role,
            exp: raw.exp,
        };
        Ok((claims, raw.nbf))
    }
}

#[cold]
fn unreachable_hmac() -> ! {
    // `Hmac::new_from_slice` only fails for fixed-key-size MACs; HMAC has none.
    panic!("HMAC-SHA256 accepts keys of any length")
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Timestamp = Timestamp::from_millis(1_800_000_000_000);
    const LATER: i64 = 1_800_000_600;

    fn user(name: &str) -> UserId {
        UserId::parse(name).unwrap()
    }

    #[test]
    fn a_signed_token_verifies_with_its_claims() {
        let key = JwtKey::new(b"secret");
        let token = key.sign(&user("alice"), Role::Admin, LATER);
        let claims = key.verify(&token, NOW).unwrap();
        assert_eq!(claims.user, user("alice"));
        assert_eq!(claims.role, Role::Admin);
    }

    #[test]
    fn a_remembered_token_is_still_held_to_its_validity_period() {
        let key = JwtKey::new(b"secret");
        let token = key.sign(&user("alice"), Role::Customer, LATER);
        assert!(key.verify(&token, NOW).is_ok());
        // From memory now: still exact about time.
        assert_eq!(key.verify(&token, NOW).unwrap().user, user("alice"));
        let after = Timestamp::from_millis(LATER * 1000);
        assert_eq!(key.verify(&token, after), Err(JwtError::Expired));
        let long_before = Timestamp::from_millis((LATER - 8 * 24 * 3600) * 1000);
        assert_eq!(key.verify(&token, long_before), Err(JwtError::TooLong));
        // A clone shares the memory; a key with another secret does not.
        assert!(key.clone().verify(&token, NOW).is_ok());
        assert_eq!(
            JwtKey::new(b"other").verify(&token, NOW),
            Err(JwtError::Signature)
        );
    }

    #[test]
    fn only_the_exact_token_remembered_skips_the_check() {
        let key = JwtKey::new(b"secret");
        let token = key.sign(&user("alice"), Role::Customer, LATER);
        key.verify(&token, NOW).unwrap();
        // The same signature on other claims, or one byte changed anywhere.
        let (_, signature) = token.rsplit_once('.').unwrap();
        let other = key.sign(&user("mallory"), Role::Admin, LATER);
        let (other_signed, _) = other.rsplit_once('.').unwrap();
        let grafted = format!("{other_signed}.{signature}");
        assert_eq!(key.verify(&grafted, NOW), Err(JwtError::Signature));
        for at in [0, token.len() / 2, token.len() - 1] {
            let mut bytes = token.clone().into_bytes();
            bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
            let changed = String::from_utf8(bytes).unwrap();
            assert!(key.verify(&changed, NOW).is_err(), "byte {at}");
        }
        assert!(key.verify(&token, NOW).is_ok());
    }

    #[test]
    fn forged_expired_and_malformed_tokens_are_refused() {
        let key = JwtKey::new(b"secret");
        let other = JwtKey::new(b"other secret");
        let forged = other.sign(&user("alice"), Role::Admin, LATER);
        assert_eq!(key.verify(&forged, NOW), Err(JwtError::Signature));
        let expired = key.sign(&user("alice"), Role::Customer, NOW.as_millis() / 1000);
        assert_eq!(key.verify(&expired, NOW), Err(JwtError::Expired));
        for bad in ["", "abc", "a.b", "a.b.c", "..."] {
            assert!(key.verify(bad, NOW).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn a_tampered_payload_breaks_the_signature() {
        let key = JwtKey::new(b"secret");
        let token = key.sign(&user("alice"), Role::Customer, LATER);
        let parts: Vec<&str> = token.split('.').collect();
        let admin =
            URL_SAFE_NO_PAD.encode(format!(r#"{{"sub":"alice","role":"admin","exp":{LATER}}}"#));
        let tampered = format!("{}.{}.{}", parts[0], admin, parts[2]);
        assert_eq!(key.verify(&tampered, NOW), Err(JwtError::Signature));
    }

    fn hand_made(key: &[u8], header: &str, payload: &str) -> String {
        let signed = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(payload)
        );
        let mut mac = HmacSha256::new_from_slice(key).unwrap();
        mac.update(signed.as_bytes());
        format!(
            "{signed}.{}",
            URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
        )
    }

    #[test]
    fn tokens_from_other_issuers_verify_and_default_to_customer() {
        // Another library's header layout, no role claim.
        let token = hand_made(
            b"secret",
            r#"{"typ":"JWT","alg":"HS256"}"#,
            &format!(r#"{{"sub":"bob","exp":{LATER},"iat":1}}"#),
        );
        let claims = JwtKey::new(b"secret").verify(&token, NOW).unwrap();
        assert_eq!(claims.role, Role::Customer);
    }

    #[test]
    fn tokens_living_past_the_cap_or_not_valid_yet_are_refused() {
        let now = NOW.as_millis() / 1000;
        let key = JwtKey::new(b"secret");
        let week = i64::from(JwtKey::DEFAULT_MAX_TTL_SECS);
        let at_cap = key.sign(&user("alice"), Role::Customer, now + week);
        assert!(key.verify(&at_cap, NOW).is_ok());
        for exp in [now + week + 1, i64::MAX] {
            let long = key.sign(&user("alice"), Role::Admin, exp);
            assert_eq!(key.verify(&long, NOW), Err(JwtError::TooLong), "{exp}");
        }
        let short = JwtKey::new(b"secret").with_max_ttl(60);
        let hour = short.sign(&user("alice"), Role::Customer, now + 3600);
        assert_eq!(short.verify(&hour, NOW), Err(JwtError::TooLong));

        let claims = |nbf: i64| format!(r#"{{"sub":"bob","exp":{LATER},"nbf":{nbf},"iat":{now}}}"#);
        let future = hand_made(b"secret", r#"{"alg":"HS256"}"#, &claims(now + 1));
        assert_eq!(key.verify(&future, NOW), Err(JwtError::NotYetValid));
        for nbf in [now, now - 1, i64::MIN] {
            let valid = hand_made(b"secret", r#"{"alg":"HS256"}"#, &claims(nbf));
            assert!(key.verify(&valid, NOW).is_ok(), "{nbf}");
        }
        let not_a_number = hand_made(
            b"secret",
            r#"{"alg":"HS256"}"#,
            &format!(r#"{{"sub":"bob","exp":{LATER},"nbf":"soon"}}"#),
        );
        assert_eq!(key.verify(&not_a_number, NOW), Err(JwtError::Claims));
    }

    #[test]
    fn tokens_without_exp_or_sub_or_with_other_algorithms_are_refused() {
        let key = JwtKey::new(b"secret");
        let no_exp = hand_made(b"secret", r#"{"alg":"HS256"}"#, r#"{"sub":"bob"}"#);
        assert_eq!(key.verify(&no_exp, NOW), Err(JwtError::Claims));
        let no_sub = hand_made(
            b"secret",
            r#"{"alg":"HS256"}"#,
            &format!(r#"{{"exp":{LATER}}}"#),
        );
        assert_eq!(key.verify(&no_sub, NOW), Err(JwtError::Claims));
        let empty_sub = hand_made(
            b"secret",
            r#"{"alg":"HS256"}"#,
            &format!(r#"{{"sub":"","exp":{LATER}}}"#),
        );
        assert_eq!(key.verify(&empty_sub, NOW), Err(JwtError::Claims));
        let bad_role = hand_made(
            b"secret",
            r#"{"alg":"HS256"}"#,
            &format!(r#"{{"sub":"a","role":"root","exp":{LATER}}}"#),
        );
        assert_eq!(key.verify(&bad_role, NOW), Err(JwtError::Claims));
        let none_alg = hand_made(
            b"secret",
            r#"{"alg":"none"}"#,
            &format!(r#"{{"sub":"a","exp":{LATER}}}"#),
        );
        assert_eq!(key.verify(&none_alg, NOW), Err(JwtError::Algorithm));
    }
}
