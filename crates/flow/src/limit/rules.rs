//! The limiting rules as pure state machines over integer nanoseconds: given a
//! key's state (or none) and the time, each answers a [`LimitDecision`] and the
//! key's next state. No clock, no lock, no map: [`super::KeyedLimiter`] adds
//! those, tests drive the rules at any instant they like, and a Redis adapter
//! can mirror the same integer arithmetic in a script.
//!
//! Time is nanoseconds since the limiter was made (`u64`: 584 years). Every
//! length derived from a [`Quota`] is rounded *up* to the nanosecond and
//! capped at [`MAX_NANOS`], so rounding only ever makes a limiter stricter
//! and sums of two lengths cannot overflow.

use std::time::Duration;

use super::{LimitDecision, Quota};

/// The longest length the rules work with, about 146 years; longer periods
/// and waits are taken as this.
pub(crate) const MAX_NANOS: u64 = 1 << 62;

/// One limiting rule: what a key's state is and how a request changes it.
pub(crate) trait Rule {
    /// What the limiter remembers per key; small and `Copy`.
    type State: Copy;

    /// Decides on one request arriving at `now` for a key in `state` (`None`:
    /// a key never seen, or purged) and returns the key's next state.
    fn check(&self, state: Option<Self::State>, now: u64) -> (Self::State, LimitDecision);

    /// Whether `state` at `now` decides every future request exactly as no
    /// state would, so that the key can be forgotten without anyone noticing.
    fn is_idle(&self, state: &Self::State, now: u64) -> bool;
}

/// The generic cell rate algorithm, with an optional queue: the token bucket
/// and the leaky bucket of this module are both this rule.
///
/// The state is the key's theoretical arrival time (TAT): when the bucket
/// will be empty again if nothing more comes. A request at `now` conforms if
/// `now ≥ tat − tau`; it then moves the TAT one emission interval `t` on.
/// With `max_wait > 0`, a request that is early by at most `max_wait` is not
/// refused: it is given the slot at `tat − tau` (and told to wait until
/// then), which moves the TAT on just the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Gcra {
    /// Emission interval: `period / limit`, rounded up; at least 1.
    t: u64,
    /// Tolerance: `t · (burst − 1)`.
    tau: u64,
    /// How early a request may be and still be queued; 0 refuses it.
    max_wait: u64,
}

impl Gcra {
    /// The rule for a (clamped) quota; `max_wait` zero for a token bucket.
    pub(crate) fn new(quota: Quota, max_wait: Duration) -> Self {
        let t = div_ceil(u128::from(nanos(quota.period)), u128::from(quota.limit)).max(1);
        Self {
            t,
            tau: t
                .saturating_mul(u64::from(quota.burst.saturating_sub(1)))
                .min(MAX_NANOS),
            max_wait: nanos(max_wait),
        }
    }
}

impl Gcra {
    /// The TAT after counting one event at `now` whatever the decision
    /// would have been: for events known only afterwards (a failed login),
    /// so that events past the limit push the key's next allowance further
    /// out instead of being forgotten.
    pub(crate) fn charge(&self, tat: u64, now: u64) -> u64 {
        tat.max(now).saturating_add(self.t)
    }

    /// Whether a request at `now` would be refused or made to wait, not let
    /// through at once.
    pub(crate) fn is_limited(&self, tat: u64, now: u64) -> bool {
        now < tat.saturating_sub(self.tau)
    }
}

impl Rule for Gcra {
    type State = u64;

