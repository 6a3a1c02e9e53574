//! Tokens verified lately, so a buyer's retries skip the HMAC, the base64
//! and the claims' JSON: a crowd sends the same token many times a second.
//!
//! A direct-mapped table of a fixed number of slots (a newer token takes
//! the slot of an older one), each holding the whole token: a hit compares
//! every byte, so nothing but the exact token verified earlier is served
//! from here, and a miss costs one slot's lock and a compare. Its validity
//! period is checked again on every hit; a token that failed verification
//! is never kept.

use std::sync::Mutex;

use super::jwt::Claims;

/// Slots in the table, a power of two: at most this many tokens are
/// remembered (about 300 bytes each with their claims).
const SLOT_BITS: u32 = 15;
const SLOTS: usize = 1 << SLOT_BITS;

/// Longer tokens verify but are not remembered, so the table holds at most
/// `SLOTS` × this many bytes of tokens (32 MiB) whatever claims an issuer
/// adds; ours are under 200 bytes.
const MAX_TOKEN_BYTES: usize = 1024;

struct Entry {
    token: Box<str>,
    claims: Claims,
    nbf: Option<i64>,
}

pub(super) struct Verified {
    slots: Box<[Mutex<Option<Entry>>]>,
}

impl Verified {
    pub(super) fn new() -> Self {
        Self {
            slots: (0..SLOTS).map(|_| Mutex::new(None)).collect(),
        }
    }

    /// The slot is picked by the token's last eight characters, 48 bits of
    /// its signature, spread by a multiplication: no hash of the whole
    /// token. Only tokens that verified ever take a slot, and their
    /// signatures are HMAC outputs nobody without the secret can aim; a
    /// token that lands on a taken slot only costs its owner a verification.
    fn slot(&self, token: &str) -> &Mutex<Option<Entry>> {
        let bytes = token.as_bytes();
        let tail = &bytes[bytes.len().saturating_sub(8)..];
        let mut word = [0u8; 8];
        word[..tail.len()].copy_from_slice(tail);
        let spread = u64::from_le_bytes(word).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        &self.slots[(spread >> (64 - SLOT_BITS)) as usize]
    }

    /// The claims of `token` if it was verified here and is valid at
    /// `now_secs` (with `exp` at most `max_ttl_secs` ahead); otherwise the
    /// caller verifies it in full and says why it fails.
    pub(super) fn get(&self, token: &str, now_secs: i64, max_ttl_secs: i64) -> Option<Claims> {
        let slot = self.slot(token).lock().ok()?;
        let entry = slot.as_ref().filter(|e| &*e.token == token)?;
        let exp = entry.claims.exp;
        let valid = exp > now_secs
            && exp.saturating_sub(now_secs) <= max_ttl_secs
            && entry.nbf.is_none_or(|nbf| nbf <= now_secs);
        valid.then(|| entry.claims.clone())
    }

    /// Remembers a token that has just verified.
    pub(super) fn put(&self, token: &str, claims: &Claims, nbf: Option<i64>) {
        if token.len() > MAX_TOKEN_BYTES {
            return;
        }
        if let Ok(mut slot) = self.slot(token).lock() {
            *slot = Some(Entry {
                token: token.into(),
                claims: claims.clone(),
                nbf,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::JwtKey;
    use stampede_domain::account::Role;
    use stampede_domain::ids::UserId;

    #[test]
    fn tokens_past_the_size_cap_are_not_remembered() {
        let verified = Verified::new();
        let claims = Claims {
            user: UserId::parse("ada").unwrap(),
            role: Role::Customer,
            exp: 1_800_000_000,
        };
        let small = "a".repeat(MAX_TOKEN_BYTES);
        let large = "b".repeat(MAX_TOKEN_BYTES + 1);
        verified.put(&small, &claims, None);
        verified.put(&large, &claims, None);
        assert_eq!(verified.get(&small, 0, i64::MAX), Some(claims));
        assert_eq!(verified.get(&large, 0, i64::MAX), None);
    }

    #[test]
    fn signatures_spread_over_the_slots() {
        let key = JwtKey::new(b"secret");
        let verified = Verified::new();
        let tokens = 20_000;
        let slots: std::collections::HashSet<*const Mutex<Option<Entry>>> = (0..tokens)
            .map(|i| {
                let user = UserId::parse(format!("buyer-{i}")).unwrap();
                let token = key.sign(&user, Role::Customer, 1_800_000_000);
                std::ptr::from_ref(verified.slot(&token))
            })
            .collect();
        // Uniformly spread, 20,000 tokens take about 14,000 of the 32,768
        // slots; a few bits of the signature would give 4,096 at most.
        assert!(slots.len() > 12_000, "{} slots", slots.len());
    }
}
