//! Products and sales: their inserts and an admin's changes to a sale (on
//! the writer) and reads (on readers), and the snapshot the stock ledger is
//! rebuilt from.

use std::collections::HashMap;

use rusqlite::{Connection, params};
use stampede_app::ports::{SaleSnapshot, SaleUpdate, StoreError};
use stampede_domain::catalog::{Product, Sale, SaleControl};
use stampede_domain::ids::{ProductId, SaleId, UserId};
use stampede_domain::order::OrderStatus;
use stampede_domain::time::Timestamp;

use crate::error::Context;
use crate::outbox::{self, Event};
use crate::rows::{self, PRODUCT_COLUMNS, SALE_COLUMN_COUNT, SALE_COLUMNS};

pub(crate) fn insert_product(conn: &Connection, product: &Product) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO products (id, sku, name, price_cents, currency, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )
    .and_then(|mut statement| {
        statement.execute(params![
            product.id.to_string(),
            product.sku,
            product.name,
            product.price.get(),
            product.currency.as_str(),
            product.created_at.as_millis(),
        ])
    })
    .context("inserting product")?;
    outbox::record(conn, &Event::ProductCreated(product))
}

pub(crate) fn product(conn: &Connection, id: ProductId) -> Result<Option<Product>, StoreError> {
    let what = "reading product";
    let mut statement = conn
        .prepare_cached(&format!(
            "SELECT {PRODUCT_COLUMNS} FROM products WHERE id = ?1"
        ))
        .context(what)?;
    rows::first(&mut statement, [id.to_string()], what, rows::product)
}

pub(crate) fn products(
    conn: &Connection,
    after: Option<ProductId>,
    limit: u32,
) -> Result<Vec<Product>, StoreError> {
    let what = "listing products";
    let mut statement = conn
        .prepare_cached(&format!(
            "SELECT {PRODUCT_COLUMNS} FROM products WHERE id > ?1 ORDER BY id LIMIT ?2"
        ))
        .context(what)?;
    // Every id sorts after the empty string: no cursor means from the start.
    let after = after.map(|id| id.to_string()).unwrap_or_default();
    rows::all(&mut statement, params![after, limit], what, rows::product)
}

pub(crate) fn insert_sale(conn: &Connection, sale: &Sale) -> Result<(), StoreError> {
    let version = version_value(sale.version)?;
    conn.prepare_cached(
        "INSERT INTO sales (id, product_id, price_cents, currency, quantity, remaining, \
         per_user_limit, starts_at, ends_at, payment_window_secs, created_at, state, version, \
         waiting_room) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
    )
    .and_then(|mut statement| {
        statement.execute(params![
            sale.id.to_string(),
            sale.product_id.to_string(),
            sale.price.get(),
            sale.currency.as_str(),
            sale.quantity,
            sale.per_user_limit.get(),
            sale.starts_at.as_millis(),
            sale.ends_at.map(|at| at.as_millis()),
            sale.payment_window_secs,
            sale.created_at.as_millis(),
            sale.state.as_str(),
            version,
            sale.waiting_room,
        ])
    })
    .context("inserting sale")?;
    outbox::record(conn, &Event::SaleCreated(sale))
}

