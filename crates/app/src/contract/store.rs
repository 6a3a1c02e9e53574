//! The [`Store`](crate::ports::Store) contract. Each function is one behaviour,
//! given a fresh, empty store; names read as sentences.

use std::collections::HashMap;
use std::sync::Arc;

use stampede_domain::account::{Email, User};
use stampede_domain::catalog::{Product, Sale, SaleRequest};
use stampede_domain::idempotency::IdempotencyKey;
use stampede_domain::ids::{
    EventId, OrderId, PaymentId, ProductId, SaleId, SubscriptionId, UserId,
};
use stampede_domain::order::{Order, OrderStatus};
use stampede_domain::payment::{Payment, PaymentResult, PaymentStatus};
use stampede_domain::quantity::Quantity;
use stampede_domain::time::Timestamp;
use stampede_domain::webhook::{
    Delivery, DeliveryStatus, EventFilter, SigningSecret, Subscription, WebhookUrl,
};

use crate::ports::{
    AttemptResult, CancelOutcome, CommitOutcome, PayOutcome, SaleCounts, SettleOutcome, Store,
    StoreError, StoredEvent,
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
        u64::from(sale.quantity.get()) - counts.sold,
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
        secret: SigningSecret::parse("a-long-enough-signing-secret").unwrap(),
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

pub async fn a_product_reads_back_as_it_was_inserted(store: Arc<dyn Store>) {
    let product = new_product("PHONE-1");
    store.insert_product(&product).await.unwrap();
    assert_eq!(store.product(product.id).await.unwrap(), Some(product));
    assert_eq!(store.product(ProductId::generate()).await.unwrap(), None);
}

pub async fn products_page_in_creation_order_after_the_cursor(store: Arc<dyn Store>) {
    let products: Vec<Product> = (0..5).map(|i| new_product(&format!("P-{i}"))).collect();
    // Inserted out of order: paging follows the ids, which follow creation.
    for product in products.iter().rev() {
        store.insert_product(product).await.unwrap();
    }
    assert_eq!(store.products(None, 2).await.unwrap(), products[0..2]);
    assert_eq!(
        store.products(Some(products[1].id), 2).await.unwrap(),
        products[2..4]
    );
    assert_eq!(
        store.products(Some(products[3].id), 10).await.unwrap(),
        products[4..]
    );
    assert!(
        store
            .products(Some(products[4].id), 10)
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn a_second_product_with_the_same_sku_is_a_sku_conflict(store: Arc<dyn Store>) {
    let first = new_product("SAME-SKU");
    store.insert_product(&first).await.unwrap();
    let second = new_product("SAME-SKU");
    let err = store.insert_product(&second).await.unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict { field: "sku" }),
        "{err:?}"
    );
    assert_eq!(store.product(second.id).await.unwrap(), None);
    assert_eq!(store.product(first.id).await.unwrap(), Some(first));
}

pub async fn a_sale_reads_back_as_it_was_inserted(store: Arc<dyn Store>) {
    let product = stored_product(&*store).await;
    let request = SaleRequest {
        price_cents: Some(19_900),
        quantity: 100,
        per_user_limit: Some(2),
        starts_at: Some(NOW.plus_secs(60)),
        ends_at: Some(NOW.plus_secs(3600)),
        payment_window_secs: Some(300),
    };
    let bounded = Sale::create(&product, &request, NOW).unwrap();
    let open_ended = Sale::create(&product, &sale_request(7), NOW).unwrap();
    store.insert_sale(&bounded).await.unwrap();
    store.insert_sale(&open_ended).await.unwrap();
    assert_eq!(store.sale(bounded.id).await.unwrap(), Some(bounded));
    assert_eq!(store.sale(open_ended.id).await.unwrap(), Some(open_ended));
    assert_eq!(store.sale(SaleId::generate()).await.unwrap(), None);
}

pub async fn an_empty_batch_commits_nothing(store: Arc<dyn Store>) {
    assert!(store.commit_orders(&[]).await.unwrap().is_empty());
}

pub async fn a_committed_order_reads_back_and_takes_its_units_from_the_sale(store: Arc<dyn Store>) {
    let sale = stored_sale(&*store, 10).await;
    let order = place(&sale, "ada", "key-1", 3);
    assert_eq!(
        commit(&*store, std::slice::from_ref(&order)).await,
        [CommitOutcome::Created]
    );
    assert_eq!(store.order(order.id).await.unwrap(), Some(order));
    let counts = counts(&*store, &sale).await;
    assert_eq!((counts.sold, counts.remaining), (3, 7));
    assert_eq!(counts.by_status, [(OrderStatus::AwaitingPayment, 1)]);
    assert_eq!(store.order(OrderId::generate()).await.unwrap(), None);
}

pub async fn an_order_reads_back_by_its_users_key(store: Arc<dyn Store>) {
    let sale = stored_sale(&*store, 5).await;
    let order = place(&sale, "alice", "k1", 1);
    store
        .commit_orders(std::slice::from_ref(&order))
        .await
        .unwrap();
    let user = order.user_id.clone();
    assert_eq!(
        store
            .order_by_key(&user, &order.idempotency_key)
            .await
            .unwrap(),
        Some(order.clone())
    );
    let other = IdempotencyKey::parse("k2").unwrap();
    assert_eq!(store.order_by_key(&user, &other).await.unwrap(), None);
    let bob = UserId::parse("bob").unwrap();
    assert_eq!(
        store
            .order_by_key(&bob, &order.idempotency_key)
            .await
            .unwrap(),
        None
    );
}

pub async fn a_repeated_key_returns_the_first_order_and_takes_no_stock(store: Arc<dyn Store>) {
    let sale = stored_sale(&*store, 10).await;
    let first = place(&sale, "ada", "key-1", 1);
    commit(&*store, std::slice::from_ref(&first)).await;
    // The same user and key, even for another quantity: the first order
    // answers (the app decides whether the requests match).
    let repeat = place(&sale, "ada", "key-1", 2);
    assert_eq!(
        commit(&*store, std::slice::from_ref(&repeat)).await,
        [CommitOutcome::KeyTaken(first.clone())]
    );
    assert_eq!(store.order(repeat.id).await.unwrap(), None);
    assert_eq!(counts(&*store, &sale).await.remaining, 9);
    // Keys belong to their user: another user's same key is a new order.
    let other = place(&sale, "bob", "key-1", 1);
    assert_eq!(commit(&*store, &[other]).await, [CommitOutcome::Created]);
    assert_eq!(counts(&*store, &sale).await.remaining, 8);
}

pub async fn a_key_repeated_within_one_batch_goes_to_the_first_order(store: Arc<dyn Store>) {
    let sale = stored_sale(&*store, 10).await;
    let first = place(&sale, "ada", "key-1", 1);
    let repeat = place(&sale, "ada", "key-1", 1);
    assert_eq!(
        commit(&*store, &[first.clone(), repeat]).await,
        [
            CommitOutcome::Created,
            CommitOutcome::KeyTaken(first.clone())
        ]
    );
    assert_eq!(counts(&*store, &sale).await.sold, 1);
}

pub async fn a_repeated_key_gets_its_order_even_once_the_sale_is_sold_out(store: Arc<dyn Store>) {
    let sale = stored_sale(&*store, 1).await;
    let first = place(&sale, "ada", "key-1", 1);
    commit(&*store, std::slice::from_ref(&first)).await;
    // The key is looked up before the stock (I4): a retry is answered
    // with its order, not refused as sold out.
    let retry = place(&sale, "ada", "key-1", 1);
    assert_eq!(
        commit(&*store, &[retry]).await,
        [CommitOutcome::KeyTaken(first)]
    );
}

pub async fn refused_orders_in_a_batch_leave_the_others_committed(store: Arc<dyn Store>) {
    let sale = stored_sale(&*store, 3).await;
    let earlier = place(&sale, "eve", "key-e", 1);
    commit(&*store, std::slice::from_ref(&earlier)).await;
    let winner = place(&sale, "ada", "key-a", 1);
    let replay = place(&sale, "eve", "key-e", 1);
    let too_many = place(&sale, "carl", "key-c", 5);
    let last = place(&sale, "bob", "key-b", 1);
    let batch = [
        winner.clone(),
        replay.clone(),
        too_many.clone(),
        last.clone(),
    ];
    assert_eq!(
        commit(&*store, &batch).await,
        [
            CommitOutcome::Created,
            CommitOutcome::KeyTaken(earlier),
            CommitOutcome::SoldOut,
            CommitOutcome::Created,
        ]
    );
    assert_eq!(store.order(winner.id).await.unwrap(), Some(winner));
    assert_eq!(store.order(last.id).await.unwrap(), Some(last));
    assert_eq!(store.order(replay.id).await.unwrap(), None);
    assert_eq!(store.order(too_many.id).await.unwrap(), None);
    let counts = counts(&*store, &sale).await;
    assert_eq!((counts.sold, counts.remaining), (3, 0));
}

pub async fn an_order_for_an_unknown_sale_is_refused_as_sold_out(store: Arc<dyn Store>) {
    let sale = stored_sale(&*store, 5).await;
    let product = stored_product(&*store).await;
    let unknown = Sale::create(&product, &sale_request(5), NOW).unwrap();
    let stray = place(&unknown, "ada", "key-1", 1);
    let good = place(&sale, "ada", "key-2", 1);
    assert_eq!(
        commit(&*store, &[stray.clone(), good]).await,
        [CommitOutcome::SoldOut, CommitOutcome::Created]
    );
    assert_eq!(store.order(stray.id).await.unwrap(), None);
}

pub async fn sold_units_never_exceed_the_quantity_on_sale(store: Arc<dyn Store>) {
    let sale = stored_sale(&*store, 4).await;
    let batch: Vec<Order> = [2, 1, 2, 1, 1]
        .into_iter()
        .enumerate()
        .map(|(i, units)| place(&sale, &format!("user-{i}"), "key", units))
        .collect();
    use CommitOutcome::{Created, SoldOut};
    // 4 → 2 → 1 → (2 do not fit) → 0 → (nothing left). Never a partial order.
    assert_eq!(
        commit(&*store, &batch).await,
        [Created, Created, SoldOut, Created, SoldOut]
    );
    let counts = counts(&*store, &sale).await;
    assert_eq!((counts.sold, counts.remaining), (4, 0));
    let late = place(&sale, "late", "key", 1);
    assert_eq!(commit(&*store, &[late]).await, [SoldOut]);
}

pub async fn concurrent_commits_on_one_sale_never_oversell(store: Arc<dyn Store>) {
    const STOCK: i64 = 50;
    const TASKS: usize = 16;
    const BATCHES: usize = 5;
    const PER_BATCH: usize = 4;
    let sale = Arc::new(stored_sale(&*store, STOCK).await);
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let store = store.clone();
            let sale = sale.clone();
            tokio::spawn(async move {
                let mut created = Vec::new();
                for batch in 0..BATCHES {
                    let orders: Vec<Order> = (0..PER_BATCH)
                        .map(|i| place(&sale, &format!("u-{task}-{batch}-{i}"), "k", 1))
                        .collect();
                    let outcomes = store.commit_orders(&orders).await.unwrap();
                    assert_eq!(outcomes.len(), orders.len());
                    for (order, outcome) in orders.into_iter().zip(outcomes) {
                        assert!(
                            !matches!(outcome, CommitOutcome::KeyTaken(_)),
                            "every key is fresh"
                        );
                        if outcome == CommitOutcome::Created {
                            created.push(order);
                        }
                    }
                }
                created
            })
        })
        .collect();
    let mut created = Vec::new();
    for task in tasks {
        created.extend(task.await.unwrap());
    }
    // Demand (320) far exceeds the stock: exactly the stock is sold.
    assert_eq!(created.len() as i64, STOCK);
    let counts = counts(&*store, &sale).await;
    assert_eq!((counts.sold, counts.remaining), (STOCK as u64, 0));
    let snapshots = store.sale_snapshots().await.unwrap();
    let held: u64 = snapshots[0]
        .holdings
        .iter()
        .map(|(_, n)| u64::from(*n))
        .sum();
    assert_eq!(held, STOCK as u64);
    for order in &created {
        assert!(store.order(order.id).await.unwrap().is_some());
    }
}

