//! Flow control at the edge: rate limits with their headers, load shedding,
//! deadlines, a slow dependency's breaker, and the catalog cache.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{
    admin, assert_problem, customer, eventually, spawn_app, spawn_app_with,
    spawn_app_with_http_file,
};

#[tokio::test]
async fn a_user_over_the_purchase_limit_gets_429_with_its_headers_while_others_buy() {
    let app = spawn_app_with(|config| config.http.purchases_per_user_per_sec = 3).await;
    let sale = app.create_sale(1_000, 1_000, json!({})).await;
    let id = sale["id"].as_str().unwrap();
    for i in 0..3 {
        assert_eq!(
            app.purchase(&customer("greedy"), id, &format!("k{i}"), 1)
                .await
                .status(),
            StatusCode::ACCEPTED
        );
    }
    let refused = app.purchase(&customer("greedy"), id, "k3", 1).await;
    let headers = refused.headers().clone();
    let problem = assert_problem(refused, StatusCode::TOO_MANY_REQUESTS, "rate-limited").await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("per-user-purchase")
    );
    let header = |name: &str| headers[name].to_str().unwrap().to_owned();
    assert_eq!(header("ratelimit-limit"), "3");
    assert_eq!(header("ratelimit-remaining"), "0");
    assert_eq!(header("ratelimit-reset"), "1");
    assert_eq!(header("retry-after"), "1");
    assert_eq!(header("ratelimit-policy"), r#""per-user-purchase";q=3;w=1"#);
    assert_eq!(header("ratelimit"), r#""per-user-purchase";r=0;t=1"#);
    // Others are not affected, and nothing was taken for the refusal.
    assert_eq!(
        app.purchase(&customer("patient"), id, "k", 1)
            .await
            .status(),
        StatusCode::ACCEPTED
    );
    assert_eq!(app.sale(id).await["remaining"], 996);
    // A retry with the same key after the wait is decided afresh.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        app.purchase(&customer("greedy"), id, "k3", 1)
            .await
            .status(),
        StatusCode::ACCEPTED
    );
}

#[tokio::test]
async fn rules_from_the_config_file_limit_per_client_ip_behind_a_trusted_proxy() {
    let app = spawn_app_with_http_file(
        r#"trusted_proxies = "127.0.0.1"

[[rate_limits]]
name = "per-ip"
key = "ip"
routes = ["GET /api/v1/products"]
limit = 2
period_ms = 60000
"#,
    )
    .await;
    let list = |ip: &'static str| {
        app.request(Method::GET, "/api/v1/products", None)
            .header("x-forwarded-for", ip)
            .send()
    };
    assert_eq!(list("198.51.100.1").await.unwrap().status(), StatusCode::OK);
    assert_eq!(list("198.51.100.1").await.unwrap().status(), StatusCode::OK);
    let refused = list("198.51.100.1").await.unwrap();
    assert_eq!(
        refused.headers()["ratelimit-policy"],
        r#""per-ip";q=2;w=60"#
    );
    assert_problem(refused, StatusCode::TOO_MANY_REQUESTS, "rate-limited").await;
    assert_eq!(list("198.51.100.2").await.unwrap().status(), StatusCode::OK);
    // The config file replaced the default rules: no per-user purchase limit.
    let sale = app.create_sale(100, 100, json!({})).await;
    for i in 0..30 {
        let response = app
            .purchase(
                &customer("alice"),
                sale["id"].as_str().unwrap(),
                &format!("k{i}"),
                1,
            )
            .await;
        assert_eq!(response.status(), StatusCode::ACCEPTED);
    }
}

