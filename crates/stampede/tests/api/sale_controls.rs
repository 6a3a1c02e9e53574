//! An admin's live controls of a sale (docs/api.md §3.2): pause, resume and
//! end; a new end or limit; units added or withdrawn. Each answers the sale
//! as it is after, is one outbox event, and keeps the stock's books:
//! `quantity − sold = remaining` at rest, withdrawn units never sold.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, admin, assert_problem, customer, eventually, spawn_app, uuid_like};

impl TestApp {
    /// `POST /api/v1/sales/{id}/<control>` with `body`, as an admin.
    async fn control(&self, sale: &str, control: &str, body: Option<Value>) -> reqwest::Response {
        let mut request = self.request(
            Method::POST,
            &format!("/api/v1/sales/{sale}/{control}"),
            Some(&admin()),
        );
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.unwrap()
    }

    /// A control that must succeed; the sale it answers.
    async fn controlled(&self, sale: &str, control: &str, body: Option<Value>) -> Value {
        let response = self.control(sale, control, body).await;
        assert_eq!(response.status(), StatusCode::OK, "{control}");
        response.json().await.unwrap()
    }

    async fn patch_sale(&self, sale: &str, body: &Value) -> reqwest::Response {
        self.request(
            Method::PATCH,
            &format!("/api/v1/sales/{sale}"),
            Some(&admin()),
        )
        .json(body)
        .send()
        .await
        .unwrap()
    }

    /// How many outbox events of `event_type` name `sale` (counted by a
    /// no-op update: `sql` answers the rows it touched).
    async fn sale_events(&self, sale: &str, event_type: &str) -> u64 {
        let statement = format!(
            "UPDATE outbox SET event_type = event_type WHERE aggregate_id = $1 AND event_type = '{event_type}'"
        );
        self.sql(&statement, sale).await
    }
}

fn id(sale: &Value) -> String {
    sale["id"].as_str().unwrap().to_owned()
}

/// The stock's books at rest: what is left is what was put on sale less
/// what is sold.
async fn assert_books_balance(app: &TestApp, sale: &str) -> Value {
    let stats = app.stats(sale).await;
    let (quantity, sold, remaining) = (
        stats["quantity"].as_u64().unwrap(),
        stats["sold"].as_u64().unwrap(),
        stats["remaining"].as_u64().unwrap(),
    );
    assert_eq!(quantity - sold, remaining, "{stats}");
    stats
}

#[tokio::test]
async fn a_paused_sale_answers_sale_paused_and_a_retry_after_resume_is_decided_afresh() {
    let app = spawn_app().await;
    let sale = id(&app.create_sale(5, 1, json!({})).await);
    let paused = app.controlled(&sale, "pause", None).await;
    assert_eq!(paused["status"], "paused");
    assert_eq!(paused["version"], 2);
    assert_eq!(app.sale(&sale).await["status"], "paused");

    let key = uuid_like();
    for _ in 0..2 {
        let refused = app.purchase(&customer("alice"), &sale, &key, 1).await;
        assert_problem(refused, StatusCode::CONFLICT, "sale-paused").await;
    }
    // Pausing again changes nothing.
    assert_eq!(app.controlled(&sale, "pause", None).await["version"], 2);

    let resumed = app.controlled(&sale, "resume", None).await;
    assert_eq!(resumed["status"], "active");
    assert_eq!(resumed["version"], 3);
    let won = app.purchase(&customer("alice"), &sale, &key, 1).await;
    assert_eq!(
        won.status(),
        StatusCode::ACCEPTED,
        "the pause was remembered"
    );
    assert_eq!(app.sale_events(&sale, "sale.paused").await, 1);
    assert_eq!(app.sale_events(&sale, "sale.resumed").await, 1);
}

