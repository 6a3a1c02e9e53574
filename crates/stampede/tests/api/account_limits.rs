//! The built-in limits on logins and registrations per client address
//! (docs/design.md §8.2): apart from the rate-limit rules, which cannot
//! change them. Clients are told apart by `X-Forwarded-For` from the test's
//! own address, made a trusted proxy.

use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_problem, spawn_app_with, spawn_app_with_http_file};

const PROXY: &str = "127.0.0.1";

async fn post_from(app: &TestApp, client: &str, path: &str, body: &Value) -> Response {
    app.request(Method::POST, path, None)
        .header("x-forwarded-for", client)
        .json(body)
        .send()
        .await
        .unwrap()
}

async fn login(app: &TestApp, client: &str, password: &str) -> StatusCode {
    let body = json!({"email": "ada@example.com", "password": password});
    post_from(app, client, "/api/v1/sessions", &body)
        .await
        .status()
}

async fn register_ada(app: &TestApp) {
    let body = json!({"email": "ada@example.com", "password": "correct horse"});
    let response = post_from(app, "192.0.2.1", "/api/v1/users", &body).await;
    assert_eq!(response.status(), StatusCode::CREATED);
}

/// Ten failures from `client` pass; the eleventh is refused.
async fn spend_the_login_budget(app: &TestApp, client: &str) {
    for _ in 0..10 {
        assert_eq!(
            login(app, client, "wrong horse").await,
            StatusCode::UNAUTHORIZED
        );
    }
    let body = json!({"email": "ada@example.com", "password": "wrong horse"});
    let refused = post_from(app, client, "/api/v1/sessions", &body).await;
    let headers = refused.headers().clone();
    let problem = assert_problem(refused, StatusCode::TOO_MANY_REQUESTS, "rate-limited").await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("login-failures")
    );
    // One slot frees every six seconds after the first failure (less the
    // time the ten took).
    let retry_after: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=6).contains(&retry_after), "{retry_after}");
    assert_eq!(headers["ratelimit-policy"], r#""login-failures";q=10;w=60"#);
    assert_eq!(
        headers["ratelimit"].to_str().unwrap(),
        format!(r#""login-failures";r=0;t={retry_after}"#)
    );
}

fn metric(text: &str, line_start: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(line_start))
        .map(|value| value.trim().parse().unwrap())
}

#[tokio::test]
async fn the_eleventh_failed_login_is_refused_even_with_the_right_password_and_only_for_that_address()
 {
    let app = spawn_app_with(|config| config.http.trusted_proxies = Some(PROXY.into())).await;
    const REFUSED: &str = r#"stampede_http_account_limited_total{limit="login"} "#;
    let metrics = app.get("/metrics", None).await.text().await.unwrap();
    // Registered at start; other tests in this process may have counted.
    let before = metric(&metrics, REFUSED).expect("the counter is registered at start");
    register_ada(&app).await;
    // Successful logins do not count.
    for _ in 0..15 {
        assert_eq!(
            login(&app, "198.51.100.1", "correct horse").await,
            StatusCode::CREATED
        );
    }
    spend_the_login_budget(&app, "198.51.100.1").await;
    assert_eq!(
        login(&app, "198.51.100.1", "correct horse").await,
        StatusCode::TOO_MANY_REQUESTS
    );
    // Another address is not affected, nor the proxy's own.
    assert_eq!(
        login(&app, "198.51.100.2", "correct horse").await,
        StatusCode::CREATED
    );
    let direct = json!({"email": "ada@example.com", "password": "correct horse"});
    assert_eq!(
        app.post("/api/v1/sessions", None, &direct).await.status(),
        StatusCode::CREATED
    );
    let metrics = app.get("/metrics", None).await.text().await.unwrap();
    assert!(
        metric(&metrics, REFUSED).unwrap() >= before + 2.0,
        "{metrics}"
    );
}

#[tokio::test]
async fn neither_the_rule_file_nor_rate_limits_off_lift_the_login_limit() {
    let app = spawn_app_with_http_file(
        r#"trusted_proxies = "127.0.0.1"

[[rate_limits]]
name = "login-failures"
key = "ip"
routes = ["POST /api/v1/sessions"]
limit = 1000
period_ms = 60000
"#,
    )
    .await;
    register_ada(&app).await;
    spend_the_login_budget(&app, "198.51.100.1").await;
    drop(app);

    let app = spawn_app_with(|config| {
        config.http.trusted_proxies = Some(PROXY.into());
        config.http.rate_limits = stampede_http::config::LimitRules::Off;
    })
    .await;
    register_ada(&app).await;
    spend_the_login_budget(&app, "198.51.100.1").await;
}

#[tokio::test]
async fn registrations_are_limited_per_address_and_zero_turns_the_login_limit_off() {
    let app = spawn_app_with(|config| {
        config.http.trusted_proxies = Some(PROXY.into());
        config.http.registrations_per_hour = 3;
        config.http.login_failures_per_min = 0;
    })
    .await;
    let register = |client: &'static str, email: &'static str| {
        let body = json!({"email": email, "password": "correct horse"});
        let app = &app;
        async move { post_from(app, client, "/api/v1/users", &body).await }
    };
    // Invalid input costs nothing; created and taken e-mails count.
    assert_eq!(
        register("198.51.100.1", "not an e-mail").await.status(),
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(
        register("198.51.100.1", "a@example.com").await.status(),
        StatusCode::CREATED
    );
    assert_eq!(
        register("198.51.100.1", "b@example.com").await.status(),
        StatusCode::CREATED
    );
    assert_eq!(
        register("198.51.100.1", "a@example.com").await.status(),
        StatusCode::CONFLICT
    );
    let refused = register("198.51.100.1", "c@example.com").await;
    let retry_after: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    // A slot frees 20 minutes after the first registration.
    assert!((1100..=1200).contains(&retry_after), "{retry_after}");
    let problem = assert_problem(refused, StatusCode::TOO_MANY_REQUESTS, "rate-limited").await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("registrations")
    );
    // Refused means not created: the e-mail is free for another address.
    assert_eq!(
        register("198.51.100.2", "c@example.com").await.status(),
        StatusCode::CREATED
    );
    // With the login limit off, failures go on being answered 401.
    for _ in 0..15 {
        let body = json!({"email": "a@example.com", "password": "wrong horse"});
        assert_eq!(
            post_from(&app, "198.51.100.1", "/api/v1/sessions", &body)
                .await
                .status(),
            StatusCode::UNAUTHORIZED
        );
    }
}
