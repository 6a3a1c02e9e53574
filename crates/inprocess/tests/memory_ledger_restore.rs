//! Rebuilding one sale (what `LedgerRepair` does after an unknown sale)
//! leaves every other live sale as it is: replacing the whole ledger dropped
//! them, and their purchases answered 503 until each was rebuilt in turn.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use stampede_app::ledger::KeyMemorySettings;
use stampede_app::ports::{SaleSnapshot, StockLedger};
use stampede_domain::catalog::{Product, Sale, SaleRequest};
use stampede_domain::time::Timestamp;
use stampede_inprocess::MemoryLedger;

const NOW: Timestamp = Timestamp::from_millis(1_800_000_000_000);

fn sale(quantity: i64) -> Sale {
    let product = Product::create("SKU", "Thing", 100, "EUR", NOW).unwrap();
    let request = SaleRequest {
        price_cents: None,
        quantity,
        per_user_limit: Some(2),
        starts_at: None,
        ends_at: None,
        payment_window_secs: None,
        waiting_room: false,
    };
    Sale::create(&product, &request, NOW).unwrap()
}

fn snapshot(sale: &Sale, remaining: u64) -> SaleSnapshot {
    SaleSnapshot {
        sale: sale.clone(),
        remaining,
        holdings: Vec::new(),
    }
}

#[tokio::test]
async fn restoring_one_sale_leaves_the_other_live_sales_alone() {
    let ledger = MemoryLedger::new(KeyMemorySettings::default(), NOW);
    let (a, b) = (sale(5), sale(7));
    ledger
        .restore(vec![snapshot(&a, 5), snapshot(&b, 7)], Vec::new(), NOW)
        .await
        .unwrap();
    ledger
        .restore(vec![snapshot(&b, 7)], Vec::new(), NOW)
        .await
        .unwrap();
    assert_eq!(ledger.remaining(a.id).await.unwrap(), Some(5));
    assert_eq!(ledger.remaining(b.id).await.unwrap(), Some(7));
}
