//! What the outbox says about each state change (I8): the event's type, its
//! aggregate, when it happened and its JSON payload. Every store adapter
//! writes these rows in the change's transaction; defining them once here
//! keeps the embedded and cluster outboxes byte-for-byte alike.
//!
//! Payloads are JSON objects of the entity as clients see it: ids as strings,
//! timestamps in RFC 3339, money as integer cents beside the currency. Secrets
//! (password hashes) and the client's idempotency keys stay out. Order and
//! payment events carry the order's id as their aggregate, so an order's
//! history includes its payments.

use serde::Serialize;
use serde_json::{Value, json};
use stampede_domain::account::User;
use stampede_domain::catalog::{Product, Sale, SaleControl};
use stampede_domain::ids::{OrderId, ProductId, SaleId};
use stampede_domain::order::Order;
use stampede_domain::payment::Payment;
use stampede_domain::time::Timestamp;

/// A state change to announce.
pub enum Event<'a> {
    ProductCreated(&'a Product),
    SaleCreated(&'a Sale),
    /// The sale as it is after an admin's control, the control, and when.
    SaleChanged(&'a Sale, SaleControl, Timestamp),
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
    pub fn event_type(&self) -> &'static str {
        match self {
            Self::ProductCreated(_) => "product.created",
            Self::SaleCreated(_) => "sale.created",
            Self::SaleChanged(_, control, _) => control.event_type(),
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

    pub fn aggregate_id(&self) -> String {
        match self {
            Self::ProductCreated(product) => product.id.to_string(),
            Self::SaleCreated(sale) | Self::SaleChanged(sale, ..) => sale.id.to_string(),
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
    pub fn at(&self) -> Timestamp {
        match self {
            Self::ProductCreated(product) => product.created_at,
            Self::SaleCreated(sale) => sale.created_at,
            Self::SaleChanged(_, _, at) => *at,
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

    /// [`payload`](Self::payload) as JSON text, the form the outbox stores.
    /// An order's creation, one per win, is written straight from the order
    /// (no map of owned keys built and printed) with the same keys in the
    /// same order.
    pub fn payload_text(&self) -> String {
        match self {
            Self::OrderCreated(order) => serde_json::to_string(&OrderPayload::of(order))
                .unwrap_or_else(|_| self.payload().to_string()),
            _ => self.payload().to_string(),
        }
    }

    pub fn payload(&self) -> Value {
        match self {
            Self::ProductCreated(product) => json!({
                "id": product.id.to_string(),
                "sku": product.sku,
                "name": product.name,
                "price_cents": product.price.get(),
                "currency": product.currency.as_str(),
                "created_at": product.created_at.to_rfc3339(),
            }),
            Self::SaleCreated(sale) => sale_json(sale),
            Self::SaleChanged(sale, control, at) => {
                let payload = with(sale_json(sale), "changed_at", at.to_rfc3339().into());
                match control.stock_delta() {
                    0 => payload,
                    units => with(payload, "units", units.unsigned_abs().into()),
                }
            }
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

/// A sale in its events: its fields as clients see them, bar the live
/// stock (the ledger's, not the store's).
fn sale_json(sale: &Sale) -> Value {
    json!({
        "id": sale.id.to_string(),
        "product_id": sale.product_id.to_string(),
        "price_cents": sale.price.get(),
        "currency": sale.currency.as_str(),
        "quantity": sale.quantity,
        "per_user_limit": sale.per_user_limit.get(),
        "starts_at": sale.starts_at.to_rfc3339(),
        "ends_at": sale.ends_at.map(|at| at.to_rfc3339()),
        "payment_window_secs": sale.payment_window_secs,
        "created_at": sale.created_at.to_rfc3339(),
        "state": sale.state.as_str(),
        "version": sale.version,
    })
}

/// `payload` with one more field.
fn with(mut payload: Value, field: &str, value: Value) -> Value {
    if let Value::Object(fields) = &mut payload {
        fields.insert(field.into(), value);
    }
    payload
}

/// An order in its events, fields in alphabetical order: the order a
/// `serde_json` map prints its keys in, so the text written straight from
/// this struct and the text of [`order_json`]'s map (which events that add a
/// field extend) agree.
#[derive(Serialize)]
struct OrderPayload<'a> {
    amount_cents: i64,
    created_at: Timestamp,
    currency: &'a str,
    expires_at: Timestamp,
    id: OrderId,
    product_id: ProductId,
    quantity: u32,
    sale_id: SaleId,
    status: &'a str,
    user_id: &'a str,
}

impl<'a> OrderPayload<'a> {
    fn of(order: &'a Order) -> Self {
        Self {
            amount_cents: order.amount_cents,
            created_at: order.created_at,
            currency: order.currency.as_str(),
            expires_at: order.expires_at,
            id: order.id,
            product_id: order.product_id,
            quantity: order.quantity.get(),
            sale_id: order.sale_id,
            status: order.status.as_str(),
            user_id: order.user_id.as_str(),
        }
    }
}

/// An order's payload, the one list of its fields.
fn order_json(order: &Order) -> Value {
    serde_json::to_value(OrderPayload::of(order)).unwrap_or_default()
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

#[cfg(test)]
mod tests {
    use super::*;
    use stampede_domain::catalog::SaleRequest;
    use stampede_domain::idempotency::IdempotencyKey;
    use stampede_domain::ids::UserId;
    use stampede_domain::quantity::Quantity;

    /// An order's payload holds its fields, and the text written straight is
    /// the text the map prints, byte for byte.
    #[test]
    fn an_order_payload_written_straight_matches_the_map() {
        let now = Timestamp::from_millis(1_762_819_200_123);
        let product = Product::create("SKU-1", "Phone \"X\"", 1999, "EUR", now).unwrap();
        let request = SaleRequest {
            quantity: 10,
            ..SaleRequest::default()
        };
        let sale = Sale::create(&product, &request, now).unwrap();
        let order = Order::place(
            &sale,
            UserId::parse("user-é\u{1}").unwrap(),
            Quantity::parse("quantity", 2).unwrap(),
            IdempotencyKey::parse("key-1").unwrap(),
            now,
        );
        let event = Event::OrderCreated(&order);
        assert_eq!(
            event.payload(),
            json!({
                "id": order.id.to_string(),
                "user_id": "user-é\u{1}",
                "sale_id": sale.id.to_string(),
                "product_id": product.id.to_string(),
                "quantity": 2,
                "amount_cents": order.amount_cents,
                "currency": "EUR",
                "status": order.status.as_str(),
                "created_at": "2025-11-11T00:00:00.123Z",
                "expires_at": order.expires_at.to_rfc3339(),
            })
        );
        assert_eq!(event.payload_text(), event.payload().to_string());
        let cancelled = Event::OrderCancelled(&order, now);
        assert_eq!(cancelled.payload_text(), cancelled.payload().to_string());
    }
}
