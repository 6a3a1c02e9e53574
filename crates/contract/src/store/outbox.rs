//! The store contract: The outbox: one event per change, in commit order, and consumer cursors.

use super::*;

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

/// Each event keeps the trace of the write that made it: a change made in a
/// trace, and each order of a group commit its own purchase's.
pub async fn events_keep_the_trace_of_the_write_that_made_them(store: Arc<dyn Store>) {
    let trace =
        |span: &str| TraceParent::parse(&format!("00-4bf92f3577b34da6a3ce929d0e0e4736-{span}-01"));
    let (first, second) = (trace("00f067aa0ba90001"), trace("00f067aa0ba90002"));
    let sale = stampede_trace::within(first, stored_sale(&*store, 10)).await;
    let orders = [
        place(&sale, "ada", "k", 1),
        place(&sale, "bob", "k", 1),
        place(&sale, "cy", "k", 1),
    ];
    let outcomes = store
        .commit_traced_orders(&orders, &[second, None])
        .await
        .unwrap();
    assert!(outcomes.iter().all(|o| *o == CommitOutcome::Created));
    let all = all_events(&*store).await;
    let traces: Vec<(&str, Option<TraceParent>)> = all
        .iter()
        .map(|e| (e.event_type.as_str(), e.trace))
        .collect();
    assert_eq!(
        traces,
        [
            ("product.created", first),
            ("sale.created", first),
            ("order.created", second),
            ("order.created", None),
            ("order.created", None),
        ]
    );
}
