//! The memory of idempotency keys: which keys are being decided right now, and
//! the answers given to keys recently.
//!
//! Written by hand rather than with a cache crate because it needs three things
//! together under one short lock: an in-flight table that never expires (a
//! reservation must always find its key again), waiters parked on an in-flight
//! key, and answers that expire only coarsely.
//!
//! Refusals are most of what a crowd leaves behind (a million for a sale of a
//! thousand units), so they are kept compact: a key is a keyed 128-bit digest
//! of the user and the key (no allocation, and no client can aim collisions
//! at a secret key), and a refusal is the sale's slot in a small per-shard
//! table, the quantity and the reason: 32 bytes an answer. They live in two
//! generations per shard: a generation is retired once it is older than the
//! retention or full, so a refusal is kept at least `retention` unless the
//! memory holds `capacity` of them (rounded up to the tables' own sizes, at
//! most twice it), and at most twice the retention. Won answers are
//! few (at most one per unit sold) and kept apart, by time only, so no crowd
//! of losers can make a winner's key forgettable.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher};
use std::mem;
use std::sync::{Mutex, OnceLock};

use stampede_app::ledger::KeyMemorySettings;
use stampede_domain::idempotency::{Answer, Fingerprint, IdempotencyKey, Remembered};
use stampede_domain::ids::{SaleId, UserId};
use stampede_domain::quantity::Quantity;
use stampede_domain::stock::Refusal;
use stampede_domain::time::Timestamp;
use tokio::sync::oneshot;

const SHARDS: usize = 64;

/// A key as it is scoped: per user, as a digest keyed with a secret made at
/// start, so equal digests mean equal keys for all practical purposes (two
/// keys collide with probability 2^-128).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ScopedKey([u64; 2]);

impl ScopedKey {
    pub(crate) fn new(user: &UserId, key: &IdempotencyKey) -> Self {
        static SECRET: OnceLock<[RandomState; 2]> = OnceLock::new();
        let [a, b] = SECRET.get_or_init(|| [RandomState::new(), RandomState::new()]);
        // `str` hashes with a terminator, so ("a", "bc") and ("ab", "c") differ.
        let scoped = (key.as_str(), user.as_str());
        Self([a.hash_one(scoped), b.hash_one(scoped)])
    }

    fn shard(&self) -> usize {
        (self.0[0] % SHARDS as u64) as usize
    }
}

impl Hash for ScopedKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // Already a keyed hash: the tables use it as it is.
        state.write_u64(self.0[1]);
    }
}

/// Hands a [`ScopedKey`]'s digest to the table unchanged.
#[derive(Default)]
struct Digested(u64);

impl Hasher for Digested {
    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used; fold anything else rather than drop it.
        for &byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(byte);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

type Table<V> = HashMap<ScopedKey, V, BuildHasherDefault<Digested>>;

/// A remembered refusal: the sale as its slot in the shard's sale table.
#[derive(Debug, Clone, Copy)]
struct Refused {
    sale: u32,
    quantity: Quantity,
    refusal: Refusal,
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

/// Two generations of answers.
struct Generations<V> {
    current: Table<V>,
    previous: Table<V>,
    /// When `current` was started.
    since: Timestamp,
}

impl<V> Generations<V> {
    fn new(now: Timestamp) -> Self {
        Self {
            current: Table::default(),
            previous: Table::default(),
            since: now,
        }
    }

    /// Retires the current generation once it is older than `retention_ms`
    /// or holds `limit` answers; forgets both once both are that old.
    fn rotate_if_due(&mut self, now: Timestamp, retention_ms: i64, limit: usize) {
        let age = now.as_millis() - self.since.as_millis();
        if age >= 2 * retention_ms {
            self.current = Table::default();
            self.previous = Table::default();
            self.since = now;
        } else if age >= retention_ms || self.current.len() >= limit {
            self.previous = mem::take(&mut self.current);
            self.since = now;
        }
    }

    fn get(&self, key: &ScopedKey) -> Option<&V> {
        self.current.get(key).or_else(|| self.previous.get(key))
    }

    fn insert(&mut self, key: ScopedKey, value: V) {
        self.previous.remove(&key);
        self.current.insert(key, value);
    }

    fn len(&self) -> usize {
        self.current.len() + self.previous.len()
    }
}

struct Shard {
    in_flight: Table<InFlight>,
    refused: Generations<Refused>,
    /// Won answers, retired by time only.
    answers: Generations<Remembered>,
    /// The sales this shard's refusals name, by slot; sales are made by
    /// operators, so this stays small.
    sales: Vec<SaleId>,
    slots: HashMap<SaleId, u32>,
}

impl Shard {
    fn rotate_if_due(
        &mut self,
        now: Timestamp,
        settings: &KeyMemorySettings,
        per_generation: usize,
    ) {
        self.refused
            .rotate_if_due(now, settings.retention_ms, per_generation);
        self.answers
            .rotate_if_due(now, settings.retention_ms, usize::MAX);
    }

    fn slot(&mut self, sale: SaleId) -> u32 {
        *self.slots.entry(sale).or_insert_with(|| {
            self.sales.push(sale);
            (self.sales.len() - 1) as u32
        })
    }

