//! Micro-benchmarks of one rate-limit check (`cargo bench -p stampede-flow`):
//! what every API request pays per rule on the local path. A check admitted
//! on a key seen before, a check refused on a hot key over its budget, and
//! the first check of a key (an insert into the sharded table), for GCRA and
//! the sliding window; the same for GCRA in bounded memory, where a new key
//! goes to the sketch. Figures and method: docs/benchmarks.md.

// Bench code: a failed assertion is a broken benchmark.
#![allow(clippy::panic)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use divan::Bencher;
use stampede_flow::limit::{Algorithm, Bounds, KeyedLimiter, LimitDecision, Quota};

fn main() {
    divan::main();
}

/// Generous enough that the benchmark's keys never run out.
fn roomy() -> Quota {
    Quota::new(1_000_000_000, Duration::from_secs(1))
}

/// One request per second, so a hot key is refused from its second check on.
fn tight() -> Quota {
    Quota::new(1, Duration::from_secs(1))
}

#[divan::bench]
fn gcra_admitted_on_a_known_key(bencher: Bencher) {
    admitted_on_a_known_key(bencher, Algorithm::Gcra);
}

#[divan::bench]
fn sliding_window_admitted_on_a_known_key(bencher: Bencher) {
    admitted_on_a_known_key(bencher, Algorithm::SlidingWindow);
}

#[divan::bench]
fn gcra_refused_on_a_hot_key(bencher: Bencher) {
    refused_on_a_hot_key(bencher, Algorithm::Gcra);
}

#[divan::bench]
fn sliding_window_refused_on_a_hot_key(bencher: Bencher) {
    refused_on_a_hot_key(bencher, Algorithm::SlidingWindow);
}

/// Room in the top-K for the 10,000 users, and 65,536 cells a row: 4.7 MiB.
fn bounded(quota: Quota) -> KeyedLimiter<u64> {
    KeyedLimiter::bounded("bench", Algorithm::Gcra, quota, Bounds::new(16_384, 65_536))
        .unwrap_or_else(|e| panic!("{e}"))
}

#[divan::bench]
fn bounded_gcra_admitted_on_a_known_key(bencher: Bencher) {
    admitted_on_a_known_key_of(bencher, bounded(roomy()));
}

#[divan::bench]
fn bounded_gcra_refused_on_a_hot_key(bencher: Bencher) {
    refused_on_a_hot_key_of(bencher, bounded(tight()));
}

#[divan::bench]
fn bounded_first_check_of_a_new_key(bencher: Bencher) {
    let limiter = bounded(roomy());
    let next = AtomicU64::new(0);
    bencher.bench(|| limiter.check(&divan::black_box(next.fetch_add(1, Ordering::Relaxed))));
}

fn admitted_on_a_known_key(bencher: Bencher, algorithm: Algorithm) {
    admitted_on_a_known_key_of(bencher, KeyedLimiter::new("bench", algorithm, roomy()));
}

fn admitted_on_a_known_key_of(bencher: Bencher, limiter: KeyedLimiter<u64>) {
    // 10,000 users, as in a crowd: the table holds them all.
    for user in 0..10_000u64 {
        limiter.check(&user);
    }
    let next = AtomicU64::new(0);
    bencher.bench(|| {
        let user = next.fetch_add(1, Ordering::Relaxed) % 10_000;
        let decision = limiter.check(&divan::black_box(user));
        assert!(matches!(decision, LimitDecision::Allow { .. }));
    });
}

fn refused_on_a_hot_key(bencher: Bencher, algorithm: Algorithm) {
    refused_on_a_hot_key_of(bencher, KeyedLimiter::new("bench", algorithm, tight()));
}

fn refused_on_a_hot_key_of(bencher: Bencher, limiter: KeyedLimiter<u64>) {
    limiter.check(&0u64);
    bencher.bench(|| {
        let decision = limiter.check(&divan::black_box(0u64));
        assert!(matches!(decision, LimitDecision::Deny { .. }));
    });
}

#[divan::bench]
fn first_check_of_a_new_key(bencher: Bencher) {
    let limiter = KeyedLimiter::new("bench", Algorithm::Gcra, roomy());
    let next = AtomicU64::new(0);
    bencher.bench(|| limiter.check(&divan::black_box(next.fetch_add(1, Ordering::Relaxed))));
}
