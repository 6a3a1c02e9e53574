//! The deterministic simulation in CI (docs/reliability.md, "Deterministic
//! simulation"): over a million simulated operations across seeds, one seed
//! twice for an identical trace, and a broken store the checker must catch.
//! `SIM_SEED=… SIM_OPS=…` replays one run (`replay`); `SIM_SEEDS` and
//! `SIM_OPS` size the long run (`many_seeds`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use stampede_sim::{Config, FaultRates, Report, run};

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| {
        v.parse()
            .unwrap_or_else(|_| panic!("{name} must be a number, got {v:?}"))
    })
}

fn run_or_panic(config: &Config) -> Report {
    match run(config) {
        Ok(report) => report,
        Err(failure) => panic!("{failure}"),
    }
}

/// Seeds to run: fresh ones every CI run (printed), so CI explores; each
/// failure prints the command that replays it.
fn fresh_seed() -> u64 {
    fastrand::u64(..)
}

#[test]
fn many_seeds_keep_every_promise() {
    let seeds = env_u64("SIM_SEEDS").unwrap_or(5);
    let ops = env_u64("SIM_OPS").unwrap_or(200_000);
    let started = std::time::Instant::now();
    let mut total = 0;
    for _ in 0..seeds {
        let seed = fresh_seed();
        eprintln!("seed {seed}: {ops} operations (SIM_SEED={seed} SIM_OPS={ops} to replay)");
        let report = run_or_panic(&Config::new(seed, ops));
        eprintln!("  {report:?}");
        assert_eq!(report.ops, ops);
        assert!(report.restarts > 0, "no crash was simulated: {report:?}");
        assert!(report.faults > 0, "no fault was injected: {report:?}");
        assert!(report.purchases.iter().all(|n| *n > 0), "{report:?}");
        total += report.ops;
    }
    eprintln!(
        "{total} simulated operations in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert!(total >= 1_000_000 || env_u64("SIM_SEEDS").is_some());
}

#[test]
fn one_seed_gives_one_trace() {
    let seed = fresh_seed();
    let config = Config::new(seed, 20_000);
    let first = run_or_panic(&config);
    let second = run_or_panic(&config);
    assert_eq!(first, second, "seed {seed} ran two ways");
    let other = run_or_panic(&Config::new(seed ^ 1, 20_000));
    assert_ne!(first.digest, other.digest, "the digest ignores the seed");
}

/// A store that answers a group commit without writing it — the order is
/// accepted and lost — must be caught, with the seed and step printed.
#[test]
fn a_store_that_forgets_commits_is_caught() {
    for seed in 0..3 {
        let config = Config {
            faults: FaultRates {
                forget_commit: 2_000,
                ..FaultRates::default()
            },
            ..Config::new(seed, 50_000)
        };
        let failure = run(&config).expect_err("a forgotten commit went unnoticed");
        let text = failure.to_string();
        assert!(
            text.contains(&format!("SIM_SEED={seed} SIM_OPS=50000")),
            "{text}"
        );
        assert!(failure.step < 50_000, "{text}");
        eprintln!("{text}");
    }
}

/// Replays one run: `SIM_SEED=… SIM_OPS=… cargo nextest run -p stampede-sim
/// --test sim replay`; without `SIM_SEED` a short run of seed 1.
#[test]
fn replay() {
    let seed = env_u64("SIM_SEED").unwrap_or(1);
    let ops = env_u64("SIM_OPS").unwrap_or(5_000);
    let report = run_or_panic(&Config::new(seed, ops));
    eprintln!("{report:?}");
}
