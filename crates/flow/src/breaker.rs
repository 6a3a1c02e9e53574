//! A circuit breaker, after Resilience4j's: it watches the calls to one
//! dependency and, when too many of the recent ones failed or were slow, stops
//! calling it for a while, so that a sick dependency gets room to recover and
//! our callers get a fast "unavailable" instead of a slow one.
//!
//! Written by hand: tower has no breaker, `failsafe` is unmaintained and the
//! tower-resilience crates churn (see docs/stack.md §3). This one is small, has
//! no dependency beyond the `metrics` facade and `tracing`, and every rule
//! below is tested.
//!
//! # States
//!
//! - **Closed**: calls pass; each outcome is recorded in a sliding window of
//!   the last `n` calls or of the last stretch of time ([`Window`]). Once the
//!   window holds at least `minimum_calls` calls and the share of failures, or
//!   of slow calls, reaches its threshold, the breaker opens.
//! - **Open**: every call is rejected at once, with the time left before
//!   probing ([`Rejected::retry_after`]), for `wait_in_open`.
//! - **Half-open**: the first call after that wait lets exactly
//!   `half_open_calls` probes through and rejects the rest. As soon as the
//!   probes' failure or slow-call rate is certain to reach its threshold the
//!   breaker opens again (for a fresh `wait_in_open`); when every probe has
//!   reported and neither rate reached it, the breaker closes with an empty
//!   window.
//!
//! The move from open to half-open happens lazily, on the next
//! [`CircuitBreaker::try_acquire`] or [`CircuitBreaker::state`]; until then the
//! state gauge still reads "open".
//!
//! # What counts
//!
//! A call is a [`Permit`] recorded with an [`Outcome`]. Its duration runs from
//! the permit's creation to the record; a call that took `slow_call_duration`
//! or longer is slow, whether it succeeded or failed. Only the caller knows
//! what a failure of the dependency is: with [`CircuitBreaker::call`] a
//! classifier decides, and an error it does not call a failure (a payment the
//! provider declined is an answer, not an outage) counts as a success.
//!
//! A permit dropped without a record (the caller's future was cancelled)
//! counts as **neither** success nor failure: the caller going away — a client
//! disconnecting in the middle of a sale — says nothing about the dependency,
//! and counting it as a failure would let impatient clients open the breaker.
//! In half-open a dropped probe frees its slot for another call. So that slow
//! dependencies still count, put timeouts *inside* the breaker
//! (`breaker.call(deadline.run(fut), ..)` with the timeout classified as a
//! failure), not around it. Dropped permits are counted in
//! `stampede_breaker_calls_total{outcome="cancelled"}`.
//!
//! A call that began in an earlier state (say, before the breaker opened) is
//! not counted in the new state's window or probes: every transition starts a
//! new generation and permits remember theirs.
//!
//! # Metrics and logs
//!
//! With the label `breaker` = the breaker's name: the gauge
//! `stampede_breaker_state` (0 closed, 1 open, 2 half-open), the counter
//! `stampede_breaker_calls_total{outcome}` (`success`, `failure`, `rejected`,
//! `cancelled`) and the counter `stampede_breaker_transitions_total{to}`
//! (`closed`, `open`, `half_open`); with the label `dependency` = the name,
//! the histogram `stampede_dependency_call_seconds` of the recorded calls'
//! durations. Handles are made once per breaker. Each
//! transition logs one line: a warning when the breaker opens, info otherwise.
//!
//! # Concurrency
//!
//! All state sits behind one `std::sync::Mutex`, held for a few arithmetic
//! operations and never across an `.await` or while logging. Clones of a
//! [`CircuitBreaker`] share that state.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram, counter, gauge, histogram};
use tokio::time::Instant;
use tracing::Instrument;

/// How many buckets a [`Window::Time`] is cut into: a call is forgotten
/// between nine and ten tenths of the window after it was recorded.
const TIME_BUCKETS: u32 = 10;

/// Which recent calls the failure and slow-call rates are computed over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// The last `n` calls, however old.
    Count(u32),
    /// The calls of the last stretch of this length, counted in tenths: a call
    /// leaves the window between 0.9 and 1.0 of the length after it was made.
    Time(Duration),
}

/// When a [`CircuitBreaker`] opens and how it recovers. As configuration:
/// `failure_rate`, `slow_ms`, `slow_rate` and `open_secs`; the window, the
/// minimum of calls and the probes keep their defaults.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BreakerConfig {
    /// The calls the rates are computed over.
    #[serde(skip)]
    pub window: Window,
    /// Percentage of failed calls in the window (0–100] at which the breaker
    /// opens.
    #[serde(rename = "failure_rate")]
    pub failure_rate_threshold: f64,
    /// A call that takes at least this long is slow.
    #[serde(rename = "slow_ms", with = "crate::serde_duration::millis")]
    pub slow_call_duration: Duration,
    /// Percentage of slow calls in the window (0–100] at which the breaker
    /// opens. At 100 it opens only when every call in the window was slow.
    #[serde(rename = "slow_rate")]
    pub slow_call_rate_threshold: f64,
    /// The rates are not judged before the window holds this many calls (for a
    /// count window, at most its size).
    #[serde(skip)]
    pub minimum_calls: u32,
    /// How long the breaker stays open before letting probes through.
    #[serde(rename = "open_secs", with = "crate::serde_duration::secs")]
    pub wait_in_open: Duration,
    /// How many probes half-open lets through; they decide between closing
    /// and opening again.
    #[serde(skip)]
    pub half_open_calls: u32,
}

