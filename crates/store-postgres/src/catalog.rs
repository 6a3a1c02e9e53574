//! Products and sales, an admin's changes to a sale, and the snapshot the
//! stock ledger is rebuilt from.

use std::collections::HashMap;

use deadpool_postgres::{GenericClient, Transaction};
use stampede_app::events::Event;
use stampede_app::ports::{SaleSnapshot, SaleUpdate, StoreError};
use stampede_domain::catalog::{Product, Sale, SaleControl};
use stampede_domain::ids::{ProductId, SaleId, UserId};
use stampede_domain::order::OrderStatus;
use stampede_domain::time::Timestamp;

use crate::rows::{self, PRODUCT_COLUMNS, SALE_COLUMN_COUNT, SALE_COLUMNS};
use crate::{outbox, sql};

pub(crate) async fn insert_product(
    tx: &Transaction<'_>,
    product: &Product,
) -> Result<(), StoreError> {
    sql::execute(
        tx,
        "INSERT INTO products (id, sku, name, price_cents, currency, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
        &[
            &product.id.to_string(),
            &product.sku,
            &product.name,
            &product.price.get(),
            &product.currency.as_str(),
            &product.created_at.as_millis(),
        ],
        "inserting product",
    )
    .await?;
    outbox::record(tx, &[Event::ProductCreated(product)]).await
}

pub(crate) async fn product(
    client: &impl GenericClient,
    id: ProductId,
) -> Result<Option<Product>, StoreError> {
    sql::first(
        client,
        &format!("SELECT {PRODUCT_COLUMNS} FROM products WHERE id = $1"),
        &[&id.to_string()],
        "reading product",
        rows::product,
    )
    .await
}

pub(crate) async fn products(
    client: &impl GenericClient,
    after: Option<ProductId>,
    limit: u32,
) -> Result<Vec<Product>, StoreError> {
    // Every id sorts after the empty string: no cursor means from the start.
    let after = after.map(|id| id.to_string()).unwrap_or_default();
    sql::all(
        client,
        &format!("SELECT {PRODUCT_COLUMNS} FROM products WHERE id > $1 ORDER BY id LIMIT $2"),
        &[&after, &i64::from(limit)],
        "listing products",
        rows::product,
    )
    .await
}

pub(crate) async fn insert_sale(tx: &Transaction<'_>, sale: &Sale) -> Result<(), StoreError> {
    sql::execute(
        tx,
        "INSERT INTO sales (id, product_id, price_cents, currency, quantity, remaining, \
         per_user_limit, starts_at, ends_at, payment_window_secs, created_at, state, version, \
         waiting_room) \
         VALUES ($1, $2, $3, $4, $5, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        &[
            &sale.id.to_string(),
            &sale.product_id.to_string(),
            &sale.price.get(),
            &sale.currency.as_str(),
            &i64::from(sale.quantity),
            &i64::from(sale.per_user_limit.get()),
            &sale.starts_at.as_millis(),
            &sale.ends_at.map(|at| at.as_millis()),
            &i64::from(sale.payment_window_secs),
            &sale.created_at.as_millis(),
            &sale.state.as_str(),
            &version_value(sale.version)?,
            &sale.waiting_room,
        ],
        "inserting sale",
    )
    .await?;
    outbox::record(tx, &[Event::SaleCreated(sale)]).await
}