pub async fn an_order_is_cancelled_exactly_once_however_often_it_is_asked(store: Arc<dyn Store>) {
    let sale = stored_sale(&*store, 5).await;
    let order = place(&sale, "ada", "key-1", 2);
    commit(&*store, std::slice::from_ref(&order)).await;
    assert_eq!(counts(&*store, &sale).await.remaining, 3);
    let later = NOW.plus_secs(60);
    let (one, two) = tokio::join!(
        store.cancel_order(order.id, later),
        store.cancel_order(order.id, later)
    );
    let mut outcomes = [one.unwrap(), two.unwrap()];
    outcomes.sort_by_key(|outcome| !matches!(outcome, CancelOutcome::Cancelled(_)));
    assert_eq!(
        outcomes,
        [
            CancelOutcome::Cancelled(cancelled(&order)),
            CancelOutcome::Unchanged(cancelled(&order))
        ]
    );
    let counts = counts(&*store, &sale).await;
    assert_eq!(
        (counts.sold, counts.remaining),
        (0, 5),
        "units came back once"
    );
    assert_eq!(
        store.order(order.id).await.unwrap(),
        Some(cancelled(&order))
    );
}

pub async fn cancelling_a_cancelled_order_leaves_it_unchanged(store: Arc<dyn Store>) {
    let sale = stored_sale(&*store, 5).await;
    let order = place(&sale, "ada", "key-1", 1);
    commit(&*store, std::slice::from_ref(&order)).await;
    assert_eq!(
        store.cancel_order(order.id, NOW).await.unwrap(),
        CancelOutcome::Cancelled(cancelled(&order))
    );
    assert_eq!(
        store.cancel_order(order.id, NOW).await.unwrap(),
        CancelOutcome::Unchanged(cancelled(&order))
    );
    assert_eq!(counts(&*store, &sale).await.remaining, 5);
}

pub async fn a_paid_order_is_left_unchanged_by_cancel(store: Arc<dyn Store>) {
    let sale = stored_sale(&*store, 5).await;
    let paid = Order {
        status: OrderStatus::Paid,
        ..place(&sale, "ada", "key-1", 1)
    };
    commit(&*store, std::slice::from_ref(&paid)).await;
    assert_eq!(
        store.cancel_order(paid.id, NOW).await.unwrap(),
        CancelOutcome::Unchanged(paid.clone())
    );
    let counts = counts(&*store, &sale).await;
    assert_eq!((counts.sold, counts.remaining), (1, 4));
}

pub async fn cancelling_an_unknown_order_is_not_found(store: Arc<dyn Store>) {
    assert_eq!(
        store.cancel_order(OrderId::generate(), NOW).await.unwrap(),
        CancelOutcome::NotFound
    );
}

pub async fn a_users_orders_page_newest_first_with_the_cursor(store: Arc<dyn Store>) {
    let sale = stored_sale(&*store, 100).await;
    let mut mine = Vec::new();
    for i in 0..5 {
        let order = place(&sale, "ada", &format!("key-{i}"), 1);
        let theirs = place(&sale, "bob", &format!("key-{i}"), 1);
        commit(&*store, &[order.clone(), theirs]).await;
        mine.push(order);
    }
    mine.reverse();
    let ada = UserId::parse("ada").unwrap();
    assert_eq!(store.orders_of(&ada, None, 2).await.unwrap(), mine[0..2]);
    assert_eq!(
        store.orders_of(&ada, Some(mine[1].id), 2).await.unwrap(),
        mine[2..4]
    );
    assert_eq!(
        store.orders_of(&ada, Some(mine[3].id), 2).await.unwrap(),
        mine[4..]
    );
    let nobody = UserId::parse("nobody").unwrap();
    assert!(store.orders_of(&nobody, None, 10).await.unwrap().is_empty());
}

pub async fn sale_counts_follow_orders_and_cancels(store: Arc<dyn Store>) {
    let sale = stored_sale(&*store, 10).await;
    let orders: Vec<Order> = (0..3)
        .map(|i| place(&sale, &format!("user-{i}"), "key", 2))
        .collect();
    commit(&*store, &orders).await;
    store.cancel_order(orders[0].id, NOW).await.unwrap();
    let counts = counts(&*store, &sale).await;
    assert_eq!((counts.sold, counts.remaining), (4, 6));
    let by_status: HashMap<OrderStatus, u64> = counts.by_status.into_iter().collect();
    assert_eq!(by_status.get(&OrderStatus::AwaitingPayment), Some(&2));
    assert_eq!(by_status.get(&OrderStatus::Cancelled), Some(&1));
    assert_eq!(by_status.get(&OrderStatus::Paid).copied().unwrap_or(0), 0);
    let unknown = store.sale_counts(SaleId::generate()).await.unwrap();
    assert_eq!((unknown.sold, unknown.remaining), (0, 0));
}

pub async fn sale_snapshots_hold_every_sale_with_holdings_that_exclude_cancelled_orders(
    store: Arc<dyn Store>,
) {
    let busy = stored_sale(&*store, 10).await;
    let quiet = stored_sale(&*store, 7).await;
    let orders = [
        place(&busy, "ada", "k1", 1),
        place(&busy, "ada", "k2", 1),
        place(&busy, "bob", "k1", 1),
        place(&busy, "carl", "k1", 3),
    ];
    commit(&*store, &orders).await;
    store.cancel_order(orders[3].id, NOW).await.unwrap();
    let snapshots = store.sale_snapshots().await.unwrap();
    assert_eq!(snapshots.len(), 2);
    let by_sale: HashMap<SaleId, _> = snapshots.into_iter().map(|s| (s.sale.id, s)).collect();
    let snapshot = &by_sale[&busy.id];
    assert_eq!(snapshot.sale, busy);
    assert_eq!(snapshot.remaining, 7);
    let mut holdings: Vec<(String, u32)> = snapshot
        .holdings
        .iter()
        .filter(|(_, units)| *units > 0)
        .map(|(user, units)| (user.to_string(), *units))
        .collect();
    holdings.sort();
    assert_eq!(holdings, [("ada".into(), 2), ("bob".into(), 1)]);
    let snapshot = &by_sale[&quiet.id];
    assert_eq!(snapshot.sale, quiet);
    assert_eq!(snapshot.remaining, 7);
    assert!(snapshot.holdings.iter().all(|(_, units)| *units == 0));
}

