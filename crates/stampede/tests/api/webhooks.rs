//! Webhook notifications against a real receiver: signed, retried, dead-lettered,
//! behind a breaker per endpoint; URLs parsed and kept normalised, and only
//! public addresses reached unless the operator allows others. Every address
//! these tests name is loopback, or refused before anything is sent.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use stampede_app::auth::signature;
use stampede_app::webhooks::{SecretSealer, WebhookService};
use stampede_domain::ids::SubscriptionId;
use stampede_domain::net::AllowList;
use stampede_domain::time::Timestamp;
use stampede_domain::webhook::{EventFilter, StoredSecret, Subscription, WebhookUrl};

use crate::helpers::{
    TestApp, admin, assert_problem, customer, eventually, spawn_app, spawn_app_with,
};
use crate::receiver::{Receiver, allow_receivers};

async fn subscribe(app: &TestApp, url: &str, types: Value) -> Value {
    let response = app
        .post(
            "/api/v1/webhooks",
            Some(&admin()),
            &json!({"url": url, "event_types": types}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    response.json().await.unwrap()
}

async fn deliveries(app: &TestApp, subscription: &str, status: &str) -> Vec<Value> {
    let response = app
        .get(
            &format!("/api/v1/webhooks/{subscription}/deliveries?status={status}&limit=100"),
            Some(&admin()),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    response.json::<Value>().await.unwrap()["items"]
        .as_array()
        .unwrap()
        .clone()
}

#[tokio::test]
async fn secrets_are_sealed_at_rest_and_clear_ones_from_older_builds_get_sealed() {
    let app = spawn_app().await;
    let created = subscribe(&app, "https://hooks.example.com/x", json!(["sale.created"])).await;
    let secret = created["secret"].as_str().unwrap().to_owned();
    let id = SubscriptionId::parse(created["id"].as_str().unwrap()).unwrap();
    let store = app.app.store.clone();
    let stored = store.subscription(id).await.unwrap().unwrap();
    assert!(stored.secret.as_str().starts_with("v1:"), "{stored:?}");
    assert!(!stored.secret.as_str().contains(&secret));

    // A row as a build before sealing wrote it: the secret in clear.
    let clear = StoredSecret::parse(&secret).unwrap();
    assert!(
        store
            .replace_subscription_secret(id, &stored.secret, &clear)
            .await
            .unwrap()
    );
    let webhooks = &app.app.webhooks;
    assert_eq!(webhooks.seal_clear_secrets().await.unwrap(), 1);
    let resealed = store.subscription(id).await.unwrap().unwrap();
    assert!(resealed.secret.as_str().starts_with("v1:"));
    assert_eq!(webhooks.signing_secret(&resealed).unwrap().expose(), secret);
    assert_eq!(webhooks.seal_clear_secrets().await.unwrap(), 0);

    // A node with another key cannot open them: it stops at start-up.
    let other = WebhookService::new(
        store.clone(),
        app.app.clock.clone(),
        SecretSealer::new(&[7; 32]),
        AllowList::default(),
    );
    let message = other.seal_clear_secrets().await.unwrap_err().to_string();
    assert!(message.contains("webhook_secret_key"), "{message}");
}

#[tokio::test]
async fn subscribers_receive_signed_events_they_asked_for() {
    let app = spawn_app_with(allow_receivers).await;
    let receiver = Receiver::start(|_| 200).await;
    let subscription = subscribe(&app, &receiver.url, json!(["order.created", "order.paid"])).await;
    let secret = subscription["secret"].as_str().unwrap().to_owned();
    let (_, order) = app.sale_and_order("alice").await;
    let id = order["id"].as_str().unwrap();
    assert_eq!(
        app.pay(&customer("alice"), id).await.status(),
        StatusCode::ACCEPTED
    );

    let hits = eventually(10, "two deliveries", || async {
        let hits = receiver.hits();
        (hits.len() >= 2).then_some(hits)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        receiver.hits().len(),
        2,
        "payment.requested was not asked for"
    );
    let kinds: Vec<String> = hits
        .iter()
        .map(|h| h.json()["type"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(kinds, ["order.created", "order.paid"]);
    for hit in &hits {
        let header = hit.header("stampede-signature");
        assert_eq!(
            signature::verify(secret.as_bytes(), &header, &hit.body, Timestamp::now(), 300),
            Ok(())
        );
        assert_eq!(
            hit.header("stampede-event-id"),
            hit.json()["id"].as_str().unwrap()
        );
        assert_eq!(hit.json()["data"]["id"], id);
    }
    assert_eq!(
        deliveries(&app, subscription["id"].as_str().unwrap(), "delivered")
            .await
            .len(),
        2
    );
}

#[tokio::test]
async fn failed_deliveries_are_retried_until_they_succeed() {
    let app = spawn_app_with(allow_receivers).await;
    let receiver = Receiver::start(|n| if n < 2 { 500 } else { 200 }).await;
    let subscription = subscribe(&app, &receiver.url, json!(["sale.created"])).await;
    app.create_sale(5, 1, json!({})).await;
    let delivered = eventually(10, "the delivery to succeed", || async {
        let delivered = deliveries(&app, subscription["id"].as_str().unwrap(), "delivered").await;
        (!delivered.is_empty()).then_some(delivered)
    })
    .await;
    assert_eq!(delivered[0]["attempts"], 3);
    let hits = receiver.hits();
    assert_eq!(hits.len(), 3);
    // Every attempt carries the same event id: the receiver deduplicates by it.
    assert!(
        hits.iter()
            .all(|h| h.header("stampede-event-id") == hits[0].header("stampede-event-id"))
    );
}

#[tokio::test]
async fn a_delivery_that_keeps_failing_becomes_a_visible_dead_letter() {
    let app = spawn_app_with(|config| {
        allow_receivers(config);
        config.webhook.max_attempts = 3;
    })
    .await;
    let receiver = Receiver::start(|_| 503).await;
    let subscription = subscribe(&app, &receiver.url, json!(["sale.created"])).await;
    app.create_sale(5, 1, json!({})).await;
    let dead = eventually(10, "a dead letter", || async {
        let dead = deliveries(&app, subscription["id"].as_str().unwrap(), "dead").await;
        (!dead.is_empty()).then_some(dead)
    })
    .await;
    assert_eq!(dead[0]["attempts"], 3);
    assert_eq!(dead[0]["last_status"], 503);
    assert_eq!(dead[0]["event_type"], "sale.created");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.hits().len(), 3, "a dead letter is not retried");
}

#[tokio::test]
async fn an_endpoint_that_keeps_failing_opens_its_breaker() {
    let app = spawn_app_with(|config| {
        allow_receivers(config);
        config.webhook.max_attempts = 100;
    })
    .await;
    let receiver = Receiver::start(|_| 500).await;
    let subscription = subscribe(&app, &receiver.url, json!(["sale.created"])).await;
    let id = subscription["id"].as_str().unwrap().to_owned();
    for _ in 0..3 {
        app.create_sale(5, 1, json!({})).await;
    }
    // Open, and postponing deliveries instead of attempting them.
    eventually(
        20,
        "the endpoint's breaker to open and postpone",
        || async {
            let metrics = app.get("/metrics", None).await.text().await.unwrap();
            let open = metrics.contains(&format!(
                r#"stampede_breaker_state{{breaker="webhook:{id}"}} 1"#
            ));
            let postponed =
                metrics.contains(r#"stampede_webhook_attempts_total{result="postponed"}"#);
            (open && postponed).then_some(())
        },
    )
    .await;
    // While open, deliveries are postponed without spending attempts.
    let hits_when_open = receiver.hits().len();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.hits().len(), hits_when_open);
}

#[tokio::test]
async fn subscriptions_are_managed_by_admins_and_keep_their_secret() {
    let app = spawn_app().await;
    let created = app
        .post(
            "/api/v1/webhooks",
            Some(&admin()),
            &json!({"url": "https://hooks.example.com/x", "event_types": ["*"], "secret": "a-secret-of-my-choosing"}),
        )
        .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let created: Value = created.json().await.unwrap();
    assert_eq!(created["secret"], "a-secret-of-my-choosing");
    let id = created["id"].as_str().unwrap();
    let listed: Value = app
        .get("/api/v1/webhooks", Some(&admin()))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed[0]["id"], id);
    assert!(
        listed[0].get("secret").is_none(),
        "the secret is shown once"
    );
    let read: Value = app
        .get(&format!("/api/v1/webhooks/{id}"), Some(&admin()))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(read["event_types"], json!(["*"]));

    let forbidden = app.get("/api/v1/webhooks", Some(&customer("alice"))).await;
    assert_problem(forbidden, StatusCode::FORBIDDEN, "forbidden").await;
    for (body, field) in [
        (json!({"url": "ftp://x", "event_types": ["*"]}), "url"),
        (
            json!({"url": "https://x.test", "event_types": ["order.shipped"]}),
            "event_types",
        ),
        (
            json!({"url": "https://x.test", "event_types": []}),
            "event_types",
        ),
        (
            json!({"url": "https://x.test", "event_types": ["*"], "secret": "short"}),
            "secret",
        ),
    ] {
        let response = app.post("/api/v1/webhooks", Some(&admin()), &body).await;
        let problem =
            assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "validation").await;
        assert_eq!(problem["errors"][0]["field"], field);
    }

    let deleted = app
        .request(
            Method::DELETE,
            &format!("/api/v1/webhooks/{id}"),
            Some(&admin()),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    assert_problem(
        app.get(&format!("/api/v1/webhooks/{id}"), Some(&admin()))
            .await,
        StatusCode::NOT_FOUND,
        "not-found",
    )
    .await;
}

async fn create(app: &TestApp, url: &str) -> reqwest::Response {
    app.post(
        "/api/v1/webhooks",
        Some(&admin()),
        &json!({"url": url, "event_types": ["*"]}),
    )
    .await
}

/// Creating a subscription to `url` is a validation problem naming `url`.
async fn assert_url_refused(app: &TestApp, url: &str) {
    let problem = assert_problem(
        create(app, url).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation",
    )
    .await;
    assert_eq!(problem["errors"][0]["field"], "url", "{url}");
}

#[tokio::test]
async fn urls_that_are_not_urls_are_refused_and_the_rest_kept_normalised() {
    let app = spawn_app().await;
    for url in [
        "http://[/",
        "http://[1:2]/",
        "http://x:[1]/",
        "http://x]/",
        "http:///path",
    ] {
        assert_url_refused(&app, url).await;
    }
    let created = create(&app, "HTTPS://Hooks.Example.COM:443/a/../stampede").await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let created: Value = created.json().await.unwrap();
    assert_eq!(created["url"], "https://hooks.example.com/stampede");
    let id = created["id"].as_str().unwrap();
    let read: Value = app
        .get(&format!("/api/v1/webhooks/{id}"), Some(&admin()))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(read["url"], "https://hooks.example.com/stampede");
}

/// Loopback in every notation (private and link-local ranges are refused
/// alike; `stampede_domain::net`'s tests go through them without a network).
#[tokio::test]
async fn urls_naming_loopback_addresses_are_refused_unless_allowed() {
    let app = spawn_app().await;
    for url in [
        "http://127.0.0.1:9000/hook",
        "http://localhost/hook",
        "http://0.0.0.0/",
        "http://2130706433/",
        "http://0x7f.1/",
        "http://127.1/",
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",
    ] {
        assert_url_refused(&app, url).await;
    }
    let listed: Value = app
        .get("/api/v1/webhooks", Some(&admin()))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed, json!([]));

    // The operator's allow-list lets them through.
    let allowed = spawn_app_with(|config| {
        config.webhook.allow_hosts = AllowList::parse("127.0.0.0/8,localhost").unwrap();
    })
    .await;
    for url in ["http://127.1:9000/hook", "http://localhost/hook"] {
        assert_eq!(create(&allowed, url).await.status(), StatusCode::CREATED);
    }
}

/// A subscription stored before the rule (or a name that resolves to a
/// refused address) fails at delivery: nothing is sent, and the error is the
/// same whether something listens there or not — no port scanner.
#[tokio::test]
async fn deliveries_to_refused_addresses_fail_without_reaching_them() {
    let app = spawn_app_with(|config| config.webhook.max_attempts = 1).await;
    let receiver = Receiver::start(|_| 200).await;
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let open = receiver.url.replace("127.0.0.1", "2130706433");
    let mut ids = Vec::new();
    for url in [open, format!("http://127.1:{closed}/hook")] {
        let subscription = Subscription {
            id: SubscriptionId::generate(),
            url: WebhookUrl::from_store(&url),
            events: EventFilter::parse(&["sale.created".into()]).unwrap(),
            secret: StoredSecret::parse("a-long-enough-secret").unwrap(),
            created_at: Timestamp::now(),
        };
        app.app
            .store
            .insert_subscription(&subscription)
            .await
            .unwrap();
        ids.push(subscription.id.to_string());
    }
    app.create_sale(5, 1, json!({})).await;

    let mut errors = Vec::new();
    for id in &ids {
        let dead = eventually(10, "a dead letter", || async {
            let dead = deliveries(&app, id, "dead").await;
            (!dead.is_empty()).then_some(dead)
        })
        .await;
        assert_eq!(dead[0]["last_status"], Value::Null);
        errors.push(dead[0]["last_error"].clone());
    }
    assert_eq!(errors[0], "destination refused: not a public address");
    assert_eq!(errors[0], errors[1]);
    assert!(receiver.hits().is_empty());
}