impl Default for BreakerConfig {
    /// The last 20 calls; opens at 50 % failures, or when every call took 2 s
    /// or more, once 10 calls were seen; stays open 10 s; then 3 probes.
    fn default() -> Self {
        Self {
            window: Window::Count(20),
            failure_rate_threshold: 50.0,
            slow_call_duration: Duration::from_secs(2),
            slow_call_rate_threshold: 100.0,
            minimum_calls: 10,
            wait_in_open: Duration::from_secs(10),
            half_open_calls: 3,
        }
    }
}

/// A [`BreakerConfig`] setting outside its range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("circuit breaker setting {field} must be {rule}")]
pub struct ConfigError {
    pub field: &'static str,
    pub rule: &'static str,
}

impl BreakerConfig {
    /// Checks every setting, for configuration loaded at start-up; the first
    /// one out of range is named. [`CircuitBreaker::new`] does not fail: it
    /// clamps such settings into range instead.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let percent = |value: f64| value > 0.0 && value <= 100.0;
        let err = |field, rule| Err(ConfigError { field, rule });
        match self.window {
            Window::Count(0) => return err("window", "a count of at least 1"),
            Window::Time(length) if length.is_zero() => {
                return err("window", "a duration above zero");
            }
            _ => {}
        }
        if !percent(self.failure_rate_threshold) {
            return err("failure_rate_threshold", "a percentage in (0, 100]");
        }
        if !percent(self.slow_call_rate_threshold) {
            return err("slow_call_rate_threshold", "a percentage in (0, 100]");
        }
        if self.minimum_calls == 0 {
            return err("minimum_calls", "at least 1");
        }
        if self.half_open_calls == 0 {
            return err("half_open_calls", "at least 1");
        }
        Ok(())
    }

    /// The configuration with every setting clamped into range.
    fn clamped(self) -> Self {
        let percent = |value: f64| {
            if value.is_nan() {
                100.0
            } else {
                value.clamp(f64::MIN_POSITIVE, 100.0)
            }
        };
        Self {
            window: match self.window {
                Window::Count(n) => Window::Count(n.max(1)),
                Window::Time(length) => Window::Time(length.max(Duration::from_nanos(1))),
            },
            failure_rate_threshold: percent(self.failure_rate_threshold),
            slow_call_duration: self.slow_call_duration,
            slow_call_rate_threshold: percent(self.slow_call_rate_threshold),
            minimum_calls: match self.window {
                Window::Count(n) => self.minimum_calls.clamp(1, n.max(1)),
                Window::Time(_) => self.minimum_calls.max(1),
            },
            wait_in_open: self.wait_in_open,
            half_open_calls: self.half_open_calls.max(1),
        }
    }

    /// Whether `tally`'s failure or slow-call share of `over` calls reaches
    /// its threshold.
    fn tripped(&self, tally: &Tally, over: u64) -> bool {
        // Compared multiplied out, so 5 of 10 is exactly 50 %.
        let reaches = |count: u64, threshold: f64| count as f64 * 100.0 >= threshold * over as f64;
        over > 0
            && (reaches(tally.failures, self.failure_rate_threshold)
                || reaches(tally.slow, self.slow_call_rate_threshold))
    }
}

/// Where a breaker stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    Closed,
    Open,
    HalfOpen,
}

impl State {
    /// The value of the `stampede_breaker_state` gauge.
    fn gauge_value(self) -> f64 {
        match self {
            Self::Closed => 0.0,
            Self::Open => 1.0,
            Self::HalfOpen => 2.0,
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half-open",
        })
    }
}

/// How a call went, as far as the dependency's health is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The dependency answered, even if the answer was "no".
    Success,
    /// The dependency failed: an error, a timeout, an unusable answer.
    Failure,
}

/// A call the breaker did not let through.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("circuit breaker {breaker} is {state}")]
pub struct Rejected {
    /// The breaker's name.
    pub breaker: Arc<str>,
    /// `Open`, or `HalfOpen` when every probe is taken.
    pub state: State,
    /// How long the breaker stays open, for a `Retry-After`; zero in
    /// half-open, where the probes decide and nobody knows when.
    pub retry_after: Duration,
}

