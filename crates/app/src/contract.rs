//! Contract suites: the behaviour every adapter of a port must show, written
//! once and run against each adapter (shared/STYLE.md principle 9), so embedded
//! and cluster mode cannot drift apart (shared/DESIGN.md section 2).
//!
//! [`store`] holds the suite of the [`Store`](crate::ports::Store) port, one
//! `pub async fn` per behaviour, each given a fresh, empty store. An adapter
//! runs all of them with [`store_contract_tests!`](crate::store_contract_tests),
//! which expands to one `#[tokio::test]` per behaviour:
//!
//! ```ignore
//! // crates/store-sqlite/tests/contract.rs
//! stampede_app::store_contract_tests!(|dir| fresh_store(dir));
//! ```
//!
//! With `|dir|`, each test gets its own scratch directory (`dir: &Path`),
//! deleted when the test ends; without it (`store_contract_tests!(fresh())`),
//! none is made. The calling crate needs `tokio` with `macros` and
//! `rt-multi-thread`.

// These are test bodies: a failed expectation is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub use tempfile::TempDir;

/// A scratch directory for one test, deleted when dropped.
pub fn scratch_dir() -> TempDir {
    tempfile::Builder::new()
        .prefix("stampede-contract-")
        .tempdir()
        .expect("creating a scratch directory")
}

/// Expands to one `#[tokio::test]` per behaviour of the
/// [`Store`](crate::ports::Store) contract ([`contract::store`](crate::contract::store)),
/// each on a fresh store.
///
/// `store_contract_tests!(|dir| <async expression>)`: the expression produces
/// an `Arc<dyn Store>` and may use `dir: &Path`, a scratch directory that lives
/// until the test ends. `store_contract_tests!(<async expression>)`: the same
/// without a directory.
///
/// A new behaviour in [`contract::store`](crate::contract::store) must also be
/// added to the list below.
#[macro_export]
macro_rules! store_contract_tests {
    (|$dir:ident| $fresh:expr) => {
        $crate::store_contract_tests!(@names [$dir] $fresh);
    };
    (@names $dir:tt $fresh:expr) => {
        $crate::store_contract_tests!(@tests $dir $fresh;
            a_product_reads_back_as_it_was_inserted,
            products_page_in_creation_order_after_the_cursor,
            a_second_product_with_the_same_sku_is_a_sku_conflict,
            a_sale_reads_back_as_it_was_inserted,
            an_empty_batch_commits_nothing,
            a_committed_order_reads_back_and_takes_its_units_from_the_sale,
            a_repeated_key_returns_the_first_order_and_takes_no_stock,
            a_key_repeated_within_one_batch_goes_to_the_first_order,
            a_repeated_key_gets_its_order_even_once_the_sale_is_sold_out,
            refused_orders_in_a_batch_leave_the_others_committed,
            an_order_for_an_unknown_sale_is_refused_as_sold_out,
            sold_units_never_exceed_the_quantity_on_sale,
            concurrent_commits_on_one_sale_never_oversell,
            an_order_is_cancelled_exactly_once_however_often_it_is_asked,
            cancelling_a_cancelled_order_leaves_it_unchanged,
            a_paid_order_is_left_unchanged_by_cancel,
            cancelling_an_unknown_order_is_not_found,
            a_users_orders_page_newest_first_with_the_cursor,
            sale_counts_follow_orders_and_cancels,
            sale_snapshots_hold_every_sale_with_holdings_that_exclude_cancelled_orders,
            keys_since_lists_the_keys_of_orders_created_from_then_on,
            a_user_reads_back_by_email,
            a_second_user_with_the_same_email_is_an_email_conflict,
            an_open_store_answers_pings,
            a_closed_store_answers_unavailable,
        );
    };
    (@tests [$dir:ident] $fresh:expr; $($name:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                // Lives until the test ends, after the store is dropped.
                let scratch = $crate::contract::scratch_dir();
                let $dir: &::std::path::Path = scratch.path();
                let store: ::std::sync::Arc<dyn $crate::ports::Store> = $fresh.await;
                $crate::contract::store::$name(store).await;
            }
        )*
    };
    (@tests [] $fresh:expr; $($name:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let store: ::std::sync::Arc<dyn $crate::ports::Store> = $fresh.await;
                $crate::contract::store::$name(store).await;
            }
        )*
    };
    ($fresh:expr) => {
        $crate::store_contract_tests!(@names [] $fresh);
    };
}

/// The [`Store`](crate::ports::Store) contract. Each function is one behaviour,
/// given a fresh, empty store; names read as sentences.
pub mod store {
    use std::collections::HashMap;
    use std::sync::Arc;

    use stampede_domain::account::{Email, User};
    use stampede_domain::catalog::{Product, Sale, SaleRequest};
    use stampede_domain::idempotency::IdempotencyKey;
    use stampede_domain::ids::{OrderId, ProductId, SaleId, UserId};
    use stampede_domain::order::{Order, OrderStatus};
    use stampede_domain::quantity::Quantity;
    use stampede_domain::time::Timestamp;

    use crate::ports::{CancelOutcome, CommitOutcome, SaleCounts, Store, StoreError};

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

    pub async fn a_committed_order_reads_back_and_takes_its_units_from_the_sale(
        store: Arc<dyn Store>,
    ) {
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

    pub async fn a_repeated_key_gets_its_order_even_once_the_sale_is_sold_out(
        store: Arc<dyn Store>,
    ) {
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

    pub async fn an_order_is_cancelled_exactly_once_however_often_it_is_asked(
        store: Arc<dyn Store>,
    ) {
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
        // Closing twice is harmless.
        store.close().await;
    }
}
