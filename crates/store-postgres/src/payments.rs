//! Payments: recording an attempt, the provider taking it, and applying the
//! provider's answer — each a compare-and-set on a status, with its event.
//! Where SQLite's single writer makes a read-then-write atomic, here the row
//! is locked first (`FOR UPDATE`), so two nodes cannot both start an attempt
//! for one order or both settle one payment.

use deadpool_postgres::{GenericClient, Transaction};
use stampede_app::events::Event;
use stampede_app::ports::{PayOutcome, SettleOutcome, StoreError};
use stampede_domain::ids::{OrderId, PaymentId};
use stampede_domain::order::{Order, OrderStatus, PayDecision};
use stampede_domain::payment::{Payment, PaymentResult, PaymentStatus};
use stampede_domain::time::Timestamp;

use crate::rows::{self, ORDER_COLUMNS, PAYMENT_COLUMNS};
use crate::{orders, outbox, sql};

const _: () = assert!(PaymentStatus::IN_FLIGHT.len() == 2);

pub(crate) async fn request(
    tx: &Transaction<'_>,
    payment: &Payment,
) -> Result<PayOutcome, StoreError> {
    let what = "requesting payment";
    let Some(order) = sql::first(
        tx,
        &format!("SELECT {ORDER_COLUMNS} FROM orders WHERE id = $1 FOR UPDATE"),
        &[&payment.order_id.to_string()],
        what,
        rows::order,
    )
    .await?
    else {
        return Ok(PayOutcome::NotFound);
    };
    if PayDecision::for_status(order.status) != PayDecision::Pay {
        return Ok(PayOutcome::NotPayable(order));
    }
    if let Some(in_flight) = in_flight(tx, order.id).await? {
        return Ok(PayOutcome::InFlight(in_flight));
    }
    sql::execute(
        tx,
        &format!(
            "INSERT INTO payments ({PAYMENT_COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        ),
        &[
            &payment.id.to_string(),
            &payment.order_id.to_string(),
            &payment.amount_cents,
            &payment.currency.as_str(),
            &payment.status.as_str(),
            &payment.provider_ref,
            &payment.refund_required,
            &payment.reason,
            &payment.created_at.as_millis(),
            &payment.updated_at.as_millis(),
        ],
        "inserting payment",
    )
    .await?;
    outbox::record(tx, &[Event::PaymentRequested(payment)]).await?;
    Ok(PayOutcome::Requested(payment.clone()))
}

async fn in_flight(tx: &Transaction<'_>, order: OrderId) -> Result<Option<Payment>, StoreError> {
    sql::first(
        tx,
        &format!(
            "SELECT {PAYMENT_COLUMNS} FROM payments WHERE order_id = $1 AND status IN ($2, $3) \
             ORDER BY created_at, id LIMIT 1"
        ),
        &[
            &order.to_string(),
            &PaymentStatus::IN_FLIGHT[0].as_str(),
            &PaymentStatus::IN_FLIGHT[1].as_str(),
        ],
        "reading an order's payment in flight",
        rows::payment,
    )
    .await
}

pub(crate) async fn payment(
    client: &impl GenericClient,
    id: PaymentId,
) -> Result<Option<Payment>, StoreError> {
    sql::first(
        client,
        &format!("SELECT {PAYMENT_COLUMNS} FROM payments WHERE id = $1"),
        &[&id.to_string()],
        "reading payment",
        rows::payment,
    )
    .await
}

pub(crate) async fn payments_of(
    client: &impl GenericClient,
    order: OrderId,
) -> Result<Vec<Payment>, StoreError> {
    sql::all(
        client,
        &format!(
            "SELECT {PAYMENT_COLUMNS} FROM payments WHERE order_id = $1 ORDER BY created_at, id"
        ),
        &[&order.to_string()],
        "listing an order's payments",
        rows::payment,
    )
    .await
}

pub(crate) async fn requested_before(
    client: &impl GenericClient,
    before: Timestamp,
    limit: u32,
) -> Result<Vec<PaymentId>, StoreError> {
    sql::all(
        client,
        "SELECT id FROM payments WHERE status = 'requested' AND created_at < $1 \
         ORDER BY created_at, id LIMIT $2",
        &[&before.as_millis(), &i64::from(limit)],
        "listing payments still requested",
        |row| rows::id(row, 0, "payments.id", PaymentId::parse),
    )
    .await
}

pub(crate) async fn mark_submitted(
    tx: &Transaction<'_>,
    id: PaymentId,
    provider_ref: &str,
    now: Timestamp,
) -> Result<(), StoreError> {
    let submitted = sql::first(
        tx,
        &format!(
            "UPDATE payments SET status = $1, provider_ref = $2, updated_at = $3 \
             WHERE id = $4 AND status = $5 RETURNING {PAYMENT_COLUMNS}"
        ),
        &[
            &PaymentStatus::Submitted.as_str(),
            &provider_ref,
            &now.as_millis(),
            &id.to_string(),
            &PaymentStatus::Requested.as_str(),
        ],
        "marking a payment submitted",
        rows::payment,
    )
    .await?;
    if let Some(payment) = submitted {
        outbox::record(tx, &[Event::PaymentSubmitted(&payment)]).await?;
    }
    Ok(())
}

pub(crate) async fn settle(
    tx: &Transaction<'_>,
    id: PaymentId,
    result: &PaymentResult,
    now: Timestamp,
) -> Result<SettleOutcome, StoreError> {
    let what = "settling payment";
    let (provider_ref, reason) = match result {
        PaymentResult::Approved { provider_ref } => (Some(provider_ref.as_str()), None),
        PaymentResult::Declined { reason } | PaymentResult::Failed { reason } => {
            (None, Some(reason.as_str()))
        }
    };
    // A decline keeps the reference the provider gave on submission.
    let settled = sql::first(
        tx,
        &format!(
            "UPDATE payments SET status = $1, provider_ref = coalesce($2, provider_ref), \
             reason = $3, updated_at = $4 WHERE id = $5 AND status IN ($6, $7) \
             RETURNING {PAYMENT_COLUMNS}"
        ),
        &[
            &result.status().as_str(),
            &provider_ref,
            &reason,
            &now.as_millis(),
            &id.to_string(),
            &PaymentStatus::IN_FLIGHT[0].as_str(),
            &PaymentStatus::IN_FLIGHT[1].as_str(),
        ],
        what,
        rows::payment,
    )
    .await?;
    let Some(settled) = settled else {
        return Ok(match payment(tx, id).await? {
            Some(payment) => SettleOutcome::AlreadySettled(payment),
            None => SettleOutcome::NotFound,
        });
    };
    match result {
        PaymentResult::Approved { .. } => approve(tx, &settled, now).await,
        PaymentResult::Declined { .. } => {
            let order = order_of(tx, &settled).await?;
            outbox::record(tx, &[Event::PaymentDeclined(&settled)]).await?;
            Ok(SettleOutcome::NotPaid(order))
        }
        PaymentResult::Failed { .. } => {
            let order = order_of(tx, &settled).await?;
            outbox::record(tx, &[Event::PaymentFailed(&settled)]).await?;
            Ok(SettleOutcome::NotPaid(order))
        }
    }
}

async fn approve(
    tx: &Transaction<'_>,
    approved: &Payment,
    now: Timestamp,
) -> Result<SettleOutcome, StoreError> {
    let from = OrderStatus::OPEN;
    let to = OrderStatus::Paid;
    if let Some(order) =
        orders::transition(tx, approved.order_id, from, to, now, "paying order").await?
    {
        outbox::record(tx, &[Event::OrderPaid(&order, approved)]).await?;
        return Ok(SettleOutcome::Paid(order));
    }
    let what = "flagging a payment for refund";
    let flagged = sql::first(
        tx,
        &format!(
            "UPDATE payments SET refund_required = true WHERE id = $1 RETURNING {PAYMENT_COLUMNS}"
        ),
        &[&approved.id.to_string()],
        what,
        rows::payment,
    )
    .await?
    .ok_or_else(|| StoreError::corrupt(format!("payment {} vanished", approved.id)))?;
    let order = order_of(tx, &flagged).await?;
    outbox::record(tx, &[Event::PaymentRefundRequired(&flagged)]).await?;
    Ok(SettleOutcome::RefundRequired(order))
}

async fn order_of(tx: &Transaction<'_>, payment: &Payment) -> Result<Order, StoreError> {
    orders::order(tx, payment.order_id).await?.ok_or_else(|| {
        StoreError::corrupt(format!(
            "payment {} belongs to order {}, which does not exist",
            payment.id, payment.order_id
        ))
    })
}
