//! The final answers this node gave to purchase keys, in fixed memory
//! (docs/design.md §4.1). A retry of a key answered here is answered again
//! before anything else: the edge lets it past every rate limit and the
//! in-flight limit (a retry is not a new buyer, so it spends no quota and
//! no slot, and per-user quotas count distinct keys), and the purchase path
//! replays a refusal from here without asking the ledger (no Redis round
//! trip in cluster mode). A won key's order is read from the store, as any
//! replay's is.
//!
//! It is a cache in front of the ledger's key memory, never the record:
//! direct-mapped (a newer key takes the slot of an older one whose digest
//! shares its low bits), entries older than the idempotency retention are
//! ignored, and a key not found here is decided by the ledger as before.
//! Only what the ledger remembers is kept here: wins and business
//! refusals, with the request they answered (a retry with another sale or
//! quantity goes to the ledger, which answers the mismatch).

use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher, RandomState};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use stampede_domain::idempotency::{Answer, Fingerprint, IdempotencyKey};
use stampede_domain::ids::UserId;
use stampede_domain::time::Timestamp;

/// Slots: 65,536 answers, about 4 MiB whatever the crowd.
const SLOTS: usize = 1 << 16;

/// The tag a slot's digest leaves in [`AnsweredKeys::tags`]: its high 32
/// bits (the slot is chosen by the low ones). Zero means empty.
fn tag(digest: u64) -> u32 {
    ((digest >> 32) as u32).max(1)
}

struct Entry {
    /// Of the user and the key: 64 bits with a per-process random key, so
    /// a client cannot aim keys at another's slot; a collision (odds about
    /// 2⁻⁶⁴ a lookup) could only replay another key's answer for the same
    /// sale and quantity.
    digest: u64,
    fingerprint: Fingerprint,
    answer: Answer,
    at: Timestamp,
}

/// See the [module documentation](self).
pub struct AnsweredKeys {
    hasher: Hashing,
    /// Each slot's tag, 256 KiB that stay in cache: most purchases bring a
    /// key never answered, and one load tells them so without touching
    /// the slot's cache line (measured: a miss in the 4 MiB table was 1 %
    /// of a refusal's CPU).
    tags: Box<[AtomicU32]>,
    slots: Box<[Mutex<Option<Entry>>]>,
    retention_ms: i64,
}

/// Keyed per process, or (simulations) the same in every run.
enum Hashing {
    Random(RandomState),
    Fixed(BuildHasherDefault<DefaultHasher>),
}

impl AnsweredKeys {
    /// Answers are trusted for `retention_ms` (the ledger keeps them at
    /// least that long).
    pub fn new(retention_ms: i64) -> Self {
        Self::with(Hashing::Random(RandomState::new()), retention_ms)
    }

    /// With one hash for every run, so a seeded simulation replays exactly
    /// (which slots collide decides which retries reach the ledger). Not
    /// for serving: clients could then aim keys at chosen slots.
    pub fn deterministic(retention_ms: i64) -> Self {
        Self::with(Hashing::Fixed(BuildHasherDefault::default()), retention_ms)
    }

    fn with(hasher: Hashing, retention_ms: i64) -> Self {
        Self {
            hasher,
            tags: (0..SLOTS).map(|_| AtomicU32::new(0)).collect(),
            slots: (0..SLOTS).map(|_| Mutex::new(None)).collect(),
            retention_ms,
        }
    }

    fn digest(&self, user: &UserId, key: &str) -> u64 {
        let subject = (user.as_str(), key);
        match &self.hasher {
            Hashing::Random(hasher) => hasher.hash_one(subject),
            Hashing::Fixed(hasher) => hasher.hash_one(subject),
        }
    }

    fn index(digest: u64) -> usize {
        (digest as usize) % SLOTS
    }

    /// Whether the slot may hold `digest`: a cheap no for most keys. A
    /// stale tag only sends the caller on to the slot, which decides.
    fn may_hold(&self, digest: u64) -> bool {
        self.tags[Self::index(digest)].load(Ordering::Relaxed) == tag(digest)
    }

