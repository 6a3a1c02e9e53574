use std::collections::{HashMap, HashSet};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{admin, assert_problem, customer, eventually, spawn_app, spawn_app_with};

#[tokio::test]
async fn a_winning_purchase_is_accepted_with_the_order_and_its_location() {
    let app = spawn_app().await;
    let sale = app
        .create_sale(10, 2, json!({"payment_window_secs": 60}))
        .await;
    let sale_id = sale["id"].as_str().unwrap();
    let response = app.purchase(&customer("alice"), sale_id, "key-1", 2).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert_eq!(response.headers()["idempotent-replayed"], "false");
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let order: Value = response.json().await.unwrap();
    assert_eq!(
        location,
        format!("/api/v1/orders/{}", order["id"].as_str().unwrap())
    );
    assert_eq!(order["user_id"], "alice");
    assert_eq!(order["sale_id"], sale["id"]);
    assert_eq!(order["product_id"], sale["product_id"]);
    assert_eq!(order["quantity"], 2);
    assert_eq!(order["amount_cents"], 2 * 49900);
    assert_eq!(order["currency"], "EUR");
    assert_eq!(order["status"], "awaiting_payment");
    assert!(order["expires_at"].as_str().unwrap() > order["created_at"].as_str().unwrap());
    // It exists from the moment the 202 is sent.
    let read: Value = app
        .get(&location, Some(&customer("alice")))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(read, order);
    assert_eq!(app.sale(sale_id).await["remaining"], 8);
}

#[tokio::test]
async fn a_retry_with_the_same_key_gets_the_same_order_and_takes_nothing() {
    let app = spawn_app().await;
    let sale = app.create_sale(10, 5, json!({})).await;
    let id = sale["id"].as_str().unwrap();
    let first: Value = app
        .purchase(&customer("alice"), id, "same", 1)
        .await
        .json()
        .await
        .unwrap();
    let retry = app.purchase(&customer("alice"), id, "same", 1).await;
    assert_eq!(retry.status(), StatusCode::ACCEPTED);
    assert_eq!(retry.headers()["idempotent-replayed"], "true");
    let second: Value = retry.json().await.unwrap();
    assert_eq!(second["id"], first["id"]);
    assert_eq!(app.sale(id).await["remaining"], 9);
    assert_eq!(app.stats(id).await["sold"], 1);
}

#[tokio::test]
async fn the_same_key_with_another_body_or_sale_is_an_idempotency_mismatch() {
    let app = spawn_app().await;
    let one = app.create_sale(10, 5, json!({})).await;
    let two = app.create_sale(10, 5, json!({})).await;
    let (one, two) = (one["id"].as_str().unwrap(), two["id"].as_str().unwrap());
    assert_eq!(
        app.purchase(&customer("alice"), one, "k", 1).await.status(),
        StatusCode::ACCEPTED
    );
    let other_quantity = app.purchase(&customer("alice"), one, "k", 2).await;
    assert_problem(
        other_quantity,
        StatusCode::UNPROCESSABLE_ENTITY,
        "idempotency-mismatch",
    )
    .await;
    let other_sale = app.purchase(&customer("alice"), two, "k", 1).await;
    assert_problem(
        other_sale,
        StatusCode::UNPROCESSABLE_ENTITY,
        "idempotency-mismatch",
    )
    .await;
    assert_eq!(app.sale(two).await["remaining"], 10);
}

#[tokio::test]
async fn keys_belong_to_their_user() {
    let app = spawn_app().await;
    let sale = app.create_sale(10, 1, json!({})).await;
    let id = sale["id"].as_str().unwrap();
    let a: Value = app
        .purchase(&customer("alice"), id, "shared", 1)
        .await
        .json()
        .await
        .unwrap();
    let b: Value = app
        .purchase(&customer("bob"), id, "shared", 1)
        .await
        .json()
        .await
        .unwrap();
    assert_ne!(a["id"], b["id"]);
    assert_eq!(app.sale(id).await["remaining"], 8);
}

