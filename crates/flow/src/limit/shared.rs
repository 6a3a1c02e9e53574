//! Rate limits whose state lives in a store every node shares (Redis in
//! cluster mode), so that a rule's budget is the cluster's, not each node's.
//!
//! A [`RateStore`] decides one request atomically in the store (one script
//! per check in Redis) with the same [`Algorithm`]s and [`Quota`]s as
//! [`KeyedLimiter`]; a [`SharedLimiter`] is one rule on such a store, with
//! what to do when the store does not answer in time ([`Fallback`]):
//!
//! - [`Fallback::Local`] (the default) decides with this node's own
//!   [`KeyedLimiter`] and the same quota: the service stays limited, but each
//!   node grants the whole budget, so a cluster of `n` nodes admits up to
//!   `n` times the rule's rate while the store is away;
//! - [`Fallback::Open`] lets every request through (for limits that protect
//!   nothing critical, where availability matters more);
//! - [`Fallback::Closed`] refuses ([`Undecided`]; the HTTP edge answers
//!   `503 unavailable` — not 429, since the client is not over any limit).
//!
//! Each store call is bounded by a short timeout (50 ms by default), and
//! every shared rule of a node goes through one [`CircuitBreaker`]: once
//! calls fail or time out, the breaker opens and requests go straight to
//! their fallback instead of each waiting for the timeout, then a few probes
//! find out whether the store is back.
//!
//! The store also keeps the rule set every node runs ([`StoredRules`]):
//! one node stores a replacement, the others poll its version and follow.
//!
//! Metrics: decisions count in `stampede_ratelimit_decisions_total` as the
//! local limiter's do (`limiter` = the rule), and each decision taken by a
//! fallback in `stampede_rate_limit_fallbacks_total{rule}`.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use metrics::{Counter, counter};

use super::{Algorithm, KeyedLimiter, LimitDecision, Metrics, Quota};
use crate::breaker::{BreakerConfig, CircuitBreaker, Outcome, Window};

/// A store that failed to decide: unreachable, an error, a reply it could
/// not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("rate limit store: {0}")]
pub struct RateStoreError(pub String);

/// A rule set as the store keeps it for every node: its text (the caller's
/// encoding) and a version that changes with every set stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRules {
    pub version: u64,
    pub text: String,
}

/// Rate-limit state shared by every node, and the rule set they all run.
#[async_trait]
pub trait RateStore: Send + Sync {
    /// Decides on one request for `key` under the rule named `rule`, now by
    /// the store's clock, and counts it if admitted — atomically, whichever
    /// node asks. `key` is already a digest of what the rule counts (the
    /// same on every node).
    async fn check(
        &self,
        rule: &str,
        key: &str,
        algorithm: Algorithm,
        quota: Quota,
    ) -> Result<LimitDecision, RateStoreError>;

    /// The version of the stored rule set, 0 when none is stored: a cheap
    /// read each node polls. The default stores no rules.
    async fn rules_version(&self) -> Result<u64, RateStoreError> {
        Ok(0)
    }

    /// The stored rule set with its version, read together.
    async fn load_rules(&self) -> Result<Option<StoredRules>, RateStoreError> {
        Ok(None)
    }

    /// Stores `text` as the rule set of every node, under a version other
    /// than the one it replaces; returns that version.
    async fn store_rules(&self, text: &str) -> Result<u64, RateStoreError> {
        let _ = text;
        Err(RateStoreError("this store keeps no rule sets".into()))
    }
}

/// What a shared rule decides when its store does not answer in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fallback {
    /// This node's own limiter with the same quota.
    #[default]
    Local,
    /// Let the request through.
    Open,
    /// Refuse it ([`Undecided`]).
    Closed,
}

/// A [`Fallback::Closed`] rule whose store did not answer: the request is
/// refused without having been counted anywhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Undecided;

/// A store with the timeout and breaker its calls go through; one per node,
/// shared by every [`SharedLimiter`] on it. Cheap to clone.
#[derive(Clone)]
pub struct SharedStore {
    store: Arc<dyn RateStore>,
    timeout: Duration,
    breaker: CircuitBreaker,
}

impl fmt::Debug for SharedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedStore")
            .field("timeout", &self.timeout)
            .field("breaker", &self.breaker)
            .finish_non_exhaustive()
    }
}

