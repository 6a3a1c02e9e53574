//! Bulkheads: a fixed concurrency budget per dependency, so that when one
//! dependency slows down, only the calls to it pile up — each waiting a
//! bounded time for its turn — instead of every task in the service.
//!
//! A [`Bulkhead`] is a fair (first come, first served) `tokio::sync::Semaphore`
//! with a name, metrics and a bounded wait. [`Bulkhead::acquire`] waits at
//! most `max_wait` for a permit, and never past the current request's
//! deadline ([`deadline::current`](crate::deadline::current)), so a request
//! with 20 ms left does not queue for the default 100 ms: it is told at once
//! that it will not get in in time. [`Bulkhead::try_acquire`] does not wait.
//!
//! A [`BulkheadPermit`] is held for the whole call and frees its slot when
//! dropped, so a cancelled caller gives its slot back too.
//!
//! # Metrics
//!
//! With the label `bulkhead` = the bulkhead's name: the gauge
//! `stampede_bulkhead_in_use` (permits held) and the counter
//! `stampede_bulkhead_rejected_total` (acquisitions that gave up). Handles
//! are made once per bulkhead.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use metrics::{Counter, Gauge, counter, gauge};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::deadline::Deadline;

/// A concurrency budget for one dependency. Cheap to clone; clones share
/// the budget.
#[derive(Clone)]
pub struct Bulkhead {
    inner: Arc<Inner>,
}

struct Inner {
    name: Arc<str>,
    semaphore: Arc<Semaphore>,
    /// At least 1.
    max_concurrent: usize,
    max_wait: Duration,
    in_use: Gauge,
    rejected: Counter,
}

impl fmt::Debug for Bulkhead {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bulkhead")
            .field("name", &self.inner.name)
            .field("max_concurrent", &self.inner.max_concurrent)
            .field("max_wait", &self.inner.max_wait)
            .field("available", &self.available())
            .finish()
    }
}

/// No slot was free in time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bulkhead {bulkhead} is full")]
pub struct Full {
    /// The bulkhead's name.
    pub bulkhead: Arc<str>,
    /// How long the caller waited before giving up: zero for
    /// [`Bulkhead::try_acquire`] or a deadline already past, `max_wait` or
    /// less (the request's deadline came first) otherwise.
    pub waited: Duration,
}

impl Bulkhead {
    /// A bulkhead named `name` (the `bulkhead` label of its metrics) letting
    /// `max_concurrent` calls (at least 1) run at once, each caller waiting
    /// at most `max_wait` for its turn.
    pub fn new(name: impl Into<String>, max_concurrent: u32, max_wait: Duration) -> Self {
        let name: Arc<str> = name.into().into();
        let max_concurrent = usize::try_from(max_concurrent)
            .unwrap_or(usize::MAX)
            .clamp(1, Semaphore::MAX_PERMITS);
        Self {
            inner: Arc::new(Inner {
                semaphore: Arc::new(Semaphore::new(max_concurrent)),
                max_concurrent,
                max_wait,
                in_use: gauge!("stampede_bulkhead_in_use", "bulkhead" => name.to_string()),
                rejected: counter!("stampede_bulkhead_rejected_total", "bulkhead" => name.to_string()),
                name,
            }),
        }
    }

    /// A slot, waiting for one at most `max_wait` and never past the current
    /// [`scope`](crate::deadline::scope)'s deadline. A free slot is taken
    /// even when that deadline has passed: refusing work that costs no wait
    /// would help nobody.
    pub async fn acquire(&self) -> Result<BulkheadPermit, Full> {
        let started = Instant::now();
        let deadline = Deadline::budget(self.inner.max_wait);
        match deadline
            .run(self.inner.semaphore.clone().acquire_owned())
            .await
        {
            Ok(Ok(permit)) => Ok(self.permit(permit)),
            // The semaphore is never closed; a closed one would be full for
            // good.
            Ok(Err(_)) | Err(_) => Err(self.reject(started.elapsed())),
        }
    }

    /// A slot if one is free now.
    pub fn try_acquire(&self) -> Result<BulkheadPermit, Full> {
        match self.inner.semaphore.clone().try_acquire_owned() {
            Ok(permit) => Ok(self.permit(permit)),
            Err(_) => Err(self.reject(Duration::ZERO)),
        }
    }

    /// Slots free now.
    pub fn available(&self) -> usize {
        self.inner.semaphore.available_permits()
    }

    /// The number of calls that may run at once (as raised to at least 1).
    pub fn max_concurrent(&self) -> usize {
        self.inner.max_concurrent
    }

    /// The name given at creation.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    fn permit(&self, permit: OwnedSemaphorePermit) -> BulkheadPermit {
        self.inner.in_use.increment(1.0);
        BulkheadPermit {
            _permit: permit,
            inner: self.inner.clone(),
        }
    }

    fn reject(&self, waited: Duration) -> Full {
        self.inner.rejected.increment(1);
        Full {
            bulkhead: self.inner.name.clone(),
            waited,
        }
    }
}

/// One slot of a bulkhead, freed when dropped.
#[must_use = "the slot is freed as soon as the permit is dropped"]
pub struct BulkheadPermit {
    _permit: OwnedSemaphorePermit,
    inner: Arc<Inner>,
}

impl fmt::Debug for BulkheadPermit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BulkheadPermit")
            .field("bulkhead", &self.inner.name)
            .finish()
    }
}

