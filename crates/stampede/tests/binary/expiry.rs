//! Expiry across downtime: the binary is down when an order's payment window
//! closes; after the restart the order expires and its stock comes back, once.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::harness::{Api, Binary, DataDir, eventually};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expiry_missed_while_down_happens_once_after_the_restart() {
    let dir = DataDir::new();
    let binary = Binary::start(&dir);
    let api = Api::new(&binary);
    let sale = api
        .create_sale_with(5, 1, json!({"payment_window_secs": 2}))
        .await;
    let mut orders = Vec::new();
    for user in 0..3 {
        let (status, order) = api
            .purchase(&format!("buyer-{user}"), &sale, "k")
            .await
            .unwrap();
        assert_eq!(status, StatusCode::ACCEPTED);
        orders.push((
            format!("buyer-{user}"),
            order["id"].as_str().unwrap().to_owned(),
        ));
    }
    assert_eq!(api.stats(&sale).await["remaining"], 2);
    binary.kill_9();

    // The windows close while nothing runs.
    tokio::time::sleep(Duration::from_millis(2_500)).await;

    let binary = Binary::start(&dir);
    let api = Api::new(&binary);
    for (user, id) in &orders {
        eventually(10, "the order to expire", || async {
            let (_, order) = api.order(user, id).await;
            (order["status"] == "cancelled").then_some(())
        })
        .await;
    }
    let stats = api.stats(&sale).await;
    assert_eq!(stats["remaining"], 5, "{stats}");
    assert_eq!(stats["sold"], 0, "{stats}");
    assert_eq!(stats["orders"]["cancelled"], 3, "{stats}");

    // Once: another sweep, and another restart, change nothing.
    tokio::time::sleep(Duration::from_millis(500)).await;
    binary.kill_9();
    let binary = Binary::start(&dir);
    let api = Api::new(&binary);
    let stats = api.stats(&sale).await;
    assert_eq!(stats["remaining"], 5, "stock came back twice: {stats}");
    assert_eq!(stats["sold"], 0);
    // The whole stock sells again.
    for user in 0..5 {
        let (status, _) = api
            .purchase(&format!("later-{user}"), &sale, "k")
            .await
            .unwrap();
        assert_eq!(status, StatusCode::ACCEPTED);
    }
    assert_eq!(api.stats(&sale).await["remaining"], 0);
}
