//! The limiters' tests: behaviour through [`KeyedLimiter`] on paused tokio
//! time, and properties of the pure [`rules`] on random arrivals.

use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use tokio::time::advance;

use super::rules::{FixedWindow, Gcra, Rule, SlidingWindow};
use super::*;
use crate::testing::{TestRecorder, recorded};

const MS: Duration = Duration::from_millis(1);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn allow(remaining: u32, reset: Duration) -> LimitDecision {
    LimitDecision::Allow { remaining, reset }
}

fn deny(retry_after: Duration) -> LimitDecision {
    LimitDecision::Deny {
        retry_after,
        reset: retry_after,
    }
}

fn limiter(algorithm: Algorithm, quota: Quota) -> (KeyedLimiter<&'static str>, Arc<TestRecorder>) {
    recorded(|| KeyedLimiter::new("per-user", algorithm, quota))
}

fn decisions(
    limiter: &KeyedLimiter<&'static str>,
    key: &'static str,
    n: usize,
) -> Vec<LimitDecision> {
    (0..n).map(|_| limiter.check(&key)).collect()
}

// ---- GCRA ----------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn gcra_admits_a_full_burst_at_once_then_one_request_per_interval() {
    // 10 a second (one per 100 ms), 3 at once.
    let (limiter, _) = limiter(Algorithm::Gcra, Quota::per_second(10).with_burst(3));

    assert_eq!(
        decisions(&limiter, "ada", 4),
        [
            allow(2, ms(100)),
            allow(1, ms(100)),
            allow(0, ms(100)),
            deny(ms(100)),
        ]
    );

    advance(ms(30)).await;
    assert_eq!(limiter.check(&"ada"), deny(ms(70)), "retry_after shrinks");
    advance(ms(70)).await;
    assert_eq!(limiter.check(&"ada"), allow(0, ms(100)));
    assert_eq!(limiter.check(&"ada"), deny(ms(100)));
}

#[tokio::test(start_paused = true)]
async fn gcra_refills_the_bucket_after_a_quiet_spell_but_never_beyond_the_burst() {
    let (limiter, _) = limiter(Algorithm::Gcra, Quota::per_second(10).with_burst(3));
    decisions(&limiter, "ada", 3);

    advance(ms(150)).await;
    // One interval and a half: one request back, the next in 50 ms.
    assert_eq!(limiter.check(&"ada"), allow(0, ms(50)));

    advance(Duration::from_secs(60)).await;
    let after_a_minute = decisions(&limiter, "ada", 4);
    assert_eq!(after_a_minute[0], allow(2, ms(100)));
    assert_eq!(
        after_a_minute[3],
        deny(ms(100)),
        "a full bucket is 3, not 600"
    );
}

#[tokio::test(start_paused = true)]
async fn remaining_counts_what_is_left_and_reset_when_more_comes() {
    // 1 per 100 ms, 5 at once. Two requests, and 50 ms later a third: two
    // more could go at once, and a third more once 100 ms have passed.
    let (limiter, _) = limiter(Algorithm::Gcra, Quota::per_second(10).with_burst(5));
    decisions(&limiter, "ada", 2);
    advance(ms(50)).await;
    assert_eq!(limiter.check(&"ada"), allow(2, ms(50)));
}

