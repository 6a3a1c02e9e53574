use reqwest::{Method, StatusCode};
use serde_json::json;
use stampede::cli::TokenRole;
use stampede_app::auth::JwtKey;
use stampede_domain::account::Role;
use stampede_domain::ids::UserId;

use crate::helpers::{admin, assert_problem, customer, spawn_app, token};

#[tokio::test]
async fn a_purchase_without_a_token_is_unauthorized_with_a_bearer_challenge() {
    let app = spawn_app().await;
    let sale = app.create_sale(10, 1, json!({})).await;
    let response = app
        .request(
            Method::POST,
            &format!("/api/v1/sales/{}/purchase", sale["id"].as_str().unwrap()),
            None,
        )
        .header("Idempotency-Key", "k1")
        .json(&json!({"quantity": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    assert_problem(response, StatusCode::UNAUTHORIZED, "unauthorized").await;
}

#[tokio::test]
async fn forged_expired_and_malformed_tokens_are_unauthorized() {
    let app = spawn_app().await;
    let user = UserId::parse("mallory").unwrap();
    let forged = JwtKey::new(b"not the server secret").sign(&user, Role::Admin, i64::MAX / 2);
    let expired = JwtKey::new(crate::helpers::SECRET.as_bytes()).sign(&user, Role::Admin, 1_000);
    // Signed with the server's secret, but valid for ever.
    let eternal = JwtKey::new(crate::helpers::SECRET.as_bytes()).sign(&user, Role::Admin, i64::MAX);
    for bad in [
        forged.as_str(),
        expired.as_str(),
        eternal.as_str(),
        "garbage",
        "a.b.c",
    ] {
        let response = app.get("/api/v1/orders", Some(bad)).await;
        assert_problem(response, StatusCode::UNAUTHORIZED, "unauthorized").await;
    }
    let basic = app
        .request(Method::GET, "/api/v1/orders", None)
        .header("Authorization", "Basic YWxhZGRpbjpvcGVuc2VzYW1l")
        .send()
        .await
        .unwrap();
    assert_problem(basic, StatusCode::UNAUTHORIZED, "unauthorized").await;
}

#[tokio::test]
async fn a_customer_cannot_use_admin_routes() {
    let app = spawn_app().await;
    let response = app
        .post(
            "/api/v1/products",
            Some(&customer("alice")),
            &json!({"sku": "S", "name": "n", "price_cents": 1, "currency": "EUR"}),
        )
        .await;
    assert_problem(response, StatusCode::FORBIDDEN, "forbidden").await;
}

#[tokio::test]
async fn an_admin_token_cannot_buy() {
    let app = spawn_app().await;
    let sale = app.create_sale(10, 1, json!({})).await;
    let response = app
        .purchase(&admin(), sale["id"].as_str().unwrap(), "k", 1)
        .await;
    assert_problem(response, StatusCode::FORBIDDEN, "forbidden").await;
}

#[tokio::test]
async fn credentials_are_checked_before_the_body_is_looked_at() {
    let app = spawn_app().await;
    let no_token = app
        .request(Method::POST, "/api/v1/products", None)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_problem(no_token, StatusCode::UNAUTHORIZED, "unauthorized").await;
    let wrong_role = app
        .request(
            Method::POST,
            "/api/v1/products",
            Some(&token("bob", TokenRole::Customer)),
        )
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_problem(wrong_role, StatusCode::FORBIDDEN, "forbidden").await;
}