impl Drop for BulkheadPermit {
    fn drop(&mut self) {
        self.inner.in_use.decrement(1.0);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::time::{advance, sleep};

    use super::*;
    use crate::deadline::scope;
    use crate::testing::{TestRecorder, recorded};

    fn bulkhead(max_concurrent: u32, max_wait: Duration) -> (Bulkhead, Arc<TestRecorder>) {
        recorded(|| Bulkhead::new("psp", max_concurrent, max_wait))
    }

    fn rejected(recorder: &TestRecorder) -> u64 {
        recorder.read("stampede_bulkhead_rejected_total{bulkhead=psp}")
    }

    fn in_use(recorder: &TestRecorder) -> f64 {
        recorder.gauge("stampede_bulkhead_in_use{bulkhead=psp}")
    }

    #[tokio::test(start_paused = true)]
    async fn try_acquire_gives_slots_until_the_budget_is_spent() {
        let (bulkhead, recorder) = bulkhead(2, Duration::from_millis(100));
        let first = bulkhead.try_acquire().unwrap();
        let _second = bulkhead.try_acquire().unwrap();
        assert_eq!(in_use(&recorder), 2.0);

        let full = bulkhead.try_acquire().unwrap_err();
        assert_eq!(full.waited, Duration::ZERO);
        assert_eq!(full.to_string(), "bulkhead psp is full");
        assert_eq!(rejected(&recorder), 1);

        drop(first);
        assert_eq!(in_use(&recorder), 1.0);
        assert!(
            bulkhead.try_acquire().is_ok(),
            "a dropped permit frees its slot"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_gets_the_slot_freed_within_max_wait() {
        let (bulkhead, _) = bulkhead(1, Duration::from_millis(100));
        let held = bulkhead.try_acquire().unwrap();
        let freer = tokio::spawn(async move {
            sleep(Duration::from_millis(60)).await;
            drop(held);
        });

        let start = Instant::now();
        let permit = bulkhead.acquire().await;
        assert!(permit.is_ok());
        assert_eq!(start.elapsed(), Duration::from_millis(60));
        freer.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_gives_up_after_max_wait() {
        let (bulkhead, recorder) = bulkhead(1, Duration::from_millis(100));
        let _held = bulkhead.try_acquire().unwrap();

        let full = bulkhead.acquire().await.unwrap_err();
        assert_eq!(full.waited, Duration::from_millis(100));
        assert_eq!(rejected(&recorder), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_gives_up_at_the_requests_deadline_when_that_comes_first() {
        let (bulkhead, _) = bulkhead(1, Duration::from_secs(1));
        let _held = bulkhead.try_acquire().unwrap();

        let request = Deadline::after(Duration::from_millis(30));
        let full = scope(request, bulkhead.acquire()).await.unwrap_err();
        assert_eq!(full.waited, Duration::from_millis(30));
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_already_late_still_takes_a_free_slot_but_never_waits() {
        let (bulkhead, _) = bulkhead(1, Duration::from_secs(1));
        let request = Deadline::after(Duration::from_millis(5));
        advance(Duration::from_millis(10)).await;

        let permit = scope(request, bulkhead.acquire()).await.unwrap();
        let full = scope(request, bulkhead.acquire()).await.unwrap_err();
        assert_eq!(full.waited, Duration::ZERO);
        drop(permit);
    }

    #[tokio::test(start_paused = true)]
    async fn waiters_are_served_in_the_order_they_came() {
        let (bulkhead, _) = bulkhead(1, Duration::from_secs(10));
        let held = bulkhead.try_acquire().unwrap();
        let order = Arc::new(std::sync::Mutex::new(Vec::new()));
        let waiters: Vec<_> = (0..4)
            .map(|n| {
                let (bulkhead, order) = (bulkhead.clone(), order.clone());
                tokio::spawn(async move {
                    let _permit = bulkhead.acquire().await.unwrap();
                    order.lock().unwrap().push(n);
                    sleep(Duration::from_millis(10)).await;
                })
            })
            .collect();
        // Let every waiter queue up, in spawn order, before freeing the slot.
        for _ in 0..4 {
            tokio::task::yield_now().await;
        }
        drop(held);
        for waiter in waiters {
            waiter.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), [0, 1, 2, 3]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn many_tasks_never_run_more_than_max_concurrent_calls_at_once() {
        const LIMIT: u32 = 3;
        let (bulkhead, recorder) = bulkhead(LIMIT, Duration::from_secs(30));
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));

        let tasks: Vec<_> = (0..32)
            .map(|_| {
                let (bulkhead, running, peak) = (bulkhead.clone(), running.clone(), peak.clone());
                tokio::spawn(async move {
                    for _ in 0..20 {
                        let _permit = bulkhead.acquire().await.unwrap();
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        peak.fetch_max(now, Ordering::SeqCst);
                        tokio::task::yield_now().await;
                        running.fetch_sub(1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }

        assert_eq!(peak.load(Ordering::SeqCst), LIMIT as usize);
        assert_eq!(in_use(&recorder), 0.0);
        assert_eq!(rejected(&recorder), 0);
    }

    #[test]
    fn a_budget_of_zero_is_raised_to_one() {
        let bulkhead = Bulkhead::new("zero", 0, Duration::ZERO);
        assert_eq!(bulkhead.max_concurrent(), 1);
        assert!(bulkhead.try_acquire().is_ok());
    }
}