    fn check(&self, tat: Option<u64>, now: u64) -> (u64, LimitDecision) {
        let Self { t, tau, max_wait } = *self;
        // A TAT in the past is the same as a full bucket: as if it were now.
        let tat = tat.map_or(now, |tat| tat.max(now));
        let allowed_at = tat.saturating_sub(tau);
        if now >= allowed_at {
            let tat = tat.saturating_add(t);
            // After a conforming request `now + t ≤ tat ≤ now + tau + t`.
            let remaining = now.saturating_add(tau + t).saturating_sub(tat) / t;
            // `remaining + 1` more fit once `tat + remaining·t − tau` is reached.
            let reset = tat
                .saturating_add(remaining * t)
                .saturating_sub(tau.saturating_add(now));
            let decision = LimitDecision::Allow {
                remaining: to_u32(remaining),
                reset: Duration::from_nanos(reset),
            };
            return (tat, decision);
        }
        let delay = allowed_at - now;
        if delay <= max_wait {
            // The queued request takes the slot at `allowed_at`; the next one
            // could go at once only a full interval after that.
            let decision = LimitDecision::Wait {
                delay: Duration::from_nanos(delay),
                reset: Duration::from_nanos(delay.saturating_add(t)),
            };
            (tat.saturating_add(t), decision)
        } else {
            let decision = LimitDecision::Deny {
                retry_after: Duration::from_nanos(delay - max_wait),
                reset: Duration::from_nanos(delay),
            };
            (tat, decision)
        }
    }

    fn is_idle(&self, tat: &u64, now: u64) -> bool {
        *tat <= now
    }
}

/// A fixed window per key: at most `cap` requests from the window's first
/// request until `width` later; the next request after that opens a new
/// window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FixedWindow {
    /// Window length: `period · burst / limit`, rounded up.
    width: u64,
    /// Requests per window: the quota's burst.
    cap: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fixed {
    /// When the key's current window opened.
    start: u64,
    /// Requests admitted in it.
    count: u32,
}

impl FixedWindow {
    pub(crate) fn new(quota: Quota) -> Self {
        Self {
            width: window_width(quota),
            cap: quota.burst,
        }
    }
}

impl Rule for FixedWindow {
    type State = Fixed;

    fn check(&self, state: Option<Fixed>, now: u64) -> (Fixed, LimitDecision) {
        let Fixed { start, count } = match state {
            Some(state) if !self.is_idle(&state, now) => state,
            _ => Fixed {
                start: now,
                count: 0,
            },
        };
        // A thread that read the clock just before another opened this
        // window sees `now < start`: it is in the window, at its start.
        let now = now.max(start);
        // The count only starts again when the window ends.
        let reset = Duration::from_nanos(start + self.width - now);
        if count < self.cap {
            let count = count + 1;
            let decision = LimitDecision::Allow {
                remaining: self.cap - count,
                reset,
            };
            (Fixed { start, count }, decision)
        } else {
            let decision = LimitDecision::Deny {
                retry_after: reset,
                reset,
            };
            (Fixed { start, count }, decision)
        }
    }

    fn is_idle(&self, state: &Fixed, now: u64) -> bool {
        now >= state.start + self.width
    }
}

/// A sliding-window counter (Cloudflare's): windows of `width` tile time
/// from the key's first request, and a request is admitted if the current
/// window's count plus the previous window's count, weighted by the share of
/// the previous window still inside the sliding window, stays within `cap`.
/// Compared multiplied out, in integers, so the bound is exact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SlidingWindow {
    /// Window length: `period · burst / limit`, rounded up.
    width: u64,
    /// Requests per window: the quota's burst.
    cap: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Sliding {
    /// When the key's current window opened; the previous one ended then.
    start: u64,
    /// Requests admitted in the previous window.
    previous: u32,
    /// Requests admitted in the current one.
    current: u32,
}

impl SlidingWindow {
    pub(crate) fn new(quota: Quota) -> Self {
        Self {
            width: window_width(quota),
            cap: quota.burst,
        }
    }

    /// The state at `now`: windows moved on, or a fresh one if nothing was
    /// admitted in the last `width`.
    fn at(&self, state: Option<Sliding>, now: u64) -> Sliding {
        let fresh = Sliding {
            start: now,
            previous: 0,
            current: 0,
        };
        match state {
            Some(state) if self.is_idle(&state, now) => fresh,
            Some(state) if now >= state.start + self.width => Sliding {
                start: state.start + self.width,
                previous: state.current,
                current: 0,
            },
            Some(state) => state,
            None => fresh,
        }
    }

    /// Whether `extra` more requests fit at `elapsed` into the window of
    /// `state`.
    fn fits(&self, state: &Sliding, elapsed: u64, extra: u32) -> bool {
        let width = u128::from(self.width);
        let current = u128::from(state.current) + u128::from(extra);
        let previous = u128::from(state.previous) * (width - u128::from(elapsed));
        current * width + previous <= u128::from(self.cap) * width
    }

