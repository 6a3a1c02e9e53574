//! Orders: the group commit of winning purchases, the status compare-and-set
//! behind cancel, expiry and payment, the expiry sweep, and the reads.
//!
//! The group commit is set-based: whatever the batch size, one transaction
//! makes five round trips (keys already taken, the sales' rows locked, the
//! stock decrements, the order rows, the outbox rows). The decisions between
//! them are made here, in order, exactly as SQLite's writer makes them one
//! order at a time, so both stores answer a batch alike.

use std::collections::HashMap;

use deadpool_postgres::{GenericClient, Transaction};
use stampede_app::events::Event;
use stampede_app::ports::{CancelOutcome, CommitOutcome, KeyRecord, SaleCounts, StoreError};
use stampede_domain::idempotency::IdempotencyKey;
use stampede_domain::ids::{OrderId, SaleId, UserId};
use stampede_domain::order::{Order, OrderStatus};
use stampede_domain::time::Timestamp;
use stampede_trace::TraceParent;

use crate::rows::{self, ORDER_COLUMNS};
use crate::{outbox, sql};

/// Commits each order independently in the caller's transaction: one
/// outcome per order, in order; each `order.created` event carries its
/// order's trace (`traces[i]`). See the module doc.
pub(crate) async fn commit(
    tx: &Transaction<'_>,
    orders: &[Order],
    traces: &[Option<TraceParent>],
) -> Result<Vec<CommitOutcome>, StoreError> {
    let what = "committing orders";
    let taken = orders_by_keys(tx, orders, what).await?;

    // Lock the batch's sales in id order (every batch does, so two nodes'
    // batches cannot deadlock on them) and read what they have left.
    let mut sale_ids: Vec<String> = orders.iter().map(|o| o.sale_id.to_string()).collect();
    sale_ids.sort_unstable();
    sale_ids.dedup();
    let mut remaining: HashMap<String, i64> = sql::all(
        tx,
        "SELECT id, remaining FROM sales WHERE id = ANY($1) ORDER BY id FOR UPDATE",
        &[&sale_ids],
        what,
        |row| {
            Ok((
                rows::get::<String>(row, 0, "sales.id")?,
                rows::get::<i64>(row, 1, "sales.remaining")?,
            ))
        },
    )
    .await?
    .into_iter()
    .collect();

    // Decide each order in turn, as one writer would.
    let mut outcomes = Vec::with_capacity(orders.len());
    let mut created: HashMap<(&str, &str), usize> = HashMap::new();
    for (index, order) in orders.iter().enumerate() {
        let key = (order.user_id.as_str(), order.idempotency_key.as_str());
        if let Some(existing) = taken.get(&key) {
            outcomes.push(CommitOutcome::KeyTaken(existing.clone()));
            continue;
        }
        if let Some(&first) = created.get(&key) {
            outcomes.push(CommitOutcome::KeyTaken(orders[first].clone()));
            continue;
        }
        let units = i64::from(order.quantity.get());
        match remaining.get_mut(&order.sale_id.to_string()) {
            Some(left) if *left >= units => {
                *left -= units;
                created.insert(key, index);
                outcomes.push(CommitOutcome::Created);
            }
            // Unknown sales are sold out, as with SQLite's conditional update.
            _ => outcomes.push(CommitOutcome::SoldOut),
        }
    }
    let winners: Vec<&Order> = orders
        .iter()
        .zip(&outcomes)
        .filter(|(_, outcome)| **outcome == CommitOutcome::Created)
        .map(|(order, _)| order)
        .collect();
    if winners.is_empty() {
        return Ok(outcomes);
    }
    take_stock(tx, &winners, 1, what).await?;
    let inserted = insert(tx, &winners, what).await?;

    // A key another node committed after our first read: that order stands,
    // ours gives its units back.
    let lost: Vec<&Order> = winners
        .iter()
        .copied()
        .filter(|order| !inserted.contains(&order.id.to_string()))
        .collect();
    if !lost.is_empty() {
        take_stock(tx, &lost, -1, what).await?;
        let now_taken = orders_by_keys(tx, orders, what).await?;
        for (order, outcome) in orders.iter().zip(outcomes.iter_mut()) {
            if lost.iter().any(|l| l.id == order.id) {
                let key = (order.user_id.as_str(), order.idempotency_key.as_str());
                let existing = now_taken.get(&key).ok_or_else(|| {
                    StoreError::unavailable(format!(
                        "{what}: key of order {} neither inserted nor found",
                        order.id
                    ))
                })?;
                *outcome = CommitOutcome::KeyTaken(existing.clone());
            }
        }
    }
    let (events, traces): (Vec<Event<'_>>, Vec<Option<TraceParent>>) = orders
        .iter()
        .enumerate()
        .filter(|(_, order)| inserted.contains(&order.id.to_string()))
        .map(|(index, order)| {
            let trace = traces.get(index).copied().flatten();
            (Event::OrderCreated(order), trace)
        })
        .unzip();
    outbox::record_traced(tx, &events, &traces).await?;
    Ok(outcomes)
}

/// Orders already holding the batch's keys, by (user, key).
async fn orders_by_keys<'o>(
    tx: &Transaction<'_>,
    orders: &'o [Order],
    what: &str,
) -> Result<HashMap<(&'o str, &'o str), Order>, StoreError> {
    let users: Vec<&str> = orders.iter().map(|o| o.user_id.as_str()).collect();
    let keys: Vec<&str> = orders.iter().map(|o| o.idempotency_key.as_str()).collect();
    let found = sql::all(
        tx,
        &format!(
            "SELECT {ORDER_COLUMNS} FROM orders \
             WHERE (user_id, idempotency_key) IN (SELECT * FROM unnest($1::text[], $2::text[]))"
        ),
        &[&users, &keys],
        what,
        rows::order,
    )
    .await?;
    let mut by_key = HashMap::with_capacity(found.len());
    for existing in found {
        if let Some(order) = orders.iter().find(|o| {
            o.user_id == existing.user_id && o.idempotency_key == existing.idempotency_key
        }) {
            by_key.insert(
                (order.user_id.as_str(), order.idempotency_key.as_str()),
                existing,
            );
        }
    }
    Ok(by_key)
}