#[tokio::test]
async fn a_sold_out_sale_refuses_and_remembers_the_refusal() {
    let app = spawn_app().await;
    let sale = app.create_sale(1, 1, json!({})).await;
    let id = sale["id"].as_str().unwrap();
    let won: Value = app
        .purchase(&customer("alice"), id, "a", 1)
        .await
        .json()
        .await
        .unwrap();
    let refused = app.purchase(&customer("bob"), id, "b", 1).await;
    assert_problem(refused, StatusCode::CONFLICT, "sold-out").await;
    assert_eq!(app.sale(id).await["status"], "sold_out");
    // Stock comes back; bob's remembered refusal stays a refusal, a new key wins.
    let cancel = app
        .request(
            Method::POST,
            &format!("/api/v1/orders/{}/cancel", won["id"].as_str().unwrap()),
            Some(&customer("alice")),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(cancel.status(), StatusCode::OK);
    assert_problem(
        app.purchase(&customer("bob"), id, "b", 1).await,
        StatusCode::CONFLICT,
        "sold-out",
    )
    .await;
    assert_eq!(
        app.purchase(&customer("bob"), id, "b2", 1).await.status(),
        StatusCode::ACCEPTED
    );
}

#[tokio::test]
async fn the_per_user_limit_holds_across_purchases() {
    let app = spawn_app().await;
    let sale = app.create_sale(10, 2, json!({})).await;
    let id = sale["id"].as_str().unwrap();
    assert_problem(
        app.purchase(&customer("alice"), id, "big", 3).await,
        StatusCode::CONFLICT,
        "limit-exceeded",
    )
    .await;
    assert_eq!(
        app.purchase(&customer("alice"), id, "one", 1)
            .await
            .status(),
        StatusCode::ACCEPTED
    );
    assert_eq!(
        app.purchase(&customer("alice"), id, "two", 1)
            .await
            .status(),
        StatusCode::ACCEPTED
    );
    assert_problem(
        app.purchase(&customer("alice"), id, "three", 1).await,
        StatusCode::CONFLICT,
        "limit-exceeded",
    )
    .await;
    assert_eq!(app.sale(id).await["remaining"], 8);
}

#[tokio::test]
async fn a_sale_before_its_start_or_after_its_end_is_not_active() {
    let app = spawn_app().await;
    let later = app
        .create_sale(5, 1, json!({"starts_at": "2999-01-01T00:00:00Z"}))
        .await;
    let response = app
        .purchase(&customer("alice"), later["id"].as_str().unwrap(), "k", 1)
        .await;
    assert_problem(response, StatusCode::CONFLICT, "sale-not-active").await;

    let ends_at = stampede_domain::time::Timestamp::now()
        .plus_millis(300)
        .to_rfc3339();
    let brief = app.create_sale(5, 1, json!({"ends_at": ends_at})).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let brief_id = brief["id"].as_str().unwrap();
    assert_problem(
        app.purchase(&customer("alice"), brief_id, "k2", 1).await,
        StatusCode::CONFLICT,
        "sale-not-active",
    )
    .await;
    assert_eq!(app.sale(brief_id).await["status"], "ended");
}

#[tokio::test]
async fn a_missing_or_malformed_idempotency_key_is_a_bad_request() {
    let app = spawn_app().await;
    let sale = app.create_sale(5, 1, json!({})).await;
    let path = format!("/api/v1/sales/{}/purchase", sale["id"].as_str().unwrap());
    let missing = app
        .request(Method::POST, &path, Some(&customer("alice")))
        .json(&json!({"quantity": 1}))
        .send()
        .await
        .unwrap();
    assert_problem(missing, StatusCode::BAD_REQUEST, "bad-request").await;
    let too_long = app
        .purchase(
            &customer("alice"),
            sale["id"].as_str().unwrap(),
            &"k".repeat(129),
            1,
        )
        .await;
    assert_problem(too_long, StatusCode::BAD_REQUEST, "bad-request").await;
}

#[tokio::test]
async fn an_invalid_quantity_is_refused_and_not_remembered() {
    let app = spawn_app().await;
    let sale = app.create_sale(5, 1, json!({})).await;
    let id = sale["id"].as_str().unwrap();
    let zero = app.purchase(&customer("alice"), id, "k", 0).await;
    assert_problem(zero, StatusCode::UNPROCESSABLE_ENTITY, "validation").await;
    // Fixed and retried with the same key, it is decided afresh.
    assert_eq!(
        app.purchase(&customer("alice"), id, "k", 1).await.status(),
        StatusCode::ACCEPTED
    );
}

#[tokio::test]
async fn a_body_that_is_not_an_object_or_has_unknown_members_buys_nothing() {
    let app = spawn_app().await;
    let sale = app.create_sale(5, 5, json!({})).await;
    let id = sale["id"].as_str().unwrap();
    for (key, body) in [
        ("k1", json!([])),
        ("k2", json!([5])),
        ("k3", json!(5)),
        ("k4", json!({"quantity": 1, "quantiy": 5})),
    ] {
        let response = app
            .request(
                Method::POST,
                &format!("/api/v1/sales/{id}/purchase"),
                Some(&customer("alice")),
            )
            .header("Idempotency-Key", key)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "validation").await;
    }
    assert_eq!(app.sale(id).await["remaining"], 5);
    let product = app
        .post(
            "/api/v1/products",
            Some(&admin()),
            &json!({"sku": "S-1", "name": "n", "price_cents": 1, "currency": "EUR", "colour": "red"}),
        )
        .await;
    assert_problem(product, StatusCode::UNPROCESSABLE_ENTITY, "validation").await;
}