    fn get(&self, key: &ScopedKey) -> Option<Remembered> {
        if let Some(remembered) = self.answers.get(key) {
            return Some(*remembered);
        }
        let refused = self.refused.get(key)?;
        Some(Remembered {
            fingerprint: Fingerprint {
                sale_id: self.sales[refused.sale as usize],
                quantity: refused.quantity,
            },
            answer: Answer::Refused(refused.refusal),
        })
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
        // A generation fills its table to the table's own capacity, which
        // hashbrown rounds up anyway: the memory is spent either way.
        let per_generation = Table::<Refused>::with_capacity_and_hasher(
            settings.capacity / SHARDS / 2,
            Default::default(),
        )
        .capacity()
        .max(1);
        let shards = (0..SHARDS)
            .map(|_| {
                Mutex::new(Shard {
                    in_flight: Table::default(),
                    refused: Generations::new(now),
                    answers: Generations::new(now),
                    sales: Vec::new(),
                    slots: HashMap::new(),
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
            .map(|s| {
                let g = s.lock().unwrap_or_else(|p| p.into_inner());
                g.refused.len() + g.answers.len()
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
        match self.shard.get(key) {
            Some(remembered) => Lookup::Remembered(remembered),
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

    /// Remembers an answer; a refusal that is not kept (a pause) is dropped.
    pub(crate) fn remember(&mut self, key: ScopedKey, remembered: Remembered, now: Timestamp) {
        if matches!(remembered.answer, Answer::Refused(refusal) if !refusal.is_remembered()) {
            return;
        }
        self.shard
            .rotate_if_due(now, self.settings, self.per_generation);
        match remembered.answer {
            Answer::Refused(refusal) => {
                let refused = Refused {
                    sale: self.shard.slot(remembered.fingerprint.sale_id),
                    quantity: remembered.fingerprint.quantity,
                    refusal,
                };
                self.shard.refused.insert(key, refused);
            }
            Answer::Won(_) => self.shard.answers.insert(key, remembered),
        }
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
            self.remember(*key, remembered, now);
        }
        waiters
    }
}

#[cfg(test)]
mod tests {
    use stampede_domain::ids::OrderId;

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
        memory.lock(&k).remember(k, answer(), T0.plus_millis(500));
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
        // 64 shards × 2 generations × a table of a few answers.
        let memory = KeyMemory::new(settings(1_000_000, 128), T0);
        let keys: Vec<ScopedKey> = (0..2000).map(|i| key("u", &format!("k{i}"))).collect();
        for k in &keys {
            memory.lock(k).remember(*k, answer(), T0);
        }
        let held = memory.remembered_len();
        assert!(held <= SHARDS * 2 * memory.per_generation, "{held}");
        assert!(held >= SHARDS * memory.per_generation, "{held}");
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
        memory.lock(&k).start(k, fp);
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

    #[test]
    fn refusals_come_back_exactly_as_remembered() {
        let memory = KeyMemory::new(settings(1_000_000, 1_000_000), T0);
        let sales = [SaleId::generate(), SaleId::generate()];
        let mut given = Vec::new();
        for i in 0..500u32 {
            let k = key(&format!("u{i}"), "k");
            let remembered = Remembered {
                fingerprint: Fingerprint {
                    sale_id: sales[(i % 2) as usize],
                    quantity: Quantity::parse("quantity", i64::from(i % 7 + 1)).unwrap(),
                },
                answer: Answer::Refused(match i % 3 {
                    0 => Refusal::SoldOut,
                    1 => Refusal::LimitExceeded,
                    _ => Refusal::SaleNotActive,
                }),
            };
            memory.lock(&k).remember(k, remembered, T0);
            given.push((k, remembered));
        }
        for (k, remembered) in given {
            assert!(
                matches!(memory.lock(&k).lookup(&k, T0), Lookup::Remembered(r) if r == remembered)
            );
        }
    }

    #[test]
    fn a_pause_is_never_remembered() {
        let memory = KeyMemory::new(settings(1_000_000, 1_000_000), T0);
        let k = key("u", "k");
        let paused = Remembered {
            answer: Answer::Refused(Refusal::SalePaused),
            ..answer()
        };
        memory.lock(&k).remember(k, paused, T0);
        assert!(matches!(memory.lock(&k).lookup(&k, T0), Lookup::Unknown));
        // Nor when a decision in flight ends with it.
        memory.lock(&k).start(k, paused.fingerprint);
        let waiters = memory.lock(&k).finish(&k, Some(paused), T0);
        assert!(waiters.is_empty());
        assert!(matches!(memory.lock(&k).lookup(&k, T0), Lookup::Unknown));
        assert_eq!(memory.remembered_len(), 0);
    }

    #[test]
    fn a_crowd_of_refusals_never_pushes_out_a_winner() {
        // Room for 128 refusals; the winner is remembered first.
        let memory = KeyMemory::new(settings(1_000_000, 128), T0);
        let winner = key("w", "k");
        let won = Remembered {
            fingerprint: answer().fingerprint,
            answer: Answer::Won(OrderId::generate()),
        };
        memory.lock(&winner).remember(winner, won, T0);
        for i in 0..10_000 {
            let k = key("u", &format!("k{i}"));
            memory.lock(&k).remember(k, answer(), T0);
        }
        assert!(
            matches!(memory.lock(&winner).lookup(&winner, T0), Lookup::Remembered(r) if r == won)
        );
    }
}
