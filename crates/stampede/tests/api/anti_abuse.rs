//! Anti-abuse hooks end to end (docs/api.md §3.3, "Purchase tokens"): a
//! purchase token issued only shortly before the start, a proof of work and a
//! captcha checked by a real HTTP stand-in of the provider, and purchases
//! refused without the buyer's own token.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::routing::post;
use reqwest::StatusCode;
use serde_json::{Value, json};
use stampede::config::Secret;
use stampede_app::abuse::{AbuseSettings, pow};

use crate::helpers::{TestApp, assert_problem, customer, spawn_app_with};

/// A captcha provider on a socket: `solved` answers pass; records forms.
async fn provider() -> (String, Arc<Mutex<Vec<String>>>) {
    let forms = Arc::new(Mutex::new(Vec::new()));
    let seen = forms.clone();
    let app = Router::new().route(
        "/siteverify",
        post(move |body: String| {
            let seen = seen.clone();
            async move {
                let success = body.contains("response=solved");
                seen.lock().unwrap().push(body);
                format!(r#"{{"success":{success}}}"#)
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/siteverify"), forms)
}

impl TestApp {
    async fn challenge(&self, sale: &str, user: &str) -> Value {
        let response = self
            .get(
                &format!("/api/v1/sales/{sale}/challenge"),
                Some(&customer(user)),
            )
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.unwrap()
    }

    async fn ask_token(&self, sale: &str, user: &str, body: &Value) -> reqwest::Response {
        self.post(
            &format!("/api/v1/sales/{sale}/token"),
            Some(&customer(user)),
            body,
        )
        .await
    }

    /// A proof of work for `user`'s fresh challenge, and the captcha `answer`.
    async fn proofs(&self, sale: &str, user: &str, answer: &str) -> Value {
        let challenge = self.challenge(sale, user).await;
        let text = challenge["challenge"].as_str().unwrap().to_owned();
        let bits = u8::try_from(challenge["bits"].as_u64().unwrap()).unwrap();
        json!({ "challenge": text, "nonce": pow::solve(&text, bits), "captcha": answer })
    }

    async fn buy_with_token(
        &self,
        sale: &str,
        user: &str,
        token: Option<&str>,
    ) -> reqwest::Response {
        let shown = token.map(|value| ("Purchase-Token", value));
        self.buy_showing(sale, user, shown).await
    }
}

async fn guarded_app(captcha_url: String) -> TestApp {
    spawn_app_with(move |config| {
        config.abuse = AbuseSettings {
            purchase_token: true,
            token_lead_secs: 2,
            pow_bits: 8,
        };
        config.captcha_verify_url = Some(captcha_url);
        config.captcha_secret = Some(Secret::new("provider-secret".into()));
    })
    .await
}

#[tokio::test]
async fn a_token_needs_the_proofs_comes_only_shortly_before_the_start_and_buys_for_its_buyer_only()
{
    let (url, forms) = provider().await;
    let app = guarded_app(url).await;
    let starts_at = stampede_domain::time::Timestamp::from_millis(
        i64::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis(),
        )
        .unwrap(),
    )
    .plus_secs(4);
    let sale = app
        .create_sale(5, 1, json!({ "starts_at": starts_at.to_rfc3339() }))
        .await;
    let sale = sale["id"].as_str().unwrap();

    let challenge = app.challenge(sale, "ann").await;
    assert_eq!(challenge["bits"], 8);
    assert_eq!(challenge["captcha"], true);

    // Four seconds before the start, tokens come from two seconds before it.
    let proofs = app.proofs(sale, "ann", "solved").await;
    let response = app.ask_token(sale, "ann", &proofs).await;
    assert!(response.headers().contains_key("retry-after"));
    assert_problem(response, StatusCode::CONFLICT, "too-early").await;
    assert!(
        forms.lock().unwrap().is_empty(),
        "no provider call while too early"
    );

    tokio::time::sleep(std::time::Duration::from_millis(2_200)).await;
    // No proof of work, an unsolved captcha: refused.
    let response = app
        .ask_token(sale, "ann", &json!({ "captcha": "solved" }))
        .await;
    assert_problem(response, StatusCode::FORBIDDEN, "verification-failed").await;
    let unsolved = app.proofs(sale, "ann", "guessed").await;
    let response = app.ask_token(sale, "ann", &unsolved).await;
    assert_problem(response, StatusCode::FORBIDDEN, "verification-failed").await;
    // Ann's work does not get Bob a token.
    let response = app.ask_token(sale, "bob", &proofs).await;
    assert_problem(response, StatusCode::FORBIDDEN, "verification-failed").await;

    let proofs = app.proofs(sale, "ann", "solved").await;
    let response = app.ask_token(sale, "ann", &proofs).await;
    assert_eq!(response.status(), StatusCode::OK);
    let token: Value = response.json().await.unwrap();
    let token = token["token"].as_str().unwrap().to_owned();
    let last_form = forms.lock().unwrap().last().cloned().unwrap();
    assert!(
        last_form.starts_with("secret=provider-secret&response=solved&remoteip=127.0.0.1"),
        "{last_form}"
    );

    tokio::time::sleep(std::time::Duration::from_millis(2_000)).await;
    let response = app.buy_with_token(sale, "ann", None).await;
    assert_problem(response, StatusCode::FORBIDDEN, "purchase-token").await;
    let response = app.buy_with_token(sale, "bob", Some(&token)).await;
    assert_problem(response, StatusCode::FORBIDDEN, "purchase-token").await;
    let response = app.buy_with_token(sale, "ann", Some(&token)).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert_eq!(app.stats(sale).await["sold"], 1);
}

#[tokio::test]
async fn without_tokens_asked_purchases_need_none_and_a_bad_token_body_is_refused() {
    let app = spawn_app_with(|_| {}).await;
    let sale = app.create_sale(5, 1, json!({})).await;
    let sale = sale["id"].as_str().unwrap();
    let challenge = app.challenge(sale, "ann").await;
    assert_eq!(challenge["challenge"], Value::Null);
    assert_eq!(
        (challenge["bits"].as_u64(), challenge["captcha"].as_bool()),
        (Some(0), Some(false))
    );
    let response = app.buy_with_token(sale, "ann", None).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    // Tokens are issued anyway (nothing asked), and unknown members refused.
    let response = app.ask_token(sale, "ann", &json!({})).await;
    assert_eq!(response.status(), StatusCode::OK);
    let response = app
        .ask_token(sale, "ann", &json!({ "nonce": "1", "extra": 1 }))
        .await;
    assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "validation").await;
}
