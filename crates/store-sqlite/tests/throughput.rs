//! A throwaway measurement, not a test: how many orders per second
//! `commit_orders` makes durable with batches of 256 on one sale, with and
//! without the expiry sweep's index (`orders_expiring`, migration 0002), to
//! show what that index costs the purchase path. Ignored by default; run it
//! in release mode:
//!
//! ```text
//! cargo test --release -p stampede-store-sqlite --test throughput -- --ignored --nocapture
//! ```
//!
//! Benchmarks are noisy on shared machines: compare runs made together.

// Test code: a failed expectation is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use stampede_app::ports::{CatalogStore, CommitOutcome, OrderStore};
use stampede_domain::catalog::{Product, Sale, SaleRequest};
use stampede_domain::idempotency::IdempotencyKey;
use stampede_domain::ids::UserId;
use stampede_domain::order::Order;
use stampede_domain::quantity::Quantity;
use stampede_domain::time::Timestamp;
use stampede_store_sqlite::{SqliteSettings, SqliteStore, Synchronous};
use tempfile::TempDir;

const BATCH: usize = 256;
const BATCHES: usize = 400;

/// Creates the schema, then takes the expiry index out again: the schema as
/// it would be without it.
fn without_expiry_index(path: &Path) {
    SqliteStore::open(path, SqliteSettings::default()).unwrap();
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch("DROP INDEX orders_expiring").unwrap();
}

async fn run(
    synchronous: Synchronous,
    callers: usize,
    random_users: bool,
    expiry_index: bool,
) -> f64 {
    let dir = TempDir::new().unwrap();
    let settings = SqliteSettings {
        synchronous,
        ..SqliteSettings::default()
    };
    let path = dir.path().join("bench.db");
    if !expiry_index {
        without_expiry_index(&path);
    }
    let store = Arc::new(SqliteStore::open(&path, settings).unwrap());
    let now = Timestamp::now();
    let product = Product::create("BENCH", "Phone", 49_900, "EUR", now).unwrap();
    store.insert_product(&product).await.unwrap();
    let request = SaleRequest {
        quantity: 10_000_000,
        ..SaleRequest::default()
    };
    let sale = Arc::new(Sale::create(&product, &request, now).unwrap());
    store.insert_sale(&sale).await.unwrap();
    let one = Quantity::parse("quantity", 1).unwrap();
    let key = IdempotencyKey::parse("k").unwrap();
    // Orders are made before the clock starts: the store is measured, not the
    // domain's constructors.
    let batches: Vec<Vec<Order>> = (0..BATCHES + 1)
        .map(|_| {
            (0..BATCH)
                .map(|_| {
                    // Buyers' ids are not in purchase order in a real crowd:
                    // random ids make the per-user indexes take random pages.
                    let user = if random_users {
                        UserId::parse(uuid::Uuid::new_v4().to_string()).unwrap()
                    } else {
                        UserId::generate()
                    };
                    Order::place(&sale, user, one, key.clone(), now)
                })
                .collect()
        })
        .collect();
    let mut batches = batches.into_iter();
    // Warm-up: statement cache, first pages.
    let warm = batches.next().unwrap();
    store.commit_orders(&warm).await.unwrap();
    let queue = Arc::new(std::sync::Mutex::new(batches));
    let started = Instant::now();
    let workers: Vec<_> = (0..callers)
        .map(|_| {
            let store = store.clone();
            let queue = queue.clone();
            tokio::spawn(async move {
                loop {
                    let next = queue.lock().unwrap().next();
                    let Some(batch) = next else { break };
                    let outcomes = store.commit_orders(&batch).await.unwrap();
                    let bad = outcomes.iter().find(|o| **o != CommitOutcome::Created);
                    assert!(bad.is_none(), "{bad:?}");
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.unwrap();
    }
    let elapsed = started.elapsed();
    (BATCH * BATCHES) as f64 / elapsed.as_secs_f64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement; run with --release -- --ignored --nocapture"]
async fn commit_orders_throughput_with_batches_of_256() {
    for round in 1..=3 {
        for (synchronous, callers, random_users) in [
            (Synchronous::Full, 1, true),
            (Synchronous::Full, 2, true),
            (Synchronous::Normal, 2, true),
            (Synchronous::Full, 2, false),
        ] {
            // Side by side, so both see the same machine.
            for expiry_index in [false, true] {
                let rate = run(synchronous, callers, random_users, expiry_index).await;
                println!(
                    "round {round}: synchronous={} callers={callers} random_users={random_users} \
                     expiry_index={expiry_index}: {:.0} orders/s ({} orders in batches of {BATCH})",
                    synchronous.as_str(),
                    rate,
                    BATCH * BATCHES
                );
            }
        }
    }
}
