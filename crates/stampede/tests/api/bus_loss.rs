//! Cluster mode only: the JetStream stream deleted mid-sale, consumers and
//! all. The relay and the workers recover by themselves; every order still
//! gets its `order.created` webhook and its expiry, because nothing on the
//! bus was the only copy.

use std::collections::HashSet;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, admin, customer, eventually, spawn_app_with};
use crate::receiver::{Receiver, allow_receivers};

const ORDERS: usize = 30;

async fn buy(app: &TestApp, sale: &str, buyer: usize) -> String {
    eventually(10, "a purchase to be answered", || async {
        let response = app
            .purchase(&customer(&format!("b{buyer}")), sale, "k", 1)
            .await;
        match response.status() {
            StatusCode::ACCEPTED => {
                let order: Value = response.json().await.unwrap();
                Some(order["id"].as_str().unwrap().to_owned())
            }
            // Retryable while a dependency recovers.
            StatusCode::SERVICE_UNAVAILABLE => None,
            other => panic!("purchase answered {other}"),
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_stream_is_rebuilt_and_every_order_gets_its_webhook_and_its_expiry() {
    let app = spawn_app_with(allow_receivers).await;
    let Some(nats) = &app.nats else {
        return; // The bus is the outbox table here: nothing to lose.
    };
    let receiver = Receiver::start(|_| 200).await;
    let response = app
        .post(
            "/api/v1/webhooks",
            Some(&admin()),
            &json!({"url": receiver.url, "event_types": ["order.created"]}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let sale = app
        .create_sale(ORDERS as u64, 1, json!({"payment_window_secs": 2}))
        .await;
    let sale = sale["id"].as_str().unwrap();

    let mut orders = HashSet::new();
    for buyer in 0..ORDERS / 2 {
        orders.insert(buy(&app, sale, buyer).await);
    }
    nats.delete_now().await;
    for buyer in ORDERS / 2..ORDERS {
        orders.insert(buy(&app, sale, buyer).await);
    }

    eventually(60, "every order.created webhook", || async {
        let announced: HashSet<String> = receiver
            .hits()
            .iter()
            .map(|hit| hit.json()["data"]["id"].as_str().unwrap().to_owned())
            .collect();
        orders.is_subset(&announced).then_some(())
    })
    .await;
    eventually(30, "every order to expire", || async {
        let stats = app.stats(sale).await;
        (stats["orders"]["cancelled"] == ORDERS && stats["remaining"] == ORDERS).then_some(())
    })
    .await;
}