/// What [`CircuitBreaker::call`] can answer besides success.
#[derive(Debug, thiserror::Error)]
pub enum BreakerError<E> {
    /// The call was not made.
    #[error(transparent)]
    Rejected(#[from] Rejected),
    /// The call was made and failed (or answered "no"), as the inner error
    /// says.
    #[error(transparent)]
    Inner(E),
}

/// Guards the calls to one dependency. Cheap to clone; clones share state.
#[derive(Clone)]
pub struct CircuitBreaker {
    inner: Arc<Inner>,
}

impl fmt::Debug for CircuitBreaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("name", &self.inner.name)
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl CircuitBreaker {
    /// A closed breaker named `name` (the `breaker` label of its metrics and
    /// logs). Settings out of range are clamped into it; use
    /// [`BreakerConfig::validate`] first to refuse them instead.
    pub fn new(name: impl Into<String>, config: BreakerConfig) -> Self {
        let name: Arc<str> = name.into().into();
        let config = config.clamped();
        let now = Instant::now();
        Self {
            inner: Arc::new(Inner {
                metrics: Metrics::new(&name),
                name,
                config,
                machine: Mutex::new(Machine {
                    phase: Phase::Closed,
                    generation: 0,
                    recent: Recent::new(config.window, now),
                }),
            }),
        }
    }

    /// The name given at creation.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The state now (moving an open breaker whose wait is over to half-open).
    pub fn state(&self) -> State {
        let (state, transition) = {
            let mut machine = self.inner.lock();
            let transition = self.inner.wake(&mut machine, Instant::now());
            (machine.phase.state(), transition)
        };
        self.inner.log(transition);
        state
    }

    /// Asks to make one call: a [`Permit`] to record its outcome with, or at
    /// once a [`Rejected`].
    pub fn try_acquire(&self) -> Result<Permit, Rejected> {
        let now = Instant::now();
        let (answer, transition) = {
            let mut guard = self.inner.lock();
            let transition = self.inner.wake(&mut guard, now);
            let machine = &mut *guard;
            let answer = match &mut machine.phase {
                Phase::Closed => Ok(machine.generation),
                Phase::HalfOpen { issued, .. } if *issued < self.inner.config.half_open_calls => {
                    *issued += 1;
                    Ok(machine.generation)
                }
                Phase::HalfOpen { .. } => Err((State::HalfOpen, Duration::ZERO)),
                Phase::Open { until } => Err((State::Open, until.saturating_duration_since(now))),
            };
            (answer, transition)
        };
        self.inner.log(transition);
        match answer {
            Ok(generation) => Ok(Permit {
                inner: self.inner.clone(),
                generation,
                started: now,
                recorded: false,
            }),
            Err((state, retry_after)) => {
                self.inner.metrics.rejected.increment(1);
                Err(Rejected {
                    breaker: self.inner.name.clone(),
                    state,
                    retry_after,
                })
            }
        }
    }

    /// Runs `fut` if the breaker lets it through and records how it went:
    /// `Ok` is a success, and so is an error for which `is_failure` is false
    /// (a business answer); a rejected call never polls `fut`. If the returned
    /// future is dropped before `fut` finishes, the call counts as neither
    /// (see the module documentation).
    pub async fn call<T, E, Fut>(
        &self,
        fut: Fut,
        is_failure: impl Fn(&E) -> bool,
    ) -> Result<T, BreakerError<E>>
    where
        Fut: Future<Output = Result<T, E>>,
    {
        let permit = self.try_acquire()?;
        let result = fut.instrument(self.call_span()).await;
        permit.record(match &result {
            Err(err) if is_failure(err) => Outcome::Failure,
            _ => Outcome::Success,
        });
        result.map_err(BreakerError::Inner)
    }

    /// A `debug` span named for the dependency: exported as a child of the
    /// request's or worker step's span when traces are on (the exporter
    /// drops one outside any, an idle worker's poll), never made otherwise
    /// (nor in the logs, whatever their level).
    fn call_span(&self) -> tracing::Span {
        if !stampede_trace::is_on() {
            return tracing::Span::none();
        }
        let name = &*self.inner.name;
        tracing::debug_span!("dependency", otel.name = name, otel.kind = "client")
    }
}

/// Leave to make one call through a breaker. Record its [`Outcome`] when the
/// call ends; dropped without a record, it counts as neither success nor
/// failure (and a half-open probe's slot goes to another call).
#[must_use = "a permit records nothing unless `record` is called"]
pub struct Permit {
    inner: Arc<Inner>,
    /// The breaker's generation when the permit was given.
    generation: u64,
    started: Instant,
    recorded: bool,
}

impl fmt::Debug for Permit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit")
            .field("breaker", &self.inner.name)
            .field("started", &self.started)
            .finish_non_exhaustive()
    }
}

impl Permit {
    /// Records how the call went; it took from the permit's creation until
    /// now.
    pub fn record(mut self, outcome: Outcome) {
        self.recorded = true;
        let now = Instant::now();
        let call = Call {
            failure: outcome == Outcome::Failure,
            slow: now.duration_since(self.started) >= self.inner.config.slow_call_duration,
        };
        self.inner
            .metrics
            .seconds
            .record(now.duration_since(self.started).as_secs_f64());
        match outcome {
            Outcome::Success => self.inner.metrics.success.increment(1),
            Outcome::Failure => self.inner.metrics.failure.increment(1),
        }
        let transition = {
            let mut machine = self.inner.lock();
            if machine.generation == self.generation {
                self.inner.on_call(&mut machine, call, now)
            } else {
                None
            }
        };
        self.inner.log(transition);
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if self.recorded {
            return;
        }
        self.inner.metrics.cancelled.increment(1);
        let mut machine = self.inner.lock();
        if machine.generation == self.generation
            && let Phase::HalfOpen { issued, .. } = &mut machine.phase
        {
            *issued = issued.saturating_sub(1);
        }
    }
}

