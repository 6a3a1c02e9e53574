//! The bounded storage's tests: its memory, that churn never frees a key in
//! debt, that resident keys are decided as by the exact table, the hottest
//! listing, and how often the sketch refuses an innocent key.

use std::time::Duration;

use proptest::prelude::*;
use tokio::time::advance;

use super::super::rules::{Gcra, Rule};
use super::super::{Algorithm, Bounds, Engine, KeyedLimiter, LimitDecision, NotBoundable, Quota};
use super::{BoundedTable, ROWS, WAYS};

fn bounded(algorithm: Algorithm, quota: Quota, bounds: Bounds) -> KeyedLimiter<u64> {
    KeyedLimiter::bounded("bounded", algorithm, quota, bounds).unwrap()
}

fn table(limiter: &KeyedLimiter<u64>) -> &BoundedTable<u64> {
    match &limiter.inner.engine {
        Engine::Bounded(_, table) => table,
        _ => panic!("not a bounded limiter"),
    }
}

fn deny(retry_after: Duration) -> LimitDecision {
    LimitDecision::Deny {
        retry_after,
        reset: retry_after,
    }
}

#[test]
fn bounds_are_rounded_up_and_memory_follows_the_documented_formula() {
    let table = BoundedTable::<u64>::new(4096, 65_536);
    assert_eq!((table.top_k(), table.sketch_width()), (4096, 65_536));
    // 64 shards of one cache-line pair; 36 bytes a resident `u64` key (8 of
    // hash, 4 of hits, 24 of slot); 16 bytes a cell, 4 rows.
    assert_eq!(std::mem::size_of::<super::Bucket<u64>>(), WAYS * 36);
    assert_eq!(
        table.memory_bytes(),
        64 * 128 + 4096 * 36 + ROWS * 16 * 65_536
    );
    println!(
        "top_k 4096, sketch_width 65536: {} bytes",
        table.memory_bytes()
    );
    let ip = BoundedTable::<std::net::IpAddr>::new(4096, 65_536);
    println!("IpAddr keys: {} bytes", ip.memory_bytes());

    // 13 buckets need 16 shards of one bucket; 1000 cells per row, 63 a shard.
    let small = BoundedTable::<u64>::new(100, 1000);
    assert_eq!((small.top_k(), small.sketch_width()), (128, 1008));
    let tiny = BoundedTable::<u64>::new(0, 0);
    assert_eq!((tiny.top_k(), tiny.sketch_width()), (WAYS, 1));
}

#[test]
fn memory_does_not_change_with_the_number_of_keys() {
    let limiter = bounded(
        Algorithm::Gcra,
        Quota::per_second(1),
        Bounds::new(512, 4096),
    );
    let before = limiter.memory_bytes();
    assert!(before.is_some());
    for key in 0..300_000 {
        limiter.check(&key);
    }
    assert_eq!(limiter.memory_bytes(), before);
    assert!(limiter.len() <= 512, "{} resident", limiter.len());
    assert_eq!(limiter.purge_idle(), 0);
    let exact: KeyedLimiter<u64> =
        KeyedLimiter::new("exact", Algorithm::Gcra, Quota::per_second(1));
    assert_eq!(exact.memory_bytes(), None);
}

#[test]
fn window_algorithms_have_no_bounded_form() {
    for algorithm in [Algorithm::FixedWindow, Algorithm::SlidingWindow] {
        let made =
            KeyedLimiter::<u64>::bounded("w", algorithm, Quota::per_second(1), Bounds::new(8, 8));
        assert_eq!(made.err(), Some(NotBoundable(algorithm)));
    }
}