pub async fn keys_since_lists_the_keys_of_orders_created_from_then_on(store: Arc<dyn Store>) {
    let sale = stored_sale(&*store, 10).await;
    let old = place_at(&sale, "ada", "old", 1, NOW.plus_millis(-1));
    let now = place_at(&sale, "ada", "now", 2, NOW);
    let new = place_at(&sale, "bob", "new", 1, NOW.plus_secs(10));
    commit(&*store, &[old, now.clone(), new.clone()]).await;
    let mut keys: Vec<_> = store
        .keys_since(NOW)
        .await
        .unwrap()
        .into_iter()
        .map(|k| (k.user_id, k.key, k.order_id, k.sale_id, k.quantity))
        .collect();
    keys.sort_by(|a, b| a.1.cmp(&b.1));
    let record = |o: &Order| {
        (
            o.user_id.clone(),
            o.idempotency_key.clone(),
            o.id,
            o.sale_id,
            o.quantity.get(),
        )
    };
    assert_eq!(keys, [record(&new), record(&now)]);
}

pub async fn a_user_reads_back_by_email(store: Arc<dyn Store>) {
    let ada = user("ada@example.com");
    store.insert_user(&ada).await.unwrap();
    let email = Email::parse("ada@example.com").unwrap();
    assert_eq!(store.user_by_email(&email).await.unwrap(), Some(ada));
    let other = Email::parse("bob@example.com").unwrap();
    assert_eq!(store.user_by_email(&other).await.unwrap(), None);
}

pub async fn a_second_user_with_the_same_email_is_an_email_conflict(store: Arc<dyn Store>) {
    let first = user("ada@example.com");
    store.insert_user(&first).await.unwrap();
    let err = store
        .insert_user(&user("ada@example.com"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict { field: "email" }),
        "{err:?}"
    );
    let email = Email::parse("ada@example.com").unwrap();
    assert_eq!(store.user_by_email(&email).await.unwrap(), Some(first));
}

pub async fn expiry_cancels_only_open_orders_whose_payment_window_has_closed(
    store: Arc<dyn Store>,
) {
    let sale = stored_sale(&*store, 20).await;
    let at = |secs: i64| NOW.plus_millis(secs * 1000);
    // Due exactly now counts: the window closed at `expires_at`.
    let due_now = expiring(place(&sale, "ada", "due-now", 2), NOW);
    let overdue = expiring(place(&sale, "bob", "overdue", 1), at(-10));
    let pending = Order {
        status: OrderStatus::Pending,
        ..expiring(place(&sale, "pat", "pending", 1), at(-5))
    };
    let not_yet = expiring(place(&sale, "carl", "not-yet", 1), NOW.plus_millis(1));
    let paid_order = Order {
        status: OrderStatus::Paid,
        ..expiring(place(&sale, "dan", "paid", 1), at(-60))
    };
    let cancelled_first = expiring(place(&sale, "eve", "cancelled", 1), at(-60));
    commit(
        &*store,
        &[
            due_now.clone(),
            overdue.clone(),
            pending.clone(),
            not_yet.clone(),
            paid_order.clone(),
            cancelled_first.clone(),
        ],
    )
    .await;
    store
        .cancel_order(cancelled_first.id, at(-30))
        .await
        .unwrap();
    assert_eq!(counts(&*store, &sale).await.remaining, 20 - 6);

    let expired = store.expire_due(NOW, 100).await.unwrap();
    assert_eq!(
        expired,
        [
            cancelled(&overdue),
            cancelled(&pending),
            cancelled(&due_now)
        ],
        "the due open orders, oldest window first"
    );
    for (order, status) in [
        (&not_yet, OrderStatus::AwaitingPayment),
        (&paid_order, OrderStatus::Paid),
        (&cancelled_first, OrderStatus::Cancelled),
        (&due_now, OrderStatus::Cancelled),
    ] {
        assert_eq!(store.order(order.id).await.unwrap().unwrap().status, status);
    }
    let counts = counts(&*store, &sale).await;
    assert_eq!(
        (counts.sold, counts.remaining),
        (2, 18),
        "4 units came back"
    );
    let events = all_events(&*store).await;
    let expired_events: Vec<&StoredEvent> = events
        .iter()
        .filter(|e| e.event_type == "order.expired")
        .collect();
    assert_eq!(expired_events.len(), 3);
    assert_eq!(expired_events[2].aggregate_id, due_now.id.to_string());
    let payload = &expired_events[2].payload;
    assert_eq!(payload["id"], due_now.id.to_string());
    assert_eq!(payload["status"], "cancelled");
    assert_eq!(payload["quantity"], 2);
    assert_eq!(payload["expired_at"], NOW.to_rfc3339());
    assert_eq!(payload["expires_at"], NOW.to_rfc3339());
}

pub async fn expiry_returns_units_exactly_once_however_often_it_runs(store: Arc<dyn Store>) {
    let sale = stored_sale(&*store, 10).await;
    let orders: Vec<Order> = (0..3)
        .map(|i| expiring(place(&sale, &format!("u{i}"), "k", 2), NOW.plus_millis(-1)))
        .collect();
    commit(&*store, &orders).await;
    assert_eq!(counts(&*store, &sale).await.remaining, 4);
    assert_eq!(store.expire_due(NOW, 10).await.unwrap().len(), 3);
    assert!(store.expire_due(NOW, 10).await.unwrap().is_empty());
    assert!(
        store
            .expire_due(NOW.plus_secs(3600), 10)
            .await
            .unwrap()
            .is_empty()
    );
    // Cancelling an expired order gives nothing back either.
    assert_eq!(
        store.cancel_order(orders[0].id, NOW).await.unwrap(),
        CancelOutcome::Unchanged(cancelled(&orders[0]))
    );
    let counts = counts(&*store, &sale).await;
    assert_eq!((counts.sold, counts.remaining), (0, 10));
    assert_eq!(event_counts(&*store).await["order.expired"], 3);
}

pub async fn concurrent_expiry_sweeps_expire_each_order_once(store: Arc<dyn Store>) {
    const ORDERS: usize = 60;
    const SWEEPERS: usize = 4;
    let sale = stored_sale(&*store, 100).await;
    let orders: Vec<Order> = (0..ORDERS)
        .map(|i| {
            let due = NOW.plus_millis(-1 - i as i64);
            expiring(place(&sale, &format!("u{i}"), "k", 1), due)
        })
        .collect();
    commit(&*store, &orders).await;
    let sweepers: Vec<_> = (0..SWEEPERS)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut expired = Vec::new();
                loop {
                    let batch = store.expire_due(NOW, 7).await.unwrap();
                    if batch.is_empty() {
                        break expired;
                    }
                    expired.extend(batch.into_iter().map(|o| o.id));
                }
            })
        })
        .collect();
    let mut expired = Vec::new();
    for sweeper in sweepers {
        expired.extend(sweeper.await.unwrap());
    }
    assert_eq!(expired.len(), ORDERS, "each order expired by one sweeper");
    expired.sort();
    expired.dedup();
    assert_eq!(expired.len(), ORDERS, "and only once");
    let counts = counts(&*store, &sale).await;
    assert_eq!((counts.sold, counts.remaining), (0, 100));
    assert_eq!(event_counts(&*store).await["order.expired"], ORDERS);
}

pub async fn expiry_takes_the_oldest_due_orders_first_up_to_the_limit(store: Arc<dyn Store>) {
    let sale = stored_sale(&*store, 10).await;
    let by_age: Vec<Order> = (0..5)
        .map(|i| {
            let due = NOW.plus_millis(-1000 * (5 - i));
            expiring(place(&sale, &format!("u{i}"), "k", 1), due)
        })
        .collect();
    // Committed newest first: the sweep follows `expires_at`, not ids.
    let mut shuffled = by_age.clone();
    shuffled.reverse();
    commit(&*store, &shuffled).await;
    let oldest: Vec<Order> = by_age.iter().map(cancelled).collect();
    assert_eq!(store.expire_due(NOW, 2).await.unwrap(), oldest[0..2]);
    assert_eq!(store.expire_due(NOW, 2).await.unwrap(), oldest[2..4]);
    assert_eq!(store.expire_due(NOW, 2).await.unwrap(), oldest[4..]);
    assert!(store.expire_due(NOW, 2).await.unwrap().is_empty());
    assert!(store.expire_due(NOW, 0).await.unwrap().is_empty());
}