#[tokio::test]
async fn an_ended_sale_refuses_purchases_and_every_control_but_end() {
    let app = spawn_app().await;
    let sale = id(&app.create_sale(5, 1, json!({})).await);
    let ended = app.controlled(&sale, "end", None).await;
    assert_eq!(ended["status"], "ended");
    assert!(ended["ends_at"].is_string(), "{ended}");
    let refused = app.purchase(&customer("bob"), &sale, &uuid_like(), 1).await;
    assert_problem(refused, StatusCode::CONFLICT, "sale-not-active").await;

    for (control, body) in [
        ("pause", None),
        ("resume", None),
        ("stock", Some(json!({"add": 3}))),
    ] {
        let response = app.control(&sale, control, body).await;
        assert_problem(response, StatusCode::CONFLICT, "sale-not-active").await;
    }
    let patched = app.patch_sale(&sale, &json!({"ends_at": null})).await;
    assert_problem(patched, StatusCode::CONFLICT, "sale-not-active").await;
    // Ending again is a no-op, not an error.
    assert_eq!(app.controlled(&sale, "end", None).await["version"], 2);
    assert_eq!(app.sale_events(&sale, "sale.ended").await, 1);
}

#[tokio::test]
async fn added_units_sell_at_once_and_withdrawn_ones_never_do() {
    let app = spawn_app().await;
    let sale = id(&app.create_sale(3, 10, json!({})).await);
    let bought = app
        .purchase(&customer("carol"), &sale, &uuid_like(), 2)
        .await;
    assert_eq!(bought.status(), StatusCode::ACCEPTED);

    let added = app
        .controlled(&sale, "stock", Some(json!({"add": 4})))
        .await;
    assert_eq!(
        (added["quantity"].as_u64(), added["remaining"].as_u64()),
        (Some(7), Some(5))
    );
    assert_books_balance(&app, &sale).await;

    // Two of the five unsold units leave; three stay.
    let withdrawn = app
        .controlled(&sale, "stock", Some(json!({"withdraw": 2})))
        .await;
    assert_eq!(
        (
            withdrawn["quantity"].as_u64(),
            withdrawn["remaining"].as_u64()
        ),
        (Some(5), Some(3))
    );
    // More than are unsold: refused, nothing changed.
    let version = withdrawn["version"].clone();
    let refused = app
        .control(&sale, "stock", Some(json!({"withdraw": 4})))
        .await;
    assert_problem(refused, StatusCode::CONFLICT, "insufficient-stock").await;
    let after = app.sale(&sale).await;
    assert_eq!(
        (after["quantity"].as_u64(), after["version"].clone()),
        (Some(5), version)
    );
    assert_eq!(app.sale_events(&sale, "sale.stock_withdrawn").await, 1);

    // The three left sell; the withdrawn two do not.
    let last = app
        .purchase(&customer("dave"), &sale, &uuid_like(), 3)
        .await;
    assert_eq!(last.status(), StatusCode::ACCEPTED);
    let none = app
        .purchase(&customer("erin"), &sale, &uuid_like(), 1)
        .await;
    assert_problem(none, StatusCode::CONFLICT, "sold-out").await;
    let stats = assert_books_balance(&app, &sale).await;
    assert_eq!(
        (stats["quantity"].as_u64(), stats["sold"].as_u64()),
        (Some(5), Some(5))
    );
    // Every unsold unit can leave, down to a sale of what is sold.
    let sold_out = app
        .control(&sale, "stock", Some(json!({"withdraw": 1})))
        .await;
    assert_problem(sold_out, StatusCode::CONFLICT, "insufficient-stock").await;
}

