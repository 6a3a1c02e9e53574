//! An adaptive concurrency limit: a cap on requests in flight that finds its
//! own level, so that when the service (or the dependency behind it) slows
//! down, the excess is shed at once instead of queueing until every request
//! is late.
//!
//! # The rule: AIMD on a latency target, judged per window
//!
//! Samples (a request's latency and whether it failed) are judged in
//! windows of `limit` samples — about one round trip's worth of traffic
//! when the limit is in use. At the end of a window:
//!
//! - if more than `slow_share` of its samples were slow (above
//!   `latency_target`) or failed, the limit is multiplied by
//!   `decrease_ratio` (and drops by at least 1);
//! - otherwise, if the limit was in use — some request in the window began
//!   with at least half the limit in flight — it grows by 1;
//! - otherwise it stays: an idle service learns nothing about its capacity,
//!   and a limit that grew while idle would let the next crowd straight in.
//!
//! It never leaves `[min, max]`. Judging once per window is TCP's "one
//! decrease per round trip": the hundred requests that were all slow
//! together count as one congestion signal, not a hundred cuts.
//!
//! Why AIMD rather than Netflix's gradient (which compares short- and
//! long-term average latency): our dependencies have latency objectives we
//! can write down, so a target says what we want directly; the gradient's
//! long-term baseline drifts upwards under sustained overload (it learns
//! that slow is normal) and its ratio is noisy on two shared cores; and
//! AIMD's two rules are easy to reason about and to test. The price is that
//! the target must be set per dependency, and growth is linear: from 10 to
//! 100 takes 90 windows.
//!
//! # Cost
//!
//! [`AdaptiveLimit::try_acquire`] is a load and a compare-and-swap on the
//! count in flight, and a clock read; it never blocks. [`InFlight::done`]
//! adds a short mutex (a few additions) for the window; a dropped
//! [`InFlight`] only decrements the count.
//!
//! # Metrics
//!
//! With the label `limiter` = the limiter's name: the gauges
//! `stampede_concurrency_limit` and `stampede_concurrency_in_flight`, and the
//! counter `stampede_concurrency_shed_total`. Handles are made once.

use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use metrics::{Counter, Gauge, counter, gauge};
use tokio::time::Instant;

/// How an [`AdaptiveLimit`] starts and moves.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdaptiveConfig {
    /// The limit before any sample.
    pub initial: u32,
    /// The limit never goes below this (at least 1).
    pub min: u32,
    /// The limit never goes above this.
    pub max: u32,
    /// A request that takes longer than this is slow. Set it from the
    /// latency objective of what the limit protects.
    pub latency_target: Duration,
    /// The share of a window's samples, in `[0, 1]`, that may be slow or
    /// failed without cutting the limit: room for the odd outlier.
    pub slow_share: f64,
    /// What the limit is multiplied by on a bad window, in `(0, 1)`.
    pub decrease_ratio: f64,
}

impl Default for AdaptiveConfig {
    /// From 32 in flight, between 4 and 1024; slow above 100 ms; a window
    /// with more than 10 % slow or failed samples cuts the limit by 10 %.
    fn default() -> Self {
        Self {
            initial: 32,
            min: 4,
            max: 1024,
            latency_target: Duration::from_millis(100),
            slow_share: 0.1,
            decrease_ratio: 0.9,
        }
    }
}

/// An [`AdaptiveConfig`] setting outside its range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("adaptive concurrency setting {field} must be {rule}")]
pub struct AdaptiveConfigError {
    pub field: &'static str,
    pub rule: &'static str,
}

impl AdaptiveConfig {
    /// Checks every setting, for configuration loaded at start-up; the first
    /// one out of range is named. [`AdaptiveLimit::new`] does not fail: it
    /// clamps such settings into range instead.
    pub fn validate(&self) -> Result<(), AdaptiveConfigError> {
        let err = |field, rule| Err(AdaptiveConfigError { field, rule });
        if self.min == 0 {
            return err("min", "at least 1");
        }
        if self.max < self.min {
            return err("max", "at least min");
        }
        if !(self.min..=self.max).contains(&self.initial) {
            return err("initial", "between min and max");
        }
        if !(0.0..=1.0).contains(&self.slow_share) {
            return err("slow_share", "a share in [0, 1]");
        }
        if !(self.decrease_ratio > 0.0 && self.decrease_ratio < 1.0) {
            return err("decrease_ratio", "a ratio in (0, 1)");
        }
        Ok(())
    }

