use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{admin, assert_problem, customer, spawn_app};

#[tokio::test]
async fn probes_answer_ok_once_started() {
    let app = spawn_app().await;
    for path in ["/livez", "/readyz", "/startupz"] {
        let response = app.get(path, None).await;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert_eq!(response.json::<Value>().await.unwrap()["status"], "ok");
    }
}

#[tokio::test]
async fn readiness_lists_each_dependency_and_names_the_one_that_is_down() {
    let app = spawn_app().await;
    let ready: Value = app.get("/readyz", None).await.json().await.unwrap();
    let expected = match (app.redis.is_some(), app.nats.is_some()) {
        (true, true) => json!({"store": "ok", "ledger": "ok", "bus": "ok"}),
        (true, false) => json!({"store": "ok", "ledger": "ok"}),
        _ => json!({"store": "ok"}),
    };
    assert_eq!(ready["checks"], expected);
    let metrics = app.get("/metrics", None).await.text().await.unwrap();
    assert!(
        metrics.contains("stampede_dependency_up{dependency=\"store\"} 1"),
        "{metrics}"
    );
    if crate::ON_POSTGRES {
        assert!(
            metrics.contains("stampede_db_pool_connections{state=\"open\"}"),
            "{metrics}"
        );
    }

    // A store that stops answering takes the node out of rotation, by name.
    app.app.store.close().await;
    let response = app.get("/readyz", None).await;
    let problem =
        crate::helpers::assert_problem(response, StatusCode::SERVICE_UNAVAILABLE, "unavailable")
            .await;
    assert_eq!(problem["detail"], "not answering: store");
    let metrics = app.get("/metrics", None).await.text().await.unwrap();
    assert!(
        metrics.contains("stampede_dependency_up{dependency=\"store\"} 0"),
        "{metrics}"
    );
}

#[tokio::test]
async fn every_response_carries_a_request_id_and_keeps_the_clients() {
    let app = spawn_app().await;
    let generated = app.get("/livez", None).await;
    assert!(generated.headers().get("x-request-id").is_some());
    let response = app
        .request(reqwest::Method::GET, "/livez", None)
        .header("x-request-id", "client-chosen-42")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "client-chosen-42");
}

#[tokio::test]
async fn metrics_expose_requests_purchase_outcomes_queue_and_stock() {
    let app = spawn_app().await;
    let sale = app.create_sale(1, 1, json!({})).await;
    let id = sale["id"].as_str().unwrap();
    app.purchase(&customer("alice"), id, "k", 1).await;
    app.purchase(&customer("bob"), id, "k", 1).await;
    let response = app.get("/metrics", None).await;
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.unwrap();
    for needle in [
        "stampede_http_requests_total{",
        "route=\"/api/v1/sales/{id}/purchase\"",
        "stampede_http_request_duration_seconds_bucket{",
        "stampede_purchases_total{outcome=\"won\"}",
        "stampede_purchases_total{outcome=\"sold_out\"}",
        "stampede_commit_queue_depth",
        "stampede_commit_batch_size_bucket",
        "stampede_commit_queue_wait_seconds_bucket",
        &format!("stampede_sale_remaining{{sale_id=\"{id}\"}} 0"),
    ] {
        assert!(text.contains(needle), "missing {needle} in\n{text}");
    }
}

