//! The deterministic simulation in CI (docs/reliability.md, "Deterministic
//! simulation"): a million simulated operations across eight fresh seeds, one
//! seed twice for an identical trace, and a broken store the checker must
//! catch. `SIM_SEED=… SIM_OPS=…` replays one run (`replay`); `SIM_SEEDS` and
//! `SIM_OPS` size the long run (`long_run`, ignored in CI).

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

/// Runs `seeds` fresh seeds of `ops` operations each; returns the total.
fn fresh_seeds(seeds: u64, ops: u64) -> u64 {
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
    total
}

/// Operations per CI test: eight of them make a million per CI run, in
/// tests short enough to run side by side.
const CI_OPS: u64 = 125_000;

macro_rules! crowd_runs {
    ($($name:ident),+) => {$(
        #[test]
        fn $name() {
            fresh_seeds(1, CI_OPS);
        }
    )+};
}

crowd_runs!(
    a_crowd_keeps_every_promise_1,
    a_crowd_keeps_every_promise_2,
    a_crowd_keeps_every_promise_3,
    a_crowd_keeps_every_promise_4,
    a_crowd_keeps_every_promise_5,
    a_crowd_keeps_every_promise_6,
    a_crowd_keeps_every_promise_7,
    a_crowd_keeps_every_promise_8
);

/// The long run, outside CI: `SIM_SEEDS=50 SIM_OPS=1000000 cargo test
/// -p stampede-sim --test sim long_run -- --ignored --nocapture`.
#[test]
#[ignore = "long: run by hand with SIM_SEEDS and SIM_OPS"]
fn long_run() {
    let seeds = env_u64("SIM_SEEDS").unwrap_or(10);
    let ops = env_u64("SIM_OPS").unwrap_or(1_000_000);
    assert_eq!(fresh_seeds(seeds, ops), seeds * ops);
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