#[tokio::test(start_paused = true)]
async fn an_evicted_key_keeps_its_debt() {
    // One bucket of 8 slots. 3 a minute (one per 20 s), 3 at once.
    let limiter = bounded(Algorithm::Gcra, Quota::per_minute(3), Bounds::new(8, 1024));
    for key in 1..=7 {
        for _ in 0..10 {
            limiter.check(&key);
        }
    }
    for _ in 0..3 {
        assert!(limiter.check(&0).is_admitted());
    }
    assert_eq!(limiter.check(&0), deny(Duration::from_secs(20)));
    // A newcomer checked more often than key 0 (4 hits, the coldest)
    // takes its slot on its fifth check.
    for n in 1..=5 {
        assert!(!table(&limiter).is_resident(&100), "check {n}");
        limiter.check(&100);
    }
    assert!(table(&limiter).is_resident(&100));
    assert!(!table(&limiter).is_resident(&0));
    assert_eq!(limiter.check(&0), deny(Duration::from_secs(20)));
}

#[tokio::test(start_paused = true)]
async fn a_key_in_debt_stays_refused_after_churn_pushed_it_out_of_the_top_k() {
    // 1000 an hour (one per 3.6 s), 1000 at once: the churn's keys, one
    // request each, charge each other through the sketch, but never by
    // the ~1000 requests that would put one in debt.
    let limiter = bounded(
        Algorithm::Gcra,
        Quota::new(1000, Duration::from_secs(3600)),
        Bounds::new(512, 1 << 14),
    );
    let interval = Duration::from_millis(3600);
    let attacker = u64::MAX;
    for _ in 0..1000 {
        assert!(limiter.check(&attacker).is_admitted());
    }
    assert_eq!(limiter.check(&attacker), deny(interval));
    assert!(table(&limiter).is_resident(&attacker));

    // Two million fresh keys, one request each, at the same instant.
    for key in 0..2_000_000 {
        assert!(limiter.check(&key).is_admitted());
    }
    assert!(
        !table(&limiter).is_resident(&attacker),
        "the churn should have evicted it"
    );
    assert_eq!(limiter.hottest(usize::MAX).len(), limiter.len());
    assert!(
        limiter
            .hottest(usize::MAX)
            .iter()
            .all(|hot| hot.key != attacker)
    );

    // Its debt is in the sketch: refused exactly as long as before.
    assert_eq!(limiter.check(&attacker), deny(interval));
    advance(interval - Duration::from_nanos(1)).await;
    assert_eq!(limiter.check(&attacker), deny(Duration::from_nanos(1)));
    advance(Duration::from_nanos(1)).await;
    assert!(limiter.check(&attacker).is_admitted());
    assert!(!limiter.check(&attacker).is_admitted());
}

#[tokio::test(start_paused = true)]
async fn the_hottest_listing_finds_the_heavy_hitters_of_a_zipf_stream() {
    // 2000 a minute: the top keys run out, the 30th does not.
    let limiter = bounded(
        Algorithm::Gcra,
        Quota::per_minute(2000),
        Bounds::new(512, 1 << 14),
    );
    let zipf = Zipf::new(100_000);
    let mut rng = fastrand::Rng::with_seed(17);
    let mut fresh = 1u64 << 40;
    for _ in 0..400_000 {
        limiter.check(&zipf.sample(&mut rng));
        // As many fresh keys, each seen once: the churn of an attacker.
        fresh += 1;
        limiter.check(&fresh);
    }
    let hottest = limiter.hottest(32);
    let keys: Vec<u64> = hottest.iter().map(|hot| hot.key).collect();
    println!("hottest 32: {keys:?}");
    assert!(hottest.windows(2).all(|w| w[0].hits >= w[1].hits));
    // The shards' hashes are seeded per process, so which shard halves its
    // counts when differs from run to run: the five heaviest are always
    // listed, and all but at most two of the ten heaviest (one run in some
    // fifty left out the tenth).
    for rank in 0..5 {
        assert!(keys.contains(&rank), "key {rank} missing from {keys:?}");
    }
    let listed = (0..10).filter(|rank| keys.contains(rank)).count();
    assert!(listed >= 8, "only {listed} of the ten heaviest in {keys:?}");
    // Counts are halved shard by shard, so ranks may swap within a factor
    // of two, never across a factor of three.
    assert!(keys[..10].iter().all(|&key| key < 30), "{keys:?}");
    let first = &hottest[0];
    assert!(first.key < 3 && first.limited, "{first:?}");
    let cool = hottest.iter().find(|hot| hot.key >= 30);
    assert!(cool.is_none_or(|hot| !hot.limited), "{cool:?}");
}