#[tokio::test]
async fn a_new_limit_and_a_new_end_apply_to_the_next_purchase() {
    let app = spawn_app().await;
    let sale = id(&app.create_sale(10, 1, json!({})).await);
    let first = app.purchase(&customer("fay"), &sale, &uuid_like(), 1).await;
    assert_eq!(first.status(), StatusCode::ACCEPTED);
    let over = app.purchase(&customer("fay"), &sale, &uuid_like(), 1).await;
    assert_problem(over, StatusCode::CONFLICT, "limit-exceeded").await;

    let response = app.patch_sale(&sale, &json!({"per_user_limit": 2})).await;
    assert_eq!(response.status(), StatusCode::OK);
    let raised: Value = response.json().await.unwrap();
    assert_eq!(raised["per_user_limit"], 2);
    let second = app.purchase(&customer("fay"), &sale, &uuid_like(), 1).await;
    assert_eq!(second.status(), StatusCode::ACCEPTED);

    let soon = stampede_domain::time::Timestamp::now().plus_millis(400);
    let response = app
        .patch_sale(&sale, &json!({"ends_at": soon.to_rfc3339()}))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    eventually(5, "the new end to pass", || async {
        (app.sale(&sale).await["status"] == "ended").then_some(())
    })
    .await;
    let late = app.purchase(&customer("gus"), &sale, &uuid_like(), 1).await;
    assert_problem(late, StatusCode::CONFLICT, "sale-not-active").await;
    assert_eq!(app.sale_events(&sale, "sale.amended").await, 2);
}

#[tokio::test]
async fn bad_control_bodies_are_validation_problems_and_change_nothing() {
    let app = spawn_app().await;
    let sale = id(&app.create_sale(5, 1, json!({})).await);
    for body in [
        json!({}),
        json!({"add": 1, "withdraw": 1}),
        json!({"add": 0}),
        json!({"withdraw": -1}),
        json!({"add": 1_000_000_000}),
        json!({"add": "3"}),
    ] {
        let response = app.control(&sale, "stock", Some(body.clone())).await;
        let status = response.status();
        assert!(
            status == StatusCode::UNPROCESSABLE_ENTITY || status == StatusCode::BAD_REQUEST,
            "{body}: {status}"
        );
    }
    for body in [
        json!({}),
        json!({"per_user_limit": 0}),
        json!({"ends_at": "yesterday"}),
        json!({"ends_at": "2001-01-01T00:00:00Z"}),
        json!({"price_cents": 1}),
    ] {
        let status = app.patch_sale(&sale, &body).await.status();
        assert!(
            status == StatusCode::UNPROCESSABLE_ENTITY || status == StatusCode::BAD_REQUEST,
            "{body}: {status}"
        );
    }
    let unknown = app.control(&uuid_like(), "pause", None).await;
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    let after = app.sale(&sale).await;
    assert_eq!(
        (after["version"].as_u64(), after["quantity"].as_u64()),
        (Some(1), Some(5))
    );
    assert_eq!(app.sale_events(&sale, "sale.amended").await, 0);
}

#[tokio::test]
async fn a_change_on_record_that_no_ledger_took_is_applied_by_the_next_poll() {
    // As if the node that made it died between the store and the ledger.
    let app = spawn_app().await;
    let sale = id(&app.create_sale(2, 5, json!({})).await);
    let changed = app
        .sql(
            "UPDATE sales SET quantity = quantity + 3, remaining = remaining + 3, \
             version = version + 1 WHERE id = $1",
            &sale,
        )
        .await;
    assert_eq!(changed, 1);
    eventually(10, "the poll to apply version 2", || async {
        let now = app.sale(&sale).await;
        (now["version"] == 2 && now["remaining"] == 5).then_some(())
    })
    .await;
    let five = app.purchase(&customer("hal"), &sale, &uuid_like(), 5).await;
    assert_eq!(five.status(), StatusCode::ACCEPTED);
    assert_books_balance(&app, &sale).await;
}

