//! Rate limiters: how many requests a key — the whole service, a client IP, a
//! user, a route, a sale — may make per stretch of time, decided on the hot
//! path without waiting for anything.
//!
//! A [`KeyedLimiter`] applies one [`Quota`] with one [`Algorithm`] to every
//! key separately; the key is any `Hash + Eq + Clone` type the caller picks
//! (`()` for one global limit, `IpAddr`, a user id, `(RouteId, IpAddr)`…).
//! [`KeyedLimiter::check`] is synchronous and answers a [`LimitDecision`] with
//! what the [`headers`] need: what is left, when more comes, when to retry.
//!
//! # Algorithms and their bounds
//!
//! A quota is `limit` requests per `period` — the long-run rate — and a
//! `burst`: how many may come at once. Write `T = period / limit` and, for
//! the windows, `W = burst · T` (so with the default `burst = limit`, a
//! window is the period and holds `limit`). In any interval of length `L`,
//! closed at both ends, a limiter admits at most:
//!
//! | algorithm | on excess | bound on admissions within `L` |
//! |---|---|---|
//! | [`Gcra`](Algorithm::Gcra) (token bucket) | refuse | `burst + ⌊L / T⌋` |
//! | [`LeakyBucket`](Algorithm::LeakyBucket) | queue up to `max_wait`, then refuse | starts (decision + wait): `burst + ⌊L / T⌋`; decisions: `burst + ⌊(L + max_wait) / T⌋` |
//! | [`FixedWindow`](Algorithm::FixedWindow) | refuse | `burst · (⌈L / W⌉ + 1)`, at most `2·burst + L / T`: **twice the burst across a window boundary** |
//! | [`SlidingWindow`](Algorithm::SlidingWindow) | refuse | `burst + L / T` |
//!
//! - **GCRA** is the token bucket without a refill timer: one timestamp per
//!   key (the theoretical arrival time). A bucket of `burst` refills one
//!   request every `T`.
//! - **Leaky bucket** is the same GCRA, except that a request early by at most
//!   `max_wait` is given the next free slot and told to wait
//!   ([`LimitDecision::Wait`]) until it — the slot is reserved at once, so the waits
//!   are exact and first come, first served. With `burst = 1` the requests
//!   start exactly `T` apart; a larger burst lets that many start at once
//!   after a quiet spell. Requests the queue cannot take within `max_wait`
//!   are refused, so no caller waits longer than that.
//! - **Fixed window**: each key's window opens at its first request and
//!   holds `burst`; the cheapest to explain, and the one whose worst case is
//!   a double burst straddling two windows.
//! - **Sliding window** is the sliding-window *counter* (as Cloudflare
//!   describes it), not a log: two counts per key instead of a timestamp per
//!   request. A request is admitted if the current window's count plus the
//!   previous window's, weighted by how much of it is still inside the last
//!   `W`, stays within `burst`. Compared in integers, after admission, this
//!   keeps the bound above exactly (the property tests check it), with the
//!   same worst case as GCRA.
//!
//! Lengths derived from the quota are rounded up to the nanosecond, so
//! rounding never lets more through than the bound says.
//!
//! # Why not `governor`
//!
//! The original plan suggested governor for keyed GCRA (docs/stack.md §3
//! records the decision). It was tried (0.10, with a clock on
//! `tokio::time::Instant`, which its `Clock`/`Reference` traits allow), and
//! set aside:
//! - its allow snapshot exposes the remaining burst but not the theoretical
//!   arrival time, so the time until more quota (`RateLimit`'s `t`) could
//!   only be estimated, up to one interval off;
//! - the leaky bucket needs GCRA with reservations, which governor does not
//!   do (its `until_key_ready` re-polls, so waits are neither exact nor
//!   first come, first served): we would have had two GCRAs;
//! - with all four algorithms written as pure rules over integer
//!   nanoseconds (`rules.rs`) there is one notion of an idle key, one place
//!   to test the bounds, and arithmetic a Redis script can copy; and it saves
//!   a dozen crates (dashmap, parking_lot, futures…).
//!
//! What governor does well, a known key updated by compare-and-swap under a
//! shard's read lock, `table.rs` does too for GCRA's one-word state; the
//! windows' two- and three-field states sit behind a mutex per shard (64
//! shards). Measured here in release mode (2 shared cores, `u64` keys,
//! medians of 5 interleaved runs of 2 M checks): GCRA 67 ns a check (governor
//! on the same tokio clock: 51 ns; a `tokio::time::Instant::now()` alone is
//! 18 ns of either), 73 ns over 10 000 keys (governor 57), 291 ns with two
//! threads on one hot key (governor 253; 503 with a mutex, hence the CAS);
//! fixed window 53 ns, sliding window 69 ns. A known key costs no
//! allocation, for any algorithm (counted with a counting global allocator
//! over 200 000 checks of `IpAddr` and `String` keys).
//!
//! # Forgetting idle keys
//!
//! Per-user and per-IP state would grow without end, so the caller runs
//! [`KeyedLimiter::purge_idle`] now and then — every few seconds, and at
//! least as often as the quota's period for short periods; once a minute is
//! plenty for long ones. It drops keys whose state no longer changes any
//! decision (a full bucket, a window long past), so purging is never visible
//! to clients. Memory then holds the keys active since about one period
//! before the previous purge. A purge locks one shard (1/64 of the keys) at
//! a time, never the whole limiter.
//!
//! # Bounded memory
//!
//! Purging keeps memory proportional to the keys of the last period, which
//! an attacker rotating IPv6 addresses or user ids controls. For GCRA and
//! the leaky bucket, [`KeyedLimiter::bounded`] keeps the state in memory
//! fixed at construction ([`Bounds`], [`KeyedLimiter::memory_bytes`]):
//! exact state for the hottest keys (listed by [`KeyedLimiter::hottest`]),
//! and for the others a sketch of theoretical arrival times that can only
//! over-estimate them. Churn then costs nothing and cannot reset a key in
//! debt; the price is that a fresh key is refused with a small probability,
//! at most about `(D / sketch_width)⁴` while `D` keys outside the top-K are
//! in debt (`bounded.rs` has the argument, the bound and the memory
//! formula). Nothing needs purging. The windows have no bounded form.
//!
//! # Other stores
//!
//! [`Quota`], [`Algorithm`], [`LimitDecision`] and [`headers`] are plain data,
//! shared by the limiters of [`shared`]: the same rules with their state in
//! a store every node uses (Redis in cluster mode), whose `check` is `async`
//! and fallible where this one is neither, with a [`shared::Fallback`] for
//! when the store does not answer.
//!
//! # Metrics
//!
//! With the label `limiter` = the limiter's name: the counter
//! `stampede_ratelimit_decisions_total{decision}` (`allow`, `wait`, `deny`)
//! and the gauge `stampede_ratelimit_keys`, updated by each purge. Handles
//! are made once per limiter.