/// What clones of a breaker share.
struct Inner {
    name: Arc<str>,
    /// Clamped into range.
    config: BreakerConfig,
    metrics: Metrics,
    machine: Mutex<Machine>,
}

struct Machine {
    phase: Phase,
    /// Incremented at every transition, so that a call begun in an earlier
    /// phase is not counted in this one.
    generation: u64,
    /// The window of a closed breaker (emptied when it closes again).
    recent: Recent,
}

enum Phase {
    Closed,
    Open {
        until: Instant,
    },
    HalfOpen {
        /// Probes let through and not dropped; at most `half_open_calls`.
        issued: u32,
        /// Outcomes of the probes recorded so far.
        probes: Tally,
    },
}

impl Phase {
    fn state(&self) -> State {
        match self {
            Self::Closed => State::Closed,
            Self::Open { .. } => State::Open,
            Self::HalfOpen { .. } => State::HalfOpen,
        }
    }
}

/// A transition to log once the lock is released.
struct Transition {
    to: State,
    /// The calls that decided it (none for open → half-open).
    tally: Tally,
    /// Their number, the denominator of the rates.
    over: u64,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Machine> {
        // Every method leaves the machine consistent at each return, so a
        // panic elsewhere while it was held leaves nothing half-done.
        self.machine.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Moves an open breaker whose wait is over to half-open.
    fn wake(&self, machine: &mut Machine, now: Instant) -> Option<Transition> {
        match machine.phase {
            Phase::Open { until } if now >= until => {
                Some(self.move_to(machine, State::HalfOpen, now, Tally::default(), 0))
            }
            _ => None,
        }
    }

    /// Counts a recorded call of the current generation, and moves on if the
    /// counts say so.
    fn on_call(&self, machine: &mut Machine, call: Call, now: Instant) -> Option<Transition> {
        let config = &self.config;
        let (to, tally, over) = match &mut machine.phase {
            Phase::Closed => {
                let tally = machine.recent.record(now, call);
                if tally.calls < u64::from(config.minimum_calls)
                    || !config.tripped(&tally, tally.calls)
                {
                    return None;
                }
                (State::Open, tally, tally.calls)
            }
            Phase::HalfOpen { probes, .. } => {
                probes.add(call);
                // Judged over every probe to come: once the shares reach a
                // threshold with the probes so far, later ones cannot undo it.
                let all = u64::from(config.half_open_calls);
                if config.tripped(probes, all) {
                    (State::Open, *probes, all)
                } else if probes.calls >= all {
                    (State::Closed, *probes, all)
                } else {
                    return None;
                }
            }
            // A permit of the current generation is never given while open.
            Phase::Open { .. } => return None,
        };
        Some(self.move_to(machine, to, now, tally, over))
    }

    fn move_to(
        &self,
        machine: &mut Machine,
        to: State,
        now: Instant,
        tally: Tally,
        over: u64,
    ) -> Transition {
        machine.generation += 1;
        machine.phase = match to {
            State::Closed => {
                machine.recent = Recent::new(self.config.window, now);
                Phase::Closed
            }
            State::Open => Phase::Open {
                until: now
                    .checked_add(self.config.wait_in_open)
                    .unwrap_or(now + Duration::from_secs(86_400 * 365)),
            },
            State::HalfOpen => Phase::HalfOpen {
                issued: 0,
                probes: Tally::default(),
            },
        };
        self.metrics.state.set(to.gauge_value());
        match to {
            State::Closed => &self.metrics.to_closed,
            State::Open => &self.metrics.to_open,
            State::HalfOpen => &self.metrics.to_half_open,
        }
        .increment(1);
        Transition { to, tally, over }
    }

    fn log(&self, transition: Option<Transition>) {
        let Some(Transition { to, tally, over }) = transition else {
            return;
        };
        let percent = |count: u64| {
            if over == 0 {
                0.0
            } else {
                count as f64 * 100.0 / over as f64
            }
        };
        let breaker = &*self.name;
        match to {
            State::Open => tracing::warn!(
                breaker,
                calls = tally.calls,
                failure_rate = percent(tally.failures),
                slow_call_rate = percent(tally.slow),
                wait_ms = u64::try_from(self.config.wait_in_open.as_millis()).unwrap_or(u64::MAX),
                "circuit breaker opened: rejecting calls"
            ),
            State::HalfOpen => tracing::info!(
                breaker,
                probes = self.config.half_open_calls,
                "circuit breaker half-open: letting probes through"
            ),
            State::Closed => tracing::info!(
                breaker,
                probes = tally.calls,
                failure_rate = percent(tally.failures),
                slow_call_rate = percent(tally.slow),
                "circuit breaker closed: the probes went well"
            ),
        }
    }
}

/// One recorded call.
#[derive(Debug, Clone, Copy)]
struct Call {
    failure: bool,
    slow: bool,
}

/// Counts of calls.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Tally {
    calls: u64,
    failures: u64,
    slow: u64,
}

