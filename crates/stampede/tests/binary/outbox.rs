//! The outbox across a crash: the process is killed between committing orders
//! and announcing them; after the restart every `order.created` is delivered,
//! and each event gets exactly one delivery.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode as AxumStatus;
use axum::routing::post;
use reqwest::StatusCode;
use serde_json::Value;

use crate::harness::{Api, Binary, DataDir, crowd, eventually, wait_for};

/// The receiver listens on 127.0.0.1, which webhooks reach only when allowed.
const ALLOW_RECEIVER: &[(&str, &str)] = &[("STAMPEDE_WEBHOOK_ALLOW_HOSTS", "127.0.0.1")];

/// Event ids received, with how often each came.
type Seen = Arc<Mutex<HashMap<String, (usize, Value)>>>;

async fn receiver() -> (String, Seen) {
    async fn hook(State(seen): State<Seen>, body: Bytes) -> AxumStatus {
        let event: Value = serde_json::from_slice(&body).unwrap();
        let id = event["id"].as_str().unwrap().to_owned();
        seen.lock().unwrap().entry(id).or_insert((0, event)).0 += 1;
        AxumStatus::OK
    }
    let seen: Seen = Arc::default();
    let app = Router::new()
        .route("/hook", post(hook))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/hook"), seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_committed_before_a_crash_are_delivered_after_it_once_each() {
    let (url, seen) = receiver().await;
    let dir = DataDir::new();
    let binary = Binary::start_with(&dir, ALLOW_RECEIVER);
    let api = Arc::new(Api::new(&binary));
    let subscription = api.subscribe(&url, &["order.created"]).await;
    let sale = api.create_sale(10_000, 1).await;

    let (tasks, answers) = crowd(&api, &sale, 300, 1);
    wait_for(&answers, StatusCode::ACCEPTED, 20).await;
    binary.kill_9();
    for task in tasks {
        task.await.unwrap();
    }
    let accepted: HashSet<String> = answers
        .lock()
        .unwrap()
        .values()
        .filter(|(status, _)| *status == StatusCode::ACCEPTED)
        .map(|(_, order)| order["id"].as_str().unwrap().to_owned())
        .collect();
    let delivered_before = seen.lock().unwrap().len();

    let binary = Binary::start_with(&dir, ALLOW_RECEIVER);
    let api = Api::new(&binary);
    let sold = api.stats(&sale).await["sold"].as_u64().unwrap() as usize;
    assert!(sold >= accepted.len());
    // Every committed order is announced — the accepted ones and any whose
    // answer the crash cut off.
    let announced = eventually(30, "every order.created to arrive", || async {
        let seen = seen.lock().unwrap();
        let orders: HashSet<String> = seen
            .values()
            .map(|(_, event)| event["data"]["id"].as_str().unwrap().to_owned())
            .collect();
        (orders.len() == sold).then_some(orders)
    })
    .await;
    assert!(
        accepted.is_subset(&announced),
        "an accepted order was never announced"
    );
    // One delivery per event, however often the crash made the receiver see it.
    let deliveries = api.deliveries(&subscription).await;
    let per_event: HashSet<&str> = deliveries
        .iter()
        .map(|d| d["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(deliveries.len(), sold, "deliveries");
    assert_eq!(per_event.len(), sold, "one delivery per event");
    let repeats: usize = seen.lock().unwrap().values().map(|(n, _)| n - 1).sum();
    eprintln!(
        "{} accepted before the kill, {sold} committed, {delivered_before} delivered before it; \
         {repeats} repeated deliveries after the restart (receivers deduplicate by event id)",
        accepted.len()
    );
}