pub async fn expiry_never_touches_a_paid_order(store: Arc<dyn Store>) {
    let sale = stored_sale(&*store, 5).await;
    let order = committed(&*store, place(&sale, "ada", "k", 2)).await;
    let payment = requested(&*store, &order, NOW).await;
    let settled = store
        .settle_payment(payment.id, &approved("ch_1"), NOW.plus_secs(1))
        .await
        .unwrap();
    assert_eq!(settled, SettleOutcome::Paid(paid(&order)));
    let long_after = order.expires_at.plus_secs(3600);
    assert!(store.expire_due(long_after, 10).await.unwrap().is_empty());
    assert_eq!(store.order(order.id).await.unwrap(), Some(paid(&order)));
    let counts = counts(&*store, &sale).await;
    assert_eq!((counts.sold, counts.remaining), (2, 3));
}

pub async fn a_payment_request_on_an_open_order_is_recorded_with_its_event(store: Arc<dyn Store>) {
    let sale = stored_sale(&*store, 5).await;
    let order = committed(&*store, place(&sale, "ada", "k", 2)).await;
    let payment = Payment::request(&order, NOW.plus_secs(1));
    assert_eq!(
        store.request_payment(&payment).await.unwrap(),
        PayOutcome::Requested(payment.clone())
    );
    assert_eq!(
        store.payment(payment.id).await.unwrap(),
        Some(payment.clone())
    );
    assert_eq!(
        store.payments_of(order.id).await.unwrap(),
        std::slice::from_ref(&payment)
    );
    assert_eq!(store.payment(PaymentId::generate()).await.unwrap(), None);
    assert!(
        store
            .payments_of(OrderId::generate())
            .await
            .unwrap()
            .is_empty()
    );
    // The order itself is unchanged until the provider answers.
    assert_eq!(store.order(order.id).await.unwrap(), Some(order.clone()));
    let events = store.events_of(&order.id.to_string()).await.unwrap();
    let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(types, ["order.created", "payment.requested"]);
    let requested = &events[1];
    assert_eq!(requested.created_at, payment.created_at);
    let payload = &requested.payload;
    assert_eq!(payload["id"], payment.id.to_string());
    assert_eq!(payload["order_id"], order.id.to_string());
    assert_eq!(payload["amount_cents"], 2 * 49_900);
    assert_eq!(payload["currency"], "EUR");
    assert_eq!(payload["status"], "requested");
    assert_eq!(payload["refund_required"], false);
    assert!(payload["provider_ref"].is_null());
    assert_eq!(payload["created_at"], payment.created_at.to_rfc3339());
}

pub async fn a_second_payment_request_joins_the_attempt_in_flight(store: Arc<dyn Store>) {
    let sale = stored_sale(&*store, 5).await;
    let order = committed(&*store, place(&sale, "ada", "k", 1)).await;
    let first = requested(&*store, &order, NOW).await;
    let second = Payment::request(&order, NOW.plus_secs(1));
    assert_eq!(
        store.request_payment(&second).await.unwrap(),
        PayOutcome::InFlight(first.clone())
    );
    // Still in flight once the provider took it.
    store
        .mark_submitted(first.id, "ch_1", NOW.plus_secs(2))
        .await
        .unwrap();
    let submitted = store.payment(first.id).await.unwrap().unwrap();
    assert_eq!(submitted.status, PaymentStatus::Submitted);
    let third = Payment::request(&order, NOW.plus_secs(3));
    assert_eq!(
        store.request_payment(&third).await.unwrap(),
        PayOutcome::InFlight(submitted.clone())
    );
    assert_eq!(store.payments_of(order.id).await.unwrap(), [submitted]);
    assert_eq!(store.payment(second.id).await.unwrap(), None);
    assert_eq!(event_counts(&*store).await["payment.requested"], 1);
}

pub async fn an_order_that_is_not_open_is_not_payable(store: Arc<dyn Store>) {
    let sale = stored_sale(&*store, 5).await;
    let order = committed(&*store, place(&sale, "ada", "k1", 1)).await;
    store.cancel_order(order.id, NOW).await.unwrap();
    let payment = Payment::request(&order, NOW);
    assert_eq!(
        store.request_payment(&payment).await.unwrap(),
        PayOutcome::NotPayable(cancelled(&order))
    );
    let paid_order = Order {
        status: OrderStatus::Paid,
        ..place(&sale, "ada", "k2", 1)
    };
    let paid_order = committed(&*store, paid_order).await;
    assert_eq!(
        store
            .request_payment(&Payment::request(&paid_order, NOW))
            .await
            .unwrap(),
        PayOutcome::NotPayable(paid_order.clone())
    );
    assert_eq!(store.payment(payment.id).await.unwrap(), None);
    assert!(store.payments_of(order.id).await.unwrap().is_empty());
    let counts = event_counts(&*store).await;
    assert!(!counts.contains_key("payment.requested"), "{counts:?}");
}

pub async fn payments_still_requested_are_listed_oldest_first_until_answered(
    store: Arc<dyn Store>,
) {
    let sale = stored_sale(&*store, 5).await;
    let first = committed(&*store, place(&sale, "ada", "k", 1)).await;
    let second = committed(&*store, place(&sale, "bob", "k", 1)).await;
    let third = committed(&*store, place(&sale, "cy", "k", 1)).await;
    let old = requested(&*store, &first, NOW.plus_secs(1)).await;
    let newer = requested(&*store, &second, NOW.plus_secs(2)).await;
    let newest = requested(&*store, &third, NOW.plus_secs(3)).await;
    let listed = |before: Timestamp, limit: u32| {
        let store = store.clone();
        async move { store.requested_before(before, limit).await.unwrap() }
    };
    assert!(
        listed(NOW.plus_secs(1), 10).await.is_empty(),
        "before, not at"
    );
    assert_eq!(listed(NOW.plus_secs(3), 10).await, [old.id, newer.id]);
    assert_eq!(listed(NOW.plus_secs(9), 1).await, [old.id]);
    // Submitted or answered: no longer waiting to be sent.
    store
        .mark_submitted(old.id, "ref-1", NOW.plus_secs(4))
        .await
        .unwrap();
    store
        .settle_payment(newer.id, &approved("ref-2"), NOW.plus_secs(4))
        .await
        .unwrap();
    assert_eq!(listed(NOW.plus_secs(9), 10).await, [newest.id]);
}

pub async fn a_payment_request_for_an_unknown_order_is_not_found(store: Arc<dyn Store>) {
    let sale = stored_sale(&*store, 5).await;
    let never_committed = place(&sale, "ada", "k", 1);
    let payment = Payment::request(&never_committed, NOW);
    assert_eq!(
        store.request_payment(&payment).await.unwrap(),
        PayOutcome::NotFound
    );
    assert_eq!(store.payment(payment.id).await.unwrap(), None);
}

pub async fn a_submitted_payment_keeps_the_first_provider_reference(store: Arc<dyn Store>) {
    let sale = stored_sale(&*store, 5).await;
    let order = committed(&*store, place(&sale, "ada", "k", 1)).await;
    let payment = requested(&*store, &order, NOW).await;
    let at = NOW.plus_secs(5);
    store.mark_submitted(payment.id, "ch_1", at).await.unwrap();
    let submitted = Payment {
        status: PaymentStatus::Submitted,
        provider_ref: Some("ch_1".into()),
        updated_at: at,
        ..payment.clone()
    };
    assert_eq!(
        store.payment(payment.id).await.unwrap(),
        Some(submitted.clone())
    );
    // A redelivered request changes nothing, nor does an unknown id.
    store
        .mark_submitted(payment.id, "ch_2", NOW.plus_secs(9))
        .await
        .unwrap();
    store
        .mark_submitted(PaymentId::generate(), "ch_3", NOW)
        .await
        .unwrap();
    assert_eq!(store.payment(payment.id).await.unwrap(), Some(submitted));
    assert_eq!(event_counts(&*store).await["payment.submitted"], 1);
}

pub async fn approval_pays_an_open_order_once(store: Arc<dyn Store>) {
    let sale = stored_sale(&*store, 5).await;
    let order = committed(&*store, place(&sale, "ada", "k", 2)).await;
    let payment = requested(&*store, &order, NOW).await;
    store
        .mark_submitted(payment.id, "ch_1", NOW.plus_secs(1))
        .await
        .unwrap();
    let at = NOW.plus_secs(2);
    assert_eq!(
        store
            .settle_payment(payment.id, &approved("ch_1"), at)
            .await
            .unwrap(),
        SettleOutcome::Paid(paid(&order))
    );
    assert_eq!(store.order(order.id).await.unwrap(), Some(paid(&order)));
    let settled = Payment {
        status: PaymentStatus::Approved,
        provider_ref: Some("ch_1".into()),
        updated_at: at,
        ..payment.clone()
    };
    assert_eq!(
        store.payment(payment.id).await.unwrap(),
        Some(settled.clone())
    );
    // The provider's webhook repeats, or contradicts itself: nothing moves.
    for again in [
        approved("ch_1"),
        PaymentResult::Declined {
            reason: "late".into(),
        },
    ] {
        assert_eq!(
            store
                .settle_payment(payment.id, &again, NOW.plus_secs(3))
                .await
                .unwrap(),
            SettleOutcome::AlreadySettled(settled.clone())
        );
    }
    assert_eq!(
        history(&*store, &order.id.to_string()).await,
        [
            "order.created",
            "payment.requested",
            "payment.submitted",
            "order.paid"
        ]
    );
    // Paid excludes cancel (I7) and a second payment.
    assert_eq!(
        store
            .cancel_order(order.id, NOW.plus_secs(4))
            .await
            .unwrap(),
        CancelOutcome::Unchanged(paid(&order))
    );
    assert_eq!(
        store
            .request_payment(&Payment::request(&order, NOW.plus_secs(5)))
            .await
            .unwrap(),
        PayOutcome::NotPayable(paid(&order))
    );
    let counts = counts(&*store, &sale).await;
    assert_eq!((counts.sold, counts.remaining), (2, 3));
    assert_eq!(counts.by_status, [(OrderStatus::Paid, 1)]);
}

