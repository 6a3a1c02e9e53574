//! A payment in flight when its worker is killed: the job that carried it
//! dies with the in-process queue (embedded mode) or comes back after its
//! lease (JetStream), and the payment sweep queues what the store still
//! holds as `requested`. After the restart the payment is sent and the
//! order paid, once.

use reqwest::StatusCode;

use crate::harness::{Api, Binary, DataDir, eventually};

/// Quick sweeps, so the test waits seconds rather than the production half
/// minute.
const SWEEP: [(&str, &str); 2] = [
    ("STAMPEDE_PAYMENT_SWEEP_INTERVAL_MS", "500"),
    ("STAMPEDE_PAYMENT_SWEEP_AFTER_MS", "1000"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_whose_worker_was_killed_mid_charge_is_sent_after_the_restart() {
    let dir = DataDir::new();
    // Every charge call takes 5 s: the kill lands in the middle of it.
    let mut slow = SWEEP.to_vec();
    slow.extend([
        ("STAMPEDE_PAYMENT_SIM_LATENCY_MIN_MS", "5000"),
        ("STAMPEDE_PAYMENT_SIM_LATENCY_MAX_MS", "5000"),
    ]);
    let binary = Binary::start_with(&dir, &slow);
    let api = Api::new(&binary);
    let sale = api.create_sale(3, 1).await;
    let (status, order) = api.purchase("payer", &sale, "k").await.unwrap();
    assert_eq!(status, StatusCode::ACCEPTED, "{order}");
    let id = order["id"].as_str().unwrap().to_owned();
    let (status, answer) = api.pay("payer", &id).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    // The job is taken and the charge under way.
    tokio::time::sleep(std::time::Duration::from_millis(1_000)).await;
    binary.kill_9();

    let binary = Binary::start_with(&dir, &SWEEP);
    let api = Api::new(&binary);
    eventually(30, "the order to be paid", || async {
        let (_, order) = api.order("payer", &id).await;
        (order["status"] == "paid").then_some(())
    })
    .await;
    let stats = api.stats(&sale).await;
    assert_eq!(stats["orders"]["paid"], 1, "{stats}");
    assert_eq!(stats["sold"], 1, "{stats}");
}