    fn clamped(self) -> Self {
        let min = self.min.max(1);
        let max = self.max.max(min);
        let default = Self::default();
        Self {
            initial: self.initial.clamp(min, max),
            min,
            max,
            latency_target: self.latency_target,
            slow_share: if self.slow_share.is_nan() {
                default.slow_share
            } else {
                self.slow_share.clamp(0.0, 1.0)
            },
            decrease_ratio: if self.decrease_ratio > 0.0 && self.decrease_ratio < 1.0 {
                self.decrease_ratio
            } else {
                default.decrease_ratio
            },
        }
    }
}

/// A concurrency limit that adapts to latency. Cheap to clone; clones share
/// the limit.
#[derive(Clone)]
pub struct AdaptiveLimit {
    inner: Arc<Inner>,
}

struct Inner {
    name: Arc<str>,
    /// Clamped into range.
    config: AdaptiveConfig,
    /// The current limit, always in `[min, max]`; written only under
    /// `window`'s lock, read by every `try_acquire`.
    limit: AtomicU32,
    /// Requests admitted and not yet done or dropped.
    in_flight: AtomicU32,
    window: Mutex<Window>,
    metrics: Metrics,
}

/// The samples of the window being filled.
#[derive(Debug, Default)]
struct Window {
    samples: u32,
    /// Slow or failed.
    bad: u32,
    /// Some request began with at least half the limit in flight.
    busy: bool,
}

impl fmt::Debug for AdaptiveLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdaptiveLimit")
            .field("name", &self.inner.name)
            .field("limit", &self.limit())
            .field("in_flight", &self.in_flight())
            .finish_non_exhaustive()
    }
}

impl AdaptiveLimit {
    /// A limit named `name` (the `limiter` label of its metrics) at
    /// `config.initial`. Settings out of range are clamped into it; use
    /// [`AdaptiveConfig::validate`] first to refuse them instead.
    pub fn new(name: impl Into<String>, config: AdaptiveConfig) -> Self {
        let name: Arc<str> = name.into().into();
        let config = config.clamped();
        let metrics = Metrics::new(&name);
        metrics.limit.set(f64::from(config.initial));
        Self {
            inner: Arc::new(Inner {
                name,
                limit: AtomicU32::new(config.initial),
                in_flight: AtomicU32::new(0),
                config,
                window: Mutex::new(Window::default()),
                metrics,
            }),
        }
    }

    /// Admits one request if fewer than the limit are in flight; `None`
    /// means shed it now. Never waits.
    pub fn try_acquire(&self) -> Option<InFlight> {
        let inner = &self.inner;
        let mut in_flight = inner.in_flight.load(Ordering::Acquire);
        loop {
            let limit = inner.limit.load(Ordering::Acquire);
            if in_flight >= limit {
                inner.metrics.shed.increment(1);
                return None;
            }
            match inner.in_flight.compare_exchange_weak(
                in_flight,
                in_flight + 1,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    inner.metrics.in_flight.increment(1.0);
                    return Some(InFlight {
                        inner: inner.clone(),
                        started: Instant::now(),
                        busy: (in_flight + 1).saturating_mul(2) >= limit,
                        finished: false,
                    });
                }
                Err(actual) => in_flight = actual,
            }
        }
    }

    /// The current limit.
    pub fn limit(&self) -> u32 {
        self.inner.limit.load(Ordering::Acquire)
    }

    /// Requests admitted and not yet done.
    pub fn in_flight(&self) -> u32 {
        self.inner.in_flight.load(Ordering::Acquire)
    }

    /// The name given at creation.
    pub fn name(&self) -> &str {
        &self.inner.name
    }
}