    fn slot(&self, digest: u64) -> MutexGuard<'_, Option<Entry>> {
        self.slots[Self::index(digest)]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn fresh<'a>(
        &self,
        entry: &'a Option<Entry>,
        digest: u64,
        now: Timestamp,
    ) -> Option<&'a Entry> {
        entry.as_ref().filter(|entry| {
            entry.digest == digest && now.as_millis() - entry.at.as_millis() < self.retention_ms
        })
    }

    /// Whether this node answered `user`'s `key` (any request): the edge's
    /// question, asked before the body is read.
    pub fn knows(&self, user: &UserId, key: &str, now: Timestamp) -> bool {
        let digest = self.digest(user, key);
        self.may_hold(digest) && self.fresh(&self.slot(digest), digest, now).is_some()
    }

    /// The answer given to `user`'s `key` for the request `fingerprint`.
    pub(crate) fn answer(
        &self,
        user: &UserId,
        key: &IdempotencyKey,
        fingerprint: &Fingerprint,
        now: Timestamp,
    ) -> Option<Answer> {
        let digest = self.digest(user, key.as_str());
        if !self.may_hold(digest) {
            return None;
        }
        let slot = self.slot(digest);
        let entry = self.fresh(&slot, digest, now)?;
        (entry.fingerprint == *fingerprint).then_some(entry.answer)
    }

    pub(crate) fn record(
        &self,
        user: &UserId,
        key: &IdempotencyKey,
        fingerprint: Fingerprint,
        answer: Answer,
        now: Timestamp,
    ) {
        // A pause is decided afresh on every try.
        if matches!(answer, Answer::Refused(refusal) if !refusal.is_remembered()) {
            return;
        }
        let digest = self.digest(user, key.as_str());
        let mut slot = self.slot(digest);
        *slot = Some(Entry {
            digest,
            fingerprint,
            answer,
            at: now,
        });
        // Under the slot's lock, so tag and entry change together for
        // writers; readers only use the tag as a hint.
        self.tags[Self::index(digest)].store(tag(digest), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use stampede_domain::ids::{OrderId, SaleId};
    use stampede_domain::quantity::Quantity;
    use stampede_domain::stock::Refusal;

    use super::*;

    fn fingerprint(sale_id: SaleId, quantity: u32) -> Fingerprint {
        Fingerprint {
            sale_id,
            quantity: Quantity::parse("quantity", i64::from(quantity)).unwrap(),
        }
    }

    #[test]
    fn an_answer_is_replayed_for_the_same_request_within_the_retention_only() {
        let keys = AnsweredKeys::new(1_000);
        let (alice, key) = (
            UserId::parse("alice").unwrap(),
            IdempotencyKey::parse("k").unwrap(),
        );
        let now = Timestamp::from_millis(10_000);
        let sale = SaleId::generate();
        let fingerprint = |quantity| fingerprint(sale, quantity);
        assert!(!keys.knows(&alice, "k", now));
        keys.record(
            &alice,
            &key,
            fingerprint(1),
            Answer::Refused(Refusal::SoldOut),
            now,
        );
        assert!(keys.knows(&alice, "k", now));
        assert_eq!(
            keys.answer(&alice, &key, &fingerprint(1), now),
            Some(Answer::Refused(Refusal::SoldOut))
        );
        // Another request with the key is the ledger's to call a mismatch.
        assert_eq!(keys.answer(&alice, &key, &fingerprint(2), now), None);
        // Another user's key of the same name is another key.
        let bob = UserId::parse("bob").unwrap();
        assert!(!keys.knows(&bob, "k", now));
        // Past the retention the ledger decides again.
        let later = Timestamp::from_millis(11_000);
        assert!(!keys.knows(&alice, "k", later));
        let won = Answer::Won(OrderId::generate());
        keys.record(&alice, &key, fingerprint(1), won, later);
        assert_eq!(keys.answer(&alice, &key, &fingerprint(1), later), Some(won));
    }
}