/// Takes (`sign` 1) or gives back (`sign` -1) the orders' units, one
/// statement for all their sales.
async fn take_stock(
    tx: &Transaction<'_>,
    orders: &[&Order],
    sign: i64,
    what: &str,
) -> Result<(), StoreError> {
    let mut per_sale: HashMap<String, i64> = HashMap::new();
    for order in orders {
        *per_sale.entry(order.sale_id.to_string()).or_default() +=
            sign * i64::from(order.quantity.get());
    }
    let (ids, units): (Vec<String>, Vec<i64>) = per_sale.into_iter().unzip();
    sql::execute(
        tx,
        "UPDATE sales SET remaining = remaining - d.units \
         FROM unnest($1::text[], $2::bigint[]) AS d(id, units) WHERE sales.id = d.id",
        &[&ids, &units],
        what,
    )
    .await?;
    Ok(())
}

/// Inserts the orders; returns the ids actually inserted (a key committed by
/// another node meanwhile is skipped, not an error).
async fn insert(
    tx: &Transaction<'_>,
    orders: &[&Order],
    what: &str,
) -> Result<Vec<String>, StoreError> {
    let column = |f: fn(&Order) -> String| orders.iter().map(|o| f(o)).collect::<Vec<String>>();
    let ints = |f: fn(&Order) -> i64| orders.iter().map(|o| f(o)).collect::<Vec<i64>>();
    let ids = column(|o| o.id.to_string());
    let users = column(|o| o.user_id.as_str().to_owned());
    let sales = column(|o| o.sale_id.to_string());
    let products = column(|o| o.product_id.to_string());
    let quantities = ints(|o| i64::from(o.quantity.get()));
    let amounts = ints(|o| o.amount_cents);
    let currencies = column(|o| o.currency.as_str().to_owned());
    let statuses = column(|o| o.status.as_str().to_owned());
    let keys = column(|o| o.idempotency_key.as_str().to_owned());
    let created = ints(|o| o.created_at.as_millis());
    let expires = ints(|o| o.expires_at.as_millis());
    sql::all(
        tx,
        "INSERT INTO orders (id, user_id, sale_id, product_id, quantity, amount_cents, \
         currency, status, idempotency_key, created_at, expires_at, updated_at) \
         SELECT *, created_at FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], \
             $5::bigint[], $6::bigint[], $7::text[], $8::text[], $9::text[], $10::bigint[], \
             $11::bigint[]) AS o(id, user_id, sale_id, product_id, quantity, amount_cents, \
             currency, status, idempotency_key, created_at, expires_at) \
         ON CONFLICT (user_id, idempotency_key) DO NOTHING RETURNING id",
        &[
            &ids,
            &users,
            &sales,
            &products,
            &quantities,
            &amounts,
            &currencies,
            &statuses,
            &keys,
            &created,
            &expires,
        ],
        what,
        |row| rows::get(row, 0, "orders.id"),
    )
    .await
}

