//! Rows back into domain values, through the domain's own parsers: a value
//! the domain would refuse is `Corrupt`, never silently accepted. Column
//! lists and their readers sit side by side so they cannot drift apart.

use stampede_app::ports::{StoreError, StoredEvent};
use stampede_domain::account::{Email, User};
use stampede_domain::catalog::{Product, Sale, SaleState};
use stampede_domain::idempotency::IdempotencyKey;
use stampede_domain::ids::{
    DeliveryId, EventId, OrderId, PaymentId, ProductId, SaleId, SubscriptionId, UserId,
};
use stampede_domain::money::{Cents, Currency};
use stampede_domain::order::{Order, OrderStatus};
use stampede_domain::payment::{Payment, PaymentStatus};
use stampede_domain::quantity::Quantity;
use stampede_domain::time::Timestamp;
use stampede_domain::webhook::{
    Delivery, DeliveryStatus, EventFilter, StoredSecret, Subscription, WebhookUrl,
};
use stampede_trace::TraceParent;
use tokio_postgres::Row;
use tokio_postgres::types::FromSql;

use crate::error::corrupt;

pub(crate) const PRODUCT_COLUMNS: &str = "id, sku, name, price_cents, currency, created_at";

pub(crate) fn product(row: &Row) -> Result<Product, StoreError> {
    Ok(Product {
        id: id(row, 0, "products.id", ProductId::parse)?,
        sku: get(row, 1, "products.sku")?,
        name: get(row, 2, "products.name")?,
        price: cents(row, 3, "products.price_cents")?,
        currency: currency(row, 4, "products.currency")?,
        created_at: timestamp(row, 5, "products.created_at")?,
    })
}

pub(crate) const SALE_COLUMNS: &str = "id, product_id, price_cents, currency, quantity, \
     per_user_limit, starts_at, ends_at, payment_window_secs, created_at, state, version, waiting_room";

/// How many columns [`SALE_COLUMNS`] lists: a query that reads more after
/// them starts there.
pub(crate) const SALE_COLUMN_COUNT: usize = 13;

pub(crate) fn sale(row: &Row) -> Result<Sale, StoreError> {
    let window: i64 = get(row, 8, "sales.payment_window_secs")?;
    let ends_at: Option<i64> = get(row, 7, "sales.ends_at")?;
    let state: &str = get(row, 10, "sales.state")?;
    Ok(Sale {
        id: id(row, 0, "sales.id", SaleId::parse)?,
        product_id: id(row, 1, "sales.product_id", ProductId::parse)?,
        price: cents(row, 2, "sales.price_cents")?,
        currency: currency(row, 3, "sales.currency")?,
        quantity: stock(row, 4, "sales.quantity")?,
        per_user_limit: quantity(row, 5, "sales.per_user_limit")?,
        starts_at: timestamp(row, 6, "sales.starts_at")?,
        ends_at: ends_at.map(Timestamp::from_millis),
        payment_window_secs: u32::try_from(window)
            .map_err(|_| corrupt("sales.payment_window_secs", window))?,
        created_at: timestamp(row, 9, "sales.created_at")?,
        state: SaleState::parse(state).ok_or_else(|| corrupt("sales.state", state))?,
        version: version(row, 11, "sales.version")?,
        waiting_room: get(row, 12, "sales.waiting_room")?,
    })
}

pub(crate) const ORDER_COLUMNS: &str = "id, user_id, sale_id, product_id, quantity, \
     amount_cents, currency, status, idempotency_key, created_at, expires_at";

pub(crate) fn order(row: &Row) -> Result<Order, StoreError> {
    let status: &str = get(row, 7, "orders.status")?;
    let key: &str = get(row, 8, "orders.idempotency_key")?;
    Ok(Order {
        id: id(row, 0, "orders.id", OrderId::parse)?,
        user_id: user_id(row, 1, "orders.user_id")?,
        sale_id: id(row, 2, "orders.sale_id", SaleId::parse)?,
        product_id: id(row, 3, "orders.product_id", ProductId::parse)?,
        quantity: quantity(row, 4, "orders.quantity")?,
        amount_cents: get(row, 5, "orders.amount_cents")?,
        currency: currency(row, 6, "orders.currency")?,
        status: OrderStatus::parse(status).ok_or_else(|| corrupt("orders.status", status))?,
        idempotency_key: IdempotencyKey::parse(key)
            .map_err(|_| corrupt("orders.idempotency_key", key))?,
        created_at: timestamp(row, 9, "orders.created_at")?,
        expires_at: timestamp(row, 10, "orders.expires_at")?,
    })
}

