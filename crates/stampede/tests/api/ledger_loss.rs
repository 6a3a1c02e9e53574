//! Cluster mode only: the Redis stock ledger losing a sale mid-sale (a
//! flush, a restart without persistence). Purchases on that sale answer 503
//! until the node has rebuilt it from the database, then go on; nothing is
//! counted twice, no answer given before the loss changes.

use reqwest::StatusCode;
use serde_json::{Value, json};
use stampede_ledger_redis::testing::{delete_matching, namespace_pattern};

use crate::helpers::{customer, eventually, spawn_app};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flushed_ledger_refuses_with_503_until_rebuilt_then_sells_exactly_the_rest() {
    let app = spawn_app().await;
    let Some(redis) = &app.redis else {
        return; // Embedded mode: the ledger is this process's memory.
    };
    let sale = app.create_sale(10, 2, json!({})).await;
    let id = sale["id"].as_str().unwrap();
    let mut won: Vec<(String, Value)> = Vec::new();
    for user in ["u1", "u2", "u3"] {
        let response = app.purchase(&customer(user), id, "before", 1).await;
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        won.push((user.to_owned(), response.json().await.unwrap()));
    }

    // The whole namespace goes, as with FLUSHALL.
    let deleted = delete_matching(&redis.url, &namespace_pattern(&redis.name)).await;
    assert!(deleted > 0, "the ledger kept nothing in Redis?");

    // The first purchase after the loss is refused, retryable, and starts
    // the rebuild; later ones succeed once it is done.
    let response = app.purchase(&customer("u4"), id, "after", 1).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(response.headers().get("retry-after").is_some());
    eventually(10, "the sale to be rebuilt", || async {
        let response = app.purchase(&customer("u4"), id, "after", 1).await;
        (response.status() == StatusCode::ACCEPTED).then_some(())
    })
    .await;

    // Answers given before the loss stand: the same order for the same key.
    for (user, order) in &won {
        let response = app.purchase(&customer(user), id, "before", 1).await;
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        let replay: Value = response.json().await.unwrap();
        assert_eq!(replay["id"], order["id"], "{user}'s key changed its answer");
    }
    // Per-user limits were rebuilt too: u1 holds 1 of 2.
    let response = app.purchase(&customer("u1"), id, "second", 2).await;
    assert_eq!(response.status(), StatusCode::CONFLICT);

    // The rest sells exactly: 4 sold so far, 6 left, never more.
    let mut sold_after = 0;
    for i in 0..10 {
        let response = app
            .purchase(&customer(&format!("late{i}")), id, "k", 1)
            .await;
        if response.status() == StatusCode::ACCEPTED {
            sold_after += 1;
        }
    }
    assert_eq!(sold_after, 6);
    let stats = app.stats(id).await;
    assert_eq!(stats["sold"], 10, "{stats}");
    assert_eq!(stats["remaining"], 0, "{stats}");
}
