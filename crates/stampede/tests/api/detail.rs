//! `GET /api/v1/orders/{id}/detail`: fan-out/fan-in with graceful degradation.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{admin, assert_problem, customer, spawn_app};

#[tokio::test]
async fn the_detail_gathers_the_order_product_sale_payments_and_events() {
    let app = spawn_app().await;
    let (sale, order) = app.sale_and_order("alice").await;
    let id = order["id"].as_str().unwrap();
    let detail = app.detail(&customer("alice"), id).await;
    assert_eq!(detail["order"], order);
    assert_eq!(detail["product"]["id"], sale["product_id"]);
    assert_eq!(detail["sale"]["id"], sale["id"]);
    assert_eq!(detail["sale"]["remaining"], 4);
    assert_eq!(detail["payments"], json!([]));
    assert_eq!(detail["events"][0]["type"], "order.created");
    assert_eq!(detail["degraded"], json!([]));
    assert_eq!(app.detail(&admin(), id).await["order"]["id"], id);
}

#[tokio::test]
async fn a_failing_soft_part_degrades_the_view_and_a_missing_order_fails_it() {
    let app = spawn_app().await;
    let (sale, order) = app.sale_and_order("alice").await;
    let id = order["id"].as_str().unwrap();
    // Break the product behind the server's back: its part fails, the rest stands.
    let product_id = sale["product_id"].as_str().unwrap();
    let sql = "UPDATE products SET currency = 'broken' WHERE id = $1";
    assert_eq!(app.sql(sql, product_id).await, 1);
    let detail = app.detail(&customer("alice"), id).await;
    assert!(detail["product"].is_null());
    assert_eq!(detail["degraded"], json!(["product"]));
    assert_eq!(detail["order"]["id"], id);
    assert_eq!(detail["sale"]["id"], sale["id"]);

    let response = app
        .get(
            &format!("/api/v1/orders/{id}/detail"),
            Some(&customer("bob")),
        )
        .await;
    assert_problem(response, StatusCode::NOT_FOUND, "not-found").await;
}