impl Tally {
    fn add(&mut self, call: Call) {
        self.calls += 1;
        self.failures += u64::from(call.failure);
        self.slow += u64::from(call.slow);
    }

    fn remove(&mut self, call: Call) {
        self.calls -= 1;
        self.failures -= u64::from(call.failure);
        self.slow -= u64::from(call.slow);
    }

    fn subtract(&mut self, other: &Tally) {
        self.calls -= other.calls;
        self.failures -= other.failures;
        self.slow -= other.slow;
    }
}

/// The sliding window of a closed breaker, with running totals so that
/// recording a call costs O(1) (O(10) for a time window).
enum Recent {
    /// A ring of the last `size` calls.
    Count {
        calls: VecDeque<Call>,
        size: usize,
        total: Tally,
    },
    /// Per-bucket tallies; bucket `i` holds the calls of the latest epoch
    /// (a `width`-long stretch since `start`) congruent to `i`.
    Time {
        buckets: Vec<Bucket>,
        start: Instant,
        width_nanos: u128,
        total: Tally,
    },
}

#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    epoch: u64,
    tally: Tally,
}

impl Recent {
    fn new(window: Window, now: Instant) -> Self {
        match window {
            Window::Count(size) => {
                let size = usize::try_from(size).unwrap_or(usize::MAX).max(1);
                Self::Count {
                    // Grown as calls come, so a large window costs only what
                    // it holds.
                    calls: VecDeque::new(),
                    size,
                    total: Tally::default(),
                }
            }
            Window::Time(length) => Self::Time {
                buckets: vec![Bucket::default(); TIME_BUCKETS as usize],
                start: now,
                width_nanos: (length.as_nanos() / u128::from(TIME_BUCKETS)).max(1),
                total: Tally::default(),
            },
        }
    }

    /// Adds `call` and returns the window's totals.
    fn record(&mut self, now: Instant, call: Call) -> Tally {
        match self {
            Self::Count { calls, size, total } => {
                if calls.len() == *size
                    && let Some(oldest) = calls.pop_front()
                {
                    total.remove(oldest);
                }
                calls.push_back(call);
                total.add(call);
                *total
            }
            Self::Time {
                buckets,
                start,
                width_nanos,
                total,
            } => {
                let epoch = u64::try_from(now.duration_since(*start).as_nanos() / *width_nanos)
                    .unwrap_or(u64::MAX);
                // Forget the buckets that are a whole window old.
                for bucket in buckets.iter_mut() {
                    if bucket.epoch.saturating_add(u64::from(TIME_BUCKETS)) <= epoch {
                        total.subtract(&bucket.tally);
                        *bucket = Bucket::default();
                    }
                }
                let slot = (epoch % u64::from(TIME_BUCKETS)) as usize;
                if let Some(bucket) = buckets.get_mut(slot) {
                    if bucket.epoch != epoch {
                        total.subtract(&bucket.tally);
                        *bucket = Bucket {
                            epoch,
                            tally: Tally::default(),
                        };
                    }
                    bucket.tally.add(call);
                    total.add(call);
                }
                *total
            }
        }
    }
}

/// The breaker's metric handles, made once.
struct Metrics {
    state: Gauge,
    /// How long recorded calls took: a breaker guards one dependency, so
    /// this is the dependency's latency as its callers see it.
    seconds: Histogram,
    success: Counter,
    failure: Counter,
    rejected: Counter,
    cancelled: Counter,
    to_closed: Counter,
    to_open: Counter,
    to_half_open: Counter,
}