pub async fn approval_after_a_cancel_flags_a_refund_and_leaves_the_order_cancelled(
    store: Arc<dyn Store>,
) {
    let sale = stored_sale(&*store, 5).await;
    let order = committed(&*store, place(&sale, "ada", "k", 2)).await;
    let payment = requested(&*store, &order, NOW).await;
    store
        .mark_submitted(payment.id, "ch_1", NOW.plus_secs(1))
        .await
        .unwrap();
    store
        .cancel_order(order.id, NOW.plus_secs(2))
        .await
        .unwrap();
    let at = NOW.plus_secs(3);
    assert_eq!(
        store
            .settle_payment(payment.id, &approved("ch_1"), at)
            .await
            .unwrap(),
        SettleOutcome::RefundRequired(cancelled(&order))
    );
    assert_eq!(
        store.order(order.id).await.unwrap(),
        Some(cancelled(&order))
    );
    let flagged = store.payment(payment.id).await.unwrap().unwrap();
    assert_eq!(
        (flagged.status, flagged.refund_required, flagged.updated_at),
        (PaymentStatus::Approved, true, at)
    );
    assert_eq!(
        history(&*store, &order.id.to_string()).await,
        [
            "order.created",
            "payment.requested",
            "payment.submitted",
            "order.cancelled",
            "payment.refund_required"
        ]
    );
    let events = store.events_of(&order.id.to_string()).await.unwrap();
    let refund = &events[4].payload;
    assert_eq!(refund["id"], payment.id.to_string());
    assert_eq!(refund["status"], "approved");
    assert_eq!(refund["refund_required"], true);
    let counts = counts(&*store, &sale).await;
    assert_eq!(
        (counts.sold, counts.remaining),
        (0, 5),
        "the units came back once"
    );
}

pub async fn approval_after_expiry_flags_a_refund_and_leaves_the_order_cancelled(
    store: Arc<dyn Store>,
) {
    let sale = stored_sale(&*store, 5).await;
    let order = expiring(place(&sale, "ada", "k", 1), NOW.plus_secs(60));
    let order = committed(&*store, order).await;
    let payment = requested(&*store, &order, NOW).await;
    // The provider answers after the window closed and the sweep ran.
    let after = NOW.plus_secs(61);
    assert_eq!(
        store.expire_due(after, 10).await.unwrap(),
        [cancelled(&order)]
    );
    assert_eq!(
        store
            .settle_payment(payment.id, &approved("ch_9"), after.plus_secs(1))
            .await
            .unwrap(),
        SettleOutcome::RefundRequired(cancelled(&order))
    );
    let flagged = store.payment(payment.id).await.unwrap().unwrap();
    assert!(flagged.refund_required);
    assert_eq!(flagged.provider_ref.as_deref(), Some("ch_9"));
    let counts = counts(&*store, &sale).await;
    assert_eq!((counts.sold, counts.remaining), (0, 5));
    assert!(!event_counts(&*store).await.contains_key("order.paid"));
}

pub async fn a_declined_or_failed_payment_leaves_the_order_open_and_payable_again(
    store: Arc<dyn Store>,
) {
    let sale = stored_sale(&*store, 5).await;
    let order = committed(&*store, place(&sale, "ada", "k", 1)).await;
    let declined = requested(&*store, &order, NOW).await;
    store
        .mark_submitted(declined.id, "ch_1", NOW.plus_secs(1))
        .await
        .unwrap();
    let at = NOW.plus_secs(2);
    let decline = PaymentResult::Declined {
        reason: "insufficient funds".into(),
    };
    assert_eq!(
        store
            .settle_payment(declined.id, &decline, at)
            .await
            .unwrap(),
        SettleOutcome::NotPaid(order.clone())
    );
    let declined = Payment {
        status: PaymentStatus::Declined,
        provider_ref: Some("ch_1".into()),
        reason: Some("insufficient funds".into()),
        updated_at: at,
        ..declined
    };
    assert_eq!(
        store.payment(declined.id).await.unwrap(),
        Some(declined.clone())
    );
    let failed = requested(&*store, &order, NOW.plus_secs(3)).await;
    let fail = PaymentResult::Failed {
        reason: "provider unavailable".into(),
    };
    assert_eq!(
        store
            .settle_payment(failed.id, &fail, NOW.plus_secs(4))
            .await
            .unwrap(),
        SettleOutcome::NotPaid(order.clone())
    );
    let failed = store.payment(failed.id).await.unwrap().unwrap();
    assert_eq!(failed.status, PaymentStatus::Failed);
    assert_eq!(failed.reason.as_deref(), Some("provider unavailable"));
    assert_eq!(failed.provider_ref, None);
    assert_eq!(store.order(order.id).await.unwrap(), Some(order.clone()));
    // Payable again, and this time it goes through.
    let third = requested(&*store, &order, NOW.plus_secs(5)).await;
    assert_eq!(
        store
            .settle_payment(third.id, &approved("ch_3"), NOW.plus_secs(6))
            .await
            .unwrap(),
        SettleOutcome::Paid(paid(&order))
    );
    let ids: Vec<PaymentId> = store
        .payments_of(order.id)
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.id)
        .collect();
    assert_eq!(ids, [declined.id, failed.id, third.id], "oldest first");
    let counts = event_counts(&*store).await;
    assert_eq!(counts["payment.declined"], 1);
    assert_eq!(counts["payment.failed"], 1);
    assert_eq!(counts["payment.requested"], 3);
    assert_eq!(counts["order.paid"], 1);
}

pub async fn settling_an_unknown_payment_is_not_found(store: Arc<dyn Store>) {
    assert_eq!(
        store
            .settle_payment(PaymentId::generate(), &approved("ch_1"), NOW)
            .await
            .unwrap(),
        SettleOutcome::NotFound
    );
}

pub async fn cancel_and_approval_raced_from_many_tasks_leave_each_order_paid_or_cancelled(
    store: Arc<dyn Store>,
) {
    const ORDERS: usize = 24;
    let sale = stored_sale(&*store, 100).await;
    let mut pairs = Vec::new();
    for i in 0..ORDERS {
        // Every third order's window closes now, so a sweep joins the race.
        let order = place(&sale, &format!("u{i}"), "k", 2);
        let order = if i % 3 == 0 {
            expiring(order, NOW)
        } else {
            order
        };
        let order = committed(&*store, order).await;
        let payment = requested(&*store, &order, NOW).await;
        store
            .mark_submitted(payment.id, &format!("ch_{i}"), NOW)
            .await
            .unwrap();
        pairs.push((order, payment));
    }
    let mut cancels = Vec::new();
    let mut settles = Vec::new();
    for (i, (order, payment)) in pairs.iter().enumerate() {
        let cancel = {
            let store = store.clone();
            let id = order.id;
            move || tokio::spawn(async move { store.cancel_order(id, NOW).await.unwrap() })
        };
        let settle = {
            let store = store.clone();
            let id = payment.id;
            move || {
                tokio::spawn(async move {
                    store
                        .settle_payment(id, &approved("ch"), NOW)
                        .await
                        .unwrap()
                })
            }
        };
        // Sent in both orders, so both sides win some.
        if i % 2 == 0 {
            cancels.push(cancel());
            settles.push(settle());
        } else {
            settles.push(settle());
            cancels.push(cancel());
        }
    }
    let sweep = {
        let store = store.clone();
        tokio::spawn(async move { store.expire_due(NOW, 100).await.unwrap() })
    };
    let mut cancel_outcomes = Vec::new();
    for task in cancels {
        cancel_outcomes.push(task.await.unwrap());
    }
    let mut settle_outcomes = Vec::new();
    for task in settles {
        settle_outcomes.push(task.await.unwrap());
    }
    let swept: Vec<OrderId> = sweep.await.unwrap().into_iter().map(|o| o.id).collect();
    let mut paid_units = 0;
    for (i, (order, payment)) in pairs.iter().enumerate() {
        let now = store.order(order.id).await.unwrap().unwrap();
        let payment = store.payment(payment.id).await.unwrap().unwrap();
        assert_eq!(payment.status, PaymentStatus::Approved);
        let history = history(&*store, &order.id.to_string()).await;
        let closes = history
            .iter()
            .filter(|t| *t == "order.cancelled" || *t == "order.expired")
            .count();
        let pays = history.iter().filter(|t| *t == "order.paid").count();
        match now.status {
            OrderStatus::Paid => {
                paid_units += 2;
                assert_eq!(settle_outcomes[i], SettleOutcome::Paid(paid(order)));
                assert_eq!(cancel_outcomes[i], CancelOutcome::Unchanged(paid(order)));
                assert!(!swept.contains(&order.id));
                assert!(!payment.refund_required);
                assert_eq!((closes, pays), (0, 1), "{history:?}");
            }
            OrderStatus::Cancelled => {
                assert_eq!(
                    settle_outcomes[i],
                    SettleOutcome::RefundRequired(cancelled(order))
                );
                let by_cancel = cancel_outcomes[i] == CancelOutcome::Cancelled(cancelled(order));
                assert!(
                    by_cancel != swept.contains(&order.id),
                    "closed by exactly one of cancel and expiry"
                );
                assert!(payment.refund_required);
                assert_eq!((closes, pays), (1, 0), "{history:?}");
            }
            other => panic!("order {i} ended {other:?}"),
        }
    }
    let counts = counts(&*store, &sale).await;
    assert_eq!(counts.sold, paid_units);
    assert_eq!(counts.remaining, 100 - paid_units);
}

