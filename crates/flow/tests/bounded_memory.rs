//! A bounded rate limiter's memory under key churn, seen from outside the
//! crate: ten million distinct keys must not grow the process at all.
//!
//! Measured as the process's data segment (`VmData` in `/proc/self/status`:
//! the heap and every anonymous mapping, allocated or not yet touched), not
//! with a counting `#[global_allocator]`, which needs an `unsafe impl` that
//! the workspace's `unsafe_code = "forbid"` rules out. A test alone in its
//! binary is alone in its process, so nothing else allocates meanwhile.

#![cfg(target_os = "linux")]
// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::time::Instant;

use stampede_flow::limit::{Algorithm, Bounds, KeyedLimiter, Quota};

const MIB: u64 = 1 << 20;

/// The process's data segment, in bytes.
fn vm_data() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find_map(|line| line.strip_prefix("VmData:"))
        .unwrap();
    let kib: u64 = line.trim().trim_end_matches("kB").trim().parse().unwrap();
    kib * 1024
}

#[test]
fn ten_million_distinct_keys_leave_a_bounded_limiter_the_memory_it_started_with() {
    const KEYS: u64 = 10_000_000;
    let limiter = KeyedLimiter::<u64>::bounded(
        "churn",
        Algorithm::Gcra,
        Quota::per_second(10),
        Bounds::new(4096, 1 << 16),
    )
    .unwrap();
    let bytes = limiter.memory_bytes();
    // Warm-up: the first keys fill the top-K table.
    for key in 0..100_000 {
        limiter.check(&key);
    }
    let before = vm_data();
    let started = Instant::now();
    for key in (1 << 32)..(1 << 32) + KEYS {
        limiter.check(&key);
    }
    let elapsed = started.elapsed();
    let after = vm_data();
    println!(
        "bounded: {} bytes of state; data segment {} → {} KiB over {KEYS} fresh keys \
         ({} ns a check)",
        bytes.unwrap_or(0),
        before / 1024,
        after / 1024,
        elapsed.as_nanos() / u128::from(KEYS)
    );
    assert_eq!(limiter.memory_bytes(), bytes);
    assert!(limiter.len() <= 4096);
    // A byte per key would be 10 MB; the slack is for the test harness.
    assert!(
        after <= before + MIB,
        "grew by {} bytes",
        after.saturating_sub(before)
    );

    // The measure does see growth: the exact table, with a tenth of the keys.
    let exact = KeyedLimiter::<u64>::new("exact", Algorithm::Gcra, Quota::per_second(10));
    let before = vm_data();
    for key in 0..KEYS / 10 {
        exact.check(&key);
    }
    let after = vm_data();
    println!(
        "exact: data segment {} → {} KiB over {} keys",
        before / 1024,
        after / 1024,
        KEYS / 10
    );
    assert!(after >= before + 16 * MIB, "{before} → {after}");
    assert_eq!(exact.len() as u64, KEYS / 10);
}