mod bounded;
pub mod headers;
mod rules;
pub mod shared;
pub mod slots;
mod table;

use std::fmt;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use metrics::{Counter, Gauge, counter, gauge};
use tokio::time::Instant;

use bounded::BoundedTable;
use rules::{FixedWindow, Gcra, Rule, SlidingWindow};
use table::{AtomicTable, Table};

/// How many requests a key may make: `limit` per `period` in the long run,
/// and `burst` at once.
///
/// What `burst` means for each [`Algorithm`] is in the
/// [module documentation](self); [`Quota::new`] sets it to `limit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Quota {
    /// Requests per `period`, at least 1.
    pub limit: u32,
    /// The stretch of time `limit` is counted over, above zero.
    pub period: Duration,
    /// How many requests may come at once, at least 1: GCRA's bucket size,
    /// the leaky bucket's requests that need not wait, a window's capacity.
    pub burst: u32,
}

impl Quota {
    /// `limit` per `period`, as many at once.
    pub const fn new(limit: u32, period: Duration) -> Self {
        Self {
            limit,
            period,
            burst: limit,
        }
    }

    /// `limit` per second, as many at once.
    pub const fn per_second(limit: u32) -> Self {
        Self::new(limit, Duration::from_secs(1))
    }

    /// `limit` per minute, as many at once.
    pub const fn per_minute(limit: u32) -> Self {
        Self::new(limit, Duration::from_secs(60))
    }

    /// The same rate with another burst.
    #[must_use]
    pub const fn with_burst(self, burst: u32) -> Self {
        Self { burst, ..self }
    }

    /// Checks every field, for quotas read from configuration at start-up;
    /// the first one out of range is named. [`KeyedLimiter::new`] does not
    /// fail: it raises zeros to the smallest value allowed instead.
    pub fn validate(&self) -> Result<(), QuotaError> {
        let err = |field, rule| Err(QuotaError { field, rule });
        if self.limit == 0 {
            return err("limit", "at least 1");
        }
        if self.period.is_zero() {
            return err("period", "a duration above zero");
        }
        if self.burst == 0 {
            return err("burst", "at least 1");
        }
        Ok(())
    }

