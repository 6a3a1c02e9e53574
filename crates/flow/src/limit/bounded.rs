//! GCRA state in memory fixed at construction: exact for the hottest keys,
//! a sketch for the long tail, so that key churn (an attacker rotating IPv6
//! addresses or user ids) costs no memory and cannot reset a limited key.
//!
//! The exact tables of `table.rs` grow with the keys until a purge drops
//! the idle ones, and anything that dropped a key still in debt would let it
//! back with a full bucket. This storage holds GCRA's one `u64` per key (the
//! theoretical arrival time, TAT; the leaky bucket is the same rule) in two
//! parts, both allocated once:
//!
//! - **Top-K table**: `top_k` slots of key, TAT and hit count, in buckets
//!   of [`WAYS`] slots; a key can only live in its own bucket. A key
//!   resident since its first check is decided exactly as by the exact
//!   table; one admitted later starts from the sketch's estimate.
//! - **Sketch**: [`ROWS`] rows of `sketch_width` cells; each key hashes to
//!   one cell per row. A cell holds the largest TAT written to it, so the
//!   estimate for a key that is not resident is the smallest TAT over its
//!   cells, and a check that moves it on raises each cell to the new TAT
//!   (`max`). A resident evicted from the table is written the same way, so
//!   its debt stays. Each cell also counts the checks of non-resident keys,
//!   as a count-min sketch (only the cells at the minimum move, which makes
//!   the estimate tighter).
//!
//! # Which keys are resident
//!
//! TinyLFU's admission: a key that is not resident takes the coldest slot
//! of its bucket only if its count in the sketch is above that slot's hit
//! count and above 1 (an empty slot takes any key); it then starts with the
//! sketch's TAT and count. Every `max(cells / 2, slots)` checks of a shard
//! (its cells a row, its slots), all its hit counts and cell counts are
//! halved: a cell then counts about half a check of others' keys, so a key
//! seen once rarely passes for one seen twice. Fresh keys, each seen once,
//! thus do not displace a key checked a few times per period: under pure
//! churn about 0.6 % of checks change a slot's key (measured with
//! `top_k = 16 384`, `sketch_width = 65 536`), where Space-Saving would
//! let every fresh key in (and clone it) at the expense of the coldest
//! resident.
//!
//! # Never under-limiting
//!
//! Cells only grow. Each admission (or reservation) of a key writes the
//! TAT it produced into all of the key's cells, or into its slot, which
//! writes it into the cells when evicted; so every later estimate for that
//! key is at least that TAT. By induction over a key's admitted requests,
//! each estimate it sees is at least the TAT an exact GCRA would have
//! computed from those admitted requests alone, so the exact rule would
//! have admitted each of them too: every key's admissions keep the bounds
//! of [`super`], whatever other keys come and go, and a key refused until
//! some instant stays refused at least until then. Collisions only raise
//! an estimate: the sketch may refuse early, never admit beyond a quota.
//! A key's checks are serialized by its shard's lock, so this holds with
//! checks from many threads.
//!
//! # Over-limiting
//!
//! A fresh key is refused when each of its `d = ROWS` cells holds a TAT
//! more than the tolerance ahead: when in every row it shares its cell with
//! a key *in debt*, one whose next request would be refused. With `D` keys
//! in debt among those whose state is in the sketch and their cells spread
//! by a keyed hash, an innocent key is refused with probability about
//! `(1 − e^(−D/w))^d ≤ (D/w)^d` for `w = sketch_width` (the ratio is the
//! same within each shard). A test measures 0.45–0.5 % for `D/w = 0.31`, where
//! the formula says 0.48 %. A cell holding a smaller debt shrinks an
//! innocent key's burst instead of refusing it.
//!
//! `D` is at most the number of distinct non-resident keys admitted in the
//! last `T`, since a key is in debt for at most `T` after its last
//! admitted request (`T + max_wait` for the leaky bucket; refusals do not
//! move it). With a burst of 1 every such key is in debt; with a larger
//! burst a key must have spent it, by its own requests or because the
//! sketch charged it others' (a fresh key starts from the least of its
//! cells). So an attacker admitted `R` times a second holds at most `R · T`
//! debtors: at 10 requests a second per key (`T` = 100 ms), 100 000
//! admissions a second make `D ≤ 10 000`, and `w = 65 536` refuses about 4
//! fresh keys in 10 000 (16 % at `D = w`). Size `w` at several times the
//! keys that may be in debt at once.
//!
//! # Memory
//!
//! `top_k` is rounded up to whole buckets and `sketch_width` to a multiple
//! of the shards; then the heap is exactly
//!
//! `shards · size_of(Shard) + top_k · (12 + size_of(Slot<K>)) + ROWS · 16 · sketch_width`
//!
//! — with `u64` or `IpAddr` keys, 36 or 44 bytes a resident and 64 bytes a
//! column of the sketch: `top_k = 4096, sketch_width = 65 536` is 4.1 MiB.
//! Nothing is allocated per key, except that admitting a key clones it:
//! keys owning heap (`String`) add their own, at most `top_k` of them,
//! freed on eviction. Slots keep the key itself rather than a 64-bit hash
//! of it because the admin listing ([`super::KeyedLimiter::hottest`]) must
//! name it anyway; callers with unbounded string keys should bound their
//! length before limiting on them (or key on a hash).
//!
//! # Concurrency and cost
//!
//! Like `table.rs`, up to [`SHARDS`] shards chosen by the key's hash, each
//! behind a mutex; unlike it, each shard has its own part of the sketch,
//! under the same lock. Cells shared across shards would need atomics
//! (`fetch_max`), and reading a key's `d` cells and raising them would then
//! not be one step: two threads could both read the same estimate and both
//! spend the same token. The keys of a shard spread over its cells as they
//! would over the whole sketch, so the bound is the same. Measured in
//! release mode (`benches/limiter.rs`, same machine and method as in
//! [`super`], `top_k = 16 384`, `sketch_width = 65 536`): 100 ns a check
//! admitted on one of 10 000 known keys (the exact table: 99), 75 ns
//! refused on a hot key (80), 284 ns for a key never seen, which reads and
//! raises four cells of a 4 MiB sketch (the exact table's insert: 124, and
//! it keeps the key). A hot key checked from many cores queues on its
//! shard's mutex, where the exact GCRA table compares-and-swaps.