#[tokio::test]
async fn purchases_of_unknown_sales_are_not_found() {
    let app = spawn_app().await;
    for id in ["0190c2a1-0000-7000-8000-000000000000", "nope"] {
        let response = app.purchase(&customer("alice"), id, "k", 1).await;
        assert_problem(response, StatusCode::NOT_FOUND, "not-found").await;
    }
}

#[tokio::test]
async fn a_crowd_buys_exactly_the_stock_and_nobody_passes_the_limit() {
    let app = spawn_app().await;
    let sale = app.create_sale(50, 2, json!({})).await;
    let id = sale["id"].as_str().unwrap().to_owned();
    let mut tasks = Vec::new();
    for user in 0..120 {
        for attempt in 0..3 {
            let client = app.client.clone();
            let url = app.url(&format!("/api/v1/sales/{id}/purchase"));
            let token = customer(&format!("user-{user}"));
            tasks.push(tokio::spawn(async move {
                let response = client
                    .post(url)
                    .bearer_auth(token)
                    .header("Idempotency-Key", format!("k{attempt}"))
                    .json(&json!({"quantity": 1}))
                    .send()
                    .await
                    .unwrap();
                let status = response.status();
                let body: Value = response.json().await.unwrap();
                (user, status, body)
            }));
        }
    }
    let mut per_user: HashMap<u32, u32> = HashMap::new();
    let mut orders = HashSet::new();
    for task in tasks {
        let (user, status, body) = task.await.unwrap();
        match status {
            StatusCode::ACCEPTED => {
                *per_user.entry(user).or_default() += 1;
                assert!(orders.insert(body["id"].as_str().unwrap().to_owned()));
            }
            StatusCode::CONFLICT => {
                let slug = body["type"].as_str().unwrap();
                assert!(
                    slug.ends_with("/sold-out") || slug.ends_with("/limit-exceeded"),
                    "{body}"
                );
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(orders.len(), 50, "the whole stock is sold, and no more");
    assert!(per_user.values().all(|n| *n <= 2));
    let stats = app.stats(&id).await;
    assert_eq!(stats["sold"], 50);
    assert_eq!(stats["remaining"], 0);
}

#[tokio::test]
async fn concurrent_requests_with_one_key_create_one_order() {
    let app = spawn_app().await;
    let sale = app.create_sale(100, 10, json!({})).await;
    let id = sale["id"].as_str().unwrap().to_owned();
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let client = app.client.clone();
        let url = app.url(&format!("/api/v1/sales/{id}/purchase"));
        tasks.push(tokio::spawn(async move {
            let response = client
                .post(url)
                .bearer_auth(customer("alice"))
                .header("Idempotency-Key", "one-key")
                .json(&json!({"quantity": 1}))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::ACCEPTED);
            let body: Value = response.json().await.unwrap();
            body["id"].as_str().unwrap().to_owned()
        }));
    }
    let mut ids = HashSet::new();
    for task in tasks {
        ids.insert(task.await.unwrap());
    }
    assert_eq!(ids.len(), 1);
    assert_eq!(app.stats(&id).await["sold"], 1);
}

#[tokio::test]
async fn a_full_commit_queue_answers_overloaded_and_gives_the_units_back() {
    // One commit worker and a queue of one: a burst overflows it.
    let app = spawn_app_with(|config| {
        config.commit.queue_capacity = 1;
        config.commit.workers = 1;
        config.commit.max_batch = 1;
    })
    .await;
    let sale = app.create_sale(10_000, 1, json!({})).await;
    let id = sale["id"].as_str().unwrap().to_owned();
    let mut tasks = Vec::new();
    for user in 0..200 {
        let client = app.client.clone();
        let url = app.url(&format!("/api/v1/sales/{id}/purchase"));
        tasks.push(tokio::spawn(async move {
            let response = client
                .post(url)
                .bearer_auth(customer(&format!("u{user}")))
                .header("Idempotency-Key", "k")
                .json(&json!({"quantity": 1}))
                .send()
                .await
                .unwrap();
            let retry_after = response.headers().get("retry-after").is_some();
            (
                response.status(),
                retry_after,
                response.json::<Value>().await.unwrap(),
            )
        }));
    }
    let (mut won, mut overloaded) = (0u64, 0u64);
    for task in tasks {
        let (status, retry_after, body) = task.await.unwrap();
        match status {
            StatusCode::ACCEPTED => won += 1,
            StatusCode::SERVICE_UNAVAILABLE => {
                assert!(retry_after);
                assert!(
                    body["type"].as_str().unwrap().ends_with("/overloaded"),
                    "{body}"
                );
                overloaded += 1;
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert!(overloaded > 0, "the burst should overflow a queue of one");
    // Refused units were given back: the ledger agrees with the store.
    let stats = app.stats(&id).await;
    assert_eq!(stats["sold"], won);
    assert_eq!(stats["remaining"], 10_000 - won);
}

/// One deadline budget at the commit queue: a purchase whose deadline
/// cannot hold a commit (here, 2 ms against the queue's first estimate of
/// 5 ms) is refused before it is queued, and buys nothing. Queued anyway
/// (without the budget), it would commit after its client was told 503.
#[tokio::test]
async fn a_purchase_whose_deadline_cannot_hold_a_commit_is_refused_before_the_queue() {
    let app = spawn_app().await;
    let sale = app.create_sale(1_000, 1, json!({})).await;
    let id = sale["id"].as_str().unwrap();
    let response = app
        .request(
            Method::POST,
            &format!("/api/v1/sales/{id}/purchase"),
            Some(&customer("hasty")),
        )
        .header("Idempotency-Key", "k")
        .header("Request-Timeout", "0.002")
        .json(&json!({"quantity": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let problem: Value = response.json().await.unwrap();
    // Refused at the queue; or, on a machine too slow to reach the queue
    // within 2 ms, by the deadline before it.
    let slug = problem["type"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap();
    match slug {
        "overloaded" => assert!(
            problem["detail"].as_str().unwrap().contains("deadline"),
            "{problem}"
        ),
        "unavailable" => eprintln!("the deadline passed before the queue: {problem}"),
        other => panic!("{other}: {problem}"),
    }
    // Nothing was sold to it, now or later; a retry with time is decided
    // afresh and wins.
    // (In cluster mode a request cut off by its deadline inside the Redis
    // decision leaves a reservation there: the reconciler takes it back.)
    tokio::time::sleep(Duration::from_millis(300)).await;
    eventually(10, "every unit back in the ledger", || async {
        (app.sale(id).await["remaining"] == 1_000).then_some(())
    })
    .await;
    assert_eq!(app.stats(id).await["sold"], 0);
    let retry = app.purchase(&customer("hasty"), id, "k", 1).await;
    assert_eq!(retry.status(), StatusCode::ACCEPTED);
}

#[tokio::test]
async fn a_crowd_far_larger_than_the_stock_behind_a_one_per_unit_gate_buys_exactly_the_stock() {
    // One attempt deciding or committing per unit left: most of the crowd
    // waits in line, and is answered at once when the sale sells out.
    let app = spawn_app_with(|config| config.commit.attempts_per_unit = 1).await;
    let sale = app.create_sale(10, 1, json!({})).await;
    let id = sale["id"].as_str().unwrap().to_owned();
    // The gate reads the stock at the next poll of the sale-sync worker.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let app = std::sync::Arc::new(app);
    let tasks: Vec<_> = (0..300)
        .map(|user| {
            let (app, id) = (app.clone(), id.clone());
            tokio::spawn(async move {
                let token = customer(&format!("gated-{user}"));
                let response = app.purchase(&token, &id, "k", 1).await;
                let status = response.status();
                (status, response.json::<Value>().await.unwrap())
            })
        })
        .collect();
    let mut won = 0;
    for task in tasks {
        let (status, body) = task.await.unwrap();
        match status {
            StatusCode::ACCEPTED => won += 1,
            StatusCode::CONFLICT => assert!(body["type"].as_str().unwrap().ends_with("/sold-out")),
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(won, 10, "the whole stock is sold, and no more");
    let stats = app.stats(&id).await;
    assert_eq!(
        (stats["sold"].as_u64(), stats["remaining"].as_u64()),
        (Some(10), Some(0))
    );
    let metrics = app.get("/metrics", None).await.text().await.unwrap();
    assert!(
        metrics.contains("stampede_sale_gate_waits_total"),
        "{metrics}"
    );
}
