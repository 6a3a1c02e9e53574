//! SIGKILL mid-sale: every 202 survives, nothing is oversold, limits hold,
//! replays give the first answer, and the rebuilt ledger equals the database.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use reqwest::StatusCode;

use crate::harness::{Api, Binary, DataDir, crowd, crowd_with_keys, eventually, wait_for};

const STOCK: u64 = 100;
const USERS: usize = 320;
const KEYS: usize = 2;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sale_killed_mid_flight_keeps_every_promise_after_restart() {
    let dir = DataDir::new();
    let binary = Binary::start(&dir);
    let api = Arc::new(Api::new(&binary));
    let sale = api.create_sale(STOCK, 1).await;

    let (tasks, answers) = crowd(&api, &sale, USERS, KEYS);
    wait_for(&answers, StatusCode::ACCEPTED, 10).await;
    binary.kill_9();
    for task in tasks {
        task.await.unwrap();
    }
    let before: HashMap<_, _> = answers.lock().unwrap().clone();
    let won_before: Vec<_> = before
        .iter()
        .filter(|(_, (status, _))| *status == StatusCode::ACCEPTED)
        .map(|((user, key), (_, order))| {
            (
                user.clone(),
                key.clone(),
                order["id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    eprintln!(
        "killed with {} of {} purchases answered ({} won)",
        before.len(),
        USERS * KEYS,
        won_before.len()
    );
    for (status, body) in before.values() {
        // Shedding (503 overloaded) is a correct answer under this crowd: it
        // promises nothing. In cluster mode so is 503 unavailable — a
        // dependency call that timed out on a loaded CI machine; its key is
        // retried below and gets one answer.
        let overloaded = body["type"]
            .as_str()
            .unwrap_or_default()
            .ends_with("/overloaded");
        let shed = *status == StatusCode::SERVICE_UNAVAILABLE && (overloaded || dir.is_cluster());
        assert!(
            [StatusCode::ACCEPTED, StatusCode::CONFLICT].contains(status) || shed,
            "unexpected answer before the crash: {status} {body}"
        );
    }

    let binary = Binary::start(&dir);
    let api = Arc::new(Api::new(&binary));

    // The ledger agrees with the database, and nothing is oversold. In
    // cluster mode the shared ledger still holds the dead node's
    // reservations until the reconciler settles them against the store.
    if dir.is_cluster() {
        eventually(
            20,
            "the dead node's reservations to be reconciled",
            || async {
                let stats = api.stats(&sale).await;
                let sold = stats["sold"].as_u64().unwrap();
                (stats["remaining"].as_u64().unwrap() == STOCK - sold).then_some(())
            },
        )
        .await;
    }
    let stats = api.stats(&sale).await;
    let sold = stats["sold"].as_u64().unwrap();
    assert!(sold <= STOCK, "oversold: {stats}");
    assert_eq!(
        stats["remaining"].as_u64().unwrap(),
        STOCK - sold,
        "ledger ≠ database: {stats}"
    );
    assert!(sold >= won_before.len() as u64, "a 202 was lost: {stats}");

    // Every 202 is there, as it was answered, and its replay gives the same order.
    for (user, key, order_id) in &won_before {
        let (status, order) = api.order(user, order_id).await;
        assert_eq!(status, StatusCode::OK, "order {order_id} of {user} lost");
        assert_eq!(order["user_id"], user.as_str());
        let (status, replay) = api.purchase(user, &sale, key).await.unwrap();
        assert_eq!(
            status,
            StatusCode::ACCEPTED,
            "replay of {user}/{key}: {replay}"
        );
        assert_eq!(replay["id"], order_id.as_str());
    }

    // Replays of refused keys may be decided afresh, never into a second order
    // for a winning key. Then the rest of the crowd takes what is left. The
    // shared ledger of cluster mode still remembers the refusals given before
    // the crash (same key, same answer), so there the crowd comes back with
    // fresh keys.
    let prefix = if dir.is_cluster() { "after-" } else { "key-" };
    let (tasks, _) = crowd_with_keys(&api, &sale, USERS, KEYS, prefix);
    for task in tasks {
        task.await.unwrap();
    }
    let mut orders = HashSet::new();
    for user in 0..USERS {
        let user = format!("buyer-{user}");
        let mine: Vec<_> = api
            .orders_of(&user)
            .await
            .into_iter()
            .filter(|o| o["sale_id"] == sale.as_str() && o["status"] != "cancelled")
            .collect();
        assert!(
            mine.len() <= 1,
            "{user} holds {} units, limit 1",
            mine.len()
        );
        for order in mine {
            assert!(orders.insert(order["id"].as_str().unwrap().to_owned()));
        }
    }
    // No undersell: the dead process's reservations were never real, so the
    // whole stock is sold once the crowd has been through.
    let stats = api.stats(&sale).await;
    assert_eq!(stats["sold"].as_u64().unwrap(), STOCK, "{stats}");
    assert_eq!(stats["remaining"].as_u64().unwrap(), 0, "{stats}");
    assert_eq!(orders.len() as u64, STOCK);
    for (user, _, order_id) in &won_before {
        assert_eq!(api.order(user, order_id).await.0, StatusCode::OK);
    }
}
