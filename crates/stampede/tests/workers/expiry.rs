//! Expiry on a controlled clock: not a millisecond early, exactly once.

use std::sync::Arc;
use std::time::Duration;

use stampede_app::ledger::KeyMemorySettings;
use stampede_app::ports::{Clock, ManualClock, StockLedger, Store};
use stampede_app::workers::ExpirySweeper;
use stampede_domain::catalog::{Product, Sale, SaleRequest};
use stampede_domain::idempotency::IdempotencyKey;
use stampede_domain::ids::UserId;
use stampede_domain::order::{Order, OrderStatus};
use stampede_domain::quantity::Quantity;
use stampede_domain::time::Timestamp;
use stampede_inprocess::MemoryLedger;
use stampede_inprocess::OutboxBus;
use stampede_store_sqlite::{SqliteSettings, SqliteStore};

const T0: Timestamp = Timestamp::from_millis(1_900_000_000_000);

#[tokio::test]
async fn an_order_expires_when_its_window_closes_and_not_a_millisecond_before() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(&dir.path().join("db"), SqliteSettings::default()).unwrap());
    let clock = ManualClock::new(T0);
    let ledger = Arc::new(MemoryLedger::new(KeyMemorySettings::default(), T0));

    let product = Product::create("SKU", "Thing", 100, "EUR", T0).unwrap();
    store.insert_product(&product).await.unwrap();
    let request = SaleRequest {
        quantity: 10,
        per_user_limit: Some(5),
        payment_window_secs: Some(60),
        ..SaleRequest::default()
    };
    let sale = Sale::create(&product, &request, T0).unwrap();
    store.insert_sale(&sale).await.unwrap();
    let order = Order::place(
        &sale,
        UserId::parse("alice").unwrap(),
        Quantity::parse("quantity", 3).unwrap(),
        IdempotencyKey::parse("k").unwrap(),
        T0,
    );
    store
        .commit_orders(std::slice::from_ref(&order))
        .await
        .unwrap();
    ledger
        .restore(store.sale_snapshots().await.unwrap(), Vec::new(), T0)
        .await
        .unwrap();
    assert_eq!(ledger.remaining(sale.id).await.unwrap(), Some(7));

    let sweeper = ExpirySweeper::new(
        store.clone(),
        ledger.clone(),
        Arc::new(OutboxBus::new(store.clone())),
        clock.clone(),
        Duration::from_millis(250),
    );
    clock.advance_millis(59_999);
    assert_eq!(sweeper.sweep_once().await.unwrap(), 0, "expired early");
    assert_eq!(
        store.order(order.id).await.unwrap().unwrap().status,
        OrderStatus::AwaitingPayment
    );

    clock.advance_millis(1);
    assert_eq!(sweeper.sweep_once().await.unwrap(), 1);
    assert_eq!(
        store.order(order.id).await.unwrap().unwrap().status,
        OrderStatus::Cancelled
    );
    assert_eq!(ledger.remaining(sale.id).await.unwrap(), Some(10));
    assert_eq!(store.sale_counts(sale.id).await.unwrap().remaining, 10);

    // Exactly once: later sweeps find nothing and return nothing twice.
    clock.advance_millis(3_600_000);
    assert_eq!(sweeper.sweep_once().await.unwrap(), 0);
    assert_eq!(ledger.remaining(sale.id).await.unwrap(), Some(10));
    assert_eq!(store.sale_counts(sale.id).await.unwrap().remaining, 10);
    let events: Vec<String> = store
        .events_of(&order.id.to_string())
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event_type)
        .collect();
    assert_eq!(events, ["order.created", "order.expired"]);
    assert_eq!(clock.now(), T0.plus_millis(3_660_000));
    store.close().await;
}
