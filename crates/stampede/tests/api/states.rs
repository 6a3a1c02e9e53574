//! Answers that need the server in a particular state: a paid order, a
//! draining node, corrupt data.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{assert_problem, customer, spawn_app};

#[tokio::test]
async fn a_paid_order_cannot_be_cancelled() {
    let app = spawn_app().await;
    let sale = app.create_sale(5, 1, json!({})).await;
    let id = sale["id"].as_str().unwrap();
    let order: Value = app
        .purchase(&customer("alice"), id, "k", 1)
        .await
        .json()
        .await
        .unwrap();
    let order_id = order["id"].as_str().unwrap();
    assert_eq!(
        app.sql("UPDATE orders SET status = 'paid' WHERE id = $1", order_id)
            .await,
        1
    );
    let response = app
        .request(
            Method::POST,
            &format!("/api/v1/orders/{order_id}/cancel"),
            Some(&customer("alice")),
        )
        .send()
        .await
        .unwrap();
    assert_problem(response, StatusCode::CONFLICT, "invalid-state").await;
    assert_eq!(app.sale(id).await["remaining"], 4);
}

#[tokio::test]
async fn a_draining_node_refuses_purchases_and_fails_readiness() {
    let app = spawn_app().await;
    let sale = app.create_sale(5, 1, json!({})).await;
    let id = sale["id"].as_str().unwrap();
    app.app.lifecycle.start_draining();
    let response = app.purchase(&customer("alice"), id, "k", 1).await;
    assert!(response.headers().get("retry-after").is_some());
    assert_problem(response, StatusCode::SERVICE_UNAVAILABLE, "unavailable").await;
    let ready = app.get("/readyz", None).await;
    assert_problem(ready, StatusCode::SERVICE_UNAVAILABLE, "unavailable").await;
    assert_eq!(app.get("/livez", None).await.status(), StatusCode::OK);
    // Not remembered: 503 asks the client to come back.
    assert_eq!(app.sale(id).await["remaining"], 5);
}

#[tokio::test]
async fn corrupt_data_is_an_internal_error_that_reveals_nothing() {
    let app = spawn_app().await;
    let product = app.create_product("CORRUPT").await;
    let id = product["id"].as_str().unwrap();
    assert_eq!(
        app.sql(
            "UPDATE products SET currency = 'not a currency' WHERE id = $1",
            id
        )
        .await,
        1
    );
    let response = app.get(&format!("/api/v1/products/{id}"), None).await;
    let problem = assert_problem(response, StatusCode::INTERNAL_SERVER_ERROR, "internal").await;
    let text = problem.to_string();
    assert!(
        !text.contains("currency") && !text.contains("products"),
        "{text}"
    );
}
