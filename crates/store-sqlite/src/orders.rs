//! Orders: the group commit of winning purchases, the status compare-and-set
//! behind cancel, expiry and payment, the expiry sweep, and the reads (one
//! order, a buyer's orders, a sale's counts, recent keys).

use rusqlite::{Connection, params};
use stampede_app::ports::{CancelOutcome, CommitOutcome, KeyRecord, SaleCounts, StoreError};
use stampede_domain::idempotency::IdempotencyKey;
use stampede_domain::ids::{OrderId, SaleId, UserId};
use stampede_domain::order::{Order, OrderStatus};
use stampede_domain::time::Timestamp;
use stampede_trace::TraceParent;

use crate::error::Context;
use crate::outbox::{self, Event};
use crate::rows::{self, ORDER_COLUMNS};

/// Commits each order independently, inside the caller's transaction: one
/// outcome per order, in order.
///
/// A batch is nearly always one sale's crowd. When the sale has stock for
/// all of it, its units are taken with one conditional decrement for the
/// batch instead of one per order (the same `remaining >= ?` guard, so I1
/// holds as before), the orders are inserted, and the units of keys already
/// taken are given back once at the end. Otherwise each order takes its own
/// units, so a batch larger than what is left still wins what is left.
pub(crate) fn commit(
    conn: &Connection,
    orders: &[Order],
    traces: &[Option<TraceParent>],
) -> Result<Vec<CommitOutcome>, StoreError> {
    if let Some(sale_id) = one_sale(orders)
        && let Some(outcomes) = commit_covered(conn, orders, traces, &sale_id)?
    {
        return Ok(outcomes);
    }
    orders
        .iter()
        .enumerate()
        .map(|(index, order)| commit_one(conn, order, trace_of(traces, index)))
        .collect()
}

/// The trace of the `index`th order: its `order.created` event carries it.
fn trace_of(traces: &[Option<TraceParent>], index: usize) -> Option<TraceParent> {
    traces.get(index).copied().flatten()
}