#[tokio::test(start_paused = true)]
async fn keys_are_limited_independently() {
    for algorithm in all_algorithms(Duration::ZERO) {
        let (limiter, _) = limiter(algorithm, Quota::per_second(2));
        let (untouched, _) = limiter_named("fresh", algorithm, Quota::per_second(2));
        assert!(
            decisions(&limiter, "ada", 2)
                .iter()
                .all(LimitDecision::is_admitted)
        );
        assert!(!limiter.check(&"ada").is_admitted(), "{algorithm:?}");
        assert_eq!(
            limiter.check(&"bob"),
            untouched.check(&"bob"),
            "{algorithm:?}: bob is decided as if ada had never come"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn thousands_of_keys_each_get_their_own_quota() {
    let limiter: KeyedLimiter<u64> = KeyedLimiter::new("ip", Algorithm::Gcra, Quota::per_minute(3));
    for round in 0..4 {
        for key in 0..5_000u64 {
            let admitted = limiter.check(&key).is_admitted();
            assert_eq!(admitted, round < 3, "key {key}, request {round}");
        }
    }
    assert_eq!(limiter.len(), 5_000);
}

fn limiter_named(
    name: &str,
    algorithm: Algorithm,
    quota: Quota,
) -> (KeyedLimiter<&'static str>, Arc<TestRecorder>) {
    recorded(|| KeyedLimiter::new(name, algorithm, quota))
}

fn all_algorithms(max_wait: Duration) -> [Algorithm; 4] {
    [
        Algorithm::Gcra,
        Algorithm::LeakyBucket { max_wait },
        Algorithm::FixedWindow,
        Algorithm::SlidingWindow,
    ]
}

// ---- leaky bucket ---------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn the_leaky_bucket_queues_requests_one_interval_apart() {
    let queue = Algorithm::LeakyBucket { max_wait: ms(300) };
    let (limiter, recorder) = limiter(queue, Quota::per_second(10).with_burst(1));

    assert_eq!(
        decisions(&limiter, "ada", 5),
        [
            allow(0, ms(100)),
            LimitDecision::Wait {
                delay: ms(100),
                reset: ms(200)
            },
            LimitDecision::Wait {
                delay: ms(200),
                reset: ms(300)
            },
            LimitDecision::Wait {
                delay: ms(300),
                reset: ms(400)
            },
            // A fourth in the queue would wait 400 ms: refused, and taken
            // again once the wait is back to 300 ms.
            LimitDecision::Deny {
                retry_after: ms(100),
                reset: ms(400)
            },
        ]
    );
    assert_eq!(
        recorder.read("stampede_ratelimit_decisions_total{limiter=per-user,decision=wait}"),
        3
    );

    advance(ms(100)).await;
    assert_eq!(
        limiter.check(&"ada"),
        LimitDecision::Wait {
            delay: ms(300),
            reset: ms(400)
        }
    );
}

#[tokio::test(start_paused = true)]
async fn requests_that_sleep_their_wait_start_exactly_one_interval_apart() {
    let queue = Algorithm::LeakyBucket {
        max_wait: Duration::from_secs(5),
    };
    let (limiter, _) = limiter(queue, Quota::per_second(4).with_burst(1));
    let start = tokio::time::Instant::now();

    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let limiter = limiter.clone();
            tokio::spawn(async move {
                match limiter.check(&"sale-42") {
                    LimitDecision::Allow { .. } => {}
                    LimitDecision::Wait { delay, .. } => tokio::time::sleep(delay).await,
                    LimitDecision::Deny { .. } => panic!("the queue has room"),
                }
                tokio::time::Instant::now() - start
            })
        })
        .collect();
    let mut started = Vec::new();
    for task in tasks {
        started.push(task.await.unwrap());
    }
    started.sort();

    let expected: Vec<_> = (0..8).map(|n| ms(250 * n)).collect();
    assert_eq!(started, expected);
}

#[tokio::test(start_paused = true)]
async fn a_leaky_bucket_with_a_burst_lets_that_many_through_before_queueing() {
    let queue = Algorithm::LeakyBucket { max_wait: ms(500) };
    let (limiter, _) = limiter(queue, Quota::per_second(10).with_burst(3));
    let first = decisions(&limiter, "ada", 4);
    assert!(matches!(
        first[2],
        LimitDecision::Allow { remaining: 0, .. }
    ));
    assert_eq!(
        first[3],
        LimitDecision::Wait {
            delay: ms(100),
            reset: ms(200)
        }
    );
}

// ---- windows --------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn a_fixed_window_counts_down_and_refuses_until_it_ends() {
    let (limiter, _) = limiter(Algorithm::FixedWindow, Quota::per_second(3));

    assert_eq!(limiter.check(&"ada"), allow(2, ms(1000)));
    advance(ms(400)).await;
    assert_eq!(limiter.check(&"ada"), allow(1, ms(600)));
    assert_eq!(limiter.check(&"ada"), allow(0, ms(600)));
    assert_eq!(limiter.check(&"ada"), deny(ms(600)));

    advance(ms(600)).await;
    assert_eq!(limiter.check(&"ada"), allow(2, ms(1000)), "a new window");
}

