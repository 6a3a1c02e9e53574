//! Cache-aside for catalog reads (docs/design.md §9): a bounded
//! in-process cache (L1) in front of the store, with
//!
//! - one load per key at a time: concurrent misses for a key wait for the one
//!   load in flight instead of each going to the store (no cache stampede);
//! - negative caching: an unknown id is remembered as unknown for a shorter
//!   while, so a flood of made-up ids reaches the store once per id (no
//!   penetration);
//! - jittered lifetimes: each entry lives its TTL ± a random share, so entries
//!   loaded together do not expire together (no avalanche).
//!
//! In cluster mode a shared cache (L2, Redis: [`SharedCache`]) sits between
//! L1 and the store: an L1 miss reads L2, and only an L2 miss loads from the
//! store, then stores the value (or the absence) in L2 with the same jittered
//! lifetimes, as JSON. The one load per key holds per node (moka runs one
//! loader per key), so a cold key costs the store at most one read per node
//! — and none on nodes that find it in L2. L2 calls are bounded by
//! `l2_timeout`; an L2 error or timeout counts as a miss (the store is still
//! there), and an unreadable L2 value is loaded afresh and overwritten.
//! [`ReadCache::invalidate`] deletes from both layers.
//!
//! moka does the bounding, expiry and load coalescing; this wraps it with the
//! policy above and per-cache metrics: `stampede_cache_requests_total` by
//! `layer` (`l1`, `l2`) and `result` (`hit`, `miss`, and `error` for L2),
//! and `stampede_cache_loads_total` (L1 misses, whatever answered them),
//! from which the hit ratios follow. Each cache also keeps its own L1 hits
//! and loads ([`ReadCache::stats`]): the exported counters are the process's,
//! shared by every node a process runs (tests run many). Live stock never
//! comes from here:
//! `remaining` is always the ledger's.

use crate::failure::Chain;
use std::fmt::Display;
use std::future::Future;
use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use metrics::{Counter, counter};
use moka::Expiry;

use crate::ports::SharedCache;

/// Sizes and lifetimes of a cache (the `cache_*` settings).
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheSettings {
    /// Most entries kept (known and unknown ids together).
    pub capacity: u64,
    /// How long a found value is kept.
    #[serde(rename = "ttl_ms", with = "stampede_flow::serde_duration::millis")]
    pub ttl: Duration,
    /// How long an unknown id is remembered as unknown.
    #[serde(
        rename = "negative_ttl_ms",
        with = "stampede_flow::serde_duration::millis"
    )]
    pub negative_ttl: Duration,
    /// Each lifetime is varied by up to this share either way (0.1 = ±10%).
    #[serde(skip)]
    pub jitter: f64,
    /// The longest a shared-cache (L2) call may take before it counts as a
    /// miss.
    #[serde(skip)]
    pub l2_timeout: Duration,
}

impl Default for CacheSettings {
    fn default() -> Self {
        Self {
            capacity: 100_000,
            ttl: Duration::from_secs(30),
            negative_ttl: Duration::from_secs(5),
            jitter: 0.1,
            l2_timeout: Duration::from_millis(50),
        }
    }
}

struct Jittered {
    ttl: Duration,
    negative_ttl: Duration,
    jitter: f64,
}

impl Jittered {
    /// A lifetime for a found value or a remembered absence.
    fn lifetime(&self, found: bool) -> Duration {
        let base = if found { self.ttl } else { self.negative_ttl };
        let factor = 1.0 + self.jitter * (fastrand::f64() * 2.0 - 1.0);
        base.mul_f64(factor.max(0.0))
    }
}

impl<K, V> Expiry<K, Option<V>> for Jittered {
    fn expire_after_create(&self, _: &K, value: &Option<V>, _: Instant) -> Option<Duration> {
        Some(self.lifetime(value.is_some()))
    }
}

/// How values of one cache are written to and read from the shared cache.
pub struct L2Codec<V> {
    pub encode: fn(&V) -> String,
    /// `None`: not a value of this cache (another version's, or damaged).
    pub decode: fn(&str) -> Option<V>,
}

/// What an absence is stored as in L2.
const ABSENT: &str = "null";

/// A counter exported to `/metrics` that this cache keeps a copy of, so a
/// node reads its own figure rather than the process's.
struct Tally {
    exported: Counter,
    own: AtomicU64,
}

impl Tally {
    fn new(exported: Counter) -> Self {
        Self {
            exported,
            own: AtomicU64::new(0),
        }
    }