// The statuses a change may leave, bound as parameters below; this fails to
// compile if their number changes.
const _: () = assert!(OrderStatus::CANCELLABLE.len() == 2 && OrderStatus::OPEN.len() == 2);

/// A compare-and-set on the status: only the call that moves the order to
/// `cancelled` returns its units and writes `order.cancelled`.
pub(crate) async fn cancel(
    tx: &Transaction<'_>,
    id: OrderId,
    now: Timestamp,
) -> Result<CancelOutcome, StoreError> {
    let what = "cancelling order";
    let from = OrderStatus::CANCELLABLE;
    let Some(order) = transition(tx, id, from, OrderStatus::Cancelled, now, what).await? else {
        return Ok(match self::order(tx, id).await? {
            Some(order) => CancelOutcome::Unchanged(order),
            None => CancelOutcome::NotFound,
        });
    };
    restock(tx, &order, "returning a cancelled order's units").await?;
    outbox::record(tx, &[Event::OrderCancelled(&order, now)]).await?;
    Ok(CancelOutcome::Cancelled(order))
}

/// Moves order `id` from one of `from` to `to`; `None` if it is in neither
/// (or does not exist). PostgreSQL re-checks the `WHERE` after waiting for a
/// concurrent writer's row lock, so of two nodes racing only one moves it.
pub(crate) async fn transition(
    tx: &Transaction<'_>,
    id: OrderId,
    from: [OrderStatus; 2],
    to: OrderStatus,
    now: Timestamp,
    what: &str,
) -> Result<Option<Order>, StoreError> {
    sql::first(
        tx,
        &format!(
            "UPDATE orders SET status = $1, updated_at = $2 \
             WHERE id = $3 AND status IN ($4, $5) RETURNING {ORDER_COLUMNS}"
        ),
        &[
            &to.as_str(),
            &now.as_millis(),
            &id.to_string(),
            &from[0].as_str(),
            &from[1].as_str(),
        ],
        what,
        rows::order,
    )
    .await
}

async fn restock(tx: &Transaction<'_>, order: &Order, what: &str) -> Result<(), StoreError> {
    let restocked = sql::execute(
        tx,
        "UPDATE sales SET remaining = remaining + $1 WHERE id = $2",
        &[&i64::from(order.quantity.get()), &order.sale_id.to_string()],
        what,
    )
    .await?;
    if restocked != 1 {
        return Err(StoreError::corrupt(format!(
            "order {} belongs to sale {}, which does not exist",
            order.id, order.sale_id
        )));
    }
    Ok(())
}

/// Expires up to `limit` due open orders, oldest `expires_at` first. `SKIP
/// LOCKED`: sweeps running on several nodes share the backlog instead of
/// queueing behind each other; the compare-and-set still guards each order.
pub(crate) async fn expire_due(
    tx: &Transaction<'_>,
    now: Timestamp,
    limit: u32,
) -> Result<Vec<Order>, StoreError> {
    let what = "expiring due orders";
    let due = sql::all(
        tx,
        "SELECT id FROM orders WHERE status IN ('pending', 'awaiting_payment') \
         AND expires_at <= $1 ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED",
        &[&now.as_millis(), &i64::from(limit)],
        what,
        |row| rows::id(row, 0, "orders.id", OrderId::parse),
    )
    .await?;
    let mut expired = Vec::with_capacity(due.len());
    for id in due {
        let from = OrderStatus::OPEN;
        if let Some(order) = transition(tx, id, from, OrderStatus::Cancelled, now, what).await? {
            restock(tx, &order, "returning an expired order's units").await?;
            expired.push(order);
        }
    }
    let events: Vec<Event<'_>> = expired
        .iter()
        .map(|order| Event::OrderExpired(order, now))
        .collect();
    outbox::record(tx, &events).await?;
    Ok(expired)
}

