//! Payments: recording an attempt, the provider taking it, and applying the
//! provider's answer to the order — each a compare-and-set on a status, with
//! its event, in the writer's transaction. The order changes only on an
//! approval that finds it open; one that finds it cancelled or expired is
//! kept and flagged for refund instead (I7).

use rusqlite::{Connection, params};
use stampede_app::ports::{PayOutcome, SettleOutcome, StoreError};
use stampede_domain::ids::{OrderId, PaymentId};
use stampede_domain::order::{Order, OrderStatus, PayDecision};
use stampede_domain::payment::{Payment, PaymentResult, PaymentStatus};
use stampede_domain::time::Timestamp;

use crate::error::Context;
use crate::orders;
use crate::outbox::{self, Event};
use crate::rows::{self, PAYMENT_COLUMNS};

// The in-flight statuses, bound as parameters below; this fails to compile
// if the domain changes their number.
const _: () = assert!(PaymentStatus::IN_FLIGHT.len() == 2);

/// Records `payment` with `payment.requested` if its order is open and has no
/// attempt in flight. Every check reads inside the writer's transaction, so
/// two requests for one order cannot both start an attempt.
pub(crate) fn request(conn: &Connection, payment: &Payment) -> Result<PayOutcome, StoreError> {
    let Some(order) = orders::order(conn, payment.order_id)? else {
        return Ok(PayOutcome::NotFound);
    };
    if PayDecision::for_status(order.status) != PayDecision::Pay {
        return Ok(PayOutcome::NotPayable(order));
    }
    if let Some(in_flight) = in_flight(conn, order.id)? {
        return Ok(PayOutcome::InFlight(in_flight));
    }
    conn.prepare_cached(&format!(
        "INSERT INTO payments ({PAYMENT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
    ))
    .and_then(|mut statement| {
        statement.execute(params![
            payment.id.to_string(),
            payment.order_id.to_string(),
            payment.amount_cents,
            payment.currency.as_str(),
            payment.status.as_str(),
            payment.provider_ref,
            payment.refund_required,
            payment.reason,
            payment.created_at.as_millis(),
            payment.updated_at.as_millis(),
        ])
    })
    .context("inserting payment")?;
    outbox::record(conn, &Event::PaymentRequested(payment))?;
    Ok(PayOutcome::Requested(payment.clone()))
}

/// The order's oldest attempt still waiting for an outcome.
fn in_flight(conn: &Connection, order: OrderId) -> Result<Option<Payment>, StoreError> {
    let what = "reading an order's payment in flight";
    let mut statement = conn
        .prepare_cached(&format!(
            "SELECT {PAYMENT_COLUMNS} FROM payments WHERE order_id = ?1 AND status IN (?2, ?3) \
             ORDER BY created_at, id LIMIT 1"
        ))
        .context(what)?;
    rows::first(
        &mut statement,
        params![
            order.to_string(),
            PaymentStatus::IN_FLIGHT[0].as_str(),
            PaymentStatus::IN_FLIGHT[1].as_str(),
        ],
        what,
        rows::payment,
    )
}

pub(crate) fn payment(conn: &Connection, id: PaymentId) -> Result<Option<Payment>, StoreError> {
    let what = "reading payment";
    let mut statement = conn
        .prepare_cached(&format!(
            "SELECT {PAYMENT_COLUMNS} FROM payments WHERE id = ?1"
        ))
        .context(what)?;
    rows::first(&mut statement, [id.to_string()], what, rows::payment)
}

/// The order's attempts, oldest first.
pub(crate) fn payments_of(conn: &Connection, order: OrderId) -> Result<Vec<Payment>, StoreError> {
    let what = "listing an order's payments";
    let mut statement = conn
        .prepare_cached(&format!(
            "SELECT {PAYMENT_COLUMNS} FROM payments WHERE order_id = ?1 ORDER BY created_at, id"
        ))
        .context(what)?;
    rows::all(&mut statement, [order.to_string()], what, rows::payment)
}

pub(crate) fn requested_before(
    conn: &Connection,
    before: Timestamp,
    limit: u32,
) -> Result<Vec<PaymentId>, StoreError> {
    let what = "listing payments still requested";
    let mut statement = conn
        .prepare_cached(
            "SELECT id FROM payments WHERE status = 'requested' AND created_at < ?1 \
             ORDER BY created_at, id LIMIT ?2",
        )
        .context(what)?;
    rows::all(
        &mut statement,
        params![before.as_millis(), limit],
        what,
        |row| rows::id(row, 0, "payments.id", PaymentId::parse),
    )
}