use std::hash::{BuildHasher, Hash, RandomState};
use std::mem::size_of;
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::table::SHARDS;

/// Rows of the sketch: the `d` of the error bound.
pub(crate) const ROWS: usize = 4;

/// Slots in a bucket: how many keys that share a bucket can all be
/// resident; the ones a fresh key is compared with. Eight hashes fill one
/// cache line.
pub(crate) const WAYS: usize = 8;

/// Per-key GCRA state in fixed memory: see the [module documentation](self).
pub(crate) struct BoundedTable<K> {
    hasher: RandomState,
    shards: Box<[Shard<K>]>,
    /// Buckets per shard.
    buckets: usize,
    /// Cells per row, per shard.
    width: usize,
    /// Checks of a shard between two halvings of its counts.
    age_every: u32,
}

/// On a cache line (pair) of its own, as in `table.rs`.
#[repr(align(128))]
struct Shard<K> {
    state: Mutex<ShardState<K>>,
}

struct ShardState<K> {
    buckets: Box<[Bucket<K>]>,
    /// `ROWS` rows of `width` cells, one after the other.
    cells: Box<[Cell]>,
    /// Checks since the counts were last halved.
    checks: u32,
}

/// Hashes and hit counts apart from the slots, so that a lookup reads the
/// line of hashes and then only the slot that matches, and choosing a
/// victim reads the next line.
struct Bucket<K> {
    hashes: [u64; WAYS],
    /// Checks while resident (plus the sketch's count on admission), halved
    /// every aging period.
    hits: [u32; WAYS],
    slots: [Slot<K>; WAYS],
}

struct Slot<K> {
    tat: u64,
    /// `None`: the slot is free.
    key: Option<K>,
}

#[derive(Debug, Clone, Copy, Default)]
struct Cell {
    /// The largest TAT written here.
    tat: u64,
    /// Checks of non-resident keys here, halved every aging period.
    count: u32,
}

/// A resident key as [`BoundedTable::residents`] lists it.
pub(crate) struct Resident<K> {
    pub(crate) key: K,
    pub(crate) hits: u32,
    pub(crate) tat: u64,
}