impl Inner {
    /// Adds one sample to the window, and judges the window once full.
    fn sample(&self, latency: Duration, ok: bool, busy: bool) {
        let config = &self.config;
        let mut window = self.window.lock().unwrap_or_else(PoisonError::into_inner);
        window.samples += 1;
        window.bad += u32::from(!ok || latency > config.latency_target);
        window.busy |= busy;

        let limit = self.limit.load(Ordering::Acquire);
        if window.samples < limit {
            return;
        }
        let next = if f64::from(window.bad) > config.slow_share * f64::from(window.samples) {
            // With a ratio below 1, ⌊limit · ratio⌋ < limit for every u32
            // limit (checked for the extreme ratio 1 − 2⁻⁵³): each cut takes
            // at least 1.
            let cut = (f64::from(limit) * config.decrease_ratio) as u32;
            cut.max(config.min)
        } else if window.busy {
            limit.saturating_add(1).min(config.max)
        } else {
            limit
        };
        let (samples, bad) = (window.samples, window.bad);
        *window = Window::default();
        self.limit.store(next, Ordering::Release);
        drop(window);

        if next != limit {
            self.metrics.limit.set(f64::from(next));
            tracing::debug!(
                limiter = &*self.name,
                from = limit,
                to = next,
                samples,
                bad,
                "concurrency limit adjusted"
            );
        }
    }
}

/// One admitted request. Report how it went with [`InFlight::done`] (or
/// [`InFlight::finish`]); dropped without a report, it leaves the count in
/// flight but teaches the limit nothing — a cancelled request says nothing
/// about latency.
#[must_use = "dropping it at once frees the slot before the request is done"]
pub struct InFlight {
    inner: Arc<Inner>,
    started: Instant,
    /// At least half the limit was in flight when it began.
    busy: bool,
    finished: bool,
}

impl fmt::Debug for InFlight {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InFlight")
            .field("limiter", &self.inner.name)
            .field("started", &self.started)
            .finish_non_exhaustive()
    }
}

impl InFlight {
    /// The request is done: it took `latency` and succeeded (`ok`) or
    /// failed in a way that says the service is overloaded (a timeout, an
    /// overload error — not a business "no").
    pub fn done(mut self, latency: Duration, ok: bool) {
        self.finished = true;
        self.release();
        self.inner.sample(latency, ok, self.busy);
    }

    /// [`InFlight::done`] with the time since the request was admitted.
    pub fn finish(self, ok: bool) {
        let latency = self.started.elapsed();
        self.done(latency, ok);
    }

    fn release(&self) {
        self.inner.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.inner.metrics.in_flight.decrement(1.0);
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if !self.finished {
            self.release();
        }
    }
}

/// The limit's metric handles, made once.
struct Metrics {
    limit: Gauge,
    in_flight: Gauge,
    shed: Counter,
}

