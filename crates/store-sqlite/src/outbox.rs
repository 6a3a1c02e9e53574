//! The transactional outbox (I8): every state-changing write records exactly
//! one event row in its own transaction, so an event exists if and only if its
//! change was committed.
//!
//! The outbox is a log: each row has a `seq`, handed out in commit order by
//! the single writer (migration 0002 says why that holds). Consumers (the
//! in-process bus, webhooks, an order's event stream) read it by position and
//! keep their own durable cursor here, so no row is ever marked published.
//!
//! Payloads are JSON objects of the entity as clients see it: ids as strings,
//! timestamps in RFC 3339, money as integer cents beside the currency. Secrets
//! (password hashes) and the client's idempotency keys stay out. Order and
//! payment events carry the order's id as their aggregate, so an order's
//! history includes its payments.
//!
//! Bookkeeping of the consumers themselves (cursors, webhook subscriptions
//! and deliveries) writes no events: they are how events get delivered, and
//! announcing them would feed the consumers their own progress.

use rusqlite::{Connection, params};
use serde_json::{Value, json};
use stampede_app::ports::{StoreError, StoredEvent};
use stampede_domain::account::User;
use stampede_domain::catalog::{Product, Sale};
use stampede_domain::ids::EventId;
use stampede_domain::order::Order;
use stampede_domain::payment::Payment;
use stampede_domain::time::Timestamp;

use crate::error::Context;
use crate::rows::{self, EVENT_COLUMNS};