impl<K: Hash + Eq + Clone> BoundedTable<K> {
    /// Room for at least `top_k` resident keys and `sketch_width` cells per
    /// row (each at least 1), allocated now and never again.
    pub(crate) fn new(top_k: usize, sketch_width: usize) -> Self {
        let all_buckets = top_k.div_ceil(WAYS).max(1);
        // Fewer shards than buckets would leave a shard without any; tiny
        // tables (tests) get few shards and so real collisions.
        let shards = all_buckets.min(SHARDS).next_power_of_two();
        let buckets = all_buckets.div_ceil(shards);
        let width = sketch_width.div_ceil(shards).max(1);
        // Half a row's worth of checks: a cell then counts about half a
        // check of others' keys, so that a key seen once rarely looks seen
        // twice; but never less than a check per slot.
        let age_every = (width / 2).max(buckets.saturating_mul(WAYS)).max(1);
        Self {
            hasher: RandomState::new(),
            shards: (0..shards)
                .map(|_| Shard {
                    state: Mutex::new(ShardState {
                        buckets: (0..buckets).map(|_| Bucket::empty()).collect(),
                        cells: vec![Cell::default(); ROWS * width].into_boxed_slice(),
                        checks: 0,
                    }),
                })
                .collect(),
            buckets,
            width,
            age_every: u32::try_from(age_every).unwrap_or(u32::MAX),
        }
    }

    /// Replaces `key`'s TAT with the first half of `f(its TAT)` and returns
    /// the second. A key never seen has TAT 0 (or more, from collisions);
    /// `f` runs under the shard's lock, so it must be short and must not
    /// panic, and it must never return a TAT that is more lenient for a
    /// larger one (GCRA does not).
    pub(crate) fn update<R>(&self, key: &K, f: impl FnOnce(u64) -> (u64, R)) -> R {
        let hash = self.hasher.hash_one(key);
        let mut guard = self.shard(hash);
        let ShardState {
            buckets,
            cells,
            checks,
        } = &mut *guard;
        *checks += 1;
        if *checks >= self.age_every {
            *checks = 0;
            age(buckets, cells);
        }
        let bucket = &mut buckets[self.bucket(hash)];
        if let Some(way) = bucket.find(hash, key) {
            let slot = &mut bucket.slots[way];
            let (next, answer) = f(slot.tat);
            slot.tat = next;
            bucket.hits[way] = bucket.hits[way].saturating_add(1);
            return answer;
        }
        let at = self.cells(hash);
        let (estimate, count) = observe(cells, &at);
        let (next, answer) = f(estimate);
        let way = bucket.coldest();
        let victim = &mut bucket.slots[way];
        match victim.key {
            // A key seen once (count 1: a fresh key, most of churn) never
            // displaces one: under churn, slots do not change hands at
            // every check.
            Some(_) if count <= bucket.hits[way].max(1) => {
                // A refusal changes nothing.
                if next != estimate {
                    raise(cells, &at, next);
                }
            }
            _ => {
                if victim.key.is_some() {
                    raise(cells, &self.cells(bucket.hashes[way]), victim.tat);
                }
                *victim = Slot {
                    tat: next,
                    key: Some(key.clone()),
                };
                bucket.hashes[way] = hash;
                bucket.hits[way] = count;
            }
        }
        answer
    }

    /// Every resident key with its hit count and TAT, shard by shard (a
    /// snapshot while checks go on).
    pub(crate) fn residents(&self) -> Vec<Resident<K>> {
        let mut residents = Vec::new();
        for shard in self.shards.iter() {
            let state = lock(&shard.state);
            for bucket in state.buckets.iter() {
                let slots = bucket.slots.iter().zip(bucket.hits);
                residents.extend(slots.filter_map(|(slot, hits)| {
                    slot.key.as_ref().map(|key| Resident {
                        key: key.clone(),
                        hits,
                        tat: slot.tat,
                    })
                }));
            }
        }
        residents
    }

    /// Whether `key` holds a slot of the top-K table.
    #[cfg(test)]
    pub(crate) fn is_resident(&self, key: &K) -> bool {
        let hash = self.hasher.hash_one(key);
        self.shard(hash).buckets[self.bucket(hash)]
            .find(hash, key)
            .is_some()
    }
}