impl SharedStore {
    /// `store` with each call bounded by `timeout`, behind a breaker named
    /// `name` that opens at half the calls of the last 5 s failing (once 20
    /// were made) and probes again after 1 s.
    pub fn new(name: &str, store: Arc<dyn RateStore>, timeout: Duration) -> Self {
        let breaker = CircuitBreaker::new(
            name,
            BreakerConfig {
                window: Window::Time(Duration::from_secs(5)),
                failure_rate_threshold: 50.0,
                // Timeouts are failures already; no call is slow short of one.
                slow_call_duration: timeout.saturating_mul(2).max(Duration::from_millis(1)),
                slow_call_rate_threshold: 100.0,
                minimum_calls: 20,
                wait_in_open: Duration::from_secs(1),
                half_open_calls: 3,
            },
        );
        Self {
            store,
            timeout,
            breaker,
        }
    }

    /// The longest a call may take.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}

/// One rule on a [`SharedStore`], with its fallback. Cheap to clone.
#[derive(Clone)]
pub struct SharedLimiter {
    inner: Arc<SharedInner>,
}

struct SharedInner {
    name: Arc<str>,
    store: SharedStore,
    fallback: Fallback,
    /// The fallback of [`Fallback::Local`]; its quota is the rule's, clamped.
    local: KeyedLimiter<u64>,
    metrics: Metrics,
    fallbacks: Counter,
    /// Whether the last call failed: a warning is logged when the store goes
    /// away and a note when it is back, not one line per request.
    degraded: AtomicBool,
}

impl fmt::Debug for SharedLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedLimiter")
            .field("name", &self.inner.name)
            .field("fallback", &self.inner.fallback)
            .field("local", &self.inner.local)
            .finish_non_exhaustive()
    }
}

impl SharedLimiter {
    /// The rule `name` on `store`. Quota fields of zero are raised as
    /// [`KeyedLimiter::new`] does.
    pub fn new(
        name: impl Into<String>,
        algorithm: Algorithm,
        quota: Quota,
        store: SharedStore,
        fallback: Fallback,
    ) -> Self {
        let name: String = name.into();
        let local = KeyedLimiter::new(name.clone(), algorithm, quota);
        let name: Arc<str> = name.into();
        Self {
            inner: Arc::new(SharedInner {
                metrics: Metrics::new(&name),
                fallbacks: counter!("stampede_rate_limit_fallbacks_total", "rule" => name.to_string()),
                name,
                store,
                fallback,
                local,
                degraded: AtomicBool::new(false),
            }),
        }
    }

    /// Decides on one request: `key` names it in the store (the same on
    /// every node), `local_key` in this node's fallback limiter. `Err` only
    /// for a [`Fallback::Closed`] rule whose store did not decide.
    pub async fn check(&self, key: &str, local_key: u64) -> Result<LimitDecision, Undecided> {
        let inner = &*self.inner;
        match inner.ask(key).await {
            Ok(decision) => {
                if inner.degraded.swap(false, Ordering::Relaxed) {
                    tracing::info!(rule = %inner.name, "rate limit store answers again");
                }
                inner.metrics.count(&decision);
                Ok(decision)
            }
            Err(reason) => {
                if !inner.degraded.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        rule = %inner.name,
                        fallback = ?inner.fallback,
                        %reason,
                        "rate limit store did not decide: falling back"
                    );
                }
                inner.fallbacks.increment(1);
                match inner.fallback {
                    // Counted in the decisions by the local limiter itself.
                    Fallback::Local => Ok(inner.local.check(&local_key)),
                    Fallback::Open => {
                        let decision = LimitDecision::Allow {
                            remaining: 0,
                            reset: Duration::ZERO,
                        };
                        inner.metrics.count(&decision);
                        Ok(decision)
                    }
                    Fallback::Closed => Err(Undecided),
                }
            }
        }
    }

    /// Forgets idle keys of the local fallback limiter.
    pub fn purge_idle(&self) -> usize {
        self.inner.local.purge_idle()
    }

    /// The quota, with zeros raised.
    pub fn quota(&self) -> Quota {
        self.inner.local.quota()
    }

    pub fn algorithm(&self) -> Algorithm {
        self.inner.local.algorithm()
    }

    pub fn fallback(&self) -> Fallback {
        self.inner.fallback
    }

    pub fn name(&self) -> &str {
        &self.inner.name
    }
}