pub async fn an_empty_outbox_starts_at_zero(store: Arc<dyn Store>) {
    assert_eq!(store.last_seq().await.unwrap(), 0);
    assert!(store.events_after(0, 10).await.unwrap().is_empty());
    assert!(store.events_of("nothing").await.unwrap().is_empty());
    assert_eq!(store.cursor("relay").await.unwrap(), 0);
}

pub async fn events_after_pages_through_the_outbox_in_seq_order(store: Arc<dyn Store>) {
    let sale = stored_sale(&*store, 10).await;
    let mut orders = Vec::new();
    for i in 0..5 {
        orders.push(committed(&*store, place(&sale, &format!("u{i}"), "k", 1)).await);
    }
    let all = all_events(&*store).await;
    assert_eq!(all.len(), 7);
    assert!(all.windows(2).all(|pair| pair[0].seq < pair[1].seq));
    assert!(all[0].seq > 0);
    assert_eq!(store.last_seq().await.unwrap(), all[6].seq);
    let types: Vec<&str> = all.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(types[..2], ["product.created", "sale.created"]);
    let created: Vec<String> = all[2..].iter().map(|e| e.aggregate_id.clone()).collect();
    let committed: Vec<String> = orders.iter().map(|o| o.id.to_string()).collect();
    assert_eq!(created, committed, "in commit order");
    let mut ids: Vec<_> = all.iter().map(|e| e.id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 7, "every event has its own id");
    // Pages of three, each after the last one seen.
    let mut paged = Vec::new();
    let mut after = 0;
    loop {
        let page = store.events_after(after, 3).await.unwrap();
        assert!(page.len() <= 3);
        let Some(last) = page.last() else { break };
        after = last.seq;
        paged.extend(page);
    }
    assert_eq!(paged, all);
    assert_eq!(store.events_after(all[3].seq, 2).await.unwrap(), all[4..6]);
    assert!(
        store
            .events_after(store.last_seq().await.unwrap(), 10)
            .await
            .unwrap()
            .is_empty()
    );
    let created = &all[2];
    assert_eq!(created.created_at, orders[0].created_at);
    assert_eq!(created.payload["id"], orders[0].id.to_string());
    assert_eq!(created.payload["status"], "awaiting_payment");
}

pub async fn every_change_writes_exactly_one_event_of_its_type(store: Arc<dyn Store>) {
    let sale = stored_sale(&*store, 10).await;
    store.insert_user(&user("ada@example.com")).await.unwrap();
    let a = place(&sale, "a", "k", 1);
    let b = expiring(place(&sale, "b", "k", 1), NOW.plus_millis(-1));
    let c = place(&sale, "c", "k", 1);
    let d = place(&sale, "d", "k", 1);
    let replay = place(&sale, "a", "k", 1);
    commit(&*store, &[a.clone(), b, c.clone(), d.clone(), replay]).await;
    let later = NOW.plus_secs(1);
    for _ in 0..2 {
        store.cancel_order(a.id, later).await.unwrap();
        store.expire_due(NOW, 10).await.unwrap();
    }
    // c: requested (twice: the second joins), submitted twice, approved twice.
    let pay_c = requested(&*store, &c, later).await;
    store
        .request_payment(&Payment::request(&c, later))
        .await
        .unwrap();
    for _ in 0..2 {
        store.mark_submitted(pay_c.id, "ch_c", later).await.unwrap();
        store
            .settle_payment(pay_c.id, &approved("ch_c"), later)
            .await
            .unwrap();
    }
    // d: declined, failed, then approved after a cancel.
    let reason = || "no".to_string();
    let declined = requested(&*store, &d, later).await;
    let decline = PaymentResult::Declined { reason: reason() };
    store
        .settle_payment(declined.id, &decline, later)
        .await
        .unwrap();
    let failed = requested(&*store, &d, later).await;
    let fail = PaymentResult::Failed { reason: reason() };
    store.settle_payment(failed.id, &fail, later).await.unwrap();
    let late = requested(&*store, &d, later).await;
    store.cancel_order(d.id, later).await.unwrap();
    store
        .settle_payment(late.id, &approved("ch_d"), later)
        .await
        .unwrap();
    // Refused and bookkeeping writes announce nothing.
    store
        .request_payment(&Payment::request(&a, later))
        .await
        .unwrap();
    store.save_cursor("relay", 3).await.unwrap();
    let webhook = stored_webhook(&*store).await;
    let event = all_events(&*store).await.remove(0);
    store
        .enqueue_deliveries(&event, &[webhook.id], later)
        .await
        .unwrap();
    let delivery = only_delivery(&*store, &webhook).await;
    store
        .record_attempt(
            delivery.id,
            &AttemptResult::Delivered { status: 200 },
            later,
        )
        .await
        .unwrap();
    store.delete_subscription(webhook.id).await.unwrap();

    let mut by_type: Vec<(String, usize)> = event_counts(&*store).await.into_iter().collect();
    by_type.sort();
    let expected = [
        ("order.cancelled", 2),
        ("order.created", 4),
        ("order.expired", 1),
        ("order.paid", 1),
        ("payment.declined", 1),
        ("payment.failed", 1),
        ("payment.refund_required", 1),
        ("payment.requested", 4),
        ("payment.submitted", 1),
        ("product.created", 1),
        ("sale.created", 1),
        ("user.registered", 1),
    ]
    .map(|(kind, n)| (kind.to_string(), n));
    assert_eq!(by_type, expected);
    let counts = counts(&*store, &sale).await;
    assert_eq!((counts.sold, counts.remaining), (1, 9));
}

pub async fn an_orders_events_hold_its_history_including_its_payments(store: Arc<dyn Store>) {
    let sale = stored_sale(&*store, 10).await;
    let order = committed(&*store, place(&sale, "ada", "k", 3)).await;
    let other = committed(&*store, place(&sale, "bob", "k", 1)).await;
    requested(&*store, &other, NOW).await;
    let first = requested(&*store, &order, NOW.plus_secs(1)).await;
    let decline = PaymentResult::Declined {
        reason: "card expired".into(),
    };
    store
        .settle_payment(first.id, &decline, NOW.plus_secs(2))
        .await
        .unwrap();
    let second = requested(&*store, &order, NOW.plus_secs(3)).await;
    store
        .mark_submitted(second.id, "ch_2", NOW.plus_secs(4))
        .await
        .unwrap();
    let paid_at = NOW.plus_secs(5);
    store
        .settle_payment(second.id, &approved("ch_2"), paid_at)
        .await
        .unwrap();
    assert_eq!(
        history(&*store, &order.id.to_string()).await,
        [
            "order.created",
            "payment.requested",
            "payment.declined",
            "payment.requested",
            "payment.submitted",
            "order.paid"
        ]
    );
    assert_eq!(
        history(&*store, &other.id.to_string()).await,
        ["order.created", "payment.requested"]
    );
    let events = store.events_of(&order.id.to_string()).await.unwrap();
    let declined = &events[2].payload;
    assert_eq!(declined["id"], first.id.to_string());
    assert_eq!(declined["order_id"], order.id.to_string());
    assert_eq!(declined["amount_cents"], 3 * 49_900);
    assert_eq!(declined["currency"], "EUR");
    assert_eq!(declined["status"], "declined");
    assert_eq!(declined["reason"], "card expired");
    assert_eq!(declined["refund_required"], false);
    assert_eq!(declined["created_at"], NOW.plus_secs(1).to_rfc3339());
    assert_eq!(declined["updated_at"], NOW.plus_secs(2).to_rfc3339());
    assert_eq!(events[2].created_at, NOW.plus_secs(2));
    let submitted = &events[4].payload;
    assert_eq!(submitted["status"], "submitted");
    assert_eq!(submitted["provider_ref"], "ch_2");
    let paid_event = &events[5];
    assert_eq!(paid_event.created_at, paid_at);
    assert_eq!(paid_event.payload["id"], order.id.to_string());
    assert_eq!(paid_event.payload["status"], "paid");
    assert_eq!(paid_event.payload["amount_cents"], 3 * 49_900);
    assert_eq!(paid_event.payload["payment"]["id"], second.id.to_string());
    assert_eq!(paid_event.payload["payment"]["status"], "approved");
    assert_eq!(paid_event.payload["payment"]["provider_ref"], "ch_2");
}

