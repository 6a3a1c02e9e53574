//! The [`Store`](stampede_app::ports::Store) contract. Each function is one behaviour,
//! given a fresh, empty store; names read as sentences. The behaviours are
//! split by area; this module holds the fixtures they share.

mod accounts;
mod catalog;
mod expiry;
mod health;
mod orders;
mod outbox;
mod payments;
mod webhooks;

pub use accounts::*;
pub use catalog::*;
pub use expiry::*;
pub use health::*;
pub use orders::*;
pub use outbox::*;
pub use payments::*;
pub use webhooks::*;

use std::collections::HashMap;
use std::sync::Arc;

use stampede_domain::account::{Email, User};
use stampede_domain::catalog::{Product, Sale, SaleControl, SaleRequest, SaleState};
use stampede_domain::idempotency::IdempotencyKey;
use stampede_domain::ids::{
    EventId, OrderId, PaymentId, ProductId, SaleId, SubscriptionId, UserId,
};
use stampede_domain::order::{Order, OrderStatus};
use stampede_domain::payment::{Payment, PaymentResult, PaymentStatus};
use stampede_domain::quantity::Quantity;
use stampede_domain::time::Timestamp;
use stampede_domain::webhook::{
    Delivery, DeliveryStatus, EventFilter, StoredSecret, Subscription, WebhookUrl,
};
use stampede_trace::TraceParent;

use stampede_app::ports::{
    AttemptResult, CancelOutcome, CommitOutcome, PayOutcome, SaleCounts, SaleUpdate, SettleOutcome,
    Store, StoreError, StoredEvent,
};

/// The fixed "now" of every test: 2027-01-15, well inside any sale window.
const NOW: Timestamp = Timestamp::from_millis(1_800_000_000_000);

fn new_product(sku: &str) -> Product {
    Product::create(sku, "Phone", 49_900, "EUR", NOW).unwrap()
}

async fn stored_product(store: &dyn Store) -> Product {
    let product = new_product(&format!("SKU-{}", ProductId::generate()));
    store.insert_product(&product).await.unwrap();
    product
}

/// A stored sale of `quantity` units, at most `quantity` per buyer (the
/// store does not enforce limits; the ledger does).
async fn stored_sale(store: &dyn Store, quantity: i64) -> Sale {
    let product = stored_product(store).await;
    let request = SaleRequest {
        quantity,
        per_user_limit: Some(quantity),
        ..SaleRequest::default()
    };
    let sale = Sale::create(&product, &request, NOW).unwrap();
    store.insert_sale(&sale).await.unwrap();
    sale
}

/// A request for `quantity` units with every default.
fn sale_request(quantity: i64) -> SaleRequest {
    SaleRequest {
        quantity,
        ..SaleRequest::default()
    }
}

fn place_at(sale: &Sale, user: &str, key: &str, quantity: i64, at: Timestamp) -> Order {
    Order::place(
        sale,
        UserId::parse(user).unwrap(),
        Quantity::parse("quantity", quantity).unwrap(),
        IdempotencyKey::parse(key).unwrap(),
        at,
    )
}

fn place(sale: &Sale, user: &str, key: &str, quantity: i64) -> Order {
    place_at(sale, user, key, quantity, NOW)
}

fn user(email: &str) -> User {
    User {
        id: UserId::generate(),
        email: Email::parse(email).unwrap(),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo".into(),
        created_at: NOW,
    }
}

async fn commit(store: &dyn Store, orders: &[Order]) -> Vec<CommitOutcome> {
    let outcomes = store.commit_orders(orders).await.unwrap();
    assert_eq!(outcomes.len(), orders.len(), "one outcome per order");
    outcomes
}

async fn counts(store: &dyn Store, sale: &Sale) -> SaleCounts {
    let counts = store.sale_counts(sale.id).await.unwrap();
    assert_eq!(
        u64::from(sale.quantity) - counts.sold,
        counts.remaining,
        "quantity − sold = remaining"
    );
    counts
}

fn cancelled(order: &Order) -> Order {
    Order {
        status: OrderStatus::Cancelled,
        ..order.clone()
    }
}

fn paid(order: &Order) -> Order {
    Order {
        status: OrderStatus::Paid,
        ..order.clone()
    }
}

/// `order` with its payment window closing at `at`.
fn expiring(order: Order, at: Timestamp) -> Order {
    Order {
        expires_at: at,
        ..order
    }
}

/// Commits one order that must be created.
async fn committed(store: &dyn Store, order: Order) -> Order {
    assert_eq!(
        commit(store, std::slice::from_ref(&order)).await,
        [CommitOutcome::Created]
    );
    order
}

/// A new attempt on `order` made at `at`, which must be recorded.
async fn requested(store: &dyn Store, order: &Order, at: Timestamp) -> Payment {
    let payment = Payment::request(order, at);
    assert_eq!(
        store.request_payment(&payment).await.unwrap(),
        PayOutcome::Requested(payment.clone())
    );
    payment
}

fn approved(provider_ref: &str) -> PaymentResult {
    PaymentResult::Approved {
        provider_ref: provider_ref.into(),
    }
}

/// Every event in the outbox, in order.
async fn all_events(store: &dyn Store) -> Vec<StoredEvent> {
    store.events_after(0, 100_000).await.unwrap()
}

/// How many events of each type the outbox holds.
async fn event_counts(store: &dyn Store) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for event in all_events(store).await {
        *counts.entry(event.event_type).or_default() += 1;
    }
    counts
}

/// The types of the events of one aggregate, in order.
async fn history(store: &dyn Store, aggregate_id: &str) -> Vec<String> {
    let events = store.events_of(aggregate_id).await.unwrap();
    assert!(
        events.windows(2).all(|pair| pair[0].seq < pair[1].seq),
        "in seq order"
    );
    assert!(events.iter().all(|e| e.aggregate_id == aggregate_id));
    events.into_iter().map(|e| e.event_type).collect()
}

fn webhook(types: &[&str], at: Timestamp) -> Subscription {
    let types: Vec<String> = types.iter().map(|t| t.to_string()).collect();
    Subscription {
        id: SubscriptionId::generate(),
        url: WebhookUrl::parse("https://hooks.example.com/stampede").unwrap(),
        events: EventFilter::parse(&types).unwrap(),
        secret: StoredSecret::parse("v1:an-opaque-sealed-secret").unwrap(),
        created_at: at,
    }
}

async fn stored_webhook(store: &dyn Store) -> Subscription {
    let subscription = webhook(&["*"], NOW);
    store.insert_subscription(&subscription).await.unwrap();
    subscription
}

/// A fresh event in the outbox (a new product's), as consumers read it.
async fn fresh_event(store: &dyn Store) -> StoredEvent {
    let product = stored_product(store).await;
    let events = store.events_of(&product.id.to_string()).await.unwrap();
    assert_eq!(events.len(), 1);
    events.into_iter().next().unwrap()
}

/// The subscription's only delivery.
async fn only_delivery(store: &dyn Store, subscription: &Subscription) -> Delivery {
    let mut deliveries = store
        .deliveries(subscription.id, None, None, 10)
        .await
        .unwrap();
    assert_eq!(deliveries.len(), 1, "{deliveries:?}");
    deliveries.remove(0)
}