impl SharedInner {
    /// The store's decision, through the breaker and within the timeout.
    async fn ask(&self, key: &str) -> Result<LimitDecision, String> {
        let store = &self.store;
        let permit = store.breaker.try_acquire().map_err(|e| e.to_string())?;
        let call = store
            .store
            .check(&self.name, key, self.local.algorithm(), self.local.quota());
        match tokio::time::timeout(store.timeout, call).await {
            Ok(Ok(decision)) => {
                permit.record(Outcome::Success);
                Ok(decision)
            }
            Ok(Err(err)) => {
                permit.record(Outcome::Failure);
                Err(err.to_string())
            }
            Err(_) => {
                permit.record(Outcome::Failure);
                Err(format!("no answer within {:?}", store.timeout))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// A store that answers from a script of results, then allows.
    struct Scripted {
        answers: Mutex<Vec<Result<LimitDecision, RateStoreError>>>,
        delay: Duration,
        calls: std::sync::atomic::AtomicUsize,
    }

    impl Scripted {
        fn new(delay: Duration, answers: Vec<Result<LimitDecision, RateStoreError>>) -> Arc<Self> {
            Arc::new(Self {
                answers: Mutex::new(answers),
                delay,
                calls: Default::default(),
            })
        }
    }

    #[async_trait]
    impl RateStore for Scripted {
        async fn check(
            &self,
            _: &str,
            _: &str,
            _: Algorithm,
            _: Quota,
        ) -> Result<LimitDecision, RateStoreError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(self.delay).await;
            let next = self.answers.lock().unwrap().pop();
            next.unwrap_or(Ok(LimitDecision::Allow {
                remaining: 7,
                reset: Duration::ZERO,
            }))
        }
    }

    fn down() -> Result<LimitDecision, RateStoreError> {
        Err(RateStoreError("connection refused".into()))
    }

    fn limiter(store: Arc<dyn RateStore>, fallback: Fallback) -> SharedLimiter {
        SharedLimiter::new(
            "t",
            Algorithm::Gcra,
            Quota::per_second(2),
            SharedStore::new("t-store", store, Duration::from_millis(50)),
            fallback,
        )
    }

    #[tokio::test(start_paused = true)]
    async fn the_stores_decision_is_the_answer() {
        let store = Scripted::new(Duration::from_millis(1), vec![]);
        let limiter = limiter(store, Fallback::Closed);
        assert_eq!(limiter.check("k", 1).await.unwrap().remaining(), 7);
    }

    #[tokio::test(start_paused = true)]
    async fn each_fallback_decides_when_the_store_fails() {
        let local = limiter(
            Scripted::new(Duration::ZERO, vec![down(); 3]),
            Fallback::Local,
        );
        // The local limiter's quota: 2 at once, then refused.
        assert!(local.check("k", 1).await.unwrap().is_admitted());
        assert!(local.check("k", 1).await.unwrap().is_admitted());
        assert!(!local.check("k", 1).await.unwrap().is_admitted());

        let open = limiter(
            Scripted::new(Duration::ZERO, vec![down(); 3]),
            Fallback::Open,
        );
        for _ in 0..3 {
            assert!(open.check("k", 1).await.unwrap().is_admitted());
        }
        let closed = limiter(
            Scripted::new(Duration::ZERO, vec![down()]),
            Fallback::Closed,
        );
        assert_eq!(closed.check("k", 1).await, Err(Undecided));
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_store_is_given_up_after_the_timeout() {
        let store = Scripted::new(Duration::from_secs(5), vec![]);
        let limiter = limiter(store, Fallback::Closed);
        let started = tokio::time::Instant::now();
        assert_eq!(limiter.check("k", 1).await, Err(Undecided));
        assert_eq!(started.elapsed(), Duration::from_millis(50));
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_store_opens_the_breaker_and_is_not_waited_for() {
        let store = Scripted::new(Duration::from_secs(5), vec![]);
        let limiter = limiter(store.clone(), Fallback::Open);
        for _ in 0..20 {
            limiter.check("k", 1).await.unwrap();
        }
        assert_eq!(store.calls.load(Ordering::SeqCst), 20);
        let started = tokio::time::Instant::now();
        for _ in 0..100 {
            limiter.check("k", 1).await.unwrap();
        }
        assert_eq!(started.elapsed(), Duration::ZERO, "went to the store");
        assert_eq!(store.calls.load(Ordering::SeqCst), 20);
    }
}