impl Metrics {
    fn new(name: &str) -> Self {
        let calls = |outcome: &'static str| counter!("stampede_breaker_calls_total", "breaker" => name.to_owned(), "outcome" => outcome);
        let transitions = |to: &'static str| counter!("stampede_breaker_transitions_total", "breaker" => name.to_owned(), "to" => to);
        let state = gauge!("stampede_breaker_state", "breaker" => name.to_owned());
        state.set(State::Closed.gauge_value());
        Self {
            state,
            seconds: histogram!("stampede_dependency_call_seconds", "dependency" => name.to_owned()),
            success: calls("success"),
            failure: calls("failure"),
            rejected: calls("rejected"),
            cancelled: calls("cancelled"),
            to_closed: transitions("closed"),
            to_open: transitions("open"),
            to_half_open: transitions("half_open"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use tokio::time::{advance, sleep};

    use super::*;
    use crate::testing::TestRecorder;

    /// What the breaker named "psp" reported.
    impl TestRecorder {
        fn calls(&self, outcome: &str) -> u64 {
            self.read(&format!(
                "stampede_breaker_calls_total{{breaker=psp,outcome={outcome}}}"
            ))
        }

        fn transitions(&self, to: &str) -> u64 {
            self.read(&format!(
                "stampede_breaker_transitions_total{{breaker=psp,to={to}}}"
            ))
        }

        fn state(&self) -> f64 {
            self.gauge("stampede_breaker_state{breaker=psp}")
        }
    }

    /// A breaker named "psp" whose metrics go to the returned recorder.
    fn breaker(config: BreakerConfig) -> (CircuitBreaker, Arc<TestRecorder>) {
        crate::testing::recorded(|| CircuitBreaker::new("psp", config))
    }

    fn record(breaker: &CircuitBreaker, outcome: Outcome, times: u32) {
        for _ in 0..times {
            breaker.try_acquire().unwrap().record(outcome);
        }
    }

    /// A breaker that the default's 10 failures have just opened.
    fn opened(config: BreakerConfig) -> (CircuitBreaker, Arc<TestRecorder>) {
        let (breaker, recorder) = breaker(config);
        record(&breaker, Outcome::Failure, config.minimum_calls);
        assert_eq!(breaker.state(), State::Open);
        (breaker, recorder)
    }

    #[derive(Debug, PartialEq)]
    enum PspError {
        Unavailable,
        Declined,
    }

    fn is_outage(err: &PspError) -> bool {
        matches!(err, PspError::Unavailable)
    }

    #[tokio::test(start_paused = true)]
    async fn the_breaker_opens_at_the_failure_rate_threshold_only_after_minimum_calls() {
        let (breaker, recorder) = breaker(BreakerConfig::default());

        // Nine calls, four failed: 44 %, and too few to judge anyway.
        record(&breaker, Outcome::Failure, 4);
        record(&breaker, Outcome::Success, 5);
        assert_eq!(breaker.state(), State::Closed);
        // 4 of 10, then 5 of 11: below 50 %.
        record(&breaker, Outcome::Success, 1);
        record(&breaker, Outcome::Failure, 1);
        assert_eq!(breaker.state(), State::Closed);
        // 6 of 12 reaches 50 %.
        record(&breaker, Outcome::Failure, 1);
        assert_eq!(breaker.state(), State::Open);

        assert_eq!(recorder.state(), 1.0);
        assert_eq!(recorder.transitions("open"), 1);
        assert_eq!(recorder.calls("failure"), 6);
        assert_eq!(recorder.calls("success"), 6);
    }

    #[tokio::test(start_paused = true)]
    async fn failures_below_minimum_calls_never_open_the_breaker() {
        let (breaker, _) = breaker(BreakerConfig::default());
        record(&breaker, Outcome::Failure, 9);
        assert_eq!(breaker.state(), State::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn a_business_error_never_opens_the_breaker() {
        let (breaker, recorder) = breaker(BreakerConfig::default());

        for _ in 0..50 {
            let result = breaker
                .call(async { Err::<(), _>(PspError::Declined) }, is_outage)
                .await;
            assert!(matches!(
                result,
                Err(BreakerError::Inner(PspError::Declined))
            ));
        }
        assert_eq!(breaker.state(), State::Closed);
        assert_eq!(recorder.calls("success"), 50);

        // The same number of outages does open it.
        for _ in 0..10 {
            let _ = breaker
                .call(async { Err::<(), _>(PspError::Unavailable) }, is_outage)
                .await;
        }
        assert_eq!(breaker.state(), State::Open);
    }

    #[tokio::test(start_paused = true)]
    async fn slow_calls_open_the_breaker_when_the_slow_threshold_is_set() {
        let config = BreakerConfig {
            slow_call_duration: Duration::from_secs(1),
            slow_call_rate_threshold: 50.0,
            ..BreakerConfig::default()
        };
        let (breaker, _) = breaker(config);
        let slow_success = || async {
            sleep(Duration::from_secs(1)).await;
            Ok::<_, PspError>("paid")
        };

        for _ in 0..5 {
            breaker
                .call(async { Ok::<_, PspError>("paid") }, is_outage)
                .await
                .unwrap();
        }
        for _ in 0..4 {
            breaker.call(slow_success(), is_outage).await.unwrap();
        }
        assert_eq!(breaker.state(), State::Closed, "4 slow of 9");
        breaker.call(slow_success(), is_outage).await.unwrap();
        assert_eq!(breaker.state(), State::Open, "5 slow of 10 reaches 50 %");
    }

    #[tokio::test(start_paused = true)]
    async fn slow_calls_alone_do_not_open_the_breaker_by_default() {
        let (breaker, _) = breaker(BreakerConfig::default());
        for n in 0..20 {
            let permit = breaker.try_acquire().unwrap();
            if n % 2 == 0 {
                advance(Duration::from_secs(5)).await;
            }
            permit.record(Outcome::Success);
        }
        assert_eq!(breaker.state(), State::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn an_open_breaker_rejects_at_once_and_says_how_long_it_stays_open() {
        let (breaker, recorder) = opened(BreakerConfig::default());
        advance(Duration::from_secs(3)).await;

        let rejected = breaker.try_acquire().unwrap_err();
        assert_eq!(rejected.state, State::Open);
        assert_eq!(rejected.retry_after, Duration::from_secs(7));
        assert_eq!(rejected.to_string(), "circuit breaker psp is open");

        let polled = AtomicBool::new(false);
        let before = Instant::now();
        let result = breaker
            .call(
                async {
                    polled.store(true, Ordering::Relaxed);
                    Ok::<_, PspError>(())
                },
                is_outage,
            )
            .await;
        assert!(matches!(result, Err(BreakerError::Rejected(_))));
        assert!(
            !polled.load(Ordering::Relaxed),
            "a rejected call never runs"
        );
        assert_eq!(Instant::now(), before);
        assert_eq!(recorder.calls("rejected"), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn after_the_wait_exactly_half_open_calls_probes_pass() {
        let (breaker, recorder) = opened(BreakerConfig::default());

        advance(Duration::from_secs(10) - Duration::from_nanos(1)).await;
        assert!(breaker.try_acquire().is_err(), "still open a moment before");
        advance(Duration::from_nanos(1)).await;

        let probes: Vec<_> = (0..3).map(|_| breaker.try_acquire().unwrap()).collect();
        let rejected = breaker.try_acquire().unwrap_err();
        assert_eq!(rejected.state, State::HalfOpen);
        assert_eq!(breaker.state(), State::HalfOpen);
        assert_eq!(recorder.state(), 2.0);
        drop(probes);
    }

    #[tokio::test(start_paused = true)]
    async fn successful_probes_close_the_breaker_with_an_empty_window() {
        let (breaker, recorder) = opened(BreakerConfig::default());
        advance(Duration::from_secs(10)).await;

        let probes: Vec<_> = (0..3).map(|_| breaker.try_acquire().unwrap()).collect();
        for probe in probes {
            assert_eq!(breaker.state(), State::HalfOpen);
            probe.record(Outcome::Success);
        }
        assert_eq!(breaker.state(), State::Closed);
        assert_eq!(recorder.state(), 0.0);
        assert_eq!(recorder.transitions("closed"), 1);

        // The failures that opened it are forgotten: nine more do not.
        record(&breaker, Outcome::Failure, 9);
        assert_eq!(breaker.state(), State::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn one_failing_probe_of_three_is_below_a_fifty_percent_threshold() {
        let (breaker, _) = opened(BreakerConfig::default());
        advance(Duration::from_secs(10)).await;

        record(&breaker, Outcome::Failure, 1);
        record(&breaker, Outcome::Success, 2);
        assert_eq!(breaker.state(), State::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_probe_reopens_the_breaker_at_once_for_a_fresh_wait() {
        let config = BreakerConfig {
            half_open_calls: 2,
            ..BreakerConfig::default()
        };
        let (breaker, recorder) = opened(config);
        advance(Duration::from_secs(10)).await;

        let first = breaker.try_acquire().unwrap();
        let second = breaker.try_acquire().unwrap();
        advance(Duration::from_secs(1)).await;
        // 1 failure of 2 probes is 50 % whatever the other probe says.
        first.record(Outcome::Failure);
        assert_eq!(breaker.state(), State::Open);
        assert_eq!(
            breaker.try_acquire().unwrap_err().retry_after,
            Duration::from_secs(10)
        );

        // The other probe reports late; it belongs to the last half-open.
        second.record(Outcome::Success);
        assert_eq!(breaker.state(), State::Open);
        assert_eq!(recorder.transitions("open"), 2);
        assert_eq!(recorder.transitions("half_open"), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_time_window_forgets_old_calls() {
        let config = BreakerConfig {
            window: Window::Time(Duration::from_secs(60)),
            ..BreakerConfig::default()
        };
        let (breaker, _) = breaker(config);

        record(&breaker, Outcome::Failure, 9);
        advance(Duration::from_secs(66)).await;
        record(&breaker, Outcome::Failure, 1);
        assert_eq!(breaker.state(), State::Closed, "the first nine are gone");

        advance(Duration::from_secs(30)).await;
        record(&breaker, Outcome::Failure, 9);
        assert_eq!(breaker.state(), State::Open, "ten failures within a minute");
    }

    #[tokio::test(start_paused = true)]
    async fn a_time_window_still_counts_calls_near_its_far_end() {
        let config = BreakerConfig {
            window: Window::Time(Duration::from_secs(60)),
            ..BreakerConfig::default()
        };
        let (breaker, _) = breaker(config);

        record(&breaker, Outcome::Failure, 9);
        advance(Duration::from_secs(59)).await;
        record(&breaker, Outcome::Failure, 1);
        assert_eq!(breaker.state(), State::Open);
    }

    #[tokio::test(start_paused = true)]
    async fn a_count_window_keeps_only_the_last_calls() {
        let config = BreakerConfig {
            window: Window::Count(10),
            ..BreakerConfig::default()
        };
        let (breaker, _) = breaker(config);

        record(&breaker, Outcome::Failure, 4);
        record(&breaker, Outcome::Success, 10);
        // 4 failures of the last 10 calls, not 8 of 18 as a growing window
        // would count: the old failures have left.
        record(&breaker, Outcome::Failure, 4);
        assert_eq!(breaker.state(), State::Closed);
        record(&breaker, Outcome::Failure, 1);
        assert_eq!(breaker.state(), State::Open, "5 of the last 10");
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_permit_counts_as_neither_success_nor_failure() {
        let (breaker, recorder) = breaker(BreakerConfig::default());

        // Twenty cancelled calls then five failures: 5 of 5 recorded calls
        // would be 100 %, but five are too few to judge.
        for _ in 0..20 {
            drop(breaker.try_acquire().unwrap());
        }
        record(&breaker, Outcome::Failure, 5);
        assert_eq!(breaker.state(), State::Closed);
        assert_eq!(recorder.calls("cancelled"), 20);

        // And they did not count as successes either: five more failures open it.
        record(&breaker, Outcome::Failure, 5);
        assert_eq!(breaker.state(), State::Open);
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_probe_frees_its_slot_for_another_call() {
        let (breaker, _) = opened(BreakerConfig::default());
        advance(Duration::from_secs(10)).await;

        let probes: Vec<_> = (0..3).map(|_| breaker.try_acquire().unwrap()).collect();
        assert!(breaker.try_acquire().is_err());
        let mut probes = probes.into_iter();
        drop(probes.next());
        let replacement = breaker.try_acquire().unwrap();
        assert!(breaker.try_acquire().is_err());

        for probe in probes.chain([replacement]) {
            probe.record(Outcome::Success);
        }
        assert_eq!(breaker.state(), State::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_cancelled_by_its_caller_is_not_counted() {
        let (breaker, recorder) = breaker(BreakerConfig::default());
        for _ in 0..20 {
            let hung = breaker.call(std::future::pending::<Result<(), PspError>>(), is_outage);
            assert!(
                tokio::time::timeout(Duration::from_secs(1), hung)
                    .await
                    .is_err()
            );
        }
        assert_eq!(breaker.state(), State::Closed);
        assert_eq!(recorder.calls("cancelled"), 20);
        assert_eq!(recorder.calls("failure"), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_begun_before_the_breaker_opened_is_not_counted_after() {
        let config = BreakerConfig {
            half_open_calls: 1,
            ..BreakerConfig::default()
        };
        let (breaker, _) = breaker(config);
        let straggler = breaker.try_acquire().unwrap();
        record(&breaker, Outcome::Failure, 10);
        advance(Duration::from_secs(10)).await;
        assert_eq!(breaker.state(), State::HalfOpen);

        // Were it counted as the probe, this success would close the breaker.
        straggler.record(Outcome::Success);
        assert_eq!(breaker.state(), State::HalfOpen);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_calls_from_many_tasks_keep_counts_consistent() {
        // Opens exactly when the 10 000th call lands, if and only if no call
        // was lost: 5 000 failures of 10 000 is 50 %, and fewer calls are
        // below the minimum.
        const TASKS: u32 = 50;
        const CALLS: u32 = 200;
        let config = BreakerConfig {
            window: Window::Count(TASKS * CALLS),
            minimum_calls: TASKS * CALLS,
            slow_call_duration: Duration::MAX,
            ..BreakerConfig::default()
        };
        let (breaker, recorder) = breaker(config);

        let tasks: Vec<_> = (0..TASKS)
            .map(|_| {
                let breaker = breaker.clone();
                tokio::spawn(async move {
                    for n in 0..CALLS {
                        let permit = breaker.try_acquire().unwrap();
                        tokio::task::yield_now().await;
                        let outcome = if n % 2 == 0 {
                            Outcome::Failure
                        } else {
                            Outcome::Success
                        };
                        permit.record(outcome);
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }

        assert_eq!(breaker.state(), State::Open);
        assert_eq!(recorder.calls("failure"), u64::from(TASKS * CALLS / 2));
        assert_eq!(recorder.calls("success"), u64::from(TASKS * CALLS / 2));
        assert_eq!(recorder.calls("rejected"), 0);
        assert_eq!(recorder.transitions("open"), 1);
    }

    #[test]
    fn breakers_and_their_calls_can_move_between_threads() {
        fn send_sync<T: Send + Sync>(_: &T) {}
        fn send<T: Send>(_: &T) {}
        let (breaker, _) = breaker(BreakerConfig::default());
        send_sync(&breaker);
        send(&breaker.try_acquire().unwrap());
        send(&breaker.call(async { Ok::<_, PspError>(()) }, is_outage));
    }

    #[test]
    fn validate_names_the_first_setting_out_of_range() {
        assert_eq!(BreakerConfig::default().validate(), Ok(()));
        let bad = BreakerConfig {
            failure_rate_threshold: 0.0,
            ..BreakerConfig::default()
        };
        assert_eq!(bad.validate().unwrap_err().field, "failure_rate_threshold");
        let bad = BreakerConfig {
            slow_call_rate_threshold: f64::NAN,
            ..BreakerConfig::default()
        };
        assert_eq!(
            bad.validate().unwrap_err().field,
            "slow_call_rate_threshold"
        );
        let bad = BreakerConfig {
            window: Window::Count(0),
            ..BreakerConfig::default()
        };
        assert_eq!(
            bad.validate().unwrap_err().to_string(),
            "circuit breaker setting window must be a count of at least 1"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_minimum_above_the_count_window_is_lowered_to_its_size() {
        let config = BreakerConfig {
            window: Window::Count(5),
            minimum_calls: 100,
            ..BreakerConfig::default()
        };
        let (breaker, _) = breaker(config);
        record(&breaker, Outcome::Failure, 5);
        assert_eq!(breaker.state(), State::Open);
    }
}
