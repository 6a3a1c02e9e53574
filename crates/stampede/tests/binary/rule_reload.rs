//! `SIGHUP` on the real binary reads the `--config` file again and puts its
//! rate-limit rules in force without a restart; a file that does not load
//! or whose rules are refused changes nothing (docs/design.md §8.1).

use reqwest::StatusCode;
use serde_json::Value;
use stampede::cli::TokenRole;

use crate::harness::{Api, Binary, DataDir, eventually, token};

/// One rule, for everyone together, on listing products: `limit` a minute.
pub fn catalog_rule(name: &str, limit: u32) -> String {
    format!(
        r#"
[[rate_limits]]
name = "{name}"
key = "global"
routes = ["GET /api/v1/products"]
limit = {limit}
period_ms = 60000
backend = "local"
"#
    )
}

/// The rules in force on the node, as `GET /api/v1/admin/rate-limits` says.
pub async fn rules(api: &Api) -> Value {
    let response = api
        .client
        .get(format!("{}/api/v1/admin/rate-limits", api.base))
        .bearer_auth(token("admin", TokenRole::Admin))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

/// The names of the rules in force.
pub async fn rule_names(api: &Api) -> Vec<String> {
    let rules = rules(api).await;
    let names = rules.as_array().unwrap().iter();
    names
        .map(|r| r["name"].as_str().unwrap().to_owned())
        .collect()
}

/// Lists products: the status, and the rule a 429 names.
pub async fn list_products(api: &Api) -> (StatusCode, String) {
    let response = api
        .client
        .get(format!("{}/api/v1/products", api.base))
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    (
        status,
        body["detail"].as_str().unwrap_or_default().to_owned(),
    )
}

/// Waits until listing products is refused by `rule`.
pub async fn eventually_limited_by(api: &Api, rule: &str) {
    eventually(10, &format!("a 429 from `{rule}`"), || async {
        let (status, detail) = list_products(api).await;
        (status == StatusCode::TOO_MANY_REQUESTS && detail.contains(rule)).then_some(())
    })
    .await;
}

/// Log lines of `binary` at `warn` about a `SIGHUP`.
fn hangup_warnings(binary: &Binary) -> usize {
    let logs = binary.logs();
    logs.iter()
        .filter(|line| line["level"] == "WARN")
        .filter(|line| {
            line["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("SIGHUP"))
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_puts_the_files_new_rules_in_force_and_a_bad_file_changes_nothing() {
    let dir = DataDir::new();
    let file = dir.path().join("limits.toml");
    std::fs::write(&file, catalog_rule("catalog-loose", 1000)).unwrap();
    let config = file.to_str().unwrap();
    let node = Binary::start_with(&dir, &[("STAMPEDE_CONFIG", config)]);
    let api = Api::new(&node);
    assert_eq!(rule_names(&api).await, ["catalog-loose"]);
    for _ in 0..3 {
        assert_eq!(list_products(&api).await.0, StatusCode::OK);
    }

    // A stricter rule in the file, then SIGHUP: in force without a restart.
    std::fs::write(&file, catalog_rule("catalog-strict", 2)).unwrap();
    node.hangup();
    eventually_limited_by(&api, "catalog-strict").await;
    let in_force = rules(&api).await;
    assert_eq!(in_force[0]["name"], "catalog-strict");
    assert_eq!(in_force[0]["limit"], 2);

    // A refused rule, then a file that does not parse: each is logged at
    // warn, and the rules and their counts stay as they were.
    for bad in [
        catalog_rule("catalog-zero", 0),
        "[[rate_limits]\nname =".to_owned(),
    ] {
        let warned = hangup_warnings(&node);
        std::fs::write(&file, bad).unwrap();
        node.hangup();
        eventually(10, "the SIGHUP's warning", || async {
            (hangup_warnings(&node) > warned).then_some(())
        })
        .await;
        assert_eq!(rules(&api).await, in_force);
        let (status, detail) = list_products(&api).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert!(detail.contains("catalog-strict"), "{detail}");
    }
    // Still serving: the SIGHUPs did not end the process.
    assert_eq!(node.terminate().code(), Some(0));
}
