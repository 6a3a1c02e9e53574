use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{admin, assert_problem, spawn_app};

#[tokio::test]
async fn an_admin_creates_a_product_that_anyone_can_read() {
    let app = spawn_app().await;
    let response = app
        .post(
            "/api/v1/products",
            Some(&admin()),
            &json!({"sku": "PHONE-1", "name": "Phone", "price_cents": 49900, "currency": "EUR"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let product: Value = response.json().await.unwrap();
    assert_eq!(
        location,
        format!("/api/v1/products/{}", product["id"].as_str().unwrap())
    );
    assert_eq!(product["sku"], "PHONE-1");
    assert_eq!(product["price_cents"], 49900);
    assert_eq!(product["currency"], "EUR");
    assert!(product["created_at"].as_str().unwrap().ends_with('Z'));

    let read: Value = app.get(&location, None).await.json().await.unwrap();
    assert_eq!(read, product);
}

#[tokio::test]
async fn a_duplicate_sku_is_a_conflict() {
    let app = spawn_app().await;
    app.create_product("DUP").await;
    let response = app
        .post(
            "/api/v1/products",
            Some(&admin()),
            &json!({"sku": "DUP", "name": "Other", "price_cents": 1, "currency": "EUR"}),
        )
        .await;
    assert_problem(response, StatusCode::CONFLICT, "conflict").await;
}

#[tokio::test]
async fn invalid_product_fields_are_named_in_a_validation_problem() {
    let app = spawn_app().await;
    let cases = [
        (
            json!({"sku": "", "name": "n", "price_cents": 1, "currency": "EUR"}),
            "sku",
        ),
        (
            json!({"sku": "A", "name": " ", "price_cents": 1, "currency": "EUR"}),
            "name",
        ),
        (
            json!({"sku": "A", "name": "n", "price_cents": -5, "currency": "EUR"}),
            "price_cents",
        ),
        (
            json!({"sku": "A", "name": "n", "price_cents": 1, "currency": "euro"}),
            "currency",
        ),
    ];
    for (body, field) in cases {
        let response = app.post("/api/v1/products", Some(&admin()), &body).await;
        let problem =
            assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "validation").await;
        assert_eq!(problem["errors"][0]["field"], field, "{problem}");
    }
    let wrong_type = app
        .post(
            "/api/v1/products",
            Some(&admin()),
            &json!({"sku": "A", "name": "n", "price_cents": "lots", "currency": "EUR"}),
        )
        .await;
    assert_problem(wrong_type, StatusCode::UNPROCESSABLE_ENTITY, "validation").await;
}

#[tokio::test]
async fn products_page_in_creation_order_with_a_cursor() {
    let app = spawn_app().await;
    for i in 0..5 {
        app.create_product(&format!("P{i}")).await;
    }
    let first: Value = app
        .get("/api/v1/products?limit=2", None)
        .await
        .json()
        .await
        .unwrap();
    let skus = |page: &Value| -> Vec<String> {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["sku"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(skus(&first), ["P0", "P1"]);
    let cursor = first["next_cursor"].as_str().unwrap();
    let second: Value = app
        .get(&format!("/api/v1/products?limit=2&cursor={cursor}"), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(skus(&second), ["P2", "P3"]);
    let cursor = second["next_cursor"].as_str().unwrap();
    let last: Value = app
        .get(&format!("/api/v1/products?limit=2&cursor={cursor}"), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(skus(&last), ["P4"]);
    assert!(last["next_cursor"].is_null());
}

#[tokio::test]
async fn bad_paging_parameters_are_validation_problems() {
    let app = spawn_app().await;
    for query in ["limit=0", "limit=101", "limit=ten", "cursor=nope"] {
        let response = app.get(&format!("/api/v1/products?{query}"), None).await;
        assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "validation").await;
    }
}

#[tokio::test]
async fn unknown_and_impossible_ids_are_not_found() {
    let app = spawn_app().await;
    for path in [
        "/api/v1/products/0190c2a1-0000-7000-8000-000000000000",
        "/api/v1/products/not-an-id",
        "/api/v1/sales/0190c2a1-0000-7000-8000-000000000000",
        "/api/v1/sales/42",
    ] {
        assert_problem(
            app.get(path, None).await,
            StatusCode::NOT_FOUND,
            "not-found",
        )
        .await;
    }
}

#[tokio::test]
async fn a_sale_takes_defaults_and_shows_live_numbers() {
    let app = spawn_app().await;
    let sale = app.create_sale(100, 2, json!({})).await;
    assert_eq!(sale["quantity"], 100);
    assert_eq!(sale["remaining"], 100);
    assert_eq!(sale["per_user_limit"], 2);
    assert_eq!(sale["payment_window_secs"], 900);
    assert_eq!(sale["price_cents"], 49900);
    assert_eq!(sale["currency"], "EUR");
    assert_eq!(sale["status"], "active");
    assert!(sale["ends_at"].is_null());
    let read = app.sale(sale["id"].as_str().unwrap()).await;
    assert_eq!(read, sale);
}

#[tokio::test]
async fn a_sale_that_starts_later_is_scheduled() {
    let app = spawn_app().await;
    let sale = app
        .create_sale(
            5,
            1,
            json!({"starts_at": "2999-01-01T00:00:00Z", "price_cents": 100}),
        )
        .await;
    assert_eq!(sale["status"], "scheduled");
    assert_eq!(sale["price_cents"], 100);
    assert_eq!(sale["starts_at"], "2999-01-01T00:00:00.000Z");
}

#[tokio::test]
async fn invalid_sales_are_refused_with_the_field_named() {
    let app = spawn_app().await;
    let product = app.create_product("SALE-P").await;
    let pid = product["id"].clone();
    let cases = [
        (
            json!({"product_id": "0190c2a1-0000-7000-8000-000000000000", "quantity": 1}),
            "product_id",
        ),
        (json!({"product_id": "nope", "quantity": 1}), "product_id"),
        (json!({"product_id": pid, "quantity": 0}), "quantity"),
        (
            json!({"product_id": pid, "quantity": 1, "per_user_limit": 0}),
            "per_user_limit",
        ),
        (
            json!({"product_id": pid, "quantity": 1, "starts_at": "soon"}),
            "starts_at",
        ),
        (
            json!({"product_id": pid, "quantity": 1, "ends_at": "2000-01-01T00:00:00Z"}),
            "ends_at",
        ),
        (
            json!({"product_id": pid, "quantity": 1, "payment_window_secs": 0}),
            "payment_window_secs",
        ),
    ];
    for (body, field) in cases {
        let response = app.post("/api/v1/sales", Some(&admin()), &body).await;
        let problem =
            assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "validation").await;
        assert_eq!(problem["errors"][0]["field"], field, "{problem}");
    }
}

#[tokio::test]
async fn stats_count_orders_by_status_for_admins_only() {
    let app = spawn_app().await;
    let sale = app.create_sale(10, 3, json!({})).await;
    let id = sale["id"].as_str().unwrap();
    let alice = crate::helpers::customer("alice");
    assert_eq!(
        app.purchase(&alice, id, "a1", 2).await.status(),
        StatusCode::ACCEPTED
    );
    let stats = app.stats(id).await;
    assert_eq!(stats["quantity"], 10);
    assert_eq!(stats["remaining"], 8);
    assert_eq!(stats["sold"], 2);
    assert_eq!(stats["orders"]["awaiting_payment"], 1);
    assert_eq!(stats["orders"]["cancelled"], 0);
    let response = app
        .get(&format!("/api/v1/sales/{id}/stats"), Some(&alice))
        .await;
    assert_problem(response, StatusCode::FORBIDDEN, "forbidden").await;
}
