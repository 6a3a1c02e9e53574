//! Webhook subscriptions and their deliveries: one row per (subscription,
//! event), polled by `next_attempt_at` and updated after each attempt. None
//! of this writes outbox events (see the SQLite store's webhooks.rs).

use deadpool_postgres::{GenericClient, Transaction};
use stampede_app::ports::{AttemptResult, DueDelivery, StoreError, StoredEvent};
use stampede_domain::ids::{DeliveryId, SubscriptionId};
use stampede_domain::time::Timestamp;
use stampede_domain::webhook::{Delivery, DeliveryStatus, StoredSecret, Subscription};

use crate::rows::{self, DELIVERY_COLUMNS, EVENT_COLUMNS, SUBSCRIPTION_COLUMNS};
use crate::sql;

pub(crate) async fn insert_subscription(
    client: &impl GenericClient,
    subscription: &Subscription,
) -> Result<(), StoreError> {
    let what = "inserting webhook subscription";
    let event_types = serde_json::to_string(subscription.events.types()).map_err(|err| {
        StoreError::unavailable_because(format!("{what}: encoding event types"), err)
    })?;
    sql::execute(
        client,
        "INSERT INTO webhook_subscriptions (id, url, event_types, secret, created_at) \
         VALUES ($1, $2, $3, $4, $5)",
        &[
            &subscription.id.to_string(),
            &subscription.url.as_str(),
            &event_types,
            &subscription.secret.as_str(),
            &subscription.created_at.as_millis(),
        ],
        what,
    )
    .await?;
    Ok(())
}

pub(crate) async fn subscription(
    client: &impl GenericClient,
    id: SubscriptionId,
) -> Result<Option<Subscription>, StoreError> {
    sql::first(
        client,
        &format!("SELECT {SUBSCRIPTION_COLUMNS} FROM webhook_subscriptions WHERE id = $1"),
        &[&id.to_string()],
        "reading webhook subscription",
        |row| rows::subscription(row, 0),
    )
    .await
}

pub(crate) async fn subscriptions(
    client: &impl GenericClient,
) -> Result<Vec<Subscription>, StoreError> {
    sql::all(
        client,
        &format!(
            "SELECT {SUBSCRIPTION_COLUMNS} FROM webhook_subscriptions ORDER BY created_at, id"
        ),
        &[],
        "listing webhook subscriptions",
        |row| rows::subscription(row, 0),
    )
    .await
}

/// The subscription and (by the foreign key's cascade) its deliveries.
/// Replaces the subscription's secret if it is still `old`; `false` if it
/// was not (changed meanwhile, or no such subscription).
pub(crate) async fn replace_secret(
    client: &impl GenericClient,
    id: SubscriptionId,
    old: &StoredSecret,
    new: &StoredSecret,
) -> Result<bool, StoreError> {
    let replaced = sql::execute(
        client,
        "UPDATE webhook_subscriptions SET secret = $3 WHERE id = $1 AND secret = $2",
        &[&id.to_string(), &old.as_str(), &new.as_str()],
        "replacing a webhook secret",
    )
    .await?;
    Ok(replaced > 0)
}

pub(crate) async fn delete_subscription(
    client: &impl GenericClient,
    id: SubscriptionId,
) -> Result<bool, StoreError> {
    let deleted = sql::execute(
        client,
        "DELETE FROM webhook_subscriptions WHERE id = $1",
        &[&id.to_string()],
        "deleting webhook subscription",
    )
    .await?;
    Ok(deleted > 0)
}

/// One statement for all subscriptions; a pair already scheduled, or a
/// subscription deleted meanwhile, is skipped.
pub(crate) async fn enqueue_deliveries(
    client: &impl GenericClient,
    event: &StoredEvent,
    subscriptions: &[SubscriptionId],
    now: Timestamp,
) -> Result<(), StoreError> {
    let ids: Vec<String> = subscriptions
        .iter()
        .map(|_| DeliveryId::generate().to_string())
        .collect();
    let subscriptions: Vec<String> = subscriptions.iter().map(ToString::to_string).collect();
    sql::execute(
        client,
        "INSERT INTO webhook_deliveries (id, subscription_id, event_seq, event_id, \
         event_type, status, attempts, next_attempt_at, created_at, updated_at) \
         SELECT d.id, d.subscription_id, $3, $4, $5, $6, 0, $7, $7, $7 \
         FROM unnest($1::text[], $2::text[]) AS d(id, subscription_id) \
         JOIN webhook_subscriptions s ON s.id = d.subscription_id \
         ON CONFLICT (subscription_id, event_id) DO NOTHING",
        &[
            &ids,
            &subscriptions,
            &event.seq,
            &event.id.to_string(),
            &event.event_type,
            &DeliveryStatus::Pending.as_str(),
            &now.as_millis(),
        ],
        "scheduling webhook deliveries",
    )
    .await?;
    Ok(())
}

