//! Webhook subscriptions and their deliveries: one row per (subscription,
//! event), polled by `next_attempt_at` and updated after each attempt.
//!
//! None of this writes outbox events: deliveries are how events leave, and a
//! `webhook.subscribed` event would tell every `*` subscriber about every
//! other endpoint.

use rusqlite::{Connection, params};
use stampede_app::ports::{AttemptResult, DueDelivery, StoreError, StoredEvent};
use stampede_domain::ids::{DeliveryId, SubscriptionId};
use stampede_domain::time::Timestamp;
use stampede_domain::webhook::{Delivery, DeliveryStatus, StoredSecret, Subscription};

use crate::error::Context;
use crate::rows::{self, DELIVERY_COLUMNS, EVENT_COLUMNS, SUBSCRIPTION_COLUMNS};

pub(crate) fn insert_subscription(
    conn: &Connection,
    subscription: &Subscription,
) -> Result<(), StoreError> {
    let what = "inserting webhook subscription";
    let event_types = serde_json::to_string(subscription.events.types()).map_err(|err| {
        StoreError::unavailable_because(format!("{what}: encoding event types"), err)
    })?;
    conn.prepare_cached(
        "INSERT INTO webhook_subscriptions (id, url, event_types, secret, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )
    .and_then(|mut statement| {
        statement.execute(params![
            subscription.id.to_string(),
            subscription.url.as_str(),
            event_types,
            subscription.secret.as_str(),
            subscription.created_at.as_millis(),
        ])
    })
    .context(what)?;
    Ok(())
}

pub(crate) fn subscription(
    conn: &Connection,
    id: SubscriptionId,
) -> Result<Option<Subscription>, StoreError> {
    let what = "reading webhook subscription";
    let mut statement = conn
        .prepare_cached(&format!(
            "SELECT {SUBSCRIPTION_COLUMNS} FROM webhook_subscriptions WHERE id = ?1"
        ))
        .context(what)?;
    rows::first(&mut statement, [id.to_string()], what, |row| {
        rows::subscription(row, 0)
    })
}

/// Every subscription, oldest first. Admin configuration: a handful of rows.
pub(crate) fn subscriptions(conn: &Connection) -> Result<Vec<Subscription>, StoreError> {
    let what = "listing webhook subscriptions";
    let mut statement = conn
        .prepare_cached(&format!(
            "SELECT {SUBSCRIPTION_COLUMNS} FROM webhook_subscriptions ORDER BY created_at, id"
        ))
        .context(what)?;
    rows::all(&mut statement, [], what, |row| rows::subscription(row, 0))
}

/// Removes the subscription and its deliveries. The deliveries go
/// explicitly, not only by the schema's `ON DELETE CASCADE`, so this holds
/// whatever a connection's `foreign_keys` setting.
/// Replaces the subscription's secret if it is still `old`; `false` if it
/// was not (changed meanwhile, or no such subscription).
pub(crate) fn replace_secret(
    conn: &Connection,
    id: SubscriptionId,
    old: &StoredSecret,
    new: &StoredSecret,
) -> Result<bool, StoreError> {
    let replaced = conn
        .prepare_cached(
            "UPDATE webhook_subscriptions SET secret = ?3 WHERE id = ?1 AND secret = ?2",
        )
        .and_then(|mut statement| {
            statement.execute(params![id.to_string(), old.as_str(), new.as_str()])
        })
        .context("replacing a webhook secret")?;
    Ok(replaced > 0)
}

pub(crate) fn delete_subscription(
    conn: &Connection,
    id: SubscriptionId,
) -> Result<bool, StoreError> {
    let what = "deleting webhook subscription";
    let id = id.to_string();
    conn.prepare_cached("DELETE FROM webhook_deliveries WHERE subscription_id = ?1")
        .and_then(|mut statement| statement.execute([&id]))
        .context(what)?;
    let deleted = conn
        .prepare_cached("DELETE FROM webhook_subscriptions WHERE id = ?1")
        .and_then(|mut statement| statement.execute([&id]))
        .context(what)?;
    Ok(deleted > 0)
}

/// Schedules `event` for each subscription, due `now`. A pair already
/// scheduled is left as it is (the unique key on (subscription, event)), and
/// a subscription deleted meanwhile is skipped rather than failing the batch
/// on the foreign key.
pub(crate) fn enqueue_deliveries(
    conn: &Connection,
    event: &StoredEvent,
    subscriptions: &[SubscriptionId],
    now: Timestamp,
) -> Result<(), StoreError> {
    let what = "scheduling webhook deliveries";
    // `WHERE` on the SELECT also keeps SQLite's parser from reading the
    // upsert's `ON` as a join condition.
    let mut statement = conn
        .prepare_cached(
            "INSERT INTO webhook_deliveries (id, subscription_id, event_seq, event_id, \
             event_type, status, attempts, next_attempt_at, created_at, updated_at) \
             SELECT ?1, ?2, ?3, ?4, ?5, ?6, 0, ?7, ?7, ?7 \
             WHERE EXISTS (SELECT 1 FROM webhook_subscriptions WHERE id = ?2) \
             ON CONFLICT (subscription_id, event_id) DO NOTHING",
        )
        .context(what)?;
    let event_id = event.id.to_string();
    for subscription in subscriptions {
        statement
            .execute(params![
                DeliveryId::generate().to_string(),
                subscription.to_string(),
                event.seq,
                event_id,
                event.event_type,
                DeliveryStatus::Pending.as_str(),
                now.as_millis(),
            ])
            .context(what)?;
    }
    Ok(())
}

/// Pending deliveries due at `now`, the longest due first, each with its
/// subscription and its event. `status = 'pending'` is a literal so the
/// partial index `webhook_deliveries_due` serves the query.
fn due_deliveries(
    conn: &Connection,
    now: Timestamp,
    limit: u32,
) -> Result<Vec<DueDelivery>, StoreError> {
    let what = "reading due webhook deliveries";
    let mut statement = conn.prepare_cached(&due_deliveries_sql()).context(what)?;
    const SUBSCRIPTION: usize = 11;
    const EVENT: usize = SUBSCRIPTION + 5;
    rows::all(
        &mut statement,
        params![now.as_millis(), limit],
        what,
        |row| {
            let delivery = rows::delivery(row, 0)?;
            // No outbox row joined: the event left the outbox.
            let event = match rows::optional_int(row, EVENT, "outbox.seq")? {
                Some(_) => Some(rows::event(row, EVENT)?),
                None => None,
            };
            DueDelivery::checked(delivery, rows::subscription(row, SUBSCRIPTION)?, event)
        },
    )
}

/// The due deliveries, each leased until `lease_until`: run by the single
/// writer, so no other claim sees them due in between.
pub(crate) fn claim_due_deliveries(
    conn: &Connection,
    now: Timestamp,
    limit: u32,
    lease_until: Timestamp,
) -> Result<Vec<DueDelivery>, StoreError> {
    let due = due_deliveries(conn, now, limit)?;
    let what = "leasing due webhook deliveries";
    let mut lease = conn
        .prepare_cached("UPDATE webhook_deliveries SET next_attempt_at = ?1 WHERE id = ?2")
        .context(what)?;
    for claimed in &due {
        lease
            .execute(params![
                lease_until.as_millis(),
                claimed.delivery.id.to_string()
            ])
            .context(what)?;
    }
    Ok(due)
}

fn due_deliveries_sql() -> String {
    format!(
        "SELECT {DELIVERY_COLUMNS}, {SUBSCRIPTION_COLUMNS}, {EVENT_COLUMNS} \
         FROM webhook_deliveries \
         JOIN webhook_subscriptions ON webhook_subscriptions.id = webhook_deliveries.subscription_id \
         LEFT JOIN outbox ON outbox.seq = webhook_deliveries.event_seq \
         WHERE webhook_deliveries.status = '{}' AND webhook_deliveries.next_attempt_at <= ?1 \
         ORDER BY webhook_deliveries.next_attempt_at LIMIT ?2",
        DeliveryStatus::Pending.as_str()
    )
}

/// Records how an attempt ended. Only a pending delivery changes: a second
/// report of the same attempt (a worker retried after a crash) finds it
/// delivered or dead and leaves it so.
pub(crate) fn record_attempt(
    conn: &Connection,
    id: DeliveryId,
    result: &AttemptResult,
    now: Timestamp,
) -> Result<(), StoreError> {
    let what = "recording a webhook delivery attempt";
    let id = id.to_string();
    let pending = DeliveryStatus::Pending.as_str();
    let now = now.as_millis();
    let changed = match result {
        AttemptResult::Delivered { status } => execute(
            conn,
            "UPDATE webhook_deliveries SET status = ?1, attempts = attempts + 1, \
             last_status = ?2, last_error = NULL, updated_at = ?3 \
             WHERE id = ?4 AND status = ?5",
            params![DeliveryStatus::Delivered.as_str(), status, now, id, pending],
            what,
        )?,
        AttemptResult::Failed {
            error,
            status,
            retry_at,
        } => execute(
            conn,
            "UPDATE webhook_deliveries SET attempts = attempts + 1, next_attempt_at = ?1, \
             last_error = ?2, last_status = ?3, updated_at = ?4 \
             WHERE id = ?5 AND status = ?6",
            params![retry_at.as_millis(), error, status, now, id, pending],
            what,
        )?,
        AttemptResult::Dead { error, status } => execute(
            conn,
            "UPDATE webhook_deliveries SET status = ?1, attempts = attempts + 1, \
             last_error = ?2, last_status = ?3, updated_at = ?4 \
             WHERE id = ?5 AND status = ?6",
            params![
                DeliveryStatus::Dead.as_str(),
                error,
                status,
                now,
                id,
                pending
            ],
            what,
        )?,
        // Not attempted: the attempt count and the last outcome stay.
        AttemptResult::Postponed { retry_at } => execute(
            conn,
            "UPDATE webhook_deliveries SET next_attempt_at = ?1, updated_at = ?2 \
             WHERE id = ?3 AND status = ?4",
            params![retry_at.as_millis(), now, id, pending],
            what,
        )?,
    };
    if changed == 0 {
        tracing::debug!(delivery_id = %id, "attempt recorded on a delivery that is not pending");
    }
    Ok(())
}

fn execute(
    conn: &Connection,
    sql: &str,
    params: &[&dyn rusqlite::ToSql],
    what: &str,
) -> Result<usize, StoreError> {
    conn.prepare_cached(sql)
        .and_then(|mut statement| statement.execute(params))
        .context(what)
}

/// A subscription's deliveries, newest (highest UUIDv7) first, older than
/// `before`, optionally of one status, through
/// `webhook_deliveries_by_subscription`.
pub(crate) fn deliveries(
    conn: &Connection,
    subscription: SubscriptionId,
    status: Option<DeliveryStatus>,
    before: Option<DeliveryId>,
    limit: u32,
) -> Result<Vec<Delivery>, StoreError> {
    let what = "listing webhook deliveries";
    let subscription = subscription.to_string();
    let status = status.map(DeliveryStatus::as_str);
    match before {
        Some(before) => {
            let mut statement = conn
                .prepare_cached(&format!(
                    "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries \
                     WHERE subscription_id = ?1 AND (?2 IS NULL OR status = ?2) AND id < ?3 \
                     ORDER BY id DESC LIMIT ?4"
                ))
                .context(what)?;
            let params = params![subscription, status, before.to_string(), limit];
            rows::all(&mut statement, params, what, |row| rows::delivery(row, 0))
        }
        None => {
            let mut statement = conn
                .prepare_cached(&format!(
                    "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries \
                     WHERE subscription_id = ?1 AND (?2 IS NULL OR status = ?2) \
                     ORDER BY id DESC LIMIT ?3"
                ))
                .context(what)?;
            let params = params![subscription, status, limit];
            rows::all(&mut statement, params, what, |row| rows::delivery(row, 0))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The deliverer's poll must read the partial index in order, not scan
    /// every delivery ever made.
    #[test]
    fn the_due_deliveries_query_reads_the_due_index() {
        let mut conn = Connection::open_in_memory().unwrap();
        crate::migrations::apply(&mut conn).unwrap();
        let plan: Vec<String> = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {}", due_deliveries_sql()))
            .unwrap()
            .query_map(params![0, 10], |row| row.get(3))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert!(
            plan.iter()
                .any(|step| step.contains("webhook_deliveries_due")),
            "{plan:?}"
        );
        assert!(
            !plan.iter().any(|step| step.contains("TEMP B-TREE")),
            "sorted by the index, not afterwards: {plan:?}"
        );
    }
}
