//! The shared rate-limit store against a real Redis: each algorithm's
//! script decides as the local rules do, at instants the tests choose (no
//! sleeping), keys expire, namespaces and nodes, and the fallbacks when
//! Redis is unreachable.

// Test code: a failed expectation is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use stampede_flow::limit::shared::{Fallback, SharedLimiter, SharedStore, Undecided};
use stampede_flow::{Algorithm, LimitDecision, Quota, RateStore};
use stampede_ledger_redis::testing::TestNamespace;
use stampede_ledger_redis::{RedisRateSettings, RedisRateStore};

/// An instant well after 1970, in µs, like Redis's clock gives.
const T0: u64 = 1_800_000_000_000_000;
const MS: u64 = 1000;

fn store(ns: &TestNamespace) -> RedisRateStore {
    RedisRateStore::new(&ns.url, &ns.name, &RedisRateSettings::default()).unwrap()
}

async fn admitted(
    store: &RedisRateStore,
    key: &str,
    algorithm: Algorithm,
    quota: Quota,
    at: u64,
    tries: usize,
) -> usize {
    let mut admitted = 0;
    for _ in 0..tries {
        let decision = store
            .check_at("rule", key, algorithm, quota, at)
            .await
            .unwrap();
        admitted += usize::from(decision.is_admitted());
    }
    admitted
}

#[tokio::test]
async fn gcra_admits_the_burst_then_the_rate() {
    let Some(ns) = TestNamespace::create().await else {
        return;
    };
    let store = store(&ns);
    let quota = Quota::per_second(50);
    let gcra = Algorithm::Gcra;
    let first = store.check_at("rule", "k", gcra, quota, T0).await.unwrap();
    assert_eq!(
        first,
        LimitDecision::Allow {
            remaining: 49,
            reset: Duration::from_millis(20)
        }
    );
    assert_eq!(admitted(&store, "k", gcra, quota, T0, 60).await, 49);
    let refused = store.check_at("rule", "k", gcra, quota, T0).await.unwrap();
    assert_eq!(
        refused,
        LimitDecision::Deny {
            retry_after: Duration::from_millis(20),
            reset: Duration::from_millis(20)
        }
    );
    // One more every 20 ms…
    assert_eq!(admitted(&store, "k", gcra, quota, T0 + 20 * MS, 5).await, 1);
    assert_eq!(admitted(&store, "k", gcra, quota, T0 + 30 * MS, 5).await, 0);
    assert_eq!(
        admitted(&store, "k", gcra, quota, T0 + 100 * MS, 5).await,
        4
    );
    // …and the whole burst after a quiet second.
    assert_eq!(
        admitted(&store, "k", gcra, quota, T0 + 1200 * MS, 80).await,
        50
    );
    // Another key has its own budget.
    assert_eq!(admitted(&store, "other", gcra, quota, T0, 80).await, 50);
}

#[tokio::test]
async fn a_leaky_bucket_queues_within_its_wait_and_refuses_beyond() {
    let Some(ns) = TestNamespace::create().await else {
        return;
    };
    let store = store(&ns);
    let quota = Quota::per_second(10).with_burst(1);
    let leaky = Algorithm::LeakyBucket {
        max_wait: Duration::from_millis(250),
    };
    let check = || store.check_at("rule", "k", leaky, quota, T0);
    assert!(matches!(
        check().await.unwrap(),
        LimitDecision::Allow { .. }
    ));
    for slot in 1..=2 {
        assert_eq!(
            check().await.unwrap(),
            LimitDecision::Wait {
                delay: Duration::from_millis(100 * slot),
                reset: Duration::from_millis(100 * slot + 100)
            }
        );
    }
    assert_eq!(
        check().await.unwrap(),
        LimitDecision::Deny {
            retry_after: Duration::from_millis(50),
            reset: Duration::from_millis(300)
        }
    );
}

#[tokio::test]
async fn a_fixed_window_holds_its_burst_until_it_ends() {
    let Some(ns) = TestNamespace::create().await else {
        return;
    };
    let store = store(&ns);
    let quota = Quota::per_second(10);
    let fixed = Algorithm::FixedWindow;
    assert_eq!(admitted(&store, "k", fixed, quota, T0, 15).await, 10);
    let refused = store
        .check_at("rule", "k", fixed, quota, T0 + 400 * MS)
        .await
        .unwrap();
    assert_eq!(
        refused,
        LimitDecision::Deny {
            retry_after: Duration::from_millis(600),
            reset: Duration::from_millis(600)
        }
    );
    assert_eq!(
        admitted(&store, "k", fixed, quota, T0 + 999 * MS, 5).await,
        0
    );
    assert_eq!(
        admitted(&store, "k", fixed, quota, T0 + 1000 * MS, 15).await,
        10
    );
}

#[tokio::test]
async fn a_sliding_window_weighs_the_previous_window() {
    let Some(ns) = TestNamespace::create().await else {
        return;
    };
    let store = store(&ns);
    let quota = Quota::per_second(10);
    let sliding = Algorithm::SlidingWindow;
    assert_eq!(admitted(&store, "k", sliding, quota, T0, 15).await, 10);
    // At the next window's start the previous one still counts whole; a
    // request fits once a tenth of it has slid out.
    let refused = store
        .check_at("rule", "k", sliding, quota, T0 + 1000 * MS)
        .await
        .unwrap();
    assert_eq!(
        refused,
        LimitDecision::Deny {
            retry_after: Duration::from_millis(100),
            reset: Duration::from_millis(100)
        }
    );
    // Halfway through, half of the previous window's 10 still count.
    assert_eq!(
        admitted(&store, "k", sliding, quota, T0 + 1500 * MS, 10).await,
        5
    );
}

