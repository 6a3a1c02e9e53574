use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{assert_problem, spawn_app};

#[tokio::test]
async fn a_registered_user_logs_in_and_buys_with_the_session_token() {
    let app = spawn_app().await;
    let response = app
        .post(
            "/api/v1/users",
            None,
            &json!({"email": "Ada@Example.com", "password": "correct horse"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let user: Value = response.json().await.unwrap();
    assert_eq!(user["email"], "ada@example.com");
    assert!(user.get("password_hash").is_none());

    let response = app
        .post(
            "/api/v1/sessions",
            None,
            &json!({"email": "ada@example.com", "password": "correct horse"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let session: Value = response.json().await.unwrap();
    let token = session["token"].as_str().unwrap();
    assert!(session["expires_at"].as_str().unwrap().ends_with('Z'));

    let sale = app.create_sale(5, 1, json!({})).await;
    let order: Value = app
        .purchase(token, sale["id"].as_str().unwrap(), "k", 1)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(order["user_id"], user["id"]);
}

#[tokio::test]
async fn an_email_registers_once() {
    let app = spawn_app().await;
    let body = json!({"email": "ada@example.com", "password": "correct horse"});
    assert_eq!(
        app.post("/api/v1/users", None, &body).await.status(),
        StatusCode::CREATED
    );
    let again = json!({"email": "ADA@example.com", "password": "another password"});
    assert_problem(
        app.post("/api/v1/users", None, &again).await,
        StatusCode::CONFLICT,
        "conflict",
    )
    .await;
}

#[tokio::test]
async fn bad_registrations_name_the_field() {
    let app = spawn_app().await;
    for (body, field) in [
        (
            json!({"email": "nope", "password": "correct horse"}),
            "email",
        ),
        (
            json!({"email": "ada@example.com", "password": "short"}),
            "password",
        ),
    ] {
        let problem = assert_problem(
            app.post("/api/v1/users", None, &body).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation",
        )
        .await;
        assert_eq!(problem["errors"][0]["field"], field);
    }
}

#[tokio::test]
async fn wrong_passwords_and_unknown_emails_are_unauthorized_alike() {
    let app = spawn_app().await;
    app.post(
        "/api/v1/users",
        None,
        &json!({"email": "ada@example.com", "password": "correct horse"}),
    )
    .await;
    let wrong = app
        .post(
            "/api/v1/sessions",
            None,
            &json!({"email": "ada@example.com", "password": "wrong horse"}),
        )
        .await;
    let wrong = assert_problem(wrong, StatusCode::UNAUTHORIZED, "unauthorized").await;
    let unknown = app
        .post(
            "/api/v1/sessions",
            None,
            &json!({"email": "bob@example.com", "password": "wrong horse"}),
        )
        .await;
    let unknown = assert_problem(unknown, StatusCode::UNAUTHORIZED, "unauthorized").await;
    assert_eq!(wrong, unknown);
}