    /// The quota with zeros raised to the smallest value allowed.
    fn clamped(self) -> Self {
        Self {
            limit: self.limit.max(1),
            period: self.period.max(Duration::from_nanos(1)),
            burst: self.burst.max(1),
        }
    }
}

/// A [`Quota`] field outside its range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("rate limit quota {field} must be {rule}")]
pub struct QuotaError {
    pub field: &'static str,
    pub rule: &'static str,
}

/// How a limiter enforces its quota; see the [module documentation](self)
/// for each one's bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Algorithm {
    /// Token bucket as GCRA: bursts up to `burst`, refused beyond.
    #[default]
    Gcra,
    /// GCRA that queues instead of refusing, as long as the wait stays
    /// within `max_wait`: smooths traffic into the dependency behind it.
    LeakyBucket { max_wait: Duration },
    /// `burst` per window of `period · burst / limit` from each key's first
    /// request; up to twice that across a window boundary.
    FixedWindow,
    /// Sliding-window counter: like the fixed window without the double
    /// burst, at two counters per key.
    SlidingWindow,
}

/// What to do with one request.
///
/// The proposal was `Wait(Duration)`; `Wait` carries `reset` too, so that a
/// queued request's response can still say when quota comes back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitDecision {
    /// Go ahead now.
    Allow {
        /// How many more requests would be let through at once.
        remaining: u32,
        /// How long until more than `remaining` would be: within this time
        /// at most `remaining` more are admitted (the draft's effective
        /// window, `RateLimit`'s `t`).
        reset: Duration,
    },
    /// Leaky bucket only: a slot `delay` from now is reserved for this
    /// request; sleep that long, then go ahead. Never longer than
    /// `max_wait`.
    Wait {
        delay: Duration,
        /// How long until a request would be let through without waiting.
        reset: Duration,
    },
    /// Refused: nothing was reserved.
    Deny {
        /// How long until a request would be let through (or, for a leaky
        /// bucket, queued); for `Retry-After`.
        retry_after: Duration,
        /// How long until a request would be let through without waiting;
        /// equal to `retry_after` except for a leaky bucket.
        reset: Duration,
    },
}

impl LimitDecision {
    /// Whether the request goes ahead, now or after its wait.
    pub fn is_admitted(&self) -> bool {
        !matches!(self, Self::Deny { .. })
    }

    /// How many more requests would be let through at once: 0 unless
    /// [`LimitDecision::Allow`].
    pub fn remaining(&self) -> u32 {
        match self {
            Self::Allow { remaining, .. } => *remaining,
            Self::Wait { .. } | Self::Deny { .. } => 0,
        }
    }

    /// How long until more than [`LimitDecision::remaining`] would be let
    /// through at once.
    pub fn reset(&self) -> Duration {
        match self {
            Self::Allow { reset, .. } | Self::Wait { reset, .. } | Self::Deny { reset, .. } => {
                *reset
            }
        }
    }
}

/// A rate limit applied to each key separately, with state in this
/// process. Cheap to clone; clones share state.
pub struct KeyedLimiter<K> {
    inner: Arc<Inner<K>>,
}

impl<K> Clone for KeyedLimiter<K> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<K> fmt::Debug for KeyedLimiter<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedLimiter")
            .field("name", &self.inner.name)
            .field("algorithm", &self.inner.algorithm)
            .field("quota", &self.inner.quota)
            .finish_non_exhaustive()
    }
}

struct Inner<K> {
    name: Arc<str>,
    /// Clamped into range.
    quota: Quota,
    algorithm: Algorithm,
    /// The zero of the rules' clock.
    epoch: Instant,
    engine: Engine<K>,
    metrics: Metrics,
}

/// One table per algorithm's state type.
enum Engine<K> {
    Gcra(Gcra, AtomicTable<K>),
    /// GCRA or the leaky bucket in fixed memory.
    Bounded(Gcra, BoundedTable<K>),
    Fixed(FixedWindow, Table<K, rules::Fixed>),
    Sliding(SlidingWindow, Table<K, rules::Sliding>),
}

