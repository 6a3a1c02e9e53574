//! Rows to domain values and back. Reading goes through the domain's own
//! parsers, so a row that could not have been written by this code (a bad uuid,
//! an unknown status, a negative price) is reported as corruption instead of
//! becoming a value that breaks an invariant later.
//!
//! Each `*_COLUMNS` list is the exact column order its mapping function reads by
//! index; keep the two side by side.

use rusqlite::types::ValueRef;
use rusqlite::{Params, Row, Statement};
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

use crate::error::Context;

pub(crate) const PRODUCT_COLUMNS: &str = "id, sku, name, price_cents, currency, created_at";

pub(crate) fn product(row: &Row<'_>) -> Result<Product, StoreError> {
    Ok(Product {
        id: id(row, 0, "products.id", ProductId::parse)?,
        sku: text(row, 1, "products.sku")?.to_owned(),
        name: text(row, 2, "products.name")?.to_owned(),
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

pub(crate) fn sale(row: &Row<'_>) -> Result<Sale, StoreError> {
    let window = int(row, 8, "sales.payment_window_secs")?;
    let state = text(row, 10, "sales.state")?;
    Ok(Sale {
        id: id(row, 0, "sales.id", SaleId::parse)?,
        product_id: id(row, 1, "sales.product_id", ProductId::parse)?,
        price: cents(row, 2, "sales.price_cents")?,
        currency: currency(row, 3, "sales.currency")?,
        quantity: stock(row, 4, "sales.quantity")?,
        per_user_limit: quantity(row, 5, "sales.per_user_limit")?,
        starts_at: timestamp(row, 6, "sales.starts_at")?,
        ends_at: optional_int(row, 7, "sales.ends_at")?.map(Timestamp::from_millis),
        payment_window_secs: u32::try_from(window)
            .map_err(|_| corrupt("sales.payment_window_secs", window))?,
        created_at: timestamp(row, 9, "sales.created_at")?,
        state: SaleState::parse(state).ok_or_else(|| corrupt("sales.state", state))?,
        version: version(row, 11, "sales.version")?,
        waiting_room: int(row, 12, "sales.waiting_room")? != 0,
    })
}

pub(crate) const ORDER_COLUMNS: &str = "id, user_id, sale_id, product_id, quantity, \
     amount_cents, currency, status, idempotency_key, created_at, expires_at";

pub(crate) fn order(row: &Row<'_>) -> Result<Order, StoreError> {
    let status = text(row, 7, "orders.status")?;
    let key = text(row, 8, "orders.idempotency_key")?;
    Ok(Order {
        id: id(row, 0, "orders.id", OrderId::parse)?,
        user_id: user_id(row, 1, "orders.user_id")?,
        sale_id: id(row, 2, "orders.sale_id", SaleId::parse)?,
        product_id: id(row, 3, "orders.product_id", ProductId::parse)?,
        quantity: quantity(row, 4, "orders.quantity")?,
        amount_cents: int(row, 5, "orders.amount_cents")?,
        currency: currency(row, 6, "orders.currency")?,
        status: OrderStatus::parse(status).ok_or_else(|| corrupt("orders.status", status))?,
        idempotency_key: IdempotencyKey::parse(key)
            .map_err(|_| corrupt("orders.idempotency_key", key))?,
        created_at: timestamp(row, 9, "orders.created_at")?,
        expires_at: timestamp(row, 10, "orders.expires_at")?,
    })
}

pub(crate) const USER_COLUMNS: &str = "id, email, password_hash, created_at";

pub(crate) fn user(row: &Row<'_>) -> Result<User, StoreError> {
    let email = text(row, 1, "users.email")?;
    Ok(User {
        id: user_id(row, 0, "users.id")?,
        email: Email::parse(email).map_err(|_| corrupt("users.email", email))?,
        // Never shown in an error: it is a secret.
        password_hash: text(row, 2, "users.password_hash")?.to_owned(),
        created_at: timestamp(row, 3, "users.created_at")?,
    })
}

pub(crate) const PAYMENT_COLUMNS: &str = "id, order_id, amount_cents, currency, status, \
     provider_ref, refund_required, reason, created_at, updated_at";

pub(crate) fn payment(row: &Row<'_>) -> Result<Payment, StoreError> {
    let status = text(row, 4, "payments.status")?;
    let refund_required = int(row, 6, "payments.refund_required")?;
    Ok(Payment {
        id: id(row, 0, "payments.id", PaymentId::parse)?,
        order_id: id(row, 1, "payments.order_id", OrderId::parse)?,
        amount_cents: int(row, 2, "payments.amount_cents")?,
        currency: currency(row, 3, "payments.currency")?,
        status: PaymentStatus::parse(status).ok_or_else(|| corrupt("payments.status", status))?,
        provider_ref: optional_text(row, 5, "payments.provider_ref")?.map(str::to_owned),
        refund_required: match refund_required {
            0 => false,
            1 => true,
            other => return Err(corrupt("payments.refund_required", other)),
        },
        reason: optional_text(row, 7, "payments.reason")?.map(str::to_owned),
        created_at: timestamp(row, 8, "payments.created_at")?,
        updated_at: timestamp(row, 9, "payments.updated_at")?,
    })
}

// The three lists below are qualified with their table, so they can be
// joined (`due_deliveries` reads all three in one row); each mapping function
// takes the index of the list's first column in the row.

pub(crate) const EVENT_COLUMNS: &str = "outbox.seq, outbox.id, outbox.event_type, \
     outbox.aggregate_id, outbox.payload, outbox.created_at, outbox.traceparent";

/// An outbox row from column `first` on; a payload that is not JSON is
/// corruption.
pub(crate) fn event(row: &Row<'_>, first: usize) -> Result<StoredEvent, StoreError> {
    let payload = text(row, first + 4, "outbox.payload")?;
    Ok(StoredEvent {
        seq: int(row, first, "outbox.seq")?,
        id: id(row, first + 1, "outbox.id", EventId::parse)?,
        event_type: text(row, first + 2, "outbox.event_type")?.to_owned(),
        aggregate_id: text(row, first + 3, "outbox.aggregate_id")?.to_owned(),
        payload: serde_json::from_str(payload)
            .map_err(|err| StoreError::corrupt_because("outbox.payload is not json", err))?,
        created_at: timestamp(row, first + 5, "outbox.created_at")?,
        // A trace that does not parse is dropped, not corruption: it only
        // ties logs and spans together.
        trace: optional_text(row, first + 6, "outbox.traceparent")?.and_then(TraceParent::parse),
    })
}

pub(crate) const SUBSCRIPTION_COLUMNS: &str = "webhook_subscriptions.id, \
     webhook_subscriptions.url, webhook_subscriptions.event_types, \
     webhook_subscriptions.secret, webhook_subscriptions.created_at";

/// A subscription from column `first` on. Never shows the secret in an error.
pub(crate) fn subscription(row: &Row<'_>, first: usize) -> Result<Subscription, StoreError> {
    let url = text(row, first + 1, "webhook_subscriptions.url")?;
    let types = text(row, first + 2, "webhook_subscriptions.event_types")?;
    let events = serde_json::from_str::<Vec<String>>(types)
        .ok()
        .and_then(|types| EventFilter::parse(&types).ok())
        .ok_or_else(|| corrupt("webhook_subscriptions.event_types", types))?;
    let secret = text(row, first + 3, "webhook_subscriptions.secret")?;
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

/// A delivery from column `first` on.
pub(crate) fn delivery(row: &Row<'_>, first: usize) -> Result<Delivery, StoreError> {
    let status = text(row, first + 4, "webhook_deliveries.status")?;
    let last_status = optional_int(row, first + 8, "webhook_deliveries.last_status")?;
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
        event_type: text(row, first + 3, "webhook_deliveries.event_type")?.to_owned(),
        status: DeliveryStatus::parse(status)
            .ok_or_else(|| corrupt("webhook_deliveries.status", status))?,
        attempts: units(row, first + 5, "webhook_deliveries.attempts")?,
        next_attempt_at: timestamp(row, first + 6, "webhook_deliveries.next_attempt_at")?,
        last_error: optional_text(row, first + 7, "webhook_deliveries.last_error")?
            .map(str::to_owned),
        last_status: last_status
            .map(|value| {
                u16::try_from(value).map_err(|_| corrupt("webhook_deliveries.last_status", value))
            })
            .transpose()?,
        created_at: timestamp(row, first + 9, "webhook_deliveries.created_at")?,
        updated_at: timestamp(row, first + 10, "webhook_deliveries.updated_at")?,
    })
}

/// Runs a query and maps every row.
pub(crate) fn all<T>(
    statement: &mut Statement<'_>,
    params: impl Params,
    what: &str,
    map: impl FnMut(&Row<'_>) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    up_to(statement, params, usize::MAX, what, map)
}

/// Runs a query and maps its first `limit` rows.
pub(crate) fn up_to<T>(
    statement: &mut Statement<'_>,
    params: impl Params,
    limit: usize,
    what: &str,
    mut map: impl FnMut(&Row<'_>) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    let mut rows = statement.query(params).context(what)?;
    let mut out = Vec::new();
    while out.len() < limit
        && let Some(row) = rows.next().context(what)?
    {
        out.push(map(row)?);
    }
    Ok(out)
}

/// Runs a query expected to match at most one row and maps it.
pub(crate) fn first<T>(
    statement: &mut Statement<'_>,
    params: impl Params,
    what: &str,
    mut map: impl FnMut(&Row<'_>) -> Result<T, StoreError>,
) -> Result<Option<T>, StoreError> {
    let mut rows = statement.query(params).context(what)?;
    match rows.next().context(what)? {
        Some(row) => map(row).map(Some),
        None => Ok(None),
    }
}

pub(crate) fn text<'r>(
    row: &'r Row<'_>,
    index: usize,
    column: &str,
) -> Result<&'r str, StoreError> {
    match row.get_ref(index).context(column)? {
        ValueRef::Text(bytes) => std::str::from_utf8(bytes)
            .map_err(|_| StoreError::corrupt(format!("{column} is not utf-8"))),
        other => Err(StoreError::corrupt(format!(
            "{column} holds {:?}, not text",
            other.data_type()
        ))),
    }
}

pub(crate) fn optional_text<'r>(
    row: &'r Row<'_>,
    index: usize,
    column: &str,
) -> Result<Option<&'r str>, StoreError> {
    match row.get_ref(index).context(column)? {
        ValueRef::Null => Ok(None),
        _ => text(row, index, column).map(Some),
    }
}

pub(crate) fn int(row: &Row<'_>, index: usize, column: &str) -> Result<i64, StoreError> {
    match optional_int(row, index, column)? {
        Some(value) => Ok(value),
        None => Err(StoreError::corrupt(format!("{column} is null"))),
    }
}

pub(crate) fn optional_int(
    row: &Row<'_>,
    index: usize,
    column: &str,
) -> Result<Option<i64>, StoreError> {
    match row.get_ref(index).context(column)? {
        ValueRef::Integer(value) => Ok(Some(value)),
        ValueRef::Null => Ok(None),
        other => Err(StoreError::corrupt(format!(
            "{column} holds {:?}, not an integer",
            other.data_type()
        ))),
    }
}

pub(crate) fn id<T>(
    row: &Row<'_>,
    index: usize,
    column: &str,
    parse: fn(&str) -> Option<T>,
) -> Result<T, StoreError> {
    let value = text(row, index, column)?;
    parse(value).ok_or_else(|| corrupt(column, value))
}

pub(crate) fn user_id(row: &Row<'_>, index: usize, column: &str) -> Result<UserId, StoreError> {
    let value = text(row, index, column)?;
    UserId::parse(value).map_err(|_| corrupt(column, value))
}

pub(crate) fn quantity(row: &Row<'_>, index: usize, column: &str) -> Result<Quantity, StoreError> {
    let value = int(row, index, column)?;
    Quantity::parse("quantity", value).map_err(|_| corrupt(column, value))
}

/// Units on sale: from 0 (all withdrawn) to the most a sale may offer.
pub(crate) fn stock(row: &Row<'_>, index: usize, column: &str) -> Result<u32, StoreError> {
    let value = int(row, index, column)?;
    u32::try_from(value)
        .ok()
        .filter(|units| *units <= Quantity::MAX)
        .ok_or_else(|| corrupt(column, value))
}

/// A row's version: 1 at creation, one more per change.
pub(crate) fn version(row: &Row<'_>, index: usize, column: &str) -> Result<u64, StoreError> {
    let value = int(row, index, column)?;
    u64::try_from(value)
        .ok()
        .filter(|version| *version >= 1)
        .ok_or_else(|| corrupt(column, value))
}

/// A count that must fit in the domain's `u32` quantities (sums of quantities
/// of one sale never exceed its quantity).
pub(crate) fn units(row: &Row<'_>, index: usize, column: &str) -> Result<u32, StoreError> {
    let value = int(row, index, column)?;
    u32::try_from(value).map_err(|_| corrupt(column, value))
}

/// A non-negative count.
pub(crate) fn count(row: &Row<'_>, index: usize, column: &str) -> Result<u64, StoreError> {
    let value = int(row, index, column)?;
    u64::try_from(value).map_err(|_| corrupt(column, value))
}

fn cents(row: &Row<'_>, index: usize, column: &str) -> Result<Cents, StoreError> {
    let value = int(row, index, column)?;
    Cents::parse("price_cents", value).map_err(|_| corrupt(column, value))
}

fn currency(row: &Row<'_>, index: usize, column: &str) -> Result<Currency, StoreError> {
    let value = text(row, index, column)?;
    Currency::parse(value).map_err(|_| corrupt(column, value))
}

fn timestamp(row: &Row<'_>, index: usize, column: &str) -> Result<Timestamp, StoreError> {
    int(row, index, column).map(Timestamp::from_millis)
}

fn corrupt(column: &str, value: impl std::fmt::Debug) -> StoreError {
    StoreError::corrupt(format!("{column} holds {value:?}, which is not valid"))
}

#[cfg(test)]
mod tests {
    use rusqlite::Connection;

    use super::*;

    #[test]
    fn a_row_with_an_unknown_status_is_corrupt_and_says_where() {
        let conn = Connection::open_in_memory().unwrap();
        let mut statement = conn
            .prepare(
                "SELECT '0190a4a0-0000-7000-8000-000000000001', 'u1', \
                 '0190a4a0-0000-7000-8000-000000000002', '0190a4a0-0000-7000-8000-000000000003', \
                 1, 100, 'EUR', 'shipped', 'k', 0, 0",
            )
            .unwrap();
        let err = first(&mut statement, [], "reading order", order).unwrap_err();
        match err {
            StoreError::Corrupt { context, .. } => {
                assert_eq!(
                    context,
                    r#"orders.status holds "shipped", which is not valid"#
                )
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_sale_in_an_unknown_state_or_at_version_zero_is_corrupt() {
        let conn = Connection::open_in_memory().unwrap();
        let select = |quantity: i64, state: &str, version: i64| {
            format!(
                "SELECT '0190a4a0-0000-7000-8000-000000000001', \
                 '0190a4a0-0000-7000-8000-000000000002', 100, 'EUR', {quantity}, 1, 0, NULL, \
                 60, 0, '{state}', {version}, 1"
            )
        };
        let read = |sql: String| {
            let mut statement = conn.prepare(&sql).unwrap();
            first(&mut statement, [], "reading sale", sale)
        };
        // Every unit withdrawn: a sale of 0 units is a sale.
        let sale = read(select(0, "paused", 3)).unwrap().unwrap();
        assert_eq!(
            (sale.quantity, sale.state, sale.version),
            (0, SaleState::Paused, 3)
        );
        for (sql, column) in [
            (select(1, "closed", 1), "sales.state"),
            (select(1, "running", 0), "sales.version"),
            (select(-1, "running", 1), "sales.quantity"),
            (select(1_000_000_001, "running", 1), "sales.quantity"),
        ] {
            match read(sql).unwrap_err() {
                StoreError::Corrupt { context, .. } => {
                    assert!(context.starts_with(column), "{context}")
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn a_null_where_a_value_belongs_is_corrupt() {
        let conn = Connection::open_in_memory().unwrap();
        let mut statement = conn
            .prepare("SELECT 'not-a-uuid', 'SKU', 'name', 1, 'EUR', NULL")
            .unwrap();
        let err = first(&mut statement, [], "reading product", product).unwrap_err();
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
    }
}