impl<K> BoundedTable<K> {
    /// How many keys are resident (shard by shard: a snapshot).
    pub(crate) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| {
                let state = lock(&shard.state);
                let slots = state.buckets.iter().flat_map(|bucket| &bucket.slots);
                slots.filter(|slot| slot.key.is_some()).count()
            })
            .sum()
    }

    /// The heap the table holds, fixed at construction: the formula of the
    /// [module documentation](self), not counting heap owned by keys.
    pub(crate) fn memory_bytes(&self) -> usize {
        let shard = self.buckets * size_of::<Bucket<K>>() + ROWS * self.width * size_of::<Cell>();
        self.shards.len() * (size_of::<Shard<K>>() + shard)
    }

    /// Slots, after rounding up.
    #[cfg(test)]
    pub(crate) fn top_k(&self) -> usize {
        self.shards.len() * self.buckets * WAYS
    }

    /// Cells per row, after rounding up.
    #[cfg(test)]
    pub(crate) fn sketch_width(&self) -> usize {
        self.shards.len() * self.width
    }

    fn shard(&self, hash: u64) -> MutexGuard<'_, ShardState<K>> {
        // The top bits pick the shard; the mixes below use every bit, so the
        // bucket and cells within a shard stay uniform. The shard count is a
        // power of two up to 64, so the mask keeps the index in range.
        lock(&self.shards[(hash >> 58) as usize & (self.shards.len() - 1)].state)
    }

    fn bucket(&self, hash: u64) -> usize {
        reduce(mix(hash), self.buckets)
    }

    /// The key's cell in each row: independent-looking indices derived from
    /// its one keyed hash (a client who cannot predict the hash cannot aim
    /// at any of them).
    fn cells(&self, hash: u64) -> [usize; ROWS] {
        std::array::from_fn(|row| {
            let salt = GOLDEN.wrapping_mul(row as u64 + 1);
            row * self.width + reduce(mix(hash.wrapping_add(salt)), self.width)
        })
    }
}

impl<K> Bucket<K> {
    fn empty() -> Self {
        Self {
            hashes: [0; WAYS],
            hits: [0; WAYS],
            slots: std::array::from_fn(|_| Slot { tat: 0, key: None }),
        }
    }

    fn coldest(&self) -> usize {
        let free = self.slots.iter().position(|slot| slot.key.is_none());
        free.unwrap_or_else(|| (0..WAYS).min_by_key(|&way| self.hits[way]).unwrap_or(0))
    }
}

impl<K: Eq> Bucket<K> {
    fn find(&self, hash: u64, key: &K) -> Option<usize> {
        (0..WAYS).find(|&way| self.hashes[way] == hash && self.slots[way].key.as_ref() == Some(key))
    }
}

/// The key's estimated TAT (the least over its cells) and its count after
/// counting this check.
fn observe(cells: &mut [Cell], at: &[usize; ROWS]) -> (u64, u32) {
    let tat = at.iter().map(|&i| cells[i].tat).min().unwrap_or(0);
    let count = at.iter().map(|&i| cells[i].count).min().unwrap_or(0);
    let counted = count.saturating_add(1);
    // Conservative update: the cells above the minimum already count this
    // check, so the count overestimates less.
    for &i in at {
        if cells[i].count == count {
            cells[i].count = counted;
        }
    }
    (tat, counted)
}

/// Raises the key's cells to `tat`.
fn raise(cells: &mut [Cell], at: &[usize; ROWS], tat: u64) {
    for &i in at {
        cells[i].tat = cells[i].tat.max(tat);
    }
}

/// Halves every count, so they measure recent traffic.
fn age<K>(buckets: &mut [Bucket<K>], cells: &mut [Cell]) {
    for hits in buckets.iter_mut().flat_map(|bucket| &mut bucket.hits) {
        *hits /= 2;
    }
    for cell in cells {
        cell.count /= 2;
    }
}

/// 2⁶⁴ / φ: successive multiples are far apart (splitmix64's increment).
const GOLDEN: u64 = 0x9e37_79b9_7f4a_7c15;

/// splitmix64's finalizer: every input bit moves every output bit.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// `x` scaled into `0..n` (Lemire's multiply-shift: no division, any `n`).
fn reduce(x: u64, n: usize) -> usize {
    ((u128::from(x) * n as u128) >> 64) as usize
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Under the lock a slot or cell is written whole, so a panic elsewhere
    // cannot have left one half-written.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests;
