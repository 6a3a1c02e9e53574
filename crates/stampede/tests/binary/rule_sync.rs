//! Rate-limit rules replaced on one node reach every node (cluster mode
//! only): two `api` binaries on one namespace; a `PUT` on the first is
//! stored in Redis and the second, polling its version, limits by the new
//! rule soon after; a node started later runs the stored set, not its file;
//! an invalid `PUT` on the second changes nothing anywhere.

use reqwest::StatusCode;
use serde_json::{Value, json};
use stampede::cli::TokenRole;

use crate::harness::{Api, Binary, DataDir, eventually, token};
use crate::rule_reload::{catalog_rule, eventually_limited_by, list_products, rule_names, rules};

async fn put(api: &Api, body: &Value) -> (StatusCode, Value) {
    let response = api
        .client
        .put(format!("{}/api/v1/admin/rate-limits", api.base))
        .bearer_auth(token("admin", TokenRole::Admin))
        .json(body)
        .send()
        .await
        .unwrap();
    (response.status(), response.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_replaced_on_one_node_reach_the_others_and_a_bad_set_reaches_none() {
    let dir = DataDir::new();
    if !dir.is_cluster() {
        eprintln!("skipped: cluster mode needs PostgreSQL, Redis and NATS");
        return;
    }
    let file = dir.path().join("limits.toml");
    std::fs::write(&file, catalog_rule("catalog-loose", 1000)).unwrap();
    let config = file.to_str().unwrap();
    let env = [("STAMPEDE_ROLE", "api"), ("STAMPEDE_CONFIG", config)];
    let (node_a, node_b) = (
        Binary::start_with(&dir, &env),
        Binary::start_with(&dir, &env),
    );
    let (a, b) = (Api::new(&node_a), Api::new(&node_b));
    assert_eq!(rule_names(&b).await, ["catalog-loose"]);
    assert_eq!(list_products(&b).await.0, StatusCode::OK);

    // Counted on each node: B's refusals are B's own rule at work.
    let strict = json!([{
        "name": "catalog-strict", "key": "global", "routes": ["GET /api/v1/products"],
        "limit": 2, "period_ms": 60000, "backend": "local",
    }]);
    let (status, in_force) = put(&a, &strict).await;
    assert_eq!(status, StatusCode::OK, "{in_force}");
    eventually_limited_by(&b, "catalog-strict").await;
    assert_eq!(rules(&b).await, in_force);
    let changes = b.metrics().await;
    let once = r#"stampede_rate_limit_rule_changes_total{source="cluster"} 1"#;
    assert!(changes.contains(once), "{changes}");

    // A node started now runs the stored set, not its file's.
    let node_c = Binary::start_with(&dir, &env);
    let c = Api::new(&node_c);
    assert_eq!(rules(&c).await, in_force);

    // An invalid set on B: refused, and no node changes.
    let polled = polls(&a).await;
    let (status, problem) = put(&b, &json!([{"name": "zero", "key": "ip", "limit": 0}])).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert_eq!(problem["errors"][0]["field"], "rules[0].limit");
    // Two more polls on A: a stored set would have arrived by then.
    eventually(10, "two more polls on A", || async {
        (polls(&a).await >= polled + 2.0).then_some(())
    })
    .await;
    for api in [&a, &b, &c] {
        assert_eq!(rules(api).await, in_force);
    }
    let once = r#"stampede_rate_limit_rule_changes_total{source="cluster"} 1"#;
    assert!(
        b.metrics().await.contains(once),
        "B replaced its rules again"
    );
    eventually_limited_by(&a, "catalog-strict").await;
}

/// The steps of a node's `rate-limit-rules` worker so far: its polls.
async fn polls(api: &Api) -> f64 {
    let text = api.metrics().await;
    let series = r#"stampede_worker_steps_total{worker="rate-limit-rules",result="ok"}"#;
    text.lines()
        .find(|line| line.starts_with(series))
        .and_then(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .unwrap_or_default()
}