#[tokio::test(start_paused = true)]
async fn a_fixed_window_admits_twice_its_burst_across_a_boundary_as_documented() {
    let (limiter, _) = limiter(Algorithm::FixedWindow, Quota::per_second(3));
    limiter.check(&"ada");
    advance(ms(999)).await;
    assert_eq!(decisions(&limiter, "ada", 2), [allow(1, MS), allow(0, MS)]);
    advance(MS).await;
    let next = decisions(&limiter, "ada", 4);
    assert!(next[..3].iter().all(LimitDecision::is_admitted));
    assert!(!next[3].is_admitted());
    // Five admitted within 1 ms: 2·burst + rate·L = 6 + 0.003 allows it.
}

#[tokio::test(start_paused = true)]
async fn a_burst_below_the_limit_makes_the_windows_shorter() {
    // 10 a second, 2 at once: windows of 200 ms holding 2.
    let (limiter, _) = limiter(Algorithm::FixedWindow, Quota::per_second(10).with_burst(2));
    assert_eq!(
        decisions(&limiter, "ada", 3),
        [allow(1, ms(200)), allow(0, ms(200)), deny(ms(200))]
    );
}

#[tokio::test(start_paused = true)]
async fn a_sliding_window_remembers_the_previous_window_where_a_fixed_one_forgets() {
    let (limiter, _) = limiter(Algorithm::SlidingWindow, Quota::per_second(10));
    assert!(
        decisions(&limiter, "ada", 10)
            .iter()
            .all(LimitDecision::is_admitted)
    );

    // A new window, but the whole previous one still weighs 10: refused
    // until a tenth of it has slid out.
    advance(ms(1000)).await;
    assert_eq!(limiter.check(&"ada"), deny(ms(100)));
    advance(ms(100)).await;
    assert_eq!(limiter.check(&"ada"), allow(0, ms(100)));
    assert_eq!(limiter.check(&"ada"), deny(ms(100)));

    advance(ms(450)).await;
    // 0.55 of the previous window is still inside: its 10 weigh 5.5, plus
    // 2 in this window leaves 3; a fourth fits once only 0.4 is left.
    assert_eq!(limiter.check(&"ada"), allow(3, ms(50)));
}

#[tokio::test(start_paused = true)]
async fn a_sliding_window_reports_remaining_and_reset_exactly_at_the_start() {
    let (limiter, _) = limiter(Algorithm::SlidingWindow, Quota::per_second(4));
    // Nothing slides out of the first window while it lasts: one more than
    // `remaining` fits only once enough of it has slid out of the next.
    assert_eq!(limiter.check(&"ada"), allow(3, ms(2000)));
    assert_eq!(limiter.check(&"ada"), allow(2, ms(1500)));
}

#[tokio::test(start_paused = true)]
async fn a_sliding_window_starts_afresh_after_a_whole_window_without_admissions() {
    let (limiter, _) = limiter(Algorithm::SlidingWindow, Quota::per_second(10));
    decisions(&limiter, "ada", 10);
    advance(ms(1000)).await;
    assert!(
        !limiter.check(&"ada").is_admitted(),
        "refused: nothing counted"
    );

    // 1.3 s after that window opened, nothing was admitted in the last
    // second: the key's windows start again from now, not from 2 s.
    advance(ms(1300)).await;
    assert_eq!(limiter.check(&"ada"), allow(9, ms(2000)));
}

