//! The store contract: Payment attempts and their outcomes, raced against cancel and expiry.

use super::*;

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