pub(crate) async fn order(
    client: &impl GenericClient,
    id: OrderId,
) -> Result<Option<Order>, StoreError> {
    sql::first(
        client,
        &format!("SELECT {ORDER_COLUMNS} FROM orders WHERE id = $1"),
        &[&id.to_string()],
        "reading order",
        rows::order,
    )
    .await
}

pub(crate) async fn by_key(
    client: &impl GenericClient,
    user: &UserId,
    key: &IdempotencyKey,
) -> Result<Option<Order>, StoreError> {
    sql::first(
        client,
        &format!("SELECT {ORDER_COLUMNS} FROM orders WHERE user_id = $1 AND idempotency_key = $2"),
        &[&user.as_str(), &key.as_str()],
        "reading order by idempotency key",
        rows::order,
    )
    .await
}

/// The buyer's orders, newest (highest UUIDv7) first, older than `before`.
pub(crate) async fn orders_of(
    client: &impl GenericClient,
    user: &UserId,
    before: Option<OrderId>,
    limit: u32,
) -> Result<Vec<Order>, StoreError> {
    let before = before.map(|id| id.to_string());
    sql::all(
        client,
        &format!(
            "SELECT {ORDER_COLUMNS} FROM orders WHERE user_id = $1 \
             AND ($2::text IS NULL OR id < $2) ORDER BY id DESC LIMIT $3"
        ),
        &[&user.as_str(), &before, &i64::from(limit)],
        "listing a user's orders",
        rows::order,
    )
    .await
}

/// Orders and units per status, with the sale's stock column; the caller
/// runs it in one repeatable-read transaction so they agree.
pub(crate) async fn sale_counts(
    client: &impl GenericClient,
    sale: SaleId,
) -> Result<SaleCounts, StoreError> {
    let what = "counting a sale's orders";
    let by_status = sql::all(
        client,
        "SELECT status, COUNT(*), SUM(quantity)::bigint FROM orders \
         WHERE sale_id = $1 GROUP BY status",
        &[&sale.to_string()],
        what,
        |row| {
            let status: &str = rows::get(row, 0, "orders.status")?;
            let status = OrderStatus::parse(status)
                .ok_or_else(|| crate::error::corrupt("orders.status", status))?;
            Ok((
                status,
                rows::count(row, 1, "count(orders)")?,
                rows::count(row, 2, "sum(orders.quantity)")?,
            ))
        },
    )
    .await?;
    let remaining = sql::first(
        client,
        "SELECT remaining FROM sales WHERE id = $1",
        &[&sale.to_string()],
        what,
        |row| rows::count(row, 0, "sales.remaining"),
    )
    .await?
    .unwrap_or(0);
    Ok(SaleCounts::from_rows(by_status, remaining))
}

/// Keys of orders created at or after `since`, cancelled ones included.
pub(crate) async fn keys_since(
    client: &impl GenericClient,
    since: Timestamp,
) -> Result<Vec<KeyRecord>, StoreError> {
    sql::all(
        client,
        "SELECT user_id, idempotency_key, id, sale_id, quantity FROM orders \
         WHERE created_at >= $1",
        &[&since.as_millis()],
        "listing recent idempotency keys",
        |row| {
            let key: &str = rows::get(row, 1, "orders.idempotency_key")?;
            Ok(KeyRecord {
                user_id: rows::user_id(row, 0, "orders.user_id")?,
                key: IdempotencyKey::parse(key)
                    .map_err(|_| crate::error::corrupt("orders.idempotency_key", key))?,
                order_id: rows::id(row, 2, "orders.id", OrderId::parse)?,
                sale_id: rows::id(row, 3, "orders.sale_id", SaleId::parse)?,
                quantity: rows::units(row, 4, "orders.quantity")?,
            })
        },
    )
    .await
}