/// Writes `next` over the sale row if it is still at `current.version`,
/// moving its stock column by the change in quantity, never below 0, and
/// records the change's event, in the caller's transaction. A refused update
/// writes nothing: one statement with both guards (it waits for the row's
/// lock, so a purchase committing at the same time is counted), then a read
/// of the version to tell which guard refused.
pub(crate) async fn update_sale(
    tx: &Transaction<'_>,
    current: &Sale,
    next: &Sale,
    control: SaleControl,
    at: Timestamp,
) -> Result<SaleUpdate, StoreError> {
    let what = "updating sale";
    let delta = i64::from(next.quantity) - i64::from(current.quantity);
    let from = version_value(current.version)?;
    let updated = sql::execute(
        tx,
        "UPDATE sales SET quantity = $1, remaining = remaining + $2, per_user_limit = $3, \
         ends_at = $4, state = $5, version = $6 \
         WHERE id = $7 AND version = $8 AND remaining + $2 >= 0",
        &[
            &i64::from(next.quantity),
            &delta,
            &i64::from(next.per_user_limit.get()),
            &next.ends_at.map(|at| at.as_millis()),
            &next.state.as_str(),
            &version_value(next.version)?,
            &current.id.to_string(),
            &from,
        ],
        what,
    )
    .await?;
    if updated == 0 {
        let found = sql::first(
            tx,
            "SELECT version FROM sales WHERE id = $1",
            &[&current.id.to_string()],
            what,
            |row| rows::version(row, 0, "sales.version"),
        )
        .await?;
        // Still at the version: only the stock guard can have refused.
        return Ok(if found == Some(current.version) {
            SaleUpdate::InsufficientStock
        } else {
            SaleUpdate::Stale
        });
    }
    outbox::record(tx, &[Event::SaleChanged(next, control, at)]).await?;
    Ok(SaleUpdate::Updated)
}

/// A version as the BIGINT column holds it; one past `i64::MAX` cannot
/// have come from a row, so it is a bug, not a retry.
fn version_value(version: u64) -> Result<i64, StoreError> {
    i64::try_from(version)
        .map_err(|_| StoreError::corrupt(format!("sale version {version} is out of range")))
}

/// Every sale's id and version, in id (creation) order.
pub(crate) async fn sale_versions(
    client: &impl GenericClient,
) -> Result<Vec<(SaleId, u64)>, StoreError> {
    sql::all(
        client,
        "SELECT id, version FROM sales ORDER BY id",
        &[],
        "reading sale versions",
        |row| {
            Ok((
                rows::id(row, 0, "sales.id", SaleId::parse)?,
                rows::version(row, 1, "sales.version")?,
            ))
        },
    )
    .await
}

pub(crate) async fn sale(
    client: &impl GenericClient,
    id: SaleId,
) -> Result<Option<Sale>, StoreError> {
    sql::first(
        client,
        &format!("SELECT {SALE_COLUMNS} FROM sales WHERE id = $1"),
        &[&id.to_string()],
        "reading sale",
        rows::sale,
    )
    .await
}

/// Every sale with its stock column and what each buyer holds; the caller
/// runs it in one repeatable-read transaction so the two agree.
pub(crate) async fn sale_snapshots(
    client: &impl GenericClient,
) -> Result<Vec<SaleSnapshot>, StoreError> {
    let what = "reading sale snapshots";
    let held = sql::all(
        client,
        "SELECT sale_id, user_id, SUM(quantity)::bigint FROM orders \
         WHERE status <> $1 GROUP BY sale_id, user_id",
        &[&OrderStatus::Cancelled.as_str()],
        what,
        |row| {
            Ok((
                rows::id(row, 0, "orders.sale_id", SaleId::parse)?,
                rows::user_id(row, 1, "orders.user_id")?,
                rows::units(row, 2, "sum(orders.quantity)")?,
            ))
        },
    )
    .await?;
    let mut holdings: HashMap<SaleId, Vec<(UserId, u32)>> = HashMap::new();
    for (sale, user, units) in held {
        holdings.entry(sale).or_default().push((user, units));
    }
    sql::all(
        client,
        &format!("SELECT {SALE_COLUMNS}, remaining FROM sales ORDER BY id"),
        &[],
        what,
        |row| {
            let sale = rows::sale(row)?;
            Ok(SaleSnapshot {
                remaining: rows::count(row, SALE_COLUMN_COUNT, "sales.remaining")?,
                holdings: holdings.remove(&sale.id).unwrap_or_default(),
                sale,
            })
        },
    )
    .await
}