/// Writes `next` over the sale row if it is still at `current.version`,
/// moving its stock column by the change in quantity, never below 0, and
/// records the change's event; on the writer, so inside its transaction. A
/// refused update writes nothing: one statement with both guards, then a
/// read of the version to tell which guard refused.
pub(crate) fn update_sale(
    conn: &Connection,
    current: &Sale,
    next: &Sale,
    control: SaleControl,
    at: Timestamp,
) -> Result<SaleUpdate, StoreError> {
    let what = "updating sale";
    let delta = i64::from(next.quantity) - i64::from(current.quantity);
    let (from, to) = (
        version_value(current.version)?,
        version_value(next.version)?,
    );
    let updated = conn
        .prepare_cached(
            "UPDATE sales SET quantity = ?1, remaining = remaining + ?2, per_user_limit = ?3, \
             ends_at = ?4, state = ?5, version = ?6 \
             WHERE id = ?7 AND version = ?8 AND remaining + ?2 >= 0",
        )
        .and_then(|mut statement| {
            statement.execute(params![
                next.quantity,
                delta,
                next.per_user_limit.get(),
                next.ends_at.map(|at| at.as_millis()),
                next.state.as_str(),
                to,
                current.id.to_string(),
                from,
            ])
        })
        .context(what)?;
    if updated == 0 {
        let mut statement = conn
            .prepare_cached("SELECT version FROM sales WHERE id = ?1")
            .context(what)?;
        let found = rows::first(&mut statement, [current.id.to_string()], what, |row| {
            rows::version(row, 0, "sales.version")
        })?;
        // Still at the version: only the stock guard can have refused.
        return Ok(if found == Some(current.version) {
            SaleUpdate::InsufficientStock
        } else {
            SaleUpdate::Stale
        });
    }
    outbox::record(conn, &Event::SaleChanged(next, control, at))?;
    Ok(SaleUpdate::Updated)
}

/// A version as the INTEGER column holds it; one past `i64::MAX` cannot
/// have come from a row, so it is a bug, not a retry.
fn version_value(version: u64) -> Result<i64, StoreError> {
    i64::try_from(version)
        .map_err(|_| StoreError::corrupt(format!("sale version {version} is out of range")))
}

/// Every sale's id and version, in id (creation) order.
pub(crate) fn sale_versions(conn: &Connection) -> Result<Vec<(SaleId, u64)>, StoreError> {
    let what = "reading sale versions";
    let mut statement = conn
        .prepare_cached("SELECT id, version FROM sales ORDER BY id")
        .context(what)?;
    rows::all(&mut statement, [], what, |row| {
        Ok((
            rows::id(row, 0, "sales.id", SaleId::parse)?,
            rows::version(row, 1, "sales.version")?,
        ))
    })
}

pub(crate) fn sale(conn: &Connection, id: SaleId) -> Result<Option<Sale>, StoreError> {
    let what = "reading sale";
    let mut statement = conn
        .prepare_cached(&format!("SELECT {SALE_COLUMNS} FROM sales WHERE id = ?1"))
        .context(what)?;
    rows::first(&mut statement, [id.to_string()], what, rows::sale)
}

/// Every sale with its stock column and what each buyer holds, read in one
/// transaction so the two agree.
pub(crate) fn sale_snapshots(conn: &Connection) -> Result<Vec<SaleSnapshot>, StoreError> {
    let what = "reading sale snapshots";
    let tx = conn.unchecked_transaction().context(what)?;
    let mut holdings: HashMap<SaleId, Vec<(UserId, u32)>> = HashMap::new();
    {
        let mut statement = tx
            .prepare_cached(
                "SELECT sale_id, user_id, SUM(quantity) FROM orders \
                 WHERE status <> ?1 GROUP BY sale_id, user_id",
            )
            .context(what)?;
        let held = rows::all(
            &mut statement,
            [OrderStatus::Cancelled.as_str()],
            what,
            |row| {
                Ok((
                    rows::id(row, 0, "orders.sale_id", SaleId::parse)?,
                    rows::user_id(row, 1, "orders.user_id")?,
                    rows::units(row, 2, "sum(orders.quantity)")?,
                ))
            },
        )?;
        for (sale, user, units) in held {
            holdings.entry(sale).or_default().push((user, units));
        }
    }
    let snapshots = {
        let mut statement = tx
            .prepare_cached(&format!(
                "SELECT {SALE_COLUMNS}, remaining FROM sales ORDER BY id"
            ))
            .context(what)?;
        rows::all(&mut statement, [], what, |row| {
            let sale = rows::sale(row)?;
            Ok(SaleSnapshot {
                remaining: rows::count(row, SALE_COLUMN_COUNT, "sales.remaining")?,
                holdings: holdings.remove(&sale.id).unwrap_or_default(),
                sale,
            })
        })?
    };
    tx.finish().context(what)?;
    Ok(snapshots)
}