pub async fn consumer_cursors_start_at_zero_and_never_move_backwards(store: Arc<dyn Store>) {
    assert_eq!(store.cursor("relay").await.unwrap(), 0);
    store.save_cursor("relay", 5).await.unwrap();
    assert_eq!(store.cursor("relay").await.unwrap(), 5);
    store.save_cursor("relay", 3).await.unwrap();
    assert_eq!(store.cursor("relay").await.unwrap(), 5, "never back");
    store.save_cursor("relay", 9).await.unwrap();
    assert_eq!(store.cursor("relay").await.unwrap(), 9);
    assert_eq!(store.cursor("webhooks").await.unwrap(), 0, "per consumer");
    // Racing saves of one consumer end at the furthest.
    let saves: Vec<_> = (1..=20)
        .rev()
        .map(|seq| {
            let store = store.clone();
            tokio::spawn(async move { store.save_cursor("webhooks", seq).await.unwrap() })
        })
        .collect();
    for save in saves {
        save.await.unwrap();
    }
    assert_eq!(store.cursor("webhooks").await.unwrap(), 20);
    assert_eq!(store.cursor("relay").await.unwrap(), 9);
    assert!(
        all_events(&*store).await.is_empty(),
        "cursors are no events"
    );
}

pub async fn a_webhook_subscription_reads_back_as_it_was_inserted(store: Arc<dyn Store>) {
    let first = webhook(&["order.paid", "order.created"], NOW);
    let second = webhook(&["*"], NOW.plus_secs(1));
    // Inserted newest first: the listing follows creation.
    store.insert_subscription(&second).await.unwrap();
    store.insert_subscription(&first).await.unwrap();
    assert_eq!(
        store.subscription(first.id).await.unwrap(),
        Some(first.clone())
    );
    assert_eq!(
        store
            .subscription(first.id)
            .await
            .unwrap()
            .unwrap()
            .events
            .types(),
        ["order.created", "order.paid"]
    );
    assert_eq!(store.subscriptions().await.unwrap(), [first, second]);
    assert_eq!(
        store
            .subscription(SubscriptionId::generate())
            .await
            .unwrap(),
        None
    );
}

pub async fn enqueueing_an_event_twice_schedules_one_delivery_per_subscription(
    store: Arc<dyn Store>,
) {
    let first = stored_webhook(&*store).await;
    let second = stored_webhook(&*store).await;
    let event = fresh_event(&*store).await;
    let both = [first.id, second.id];
    store.enqueue_deliveries(&event, &both, NOW).await.unwrap();
    // Redelivered to the enqueuer, later: nothing new, nothing moved.
    let later = NOW.plus_secs(5);
    store
        .enqueue_deliveries(&event, &both, later)
        .await
        .unwrap();
    store
        .enqueue_deliveries(&event, &[first.id], later)
        .await
        .unwrap();
    // A subscription deleted meanwhile (or never made) gets nothing.
    store
        .enqueue_deliveries(&event, &[SubscriptionId::generate()], later)
        .await
        .unwrap();
    store.enqueue_deliveries(&event, &[], later).await.unwrap();
    for subscription in [&first, &second] {
        let delivery = only_delivery(&*store, subscription).await;
        assert_eq!(delivery.subscription_id, subscription.id);
        assert_eq!(delivery.event_id, event.id);
        assert_eq!(delivery.event_type, "product.created");
        assert_eq!(delivery.status, DeliveryStatus::Pending);
        assert_eq!(delivery.attempts, 0);
        assert_eq!(delivery.next_attempt_at, NOW);
        assert_eq!((delivery.created_at, delivery.updated_at), (NOW, NOW));
        assert_eq!((delivery.last_error, delivery.last_status), (None, None));
    }
    let due = store.claim_due_deliveries(NOW, 10, NOW).await.unwrap();
    assert_eq!(due.len(), 2);
    for due in &due {
        assert_eq!(due.event, event);
        assert_eq!(due.subscription.id, due.delivery.subscription_id);
    }
    let mut subscriptions: Vec<_> = due.iter().map(|d| d.subscription.clone()).collect();
    subscriptions.sort_by_key(|s| s.id);
    assert_eq!(subscriptions, [first, second]);
    assert!(
        !all_events(&*store)
            .await
            .iter()
            .any(|e| e.event_type.starts_with("webhook")),
        "scheduling announces nothing"
    );
}

pub async fn due_deliveries_are_leased_to_one_claim_at_a_time(store: Arc<dyn Store>) {
    let subscription = stored_webhook(&*store).await;
    let early = fresh_event(&*store).await;
    let late = fresh_event(&*store).await;
    store
        .enqueue_deliveries(&early, &[subscription.id], NOW)
        .await
        .unwrap();
    store
        .enqueue_deliveries(&late, &[subscription.id], NOW.plus_secs(10))
        .await
        .unwrap();
    // The events of the deliveries a claim at `at` took, leased until `until`.
    let claim = |at: Timestamp, limit: u32, until: Timestamp| {
        let store = store.clone();
        async move {
            let due = store.claim_due_deliveries(at, limit, until).await.unwrap();
            due.into_iter().map(|d| d.event.id).collect::<Vec<_>>()
        }
    };
    let (ten, twenty) = (NOW.plus_secs(10), NOW.plus_secs(20));
    assert!(claim(NOW.plus_millis(-1), 10, twenty).await.is_empty());
    assert_eq!(claim(ten, 1, twenty).await, [early.id], "longest due first");
    // Leased: not due for another claim until the lease ends.
    assert_eq!(claim(ten, 10, twenty).await, [late.id]);
    assert!(
        claim(NOW.plus_secs(19), 10, NOW.plus_secs(30))
            .await
            .is_empty()
    );
    // A claim whose worker never reported gives them back at the lease's end.
    let mut again = claim(twenty, 10, NOW.plus_secs(30)).await;
    again.sort();
    let mut both = vec![early.id, late.id];
    both.sort();
    assert_eq!(again, both);
    // A reported attempt sets the real next attempt, lease or not.
    let failed = AttemptResult::Failed {
        error: "connection refused".into(),
        status: None,
        retry_at: NOW.plus_secs(60),
    };
    let delivery_of = |event: EventId| {
        let store = store.clone();
        let subscription = subscription.clone();
        async move {
            let all = store
                .deliveries(subscription.id, None, None, 10)
                .await
                .unwrap();
            all.into_iter().find(|d| d.event_id == event).unwrap().id
        }
    };
    let (early_delivery, late_delivery) = (delivery_of(early.id).await, delivery_of(late.id).await);
    store
        .record_attempt(early_delivery, &failed, NOW.plus_secs(21))
        .await
        .unwrap();
    store
        .record_attempt(
            late_delivery,
            &AttemptResult::Delivered { status: 200 },
            NOW.plus_secs(21),
        )
        .await
        .unwrap();
    assert!(
        claim(NOW.plus_secs(59), 10, NOW.plus_secs(90))
            .await
            .is_empty()
    );
    assert_eq!(
        claim(NOW.plus_secs(60), 10, NOW.plus_secs(90)).await,
        [early.id]
    );
}

/// Workers on many nodes claiming at once: each delivery is taken once.
pub async fn concurrent_claims_take_each_due_delivery_once(store: Arc<dyn Store>) {
    const DELIVERIES: usize = 24;
    let subscription = stored_webhook(&*store).await;
    for _ in 0..DELIVERIES {
        let event = fresh_event(&*store).await;
        store
            .enqueue_deliveries(&event, &[subscription.id], NOW)
            .await
            .unwrap();
    }
    let mut claims = tokio::task::JoinSet::new();
    for _ in 0..6 {
        let store = store.clone();
        claims.spawn(async move {
            let mut taken = Vec::new();
            loop {
                let due = store
                    .claim_due_deliveries(NOW, 3, NOW.plus_secs(60))
                    .await
                    .unwrap();
                if due.is_empty() {
                    return taken;
                }
                taken.extend(due.into_iter().map(|d| d.delivery.id));
            }
        });
    }
    let mut taken = Vec::new();
    while let Some(claimed) = claims.join_next().await {
        taken.extend(claimed.unwrap());
    }
    let distinct: std::collections::HashSet<_> = taken.iter().collect();
    assert_eq!(distinct.len(), taken.len(), "a delivery was claimed twice");
    assert_eq!(taken.len(), DELIVERIES, "every delivery was claimed");
}