/// Keys `0..n` with probability ∝ 1 / (rank + 1).
struct Zipf {
    cumulative: Vec<f64>,
}

impl Zipf {
    fn new(n: u64) -> Self {
        let cumulative = (1..=n)
            .scan(0.0, |total, rank| {
                *total += 1.0 / rank as f64;
                Some(*total)
            })
            .collect();
        Self { cumulative }
    }

    fn sample(&self, rng: &mut fastrand::Rng) -> u64 {
        let total = self.cumulative.last().copied().unwrap_or(0.0);
        let u = rng.f64() * total;
        self.cumulative.partition_point(|&c| c < u) as u64
    }
}

#[tokio::test(start_paused = true)]
async fn innocent_keys_are_refused_about_as_rarely_as_documented() {
    // 10 a minute, 10 at once: a key that spent its burst is in debt for
    // 6 s. A burst this large keeps innocent keys out of debt even when the
    // sketch charges them a few others' requests, so that the debtors stay
    // the attacker's.
    const DEBTORS: u64 = 20_000;
    const INNOCENTS: u64 = 200_000;
    let bounds = Bounds::new(512, 1 << 16);
    let limiter = bounded(Algorithm::Gcra, Quota::per_minute(10), bounds);
    for key in 0..DEBTORS {
        for _ in 0..11 {
            limiter.check(&key);
        }
    }
    let in_debt = (0..DEBTORS)
        .filter(|key| !limiter.check(key).is_admitted())
        .count();
    assert_eq!(in_debt as u64, DEBTORS);
    let refused = (DEBTORS..DEBTORS + INNOCENTS)
        .filter(|key| !limiter.check(key).is_admitted())
        .count();
    let rate = refused as f64 / INNOCENTS as f64;
    let load = DEBTORS as f64 / bounds.sketch_width as f64;
    let expected = (1.0 - (-load).exp()).powi(ROWS as i32);
    println!(
        "{DEBTORS} keys in debt over {} cells a row: {refused} of {INNOCENTS} fresh keys refused \
         ({rate:.5}); (1 - e^(-D/w))^d = {expected:.5}, (D/w)^d = {:.5}",
        bounds.sketch_width,
        load.powi(ROWS as i32)
    );
    assert!(rate <= 2.0 * load.powi(ROWS as i32), "{rate}");
}

