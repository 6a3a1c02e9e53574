//! The rate-limit rules replaced while serving (`/api/v1/admin/rate-limits`,
//! docs/api.md §3.7): read back as configured, replaced mid-crowd, refused
//! whole when one rule is bad, and unchanged rules keep their counts.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, admin, assert_problem, customer, spawn_app_with_http_file};

const RULES: &str = "/api/v1/admin/rate-limits";

/// `limit` purchases a minute per user, on each node: a user who spent
/// them stays limited for the whole test.
fn per_user_file(limit: u32) -> String {
    format!(
        r#"
[[rate_limits]]
name = "per-user"
key = "user"
routes = ["POST /api/v1/sales/{{id}}/purchase"]
limit = {limit}
period_ms = 60000
backend = "local"
"#
    )
}

/// [`per_user_file`]'s rule as the API writes it.
fn per_user(limit: u32) -> Value {
    json!({
        "name": "per-user", "key": "user", "routes": ["POST /api/v1/sales/{id}/purchase"],
        "algorithm": "gcra", "limit": limit, "period_ms": 60000, "burst": null,
        "max_wait_ms": null, "backend": "local", "fallback": null,
    })
}

async fn put(app: &TestApp, token: &str, body: &Value) -> Response {
    app.request(Method::PUT, RULES, Some(token))
        .json(body)
        .send()
        .await
        .unwrap()
}