    /// How many more requests fit at `elapsed` into the window of `state`.
    fn room(&self, state: &Sliding, elapsed: u64) -> u32 {
        let width = u128::from(self.width);
        let previous = u128::from(state.previous) * (width - u128::from(elapsed));
        let total = (u128::from(self.cap) * width).saturating_sub(previous) / width;
        to_u32(u64::try_from(total.saturating_sub(u128::from(state.current))).unwrap_or(0))
    }

    /// How long after `elapsed` into the window of `state` until `extra`
    /// (at most `cap`) requests fit, if no others come.
    fn until_fits(&self, state: &Sliding, elapsed: u64, extra: u32) -> u64 {
        let width = u128::from(self.width);
        // In this window, once enough of the previous one has slid out:
        // previous · (width − e) ≤ (cap − current − extra) · width.
        if let Some(spare) = self.cap.checked_sub(state.current.saturating_add(extra)) {
            let spare = u128::from(spare) * width;
            let from = match state.previous {
                0 => 0,
                previous => width.saturating_sub(spare / u128::from(previous)),
            };
            let at = from.max(u128::from(elapsed));
            if at < width {
                return to_u64(at) - elapsed;
            }
        }
        // In the next window, where this one is the previous:
        // current · (width − e) ≤ (cap − extra) · width. At its very end
        // (e = width) the key is fresh, and `extra ≤ cap` fits.
        let to_next = self.width - elapsed;
        match state.current {
            0 => to_next,
            current => {
                let spare = u128::from(self.cap.saturating_sub(extra)) * width;
                to_next + to_u64(width.saturating_sub(spare / u128::from(current)))
            }
        }
    }
}

impl Rule for SlidingWindow {
    type State = Sliding;

    fn check(&self, state: Option<Sliding>, now: u64) -> (Sliding, LimitDecision) {
        let mut state = self.at(state, now);
        // A thread that read the clock just before another created or moved
        // this state sees `now < start`: it counts as at the start.
        let elapsed = now.saturating_sub(state.start);
        if self.fits(&state, elapsed, 1) {
            state.current += 1;
            let remaining = self.room(&state, elapsed);
            let reset = self.until_fits(&state, elapsed, remaining + 1);
            let decision = LimitDecision::Allow {
                remaining,
                reset: Duration::from_nanos(reset),
            };
            (state, decision)
        } else {
            let retry_after = Duration::from_nanos(self.until_fits(&state, elapsed, 1));
            let decision = LimitDecision::Deny {
                retry_after,
                reset: retry_after,
            };
            (state, decision)
        }
    }

    fn is_idle(&self, state: &Sliding, now: u64) -> bool {
        // Nothing admitted in the last `width`: the current window is two
        // widths old, or one width old and empty.
        let elapsed = now.saturating_sub(state.start);
        elapsed >= 2 * self.width || (elapsed >= self.width && state.current == 0)
    }
}

/// The window length of a quota: `burst` requests' worth of its rate,
/// `period · burst / limit`, rounded up.
fn window_width(quota: Quota) -> u64 {
    div_ceil(
        u128::from(nanos(quota.period)) * u128::from(quota.burst),
        u128::from(quota.limit),
    )
    .max(1)
}

/// A duration in nanoseconds, capped at [`MAX_NANOS`].
pub(crate) fn nanos(duration: Duration) -> u64 {
    to_u64(duration.as_nanos())
}

/// `numerator / denominator` rounded up, capped at [`MAX_NANOS`]; a zero
/// denominator counts as 1.
fn div_ceil(numerator: u128, denominator: u128) -> u64 {
    to_u64(numerator.div_ceil(denominator.max(1)))
}

fn to_u64(value: u128) -> u64 {
    u64::try_from(value).unwrap_or(MAX_NANOS).min(MAX_NANOS)
}

fn to_u32(value: u64) -> u32 {
    u32::try_from(value).unwrap_or(u32::MAX)
}