/// Decided one after the other on each shard, with checks of one key racing
/// from two threads: no key is ever admitted twice where once is its quota,
/// resident or not.
#[test]
fn threads_racing_on_keys_in_the_top_k_and_in_the_sketch_never_admit_too_many() {
    const KEYS: u64 = 20_000;
    let once = bounded(
        Algorithm::Gcra,
        Quota::new(1, Duration::from_secs(3600)),
        Bounds::new(64, 1 << 16),
    );
    let admitted: Vec<Vec<bool>> = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..2)
            .map(|_| {
                scope.spawn(|| {
                    (0..KEYS)
                        .map(|key| once.check(&key).is_admitted())
                        .collect()
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    });
    let winners: Vec<usize> = (0..KEYS as usize)
        .map(|key| admitted.iter().filter(|a| a[key]).count())
        .collect();
    assert!(winners.iter().all(|&w| w <= 1));
    // Every key is in debt for an hour: 20 000 over 65 536 cells refuse
    // about 0.3 % of fresh keys (none if they all fitted the top-K).
    let admitted_once = winners.iter().filter(|&&w| w == 1).count();
    assert!(admitted_once as u64 > KEYS * 98 / 100, "{admitted_once}");
}

// ---- properties -------------------------------------------------------------

fn gcra_family() -> impl Strategy<Value = (Algorithm, Quota)> {
    let quota = super::super::tests::quotas();
    let algorithm = prop_oneof![
        Just(Algorithm::Gcra),
        (0u64..=3_000_000_000).prop_map(|wait| Algorithm::LeakyBucket {
            max_wait: Duration::from_nanos(wait)
        }),
    ];
    (algorithm, quota)
}

/// Runs `arrivals` (a gap in nanoseconds and a key) through each limiter on
/// paused time and returns each one's decisions with their instants.
fn run(limiters: &[KeyedLimiter<u64>], arrivals: &[(u64, u64)]) -> Vec<Vec<(u64, LimitDecision)>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    runtime.block_on(async {
        let start = tokio::time::Instant::now();
        let mut log = vec![Vec::new(); limiters.len()];
        for (gap, key) in arrivals {
            advance(Duration::from_nanos(*gap)).await;
            let now = (tokio::time::Instant::now() - start).as_nanos() as u64;
            for (limiter, log) in limiters.iter().zip(&mut log) {
                log.push((now, limiter.check(key)));
            }
        }
        log
    })
}

fn arrivals(keys: u64) -> impl Strategy<Value = Vec<(u64, u64)>> {
    let gap = prop_oneof![
        3 => Just(0u64),
        4 => 0u64..=200_000_000,
        1 => 0u64..=2_500_000_000,
    ];
    prop::collection::vec((gap, 0..keys), 1..300)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Up to 8 keys always fit one bucket: every key is resident from its
    /// first check, and decided exactly as by the exact table.
    #[test]
    fn resident_keys_are_decided_as_by_the_exact_table(
        (algorithm, quota) in gcra_family(),
        top_k in prop_oneof![Just(8usize), Just(64), Just(512)],
        arrivals in arrivals(WAYS as u64),
    ) {
        let limiters = [
            KeyedLimiter::new("exact", algorithm, quota),
            bounded(algorithm, quota, Bounds::new(top_k, 64)),
        ];
        let [exact, bounded] = run(&limiters, &arrivals).try_into().unwrap();
        prop_assert_eq!(exact, bounded);
        prop_assert_eq!(limiters[0].len(), limiters[1].len());
    }

    /// Forty keys in 8 slots: evictions all the time, and in a narrow
    /// sketch collisions too. Each key's admitted requests would all have
    /// been admitted by the exact rule fed only those requests: the sketch
    /// over-limits, never under-limits.
    #[test]
    fn a_crowded_sketch_never_admits_a_request_the_exact_rule_would_refuse(
        (algorithm, quota) in gcra_family(),
        width in prop_oneof![1usize..=8, 64usize..=1024],
        arrivals in arrivals(40),
    ) {
        let limiter = bounded(algorithm, quota, Bounds::new(8, width));
        let [log] = run(std::slice::from_ref(&limiter), &arrivals).try_into().unwrap();
        let max_wait = match algorithm {
            Algorithm::LeakyBucket { max_wait } => max_wait,
            _ => Duration::ZERO,
        };
        let rule = Gcra::new(quota.clamped(), max_wait);
        let mut states = std::collections::HashMap::new();
        for ((_, key), (now, decision)) in arrivals.iter().zip(log) {
            if !decision.is_admitted() {
                continue;
            }
            let state = states.get(key).copied();
            let (next, exact) = rule.check(state, now);
            prop_assert!(
                exact.is_admitted(),
                "key {} at {}: {:?} where exact {:?}", key, now, decision, exact
            );
            // A queued request waits at least as long as the exact rule says.
            if let (LimitDecision::Wait { delay, .. }, LimitDecision::Wait { delay: floor, .. }) =
                (decision, exact)
            {
                prop_assert!(delay >= floor);
            }
            states.insert(*key, next);
        }
    }
}