pub(crate) const USER_COLUMNS: &str = "id, email, password_hash, created_at";

pub(crate) fn user(row: &Row) -> Result<User, StoreError> {
    let email: &str = get(row, 1, "users.email")?;
    Ok(User {
        id: user_id(row, 0, "users.id")?,
        email: Email::parse(email).map_err(|_| corrupt("users.email", email))?,
        password_hash: get(row, 2, "users.password_hash")?,
        created_at: timestamp(row, 3, "users.created_at")?,
    })
}

pub(crate) const PAYMENT_COLUMNS: &str = "id, order_id, amount_cents, currency, status, \
     provider_ref, refund_required, reason, created_at, updated_at";

pub(crate) fn payment(row: &Row) -> Result<Payment, StoreError> {
    let status: &str = get(row, 4, "payments.status")?;
    Ok(Payment {
        id: id(row, 0, "payments.id", PaymentId::parse)?,
        order_id: id(row, 1, "payments.order_id", OrderId::parse)?,
        amount_cents: get(row, 2, "payments.amount_cents")?,
        currency: currency(row, 3, "payments.currency")?,
        status: PaymentStatus::parse(status).ok_or_else(|| corrupt("payments.status", status))?,
        provider_ref: get(row, 5, "payments.provider_ref")?,
        refund_required: get(row, 6, "payments.refund_required")?,
        reason: get(row, 7, "payments.reason")?,
        created_at: timestamp(row, 8, "payments.created_at")?,
        updated_at: timestamp(row, 9, "payments.updated_at")?,
    })
}

pub(crate) const EVENT_COLUMNS: &str = "outbox.seq, outbox.id, outbox.event_type, \
     outbox.aggregate_id, outbox.payload, outbox.created_at, outbox.traceparent";

pub(crate) fn event(row: &Row, first: usize) -> Result<StoredEvent, StoreError> {
    Ok(StoredEvent {
        seq: get(row, first, "outbox.seq")?,
        id: id(row, first + 1, "outbox.id", EventId::parse)?,
        event_type: get(row, first + 2, "outbox.event_type")?,
        aggregate_id: get(row, first + 3, "outbox.aggregate_id")?,
        payload: get(row, first + 4, "outbox.payload")?,
        created_at: timestamp(row, first + 5, "outbox.created_at")?,
        // A trace that does not parse is dropped, not corruption: it only
        // ties logs and spans together.
        trace: get::<Option<&str>>(row, first + 6, "outbox.traceparent")?
            .and_then(TraceParent::parse),
    })
}

pub(crate) const SUBSCRIPTION_COLUMNS: &str = "webhook_subscriptions.id, \
     webhook_subscriptions.url, webhook_subscriptions.event_types, \
     webhook_subscriptions.secret, webhook_subscriptions.created_at";

pub(crate) fn subscription(row: &Row, first: usize) -> Result<Subscription, StoreError> {
    let url: &str = get(row, first + 1, "webhook_subscriptions.url")?;
    let types: &str = get(row, first + 2, "webhook_subscriptions.event_types")?;
    let events = serde_json::from_str::<Vec<String>>(types)
        .ok()
        .and_then(|types| EventFilter::parse(&types).ok())
        .ok_or_else(|| corrupt("webhook_subscriptions.event_types", types))?;
    let secret: &str = get(row, first + 3, "webhook_subscriptions.secret")?;
    Ok(Subscription {
        id: id(
            row,
            first,
            "webhook_subscriptions.id",
            SubscriptionId::parse,
        )?,
        url: WebhookUrl::from_store(url),
        events,
        secret: StoredSecret::parse(secret).ok_or_else(|| {
            StoreError::corrupt("webhook_subscriptions.secret is not a valid secret")
        })?,
        created_at: timestamp(row, first + 4, "webhook_subscriptions.created_at")?,
    })
}

pub(crate) const DELIVERY_COLUMNS: &str = "webhook_deliveries.id, \
     webhook_deliveries.subscription_id, webhook_deliveries.event_id, \
     webhook_deliveries.event_type, webhook_deliveries.status, webhook_deliveries.attempts, \
     webhook_deliveries.next_attempt_at, webhook_deliveries.last_error, \
     webhook_deliveries.last_status, webhook_deliveries.created_at, \
     webhook_deliveries.updated_at";

