//! Live sale controls on the real binary, raced against a crowd and audited
//! after. In cluster mode two `api` nodes share PostgreSQL and Redis: each
//! control is made on one node while the crowd buys on both, and must take
//! effect on the other; embedded, one node does both.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use reqwest::StatusCode;
use serde_json::{Value, json};
use stampede::cli::TokenRole;

use crate::harness::{Api, Binary, DataDir, eventually, token};

const STOCK: u64 = 60;
const BUYERS: usize = 200;
/// Both keys of a buyer may win before the limit drops to 1.
const LIMIT: u64 = 2;

impl Api {
    /// An admin's control: `POST /sales/{id}/<control>` (`PATCH /sales/{id}`
    /// for `"patch"`). The status and the body.
    async fn control(&self, sale: &str, control: &str, body: Option<Value>) -> (StatusCode, Value) {
        let request = match control {
            "patch" => self
                .client
                .patch(format!("{}/api/v1/sales/{sale}", self.base)),
            _ => self
                .client
                .post(format!("{}/api/v1/sales/{sale}/{control}", self.base)),
        };
        let mut request = request.bearer_auth(token("admin", TokenRole::Admin));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        (response.status(), response.json().await.unwrap())
    }

    async fn sale(&self, sale: &str) -> Value {
        let response = self
            .client
            .get(format!("{}/api/v1/sales/{sale}", self.base));
        response.send().await.unwrap().json().await.unwrap()
    }
}

/// Two api nodes in cluster mode, one node embedded (then `a` and `b` are it).
fn nodes(dir: &DataDir) -> Vec<Binary> {
    if dir.is_cluster() {
        let env = [("STAMPEDE_ROLE", "api")];
        vec![Binary::start_with(dir, &env), Binary::start_with(dir, &env)]
    } else {
        vec![Binary::start(dir)]
    }
}

