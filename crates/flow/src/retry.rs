//! Retry with exponential backoff and full jitter.
//!
//! The delay after attempt `n` (counting from 0) is drawn uniformly from
//! `[0, min(cap, base·2ⁿ)]`: the "full jitter" of the AWS Architecture Blog's
//! *Exponential Backoff And Jitter*. Spreading each wave of retries over the
//! whole interval, rather than around its end, is what keeps a crowd of clients
//! that failed together from coming back together.
//!
//! [`retry`] is the async loop for calls made while a request waits (payment
//! provider calls). [`RetryPolicy::backoff`] is the same delay without the
//! loop, for workers that persist their schedule (a webhook delivery's
//! `next_attempt_at`) and retry from a queue.
//!
//! Errors decide for themselves whether they are worth another try: the
//! caller's `classify` answers [`Retry::Retryable`], [`Retry::Final`], or
//! [`Retry::After`] when the other side said how long to wait (a `Retry-After`
//! header, or a circuit breaker's [`Rejected::retry_after`](crate::Rejected)).

use std::future::Future;
use std::time::Duration;

use crate::deadline::Deadline;

/// The generator `backoff` draws from: fastrand's wyrand, fast and unbiased,
/// not cryptographic (jitter needs no secrecy). `Rng::new()` seeds one from a
/// thread-local generator; `Rng::with_seed` makes tests repeatable.
pub use fastrand::Rng;

/// How often and how patiently to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included; 0 is taken as 1 (no retry).
    pub max_attempts: u32,
    /// The ceiling of the first delay; each later ceiling doubles it.
    pub base: Duration,
    /// No ceiling goes above this.
    pub cap: Duration,
}

impl Default for RetryPolicy {
    /// Three attempts, the first delay at most 100 ms, no delay above 5 s.
    fn default() -> Self {
        Self {
            max_attempts: 3,
            base: Duration::from_millis(100),
            cap: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// The longest delay after attempt `attempt` (counting from 0) failed:
    /// `min(cap, base·2^attempt)`, without overflow for any `attempt`.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        if self.base.is_zero() {
            return Duration::ZERO;
        }
        let cap = self.cap.as_nanos();
        let nanos = 1u128
            .checked_shl(attempt)
            .and_then(|factor| self.base.as_nanos().checked_mul(factor))
            .map_or(cap, |nanos| nanos.min(cap));
        from_nanos(nanos)
    }

    /// The delay after attempt `attempt` (counting from 0) failed, drawn
    /// uniformly from `[0, ceiling(attempt)]`.
    pub fn backoff(&self, attempt: u32, rng: &mut Rng) -> Duration {
        from_nanos(rng.u128(0..=self.ceiling(attempt).as_nanos()))
    }
}

/// What an error says about trying again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// A transient failure: try again after the jittered backoff.
    Retryable,
    /// Try again after exactly this long, instead of the jittered backoff:
    /// the other side said when (still bounded by the deadline).
    After(Duration),
    /// Trying again will not help (a business answer, a bad request).
    Final,
}

/// Runs `op` until it succeeds, fails with an error `classify` calls
/// [`Retry::Final`], has made `policy.max_attempts` attempts, or the next delay
/// would end less than a timer tick (1 ms) before the deadline; the last error
/// is returned as it is.
///
/// `op` receives the attempt's number, counting from 0. The deadline only
/// bounds the sleeps: it never cuts an attempt short, so an `op` that can take
/// long should run its work under `deadline.run(..)` itself, and classify the
/// timeout. The first attempt is always made.
pub async fn retry<T, E, F, Fut>(
    policy: RetryPolicy,
    deadline: Option<Deadline>,
    classify: impl Fn(&E) -> Retry,
    op: F,
) -> Result<T, E>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    retry_with(policy, deadline, classify, op, Rng::new()).await
}

/// [`retry`] with the generator given, so tests can seed it.
pub(crate) async fn retry_with<T, E, F, Fut>(
    policy: RetryPolicy,
    deadline: Option<Deadline>,
    classify: impl Fn(&E) -> Retry,
    mut op: F,
    mut rng: Rng,
) -> Result<T, E>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let max_attempts = policy.max_attempts.max(1);
    let mut attempt = 0;
    loop {
        let err = match op(attempt).await {
            Ok(value) => return Ok(value),
            Err(err) => err,
        };
        let delay = match classify(&err) {
            Retry::Final => return Err(err),
            _ if attempt + 1 >= max_attempts => return Err(err),
            Retry::Retryable => policy.backoff(attempt, &mut rng),
            Retry::After(delay) => delay,
        };
        // tokio wakes sleepers on millisecond ticks, rounding up, so a sleep
        // may end up to a tick late: keep that margin before the deadline.
        // (Waking exactly at the deadline would leave the attempt no time.)
        if deadline.is_some_and(|deadline| delay.saturating_add(TIMER_TICK) > deadline.remaining())
        {
            tracing::debug!(
                attempt,
                delay_ms = millis(delay),
                "not retrying: the next attempt would start past the deadline"
            );
            return Err(err);
        }
        tracing::debug!(
            attempt,
            delay_ms = millis(delay),
            "retrying after a transient error"
        );
        tokio::time::sleep(delay).await;
        attempt += 1;
    }
}

