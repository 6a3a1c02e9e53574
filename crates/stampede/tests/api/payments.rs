//! Paying orders: the simulated provider confirms on the signed webhook; pay
//! and cancel exclude each other (I7).

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_problem, customer, eventually, spawn_app, spawn_app_with};

async fn bought(app: &TestApp, user: &str, quantity: u64) -> (String, String) {
    let sale = app.create_sale(100, 5, json!({})).await;
    let sale_id = sale["id"].as_str().unwrap().to_owned();
    let response = app.purchase(&customer(user), &sale_id, "k", quantity).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let order: Value = response.json().await.unwrap();
    (sale_id, order["id"].as_str().unwrap().to_owned())
}

#[tokio::test]
async fn a_paid_order_becomes_paid_when_the_provider_confirms() {
    let app = spawn_app().await;
    let (_, order) = bought(&app, "alice", 1).await;
    let response = app.pay(&customer("alice"), &order).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert_eq!(
        response.json::<Value>().await.unwrap()["status"],
        "awaiting_payment"
    );
    app.wait_for_status(&customer("alice"), &order, "paid")
        .await;
    let detail = app.detail(&customer("alice"), &order).await;
    let payments = detail["payments"].as_array().unwrap();
    assert_eq!(payments.len(), 1);
    assert_eq!(payments[0]["status"], "approved");
    assert!(
        payments[0]["provider_ref"]
            .as_str()
            .unwrap()
            .starts_with("sim_")
    );
    let types: Vec<&str> = detail["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "order.created",
            "payment.requested",
            "payment.submitted",
            "order.paid"
        ]
    );
    // Paid is final for pay and cancel alike.
    assert_problem(
        app.pay(&customer("alice"), &order).await,
        StatusCode::CONFLICT,
        "invalid-state",
    )
    .await;
    assert_problem(
        app.cancel(&customer("alice"), &order).await,
        StatusCode::CONFLICT,
        "invalid-state",
    )
    .await;
}

