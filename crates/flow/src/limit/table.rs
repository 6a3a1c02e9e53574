//! Per-key state, sharded: [`SHARDS`] hash tables, each behind its own lock,
//! so that checks for different keys rarely wait on one another and each
//! lock is held for a lookup and a few integer operations.
//!
//! Two kinds: [`Table`], a `std::sync::Mutex` per shard, for the windows'
//! multi-field states; and [`AtomicTable`] for GCRA's single `u64`, where a
//! known key takes the shard's lock only for reading and then updates its
//! state with a compare-and-swap — as governor does — so that many cores
//! checking one hot key (a sale's or the whole service's limit) do not queue
//! on a mutex: on this machine's two cores, two threads checking one key
//! took about 290 ns a check this way and 500 with the mutex.
//!
//! The key is hashed once, with std's `RandomState` (SipHash-1-3, keyed per
//! table, so clients who choose their keys — IPs, user ids — cannot aim them
//! at one slot): bits 32–37 of the hash pick the shard, and hashbrown's
//! `HashTable` takes the same hash for the slot (its low bits) and tag (its
//! top seven), so the bits that pick a shard do not skew the slots within it.
//! An existing key costs no allocation; a new one costs its `clone` and, now
//! and then, the growth of its shard's table.

use std::hash::{BuildHasher, Hash, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use hashbrown::HashTable;

/// How many shards a table has: a power of two, well above the number of
/// cores that can contend, small enough that an empty table is a few KiB.
pub(crate) const SHARDS: usize = 64;

/// Keys and their states, sharded by hash.
pub(crate) struct Table<K, S> {
    hasher: RandomState,
    shards: Box<[Shard<K, S>; SHARDS]>,
}

/// One shard, on a cache line (pair) of its own so that locking one shard
/// does not slow down the cores using its neighbours.
#[repr(align(128))]
struct Shard<K, S> {
    entries: Mutex<HashTable<(K, S)>>,
}

impl<K: Hash + Eq + Clone, S: Copy> Table<K, S> {
    pub(crate) fn new() -> Self {
        Self {
            hasher: RandomState::new(),
            shards: Box::new(std::array::from_fn(|_| Shard {
                entries: Mutex::new(HashTable::new()),
            })),
        }
    }

    /// Replaces `key`'s state with the first half of `f(its state)` and
    /// returns the second; `f` runs under the shard's lock, so it must be
    /// short and must not panic.
    pub(crate) fn update<R>(&self, key: &K, f: impl FnOnce(Option<S>) -> (S, R)) -> R {
        let hash = self.hasher.hash_one(key);
        let mut entries = self.shard(hash);
        if let Some((_, state)) = entries.find_mut(hash, |(k, _)| k == key) {
            let (next, answer) = f(Some(*state));
            *state = next;
            return answer;
        }
        let (next, answer) = f(None);
        entries.insert_unique(hash, (key.clone(), next), |(k, _)| self.hasher.hash_one(k));
        answer
    }

    /// Drops every key for which `idle` says so, one shard at a time, and
    /// gives memory back from shards left mostly empty. Returns how many keys
    /// were dropped.
    pub(crate) fn retain(&self, mut idle: impl FnMut(&S) -> bool) -> usize {
        let mut dropped = 0;
        for shard in self.shards.iter() {
            let mut entries = lock(&shard.entries);
            let before = entries.len();
            entries.retain(|(_, state)| !idle(state));
            dropped += before - entries.len();
            // Shrinking rehashes every key left, so only when it pays: after
            // a crowd has gone, not after every purge.
            if entries.capacity() > 64 && entries.len() < entries.capacity() / 4 {
                let len = entries.len();
                entries.shrink_to(len * 2, |(k, _)| self.hasher.hash_one(k));
            }
        }
        dropped
    }

    /// How many keys the table holds (shard by shard, so only a snapshot
    /// while checks go on).
    pub(crate) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| lock(&shard.entries).len())
            .sum()
    }

    fn shard(&self, hash: u64) -> MutexGuard<'_, HashTable<(K, S)>> {
        // The mask keeps the index below SHARDS, so this cannot panic.
        lock(&self.shards[(hash >> 32) as usize & (SHARDS - 1)].entries)
    }
}

/// Keys and their `u64` states, sharded by hash, updated lock-free once the
/// key is known.
pub(crate) struct AtomicTable<K> {
    hasher: RandomState,
    shards: Box<[AtomicShard<K>; SHARDS]>,
}

#[repr(align(128))]
struct AtomicShard<K> {
    entries: RwLock<HashTable<(K, AtomicU64)>>,
}

impl<K: Hash + Eq + Clone> AtomicTable<K> {
    pub(crate) fn new() -> Self {
        Self {
            hasher: RandomState::new(),
            shards: Box::new(std::array::from_fn(|_| AtomicShard {
                entries: RwLock::new(HashTable::new()),
            })),
        }
    }

    /// Replaces `key`'s state with the first half of `f(its state)` and
    /// returns the second. For a known key `f` may run more than once, each
    /// time on the state another thread has just written, until its answer
    /// is stored; it must be pure.
    pub(crate) fn update<R>(&self, key: &K, f: impl Fn(Option<u64>) -> (u64, R)) -> R {
        let hash = self.hasher.hash_one(key);
        let shard = &self.shards[(hash >> 32) as usize & (SHARDS - 1)];
        if let Some((_, state)) = read(&shard.entries).find(hash, |(k, _)| k == key) {
            return swap(state, &f);
        }
        let mut entries = write(&shard.entries);
        // Another thread may have added the key since the read lock.
        if let Some((_, state)) = entries.find(hash, |(k, _)| k == key) {
            return swap(state, &f);
        }
        let (next, answer) = f(None);
        entries.insert_unique(hash, (key.clone(), AtomicU64::new(next)), |(k, _)| {
            self.hasher.hash_one(k)
        });
        answer
    }

    /// As [`Table::retain`].
    pub(crate) fn retain(&self, idle: impl Fn(u64) -> bool) -> usize {
        let mut dropped = 0;
        for shard in self.shards.iter() {
            let mut entries = write(&shard.entries);
            let before = entries.len();
            entries.retain(|(_, state)| !idle(*state.get_mut()));
            dropped += before - entries.len();
            if entries.capacity() > 64 && entries.len() < entries.capacity() / 4 {
                let len = entries.len();
                entries.shrink_to(len * 2, |(k, _)| self.hasher.hash_one(k));
            }
        }
        dropped
    }

    /// As [`Table::len`].
    pub(crate) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| read(&shard.entries).len())
            .sum()
    }
}

/// Stores `f(state)` in `state` unless another thread changed it first, in
/// which case `f` runs again on that thread's value.
fn swap<R>(state: &AtomicU64, f: impl Fn(Option<u64>) -> (u64, R)) -> R {
    let mut current = state.load(Ordering::Acquire);
    loop {
        let (next, answer) = f(Some(current));
        // A refusal changes nothing: no write, no contention.
        if next == current {
            return answer;
        }
        match state.compare_exchange_weak(current, next, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return answer,
            Err(actual) => current = actual,
        }
    }
}

fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    // States are single atomics or replaced whole: nothing half-written.
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Under the lock a state is read and written whole, so a panic elsewhere
    // cannot have left one half-written.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
