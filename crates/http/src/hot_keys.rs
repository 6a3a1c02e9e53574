//! The hottest keys of the per-address and per-user rules, for `GET
//! /api/v1/admin/rate-limits/hot` (docs/design.md §8.1). Those rules keep
//! their state in fixed memory (`stampede_flow::limit::bounded`): exact
//! for the top keys, a sketch for the tail, so churn (rotating addresses
//! or accounts) costs nothing and never resets a key in debt. Their keys
//! are 64-bit hashes (limits.rs, "Keys"); what a key stands for is kept
//! here, also in fixed memory, for the keys worth naming: those refused,
//! or with less than half their burst left.

use std::sync::{Mutex, PoisonError};

use serde::Serialize;
use utoipa::ToSchema;

/// Names remembered per rule; a newer key takes the slot of an older one
/// with the same low bits. About 4,096 × (24 bytes + the name).
const NAME_SLOTS: usize = 4096;

/// A key and its name, or nothing yet.
type Slot = Option<(u64, Box<str>)>;

/// What some of a rule's keys stand for: an address block or a user id.
pub(crate) struct KeyNames {
    slots: Box<[Mutex<Slot>]>,
}

impl KeyNames {
    pub(crate) fn new() -> Self {
        Self {
            slots: (0..NAME_SLOTS).map(|_| Mutex::new(None)).collect(),
        }
    }

    fn slot(&self, key: u64) -> std::sync::MutexGuard<'_, Slot> {
        // Keys are SipHash outputs: their low bits are as good as any.
        let index = (key as usize) % NAME_SLOTS;
        self.slots[index]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Remembers `key`'s name; `name` runs only when the slot holds another
    /// key, so a key refused again and again allocates once.
    pub(crate) fn record(&self, key: u64, name: impl FnOnce() -> String) {
        let mut slot = self.slot(key);
        if slot.as_ref().is_none_or(|(held, _)| *held != key) {
            *slot = Some((key, name().into_boxed_str()));
        }
    }

    pub(crate) fn name(&self, key: u64) -> Option<String> {
        match &*self.slot(key) {
            Some((held, name)) if *held == key => Some(name.to_string()),
            _ => None,
        }
    }
}

/// One rule's hottest keys.
#[derive(Debug, Serialize, ToSchema)]
pub struct HotRule {
    /// The rule's name.
    pub rule: String,
    /// What it counts: `ip` or `user`.
    pub key: &'static str,
    /// The heap its limiter state takes, fixed at start.
    pub memory_bytes: usize,
    /// Hottest first.
    pub keys: Vec<HotKeyBody>,
}

/// A key among the hottest of its rule.
#[derive(Debug, Serialize, ToSchema)]
pub struct HotKeyBody {
    /// The address (IPv6 as its /64) or user id, once the key has been
    /// refused or spent half its burst; `null` before.
    pub name: Option<String>,
    /// The key's hash on this node, 16 hex digits.
    pub digest: String,
    /// Its recent requests (halved now and then, so the hot keys of now
    /// come first).
    pub hits: u32,
    /// Whether its next request would be refused (or, for a leaky bucket,
    /// made to wait).
    pub limited: bool,
}

/// The answer: every per-address and per-user rule on this node.
#[derive(Debug, Serialize, ToSchema)]
pub struct HotKeysBody {
    pub rules: Vec<HotRule>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_kept_until_another_key_takes_its_slot() {
        let names = KeyNames::new();
        names.record(7, || "alice".into());
        names.record(7, || panic!("a known key is not named again"));
        assert_eq!(names.name(7).as_deref(), Some("alice"));
        assert_eq!(names.name(8), None);
        let rival = 7 + NAME_SLOTS as u64;
        names.record(rival, || "mallory".into());
        assert_eq!(names.name(7), None);
        assert_eq!(names.name(rival).as_deref(), Some("mallory"));
    }
}