    fn increment(&self) {
        self.exported.increment(1);
        self.own.fetch_add(1, Ordering::Relaxed);
    }

    fn get(&self) -> u64 {
        self.own.load(Ordering::Relaxed)
    }
}

/// What one cache has answered since it was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheStats {
    /// Reads answered from L1.
    pub hits: u64,
    /// L1 misses: loads from L2 or the store (one per key at a time).
    pub loads: u64,
}

/// The shared layer of one cache.
struct L2<V> {
    store: Arc<dyn SharedCache>,
    codec: L2Codec<V>,
    timeout: Duration,
    hits: Counter,
    misses: Counter,
    errors: Counter,
}

/// A cache of `Option<V>` by `K`: `None` is a remembered "not found".
pub struct ReadCache<K, V> {
    name: &'static str,
    entries: moka::future::Cache<K, Option<V>>,
    lifetimes: Jittered,
    l2: Option<L2<V>>,
    hits: Tally,
    misses: Counter,
    loads: Tally,
}

impl<K, V> ReadCache<K, V>
where
    K: Hash + Eq + Send + Sync + Clone + Display + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// An in-process cache alone.
    pub fn new(name: &'static str, settings: CacheSettings) -> Self {
        Self::with_l2(name, settings, None)
    }

    /// An in-process cache in front of `l2` when there is one; its keys
    /// there are `<name>:<key>`.
    pub fn with_l2(
        name: &'static str,
        settings: CacheSettings,
        l2: Option<(Arc<dyn SharedCache>, L2Codec<V>)>,
    ) -> Self {
        let lifetimes = || Jittered {
            ttl: settings.ttl,
            negative_ttl: settings.negative_ttl,
            jitter: settings.jitter.clamp(0.0, 0.9),
        };
        let entries = moka::future::Cache::builder()
            .name(name)
            .max_capacity(settings.capacity)
            .expire_after(lifetimes())
            .build();
        let result = |layer: &'static str, result: &'static str| counter!("stampede_cache_requests_total", "cache" => name, "layer" => layer, "result" => result);
        Self {
            name,
            entries,
            lifetimes: lifetimes(),
            l2: l2.map(|(store, codec)| L2 {
                store,
                codec,
                timeout: settings.l2_timeout,
                hits: result("l2", "hit"),
                misses: result("l2", "miss"),
                errors: result("l2", "error"),
            }),
            hits: Tally::new(result("l1", "hit")),
            misses: result("l1", "miss"),
            loads: Tally::new(counter!("stampede_cache_loads_total", "cache" => name)),
        }
    }

    fn l2_key(&self, key: &K) -> String {
        format!("{}:{key}", self.name)
    }

    /// What L2 holds for `key`: `Some(value or absence)`, or `None` to load
    /// from the store (a miss, an error, an unreadable value).
    async fn read_l2(&self, l2: &L2<V>, key: &str) -> Option<Option<V>> {
        match tokio::time::timeout(l2.timeout, l2.store.get(key)).await {
            Ok(Ok(Some(text))) => {
                let value = if text == ABSENT {
                    Some(None)
                } else {
                    (l2.codec.decode)(&text).map(Some)
                };
                match value {
                    Some(_) => l2.hits.increment(1),
                    None => l2.errors.increment(1),
                }
                value
            }
            Ok(Ok(None)) => {
                l2.misses.increment(1);
                None
            }
            Ok(Err(err)) => {
                l2.errors.increment(1);
                tracing::debug!(error = %Chain(&err), key, "shared cache read failed");
                None
            }
            Err(_) => {
                l2.errors.increment(1);
                tracing::debug!(key, "shared cache read timed out");
                None
            }
        }
    }

    /// Stores a loaded value (or absence) in L2 for a jittered lifetime.
    async fn write_l2(&self, l2: &L2<V>, key: &str, value: &Option<V>) {
        let text = value
            .as_ref()
            .map_or_else(|| ABSENT.to_owned(), l2.codec.encode);
        let ttl = self.lifetimes.lifetime(value.is_some());
        match tokio::time::timeout(l2.timeout, l2.store.set(key, &text, ttl)).await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => tracing::debug!(error = %Chain(&err), key, "shared cache write failed"),
            Err(_) => tracing::debug!(key, "shared cache write timed out"),
        }
    }

    /// The cached value (or cached absence) for `key`, or what `load` finds,
    /// cached. A failed load is not cached; every caller waiting on it gets
    /// its error.
    pub async fn get_or_load<F, Fut, E>(&self, key: K, load: F) -> Result<Option<V>, Arc<E>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<V>, E>>,
        E: Send + Sync + 'static,
    {
        let loaded_here = AtomicBool::new(false);
        let result = self
            .entries
            .try_get_with(key.clone(), async {
                loaded_here.store(true, Ordering::Relaxed);
                self.loads.increment();
                let Some(l2) = &self.l2 else {
                    return load().await;
                };
                let l2_key = self.l2_key(&key);
                if let Some(value) = self.read_l2(l2, &l2_key).await {
                    return Ok(value);
                }
                let value = load().await?;
                self.write_l2(l2, &l2_key, &value).await;
                Ok(value)
            })
            .await;
        if loaded_here.load(Ordering::Relaxed) {
            self.misses.increment(1);
        } else {
            self.hits.increment();
        }
        result
    }

    /// This cache's own L1 hits and loads.
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.get(),
            loads: self.loads.get(),
        }
    }

    /// Forgets `key` here and in L2 (after a write, so the next read sees
    /// it; other nodes' L1 copies live out their lifetime).
    pub async fn invalidate(&self, key: &K) {
        if let Some(l2) = &self.l2 {
            let l2_key = self.l2_key(key);
            match tokio::time::timeout(l2.timeout, l2.store.delete(&l2_key)).await {
                Ok(Ok(())) => {}
                Ok(Err(err)) => {
                    tracing::warn!(error = %Chain(&err), key = l2_key, "shared cache delete failed");
                }
                Err(_) => tracing::warn!(key = l2_key, "shared cache delete timed out"),
            }
        }
        self.entries.invalidate(key).await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    fn cache() -> ReadCache<u32, String> {
        ReadCache::new(
            "test",
            CacheSettings {
                capacity: 100,
                ttl: Duration::from_secs(60),
                negative_ttl: Duration::from_secs(60),
                jitter: 0.1,
                l2_timeout: Duration::from_millis(50),
            },
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_misses_for_one_key_cause_one_load() {
        let cache = Arc::new(cache());
        let loads = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let (cache, loads) = (cache.clone(), loads.clone());
            tasks.push(tokio::spawn(async move {
                cache
                    .get_or_load(7, || async {
                        loads.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        Ok::<_, ()>(Some("seven".to_owned()))
                    })
                    .await
                    .unwrap()
            }));
        }
        for task in tasks {
            assert_eq!(task.await.unwrap().as_deref(), Some("seven"));
        }
        assert_eq!(loads.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn an_unknown_key_is_remembered_as_unknown() {
        let cache = cache();
        let loads = AtomicUsize::new(0);
        for _ in 0..3 {
            let found = cache
                .get_or_load(404, || async {
                    loads.fetch_add(1, Ordering::SeqCst);
                    Ok::<_, ()>(None)
                })
                .await
                .unwrap();
            assert_eq!(found, None);
        }
        assert_eq!(loads.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn failed_loads_are_not_cached_and_invalidation_forgets() {
        let cache = cache();
        let failed = cache
            .get_or_load(1, || async { Err::<Option<String>, _>("down") })
            .await;
        assert!(failed.is_err());
        let found = cache
            .get_or_load(1, || async { Ok::<_, ()>(Some("one".to_owned())) })
            .await;
        assert_eq!(found.unwrap().as_deref(), Some("one"));
        cache.invalidate(&1).await;
        let reloaded = cache
            .get_or_load(1, || async { Ok::<_, ()>(Some("uno".to_owned())) })
            .await;
        assert_eq!(reloaded.unwrap().as_deref(), Some("uno"));
    }

    #[test]
    fn lifetimes_are_jittered_within_the_share() {
        let expiry = Jittered {
            ttl: Duration::from_secs(100),
            negative_ttl: Duration::from_secs(10),
            jitter: 0.1,
        };
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            let life = Expiry::<u32, Option<u32>>::expire_after_create(
                &expiry,
                &1,
                &Some(1),
                Instant::now(),
            )
            .unwrap();
            assert!(
                life >= Duration::from_secs(90) && life <= Duration::from_secs(110),
                "{life:?}"
            );
            seen.insert(life.as_millis());
            let negative =
                Expiry::<u32, Option<u32>>::expire_after_create(&expiry, &1, &None, Instant::now())
                    .unwrap();
            assert!(negative >= Duration::from_secs(9) && negative <= Duration::from_secs(11));
        }
        assert!(seen.len() > 100, "lifetimes are not spread");
    }
}
