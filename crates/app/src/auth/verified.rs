//! Tokens verified lately, so a buyer's retries skip the HMAC, the base64
//! and the claims' JSON: a crowd sends the same token many times a second.
//!
//! A direct-mapped table of a fixed number of slots (a newer token takes
//! the slot of an older one), each holding the whole token: a hit compares
//! every byte, so nothing but the exact token verified earlier is served
//! from here. Its validity period is checked again on every hit; a token
//! that failed verification is never kept.

use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;

use super::jwt::Claims;

/// Slots in the table: at most this many tokens are remembered (about
/// 300 bytes each with their claims).
const SLOTS: usize = 32_768;

struct Entry {
    token: Box<str>,
    claims: Claims,
    nbf: Option<i64>,
}

pub(super) struct Verified {
    /// Keyed per process: a client cannot aim its tokens at one slot.
    hasher: RandomState,
    slots: Box<[Mutex<Option<Entry>>]>,
}

impl Verified {
    pub(super) fn new() -> Self {
        Self {
            hasher: RandomState::new(),
            slots: (0..SLOTS).map(|_| Mutex::new(None)).collect(),
        }
    }

    fn slot(&self, token: &str) -> &Mutex<Option<Entry>> {
        let index = self.hasher.hash_one(token) as usize % SLOTS;
        &self.slots[index]
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
        if let Ok(mut slot) = self.slot(token).lock() {
            *slot = Some(Entry {
                token: token.into(),
                claims: claims.clone(),
                nbf,
            });
        }
    }
}