/// `requested → submitted` with the provider's reference, and
/// `payment.submitted`. A payment in any other status (already submitted, or
/// answered) is left alone: the request was redelivered.
pub(crate) fn mark_submitted(
    conn: &Connection,
    id: PaymentId,
    provider_ref: &str,
    now: Timestamp,
) -> Result<(), StoreError> {
    let what = "marking a payment submitted";
    let submitted = {
        let mut statement = conn
            .prepare_cached(&format!(
                "UPDATE payments SET status = ?1, provider_ref = ?2, updated_at = ?3 \
                 WHERE id = ?4 AND status = ?5 RETURNING {PAYMENT_COLUMNS}"
            ))
            .context(what)?;
        rows::first(
            &mut statement,
            params![
                PaymentStatus::Submitted.as_str(),
                provider_ref,
                now.as_millis(),
                id.to_string(),
                PaymentStatus::Requested.as_str(),
            ],
            what,
            rows::payment,
        )?
    };
    if let Some(payment) = submitted {
        outbox::record(conn, &Event::PaymentSubmitted(&payment))?;
    }
    Ok(())
}

/// Applies the provider's final answer once; see [`SettleOutcome`].
pub(crate) fn settle(
    conn: &Connection,
    id: PaymentId,
    result: &PaymentResult,
    now: Timestamp,
) -> Result<SettleOutcome, StoreError> {
    let what = "settling payment";
    let Some(current) = payment(conn, id)? else {
        return Ok(SettleOutcome::NotFound);
    };
    if current.status.is_final() {
        return Ok(SettleOutcome::AlreadySettled(current));
    }
    let (provider_ref, reason) = match result {
        PaymentResult::Approved { provider_ref } => (Some(provider_ref.as_str()), None),
        PaymentResult::Declined { reason } | PaymentResult::Failed { reason } => {
            (None, Some(reason.as_str()))
        }
    };
    let settled = {
        // A decline keeps the reference the provider gave on submission.
        let mut statement = conn
            .prepare_cached(&format!(
                "UPDATE payments SET status = ?1, provider_ref = coalesce(?2, provider_ref), \
                 reason = ?3, updated_at = ?4 WHERE id = ?5 AND status IN (?6, ?7) \
                 RETURNING {PAYMENT_COLUMNS}"
            ))
            .context(what)?;
        rows::first(
            &mut statement,
            params![
                result.status().as_str(),
                provider_ref,
                reason,
                now.as_millis(),
                id.to_string(),
                PaymentStatus::IN_FLIGHT[0].as_str(),
                PaymentStatus::IN_FLIGHT[1].as_str(),
            ],
            what,
            rows::payment,
        )?
    };
    // Read and update share the writer's transaction, so this cannot miss;
    // were it to, the payment's current state is the answer.
    let Some(settled) = settled else {
        return Ok(match payment(conn, id)? {
            Some(payment) => SettleOutcome::AlreadySettled(payment),
            None => SettleOutcome::NotFound,
        });
    };
    match result {
        PaymentResult::Approved { .. } => approve(conn, &settled, now),
        PaymentResult::Declined { .. } => {
            outbox::record(conn, &Event::PaymentDeclined(&settled))?;
            Ok(SettleOutcome::NotPaid(order_of(conn, &settled)?))
        }
        PaymentResult::Failed { .. } => {
            outbox::record(conn, &Event::PaymentFailed(&settled))?;
            Ok(SettleOutcome::NotPaid(order_of(conn, &settled)?))
        }
    }
}

/// An approved payment: the order's compare-and-set from open to `paid`, or,
/// when the order was closed first, the refund flag (I7).
fn approve(
    conn: &Connection,
    approved: &Payment,
    now: Timestamp,
) -> Result<SettleOutcome, StoreError> {
    let what = "paying order";
    let from = OrderStatus::OPEN;
    let to = OrderStatus::Paid;
    if let Some(order) = orders::transition(conn, approved.order_id, from, to, now, what)? {
        outbox::record(conn, &Event::OrderPaid(&order, approved))?;
        return Ok(SettleOutcome::Paid(order));
    }
    let what = "flagging a payment for refund";
    let flagged = {
        let mut statement = conn
            .prepare_cached(&format!(
                "UPDATE payments SET refund_required = 1 WHERE id = ?1 RETURNING {PAYMENT_COLUMNS}"
            ))
            .context(what)?;
        rows::first(
            &mut statement,
            [approved.id.to_string()],
            what,
            rows::payment,
        )?
        .ok_or_else(|| StoreError::corrupt(format!("payment {} vanished", approved.id)))?
    };
    outbox::record(conn, &Event::PaymentRefundRequired(&flagged))?;
    Ok(SettleOutcome::RefundRequired(order_of(conn, &flagged)?))
}

/// The order a payment belongs to; the foreign key guarantees there is one.
fn order_of(conn: &Connection, payment: &Payment) -> Result<Order, StoreError> {
    orders::order(conn, payment.order_id)?.ok_or_else(|| {
        StoreError::corrupt(format!(
            "payment {} belongs to order {}, which does not exist",
            payment.id, payment.order_id
        ))
    })
}