#[tokio::test]
async fn the_openapi_document_describes_every_route() {
    let app = spawn_app().await;
    let doc: Value = app
        .get("/api/v1/openapi.json", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    for (path, method) in [
        ("/api/v1/products", "post"),
        ("/api/v1/products", "get"),
        ("/api/v1/products/{id}", "get"),
        ("/api/v1/sales", "post"),
        ("/api/v1/sales/{id}", "get"),
        ("/api/v1/sales/{id}/stats", "get"),
        ("/api/v1/sales/{id}/purchase", "post"),
        ("/api/v1/orders", "get"),
        ("/api/v1/orders/{id}", "get"),
        ("/api/v1/orders/{id}/cancel", "post"),
        ("/api/v1/users", "post"),
        ("/api/v1/sessions", "post"),
        ("/livez", "get"),
        ("/readyz", "get"),
        ("/startupz", "get"),
        ("/metrics", "get"),
    ] {
        assert!(
            doc["paths"][path][method].is_object(),
            "{method} {path} undocumented"
        );
    }
    // A path parameter is one of its path's `{…}`; a query struct left in
    // the path (utoipa's default for `IntoParams`) would be fuzzed wrongly.
    for (path, operations) in doc["paths"].as_object().unwrap() {
        for (method, operation) in operations.as_object().unwrap() {
            for parameter in operation["parameters"].as_array().into_iter().flatten() {
                let name = parameter["name"].as_str().unwrap();
                assert_eq!(
                    parameter["in"] == "path",
                    path.contains(&format!("{{{name}}}")),
                    "{method} {path}: parameter {name} is in {}",
                    parameter["in"]
                );
            }
        }
    }
    let purchase = &doc["paths"]["/api/v1/sales/{id}/purchase"]["post"]["responses"];
    for status in [
        "202", "400", "401", "403", "404", "409", "413", "415", "422", "503",
    ] {
        assert!(
            purchase[status].is_object(),
            "purchase does not declare {status}"
        );
    }
}

#[tokio::test]
async fn admins_see_every_background_worker_with_its_state_and_last_run() {
    let app = spawn_app().await;
    assert_problem(
        app.get("/api/v1/admin/workers", None).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    assert_problem(
        app.get("/api/v1/admin/workers", Some(&customer("alice")))
            .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;

    // Each worker steps at once when it starts; wait for the first runs.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let workers = loop {
        let body: Value = app
            .get("/api/v1/admin/workers", Some(&admin()))
            .await
            .json()
            .await
            .unwrap();
        let workers = body["workers"].as_array().unwrap().clone();
        if workers.iter().all(|w| w["last_run_at"].is_string()) {
            break workers;
        }
        assert!(std::time::Instant::now() < deadline, "{workers:?}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let mut names: Vec<&str> = workers
        .iter()
        .map(|w| w["name"].as_str().unwrap())
        .collect();
    names.sort_unstable();
    let mut expected = vec![
        "consumer-payments",
        "consumer-webhooks",
        "expiry",
        "limiter-upkeep",
        "live-events",
        "payments",
        "reconcile",
        "room-pace",
        "sale-sync",
        "webhook-delivery",
    ];
    if app.nats.is_some() {
        expected.push("outbox-relay");
    }
    if app.redis.is_some() {
        // Follows the cluster's rate-limit rules.
        expected.push("rate-limit-rules");
    }
    expected.sort_unstable();
    assert_eq!(names, expected);
    for worker in &workers {
        assert_eq!(worker["failures"], 0, "{worker}");
        assert!(worker["steps"].as_u64().unwrap() >= 1, "{worker}");
        assert!(
            ["busy", "idle"].contains(&worker["state"].as_str().unwrap()),
            "{worker}"
        );
    }
    let metrics = app.get("/metrics", None).await.text().await.unwrap();
    for needle in [
        "stampede_worker_steps_total{worker=\"expiry\",result=\"ok\"}",
        "stampede_worker_last_run_timestamp_seconds{worker=\"expiry\"}",
        "stampede_worker_state{worker=\"expiry\",state=\"idle\"}",
    ] {
        assert!(metrics.contains(needle), "missing {needle} in\n{metrics}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cpu_profile_is_for_admins_bounded_and_one_at_a_time() {
    let app = spawn_app().await;
    let path = "/api/v1/admin/profile?seconds=1";
    assert_problem(
        app.get(path, None).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    assert_problem(
        app.get(path, Some(&customer("ada"))).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    for bad in ["0", "61", "ten", "1.5", "-1", ""] {
        let response = app
            .get(
                &format!("/api/v1/admin/profile?seconds={bad}"),
                Some(&admin()),
            )
            .await;
        let problem =
            assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "validation").await;
        assert_eq!(problem["errors"][0]["field"], "seconds", "{bad}: {problem}");
    }

    let response = app.get(path, Some(&admin())).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "image/svg+xml");
    let svg = response.text().await.unwrap();
    assert!(svg.contains("<svg"), "{svg}");

    // Two at once: one records, the other is refused rather than queued.
    let both = ["/api/v1/admin/profile?seconds=2"; 2].map(|path| {
        let url = app.url(path);
        tokio::spawn(async move {
            let response = reqwest::Client::new()
                .get(url)
                .bearer_auth(admin())
                .send()
                .await
                .unwrap();
            (response.status(), response.text().await.unwrap())
        })
    });
    let mut answers = Vec::new();
    for request in both {
        answers.push(request.await.unwrap());
    }
    answers.sort_by_key(|(status, _)| *status);
    assert_eq!(answers[0].0, StatusCode::OK, "{answers:?}");
    assert_eq!(answers[1].0, StatusCode::TOO_MANY_REQUESTS, "{answers:?}");
    assert!(answers[1].1.contains("one at a time"), "{answers:?}");
}