#[tokio::test]
async fn paying_again_while_a_payment_is_in_flight_starts_nothing_new() {
    let app =
        spawn_app_with(|config| config.payment_sim.confirm_delay = Duration::from_millis(500))
            .await;
    let (_, order) = bought(&app, "alice", 1).await;
    for _ in 0..3 {
        assert_eq!(
            app.pay(&customer("alice"), &order).await.status(),
            StatusCode::ACCEPTED
        );
    }
    app.wait_for_status(&customer("alice"), &order, "paid")
        .await;
    let detail = app.detail(&customer("alice"), &order).await;
    assert_eq!(detail["payments"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn a_cancelled_order_cannot_be_paid_and_others_orders_are_not_found() {
    let app = spawn_app().await;
    let (_, order) = bought(&app, "alice", 1).await;
    assert_problem(
        app.pay(&customer("bob"), &order).await,
        StatusCode::NOT_FOUND,
        "not-found",
    )
    .await;
    assert_eq!(
        app.cancel(&customer("alice"), &order).await.status(),
        StatusCode::OK
    );
    assert_problem(
        app.pay(&customer("alice"), &order).await,
        StatusCode::CONFLICT,
        "invalid-state",
    )
    .await;
}

#[tokio::test]
async fn a_declined_payment_leaves_the_order_payable() {
    let app = spawn_app_with(|config| config.payment_sim.decline_rate = 1.0).await;
    let (_, order) = bought(&app, "alice", 1).await;
    assert_eq!(
        app.pay(&customer("alice"), &order).await.status(),
        StatusCode::ACCEPTED
    );
    let declined = eventually(10, "the payment to be declined", || async {
        let detail = app.detail(&customer("alice"), &order).await;
        let payment = detail["payments"][0].clone();
        (payment["status"] == "declined").then_some(payment)
    })
    .await;
    assert_eq!(declined["reason"], "card declined (simulated)");
    assert_eq!(
        app.order(&customer("alice"), &order).await["status"],
        "awaiting_payment"
    );
    assert_eq!(
        app.pay(&customer("alice"), &order).await.status(),
        StatusCode::ACCEPTED
    );
}

#[tokio::test]
async fn the_payment_webhook_refuses_bad_signatures_and_replays_and_is_idempotent() {
    let app =
        spawn_app_with(|config| config.payment_sim.confirm_delay = Duration::from_millis(60_000))
            .await;
    let (_, order) = bought(&app, "alice", 1).await;
    assert_eq!(
        app.pay(&customer("alice"), &order).await.status(),
        StatusCode::ACCEPTED
    );
    let payment_id = eventually(10, "the payment to be submitted", || async {
        let detail = app.detail(&customer("alice"), &order).await;
        let payment = &detail["payments"][0];
        (payment["status"] == "submitted").then(|| payment["id"].as_str().unwrap().to_owned())
    })
    .await;
    let answer = json!({"payment_id": payment_id, "status": "approved", "provider_ref": "ref-1"});

    let unsigned = app
        .request(Method::POST, "/api/v1/payments/webhook", None)
        .json(&answer)
        .send()
        .await
        .unwrap();
    assert_problem(unsigned, StatusCode::UNAUTHORIZED, "unauthorized").await;
    let body = serde_json::to_vec(&answer).unwrap();
    let old = stampede_app::auth::signature::sign(
        crate::helpers::PAYMENT_SECRET.as_bytes(),
        &body,
        stampede_domain::time::Timestamp::now().plus_millis(-600_000),
    );
    let replayed = app
        .request(Method::POST, "/api/v1/payments/webhook", None)
        .header("stampede-signature", old)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_problem(replayed, StatusCode::UNAUTHORIZED, "unauthorized").await;
    assert_eq!(
        app.order(&customer("alice"), &order).await["status"],
        "awaiting_payment"
    );

    let first = app.provider_says(&answer).await;
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(first.json::<Value>().await.unwrap()["outcome"], "paid");
    let again = app.provider_says(&answer).await;
    assert_eq!(
        again.json::<Value>().await.unwrap()["outcome"],
        "already_settled"
    );
    let unknown = app
        .provider_says(
            &json!({"payment_id": "0190c2a1-0000-7000-8000-000000000000", "status": "approved"}),
        )
        .await;
    assert_problem(unknown, StatusCode::NOT_FOUND, "not-found").await;
    let events = app.detail(&customer("alice"), &order).await["events"].clone();
    let paid = events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "order.paid")
        .count();
    assert_eq!(
        paid, 1,
        "one order.paid however often the provider repeats itself"
    );
}

#[tokio::test]
async fn pay_and_cancel_race_and_exactly_one_wins_every_time() {
    // The provider never confirms by itself: the test plays it, racing the cancel.
    let app =
        spawn_app_with(|config| config.payment_sim.confirm_delay = Duration::from_millis(600_000))
            .await;
    let sale = app.create_sale(1_000, 1_000, json!({})).await;
    let sale_id = sale["id"].as_str().unwrap().to_owned();
    let (mut paid, mut cancelled) = (0, 0);
    for round in 0..40 {
        let response = app
            .purchase(&customer("racer"), &sale_id, &format!("k{round}"), 2)
            .await;
        let order = response.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(
            app.pay(&customer("racer"), &order).await.status(),
            StatusCode::ACCEPTED
        );
        let payment_id = eventually(10, "the payment to be submitted", || async {
            let detail = app.detail(&customer("racer"), &order).await;
            let payment = &detail["payments"][0];
            (payment["status"] == "submitted").then(|| payment["id"].as_str().unwrap().to_owned())
        })
        .await;
        let approval = json!({"payment_id": payment_id, "status": "approved", "provider_ref": format!("r{round}")});
        let token = customer("racer");
        let (confirm, cancel) =
            tokio::join!(app.provider_says(&approval), app.cancel(&token, &order));
        let outcome = confirm.json::<Value>().await.unwrap()["outcome"]
            .as_str()
            .unwrap()
            .to_owned();
        let order_now = app.order(&token, &order).await;
        let payment = app.detail(&token, &order).await["payments"][0].clone();
        match order_now["status"].as_str().unwrap() {
            "paid" => {
                paid += 1;
                assert_eq!(outcome, "paid");
                assert_eq!(cancel.status(), StatusCode::CONFLICT);
                assert_eq!(payment["refund_required"], false);
            }
            "cancelled" => {
                cancelled += 1;
                assert_eq!(outcome, "refund_required");
                assert_eq!(cancel.status(), StatusCode::OK);
                assert_eq!(payment["status"], "approved");
                assert_eq!(payment["refund_required"], true);
            }
            other => panic!("round {round}: order ended {other}"),
        }
    }
    // Stock is consistent: paid orders hold their units, cancelled ones gave them back once.
    let stats = app.stats(&sale_id).await;
    assert_eq!(stats["sold"], 2 * paid);
    assert_eq!(stats["remaining"], 1_000 - 2 * paid);
    assert_eq!(stats["orders"]["paid"], paid);
    assert_eq!(stats["orders"]["cancelled"], cancelled);
    eprintln!("pay won {paid} times, cancel {cancelled} times");
}

#[tokio::test]
async fn a_failing_provider_opens_its_breaker_and_pay_fails_fast() {
    let app = spawn_app_with(|config| {
        config.payment_sim.error_rate = 1.0;
        config.payment.breaker.wait_in_open = Duration::from_secs(60);
    })
    .await;
    let sale = app.create_sale(100, 100, json!({})).await;
    let sale_id = sale["id"].as_str().unwrap().to_owned();
    // Each payment is tried a few times and fails; the breaker counts them.
    let mut orders = Vec::new();
    for i in 0..12 {
        let order: Value = app
            .purchase(&customer("alice"), &sale_id, &format!("k{i}"), 1)
            .await
            .json()
            .await
            .unwrap();
        orders.push(order["id"].as_str().unwrap().to_owned());
    }
    for order in &orders {
        let status = app.pay(&customer("alice"), order).await.status();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            break;
        }
        assert_eq!(status, StatusCode::ACCEPTED);
    }
    let refused = eventually(20, "the breaker to open", || async {
        let response = app.pay(&customer("alice"), &orders[orders.len() - 1]).await;
        (response.status() == StatusCode::SERVICE_UNAVAILABLE).then_some(response)
    })
    .await;
    assert!(refused.headers().get("retry-after").is_some());
    assert_problem(refused, StatusCode::SERVICE_UNAVAILABLE, "unavailable").await;
    let metrics = app.get("/metrics", None).await.text().await.unwrap();
    assert!(
        metrics.contains(r#"stampede_breaker_state{breaker="payment_provider"} 1"#),
        "{metrics}"
    );
    // Purchases are unaffected.
    assert_eq!(
        app.purchase(&customer("bob"), &sale_id, "b", 1)
            .await
            .status(),
        StatusCode::ACCEPTED
    );
    // The failed attempts are recorded; the order stays payable once the provider recovers.
    let detail = eventually(20, "the first payment to fail", || async {
        let detail = app.detail(&customer("alice"), &orders[0]).await;
        (detail["payments"][0]["status"] == "failed").then_some(detail)
    })
    .await;
    assert_eq!(detail["order"]["status"], "awaiting_payment");
}
