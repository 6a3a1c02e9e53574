//! The memory of idempotency keys: which keys are being decided right now, and
//! the answers given to keys recently.
//!
//! Written by hand rather than with a cache crate because it needs three things
//! together under one short lock: an in-flight table that never expires (a
//! reservation must always find its key again), waiters parked on an in-flight
//! key, and answers that expire only coarsely. Answers live in two generations
//! per shard: a generation is retired once it is older than the retention or
//! full, so an answer is kept at least `retention` unless the memory is at
//! capacity, and at most twice that. Losing requests pay one map insert.

use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::mem;
use std::sync::Mutex;

use stampede_app::ledger::KeyMemorySettings;
use stampede_domain::idempotency::{Fingerprint, IdempotencyKey, Remembered};
use stampede_domain::ids::UserId;
use stampede_domain::time::Timestamp;
use tokio::sync::oneshot;

const SHARDS: usize = 64;

/// A key as it is scoped: per user. One allocation: the key, a NUL (which no
/// key can contain), the user.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct ScopedKey(Box<str>);

impl ScopedKey {
    pub(crate) fn new(user: &UserId, key: &IdempotencyKey) -> Self {
        let mut text = String::with_capacity(key.as_str().len() + 1 + user.as_str().len());
        text.push_str(key.as_str());
        text.push('\0');
        text.push_str(user.as_str());
        Self(text.into_boxed_str())
    }

    fn shard(&self) -> usize {
        let mut hasher = DefaultHasher::new();
        self.hash(&mut hasher);
        (hasher.finish() as usize) % SHARDS
    }
}

/// A key whose request is being decided.
struct InFlight {
    fingerprint: Fingerprint,
    /// Repeats waiting for the decision; woken when it is settled.
    waiters: Vec<oneshot::Sender<()>>,
}

/// What a lookup found.
pub(crate) enum Lookup {
    /// Another request with this key is being decided: wait on this.
    InFlight {
        fingerprint: Fingerprint,
        wait: oneshot::Receiver<()>,
    },
    Remembered(Remembered),
    Unknown,
}

struct Shard {
    in_flight: HashMap<ScopedKey, InFlight>,
    current: HashMap<ScopedKey, Remembered>,
    previous: HashMap<ScopedKey, Remembered>,
    /// When `current` was started.
    current_since: Timestamp,
}

impl Shard {
    fn rotate_if_due(
        &mut self,
        now: Timestamp,
        settings: &KeyMemorySettings,
        per_generation: usize,
    ) {
        let age = now.as_millis() - self.current_since.as_millis();
        if age >= 2 * settings.retention_ms {
            self.current.clear();
            self.previous.clear();
            self.current_since = now;
        } else if age >= settings.retention_ms || self.current.len() >= per_generation {
            self.previous = mem::take(&mut self.current);
            self.current_since = now;
        }
    }
}

/// Sharded in-flight and remembered keys.
pub(crate) struct KeyMemory {
    shards: Box<[Mutex<Shard>]>,
    settings: KeyMemorySettings,
    per_generation: usize,
}

/// Guard over one shard; all operations on a key happen through it.
pub(crate) struct ShardGuard<'a> {
    shard: std::sync::MutexGuard<'a, Shard>,
    settings: &'a KeyMemorySettings,
    per_generation: usize,
}

impl KeyMemory {
    pub(crate) fn new(settings: KeyMemorySettings, now: Timestamp) -> Self {
        let per_generation = (settings.capacity / SHARDS / 2).max(1);
        let shards = (0..SHARDS)
            .map(|_| {
                Mutex::new(Shard {
                    in_flight: HashMap::new(),
                    current: HashMap::new(),
                    previous: HashMap::new(),
                    current_since: now,
                })
            })
            .collect();
        Self {
            shards,
            settings,
            per_generation,
        }
    }

    pub(crate) fn lock(&self, key: &ScopedKey) -> ShardGuard<'_> {
        let shard = match self.shards[key.shard()].lock() {
            Ok(guard) => guard,
            // A panic while holding a shard leaves maps that are still valid.
            Err(poisoned) => poisoned.into_inner(),
        };
        ShardGuard {
            shard,
            settings: &self.settings,
            per_generation: self.per_generation,
        }
    }

    /// Number of remembered answers (for tests and metrics).
    pub(crate) fn remembered_len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| match s.lock() {
                Ok(g) => g.current.len() + g.previous.len(),
                Err(p) => {
                    let g = p.into_inner();
                    g.current.len() + g.previous.len()
                }
            })
            .sum()
    }
}

