//! Deadlines: the instant by which a piece of work must be done, passed inward
//! so that every call made on a request's behalf takes only what remains of the
//! request's time, never a fresh timeout of its own.
//!
//! A [`Deadline`] is a `tokio::time::Instant`, so it follows tokio's clock and
//! tests can move it with `tokio::time::pause()` and `advance()`.
//!
//! # The scope
//!
//! Threading a deadline through every signature between the handler and the
//! innermost call is noisy, and one forgotten parameter silently gives a call
//! all the time in the world. So the edge can also run the request inside
//! [`scope`], and anything it awaits can ask for [`current`] — or, for a call
//! with a timeout of its own, [`Deadline::budget`], the tighter of the two.
//! The [`Bulkhead`](crate::Bulkhead) does, so its wait never outlives the
//! request.
//!
//! A scope only makes the deadline visible; it does not cancel anything
//! (`deadline.run(scope(deadline, fut))` does both). It is a tokio
//! task-local: it follows the future into every `.await`, but not into a
//! `tokio::spawn`ed task, which must enter `scope(current…, fut)` itself if it
//! works for the same request. Scopes nest, and an inner scope can only
//! shorten the time: its deadline is the earlier of its own and the outer
//! one's.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

/// How far ahead [`Deadline::after`] puts a deadline whose duration does not
/// fit in an `Instant`: about 30 years, the same "never" tokio uses.
const FAR_FUTURE: Duration = Duration::from_secs(86_400 * 365 * 30);

/// The instant by which some work must be done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Deadline(Instant);

impl Deadline {
    /// A deadline at `instant`.
    pub fn at(instant: Instant) -> Self {
        Self(instant)
    }

    /// A deadline `budget` from now. A budget too large for the clock (such as
    /// `Duration::MAX`) means "about 30 years", not a panic.
    pub fn after(budget: Duration) -> Self {
        let now = Instant::now();
        Self(now.checked_add(budget).unwrap_or(now + FAR_FUTURE))
    }

    /// The instant itself.
    pub fn instant(&self) -> Instant {
        self.0
    }

    /// Time left before the deadline; zero once it has passed.
    pub fn remaining(&self) -> Duration {
        self.0.saturating_duration_since(Instant::now())
    }

    /// Whether the deadline has been reached (at the instant itself it has).
    pub fn is_expired(&self) -> bool {
        Instant::now() >= self.0
    }

    /// The earlier of two deadlines: an inward call with a budget of its own
    /// takes `request.min(Deadline::after(budget))`.
    #[must_use]
    pub fn min(self, other: Self) -> Self {
        Ord::min(self, other)
    }

    /// A deadline `max` from now, or the current [`scope`]'s if that is
    /// earlier: the budget of an inward call with a timeout of its own.
    pub fn budget(max: Duration) -> Self {
        let own = Self::after(max);
        current().map_or(own, |scope| scope.min(own))
    }

    /// Runs `fut` until it finishes or the deadline passes, whichever is first.
    /// On expiry `fut` is dropped (cancelled) and [`Elapsed`] returned; an
    /// already-expired deadline still polls `fut` once, so work that is ready
    /// at once is not thrown away. Takes the deadline by value, so the future
    /// borrows nothing and can be spawned.
    pub async fn run<F: Future>(self, fut: F) -> Result<F::Output, Elapsed> {
        tokio::time::timeout_at(self.0, fut)
            .await
            .map_err(|_| Elapsed)
    }
}

tokio::task_local! {
    /// The deadline of the request the current task works for.
    static SCOPE: Deadline;
}

/// Runs `fut` with `deadline` as the [`current`] deadline (or the enclosing
/// scope's, if that is earlier). Does not enforce it: see the module
/// documentation.
pub async fn scope<F: Future>(deadline: Deadline, fut: F) -> F::Output {
    let deadline = current().map_or(deadline, |outer| outer.min(deadline));
    SCOPE.scope(deadline, fut).await
}

/// The deadline of the enclosing [`scope`], if the current task is in one.
pub fn current() -> Option<Deadline> {
    SCOPE.try_with(|deadline| *deadline).ok()
}

