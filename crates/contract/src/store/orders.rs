//! The store contract: Committing orders, cancelling them, reading them back, and the counts the ledger is rebuilt from.

use super::*;

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

/// A batch with stock to spare (one decrement for the whole batch in the
/// SQLite store): the repeated keys among it take nothing in the end.
pub async fn a_batch_the_sale_covers_gives_back_the_units_of_taken_keys(store: Arc<dyn Store>) {
    let sale = stored_sale(&*store, 10).await;
    let earlier = place(&sale, "eve", "key-e", 1);
    commit(&*store, std::slice::from_ref(&earlier)).await;
    let first = place(&sale, "ada", "key-a", 2);
    let replay = place(&sale, "eve", "key-e", 1);
    let again = place(&sale, "ada", "key-a", 1);
    let last = place(&sale, "bob", "key-b", 3);
    assert_eq!(
        commit(&*store, &[first.clone(), replay, again, last.clone()]).await,
        [
            CommitOutcome::Created,
            CommitOutcome::KeyTaken(earlier),
            CommitOutcome::KeyTaken(first.clone()),
            CommitOutcome::Created,
        ]
    );
    let counts = counts(&*store, &sale).await;
    assert_eq!((counts.sold, counts.remaining), (6, 4));
    assert_eq!(store.order(last.id).await.unwrap(), Some(last));
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
