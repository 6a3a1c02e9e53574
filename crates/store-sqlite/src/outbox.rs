//! The transactional outbox (I8): every state-changing write records exactly
//! one event row in its own transaction, so an event exists if and only if its
//! change was committed. A relay (a later issue) publishes pending rows.
//!
//! Payloads are JSON objects of the entity as clients see it: ids as strings,
//! timestamps in RFC 3339, money as integer cents beside the currency. Secrets
//! (password hashes) and the client's idempotency keys stay out.

use rusqlite::{Connection, params};
use serde_json::{Value, json};
use stampede_app::ports::StoreError;
use stampede_domain::account::User;
use stampede_domain::catalog::{Product, Sale};
use stampede_domain::ids::EventId;
use stampede_domain::order::Order;
use stampede_domain::time::Timestamp;

use crate::error::Context;

/// A state change to announce.
pub(crate) enum Event<'a> {
    ProductCreated(&'a Product),
    SaleCreated(&'a Sale),
    UserRegistered(&'a User),
    OrderCreated(&'a Order),
    /// The order as it is after the cancel, and when it was cancelled.
    OrderCancelled(&'a Order, Timestamp),
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
        }
    }

    fn aggregate_id(&self) -> String {
        match self {
            Self::ProductCreated(product) => product.id.to_string(),
            Self::SaleCreated(sale) => sale.id.to_string(),
            Self::UserRegistered(user) => user.id.to_string(),
            Self::OrderCreated(order) | Self::OrderCancelled(order, _) => order.id.to_string(),
        }
    }

    /// When the change happened.
    fn at(&self) -> Timestamp {
        match self {
            Self::ProductCreated(product) => product.created_at,
            Self::SaleCreated(sale) => sale.created_at,
            Self::UserRegistered(user) => user.created_at,
            Self::OrderCreated(order) => order.created_at,
            Self::OrderCancelled(_, at) => *at,
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
                let mut payload = order_json(order);
                if let Value::Object(fields) = &mut payload {
                    fields.insert("cancelled_at".into(), Value::from(at.to_rfc3339()));
                }
                payload
            }
        }
    }
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