impl ShardGuard<'_> {
    pub(crate) fn lookup(&mut self, key: &ScopedKey, now: Timestamp) -> Lookup {
        if let Some(in_flight) = self.shard.in_flight.get_mut(key) {
            let (tx, rx) = oneshot::channel();
            in_flight.waiters.push(tx);
            return Lookup::InFlight {
                fingerprint: in_flight.fingerprint,
                wait: rx,
            };
        }
        self.shard
            .rotate_if_due(now, self.settings, self.per_generation);
        match self
            .shard
            .current
            .get(key)
            .or_else(|| self.shard.previous.get(key))
        {
            Some(remembered) => Lookup::Remembered(*remembered),
            None => Lookup::Unknown,
        }
    }

    pub(crate) fn start(&mut self, key: ScopedKey, fingerprint: Fingerprint) {
        self.shard.in_flight.insert(
            key,
            InFlight {
                fingerprint,
                waiters: Vec::new(),
            },
        );
    }

    pub(crate) fn remember(&mut self, key: ScopedKey, remembered: Remembered, now: Timestamp) {
        self.shard
            .rotate_if_due(now, self.settings, self.per_generation);
        self.shard.previous.remove(&key);
        self.shard.current.insert(key, remembered);
    }

    /// Ends an in-flight decision, remembering its answer (or not, so a retry is
    /// decided afresh). Returns the waiters to wake once the lock is released.
    pub(crate) fn finish(
        &mut self,
        key: &ScopedKey,
        remembered: Option<Remembered>,
        now: Timestamp,
    ) -> Vec<oneshot::Sender<()>> {
        let waiters = self
            .shard
            .in_flight
            .remove(key)
            .map(|f| f.waiters)
            .unwrap_or_default();
        if let Some(remembered) = remembered {
            self.remember(key.clone(), remembered, now);
        }
        waiters
    }
}

#[cfg(test)]
mod tests {
    use stampede_domain::idempotency::Answer;
    use stampede_domain::ids::{OrderId, SaleId};
    use stampede_domain::quantity::Quantity;
    use stampede_domain::stock::Refusal;

    use super::*;

    const T0: Timestamp = Timestamp::from_millis(1_800_000_000_000);

    fn key(user: &str, key: &str) -> ScopedKey {
        ScopedKey::new(
            &UserId::parse(user).unwrap(),
            &IdempotencyKey::parse(key).unwrap(),
        )
    }

    fn answer() -> Remembered {
        Remembered {
            fingerprint: Fingerprint {
                sale_id: SaleId::generate(),
                quantity: Quantity::parse("quantity", 1).unwrap(),
            },
            answer: Answer::Refused(Refusal::SoldOut),
        }
    }

    fn settings(retention_ms: i64, capacity: usize) -> KeyMemorySettings {
        KeyMemorySettings {
            retention_ms,
            capacity,
        }
    }

    #[test]
    fn keys_are_scoped_to_their_user() {
        assert_ne!(key("alice", "k"), key("bob", "k"));
        // The separator keeps "a"+"b\0c" apart from "a\0b"+"c".
        assert_ne!(key("bc", "a"), key("c", "ab"));
    }

    #[test]
    fn answers_are_kept_for_at_least_the_retention_and_at_most_twice_it() {
        let memory = KeyMemory::new(settings(1000, 1_000_000), T0);
        let k = key("u", "k");
        memory
            .lock(&k)
            .remember(k.clone(), answer(), T0.plus_millis(500));
        // Rotation at 1000 ms moves it to the previous generation: still known.
        assert!(matches!(
            memory.lock(&k).lookup(&k, T0.plus_millis(1499)),
            Lookup::Remembered(_)
        ));
        // At 2000 ms after the generation started it is gone.
        assert!(matches!(
            memory.lock(&k).lookup(&k, T0.plus_millis(3100)),
            Lookup::Unknown
        ));
    }

    #[test]
    fn a_full_memory_forgets_its_oldest_generation_first() {
        // 64 shards × 2 generations × 1 answer: capacity 128.
        let memory = KeyMemory::new(settings(1_000_000, 128), T0);
        let keys: Vec<ScopedKey> = (0..2000).map(|i| key("u", &format!("k{i}"))).collect();
        for k in &keys {
            memory.lock(k).remember(k.clone(), answer(), T0);
        }
        assert!(memory.remembered_len() <= 128);
        assert!(matches!(
            memory.lock(&keys[1999]).lookup(&keys[1999], T0),
            Lookup::Remembered(_)
        ));
    }

    #[test]
    fn in_flight_keys_never_expire_and_wake_their_waiters() {
        let memory = KeyMemory::new(settings(10, 128), T0);
        let k = key("u", "k");
        let fp = answer().fingerprint;
        memory.lock(&k).start(k.clone(), fp);
        let Lookup::InFlight { mut wait, .. } =
            memory.lock(&k).lookup(&k, T0.plus_millis(1_000_000))
        else {
            panic!("in-flight key expired");
        };
        assert!(wait.try_recv().is_err());
        let won = Remembered {
            fingerprint: fp,
            answer: Answer::Won(OrderId::generate()),
        };
        let waiters = memory
            .lock(&k)
            .finish(&k, Some(won), T0.plus_millis(1_000_000));
        for w in waiters {
            w.send(()).unwrap();
        }
        assert!(wait.try_recv().is_ok());
        assert!(
            matches!(memory.lock(&k).lookup(&k, T0.plus_millis(1_000_001)), Lookup::Remembered(r) if r == won)
        );
    }
}