// ---- housekeeping -----------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn idle_keys_are_purged_and_active_ones_kept() {
    for algorithm in all_algorithms(Duration::from_secs(1)) {
        let (limiter, recorder) = limiter(algorithm, Quota::per_second(10));
        let users: Vec<&'static str> = vec!["ada", "bob", "cy", "dee", "eve"];
        for user in &users {
            limiter.check(user);
        }
        assert_eq!(limiter.len(), 5);
        assert_eq!(limiter.purge_idle(), 0, "{algorithm:?}: all just seen");

        // Long enough for every algorithm's state to be back to fresh
        // (a sliding window remembers for two windows); ada stays busy.
        for _ in 0..21 {
            advance(ms(100)).await;
            limiter.check(&"ada");
        }
        assert_eq!(limiter.purge_idle(), 4, "{algorithm:?}");
        assert_eq!(limiter.len(), 1);
        assert_eq!(
            recorder.gauge("stampede_ratelimit_keys{limiter=per-user}"),
            1.0
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_purge_keeps_a_key_whose_state_still_matters() {
    let (limiter, _) = limiter(Algorithm::Gcra, Quota::per_second(1).with_burst(5));
    decisions(&limiter, "ada", 5);
    advance(ms(4999)).await;
    assert_eq!(limiter.purge_idle(), 0, "the bucket is not full yet");
    advance(MS).await;
    assert_eq!(limiter.purge_idle(), 1);
}

#[tokio::test(start_paused = true)]
async fn decisions_are_counted_by_kind() {
    let (limiter, recorder) = limiter(Algorithm::Gcra, Quota::per_second(2));
    decisions(&limiter, "ada", 5);
    let read = |decision: &str| {
        recorder.read(&format!(
            "stampede_ratelimit_decisions_total{{limiter=per-user,decision={decision}}}"
        ))
    };
    assert_eq!((read("allow"), read("wait"), read("deny")), (2, 0, 3));
}

#[test]
fn validate_names_the_first_field_out_of_range_and_new_raises_zeros() {
    assert_eq!(Quota::per_second(5).validate(), Ok(()));
    let zero = Quota {
        limit: 0,
        period: Duration::ZERO,
        burst: 0,
    };
    assert_eq!(
        zero.validate().unwrap_err().to_string(),
        "rate limit quota limit must be at least 1"
    );
    assert_eq!(
        Quota::per_second(1)
            .with_burst(0)
            .validate()
            .unwrap_err()
            .field,
        "burst"
    );
    let limiter: KeyedLimiter<()> = KeyedLimiter::new("zero", Algorithm::Gcra, zero);
    assert_eq!(
        limiter.quota(),
        Quota {
            limit: 1,
            period: Duration::from_nanos(1),
            burst: 1
        }
    );
}

#[test]
fn limiters_can_be_shared_between_threads() {
    fn send_sync<T: Send + Sync + Clone + 'static>(_: &T) {}
    send_sync(&KeyedLimiter::<std::net::IpAddr>::new(
        "ip",
        Algorithm::Gcra,
        Quota::per_second(1),
    ));
    send_sync(&KeyedLimiter::<String>::new(
        "user",
        Algorithm::SlidingWindow,
        Quota::per_second(1),
    ));
}

// ---- concurrency ------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn checks_from_many_tasks_at_once_never_admit_more_than_the_quota() {
    // 100 per hour: while the test runs (well under 36 s) nothing refills,
    // so exactly the burst (and, for the leaky bucket, the 5 requests its
    // queue holds) may be admitted per key, however the checks interleave.
    const TASKS: usize = 16;
    const CHECKS: usize = 2_000;
    let quota = Quota::new(100, Duration::from_secs(3600));
    let queue = Duration::from_secs(36 * 5);
    for algorithm in all_algorithms(queue) {
        let limiter: KeyedLimiter<u32> = KeyedLimiter::new("shared", algorithm, quota);
        let tasks: Vec<_> = (0..TASKS)
            .map(|task| {
                let limiter = limiter.clone();
                tokio::spawn(async move {
                    let mut admitted = [0u32; 3];
                    for n in 0..CHECKS {
                        // Three keys, hit in a different order by each task.
                        let key = ((n + task) % 3) as u32;
                        if limiter.check(&key).is_admitted() {
                            admitted[key as usize] += 1;
                        }
                        if n % 64 == 0 {
                            tokio::task::yield_now().await;
                        }
                    }
                    admitted
                })
            })
            .collect();
        let mut admitted = [0u32; 3];
        for task in tasks {
            for (total, count) in admitted.iter_mut().zip(task.await.unwrap()) {
                *total += count;
            }
        }
        let expected = match algorithm {
            Algorithm::LeakyBucket { .. } => 105,
            _ => 100,
        };
        assert_eq!(admitted, [expected; 3], "{algorithm:?}");
    }
}

/// A start line for racing threads: all leave it at nearly the same instant
/// (spinning, where `std::sync::Barrier` wakes sleepers one by one).
struct StartLine {
    arrived: std::sync::atomic::AtomicUsize,
    threads: usize,
}

impl StartLine {
    fn new(threads: usize) -> Self {
        Self {
            arrived: Default::default(),
            threads,
        }
    }

    /// Waits for every thread's `round`-th arrival.
    fn wait(&self, round: usize) {
        use std::sync::atomic::Ordering::SeqCst;
        self.arrived.fetch_add(1, SeqCst);
        let mut spins = 0u32;
        while self.arrived.load(SeqCst) < (round + 1) * self.threads {
            spins += 1;
            // Yield early: on two cores shared with other test processes a
            // spinning thread can keep the one it waits for off the CPU.
            if spins.is_multiple_of(8) {
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
    }
}

/// Threads read the clock before taking a key's state, so a check may come
/// with a `now` earlier than the state another thread just wrote. Found by
/// the race test below: the windows subtracted and underflowed.
#[test]
fn a_check_from_slightly_in_the_past_counts_as_at_the_states_time() {
    use crate::limit::rules::{FixedWindow, Rule, SlidingWindow};
    let quota = Quota::new(2, Duration::from_secs(1));
    let fixed = FixedWindow::new(quota);
    let (state, _) = fixed.check(None, 1_000);
    let (state, late) = fixed.check(Some(state), 999);
    assert!(late.is_admitted());
    assert!(!fixed.check(Some(state), 998).1.is_admitted());
    let sliding = SlidingWindow::new(quota);
    let (state, _) = sliding.check(None, 1_000);
    let (state, late) = sliding.check(Some(state), 999);
    assert!(late.is_admitted());
    assert!(!sliding.check(Some(state), 998).1.is_admitted());
}

#[test]
fn threads_racing_on_one_key_never_admit_more_than_the_quota() {
    // As many threads as the machines have cores: more only queue for them.
    const THREADS: usize = 2;
    const KEYS: usize = 2_000;
    for algorithm in all_algorithms(Duration::ZERO) {
        // Every thread checks each fresh key at the same moment: exactly one
        // may be admitted, however the first insertion races.
        let once: KeyedLimiter<usize> =
            KeyedLimiter::new("race", algorithm, Quota::new(1, Duration::from_secs(3600)));
        // One hot key hammered from every thread: exactly its burst, however
        // the updates interleave (nothing refills for 36 s).
        let hot: KeyedLimiter<()> = KeyedLimiter::new(
            "hot",
            algorithm,
            Quota::new(100_000, Duration::from_secs(3600 * 1000)),
        );
        let start = StartLine::new(THREADS);
        let admitted: Vec<(Vec<bool>, usize)> = std::thread::scope(|scope| {
            let threads: Vec<_> = (0..THREADS)
                .map(|_| {
                    scope.spawn(|| {
                        let fresh: Vec<bool> = (0..KEYS)
                            .map(|key| {
                                start.wait(key);
                                once.check(&key).is_admitted()
                            })
                            .collect();
                        start.wait(KEYS);
                        let hot = (0..75_000).filter(|_| hot.check(&()).is_admitted()).count();
                        (fresh, hot)
                    })
                })
                .collect();
            threads.into_iter().map(|t| t.join().unwrap()).collect()
        });
        for key in 0..KEYS {
            let winners = admitted.iter().filter(|(fresh, _)| fresh[key]).count();
            assert_eq!(winners, 1, "{algorithm:?}: key {key}");
        }
        let hot: usize = admitted.iter().map(|(_, hot)| hot).sum();
        assert_eq!(hot, 100_000, "{algorithm:?}");
    }
}

// ---- properties of the rules ----------------------------------------------

/// One of the rules, chosen at random, with its quota.
#[derive(Debug, Clone, Copy)]
struct Case {
    quota: Quota,
    algorithm: Algorithm,
}

impl Case {
    /// The largest number of admissions any closed interval of length `len`
    /// may hold, as the module documentation promises. `starts` says whether
    /// admissions are counted when they start (after a leaky bucket's wait)
    /// or when they were decided.
    fn bound(&self, len: u64, starts: bool) -> u128 {
        let Quota {
            limit,
            period,
            burst,
        } = self.quota;
        let (limit, period, burst) = (u128::from(limit), period.as_nanos(), u128::from(burst));
        // ⌊L / T⌋ with T = period / limit, exactly.
        let intervals = |len: u128| len * limit / period;
        let len = u128::from(len);
        match self.algorithm {
            Algorithm::Gcra | Algorithm::SlidingWindow => burst + intervals(len),
            Algorithm::LeakyBucket { .. } if starts => burst + intervals(len),
            Algorithm::LeakyBucket { max_wait } => burst + intervals(len + max_wait.as_nanos()),
            Algorithm::FixedWindow => {
                // burst · (⌈L / W⌉ + 1) with W = period · burst / limit.
                let windows = (len * limit).div_ceil(period * burst);
                burst * (windows + 1)
            }
        }
    }
}

/// Small quotas over periods from a microsecond to two seconds: the
/// property tests' quotas, here and in `bounded`'s.
pub(super) fn quotas() -> impl Strategy<Value = Quota> {
    (1u32..=12, 1_000u64..=2_000_000_000, 1u32..=12).prop_map(|(limit, period, burst)| Quota {
        limit,
        period: Duration::from_nanos(period),
        burst,
    })
}

fn cases() -> impl Strategy<Value = Case> {
    let quota = quotas();
    let algorithm = prop_oneof![
        Just(Algorithm::Gcra),
        (0u64..=3_000_000_000).prop_map(|wait| Algorithm::LeakyBucket {
            max_wait: Duration::from_nanos(wait)
        }),
        Just(Algorithm::FixedWindow),
        Just(Algorithm::SlidingWindow),
    ];
    (quota, algorithm).prop_map(|(quota, algorithm)| Case { quota, algorithm })
}

/// When the next request comes: a gap in nanoseconds, or on (or a
/// nanosecond either side of) an instant the last decision or state names,
/// where an off-by-one would show.
#[derive(Debug, Clone, Copy)]
enum Gap {
    Nanos(u64),
    /// The last decision's `reset`.
    Reset(i8),
    /// The last decision's `retry_after` (its `reset` if it was no refusal).
    RetryAfter(i8),
    /// The first instant the key's state is idle.
    Idle(i8),
}

/// Bursts of simultaneous requests, gaps around the emission interval, long
/// pauses, and requests on the boundaries.
fn arrivals() -> impl Strategy<Value = Vec<Gap>> {
    let offset = -1i8..=1;
    let gap = prop_oneof![
        3 => Just(Gap::Nanos(0)),
        4 => (0u64..=200_000_000).prop_map(Gap::Nanos),
        2 => (0u64..=2_500_000_000).prop_map(Gap::Nanos),
        1 => Just(Gap::Nanos(1)),
        1 => offset.clone().prop_map(Gap::Reset),
        1 => offset.clone().prop_map(Gap::RetryAfter),
        1 => offset.prop_map(Gap::Idle),
    ];
    prop::collection::vec(gap, 1..160)
}

/// The first instant `state` is idle, found by bisection (idleness only
/// ever starts, it never stops).
fn idle_from<R: Rule>(rule: &R, state: &R::State, now: u64) -> u64 {
    if rule.is_idle(state, now) {
        return now;
    }
    let (mut busy, mut idle) = (now, now + (1 << 40));
    while idle - busy > 1 {
        let mid = busy + (idle - busy) / 2;
        if rule.is_idle(state, mid) {
            idle = mid;
        } else {
            busy = mid;
        }
    }
    idle
}

/// The instant of the next request, never before `now`.
fn next_instant<R: Rule>(
    rule: &R,
    gap: Gap,
    now: u64,
    last: Option<(R::State, LimitDecision)>,
) -> u64 {
    let nanos = |d: Duration| d.as_nanos() as u64;
    let at = |base: u64, offset: i8| base.saturating_add_signed(offset.into()).max(now);
    match (gap, last) {
        (Gap::Nanos(gap), _) => now + gap,
        (_, None) => now,
        (Gap::Reset(offset), Some((_, decision))) => at(now + nanos(decision.reset()), offset),
        (Gap::RetryAfter(offset), Some((_, decision))) => {
            let wait = match decision {
                LimitDecision::Deny { retry_after, .. } => retry_after,
                other => other.reset(),
            };
            at(now + nanos(wait), offset)
        }
        (Gap::Idle(offset), Some((state, _))) => at(idle_from(rule, &state, now), offset),
    }
}

/// Runs `rule` for one key over the arrivals and returns each decision with
/// the instant it was made and the key's state just before it.
fn run<R: Rule>(rule: &R, gaps: &[Gap]) -> Vec<(u64, Option<R::State>, LimitDecision)> {
    let mut last = None;
    let mut now = 0u64;
    let mut log = Vec::with_capacity(gaps.len());
    for gap in gaps {
        now = next_instant(rule, *gap, now, last);
        let state = last.map(|(state, _)| state);
        let (next, decision) = rule.check(state, now);
        log.push((now, state, decision));
        last = Some((next, decision));
    }
    log
}

/// Every closed interval between two admissions holds no more than the
/// bound.
fn assert_bound(case: &Case, mut times: Vec<u64>, starts: bool) -> Result<(), TestCaseError> {
    times.sort_unstable();
    for (i, first) in times.iter().enumerate() {
        for (j, last) in times.iter().enumerate().skip(i) {
            let count = (j - i + 1) as u128;
            let bound = case.bound(last - first, starts);
            prop_assert!(
                count <= bound,
                "{count} admitted within {} ns, bound {bound}",
                last - first
            );
        }
    }
    Ok(())
}

fn check_bounds<R: Rule>(rule: &R, case: &Case, gaps: &[Gap]) -> Result<(), TestCaseError> {
    let log = run(rule, gaps);
    let decided: Vec<u64> = log
        .iter()
        .filter(|(_, _, d)| d.is_admitted())
        .map(|(now, _, _)| *now)
        .collect();
    let started: Vec<u64> = log
        .iter()
        .filter_map(|(now, _, d)| match d {
            LimitDecision::Allow { .. } => Some(*now),
            LimitDecision::Wait { delay, .. } => Some(now + delay.as_nanos() as u64),
            LimitDecision::Deny { .. } => None,
        })
        .collect();
    if let Algorithm::LeakyBucket { max_wait } = case.algorithm {
        for (_, _, decision) in &log {
            if let LimitDecision::Wait { delay, .. } = decision {
                prop_assert!(*delay <= max_wait && !delay.is_zero());
            }
        }
    }
    assert_bound(case, decided, false)?;
    assert_bound(case, started, true)
}

/// Issues `n` requests at `at` on a copy of `state`; how many went through
/// at once.
fn immediate<R: Rule>(rule: &R, mut state: Option<R::State>, at: u64, n: u32) -> u32 {
    let mut allowed = 0;
    for _ in 0..n {
        let (next, decision) = rule.check(state, at);
        state = Some(next);
        allowed += u32::from(matches!(decision, LimitDecision::Allow { .. }));
    }
    allowed
}

/// What each decision says about the future is exactly what happens if no
/// other request comes: `remaining` more go through now and not one more;
/// `reset` is the first instant one more would; `retry_after` the first
/// instant a request is not refused.
fn check_promises<R: Rule>(rule: &R, gaps: &[Gap]) -> Result<(), TestCaseError> {
    for (now, before, decision) in run(rule, gaps) {
        let after = Some(rule.check(before, now).0);
        let nanos = |d: Duration| d.as_nanos() as u64;
        match decision {
            LimitDecision::Allow { remaining, reset } => {
                prop_assert_eq!(immediate(rule, after, now, remaining + 1), remaining);
                let reset = nanos(reset);
                prop_assert!(reset > 0);
                prop_assert_eq!(
                    immediate(rule, after, now + reset - 1, remaining + 1),
                    remaining,
                    "more than remaining before reset"
                );
                prop_assert_eq!(
                    immediate(rule, after, now + reset, remaining + 1),
                    remaining + 1,
                    "not one more at reset"
                );
            }
            LimitDecision::Wait { reset, .. } => {
                let reset = nanos(reset);
                prop_assert_eq!(immediate(rule, after, now + reset - 1, 1), 0);
                prop_assert_eq!(immediate(rule, after, now + reset, 1), 1);
            }
            LimitDecision::Deny { retry_after, reset } => {
                let retry_after = nanos(retry_after);
                prop_assert!(retry_after > 0);
                let early = rule.check(after, now + retry_after - 1).1;
                prop_assert!(!early.is_admitted(), "admitted before retry_after");
                let on_time = rule.check(after, now + retry_after).1;
                prop_assert!(on_time.is_admitted(), "refused at retry_after");
                let reset = nanos(reset);
                prop_assert_eq!(immediate(rule, after, now + reset - 1, 1), 0);
                prop_assert_eq!(immediate(rule, after, now + reset, 1), 1);
            }
        }
    }
    Ok(())
}

/// Forgetting a key whenever the rule calls it idle changes no decision.
fn check_purge_is_invisible<R: Rule>(
    rule: &R,
    gaps: &[Gap],
    purges: &[bool],
) -> Result<(), TestCaseError> {
    let kept = run(rule, gaps);
    let mut state: Option<R::State> = None;
    for (n, (now, _, decision)) in kept.into_iter().enumerate() {
        let purge = purges.get(n).copied().unwrap_or(true);
        if purge && state.is_some_and(|state| rule.is_idle(&state, now)) {
            state = None;
        }
        let (next, purged) = rule.check(state, now);
        prop_assert_eq!(purged, decision, "request {} decided differently", n);
        state = Some(next);
    }
    Ok(())
}

/// Runs `test` with the rule `case` describes.
macro_rules! with_rule {
    ($case:expr, |$rule:ident| $test:expr) => {
        match $case.algorithm {
            Algorithm::Gcra => {
                let $rule = Gcra::new($case.quota, Duration::ZERO);
                $test
            }
            Algorithm::LeakyBucket { max_wait } => {
                let $rule = Gcra::new($case.quota, max_wait);
                $test
            }
            Algorithm::FixedWindow => {
                let $rule = FixedWindow::new($case.quota);
                $test
            }
            Algorithm::SlidingWindow => {
                let $rule = SlidingWindow::new($case.quota);
                $test
            }
        }
    };
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn no_limiter_admits_more_than_its_documented_bound_in_any_interval(
        case in cases(),
        gaps in arrivals(),
    ) {
        with_rule!(case, |rule| check_bounds(&rule, &case, &gaps))?;
    }

    #[test]
    fn remaining_reset_and_retry_after_are_exact(case in cases(), gaps in arrivals()) {
        with_rule!(case, |rule| check_promises(&rule, &gaps))?;
    }

    #[test]
    fn purging_idle_keys_never_changes_a_decision(
        case in cases(),
        gaps in arrivals(),
        purges in prop::collection::vec(any::<bool>(), 0..160),
    ) {
        with_rule!(case, |rule| check_purge_is_invisible(&rule, &gaps, &purges))?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// The same bound end to end: a real limiter on paused tokio time, three
    /// keys interleaved, each key judged on its own.
    #[test]
    fn a_keyed_limiter_on_paused_time_keeps_each_keys_bound(
        case in cases(),
        arrivals in prop::collection::vec((0u64..=150_000_000, 0u8..3), 1..200),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        let admitted = runtime.block_on(async {
            let limiter = KeyedLimiter::new("p", case.algorithm, case.quota);
            let start = tokio::time::Instant::now();
            let mut admitted: [Vec<u64>; 3] = Default::default();
            for (gap, key) in &arrivals {
                advance(Duration::from_nanos(*gap)).await;
                let now = (tokio::time::Instant::now() - start).as_nanos() as u64;
                match limiter.check(key) {
                    LimitDecision::Allow { .. } => admitted[usize::from(*key)].push(now),
                    LimitDecision::Wait { delay, .. } => {
                        admitted[usize::from(*key)].push(now + delay.as_nanos() as u64)
                    }
                    LimitDecision::Deny { .. } => {}
                }
            }
            admitted
        });
        for times in admitted {
            assert_bound(&case, times, true)?;
        }
    }
}
