//! The multi-node drill (cluster mode only): two `api` nodes and one
//! `worker` on one PostgreSQL, Redis and NATS; a crowd with two keys per
//! buyer, one key on each api node; SIGKILL the worker and one api node
//! mid-sale, restart them; then no oversell, no lost 202, per-user limits
//! held across nodes, the ledger equal to the database once the dead node's
//! reservations are reconciled, and the whole stock sellable.

use std::collections::HashMap;
use std::sync::Arc;

use reqwest::StatusCode;

use crate::harness::{Answers, Api, Binary, DataDir, eventually, wait_for};

const STOCK: u64 = 60;
const BUYERS: usize = 150;

fn node(dir: &DataDir, role: &str) -> Binary {
    Binary::start_with(dir, &[("STAMPEDE_ROLE", role)])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_a_worker_and_an_api_node_mid_sale_keeps_every_promise() {
    let dir = DataDir::new();
    if !dir.is_cluster() {
        return; // Services missing outside CI: nothing to drill.
    }
    let api_a = node(&dir, "api");
    let api_b = node(&dir, "api");
    let worker = node(&dir, "worker");
    let (a, b) = (Arc::new(Api::new(&api_a)), Arc::new(Api::new(&api_b)));
    let sale = a.create_sale(STOCK, 1).await;

    // Each buyer sends key-0 to node A and key-1 to node B at once: the
    // shared ledger must let at most one of them win.
    let answers: Answers = Arc::default();
    let mut tasks = Vec::new();
    for buyer in 0..BUYERS {
        for (key, api) in [("key-0", &a), ("key-1", &b)] {
            let (api, sale, answers) = (api.clone(), sale.clone(), answers.clone());
            tasks.push(tokio::spawn(async move {
                let user = format!("drill-{buyer}");
                if let Ok(answer) = api.purchase(&user, &sale, key).await {
                    answers
                        .lock()
                        .unwrap()
                        .insert((user, key.to_owned()), answer);
                }
            }));
        }
    }
    wait_for(&answers, StatusCode::ACCEPTED, 10).await;
    api_b.kill_9();
    worker.kill_9();
    for task in tasks {
        task.await.unwrap();
    }
    let answered: HashMap<_, _> = answers.lock().unwrap().clone();
    let won: Vec<_> = answered
        .iter()
        .filter(|(_, (status, _))| *status == StatusCode::ACCEPTED)
        .map(|((user, key), (_, order))| {
            let id = order["id"].as_str().unwrap().to_owned();
            (user.clone(), key.clone(), id)
        })
        .collect();
    eprintln!(
        "{} answers before the kills, {} won",
        answered.len(),
        won.len()
    );

    let api_b = node(&dir, "api");
    let _worker = node(&dir, "worker");
    let b = Api::new(&api_b);

    // Once the worker has settled the dead node's reservations, the ledger
    // equals the database.
    let stats = eventually(30, "the ledger to equal the database", || async {
        let stats = a.stats(&sale).await;
        let sold = stats["sold"].as_u64().unwrap();
        (stats["remaining"].as_u64().unwrap() == STOCK - sold).then_some(stats)
    })
    .await;
    let sold = stats["sold"].as_u64().unwrap();
    assert!(sold <= STOCK, "oversold: {stats}");
    assert!(sold >= won.len() as u64, "a 202 was lost: {stats}");

    // Every 202 is there, on either node, and its key still answers with it.
    for (user, key, order_id) in &won {
        for api in [&*a, &b] {
            let (status, order) = api.order(user, order_id).await;
            assert_eq!(status, StatusCode::OK, "order {order_id} of {user} lost");
            assert_eq!(order["user_id"], user.as_str());
        }
        let (status, replay) = b.purchase(user, &sale, key).await.unwrap();
        assert_eq!(status, StatusCode::ACCEPTED, "{user}/{key}: {replay}");
        assert_eq!(replay["id"], order_id.as_str());
    }
    // The per-user limit of 1 held across the two api nodes.
    for buyer in 0..BUYERS {
        let user = format!("drill-{buyer}");
        let held = a
            .orders_of(&user)
            .await
            .iter()
            .filter(|order| order["sale_id"] == sale.as_str() && order["status"] != "cancelled")
            .count();
        assert!(held <= 1, "{user} holds {held} orders with a limit of 1");
    }

    // And the whole stock can be sold: late buyers take exactly what is left.
    let mut late = 0;
    for buyer in 0..(STOCK as usize + 10) {
        let api = if buyer % 2 == 0 { &*a } else { &b };
        let (status, _) = api
            .purchase(&format!("late-{buyer}"), &sale, "k")
            .await
            .unwrap();
        if status == StatusCode::ACCEPTED {
            late += 1;
        }
    }
    assert_eq!(sold + late, STOCK, "the stock was not sold exactly");
    let stats = a.stats(&sale).await;
    assert_eq!(stats["sold"], STOCK, "{stats}");
    assert_eq!(stats["remaining"], 0, "{stats}");
}