pub(crate) fn delivery(row: &Row, first: usize) -> Result<Delivery, StoreError> {
    let status: &str = get(row, first + 4, "webhook_deliveries.status")?;
    let last_status: Option<i64> = get(row, first + 8, "webhook_deliveries.last_status")?;
    Ok(Delivery {
        id: id(row, first, "webhook_deliveries.id", DeliveryId::parse)?,
        subscription_id: id(
            row,
            first + 1,
            "webhook_deliveries.subscription_id",
            SubscriptionId::parse,
        )?,
        event_id: id(
            row,
            first + 2,
            "webhook_deliveries.event_id",
            EventId::parse,
        )?,
        event_type: get(row, first + 3, "webhook_deliveries.event_type")?,
        status: DeliveryStatus::parse(status)
            .ok_or_else(|| corrupt("webhook_deliveries.status", status))?,
        attempts: units(row, first + 5, "webhook_deliveries.attempts")?,
        next_attempt_at: timestamp(row, first + 6, "webhook_deliveries.next_attempt_at")?,
        last_error: get(row, first + 7, "webhook_deliveries.last_error")?,
        last_status: last_status
            .map(|value| {
                u16::try_from(value).map_err(|_| corrupt("webhook_deliveries.last_status", value))
            })
            .transpose()?,
        created_at: timestamp(row, first + 9, "webhook_deliveries.created_at")?,
        updated_at: timestamp(row, first + 10, "webhook_deliveries.updated_at")?,
    })
}

/// Column `index`, as `T`; a NULL or a wrong type is `Corrupt`.
pub(crate) fn get<'r, T: FromSql<'r>>(
    row: &'r Row,
    index: usize,
    column: &str,
) -> Result<T, StoreError> {
    row.try_get(index)
        .map_err(|err| StoreError::corrupt_because(column, err))
}

pub(crate) fn id<T>(
    row: &Row,
    index: usize,
    column: &str,
    parse: fn(&str) -> Option<T>,
) -> Result<T, StoreError> {
    let value: &str = get(row, index, column)?;
    parse(value).ok_or_else(|| corrupt(column, value))
}

pub(crate) fn user_id(row: &Row, index: usize, column: &str) -> Result<UserId, StoreError> {
    let value: &str = get(row, index, column)?;
    UserId::parse(value).map_err(|_| corrupt(column, value))
}

pub(crate) fn quantity(row: &Row, index: usize, column: &str) -> Result<Quantity, StoreError> {
    let value: i64 = get(row, index, column)?;
    Quantity::parse("quantity", value).map_err(|_| corrupt(column, value))
}

/// Units on sale: from 0 (all withdrawn) to the most a sale may offer.
pub(crate) fn stock(row: &Row, index: usize, column: &str) -> Result<u32, StoreError> {
    let value: i64 = get(row, index, column)?;
    u32::try_from(value)
        .ok()
        .filter(|units| *units <= Quantity::MAX)
        .ok_or_else(|| corrupt(column, value))
}

/// A row's version: 1 at creation, one more per change.
pub(crate) fn version(row: &Row, index: usize, column: &str) -> Result<u64, StoreError> {
    let value: i64 = get(row, index, column)?;
    u64::try_from(value)
        .ok()
        .filter(|version| *version >= 1)
        .ok_or_else(|| corrupt(column, value))
}

pub(crate) fn units(row: &Row, index: usize, column: &str) -> Result<u32, StoreError> {
    let value: i64 = get(row, index, column)?;
    u32::try_from(value).map_err(|_| corrupt(column, value))
}

pub(crate) fn count(row: &Row, index: usize, column: &str) -> Result<u64, StoreError> {
    let value: i64 = get(row, index, column)?;
    u64::try_from(value).map_err(|_| corrupt(column, value))
}

fn cents(row: &Row, index: usize, column: &str) -> Result<Cents, StoreError> {
    let value: i64 = get(row, index, column)?;
    Cents::parse("price_cents", value).map_err(|_| corrupt(column, value))
}

fn currency(row: &Row, index: usize, column: &str) -> Result<Currency, StoreError> {
    let value: &str = get(row, index, column)?;
    Currency::parse(value).map_err(|_| corrupt(column, value))
}

pub(crate) fn timestamp(row: &Row, index: usize, column: &str) -> Result<Timestamp, StoreError> {
    let value: i64 = get(row, index, column)?;
    Ok(Timestamp::from_millis(value))
}
