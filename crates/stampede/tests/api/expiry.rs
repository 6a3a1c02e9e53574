//! Unpaid orders expire when their payment window passes, and their stock
//! comes back exactly once (I6).

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{assert_problem, customer, spawn_app};

#[tokio::test]
async fn an_unpaid_order_expires_with_its_window_and_its_stock_comes_back_once() {
    let app = spawn_app().await;
    let sale = app
        .create_sale(3, 3, json!({"payment_window_secs": 1}))
        .await;
    let sale_id = sale["id"].as_str().unwrap();
    let order: Value = app
        .purchase(&customer("alice"), sale_id, "k", 3)
        .await
        .json()
        .await
        .unwrap();
    let id = order["id"].as_str().unwrap();
    assert_eq!(app.sale(sale_id).await["remaining"], 0);

    let expired = app
        .wait_for_status(&customer("alice"), id, "cancelled")
        .await;
    // Back by the time the new status can be read.
    assert_eq!(app.sale(sale_id).await["remaining"], 3);
    let now = stampede_domain::time::Timestamp::now().to_rfc3339();
    assert!(expired["expires_at"].as_str().unwrap() <= now.as_str());
    let types: Vec<String> = app.detail(&customer("alice"), id).await["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(types, ["order.created", "order.expired"]);
    // It stays expired, and the stock stays counted once.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let stats = app.stats(sale_id).await;
    assert_eq!(stats["remaining"], 3);
    assert_eq!(stats["sold"], 0);
    assert_eq!(stats["orders"]["cancelled"], 1);
    // An expired order cannot be paid; its units can be bought again.
    assert_problem(
        app.pay(&customer("alice"), id).await,
        StatusCode::CONFLICT,
        "invalid-state",
    )
    .await;
    assert_eq!(
        app.purchase(&customer("bob"), sale_id, "k", 3)
            .await
            .status(),
        StatusCode::ACCEPTED
    );
}

#[tokio::test]
async fn a_paid_order_never_expires() {
    let app = spawn_app().await;
    let sale = app
        .create_sale(2, 2, json!({"payment_window_secs": 1}))
        .await;
    let sale_id = sale["id"].as_str().unwrap();
    let order: Value = app
        .purchase(&customer("alice"), sale_id, "k", 1)
        .await
        .json()
        .await
        .unwrap();
    let id = order["id"].as_str().unwrap();
    assert_eq!(
        app.pay(&customer("alice"), id).await.status(),
        StatusCode::ACCEPTED
    );
    app.wait_for_status(&customer("alice"), id, "paid").await;
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(app.order(&customer("alice"), id).await["status"], "paid");
    assert_eq!(app.sale(sale_id).await["remaining"], 1);
}