/// The resolution of tokio's timer: a sleep ends on the first tick at or
/// after its deadline.
const TIMER_TICK: Duration = Duration::from_millis(1);

/// A duration from nanoseconds, saturating at `Duration::MAX`.
fn from_nanos(nanos: u128) -> Duration {
    const PER_SEC: u128 = 1_000_000_000;
    match u64::try_from(nanos / PER_SEC) {
        // The remainder is below 10⁹, so it fits.
        Ok(secs) => Duration::new(secs, (nanos % PER_SEC) as u32),
        Err(_) => Duration::MAX,
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use proptest::prelude::*;
    use tokio::time::Instant;

    use super::Rng;
    use super::*;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Failure {
        Transient,
        Declined,
        SlowDown(Duration),
    }

    fn classify(failure: &Failure) -> Retry {
        match failure {
            Failure::Transient => Retry::Retryable,
            Failure::Declined => Retry::Final,
            Failure::SlowDown(delay) => Retry::After(*delay),
        }
    }

    fn policy(max_attempts: u32) -> RetryPolicy {
        RetryPolicy {
            max_attempts,
            base: Duration::from_millis(100),
            cap: Duration::from_secs(1),
        }
    }

    /// Runs `retry` over an operation that answers from `script` in turn (then
    /// keeps failing transiently), recording the instant of each attempt.
    /// Retrying for a day of (paused) time fails the test instead of hanging it.
    async fn run_script(
        policy: RetryPolicy,
        deadline: Option<Deadline>,
        script: &[Result<&'static str, Failure>],
    ) -> (Result<&'static str, Failure>, Vec<Instant>) {
        let attempts = Mutex::new(Vec::new());
        let retrying = retry(policy, deadline, classify, |attempt| {
            let mut seen = attempts.lock().unwrap();
            assert_eq!(attempt as usize, seen.len(), "attempts numbered from 0");
            seen.push(Instant::now());
            let answer = script
                .get(attempt as usize)
                .copied()
                .unwrap_or(Err(Failure::Transient));
            async move { answer }
        });
        let result = tokio::time::timeout(Duration::from_secs(86_400), retrying)
            .await
            .expect("retrying never ended");
        (result, attempts.into_inner().unwrap())
    }

    #[tokio::test(start_paused = true)]
    async fn transient_errors_are_retried_until_the_call_succeeds() {
        let script = [Err(Failure::Transient), Err(Failure::Transient), Ok("paid")];
        let (result, attempts) = run_script(policy(5), None, &script).await;
        assert_eq!(result, Ok("paid"));
        assert_eq!(attempts.len(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_final_error_is_returned_at_once_without_retrying() {
        let script = [Err(Failure::Transient), Err(Failure::Declined), Ok("paid")];
        let (result, attempts) = run_script(policy(5), None, &script).await;
        assert_eq!(result, Err(Failure::Declined));
        assert_eq!(attempts.len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn retrying_gives_up_after_max_attempts_with_the_last_error() {
        let (result, attempts) = run_script(policy(4), None, &[]).await;
        assert_eq!(result, Err(Failure::Transient));
        assert_eq!(attempts.len(), 4);

        let (_, attempts) = run_script(policy(0), None, &[]).await;
        assert_eq!(attempts.len(), 1, "zero attempts still makes the first");
    }

    #[tokio::test(start_paused = true)]
    async fn a_server_suggested_delay_replaces_the_jittered_one() {
        let wait = Duration::from_secs(5); // far above the policy's cap
        let script = [Err(Failure::SlowDown(wait)), Ok("paid")];
        let (result, attempts) = run_script(policy(3), None, &script).await;
        assert_eq!(result, Ok("paid"));
        assert_eq!(attempts[1] - attempts[0], wait);
    }

    #[tokio::test(start_paused = true)]
    async fn retries_stop_before_a_sleep_would_reach_the_deadline() {
        let start = Instant::now();
        let deadline = Deadline::after(Duration::from_millis(1000));
        let slow_down = Err(Failure::SlowDown(Duration::from_millis(300)));

        let (result, attempts) = run_script(policy(100), Some(deadline), &[slow_down; 100]).await;

        // Attempts at 0, 300, 600 and 900 ms; a fifth would start at 1200 ms.
        assert_eq!(result, slow_down);
        assert_eq!(attempts.len(), 4);
        assert_eq!(Instant::now() - start, Duration::from_millis(900));
    }

    #[tokio::test(start_paused = true)]
    async fn a_suggested_delay_beyond_the_deadline_ends_the_retries_without_sleeping() {
        let start = Instant::now();
        let deadline = Deadline::after(Duration::from_secs(3));
        let script = [Err(Failure::SlowDown(Duration::from_secs(5))), Ok("paid")];

        let (result, attempts) = run_script(policy(3), Some(deadline), &script).await;

        assert_eq!(result, Err(Failure::SlowDown(Duration::from_secs(5))));
        assert_eq!(attempts.len(), 1);
        assert_eq!(Instant::now(), start);
    }

    #[tokio::test(start_paused = true)]
    async fn a_sleep_shorter_than_a_timer_tick_is_not_risked_just_before_the_deadline() {
        // tokio rounds sleeps up to its next millisecond tick, so a 1 ns sleep
        // with 2 ns to go would wake a millisecond past the deadline.
        let start = Instant::now();
        let deadline = Deadline::after(Duration::from_nanos(2));
        let tiny = RetryPolicy {
            max_attempts: 4,
            base: Duration::from_nanos(1),
            cap: Duration::from_nanos(1),
        };
        let (result, attempts) = run_script(tiny, Some(deadline), &[]).await;
        assert_eq!(result, Err(Failure::Transient));
        assert_eq!(attempts.len(), 1);
        assert_eq!(Instant::now(), start);
    }

    #[test]
    fn a_retry_loop_can_be_spawned() {
        fn send<T: Send + 'static>(_: &T) {}
        send(&retry(RetryPolicy::default(), None, classify, |_| async {
            Ok::<_, Failure>(())
        }));
    }

    #[test]
    fn the_ceiling_doubles_from_base_up_to_the_cap() {
        let policy = policy(10);
        let ceilings: Vec<_> = (0..6).map(|n| policy.ceiling(n).as_millis()).collect();
        assert_eq!(ceilings, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(policy.ceiling(u32::MAX), policy.cap);

        let no_wait = RetryPolicy {
            base: Duration::ZERO,
            ..policy
        };
        assert_eq!(no_wait.ceiling(u32::MAX), Duration::ZERO);
    }

    #[test]
    fn jitter_spreads_delays_over_the_whole_interval() {
        // Full jitter, not "equal" jitter: the lower half of the interval is
        // used too.
        let policy = policy(10);
        let mut rng = Rng::with_seed(7);
        let delays: Vec<_> = (0..200).map(|_| policy.backoff(3, &mut rng)).collect();
        assert!(delays.iter().any(|d| *d < Duration::from_millis(200)));
        assert!(delays.iter().any(|d| *d > Duration::from_millis(600)));
    }

    /// Durations up to `max_ms`, zero often (an edge worth hitting).
    fn durations(max_ms: u64) -> impl Strategy<Value = Duration> {
        prop_oneof![
            1 => Just(Duration::ZERO),
            9 => (0..=max_ms * 1_000_000).prop_map(Duration::from_nanos),
        ]
    }

    proptest! {
        #[test]
        fn every_delay_is_within_zero_and_the_capped_exponential(
            base in durations(10_000),
            cap in durations(600_000),
            attempt in 0u32..200,
            seed: u64,
        ) {
            let policy = RetryPolicy { max_attempts: 10, base, cap };
            let exponential = base.as_nanos().saturating_mul(1u128 << attempt.min(100));
            let ceiling = exponential.min(cap.as_nanos());
            prop_assert_eq!(policy.ceiling(attempt).as_nanos(), ceiling);

            let mut rng = Rng::with_seed(seed);
            for _ in 0..20 {
                prop_assert!(policy.backoff(attempt, &mut rng).as_nanos() <= ceiling);
            }
        }

        #[test]
        fn the_sleeps_of_a_retry_loop_never_pass_its_deadline(
            base in durations(1_000),
            cap in durations(10_000),
            max_attempts in 0u32..20,
            budget in durations(20_000),
            seed: u64,
        ) {
            let policy = RetryPolicy { max_attempts, base, cap };
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .start_paused(true)
                .build()
                .unwrap();
            let (start, attempts) = runtime.block_on(async {
                let start = Instant::now();
                let deadline = Deadline::after(budget);
                let attempts = Mutex::new(Vec::new());
                let result: Result<(), Failure> = retry_with(
                    policy,
                    Some(deadline),
                    classify,
                    |_| {
                        let mut attempts = attempts.lock().unwrap();
                        attempts.push(Instant::now());
                        // Fail rather than hang if retrying never ends.
                        assert!(attempts.len() <= max_attempts.max(1) as usize, "too many attempts");
                        async { Err(Failure::Transient) }
                    },
                    Rng::with_seed(seed),
                )
                .await;
                assert_eq!(result, Err(Failure::Transient));
                (start, attempts.into_inner().unwrap())
            });

            // The operation takes no time, so the last attempt's start is the
            // sum of the sleeps.
            let slept = attempts.last().map_or(Duration::ZERO, |last| *last - start);
            prop_assert!(slept <= budget);
            prop_assert!(attempts.len() <= max_attempts.max(1) as usize);
            // Each sleep is the drawn delay rounded up to tokio's next tick.
            for (n, pair) in attempts.windows(2).enumerate() {
                prop_assert!(pair[1] - pair[0] <= policy.ceiling(n as u32) + TIMER_TICK);
            }
        }
    }
}
