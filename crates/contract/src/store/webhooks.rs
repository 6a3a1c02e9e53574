//! The store contract: Webhook subscriptions and their leased deliveries.

use super::*;

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

pub async fn a_webhook_secret_is_replaced_only_while_it_is_still_the_old_one(
    store: Arc<dyn Store>,
) {
    let subscription = stored_webhook(&*store).await;
    let old = subscription.secret.clone();
    let new = StoredSecret::parse("v1:sealed-once").unwrap();
    let other = StoredSecret::parse("v1:sealed-by-another-node").unwrap();
    assert!(
        store
            .replace_subscription_secret(subscription.id, &old, &new)
            .await
            .unwrap()
    );
    // A second node sealing the same clear row finds it changed.
    assert!(
        !store
            .replace_subscription_secret(subscription.id, &old, &other)
            .await
            .unwrap()
    );
    let read = store.subscription(subscription.id).await.unwrap().unwrap();
    assert_eq!(read.secret, new);
    assert!(
        !store
            .replace_subscription_secret(SubscriptionId::generate(), &new, &other)
            .await
            .unwrap()
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