impl<K: Hash + Eq + Clone + Send + Sync> KeyedLimiter<K> {
    /// A limiter named `name` (the `limiter` label of its metrics) with no
    /// keys yet. A quota field of zero is raised to the smallest value
    /// allowed; use [`Quota::validate`] first to refuse it instead.
    pub fn new(name: impl Into<String>, algorithm: Algorithm, quota: Quota) -> Self {
        let quota = quota.clamped();
        let engine = match algorithm {
            Algorithm::Gcra => Engine::Gcra(Gcra::new(quota, Duration::ZERO), AtomicTable::new()),
            Algorithm::LeakyBucket { max_wait } => {
                Engine::Gcra(Gcra::new(quota, max_wait), AtomicTable::new())
            }
            Algorithm::FixedWindow => Engine::Fixed(FixedWindow::new(quota), Table::new()),
            Algorithm::SlidingWindow => Engine::Sliding(SlidingWindow::new(quota), Table::new()),
        };
        Self::with_engine(name.into(), algorithm, quota, engine)
    }

    /// A limiter like [`KeyedLimiter::new`] whose state takes the memory
    /// `bounds` set, allocated now, however many keys come: exact for the
    /// hottest keys, a sketch for the rest that may refuse a request early
    /// but never admits one beyond the quota ([module documentation](self),
    /// section "Bounded memory"). GCRA and the leaky bucket only.
    pub fn bounded(
        name: impl Into<String>,
        algorithm: Algorithm,
        quota: Quota,
        bounds: Bounds,
    ) -> Result<Self, NotBoundable> {
        let quota = quota.clamped();
        let rule = match algorithm {
            Algorithm::Gcra => Gcra::new(quota, Duration::ZERO),
            Algorithm::LeakyBucket { max_wait } => Gcra::new(quota, max_wait),
            Algorithm::FixedWindow | Algorithm::SlidingWindow => {
                return Err(NotBoundable(algorithm));
            }
        };
        let table = BoundedTable::new(bounds.top_k, bounds.sketch_width);
        let engine = Engine::Bounded(rule, table);
        Ok(Self::with_engine(name.into(), algorithm, quota, engine))
    }

    fn with_engine(name: String, algorithm: Algorithm, quota: Quota, engine: Engine<K>) -> Self {
        let name: Arc<str> = name.into();
        Self {
            inner: Arc::new(Inner {
                metrics: Metrics::new(&name),
                name,
                quota,
                algorithm,
                epoch: Instant::now(),
                engine,
            }),
        }
    }

    /// Decides on one request for `key`, now, and counts it if it goes
    /// ahead. Never waits: a [`LimitDecision::Wait`] tells the caller to.
    pub fn check(&self, key: &K) -> LimitDecision {
        let inner = &*self.inner;
        let now = inner.now();
        let decision = match &inner.engine {
            Engine::Gcra(rule, table) => table.update(key, |state| rule.check(state, now)),
            Engine::Bounded(rule, table) => table.update(key, |tat| rule.check(Some(tat), now)),
            Engine::Fixed(rule, table) => check(rule, table, key, now),
            Engine::Sliding(rule, table) => check(rule, table, key, now),
        };
        inner.metrics.count(&decision);
        decision
    }

    /// Forgets every key whose state would not change any decision (see the
    /// [module documentation](self) for how often to call it). Returns how
    /// many keys were dropped: none for a [bounded](KeyedLimiter::bounded)
    /// limiter, whose memory never grows and whose past TATs already count
    /// as no state.
    pub fn purge_idle(&self) -> usize {
        let inner = &*self.inner;
        let now = inner.now();
        let dropped = match &inner.engine {
            Engine::Gcra(rule, table) => table.retain(|state| rule.is_idle(&state, now)),
            Engine::Bounded(..) => 0,
            Engine::Fixed(rule, table) => table.retain(|state| rule.is_idle(state, now)),
            Engine::Sliding(rule, table) => table.retain(|state| rule.is_idle(state, now)),
        };
        inner.metrics.keys.set(self.len() as f64);
        dropped
    }

    /// How many keys have state (a snapshot while checks go on); for a
    /// [bounded](KeyedLimiter::bounded) limiter, how many are resident in
    /// its top-K table.
    pub fn len(&self) -> usize {
        match &self.inner.engine {
            Engine::Gcra(_, table) => table.len(),
            Engine::Bounded(_, table) => table.len(),
            Engine::Fixed(_, table) => table.len(),
            Engine::Sliding(_, table) => table.len(),
        }
    }

