//! `GET /api/v1/orders/{id}/events`: the order's history, then live changes,
//! as server-sent events.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{TestApp, assert_problem, customer, spawn_app, spawn_app_with};

/// Reads SSE frames until `n` events have arrived (or 10 s pass).
async fn read_events(response: &mut reqwest::Response, n: usize) -> Vec<(String, String, Value)> {
    let mut buffer = String::new();
    let mut events = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while events.len() < n {
        let chunk = tokio::time::timeout_at(deadline, response.chunk())
            .await
            .expect("timed out waiting for events")
            .unwrap()
            .expect("stream ended");
        buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        while let Some(end) = buffer.find("\n\n") {
            let frame: String = buffer.drain(..end + 2).collect();
            let (mut id, mut kind, mut data) = (String::new(), String::new(), String::new());
            for line in frame.lines() {
                if let Some(v) = line.strip_prefix("id:") {
                    id = v.trim().to_owned();
                } else if let Some(v) = line.strip_prefix("event:") {
                    kind = v.trim().to_owned();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim());
                }
            }
            if !kind.is_empty() {
                events.push((id, kind, serde_json::from_str(&data).unwrap()));
            }
        }
    }
    events
}

async fn open(app: &TestApp, token: &str, order: &str, last: Option<&str>) -> reqwest::Response {
    let mut request = app.request(
        reqwest::Method::GET,
        &format!("/api/v1/orders/{order}/events"),
        Some(token),
    );
    if let Some(last) = last {
        request = request.header("last-event-id", last);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    response
}

#[tokio::test]
async fn an_order_stream_sends_its_history_then_its_changes_as_they_happen() {
    let app = spawn_app().await;
    let (_, order) = app.sale_and_order("alice").await;
    let id = order["id"].as_str().unwrap();

    let mut stream = open(&app, &customer("alice"), id, None).await;
    let history = read_events(&mut stream, 1).await;
    assert_eq!(history[0].1, "order.created");
    assert_eq!(history[0].2["data"]["id"], id);

    assert_eq!(
        app.pay(&customer("alice"), id).await.status(),
        StatusCode::ACCEPTED
    );
    let live = read_events(&mut stream, 3).await;
    let kinds: Vec<&str> = live.iter().map(|(_, kind, _)| kind.as_str()).collect();
    assert_eq!(
        kinds,
        ["payment.requested", "payment.submitted", "order.paid"]
    );
    assert_eq!(live[2].2["data"]["status"], "paid");

    // Resuming after the first event replays only what came after it.
    let mut resumed = open(&app, &customer("alice"), id, Some(&history[0].0)).await;
    let replay = read_events(&mut resumed, 3).await;
    assert_eq!(replay[0].1, "payment.requested");
    assert_eq!(replay[2].0, live[2].0);
}

#[tokio::test]
async fn someone_elses_order_has_no_stream() {
    let app = spawn_app().await;
    let (_, order) = app.sale_and_order("alice").await;
    let response = app
        .get(
            &format!("/api/v1/orders/{}/events", order["id"].as_str().unwrap()),
            Some(&customer("bob")),
        )
        .await;
    assert_problem(response, StatusCode::NOT_FOUND, "not-found").await;
}

#[tokio::test]
async fn a_user_holds_at_most_eight_streams_and_a_node_its_configured_number() {
    let app = spawn_app_with(|config| config.http.max_event_streams = 10).await;
    let (_, order) = app.sale_and_order("alice").await;
    let order = order["id"].as_str().unwrap();
    let alice = customer("alice");
    let mut held = Vec::new();
    for _ in 0..8 {
        held.push(open(&app, &alice, order, None).await);
    }
    let ninth = app
        .get(&format!("/api/v1/orders/{order}/events"), Some(&alice))
        .await;
    assert!(ninth.headers().contains_key("retry-after"));
    assert_problem(ninth, StatusCode::TOO_MANY_REQUESTS, "rate-limited").await;

    // A closed stream gives its slot back.
    drop(held.pop());
    let again = eventually_open(&app, &alice, order).await;
    held.push(again);

    // Bob's two streams fill the node's ten; a third is one too many.
    let (_, bobs) = app.sale_and_order("bob").await;
    let bobs = bobs["id"].as_str().unwrap();
    let bob = customer("bob");
    held.push(open(&app, &bob, bobs, None).await);
    held.push(open(&app, &bob, bobs, None).await);
    let over = app
        .get(&format!("/api/v1/orders/{bobs}/events"), Some(&bob))
        .await;
    assert_problem(over, StatusCode::SERVICE_UNAVAILABLE, "overloaded").await;
    // The gauge says how full the node is.
    let metrics = app.get("/metrics", None).await.text().await.unwrap();
    assert!(
        metrics
            .lines()
            .any(|line| line == "stampede_http_event_streams_open 10"),
        "{metrics}"
    );
}

/// Opens a stream once the server has noticed an earlier one closed.
async fn eventually_open(app: &TestApp, token: &str, order: &str) -> reqwest::Response {
    let path = format!("/api/v1/orders/{order}/events");
    for _ in 0..100 {
        let response = app.get(&path, Some(token)).await;
        if response.status() == StatusCode::OK {
            return response;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the closed stream's slot never came back");
}