impl Metrics {
    fn new(name: &str) -> Self {
        Self {
            limit: gauge!("stampede_concurrency_limit", "limiter" => name.to_owned()),
            in_flight: gauge!("stampede_concurrency_in_flight", "limiter" => name.to_owned()),
            shed: counter!("stampede_concurrency_shed_total", "limiter" => name.to_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use proptest::prelude::*;

    use super::*;
    use crate::testing::{TestRecorder, recorded};

    const FAST: Duration = Duration::from_millis(10);
    const SLOW: Duration = Duration::from_millis(500);

    fn config(initial: u32, min: u32, max: u32) -> AdaptiveConfig {
        AdaptiveConfig {
            initial,
            min,
            max,
            ..AdaptiveConfig::default()
        }
    }

    fn adaptive(config: AdaptiveConfig) -> (AdaptiveLimit, Arc<TestRecorder>) {
        recorded(|| AdaptiveLimit::new("orders", config))
    }

    /// Fills one window: `limit` requests admitted together (so the limit is
    /// in use), then done with `latency`; `bad` of them fail.
    fn window(limit: &AdaptiveLimit, latency: Duration, bad: u32) {
        let all: Vec<_> = (0..limit.limit())
            .map(|_| limit.try_acquire().unwrap())
            .collect();
        for (n, request) in all.into_iter().enumerate() {
            request.done(latency, n as u32 >= bad);
        }
    }

    #[test]
    fn try_acquire_sheds_exactly_above_the_limit() {
        let (limit, recorder) = adaptive(config(5, 1, 10));
        let admitted: Vec<_> = (0..5).map(|_| limit.try_acquire().unwrap()).collect();
        assert!(limit.try_acquire().is_none());
        assert_eq!(
            recorder.read("stampede_concurrency_shed_total{limiter=orders}"),
            1
        );
        assert_eq!(
            recorder.gauge("stampede_concurrency_in_flight{limiter=orders}"),
            5.0
        );

        drop(admitted);
        assert_eq!(limit.in_flight(), 0);
        assert_eq!(
            recorder.gauge("stampede_concurrency_in_flight{limiter=orders}"),
            0.0
        );
        assert!(limit.try_acquire().is_some());
    }

    #[test]
    fn the_limit_decreases_when_a_window_is_slow() {
        let (limit, recorder) = adaptive(config(20, 1, 100));
        window(&limit, SLOW, 0);
        assert_eq!(limit.limit(), 18);
        window(&limit, SLOW, 0);
        assert_eq!(limit.limit(), 16, "⌊18 · 0.9⌋");
        assert_eq!(
            recorder.gauge("stampede_concurrency_limit{limiter=orders}"),
            16.0
        );
    }

    #[test]
    fn failures_count_like_slow_requests() {
        let (limit, _) = adaptive(config(20, 1, 100));
        window(&limit, FAST, 10);
        assert_eq!(limit.limit(), 18);
    }

    #[test]
    fn a_few_outliers_within_the_slow_share_do_not_cut_the_limit() {
        let (limit, _) = adaptive(config(20, 1, 100));
        window(&limit, FAST, 2); // 10 %: at the share, not above it
        assert_eq!(limit.limit(), 21);
        window(&limit, FAST, 3); // 3 of 21: above
        assert_eq!(limit.limit(), 18);
    }

    #[test]
    fn many_slow_requests_of_one_window_cut_the_limit_once() {
        // A hundred requests in flight when the service slowed down: one
        // congestion signal, one cut to 90 — not 0.9¹⁰⁰.
        let (limit, _) = adaptive(config(100, 1, 200));
        window(&limit, SLOW, 0);
        assert_eq!(limit.limit(), 90);
    }

    #[test]
    fn the_limit_grows_back_by_one_per_window_when_fast_and_in_use() {
        let (limit, _) = adaptive(config(20, 1, 100));
        window(&limit, SLOW, 0);
        window(&limit, SLOW, 0);
        assert_eq!(limit.limit(), 16);
        for expected in 17..=25 {
            window(&limit, FAST, 0);
            assert_eq!(limit.limit(), expected);
        }
    }

    #[test]
    fn an_idle_service_does_not_raise_its_limit() {
        let (limit, _) = adaptive(config(20, 1, 100));
        for _ in 0..200 {
            limit.try_acquire().unwrap().done(FAST, true);
        }
        assert_eq!(limit.limit(), 20, "one at a time says nothing about 21");
    }

    #[test]
    fn the_limit_stops_at_min_and_max() {
        let (limit, _) = adaptive(config(6, 4, 8));
        for _ in 0..10 {
            window(&limit, SLOW, 0);
        }
        assert_eq!(limit.limit(), 4);
        for _ in 0..10 {
            window(&limit, FAST, 0);
        }
        assert_eq!(limit.limit(), 8);
    }

    #[test]
    fn a_lowered_limit_sheds_until_enough_requests_finish() {
        let (limit, _) = adaptive(config(10, 1, 10));
        let mut first: Vec<_> = (0..10).map(|_| limit.try_acquire().unwrap()).collect();
        let last = first.pop().unwrap();
        for request in first {
            request.done(SLOW, true);
        }
        let mut second: Vec<_> = (0..9).map(|_| limit.try_acquire().unwrap()).collect();
        // The tenth slow sample ends the window: the limit drops to 9 with 9
        // requests still in flight.
        last.done(SLOW, true);
        assert_eq!((limit.limit(), limit.in_flight()), (9, 9));
        assert!(limit.try_acquire().is_none());

        drop(second.pop());
        let one_more = limit.try_acquire();
        assert!(one_more.is_some());
        assert!(limit.try_acquire().is_none());
    }

    #[test]
    fn a_dropped_request_frees_its_slot_without_teaching_the_limit() {
        let (limit, _) = adaptive(config(3, 1, 10));
        for _ in 0..100 {
            let requests: Vec<_> = (0..3).map(|_| limit.try_acquire().unwrap()).collect();
            drop(requests);
        }
        assert_eq!(limit.limit(), 3);
        assert_eq!(limit.in_flight(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn finish_measures_the_latency_from_admission() {
        let (limit, _) = adaptive(AdaptiveConfig {
            latency_target: Duration::from_millis(100),
            ..config(1, 1, 2)
        });
        let request = limit.try_acquire().unwrap();
        tokio::time::advance(Duration::from_millis(101)).await;
        request.finish(true);
        assert_eq!(limit.limit(), 1, "a slow window at min stays at min");

        let request = limit.try_acquire().unwrap();
        tokio::time::advance(Duration::from_millis(100)).await;
        request.finish(true);
        assert_eq!(limit.limit(), 2, "100 ms is on target, not above it");
    }

    #[test]
    fn validate_names_the_first_setting_out_of_range_and_new_clamps() {
        assert_eq!(AdaptiveConfig::default().validate(), Ok(()));
        let bad = AdaptiveConfig {
            decrease_ratio: 1.0,
            ..AdaptiveConfig::default()
        };
        assert_eq!(bad.validate().unwrap_err().field, "decrease_ratio");
        let bad = config(50, 0, 10);
        assert_eq!(
            bad.validate().unwrap_err().to_string(),
            "adaptive concurrency setting min must be at least 1"
        );
        let (limit, _) = adaptive(bad);
        assert_eq!(limit.limit(), 10, "initial clamped into [1, 10]");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_requests_never_exceed_the_limit() {
        const LIMIT: u32 = 8;
        let (limit, _) = adaptive(config(LIMIT, LIMIT, LIMIT));
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..32)
            .map(|_| {
                let (limit, running, peak) = (limit.clone(), running.clone(), peak.clone());
                tokio::spawn(async move {
                    let mut admitted = 0;
                    for _ in 0..500 {
                        let Some(request) = limit.try_acquire() else {
                            tokio::task::yield_now().await;
                            continue;
                        };
                        admitted += 1;
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        peak.fetch_max(now, Ordering::SeqCst);
                        tokio::task::yield_now().await;
                        running.fetch_sub(1, Ordering::SeqCst);
                        request.done(FAST, true);
                    }
                    admitted
                })
            })
            .collect();
        let mut admitted = 0;
        for task in tasks {
            admitted += task.await.unwrap();
        }
        assert!(peak.load(Ordering::SeqCst) <= LIMIT as usize);
        assert!(admitted > 0);
        assert_eq!(limit.in_flight(), 0);
    }

    /// One step of a random workload.
    #[derive(Debug, Clone)]
    enum Step {
        Acquire(u8),
        Done { latency_ms: u16, ok: bool },
        Drop,
    }

    fn steps() -> impl Strategy<Value = Vec<Step>> {
        let step = prop_oneof![
            3 => (1u8..40).prop_map(Step::Acquire),
            6 => (0u16..400, prop::bool::weighted(0.9))
                .prop_map(|(latency_ms, ok)| Step::Done { latency_ms, ok }),
            1 => Just(Step::Drop),
        ];
        prop::collection::vec(step, 1..400)
    }

    proptest! {
        #[test]
        fn the_limit_stays_within_min_and_max_and_nothing_exceeds_it(
            min in 1u32..20,
            span in 0u32..40,
            steps in steps(),
        ) {
            let max = min + span;
            let limit = AdaptiveLimit::new("p", config(min, min, max));
            let mut held: Vec<InFlight> = Vec::new();
            for step in steps {
                match step {
                    Step::Acquire(n) => {
                        for _ in 0..n {
                            let before = limit.in_flight();
                            match limit.try_acquire() {
                                Some(request) => {
                                    prop_assert!(before < limit.limit());
                                    held.push(request);
                                }
                                None => prop_assert!(before >= limit.limit()),
                            }
                        }
                    }
                    Step::Done { latency_ms, ok } => {
                        if let Some(request) = held.pop() {
                            request.done(Duration::from_millis(latency_ms.into()), ok);
                        }
                    }
                    Step::Drop => drop(held.pop()),
                }
                prop_assert!((min..=max).contains(&limit.limit()));
                prop_assert_eq!(limit.in_flight() as usize, held.len());
            }
        }
    }
}