#[tokio::test]
async fn controls_raced_against_a_crowd_keep_the_books() {
    let app = spawn_app().await;
    let sale = id(&app.create_sale(40, 2, json!({})).await);
    let app = std::sync::Arc::new(app);
    let mut crowd = Vec::new();
    for buyer in 0..150 {
        let (app, sale) = (app.clone(), sale.clone());
        crowd.push(tokio::spawn(async move {
            let user = customer(&format!("crowd-{buyer}"));
            let mut answers = Vec::new();
            for _ in 0..2 {
                let response = app.purchase(&user, &sale, &uuid_like(), 1).await;
                let status = response.status();
                let body: Value = response.json().await.unwrap();
                answers.push((status, body));
            }
            answers
        }));
    }
    // The controls, one after another, while the crowd buys.
    let controls = [
        ("stock", Some(json!({"add": 30}))),
        ("pause", None),
        ("resume", None),
        ("stock", Some(json!({"withdraw": 10}))),
        ("stock", Some(json!({"add": 5}))),
    ];
    for (control, body) in controls {
        let status = app.control(&sale, control, body).await.status();
        // A withdrawal may meet units the crowd has bought.
        assert!(
            status == StatusCode::OK || status == StatusCode::CONFLICT,
            "{control}: {status}"
        );
    }
    let limit = app.patch_sale(&sale, &json!({"per_user_limit": 1})).await;
    assert_eq!(limit.status(), StatusCode::OK);

    let mut won = 0;
    for task in crowd {
        for (status, body) in task.await.unwrap() {
            match status {
                StatusCode::ACCEPTED => won += 1,
                StatusCode::CONFLICT => {
                    let slug = body["type"]
                        .as_str()
                        .unwrap()
                        .rsplit('/')
                        .next()
                        .unwrap()
                        .to_owned();
                    let known = ["sold-out", "sale-paused", "limit-exceeded"];
                    assert!(known.contains(&slug.as_str()), "{body}");
                }
                // Shed under the crowd: nothing sold to it.
                StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS => {}
                other => panic!("unexpected {other}: {body}"),
            }
        }
    }
    let stats = eventually(10, "the books to balance", || async {
        let stats = app.stats(&sale).await;
        let (q, s, r) = (
            stats["quantity"].as_u64().unwrap(),
            stats["sold"].as_u64().unwrap(),
            stats["remaining"].as_u64().unwrap(),
        );
        (q - s == r).then_some(stats)
    })
    .await;
    assert_eq!(stats["sold"].as_u64().unwrap(), won, "{stats}");
    assert!(
        won <= stats["quantity"].as_u64().unwrap(),
        "oversold: {stats}"
    );
}

#[tokio::test]
async fn if_match_applies_a_control_only_to_the_version_it_names() {
    let app = spawn_app().await;
    let sale = id(&app.create_sale(5, 1, json!({})).await);
    let read = app.get(&format!("/api/v1/sales/{sale}"), None).await;
    assert_eq!(read.headers()["etag"], "\"1\"");

    // A retry of an addition whose answer was lost: the second names a
    // version that is gone, and adds nothing.
    let add = |version: &'static str| {
        app.request(
            Method::POST,
            &format!("/api/v1/sales/{sale}/stock"),
            Some(&admin()),
        )
        .header("If-Match", version)
        .json(&json!({"add": 3}))
        .send()
    };
    let first = add("\"1\"").await.unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(first.headers()["etag"], "\"2\"");
    let retry = add("\"1\"").await.unwrap();
    let problem = assert_problem(
        retry,
        StatusCode::PRECONDITION_FAILED,
        "precondition-failed",
    )
    .await;
    assert!(
        problem["detail"].as_str().unwrap().contains("\"2\""),
        "{problem}"
    );
    assert_eq!(app.sale(&sale).await["quantity"], 8);

    let malformed = add("soon").await.unwrap();
    assert_problem(malformed, StatusCode::BAD_REQUEST, "bad-request").await;
    let bare = add("2").await.unwrap();
    assert_eq!(
        bare.status(),
        StatusCode::OK,
        "an unquoted version is read too"
    );
    assert_eq!(app.sale(&sale).await["quantity"], 11);
}