    /// Whether no key has state.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Up to `n` of the keys resident in a [bounded](KeyedLimiter::bounded)
    /// limiter's top-K table, hottest first; none for an exact limiter,
    /// which keeps no hit counts.
    pub fn hottest(&self, n: usize) -> Vec<HotKey<K>> {
        let inner = &*self.inner;
        let Engine::Bounded(rule, table) = &inner.engine else {
            return Vec::new();
        };
        let now = inner.now();
        let mut residents = table.residents();
        residents.sort_unstable_by_key(|resident| std::cmp::Reverse(resident.hits));
        residents.truncate(n);
        residents
            .into_iter()
            .map(|resident| HotKey {
                limited: rule.is_limited(resident.tat, now),
                key: resident.key,
                hits: resident.hits,
            })
            .collect()
    }
}

impl<K> KeyedLimiter<K> {
    /// The quota, with zeros raised as [`KeyedLimiter::new`] did.
    pub fn quota(&self) -> Quota {
        self.inner.quota
    }

    pub fn algorithm(&self) -> Algorithm {
        self.inner.algorithm
    }

    /// The name given at creation.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The heap a [bounded](KeyedLimiter::bounded) limiter's state takes,
    /// set at construction (not counting heap owned by resident keys, such
    /// as a `String`'s); `None` for an exact limiter, whose tables grow with
    /// the keys.
    pub fn memory_bytes(&self) -> Option<usize> {
        match &self.inner.engine {
            Engine::Bounded(_, table) => Some(table.memory_bytes()),
            _ => None,
        }
    }
}

/// The memory of a [bounded](KeyedLimiter::bounded) limiter: `top_k` keys
/// decided exactly, and `sketch_width` cells in each of the sketch's four
/// rows for the others. Each is raised to at least 1 and rounded up (to
/// whole buckets of 8 keys and whole shards);
/// [`KeyedLimiter::memory_bytes`] tells the result. The sketch refuses a
/// fresh key with about `(D / sketch_width)⁴` when `D` keys not in the
/// top-K are in debt (module documentation, "Bounded memory").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Bounds {
    pub top_k: usize,
    pub sketch_width: usize,
}

impl Bounds {
    pub const fn new(top_k: usize, sketch_width: usize) -> Self {
        Self {
            top_k,
            sketch_width,
        }
    }
}

/// [`KeyedLimiter::bounded`] was given a window algorithm: a window's state
/// is a count and a start, and the largest of several keys' states (what a
/// shared sketch cell keeps) may have a later start with a smaller count,
/// forgetting debt. GCRA has the sliding window's bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("bounded rate-limit state holds GCRA and leaky-bucket limiters only, not {0:?}")]
pub struct NotBoundable(pub Algorithm);

/// A key resident in a [bounded](KeyedLimiter::bounded) limiter's top-K
/// table, as [`KeyedLimiter::hottest`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HotKey<K> {
    pub key: K,
    /// Its recent checks: counted while resident (and estimated before),
    /// halved every aging period so that the hot keys of now come first.
    pub hits: u32,
    /// Whether a request from it now would be refused (or, for a leaky
    /// bucket, made to wait).
    pub limited: bool,
}

impl<K> Inner<K> {
    /// Nanoseconds since the limiter was made.
    fn now(&self) -> u64 {
        rules::nanos(Instant::now().saturating_duration_since(self.epoch))
    }
}

fn check<K: Hash + Eq + Clone, R: Rule>(
    rule: &R,
    table: &Table<K, R::State>,
    key: &K,
    now: u64,
) -> LimitDecision {
    table.update(key, |state| rule.check(state, now))
}

/// The limiter's metric handles, made once.
struct Metrics {
    allow: Counter,
    wait: Counter,
    deny: Counter,
    keys: Gauge,
}

impl Metrics {
    fn new(name: &str) -> Self {
        let decisions = |decision: &'static str| counter!("stampede_ratelimit_decisions_total", "limiter" => name.to_owned(), "decision" => decision);
        Self {
            allow: decisions("allow"),
            wait: decisions("wait"),
            deny: decisions("deny"),
            keys: gauge!("stampede_ratelimit_keys", "limiter" => name.to_owned()),
        }
    }

    fn count(&self, decision: &LimitDecision) {
        match decision {
            LimitDecision::Allow { .. } => &self.allow,
            LimitDecision::Wait { .. } => &self.wait,
            LimitDecision::Deny { .. } => &self.deny,
        }
        .increment(1);
    }
}

#[cfg(test)]
mod tests;
