//! The framework's own rejections are problems too.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{admin, assert_problem, customer, spawn_app, spawn_app_with};

#[tokio::test]
async fn an_unknown_route_is_not_found() {
    let app = spawn_app().await;
    assert_problem(
        app.get("/api/v2/nothing", None).await,
        StatusCode::NOT_FOUND,
        "not-found",
    )
    .await;
}

#[tokio::test]
async fn a_known_route_with_another_method_is_method_not_allowed() {
    let app = spawn_app().await;
    let response = app
        .request(Method::DELETE, "/api/v1/products", None)
        .send()
        .await
        .unwrap();
    assert!(response.headers().get("allow").is_some());
    assert_problem(
        response,
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
    )
    .await;
}

#[tokio::test]
async fn unparseable_json_is_a_bad_request() {
    let app = spawn_app().await;
    let response = app
        .request(Method::POST, "/api/v1/products", Some(&admin()))
        .header("content-type", "application/json")
        .body("{\"sku\": ")
        .send()
        .await
        .unwrap();
    assert_problem(response, StatusCode::BAD_REQUEST, "bad-request").await;
}

#[tokio::test]
async fn a_body_that_is_not_json_is_an_unsupported_media_type() {
    let app = spawn_app().await;
    let response = app
        .request(Method::POST, "/api/v1/products", Some(&admin()))
        .header("content-type", "text/plain")
        .body("sku=1")
        .send()
        .await
        .unwrap();
    assert_problem(
        response,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported-media-type",
    )
    .await;
}

#[tokio::test]
async fn a_body_over_the_limit_is_refused_from_its_declared_length() {
    let app = spawn_app_with(|config| config.http.max_body_bytes = 4096).await;
    let sale = app.create_sale(5, 1, json!({})).await;
    let big = format!("{{\"quantity\": 1, \"pad\": \"{}\"}}", "x".repeat(10_000));
    let response = app
        .request(
            Method::POST,
            &format!("/api/v1/sales/{}/purchase", sale["id"].as_str().unwrap()),
            Some(&customer("alice")),
        )
        .header("Idempotency-Key", "k")
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_problem(response, StatusCode::PAYLOAD_TOO_LARGE, "payload-too-large").await;
    assert_eq!(app.sale(sale["id"].as_str().unwrap()).await["remaining"], 5);
}

#[tokio::test]
async fn a_chunked_body_over_the_limit_is_refused_too() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let app = spawn_app_with(|config| config.http.max_body_bytes = 4096).await;
    let mut stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let head = format!(
        "POST /api/v1/products HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        admin()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let chunk = format!("3e8\r\n{}\r\n", "x".repeat(1000));
    for _ in 0..20 {
        // The server may answer and close before the last chunk.
        if stream.write_all(chunk.as_bytes()).await.is_err() {
            break;
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("application/problem+json"), "{answer}");
    assert!(answer.contains("/problems/payload-too-large"), "{answer}");
}