fn slug(body: &Value) -> &str {
    body["type"]
        .as_str()
        .unwrap_or_default()
        .rsplit('/')
        .next()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_control_raced_against_a_crowd_on_two_nodes_keeps_every_promise() {
    let dir = DataDir::new();
    let binaries = nodes(&dir);
    let apis: Vec<Arc<Api>> = binaries.iter().map(|b| Arc::new(Api::new(b))).collect();
    let (a, b) = (apis[0].clone(), apis[apis.len() - 1].clone());
    let sale = a.create_sale(STOCK, LIMIT).await;

    // Each buyer sends two keys, one to each node.
    let mut crowd = Vec::new();
    for buyer in 0..BUYERS {
        for (key, api) in [("key-0", &a), ("key-1", &b)] {
            let (api, sale) = (api.clone(), sale.clone());
            crowd.push(tokio::spawn(async move {
                let user = format!("crowd-{buyer}");
                let answer = api.purchase(&user, &sale, key).await.unwrap();
                ((user, key), answer)
            }));
        }
    }
    // The controls, alternating nodes, while the crowd buys.
    let controls = [
        ("stock", Some(json!({"add": 40}))),
        ("pause", None),
        ("resume", None),
        ("stock", Some(json!({"withdraw": 25}))),
        ("patch", Some(json!({"per_user_limit": 1}))),
        ("stock", Some(json!({"add": 10}))),
    ];
    for (i, (control, body)) in controls.into_iter().enumerate() {
        let api = if i % 2 == 0 { &a } else { &b };
        let (status, answer) = api.control(&sale, control, body).await;
        // A withdrawal may find the crowd has bought the units.
        let raced = status == StatusCode::CONFLICT && slug(&answer) == "insufficient-stock";
        assert!(
            status == StatusCode::OK || raced,
            "{control}: {status} {answer}"
        );
    }
    let mut won = HashMap::new();
    for task in crowd {
        let ((user, key), (status, body)) = task.await.unwrap();
        match status {
            StatusCode::ACCEPTED => {
                won.insert((user, key), body["id"].as_str().unwrap().to_owned());
            }
            StatusCode::CONFLICT => {
                let known = ["sold-out", "limit-exceeded", "sale-paused"];
                assert!(known.contains(&slug(&body)), "{body}");
            }
            // Shed under the crowd: nothing sold to it.
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS => {}
            other => panic!("{user}/{key}: {other} {body}"),
        }
    }

    // At rest: the ledger equals the database, on both nodes.
    let stats = eventually(30, "the ledger to equal the database", || async {
        let stats = a.stats(&sale).await;
        let (q, s, r) = (
            stats["quantity"].as_u64().unwrap(),
            stats["sold"].as_u64().unwrap(),
            stats["remaining"].as_u64().unwrap(),
        );
        (q.checked_sub(s) == Some(r)).then_some(stats)
    })
    .await;
    let quantity = stats["quantity"].as_u64().unwrap();
    assert_eq!(
        b.stats(&sale).await["quantity"].as_u64(),
        Some(quantity),
        "{stats}"
    );
    assert_eq!(
        stats["sold"].as_u64(),
        Some(won.len() as u64),
        "a 202 lost or made up: {stats}"
    );
    assert!(won.len() as u64 <= quantity, "oversold: {stats}");
    // Every 202 is there, and nobody passed the highest limit in force.
    let mut held: HashMap<&str, u64> = HashMap::new();
    for ((user, _), order_id) in &won {
        let (status, order) = b.order(user, order_id).await;
        assert_eq!(status, StatusCode::OK, "order {order_id} of {user} lost");
        *held.entry(user).or_default() += order["quantity"].as_u64().unwrap();
    }
    assert!(
        held.values().all(|n| *n <= LIMIT),
        "a buyer passed the limit"
    );

    // What is left sells, exactly, and the withdrawn units never do.
    let left = stats["remaining"].as_u64().unwrap();
    let mut late = 0;
    for buyer in 0..(left + 5) {
        let api = if buyer % 2 == 0 { &a } else { &b };
        let (status, _) = api
            .purchase(&format!("late-{buyer}"), &sale, "k")
            .await
            .unwrap();
        late += u64::from(status == StatusCode::ACCEPTED);
    }
    assert_eq!(late, left, "the stock left was not sold exactly");
    let stats = a.stats(&sale).await;
    assert_eq!(stats["sold"].as_u64(), Some(quantity), "{stats}");

    // Ended on one node: every node refuses at once, and shows it.
    let (status, ended) = b.control(&sale, "end", None).await;
    assert_eq!(status, StatusCode::OK, "{ended}");
    for api in [&a, &b] {
        let (status, body) = api.purchase("after-end", &sale, "k").await.unwrap();
        assert_eq!(
            (status, slug(&body)),
            (StatusCode::CONFLICT, "sale-not-active")
        );
        eventually(5, "every node to show the end", || async {
            (api.sale(&sale).await["status"] == "ended").then_some(())
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_control_on_one_node_takes_effect_on_the_other_within_a_poll() {
    let dir = DataDir::new();
    let binaries = nodes(&dir);
    let apis: Vec<Api> = binaries.iter().map(Api::new).collect();
    let (a, b) = (&apis[0], &apis[apis.len() - 1]);
    let sale = a.create_sale(1, 1).await;
    // B knows the sale before it changes.
    assert_eq!(b.sale(&sale).await["version"], 1);

    // Paused on A: B refuses at once (the shared ledger), and shows it soon.
    let (status, _) = a.control(&sale, "pause", None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = b.purchase("pat", &sale, "k").await.unwrap();
    assert_eq!((status, slug(&body)), (StatusCode::CONFLICT, "sale-paused"));
    let started = Instant::now();
    eventually(5, "B to show the pause", || async {
        (b.sale(&sale).await["status"] == "paused").then_some(())
    })
    .await;
    eprintln!("B showed the pause after {:?}", started.elapsed());

    // Resumed on B: the same key wins on A (the pause was not remembered).
    let (status, _) = b.control(&sale, "resume", None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = a.purchase("pat", &sale, "k").await.unwrap();
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");

    // Sold out; a unit added on A sells on B.
    let (status, body) = b.purchase("quinn", &sale, "k").await.unwrap();
    assert_eq!((status, slug(&body)), (StatusCode::CONFLICT, "sold-out"));
    let (status, added) = a.control(&sale, "stock", Some(json!({"add": 1}))).await;
    assert_eq!(
        (status, added["quantity"].as_u64()),
        (StatusCode::OK, Some(2))
    );
    let (status, body) = b.purchase("rae", &sale, "k").await.unwrap();
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    // Nothing unsold is left to withdraw: refused on either node, nothing changed.
    for api in [a, b] {
        let (status, body) = api
            .control(&sale, "stock", Some(json!({"withdraw": 1})))
            .await;
        assert_eq!(
            (status, slug(&body)),
            (StatusCode::CONFLICT, "insufficient-stock")
        );
    }
    let stats = b.stats(&sale).await;
    assert_eq!(
        (stats["quantity"].as_u64(), stats["sold"].as_u64()),
        (Some(2), Some(2))
    );
    assert_eq!(stats["remaining"], 0, "{stats}");
}