/// The due deliveries, locked (skipping rows another claim holds) and
/// leased until `lease_until` in the caller's transaction, so two workers
/// never take the same one.
pub(crate) async fn claim_due_deliveries(
    tx: &Transaction<'_>,
    now: Timestamp,
    limit: u32,
    lease_until: Timestamp,
) -> Result<Vec<DueDelivery>, StoreError> {
    const SUBSCRIPTION: usize = 11;
    const EVENT: usize = SUBSCRIPTION + 5;
    let due = sql::all(
        tx,
        &format!(
            "SELECT {DELIVERY_COLUMNS}, {SUBSCRIPTION_COLUMNS}, {EVENT_COLUMNS} \
             FROM webhook_deliveries \
             JOIN webhook_subscriptions \
                 ON webhook_subscriptions.id = webhook_deliveries.subscription_id \
             LEFT JOIN outbox ON outbox.seq = webhook_deliveries.event_seq \
             WHERE webhook_deliveries.status = 'pending' \
                 AND webhook_deliveries.next_attempt_at <= $1 \
             ORDER BY webhook_deliveries.next_attempt_at LIMIT $2 \
             FOR UPDATE OF webhook_deliveries SKIP LOCKED"
        ),
        &[&now.as_millis(), &i64::from(limit)],
        "claiming due webhook deliveries",
        |row| {
            let delivery = rows::delivery(row, 0)?;
            // No outbox row joined: the event left the outbox.
            let event = match rows::get::<Option<i64>>(row, EVENT, "outbox.seq")? {
                Some(_) => Some(rows::event(row, EVENT)?),
                None => None,
            };
            DueDelivery::checked(delivery, rows::subscription(row, SUBSCRIPTION)?, event)
        },
    )
    .await?;
    let ids: Vec<String> = due.iter().map(|due| due.delivery.id.to_string()).collect();
    if !ids.is_empty() {
        sql::execute(
            tx,
            "UPDATE webhook_deliveries SET next_attempt_at = $1 WHERE id = ANY($2)",
            &[&lease_until.as_millis(), &ids],
            "leasing due webhook deliveries",
        )
        .await?;
    }
    Ok(due)
}

pub(crate) async fn record_attempt(
    client: &impl GenericClient,
    id: DeliveryId,
    result: &AttemptResult,
    now: Timestamp,
) -> Result<(), StoreError> {
    let what = "recording a webhook delivery attempt";
    let id = id.to_string();
    let pending = DeliveryStatus::Pending.as_str();
    let now = now.as_millis();
    let status = |status: &Option<u16>| status.map(i64::from);
    let changed = match result {
        AttemptResult::Delivered { status } => {
            sql::execute(
                client,
                "UPDATE webhook_deliveries SET status = $1, attempts = attempts + 1, \
                 last_status = $2, last_error = NULL, updated_at = $3 \
                 WHERE id = $4 AND status = $5",
                &[
                    &DeliveryStatus::Delivered.as_str(),
                    &i64::from(*status),
                    &now,
                    &id,
                    &pending,
                ],
                what,
            )
            .await?
        }
        AttemptResult::Failed {
            error,
            status: code,
            retry_at,
        } => {
            sql::execute(
                client,
                "UPDATE webhook_deliveries SET attempts = attempts + 1, next_attempt_at = $1, \
                 last_error = $2, last_status = $3, updated_at = $4 \
                 WHERE id = $5 AND status = $6",
                &[
                    &retry_at.as_millis(),
                    error,
                    &status(code),
                    &now,
                    &id,
                    &pending,
                ],
                what,
            )
            .await?
        }
        AttemptResult::Dead {
            error,
            status: code,
        } => {
            sql::execute(
                client,
                "UPDATE webhook_deliveries SET status = $1, attempts = attempts + 1, \
                 last_error = $2, last_status = $3, updated_at = $4 \
                 WHERE id = $5 AND status = $6",
                &[
                    &DeliveryStatus::Dead.as_str(),
                    error,
                    &status(code),
                    &now,
                    &id,
                    &pending,
                ],
                what,
            )
            .await?
        }
        // Not attempted: the attempt count and the last outcome stay.
        AttemptResult::Postponed { retry_at } => {
            sql::execute(
                client,
                "UPDATE webhook_deliveries SET next_attempt_at = $1, updated_at = $2 \
                 WHERE id = $3 AND status = $4",
                &[&retry_at.as_millis(), &now, &id, &pending],
                what,
            )
            .await?
        }
    };
    if changed == 0 {
        tracing::debug!(delivery_id = %id, "attempt recorded on a delivery that is not pending");
    }
    Ok(())
}

pub(crate) async fn deliveries(
    client: &impl GenericClient,
    subscription: SubscriptionId,
    status: Option<DeliveryStatus>,
    before: Option<DeliveryId>,
    limit: u32,
) -> Result<Vec<Delivery>, StoreError> {
    sql::all(
        client,
        &format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries \
             WHERE subscription_id = $1 AND ($2::text IS NULL OR status = $2) \
             AND ($3::text IS NULL OR id < $3) ORDER BY id DESC LIMIT $4"
        ),
        &[
            &subscription.to_string(),
            &status.map(DeliveryStatus::as_str),
            &before.map(|id| id.to_string()),
            &i64::from(limit),
        ],
        "listing webhook deliveries",
        |row| rows::delivery(row, 0),
    )
    .await
}
