//! A shared rate limit holds its global rate across processes (cluster mode
//! only): two `api` binaries on one namespace, a config-file rule of 50
//! purchases a second (burst 50) for everyone together, and a crowd on both
//! nodes for a few seconds. Every answer the rule let through (202, or a
//! 409 from the ledger) must fit in `rate × elapsed + burst`, where
//! `elapsed` runs from the first request sent to the last answer received —
//! it holds every decision Redis took, so the bound is exact; the tolerance
//! of 2 covers nothing but rounding. Per-node limiters would have let about
//! twice as many through.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use reqwest::StatusCode;

use crate::harness::{Api, Binary, DataDir};

const RATE: f64 = 50.0;
const BURST: f64 = 50.0;
const RUN: Duration = Duration::from_secs(3);
const TASKS_PER_NODE: usize = 8;

const RULES: &str = r#"
[[rate_limits]]
name = "cluster-purchases"
key = "global"
routes = ["POST /api/v1/sales/{id}/purchase"]
limit = 50
burst = 50
period_ms = 1000
# Redis must decide: a fallback would answer 503, which fails the test.
fallback = "fail_closed"
"#;

#[derive(Default)]
struct Counts {
    admitted: AtomicUsize,
    limited: AtomicUsize,
    other: AtomicUsize,
}

async fn fallbacks(api: &Api) -> f64 {
    let text = api.metrics().await;
    text.lines()
        .filter(|line| line.starts_with("stampede_rate_limit_fallbacks_total"))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_rate_limit_holds_its_global_rate_across_two_processes() {
    let dir = DataDir::new();
    if !dir.is_cluster() {
        eprintln!("skipped: cluster mode needs PostgreSQL, Redis and NATS");
        return;
    }
    let config = dir.path().join("limits.toml");
    std::fs::write(&config, RULES).unwrap();
    let config = config.to_str().unwrap();
    let env = [("STAMPEDE_ROLE", "api"), ("STAMPEDE_CONFIG", config)];
    let (node_a, node_b) = (
        Binary::start_with(&dir, &env),
        Binary::start_with(&dir, &env),
    );
    let apis = [Arc::new(Api::new(&node_a)), Arc::new(Api::new(&node_b))];
    let sale = apis[0].create_sale(1_000_000, 1_000_000).await;

    let per_node: [Arc<Counts>; 2] = Default::default();
    let serial = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (api, counts) in apis.iter().zip(&per_node) {
        for _ in 0..TASKS_PER_NODE {
            let (api, counts, sale, serial) =
                (api.clone(), counts.clone(), sale.clone(), serial.clone());
            tasks.push(tokio::spawn(async move {
                while started.elapsed() < RUN {
                    let n = serial.fetch_add(1, Ordering::Relaxed);
                    let (status, _) = api
                        .purchase(&format!("crowd-{n}"), &sale, "k")
                        .await
                        .unwrap();
                    match status {
                        StatusCode::ACCEPTED | StatusCode::CONFLICT => &counts.admitted,
                        StatusCode::TOO_MANY_REQUESTS => &counts.limited,
                        _ => &counts.other,
                    }
                    .fetch_add(1, Ordering::Relaxed);
                }
            }));
        }
    }
    for task in tasks {
        task.await.unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();

    let count = |f: fn(&Counts) -> &AtomicUsize| {
        per_node
            .iter()
            .map(|c| f(c).load(Ordering::Relaxed))
            .collect::<Vec<_>>()
    };
    let (admitted, limited, other) = (
        count(|c| &c.admitted),
        count(|c| &c.limited),
        count(|c| &c.other),
    );
    let total: usize = admitted.iter().sum();
    let bound = RATE * elapsed + BURST;
    eprintln!(
        "in {elapsed:.3} s: admitted {admitted:?} (total {total}, bound {bound:.1}), \
         limited {limited:?}, other {other:?}"
    );
    assert_eq!(other, [0, 0], "answers other than 202, 409 and 429");
    assert!(
        total as f64 <= bound + 2.0,
        "{total} admitted across both nodes, more than {bound:.1}"
    );
    // Both nodes took part and the limit was what held them back.
    assert!(admitted.iter().all(|&n| n > 0), "{admitted:?}");
    assert!(limited.iter().all(|&n| n > 0), "{limited:?}");
    // The budget was used, not refused wholesale: at least the burst and
    // most of the rate got through.
    assert!(
        total as f64 >= BURST + 0.5 * RATE * RUN.as_secs_f64(),
        "only {total} admitted"
    );
    for api in &apis {
        assert_eq!(fallbacks(api).await, 0.0, "a node fell back");
    }
}