#[tokio::test]
async fn keys_carry_a_ttl_and_vanish_when_idle() {
    let Some(ns) = TestNamespace::create().await else {
        return;
    };
    let store = store(&ns);
    let client = redis::Client::open(ns.url.as_str()).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    // Redis's own clock here: a TTL is counted from the real now.
    let quota = Quota::new(1, Duration::from_millis(40));
    for algorithm in [
        Algorithm::Gcra,
        Algorithm::FixedWindow,
        Algorithm::SlidingWindow,
    ] {
        let key = format!("{algorithm:?}");
        let decision = stampede_flow::RateStore::check(&store, "rule", &key, algorithm, quota)
            .await
            .unwrap();
        assert!(decision.is_admitted());
        let name = store.key("rule", &key);
        assert!(name.starts_with(&format!("{{{}:rl:rule:", ns.name)));
        let ttl: i64 = redis::cmd("PTTL")
            .arg(&name)
            .query_async(&mut con)
            .await
            .unwrap();
        // The sliding window's state matters for two windows.
        assert!(ttl > 0 && ttl <= 80, "{algorithm:?}: PTTL {ttl}");
    }
    tokio::time::sleep(Duration::from_millis(150)).await;
    let left = stampede_ledger_redis::testing::keys_matching(
        &ns.url,
        &stampede_ledger_redis::testing::namespace_pattern(&ns.name),
    )
    .await;
    assert!(left.is_empty(), "{left:?}");
}

#[tokio::test]
async fn namespaces_keep_their_budgets_apart() {
    let (Some(one), Some(two)) = (TestNamespace::create().await, TestNamespace::create().await)
    else {
        return;
    };
    let (one, two) = (store(&one), store(&two));
    let quota = Quota::per_second(3);
    assert_eq!(admitted(&one, "k", Algorithm::Gcra, quota, T0, 5).await, 3);
    assert_eq!(admitted(&two, "k", Algorithm::Gcra, quota, T0, 5).await, 3);
}

#[tokio::test]
async fn two_nodes_on_one_namespace_share_one_budget() {
    let Some(ns) = TestNamespace::create().await else {
        return;
    };
    let timeout = Duration::from_millis(200);
    let node = |name: &str| {
        let store = Arc::new(store(&ns));
        SharedLimiter::new(
            "shared",
            Algorithm::Gcra,
            Quota::new(10, Duration::from_secs(60)),
            SharedStore::new(name, store, timeout),
            Fallback::Closed,
        )
    };
    let (a, b) = (node("a"), node("b"));
    let mut admitted = 0;
    for i in 0..30 {
        let limiter = if i % 2 == 0 { &a } else { &b };
        admitted += usize::from(limiter.check("global", 0).await.unwrap().is_admitted());
    }
    assert_eq!(admitted, 10);
}

/// A port nothing listens on.
fn closed_port() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("redis://127.0.0.1:{port}")
}

#[tokio::test]
async fn an_unreachable_redis_answers_each_rules_fallback() {
    let store: Arc<dyn stampede_flow::RateStore> = Arc::new(
        RedisRateStore::new(
            &closed_port(),
            "stampede-test",
            &RedisRateSettings::default(),
        )
        .unwrap(),
    );
    assert!(
        store
            .check("rule", "k", Algorithm::Gcra, Quota::per_second(1))
            .await
            .is_err()
    );
    let shared = SharedStore::new("unreachable", store, Duration::from_millis(50));
    let limiter = |fallback| {
        SharedLimiter::new(
            "r",
            Algorithm::Gcra,
            Quota::per_second(2),
            shared.clone(),
            fallback,
        )
    };
    // Local: this node's own limiter, with the rule's quota.
    let local = limiter(Fallback::Local);
    let mut admitted = 0;
    for _ in 0..5 {
        admitted += usize::from(local.check("k", 1).await.unwrap().is_admitted());
    }
    assert_eq!(admitted, 2);
    let open = limiter(Fallback::Open);
    for _ in 0..5 {
        assert!(open.check("k", 1).await.unwrap().is_admitted());
    }
    let closed = limiter(Fallback::Closed);
    assert_eq!(closed.check("k", 1).await, Err(Undecided));
}

#[tokio::test]
async fn a_stored_rule_set_is_read_by_every_node_of_its_namespace_with_a_new_version() {
    let Some(ns) = TestNamespace::create().await else {
        return;
    };
    let (a, b) = (store(&ns), store(&ns));
    assert_eq!(a.rules_version().await.unwrap(), 0);
    assert_eq!(a.load_rules().await.unwrap(), None);
    let first = a.store_rules("[1]").await.unwrap();
    assert_eq!(b.rules_version().await.unwrap(), first);
    let stored = b.load_rules().await.unwrap().unwrap();
    assert_eq!((stored.version, stored.text.as_str()), (first, "[1]"));
    let second = b.store_rules("[2]").await.unwrap();
    assert_ne!(second, first);
    let stored = a.load_rules().await.unwrap().unwrap();
    assert_eq!((stored.version, stored.text.as_str()), (second, "[2]"));
    // Another namespace has none.
    let Some(other) = TestNamespace::create().await else {
        return;
    };
    assert_eq!(store(&other).load_rules().await.unwrap(), None);
}
