//! Micro-benchmark of one group commit (`cargo bench -p
//! stampede-store-sqlite`): 256 orders of one sale made durable in one
//! transaction by `SqliteStore::commit_orders`, on a temporary file with the
//! default settings (WAL, `synchronous=FULL`: one fsync per batch). Figures
//! and method: docs/benchmarks.md.

// Bench code: a failed unwrap is a broken benchmark.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use divan::Bencher;
use divan::counter::ItemsCount;
use stampede_app::ports::{CatalogStore, CommitOutcome, OrderStore};
use stampede_domain::catalog::{Product, Sale, SaleRequest};
use stampede_domain::idempotency::IdempotencyKey;
use stampede_domain::ids::UserId;
use stampede_domain::order::Order;
use stampede_domain::quantity::Quantity;
use stampede_domain::time::Timestamp;
use stampede_store_sqlite::{SqliteSettings, SqliteStore};

const BATCH: usize = 256;

fn main() {
    divan::main();
}

/// Each sample is one batch: an fsync takes a few hundred microseconds, so
/// there is no point in timing many per sample.
#[divan::bench(sample_count = 50, sample_size = 1)]
fn commit_256_orders(bencher: Bencher) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::TempDir::new().unwrap();
    let store = SqliteStore::open(&dir.path().join("bench.db"), SqliteSettings::default()).unwrap();
    let now = Timestamp::now();
    let product = Product::create("BENCH", "Phone", 100, "EUR", now).unwrap();
    let request = SaleRequest {
        quantity: 1_000_000_000,
        per_user_limit: Some(1_000_000_000),
        ..SaleRequest::default()
    };
    let sale = Sale::create(&product, &request, now).unwrap();
    runtime.block_on(async {
        store.insert_product(&product).await.unwrap();
        store.insert_sale(&sale).await.unwrap();
    });
    let one = Quantity::parse("quantity", 1).unwrap();
    let mut n = 0u64;
    // Orders are made outside the timing: the store is measured, not the
    // domain's constructors. Buyers are fresh UUIDv7 ids, time-ordered like a
    // real crowd's accounts are not, so this is the store's good case; the
    // throughput test (tests/throughput.rs) also measures random buyers.
    bencher
        .counter(ItemsCount::new(BATCH))
        .with_inputs(|| {
            (0..BATCH)
                .map(|_| {
                    n += 1;
                    let key = IdempotencyKey::parse(&format!("key-{n}")).unwrap();
                    Order::place(&sale, UserId::generate(), one, key, now)
                })
                .collect::<Vec<_>>()
        })
        .bench_local_refs(|batch| {
            let outcomes = runtime.block_on(store.commit_orders(batch)).unwrap();
            assert!(outcomes.iter().all(|o| *o == CommitOutcome::Created));
        });
}
