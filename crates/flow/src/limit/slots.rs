//! A limiter whose memory is fixed, whatever the number of keys: for keys a
//! client can make up at will (an attacker rotating through IPv6 addresses).
//!
//! Keys are hashed (SipHash, keyed per limiter, so a client cannot aim its
//! keys at another's slots) to two slots of a fixed array of GCRA states,
//! one `u64` each, as in a count-min sketch: each event is counted in both,
//! and a key is refused only when both are spent. Nothing is ever evicted,
//! so no key can come back with a fresh allowance — each of its slots holds
//! at least its own history. A key shares its budget with others only when
//! both its slots are shared, which only ever makes the limit stricter for
//! it (with `n` busy keys in `s` slots, odds about `(2n / s)²`).
//!
//! Unlike [`KeyedLimiter`](super::KeyedLimiter), whose `check` counts the
//! request it admits, this one separates asking from counting: [`peek`]
//! says whether one more event would be within the quota without counting
//! it, and [`charge`] counts one that happened — for events known only after
//! the work is done (a login that failed). A charge always counts, even past
//! the limit, so events already under way when the limit was reached push
//! the key's next allowance further out: in the long run a key never gets
//! more than the quota's rate.
//!
//! [`peek`]: SlotLimiter::peek
//! [`charge`]: SlotLimiter::charge

use std::hash::{BuildHasher, Hash, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use super::rules::{self, Gcra, Rule};
use super::{LimitDecision, Quota};

/// GCRA states in a fixed array, shared by keys that hash alike.
pub struct SlotLimiter {
    rule: Gcra,
    quota: Quota,
    hasher: RandomState,
    /// Theoretical arrival times, in nanoseconds since `epoch`; 0: full.
    slots: Box<[AtomicU64]>,
    epoch: Instant,
}

impl std::fmt::Debug for SlotLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlotLimiter")
            .field("quota", &self.quota)
            .field("slots", &self.slots.len())
            .finish_non_exhaustive()
    }
}

impl SlotLimiter {
    /// A token bucket of `quota` (zeros raised to the least allowed) for
    /// each of `slots` slots (at least 1): `8 · slots` bytes, allocated now.
    pub fn new(quota: Quota, slots: usize) -> Self {
        let quota = quota.clamped();
        Self {
            rule: Gcra::new(quota, Duration::ZERO),
            quota,
            hasher: RandomState::new(),
            slots: (0..slots.max(1)).map(|_| AtomicU64::new(0)).collect(),
            epoch: Instant::now(),
        }
    }

    /// The quota, with zeros raised as [`SlotLimiter::new`] did.
    pub fn quota(&self) -> Quota {
        self.quota
    }

    /// How many slots the limiter has.
    pub fn slots(&self) -> usize {
        self.slots.len()
    }

    /// Whether one more event for `key` would be within the quota now:
    /// [`LimitDecision::Allow`] or [`LimitDecision::Deny`]. Counts nothing.
    pub fn peek<K: Hash + ?Sized>(&self, key: &K) -> LimitDecision {
        let [one, two] = self.slots_of(key);
        // The less spent of the two: the key's own history is in both.
        let tat = one.load(Ordering::Acquire).min(two.load(Ordering::Acquire));
        self.rule.check(Some(tat), self.now()).1
    }

    /// Counts one event for `key`, within the quota or not.
    pub fn charge<K: Hash + ?Sized>(&self, key: &K) {
        let now = self.now();
        let [one, two] = self.slots_of(key);
        let charge = |slot: &AtomicU64| {
            // A pure update: a lost race runs it again on the winner's value.
            let _ = slot.fetch_update(Ordering::AcqRel, Ordering::Acquire, |tat| {
                Some(self.rule.charge(tat, now))
            });
        };
        charge(one);
        // Both halves may pick one slot: an event counts once.
        if !std::ptr::eq(one, two) {
            charge(two);
        }
    }

    /// The key's two slots, from the two halves of its hash.
    fn slots_of<K: Hash + ?Sized>(&self, key: &K) -> [&AtomicU64; 2] {
        let hash = self.hasher.hash_one(key);
        let len = self.slots.len() as u64;
        // Remainders are below the length, so the indices are in bounds.
        [hash & 0xffff_ffff, hash >> 32].map(|half| &self.slots[(half % len) as usize])
    }

    /// Nanoseconds since the limiter was made, from 1 so that a state of 0
    /// (never charged) is always in the past.
    fn now(&self) -> u64 {
        rules::nanos(Instant::now().saturating_duration_since(self.epoch)).saturating_add(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn per_minute(limit: u32) -> SlotLimiter {
        SlotLimiter::new(Quota::per_minute(limit), 1024)
    }

    #[tokio::test(start_paused = true)]
    async fn only_charges_count_and_a_slot_frees_one_interval_later() {
        let limiter = per_minute(10);
        // Asking is free.
        for _ in 0..100 {
            assert!(limiter.peek("a").is_admitted());
        }
        for _ in 0..10 {
            assert!(limiter.peek("a").is_admitted());
            limiter.charge("a");
        }
        let LimitDecision::Deny { retry_after, .. } = limiter.peek("a") else {
            panic!("the 11th is admitted");
        };
        assert_eq!(retry_after, Duration::from_secs(6));
        assert!(limiter.peek("b").is_admitted());
        tokio::time::advance(Duration::from_millis(5_999)).await;
        assert!(!limiter.peek("a").is_admitted());
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(limiter.peek("a").is_admitted());
    }

    #[tokio::test(start_paused = true)]
    async fn charges_past_the_limit_push_the_next_allowance_out() {
        let limiter = per_minute(10);
        // Twenty failures under way at once, all charged.
        for _ in 0..20 {
            limiter.charge("a");
        }
        tokio::time::advance(Duration::from_secs(65)).await;
        assert!(!limiter.peek("a").is_admitted());
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(limiter.peek("a").is_admitted());
    }

    #[tokio::test(start_paused = true)]
    async fn memory_is_fixed_and_a_shared_slot_only_makes_the_limit_stricter() {
        let limiter = SlotLimiter::new(Quota::per_minute(3), 1);
        assert_eq!(limiter.slots(), 1);
        for i in 0..3u32 {
            limiter.charge(&i);
        }
        // A hundred thousand keys later nothing grew, and no key found a
        // fresh allowance: all share the one exhausted slot.
        for i in 0..100_000u32 {
            assert!(!limiter.peek(&i).is_admitted());
        }
    }
}
