//! Cache-aside for catalog reads (shared/DESIGN.md section 7): a bounded
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
//! moka does the bounding, expiry and load coalescing; this wraps it with the
//! policy above and per-cache metrics (`stampede_cache_requests_total` by
//! result, `stampede_cache_loads_total`), from which the hit ratio follows.
//! Live stock never comes from here: `remaining` is always the ledger's.

use std::future::Future;
use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use metrics::{Counter, counter};
use moka::Expiry;

/// Sizes and lifetimes of a cache.
#[derive(Debug, Clone, Copy)]
pub struct CacheSettings {
    /// Most entries kept (known and unknown ids together).
    pub capacity: u64,
    /// How long a found value is kept.
    pub ttl: Duration,
    /// How long an unknown id is remembered as unknown.
    pub negative_ttl: Duration,
    /// Each lifetime is varied by up to this share either way (0.1 = ±10%).
    pub jitter: f64,
}

impl Default for CacheSettings {
    fn default() -> Self {
        Self {
            capacity: 100_000,
            ttl: Duration::from_secs(30),
            negative_ttl: Duration::from_secs(5),
            jitter: 0.1,
        }
    }
}

struct Jittered {
    ttl: Duration,
    negative_ttl: Duration,
    jitter: f64,
}

impl<K, V> Expiry<K, Option<V>> for Jittered {
    fn expire_after_create(&self, _: &K, value: &Option<V>, _: Instant) -> Option<Duration> {
        let base = if value.is_some() {
            self.ttl
        } else {
            self.negative_ttl
        };
        let factor = 1.0 + self.jitter * (fastrand::f64() * 2.0 - 1.0);
        Some(base.mul_f64(factor.max(0.0)))
    }
}

/// A cache of `Option<V>` by `K`: `None` is a remembered "not found".
pub struct ReadCache<K, V> {
    entries: moka::future::Cache<K, Option<V>>,
    hits: Counter,
    misses: Counter,
    loads: Counter,
}

impl<K, V> ReadCache<K, V>
where
    K: Hash + Eq + Send + Sync + Clone + 'static,
    V: Clone + Send + Sync + 'static,
{
    pub fn new(name: &'static str, settings: CacheSettings) -> Self {
        let entries = moka::future::Cache::builder()
            .name(name)
            .max_capacity(settings.capacity)
            .expire_after(Jittered {
                ttl: settings.ttl,
                negative_ttl: settings.negative_ttl,
                jitter: settings.jitter.clamp(0.0, 0.9),
            })
            .build();
        let result = |result: &'static str| counter!("stampede_cache_requests_total", "cache" => name, "layer" => "l1", "result" => result);
        Self {
            entries,
            hits: result("hit"),
            misses: result("miss"),
            loads: counter!("stampede_cache_loads_total", "cache" => name),
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
            .try_get_with(key, async {
                loaded_here.store(true, Ordering::Relaxed);
                self.loads.increment(1);
                load().await
            })
            .await;
        if loaded_here.load(Ordering::Relaxed) {
            self.misses.increment(1);
        } else {
            self.hits.increment(1);
        }
        result
    }

    /// Forgets `key` (after a write, so the next read sees it).
    pub async fn invalidate(&self, key: &K) {
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
