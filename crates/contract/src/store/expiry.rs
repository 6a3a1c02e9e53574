//! The store contract: The payment-window sweep.

use super::*;

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