/// The deadline passed before the work finished.
///
/// Our own type rather than tokio's `Elapsed`, which cannot be built outside
/// tokio: fakes and classifiers in tests need to make one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("deadline elapsed")]
pub struct Elapsed;

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::{advance, sleep};

    #[tokio::test(start_paused = true)]
    async fn remaining_time_shrinks_as_the_clock_moves() {
        let deadline = Deadline::after(Duration::from_secs(5));
        assert_eq!(deadline.remaining(), Duration::from_secs(5));

        advance(Duration::from_secs(2)).await;
        assert_eq!(deadline.remaining(), Duration::from_secs(3));
        assert!(!deadline.is_expired());

        advance(Duration::from_secs(3)).await;
        assert_eq!(deadline.remaining(), Duration::ZERO);
        assert!(deadline.is_expired(), "expired at the instant itself");

        advance(Duration::from_secs(1)).await;
        assert_eq!(deadline.remaining(), Duration::ZERO, "never negative");
    }

    #[tokio::test(start_paused = true)]
    async fn the_earlier_of_two_deadlines_wins() {
        let request = Deadline::after(Duration::from_secs(5));
        let call = Deadline::after(Duration::from_secs(2));
        assert_eq!(request.min(call), call);
        assert_eq!(call.min(request), call);
    }

    #[tokio::test(start_paused = true)]
    async fn a_budget_too_large_for_the_clock_means_far_away() {
        let deadline = Deadline::after(Duration::MAX);
        assert!(deadline.remaining() >= Duration::from_secs(86_400 * 365));
    }

    #[tokio::test(start_paused = true)]
    async fn run_times_out_at_the_deadline_and_cancels_the_work() {
        let start = Instant::now();
        let deadline = Deadline::after(Duration::from_millis(300));

        let result = deadline
            .run(async {
                sleep(Duration::from_secs(10)).await;
                "done"
            })
            .await;

        assert_eq!(result, Err(Elapsed));
        assert_eq!(Instant::now() - start, Duration::from_millis(300));
    }

    #[tokio::test(start_paused = true)]
    async fn run_returns_the_output_of_work_that_finishes_in_time() {
        let deadline = Deadline::after(Duration::from_millis(300));

        let result = deadline
            .run(async {
                sleep(Duration::from_millis(299)).await;
                "done"
            })
            .await;

        assert_eq!(result, Ok("done"));
    }

    #[tokio::test(start_paused = true)]
    async fn run_past_the_deadline_still_takes_work_that_is_ready_at_once() {
        let deadline = Deadline::after(Duration::from_millis(1));
        advance(Duration::from_millis(5)).await;

        assert_eq!(deadline.run(async { 7 }).await, Ok(7));
        assert_eq!(
            deadline.run(sleep(Duration::from_millis(1))).await,
            Err(Elapsed)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn outside_a_scope_there_is_no_current_deadline_and_a_budget_is_its_own() {
        assert_eq!(current(), None);
        let budget = Deadline::budget(Duration::from_secs(2));
        assert_eq!(budget.remaining(), Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn a_scope_makes_its_deadline_current_in_every_await_inside_it() {
        let request = Deadline::after(Duration::from_secs(3));

        async fn inner() -> Option<Deadline> {
            sleep(Duration::from_millis(10)).await;
            current()
        }

        assert_eq!(scope(request, inner()).await, Some(request));
        assert_eq!(current(), None, "gone once the scope ends");
    }

    #[tokio::test(start_paused = true)]
    async fn a_budget_inside_a_scope_is_the_tighter_of_the_two() {
        let request = Deadline::after(Duration::from_secs(3));
        scope(request, async {
            assert_eq!(Deadline::budget(Duration::from_secs(10)), request);
            let short = Deadline::budget(Duration::from_secs(1));
            assert_eq!(short.remaining(), Duration::from_secs(1));

            advance(Duration::from_millis(2500)).await;
            assert_eq!(
                Deadline::budget(Duration::from_secs(1)).remaining(),
                Duration::from_millis(500),
                "the request's time shrinks as it moves inward"
            );
        })
        .await;
    }

    #[tokio::test(start_paused = true)]
    async fn an_inner_scope_can_shorten_the_deadline_but_never_extend_it() {
        let request = Deadline::after(Duration::from_secs(3));
        let later = Deadline::after(Duration::from_secs(30));
        let sooner = Deadline::after(Duration::from_secs(1));

        let (extended, shortened) = scope(request, async {
            (
                scope(later, async { current() }).await,
                scope(sooner, async { current() }).await,
            )
        })
        .await;

        assert_eq!(extended, Some(request));
        assert_eq!(shortened, Some(sooner));
    }

    #[tokio::test(start_paused = true)]
    async fn a_spawned_task_does_not_inherit_the_scope() {
        let request = Deadline::after(Duration::from_secs(3));
        let spawned = scope(request, async { tokio::spawn(async { current() }).await })
            .await
            .unwrap();
        assert_eq!(spawned, None);
    }
}