#[tokio::test]
async fn the_hottest_keys_are_listed_by_name_and_an_ipv6_client_counts_by_its_64() {
    let app = spawn_app_with_http_file(
        r#"trusted_proxies = "127.0.0.1"

[[rate_limits]]
name = "per-ip"
key = "ip"
routes = ["GET /api/v1/products"]
limit = 2
period_ms = 60000
# Listed in cluster mode too: a shared rule's state is in Redis.
backend = "local"
"#,
    )
    .await;
    let list = |ip: &'static str| {
        app.request(Method::GET, "/api/v1/products", None)
            .header("x-forwarded-for", ip)
            .send()
    };
    // Two addresses of one /64 share its budget; the next /64 has its own.
    assert_eq!(
        list("2001:db8:1:2::1").await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(
        list("2001:db8:1:2::2").await.unwrap().status(),
        StatusCode::OK
    );
    let refused = list("2001:db8:1:2:ffff::9").await.unwrap();
    assert_problem(refused, StatusCode::TOO_MANY_REQUESTS, "rate-limited").await;
    assert_eq!(
        list("2001:db8:1:3::1").await.unwrap().status(),
        StatusCode::OK
    );

    let hot = |query: &'static str, token: Option<String>| {
        let path = format!("/api/v1/admin/rate-limits/hot{query}");
        let request = app.request(Method::GET, &path, token.as_deref());
        async move { request.send().await.unwrap() }
    };
    let body: Value = hot("", Some(admin())).await.json().await.unwrap();
    let rules = body["rules"].as_array().unwrap();
    assert_eq!(rules.len(), 1, "{body}");
    let rule = &rules[0];
    assert_eq!(rule["rule"], "per-ip");
    assert_eq!(rule["key"], "ip");
    assert!(rule["memory_bytes"].as_u64().unwrap() > 1 << 20, "{rule}");
    let keys = rule["keys"].as_array().unwrap();
    assert_eq!(
        keys[0]["name"], "2001:db8:1:2::/64",
        "hottest first: {rule}"
    );
    assert_eq!(keys[0]["limited"], true);
    assert!(keys[0]["hits"].as_u64().unwrap() >= 3, "{rule}");
    // One request of two: neither refused nor past half its burst, so not
    // named, and not limited.
    let other = keys.iter().find(|key| key["hits"] == 1).unwrap();
    assert_eq!(other["name"], Value::Null, "{rule}");
    assert_eq!(other["limited"], false);
    assert_eq!(other["digest"].as_str().unwrap().len(), 16);

    assert_eq!(
        hot("", Some(customer("alice"))).await.status(),
        StatusCode::FORBIDDEN
    );
    for bad in ["?limit=0", "?limit=101", "?limit=many"] {
        let response = hot(bad, Some(admin())).await;
        let problem =
            assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "validation").await;
        assert_eq!(problem["errors"][0]["field"], "limit", "{bad}");
    }
    let one: Value = hot("?limit=1", Some(admin())).await.json().await.unwrap();
    assert_eq!(one["rules"][0]["keys"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn retries_of_answered_keys_never_get_429_while_new_keys_from_the_same_user_do() {
    let app = spawn_app_with_http_file(
        r#"[[rate_limits]]
name = "per-user-purchase"
key = "user"
routes = ["POST /api/v1/sales/{id}/purchase"]
limit = 3
period_ms = 60000
"#,
    )
    .await;
    // One unit: the first key wins, the next two are refused sold out.
    let sale = app.create_sale(1, 10, json!({})).await;
    let id = sale["id"].as_str().unwrap();
    let buyer = customer("retrier");
    let mut first = Vec::new();
    for key in ["k0", "k1", "k2"] {
        let response = app.purchase(&buyer, id, key, 1).await;
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        first.push((status, body));
    }
    assert_eq!(first[0].0, StatusCode::ACCEPTED);
    assert_eq!(first[1].0, StatusCode::CONFLICT);
    // The quota (3 a minute) is spent; retries of the three keys spend
    // none of it and get their first answers.
    for _ in 0..10 {
        for (key, (status, body)) in ["k0", "k1", "k2"].iter().zip(&first) {
            let response = app.purchase(&buyer, id, key, 1).await;
            assert_eq!(response.status(), *status, "{key}");
            let replay: Value = response.json().await.unwrap();
            match *status {
                StatusCode::ACCEPTED => assert_eq!(replay["id"], body["id"]),
                _ => assert_eq!(replay["type"], body["type"]),
            }
        }
    }
    // A new key from the same user is a new attempt: over the quota.
    let refused = app.purchase(&buyer, id, "k3", 1).await;
    assert_problem(refused, StatusCode::TOO_MANY_REQUESTS, "rate-limited").await;
    // The same key with another quantity is not a retry: the ledger calls
    // the mismatch.
    let other = app.purchase(&buyer, id, "k1", 2).await;
    assert_problem(
        other,
        StatusCode::UNPROCESSABLE_ENTITY,
        "idempotency-mismatch",
    )
    .await;
    let metrics = app.get("/metrics", None).await.text().await.unwrap();
    let retries: f64 = metrics
        .lines()
        .find_map(|line| line.strip_prefix("stampede_known_key_retries_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(retries >= 30.0, "{retries}");
}

#[tokio::test]
async fn a_leaky_bucket_wait_longer_than_the_deadline_is_refused_at_once() {
    let app = spawn_app_with_http_file(
        r#"[[rate_limits]]
name = "smooth"
key = "global"
algorithm = "leaky_bucket"
routes = ["GET /api/v1/products"]
limit = 1
burst = 1
period_ms = 1000
max_wait_ms = 5000
"#,
    )
    .await;
    let list = |timeout: &'static str| {
        app.request(Method::GET, "/api/v1/products", None)
            .header("Request-Timeout", timeout)
            .send()
    };
    assert_eq!(list("10").await.unwrap().status(), StatusCode::OK);
    // The next slot is about a second away: a client that gives the
    // request half a second is told now instead of after waiting.
    let refused = list("0.5").await.unwrap();
    assert_eq!(refused.headers()["retry-after"], "1");
    let problem = assert_problem(refused, StatusCode::TOO_MANY_REQUESTS, "rate-limited").await;
    assert!(
        problem["detail"].as_str().unwrap().contains("deadline"),
        "{problem}"
    );
}

#[tokio::test]
async fn an_overloaded_node_refuses_at_once_instead_of_queueing() {
    // A node that takes two requests at a time, under a burst of 300.
    let app = spawn_app_with(|config| {
        config.http.max_in_flight = 2;
        config.http.min_in_flight = 2;
        config.http.rate_limits = stampede_http::config::LimitRules::Off;
    })
    .await;
    let sale = app.create_sale(100_000, 100_000, json!({})).await;
    let id = sale["id"].as_str().unwrap().to_owned();
    let mut tasks = Vec::new();
    for user in 0..300 {
        let client = app.client.clone();
        let url = app.url(&format!("/api/v1/sales/{id}/purchase"));
        tasks.push(tokio::spawn(async move {
            let started = Instant::now();
            let response = client
                .post(url)
                .bearer_auth(customer(&format!("u{user}")))
                .header("Idempotency-Key", "k")
                .json(&json!({"quantity": 1}))
                .send()
                .await
                .unwrap();
            let elapsed = started.elapsed();
            let status = response.status();
            let retry_after = response.headers().get("retry-after").is_some();
            let body: Value = response.json().await.unwrap();
            (status, retry_after, body, elapsed)
        }));
    }
    let mut refusals = Vec::new();
    let mut won = 0;
    for task in tasks {
        let (status, retry_after, body, elapsed) = task.await.unwrap();
        match status {
            StatusCode::ACCEPTED => won += 1,
            StatusCode::SERVICE_UNAVAILABLE => {
                assert!(retry_after);
                assert!(
                    body["type"].as_str().unwrap().ends_with("/overloaded"),
                    "{body}"
                );
                refusals.push(elapsed);
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert!(
        !refusals.is_empty(),
        "a burst of 300 over a limit of 2 was never shed"
    );
    // Refused units were never taken: the ledger agrees with the store.
    let stats = app.stats(&id).await;
    assert_eq!(stats["sold"], won);
    assert_eq!(stats["remaining"], 100_000 - won);
    refusals.sort();
    let median = refusals[refusals.len() / 2];
    let p99 = refusals[refusals.len() * 99 / 100];
    // Measured, reported, never asserted. Client-side includes the test
    // client's own queueing; the server's own time comes from its histogram.
    let text = app.get("/metrics", None).await.text().await.unwrap();
    let series = |suffix: &str| -> f64 {
        text.lines()
            .find(|l| {
                l.starts_with(&format!("stampede_http_request_duration_seconds_{suffix}"))
                    && l.contains(r#"status="503""#)
            })
            .and_then(|l| l.rsplit(' ').next())
            .map_or(0.0, |v| v.parse().unwrap())
    };
    let server_mean = series("sum") / series("count").max(1.0);
    eprintln!(
        "{} shed, {won} won; refusal latency at the client p50 {median:?} p99 {p99:?}; at the server mean {:.1} µs",
        refusals.len(),
        server_mean * 1e6
    );
}

#[tokio::test]
async fn a_client_deadline_shorter_than_the_work_ends_the_request_with_503() {
    let app = spawn_app().await;
    let sale = app.create_sale(10, 1, json!({})).await;
    let id = sale["id"].as_str().unwrap().to_owned();
    // Hold the database's write lock from outside: the purchase's commit waits.
    let lock = app.hold_sales_lock().await;
    let started = Instant::now();
    let response = app
        .request(
            Method::POST,
            &format!("/api/v1/sales/{id}/purchase"),
            Some(&customer("alice")),
        )
        .header("Idempotency-Key", "k")
        .header("request-timeout", "0.3")
        .json(&json!({"quantity": 1}))
        .send()
        .await
        .unwrap();
    let took = started.elapsed();
    assert!(response.headers().get("retry-after").is_some());
    let problem = assert_problem(response, StatusCode::SERVICE_UNAVAILABLE, "unavailable").await;
    assert!(
        problem["detail"].as_str().unwrap().contains("deadline"),
        "{problem}"
    );
    eprintln!("answered 503 after {took:?} with a 300 ms deadline");
    lock.release().await;
    // The order was reserved and queued before the deadline passed; it commits
    // once the lock is free, and a retry with the key finds it.
    let retried = eventually(10, "the retry to be answered 202", || async {
        let response = app.purchase(&customer("alice"), &id, "k", 1).await;
        (response.status() == StatusCode::ACCEPTED).then_some(response)
    })
    .await;
    let order: Value = retried.json().await.unwrap();
    assert_eq!(order["sale_id"], sale["id"]);
    assert_eq!(app.stats(&id).await["sold"], 1);
}

#[tokio::test]
async fn a_slow_payment_provider_opens_its_breaker_and_pay_fails_fast_while_purchases_go_on() {
    let app = spawn_app_with(|config| {
        config.payment_sim.latency_min = Duration::from_millis(400);
        config.payment_sim.latency_max = Duration::from_millis(400);
        config.payment.breaker.slow_call_duration = Duration::from_millis(200);
        config.payment.breaker.slow_call_rate_threshold = 50.0;
        config.payment.breaker.wait_in_open = Duration::from_secs(60);
    })
    .await;
    let sale = app.create_sale(1000, 100, json!({})).await;
    let sale_id = sale["id"].as_str().unwrap().to_owned();
    for i in 0..12 {
        let order: Value = app
            .purchase(&customer("alice"), &sale_id, &format!("k{i}"), 1)
            .await
            .json()
            .await
            .unwrap();
        let id = order["id"].as_str().unwrap().to_owned();
        let status = app.pay(&customer("alice"), &id).await.status();
        assert!([StatusCode::ACCEPTED, StatusCode::SERVICE_UNAVAILABLE].contains(&status));
    }
    // Each try pays a fresh order: an order bought earlier may already be
    // paid (its slow charge succeeded) and would answer 409 for ever.
    let tries = std::sync::atomic::AtomicUsize::new(0);
    let (refused, took) = eventually(30, "the breaker to open on slow calls", || async {
        let n = tries.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let buyer = customer(&format!("poll-{n}"));
        let order: Value = app
            .purchase(&buyer, &sale_id, "poll", 1)
            .await
            .json()
            .await
            .unwrap();
        let id = order["id"].as_str().unwrap();
        let started = Instant::now();
        let response = app.pay(&buyer, id).await;
        (response.status() == StatusCode::SERVICE_UNAVAILABLE)
            .then(|| (response, started.elapsed()))
    })
    .await;
    assert_problem(refused, StatusCode::SERVICE_UNAVAILABLE, "unavailable").await;
    eprintln!("pay refused in {took:?} with the breaker open");
    // Purchases do not touch the provider and go on.
    assert_eq!(
        app.purchase(&customer("bob"), &sale_id, "b", 1)
            .await
            .status(),
        StatusCode::ACCEPTED
    );
}

#[tokio::test]
async fn concurrent_misses_for_one_product_cause_one_store_load() {
    let app = spawn_app().await;
    let product = app.create_product("CACHED").await;
    let path = format!("/api/v1/products/{}", product["id"].as_str().unwrap());
    let mut tasks = Vec::new();
    for _ in 0..40 {
        let client = app.client.clone();
        let url = app.url(&path);
        tasks.push(tokio::spawn(async move {
            client.get(url).send().await.unwrap().status()
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), StatusCode::OK);
    }
    // This node's own figures: `/metrics` counts for the whole process, which
    // may run other tests' nodes too.
    let products = app.app.catalog.cache_stats().products;
    assert_eq!(products.loads, 1);
    assert_eq!(products.hits, 39);
}

#[tokio::test]
async fn unknown_ids_reach_the_store_once_within_the_negative_ttl() {
    let app = spawn_app().await;
    for path in [
        "/api/v1/products/0190c2a1-0000-7000-8000-000000000000",
        "/api/v1/sales/0190c2a1-0000-7000-8000-000000000000",
    ] {
        for _ in 0..5 {
            assert_problem(
                app.get(path, None).await,
                StatusCode::NOT_FOUND,
                "not-found",
            )
            .await;
        }
    }
    // Purchases of an unknown sale are refused without a second look either.
    for i in 0..5 {
        let response = app
            .purchase(
                &customer("alice"),
                "0190c2a1-0000-7000-8000-000000000000",
                &format!("k{i}"),
                1,
            )
            .await;
        assert_problem(response, StatusCode::NOT_FOUND, "not-found").await;
    }
    let stats = app.app.catalog.cache_stats();
    assert_eq!((stats.products.loads, stats.sales.loads), (1, 1));
}