async fn rules_in_force(app: &TestApp) -> Value {
    let response = app.get(RULES, Some(&admin())).await;
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

/// A sale nobody runs out of.
async fn big_sale(app: &TestApp) -> String {
    let sale = app.create_sale(1_000_000, 1_000_000, json!({})).await;
    sale["id"].as_str().unwrap().to_owned()
}

/// The status of a purchase of one unit by `user` with a fresh key, and
/// the rule a 429 names.
async fn buy(app: &TestApp, user: &str, sale: &str) -> (StatusCode, String) {
    let key = crate::helpers::uuid_like();
    let response = app.purchase(&customer(user), sale, &key, 1).await;
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    (
        status,
        body["detail"].as_str().unwrap_or_default().to_owned(),
    )
}

#[tokio::test]
async fn admins_read_the_configured_rules_and_a_stricter_set_limits_a_crowd_at_once() {
    let app = Arc::new(spawn_app_with_http_file(&per_user_file(100)).await);
    assert_eq!(rules_in_force(&app).await, json!([per_user(100)]));
    assert_problem(
        app.get(RULES, Some(&customer("alice"))).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    let sale = big_sale(&app).await;

    // A crowd of six buyers, each within its own per-user budget; once the
    // new set is in force, everyone together gets one purchase a minute.
    let replaced = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for n in 0..6 {
        let (app, sale, replaced, sent) =
            (app.clone(), sale.clone(), replaced.clone(), sent.clone());
        clients.push(tokio::spawn(async move {
            let mut answers = Vec::new();
            let mut after = 0;
            while after < 4 {
                // Sent after the PUT was answered: the new set decides it.
                let new_set = replaced.load(Ordering::SeqCst);
                // Two each before, within the old per-user budget.
                if !new_set && answers.len() == 2 {
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                    continue;
                }
                let answer = buy(&app, &format!("crowd-{n}"), &sale).await;
                sent.fetch_add(1, Ordering::SeqCst);
                after += usize::from(new_set);
                answers.push((new_set, answer));
            }
            answers
        }));
    }
    crate::helpers::eventually(10, "the crowd's first purchases", || async {
        (sent.load(Ordering::SeqCst) >= 12).then_some(())
    })
    .await;
    let stricter = json!([per_user(100), {
        "name": "crowd-cap", "key": "global", "routes": ["POST /api/v1/sales/{id}/purchase"],
        "limit": 1, "period_ms": 60000, "backend": "local",
    }]);
    let response = put(&app, &admin(), &stricter).await;
    assert_eq!(response.status(), StatusCode::OK);
    let answered: Value = response.json().await.unwrap();
    replaced.store(true, Ordering::SeqCst);
    assert_eq!(answered.as_array().unwrap().len(), 2);
    assert_eq!(answered[1]["name"], "crowd-cap");
    assert_eq!(rules_in_force(&app).await, answered);

    let (mut before, mut admitted_after, mut capped_after) = (Vec::new(), 0, 0);
    for client in clients {
        for (new_set, (status, detail)) in client.await.unwrap() {
            match new_set {
                false => before.push(status),
                true if status == StatusCode::ACCEPTED => admitted_after += 1,
                true => {
                    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{detail}");
                    // Every buyer is within its own budget: the new rule refused.
                    assert!(detail.contains("crowd-cap"), "{detail}");
                    capped_after += 1;
                }
            }
        }
    }
    assert!(
        before.iter().all(|s| *s == StatusCode::ACCEPTED),
        "{before:?}"
    );
    // All twelve before were answered before the PUT was sent; of the
    // twenty-four after, the new rule's one slot went to one.
    assert_eq!(admitted_after, 1, "admitted after the PUT");
    assert_eq!(capped_after, 23);
}

#[tokio::test]
async fn a_set_with_one_bad_rule_is_refused_naming_it_and_nothing_changes() {
    let app = spawn_app_with_http_file(&per_user_file(2)).await;
    let good = json!({"name": "per-ip", "key": "ip", "limit": 100});
    let with = |bad: Value| json!([good, bad]);
    let bad_sets = [
        (
            with(json!({"name": "zero", "key": "ip", "limit": 0})),
            "rules[1].limit",
        ),
        (
            with(
                json!({"name": "lost", "key": "ip", "limit": 5, "routes": ["GET /api/v1/nowhere"]}),
            ),
            "rules[1].routes",
        ),
        (
            with(json!({"name": "typo", "key": "ip", "limit": 5, "routes": ["purchase"]})),
            "rules[1].routes",
        ),
        (
            with(json!({"name": "per-ip", "key": "user", "limit": 5})),
            "rules[1].name",
        ),
        (
            with(json!({"name": "x", "key": "ip", "lmit": 5})),
            "rules[1]",
        ),
        (with(json!(["x", "ip", ["*"]])), "rules[1]"),
        (json!({"name": "x", "key": "ip", "limit": 5}), "rules"),
        (
            Value::Array(
                (0..65)
                    .map(|i| json!({"name": format!("r{i}"), "key": "ip", "limit": 5}))
                    .collect(),
            ),
            "rules",
        ),
    ];
    for (body, field) in &bad_sets {
        let response = put(&app, &admin(), body).await;
        let problem =
            assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "validation").await;
        assert_eq!(problem["errors"][0]["field"], *field, "{problem}");
    }
    if app.redis.is_none() {
        // No shared store on this node: a shared rule cannot run.
        let shared = with(json!({"name": "s", "key": "ip", "limit": 5, "backend": "shared"}));
        let problem = assert_problem(
            put(&app, &admin(), &shared).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation",
        )
        .await;
        assert_eq!(problem["errors"][0]["field"], "rules[1].backend");
    }
    assert_problem(
        put(&app, &customer("alice"), &json!([good])).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;

    // The old set, as it was, and as it behaves.
    assert_eq!(rules_in_force(&app).await, json!([per_user(2)]));
    let sale = big_sale(&app).await;
    for _ in 0..2 {
        assert_eq!(buy(&app, "alice", &sale).await.0, StatusCode::ACCEPTED);
    }
    let (status, detail) = buy(&app, "alice", &sale).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert!(detail.contains("per-user"), "{detail}");
}

#[tokio::test]
async fn unchanged_rules_keep_their_counts_across_a_replacement() {
    let app = spawn_app_with_http_file(&per_user_file(2)).await;
    let sale = big_sale(&app).await;
    for _ in 0..2 {
        assert_eq!(buy(&app, "alice", &sale).await.0, StatusCode::ACCEPTED);
    }
    assert_eq!(
        buy(&app, "alice", &sale).await.0,
        StatusCode::TOO_MANY_REQUESTS
    );

    // The set read back, with an unrelated rule added: alice's budget stays
    // spent, bob's is whole.
    let mut rules = rules_in_force(&app).await;
    rules.as_array_mut().unwrap().push(
        json!({"name": "catalog", "key": "ip", "routes": ["GET /api/v1/products"], "limit": 1000}),
    );
    let response = put(&app, &admin(), &rules).await;
    assert_eq!(response.status(), StatusCode::OK);
    let (status, detail) = buy(&app, "alice", &sale).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{detail}");
    assert!(detail.contains("per-user"), "{detail}");
    assert_eq!(buy(&app, "bob", &sale).await.0, StatusCode::ACCEPTED);

    // The per-user rule itself changed: a new rule, a fresh budget.
    rules[0]["limit"] = json!(3);
    let response = put(&app, &admin(), &rules).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(buy(&app, "alice", &sale).await.0, StatusCode::ACCEPTED);

    let metrics = app.get("/metrics", None).await.text().await.unwrap();
    let changes = metrics
        .lines()
        .find(|line| line.starts_with(r#"stampede_rate_limit_rule_changes_total{source="api"}"#))
        .and_then(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .unwrap_or_default();
    assert!(changes >= 2.0, "{changes}");
}