/// A state change to announce.
pub(crate) enum Event<'a> {
    ProductCreated(&'a Product),
    SaleCreated(&'a Sale),
    UserRegistered(&'a User),
    OrderCreated(&'a Order),
    /// The order as it is after the cancel, and when it was cancelled.
    OrderCancelled(&'a Order, Timestamp),
    /// The order as it is after its payment window closed unpaid (it is
    /// cancelled), and when the sweep expired it.
    OrderExpired(&'a Order, Timestamp),
    /// The order as it is once paid, and the approved payment that paid it.
    OrderPaid(&'a Order, &'a Payment),
    // Payment events: each with the payment as it is after the change.
    PaymentRequested(&'a Payment),
    PaymentSubmitted(&'a Payment),
    PaymentDeclined(&'a Payment),
    PaymentFailed(&'a Payment),
    /// Approved after the order was cancelled or expired (I7).
    PaymentRefundRequired(&'a Payment),
}

impl Event<'_> {
    /// The `event_type` column: `<aggregate>.<past tense>`.
    pub(crate) fn event_type(&self) -> &'static str {
        match self {
            Self::ProductCreated(_) => "product.created",
            Self::SaleCreated(_) => "sale.created",
            Self::UserRegistered(_) => "user.registered",
            Self::OrderCreated(_) => "order.created",
            Self::OrderCancelled(..) => "order.cancelled",
            Self::OrderExpired(..) => "order.expired",
            Self::OrderPaid(..) => "order.paid",
            Self::PaymentRequested(_) => "payment.requested",
            Self::PaymentSubmitted(_) => "payment.submitted",
            Self::PaymentDeclined(_) => "payment.declined",
            Self::PaymentFailed(_) => "payment.failed",
            Self::PaymentRefundRequired(_) => "payment.refund_required",
        }
    }

    fn aggregate_id(&self) -> String {
        match self {
            Self::ProductCreated(product) => product.id.to_string(),
            Self::SaleCreated(sale) => sale.id.to_string(),
            Self::UserRegistered(user) => user.id.to_string(),
            Self::OrderCreated(order)
            | Self::OrderCancelled(order, _)
            | Self::OrderExpired(order, _)
            | Self::OrderPaid(order, _) => order.id.to_string(),
            // The order's id: its history includes its payments.
            Self::PaymentRequested(payment)
            | Self::PaymentSubmitted(payment)
            | Self::PaymentDeclined(payment)
            | Self::PaymentFailed(payment)
            | Self::PaymentRefundRequired(payment) => payment.order_id.to_string(),
        }
    }

    /// When the change happened.
    fn at(&self) -> Timestamp {
        match self {
            Self::ProductCreated(product) => product.created_at,
            Self::SaleCreated(sale) => sale.created_at,
            Self::UserRegistered(user) => user.created_at,
            Self::OrderCreated(order) => order.created_at,
            Self::OrderCancelled(_, at) | Self::OrderExpired(_, at) => *at,
            Self::OrderPaid(_, payment)
            | Self::PaymentRequested(payment)
            | Self::PaymentSubmitted(payment)
            | Self::PaymentDeclined(payment)
            | Self::PaymentFailed(payment)
            | Self::PaymentRefundRequired(payment) => payment.updated_at,
        }
    }

    fn payload(&self) -> Value {
        match self {
            Self::ProductCreated(product) => json!({
                "id": product.id.to_string(),
                "sku": product.sku,
                "name": product.name,
                "price_cents": product.price.get(),
                "currency": product.currency.as_str(),
                "created_at": product.created_at.to_rfc3339(),
            }),
            Self::SaleCreated(sale) => json!({
                "id": sale.id.to_string(),
                "product_id": sale.product_id.to_string(),
                "price_cents": sale.price.get(),
                "currency": sale.currency.as_str(),
                "quantity": sale.quantity.get(),
                "per_user_limit": sale.per_user_limit.get(),
                "starts_at": sale.starts_at.to_rfc3339(),
                "ends_at": sale.ends_at.map(|at| at.to_rfc3339()),
                "payment_window_secs": sale.payment_window_secs,
                "created_at": sale.created_at.to_rfc3339(),
            }),
            // Never the password hash.
            Self::UserRegistered(user) => json!({
                "id": user.id.as_str(),
                "email": user.email.as_str(),
                "created_at": user.created_at.to_rfc3339(),
            }),
            Self::OrderCreated(order) => order_json(order),
            Self::OrderCancelled(order, at) => {
                with(order_json(order), "cancelled_at", at.to_rfc3339().into())
            }
            Self::OrderExpired(order, at) => {
                with(order_json(order), "expired_at", at.to_rfc3339().into())
            }
            Self::OrderPaid(order, payment) => {
                let payload = with(
                    order_json(order),
                    "paid_at",
                    payment.updated_at.to_rfc3339().into(),
                );
                with(payload, "payment", payment_json(payment))
            }
            Self::PaymentRequested(payment)
            | Self::PaymentSubmitted(payment)
            | Self::PaymentDeclined(payment)
            | Self::PaymentFailed(payment)
            | Self::PaymentRefundRequired(payment) => payment_json(payment),
        }
    }
}

/// `payload` with one more field.
fn with(mut payload: Value, field: &str, value: Value) -> Value {
    if let Value::Object(fields) = &mut payload {
        fields.insert(field.into(), value);
    }
    payload
}

fn order_json(order: &Order) -> Value {
    json!({
        "id": order.id.to_string(),
        "user_id": order.user_id.as_str(),
        "sale_id": order.sale_id.to_string(),
        "product_id": order.product_id.to_string(),
        "quantity": order.quantity.get(),
        "amount_cents": order.amount_cents,
        "currency": order.currency.as_str(),
        "status": order.status.as_str(),
        "created_at": order.created_at.to_rfc3339(),
        "expires_at": order.expires_at.to_rfc3339(),
    })
}

fn payment_json(payment: &Payment) -> Value {
    json!({
        "id": payment.id.to_string(),
        "order_id": payment.order_id.to_string(),
        "amount_cents": payment.amount_cents,
        "currency": payment.currency.as_str(),
        "status": payment.status.as_str(),
        "provider_ref": payment.provider_ref,
        "refund_required": payment.refund_required,
        "reason": payment.reason,
        "created_at": payment.created_at.to_rfc3339(),
        "updated_at": payment.updated_at.to_rfc3339(),
    })
}

/// Writes the event's row; call it inside the change's transaction.
pub(crate) fn record(conn: &Connection, event: &Event<'_>) -> Result<(), StoreError> {
    let what = "recording an outbox event";
    conn.prepare_cached(
        "INSERT INTO outbox (id, event_type, aggregate_id, payload, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )
    .and_then(|mut statement| {
        statement.execute(params![
            EventId::generate().to_string(),
            event.event_type(),
            event.aggregate_id(),
            event.payload().to_string(),
            event.at().as_millis(),
        ])
    })
    .context(what)?;
    Ok(())
}

/// Events after position `after`, in order.
pub(crate) fn events_after(
    conn: &Connection,
    after: i64,
    limit: u32,
) -> Result<Vec<StoredEvent>, StoreError> {
    let what = "reading the outbox";
    let mut statement = conn
        .prepare_cached(&format!(
            "SELECT {EVENT_COLUMNS} FROM outbox WHERE seq > ?1 ORDER BY seq LIMIT ?2"
        ))
        .context(what)?;
    rows::all(&mut statement, params![after, limit], what, |row| {
        rows::event(row, 0)
    })
}

/// One aggregate's events, in order (through `outbox_by_aggregate`).
pub(crate) fn events_of(
    conn: &Connection,
    aggregate_id: &str,
) -> Result<Vec<StoredEvent>, StoreError> {
    let what = "reading an aggregate's events";
    let mut statement = conn
        .prepare_cached(&format!(
            "SELECT {EVENT_COLUMNS} FROM outbox WHERE aggregate_id = ?1 ORDER BY seq"
        ))
        .context(what)?;
    rows::all(&mut statement, [aggregate_id], what, |row| {
        rows::event(row, 0)
    })
}

/// The largest `seq` in the outbox, 0 when it is empty. `max` of the rowid
/// is one step down the b-tree, not a scan.
pub(crate) fn last_seq(conn: &Connection) -> Result<i64, StoreError> {
    let what = "reading the last outbox position";
    let mut statement = conn
        .prepare_cached("SELECT coalesce(max(seq), 0) FROM outbox")
        .context(what)?;
    rows::first(&mut statement, [], what, |row| {
        rows::int(row, 0, "max(outbox.seq)")
    })
    .map(Option::unwrap_or_default)
}

/// A consumer's position, 0 if it never saved one.
pub(crate) fn cursor(conn: &Connection, consumer: &str) -> Result<i64, StoreError> {
    let what = "reading a consumer's cursor";
    let mut statement = conn
        .prepare_cached("SELECT seq FROM consumer_cursors WHERE consumer = ?1")
        .context(what)?;
    rows::first(&mut statement, [consumer], what, |row| {
        rows::int(row, 0, "consumer_cursors.seq")
    })
    .map(Option::unwrap_or_default)
}

/// Moves a consumer's position to `seq` unless it is already further: two
/// workers of one consumer racing, or a retried save, never move it back. A
/// negative position means nothing done, like 0.
pub(crate) fn save_cursor(conn: &Connection, consumer: &str, seq: i64) -> Result<(), StoreError> {
    let seq = seq.max(0);
    conn.prepare_cached(
        "INSERT INTO consumer_cursors (consumer, seq) VALUES (?1, ?2) \
         ON CONFLICT (consumer) DO UPDATE SET seq = max(seq, excluded.seq)",
    )
    .and_then(|mut statement| statement.execute(params![consumer, seq]))
    .context("saving a consumer's cursor")?;
    Ok(())
}