/// Takes the units of all `orders` (of the sale `sale_id`) at once and
/// inserts them, giving back the units of keys already taken; `None`, with
/// nothing changed, when the sale has not that many left.
fn commit_covered(
    conn: &Connection,
    orders: &[Order],
    traces: &[Option<TraceParent>],
    sale_id: &str,
) -> Result<Option<Vec<CommitOutcome>>, StoreError> {
    let units = orders
        .iter()
        .map(|order| i64::from(order.quantity.get()))
        .sum();
    if !take(conn, sale_id, units)? {
        return Ok(None);
    }
    let mut given_back = 0;
    let outcomes = orders
        .iter()
        .enumerate()
        .map(|(index, order)| {
            stampede_trace::within_sync(trace_of(traces, index), || {
                insert(conn, order, sale_id, &mut given_back)
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if given_back > 0 {
        give_back(conn, sale_id, given_back)?;
    }
    Ok(Some(outcomes))
}

/// The sale of a batch of two or more orders of one sale.
fn one_sale(orders: &[Order]) -> Option<String> {
    let (first, rest) = orders.split_first()?;
    (!rest.is_empty() && rest.iter().all(|order| order.sale_id == first.sale_id))
        .then(|| first.sale_id.to_string())
}

/// Takes `units` from the sale if it has that many left.
fn take(conn: &Connection, sale_id: &str, units: i64) -> Result<bool, StoreError> {
    let taken = conn
        .prepare_cached(
            "UPDATE sales SET remaining = remaining - ?1 WHERE id = ?2 AND remaining >= ?1",
        )
        .and_then(|mut statement| statement.execute(params![units, sale_id]))
        .context("taking stock for an order")?;
    Ok(taken > 0)
}

fn give_back(conn: &Connection, sale_id: &str, units: i64) -> Result<(), StoreError> {
    conn.prepare_cached("UPDATE sales SET remaining = remaining + ?1 WHERE id = ?2")
        .and_then(|mut statement| statement.execute(params![units, sale_id]))
        .context("giving back the stock of a key already taken")?;
    Ok(())
}

/// One order: the sale's conditional decrement, the row (unless its key
/// already has one), the event.
///
/// The key is looked up only when it matters, not before every insert: the
/// insert checks the key's unique index anyway, and a fresh key (nearly
/// every order) then costs one index descent instead of two. A failed
/// decrement asks for the key's order, so a retry is answered with its order
/// even when the sale has since sold out (I4); an insert that finds the key
/// taken gives the units back in the same transaction and answers with that
/// order. Decrementing first also means an order for a sale the store does
/// not know is refused as sold out instead of failing the batch on the
/// foreign key. A refused order leaves nothing behind and needs no savepoint
/// of its own (an error still fails the whole command, which the writer
/// undoes with the command's savepoint).
fn commit_one(
    conn: &Connection,
    order: &Order,
    trace: Option<TraceParent>,
) -> Result<CommitOutcome, StoreError> {
    let sale_id = order.sale_id.to_string();
    if let Some(outcome) = commit_covered(conn, std::slice::from_ref(order), &[trace], &sale_id)?
        .and_then(|mut outcomes| outcomes.pop())
    {
        return Ok(outcome);
    }
    Ok(
        match by_key(conn, &order.user_id, &order.idempotency_key)? {
            Some(existing) => CommitOutcome::KeyTaken(existing),
            None => CommitOutcome::SoldOut,
        },
    )
}

/// Inserts an order whose units are taken, with its event. A key that
/// already has an order adds the units to `given_back` and answers with
/// that order.
fn insert(
    conn: &Connection,
    order: &Order,
    sale_id: &str,
    given_back: &mut i64,
) -> Result<CommitOutcome, StoreError> {
    let quantity = order.quantity.get();
    let inserted = conn
        .prepare_cached(
            "INSERT INTO orders (id, user_id, sale_id, product_id, quantity, amount_cents, \
             currency, status, idempotency_key, created_at, expires_at, updated_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?10) \
             ON CONFLICT (user_id, idempotency_key) DO NOTHING",
        )
        .and_then(|mut statement| {
            statement.execute(params![
                order.id.to_string(),
                order.user_id.as_str(),
                sale_id,
                order.product_id.to_string(),
                quantity,
                order.amount_cents,
                order.currency.as_str(),
                order.status.as_str(),
                order.idempotency_key.as_str(),
                order.created_at.as_millis(),
                order.expires_at.as_millis(),
            ])
        })
        .context("inserting order")?;
    if inserted == 0 {
        *given_back += i64::from(quantity);
        let existing = by_key(conn, &order.user_id, &order.idempotency_key)?
            .ok_or_else(|| StoreError::corrupt("an order key conflicted with no order"))?;
        return Ok(CommitOutcome::KeyTaken(existing));
    }
    outbox::record(conn, &Event::OrderCreated(order))?;
    Ok(CommitOutcome::Created)
}

pub(crate) fn by_key(
    conn: &Connection,
    user: &UserId,
    key: &IdempotencyKey,
) -> Result<Option<Order>, StoreError> {
    let what = "reading order by idempotency key";
    let mut statement = conn
        .prepare_cached(&format!(
            "SELECT {ORDER_COLUMNS} FROM orders WHERE user_id = ?1 AND idempotency_key = ?2"
        ))
        .context(what)?;
    rows::first(
        &mut statement,
        [user.as_str(), key.as_str()],
        what,
        rows::order,
    )
}

// The statuses a change may leave (cancellable, open), bound as parameters
// below: the domain says which they are, and this fails to compile if their
// number changes.
const _: () = assert!(OrderStatus::CANCELLABLE.len() == 2 && OrderStatus::OPEN.len() == 2);

/// A compare-and-set on the status: only the call that moves the order to
/// `cancelled` returns its units to the sale and writes `order.cancelled`, so
/// units come back exactly once however often, or however concurrently, it runs.
pub(crate) fn cancel(
    conn: &Connection,
    id: OrderId,
    now: Timestamp,
) -> Result<CancelOutcome, StoreError> {
    let what = "cancelling order";
    let from = OrderStatus::CANCELLABLE;
    let Some(order) = transition(conn, id, from, OrderStatus::Cancelled, now, what)? else {
        return Ok(match self::order(conn, id)? {
            Some(order) => CancelOutcome::Unchanged(order),
            None => CancelOutcome::NotFound,
        });
    };
    restock(conn, &order, "returning a cancelled order's units")?;
    outbox::record(conn, &Event::OrderCancelled(&order, now))?;
    Ok(CancelOutcome::Cancelled(order))
}

/// Moves order `id` from one of the statuses in `from` to `to`, stamping
/// `updated_at`, and returns it as it is now; `None` if it is not in one of
/// `from` (or does not exist), in which case nothing changed. The one way an
/// order's status changes after its commit, so every change is a
/// compare-and-set and happens at most once.
pub(crate) fn transition(
    conn: &Connection,
    id: OrderId,
    from: [OrderStatus; 2],
    to: OrderStatus,
    now: Timestamp,
    what: &str,
) -> Result<Option<Order>, StoreError> {
    let mut statement = conn
        .prepare_cached(&format!(
            "UPDATE orders SET status = ?1, updated_at = ?2 \
             WHERE id = ?3 AND status IN (?4, ?5) RETURNING {ORDER_COLUMNS}"
        ))
        .context(what)?;
    rows::first(
        &mut statement,
        params![
            to.as_str(),
            now.as_millis(),
            id.to_string(),
            from[0].as_str(),
            from[1].as_str(),
        ],
        what,
        rows::order,
    )
}

/// Gives a cancelled or expired order's units back to its sale.
fn restock(conn: &Connection, order: &Order, what: &str) -> Result<(), StoreError> {
    let restocked = conn
        .prepare_cached("UPDATE sales SET remaining = remaining + ?1 WHERE id = ?2")
        .and_then(|mut statement| {
            statement.execute(params![order.quantity.get(), order.sale_id.to_string()])
        })
        .context(what)?;
    if restocked != 1 {
        return Err(StoreError::corrupt(format!(
            "order {} belongs to sale {}, which does not exist",
            order.id, order.sale_id
        )));
    }
    Ok(())
}

/// The open statuses as SQL literals, `'pending', 'awaiting_payment'`: the
/// expiry query must spell the `orders_expiring` index's condition as
/// literals for SQLite to use that partial index (a bound parameter does
/// not prove the implication at prepare time). A test checks the plan.
fn open_statuses_sql() -> String {
    OrderStatus::OPEN
        .map(|status| format!("'{}'", status.as_str()))
        .join(", ")
}

/// Expires up to `limit` due open orders, oldest `expires_at` first, in the
/// caller's transaction: for each, the same compare-and-set as a cancel, the
/// units back to the sale and `order.expired`. Only the writer runs this, so
/// the select and the updates see the same orders; the compare-and-set still
/// guards each one, so an order is expired at most once whatever runs beside.
pub(crate) fn expire_due(
    conn: &Connection,
    now: Timestamp,
    limit: u32,
) -> Result<Vec<Order>, StoreError> {
    let what = "expiring due orders";
    let due = {
        let mut statement = conn
            .prepare_cached(&format!(
                "SELECT id FROM orders WHERE status IN ({}) AND expires_at <= ?1 \
                 ORDER BY expires_at LIMIT ?2",
                open_statuses_sql()
            ))
            .context(what)?;
        rows::all(
            &mut statement,
            params![now.as_millis(), limit],
            what,
            |row| rows::id(row, 0, "orders.id", OrderId::parse),
        )?
    };
    let mut expired = Vec::with_capacity(due.len());
    for id in due {
        let from = OrderStatus::OPEN;
        let Some(order) = transition(conn, id, from, OrderStatus::Cancelled, now, what)? else {
            continue;
        };
        restock(conn, &order, "returning an expired order's units")?;
        outbox::record(conn, &Event::OrderExpired(&order, now))?;
        expired.push(order);
    }
    Ok(expired)
}

pub(crate) fn order(conn: &Connection, id: OrderId) -> Result<Option<Order>, StoreError> {
    let what = "reading order";
    let mut statement = conn
        .prepare_cached(&format!("SELECT {ORDER_COLUMNS} FROM orders WHERE id = ?1"))
        .context(what)?;
    rows::first(&mut statement, [id.to_string()], what, rows::order)
}

/// The buyer's orders, newest (highest UUIDv7) first, older than `before`.
pub(crate) fn orders_of(
    conn: &Connection,
    user: &UserId,
    before: Option<OrderId>,
    limit: u32,
) -> Result<Vec<Order>, StoreError> {
    let what = "listing a user's orders";
    match before {
        Some(before) => {
            let mut statement = conn
                .prepare_cached(&format!(
                    "SELECT {ORDER_COLUMNS} FROM orders WHERE user_id = ?1 AND id < ?2 \
                     ORDER BY id DESC LIMIT ?3"
                ))
                .context(what)?;
            let params = params![user.as_str(), before.to_string(), limit];
            rows::all(&mut statement, params, what, rows::order)
        }
        None => {
            let mut statement = conn
                .prepare_cached(&format!(
                    "SELECT {ORDER_COLUMNS} FROM orders WHERE user_id = ?1 \
                     ORDER BY id DESC LIMIT ?2"
                ))
                .context(what)?;
            rows::all(
                &mut statement,
                params![user.as_str(), limit],
                what,
                rows::order,
            )
        }
    }
}

/// Orders and units per status, with the sale's stock column, read in one
/// transaction so `quantity − sold = remaining` can be checked against them.
pub(crate) fn sale_counts(conn: &Connection, sale: SaleId) -> Result<SaleCounts, StoreError> {
    let what = "counting a sale's orders";
    let tx = conn.unchecked_transaction().context(what)?;
    let by_status = {
        let mut statement = tx
            .prepare_cached(
                "SELECT status, COUNT(*), SUM(quantity) FROM orders \
                 WHERE sale_id = ?1 GROUP BY status",
            )
            .context(what)?;
        rows::all(&mut statement, [sale.to_string()], what, |row| {
            let status = rows::text(row, 0, "orders.status")?;
            let status = OrderStatus::parse(status).ok_or_else(|| {
                StoreError::corrupt(format!(
                    "orders.status holds {status:?}, which is not valid"
                ))
            })?;
            Ok((
                status,
                rows::count(row, 1, "count(orders)")?,
                rows::count(row, 2, "sum(orders.quantity)")?,
            ))
        })?
    };
    let remaining = {
        let mut statement = tx
            .prepare_cached("SELECT remaining FROM sales WHERE id = ?1")
            .context(what)?;
        rows::first(&mut statement, [sale.to_string()], what, |row| {
            rows::count(row, 0, "sales.remaining")
        })?
        .unwrap_or(0)
    };
    tx.finish().context(what)?;
    Ok(SaleCounts::from_rows(by_status, remaining))
}

/// Keys of orders created at or after `since`, cancelled ones included: a key
/// that won keeps its answer.
pub(crate) fn keys_since(
    conn: &Connection,
    since: Timestamp,
) -> Result<Vec<KeyRecord>, StoreError> {
    let what = "listing recent idempotency keys";
    // No index on created_at: this runs once at start, and an index would cost a
    // page write per order on the hot path.
    let mut statement = conn
        .prepare_cached(
            "SELECT user_id, idempotency_key, id, sale_id, quantity FROM orders \
             WHERE created_at >= ?1",
        )
        .context(what)?;
    rows::all(&mut statement, [since.as_millis()], what, |row| {
        let key = rows::text(row, 1, "orders.idempotency_key")?;
        Ok(KeyRecord {
            user_id: rows::user_id(row, 0, "orders.user_id")?,
            key: IdempotencyKey::parse(key).map_err(|_| {
                StoreError::corrupt(format!(
                    "orders.idempotency_key holds {key:?}, which is not valid"
                ))
            })?,
            order_id: rows::id(row, 2, "orders.id", OrderId::parse)?,
            sale_id: rows::id(row, 3, "orders.sale_id", SaleId::parse)?,
            quantity: rows::units(row, 4, "orders.quantity")?,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sweep must read the partial index, not scan the orders: the
    /// query's `IN` list has to match the index's condition exactly.
    #[test]
    fn the_expiry_sweep_reads_the_expiring_index() {
        let mut conn = Connection::open_in_memory().unwrap();
        crate::migrations::apply(&mut conn).unwrap();
        let sql = format!(
            "EXPLAIN QUERY PLAN SELECT id FROM orders WHERE status IN ({}) \
             AND expires_at <= ?1 ORDER BY expires_at LIMIT ?2",
            open_statuses_sql()
        );
        let plan: Vec<String> = conn
            .prepare(&sql)
            .unwrap()
            .query_map(params![0, 10], |row| row.get(3))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert!(
            plan.iter().any(|step| step.contains("orders_expiring")),
            "{plan:?}"
        );
        assert!(
            !plan.iter().any(|step| step.contains("TEMP B-TREE")),
            "sorted by the index, not afterwards: {plan:?}"
        );
    }
}