pub async fn a_failed_attempt_is_retried_later_and_a_postponed_one_keeps_its_attempts(
    store: Arc<dyn Store>,
) {
    let subscription = stored_webhook(&*store).await;
    let event = fresh_event(&*store).await;
    store
        .enqueue_deliveries(&event, &[subscription.id], NOW)
        .await
        .unwrap();
    let id = only_delivery(&*store, &subscription).await.id;
    let at = |secs: u32| NOW.plus_secs(secs);
    let timeout = AttemptResult::Failed {
        error: "timed out".into(),
        status: None,
        retry_at: at(30),
    };
    store.record_attempt(id, &timeout, at(1)).await.unwrap();
    let delivery = only_delivery(&*store, &subscription).await;
    assert_eq!(delivery.status, DeliveryStatus::Pending);
    assert_eq!(delivery.attempts, 1);
    assert_eq!(delivery.next_attempt_at, at(30));
    assert_eq!(delivery.last_error.as_deref(), Some("timed out"));
    assert_eq!(delivery.last_status, None);
    assert_eq!(delivery.updated_at, at(1));
    let server_error = AttemptResult::Failed {
        error: "HTTP 503".into(),
        status: Some(503),
        retry_at: at(90),
    };
    store
        .record_attempt(id, &server_error, at(31))
        .await
        .unwrap();
    let delivery = only_delivery(&*store, &subscription).await;
    assert_eq!(
        (
            delivery.attempts,
            delivery.last_status,
            delivery.next_attempt_at
        ),
        (2, Some(503), at(90))
    );
    // The endpoint's breaker is open: not attempted, so not counted.
    let postponed = AttemptResult::Postponed { retry_at: at(120) };
    store.record_attempt(id, &postponed, at(91)).await.unwrap();
    let delivery = only_delivery(&*store, &subscription).await;
    assert_eq!(delivery.attempts, 2);
    assert_eq!(delivery.next_attempt_at, at(120));
    assert_eq!(delivery.last_error.as_deref(), Some("HTTP 503"));
    assert_eq!(delivery.status, DeliveryStatus::Pending);
    store
        .record_attempt(id, &AttemptResult::Delivered { status: 204 }, at(121))
        .await
        .unwrap();
    let delivered = only_delivery(&*store, &subscription).await;
    assert_eq!(delivered.status, DeliveryStatus::Delivered);
    assert_eq!(delivered.attempts, 3);
    assert_eq!(delivered.last_status, Some(204));
    assert_eq!(delivered.last_error, None);
    assert!(
        store
            .claim_due_deliveries(at(10_000), 10, at(10_000))
            .await
            .unwrap()
            .is_empty()
    );
    // A repeated report of an attempt finds it delivered and leaves it.
    store.record_attempt(id, &timeout, at(122)).await.unwrap();
    assert_eq!(only_delivery(&*store, &subscription).await, delivered);
}

pub async fn a_dead_delivery_is_never_due_again(store: Arc<dyn Store>) {
    let subscription = stored_webhook(&*store).await;
    let event = fresh_event(&*store).await;
    store
        .enqueue_deliveries(&event, &[subscription.id], NOW)
        .await
        .unwrap();
    let id = only_delivery(&*store, &subscription).await.id;
    let dead = AttemptResult::Dead {
        error: "HTTP 410".into(),
        status: Some(410),
    };
    store
        .record_attempt(id, &dead, NOW.plus_secs(1))
        .await
        .unwrap();
    let delivery = only_delivery(&*store, &subscription).await;
    assert_eq!(delivery.status, DeliveryStatus::Dead);
    assert_eq!(delivery.attempts, 1);
    assert_eq!(delivery.last_status, Some(410));
    assert_eq!(delivery.last_error.as_deref(), Some("HTTP 410"));
    assert!(
        store
            .claim_due_deliveries(NOW.plus_secs(100_000), 10, NOW.plus_secs(100_000))
            .await
            .unwrap()
            .is_empty()
    );
    let postponed = AttemptResult::Postponed {
        retry_at: NOW.plus_secs(5),
    };
    store
        .record_attempt(id, &postponed, NOW.plus_secs(2))
        .await
        .unwrap();
    assert_eq!(only_delivery(&*store, &subscription).await, delivery);
    // Enqueueing the event again does not revive it.
    store
        .enqueue_deliveries(&event, &[subscription.id], NOW.plus_secs(3))
        .await
        .unwrap();
    assert_eq!(only_delivery(&*store, &subscription).await, delivery);
}

pub async fn deleting_a_subscription_removes_its_deliveries(store: Arc<dyn Store>) {
    let gone = stored_webhook(&*store).await;
    let kept = stored_webhook(&*store).await;
    let event = fresh_event(&*store).await;
    store
        .enqueue_deliveries(&event, &[gone.id, kept.id], NOW)
        .await
        .unwrap();
    assert!(store.delete_subscription(gone.id).await.unwrap());
    assert!(!store.delete_subscription(gone.id).await.unwrap());
    assert!(
        !store
            .delete_subscription(SubscriptionId::generate())
            .await
            .unwrap()
    );
    assert_eq!(store.subscription(gone.id).await.unwrap(), None);
    assert_eq!(
        store.subscriptions().await.unwrap(),
        std::slice::from_ref(&kept)
    );
    assert!(
        store
            .deliveries(gone.id, None, None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let due = store.claim_due_deliveries(NOW, 10, NOW).await.unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].subscription, kept);
    only_delivery(&*store, &kept).await;
    // Later events go to the subscriptions that are left.
    let next = fresh_event(&*store).await;
    store
        .enqueue_deliveries(&next, &[gone.id, kept.id], NOW)
        .await
        .unwrap();
    assert_eq!(
        store
            .claim_due_deliveries(NOW, 10, NOW)
            .await
            .unwrap()
            .len(),
        2
    );
    assert!(
        store
            .deliveries(gone.id, None, None, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn deliveries_filter_by_status_and_page_newest_first(store: Arc<dyn Store>) {
    let subscription = stored_webhook(&*store).await;
    let other = stored_webhook(&*store).await;
    for _ in 0..5 {
        let event = fresh_event(&*store).await;
        store
            .enqueue_deliveries(&event, &[subscription.id, other.id], NOW)
            .await
            .unwrap();
    }
    let mut all = store
        .deliveries(subscription.id, None, None, 100)
        .await
        .unwrap();
    assert_eq!(all.len(), 5);
    assert!(all.iter().all(|d| d.subscription_id == subscription.id));
    assert!(
        all.windows(2).all(|pair| pair[0].id > pair[1].id),
        "newest first"
    );
    let delivered = AttemptResult::Delivered { status: 200 };
    let dead = AttemptResult::Dead {
        error: "gone".into(),
        status: Some(410),
    };
    store
        .record_attempt(all[1].id, &delivered, NOW)
        .await
        .unwrap();
    store.record_attempt(all[3].id, &dead, NOW).await.unwrap();
    all = store
        .deliveries(subscription.id, None, None, 100)
        .await
        .unwrap();
    let ids =
        |deliveries: Vec<Delivery>| -> Vec<_> { deliveries.into_iter().map(|d| d.id).collect() };
    let page = |status: Option<DeliveryStatus>, before: Option<usize>, limit: u32| {
        let store = store.clone();
        let before = before.map(|i| all[i].id);
        let subscription = subscription.id;
        async move {
            store
                .deliveries(subscription, status, before, limit)
                .await
                .unwrap()
        }
    };
    assert_eq!(page(None, None, 2).await, all[0..2]);
    assert_eq!(page(None, Some(1), 2).await, all[2..4]);
    assert_eq!(page(None, Some(3), 2).await, all[4..]);
    assert!(page(None, Some(4), 2).await.is_empty());
    let pending = Some(DeliveryStatus::Pending);
    assert_eq!(
        ids(page(pending, None, 10).await),
        [all[0].id, all[2].id, all[4].id]
    );
    assert_eq!(ids(page(pending, Some(0), 1).await), [all[2].id]);
    assert_eq!(
        ids(page(Some(DeliveryStatus::Delivered), None, 10).await),
        [all[1].id]
    );
    assert_eq!(
        ids(page(Some(DeliveryStatus::Dead), None, 10).await),
        [all[3].id]
    );
    assert!(
        page(Some(DeliveryStatus::Dead), Some(3), 10)
            .await
            .is_empty()
    );
    assert_eq!(
        store
            .deliveries(other.id, None, None, 100)
            .await
            .unwrap()
            .len(),
        5
    );
}

pub async fn an_open_store_answers_pings(store: Arc<dyn Store>) {
    store.ping().await.unwrap();
}

pub async fn a_closed_store_answers_unavailable(store: Arc<dyn Store>) {
    let sale = stored_sale(&*store, 5).await;
    store.close().await;
    let unavailable = |result: Result<(), StoreError>| {
        assert!(
            matches!(result, Err(StoreError::Unavailable(_))),
            "{result:?}"
        );
    };
    unavailable(store.ping().await);
    unavailable(store.insert_product(&new_product("LATE")).await);
    unavailable(
        store
            .commit_orders(&[place(&sale, "ada", "k", 1)])
            .await
            .map(drop),
    );
    unavailable(store.sale(sale.id).await.map(drop));
    unavailable(store.expire_due(NOW, 10).await.map(drop));
    unavailable(store.save_cursor("relay", 1).await);
    unavailable(store.events_after(0, 10).await.map(drop));
    // Closing twice is harmless.
    store.close().await;
}
