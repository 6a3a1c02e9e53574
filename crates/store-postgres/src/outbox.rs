//! The transactional outbox (I8) on PostgreSQL: events written in their
//! change's transaction, read as a log by `seq`, with each consumer's cursor.
//!
//! `seq` must grow in commit order for a cursor to be enough (a consumer
//! that has seen 11 never looks at 10 again). A sequence alone does not give
//! that with concurrent writers, so [`record`] first takes a
//! transaction-scoped advisory lock, held until commit: whoever takes a
//! number commits before the next writer can take one. The lock is taken as
//! late as possible (the outbox rows are each write's last statement), so it
//! covers the insert and the commit only. Migration 0001 says more.

use deadpool_postgres::{GenericClient, Transaction};
use stampede_app::events::Event;
use stampede_app::ports::{StoreError, StoredEvent};
use stampede_domain::ids::EventId;
use stampede_trace::TraceParent;

use crate::rows::{self, EVENT_COLUMNS};
use crate::sql;

/// The advisory lock that orders outbox writers ("outbox" in ASCII).
const OUTBOX_LOCK: i64 = 0x6f75_7462_6f78;

/// Writes the events' rows, in order, each with the caller's trace; call it
/// last in the change's transaction, just before commit.
pub(crate) async fn record(tx: &Transaction<'_>, events: &[Event<'_>]) -> Result<(), StoreError> {
    let trace = stampede_trace::current();
    record_traced(tx, events, &vec![trace; events.len()]).await
}

/// [`record`] with a trace per event (`traces[i]` for `events[i]`): a group
/// commit writes events for many requests at once.
pub(crate) async fn record_traced(
    tx: &Transaction<'_>,
    events: &[Event<'_>],
    traces: &[Option<TraceParent>],
) -> Result<(), StoreError> {
    if events.is_empty() {
        return Ok(());
    }
    let what = "recording outbox events";
    sql::execute(
        tx,
        "SELECT pg_advisory_xact_lock($1)",
        &[&OUTBOX_LOCK],
        what,
    )
    .await?;
    let mut ids = Vec::with_capacity(events.len());
    let mut types = Vec::with_capacity(events.len());
    let mut aggregates = Vec::with_capacity(events.len());
    let mut payloads = Vec::with_capacity(events.len());
    let mut created = Vec::with_capacity(events.len());
    let mut parents = Vec::with_capacity(events.len());
    for (index, event) in events.iter().enumerate() {
        ids.push(EventId::generate().to_string());
        types.push(event.event_type());
        aggregates.push(event.aggregate_id());
        payloads.push(event.payload_text());
        created.push(event.at().as_millis());
        let trace = traces.get(index).copied().flatten();
        parents.push(trace.map(|trace| trace.to_string()));
    }
    // `WITH ORDINALITY` keeps the rows, hence their `seq`, in the given order.
    sql::execute(
        tx,
        "INSERT INTO outbox (id, event_type, aggregate_id, payload, created_at, traceparent) \
         SELECT id, event_type, aggregate_id, payload::json, created_at, traceparent \
         FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::text[]) \
             WITH ORDINALITY AS e(id, event_type, aggregate_id, payload, created_at, \
                 traceparent, n) \
         ORDER BY n",
        &[&ids, &types, &aggregates, &payloads, &created, &parents],
        what,
    )
    .await?;
    Ok(())
}

pub(crate) async fn events_after(
    client: &impl GenericClient,
    after: i64,
    limit: u32,
) -> Result<Vec<StoredEvent>, StoreError> {
    sql::all(
        client,
        &format!("SELECT {EVENT_COLUMNS} FROM outbox WHERE seq > $1 ORDER BY seq LIMIT $2"),
        &[&after, &i64::from(limit)],
        "reading the outbox",
        |row| rows::event(row, 0),
    )
    .await
}

pub(crate) async fn events_of(
    client: &impl GenericClient,
    aggregate_id: &str,
) -> Result<Vec<StoredEvent>, StoreError> {
    sql::all(
        client,
        &format!("SELECT {EVENT_COLUMNS} FROM outbox WHERE aggregate_id = $1 ORDER BY seq"),
        &[&aggregate_id],
        "reading an aggregate's events",
        |row| rows::event(row, 0),
    )
    .await
}

pub(crate) async fn last_seq(client: &impl GenericClient) -> Result<i64, StoreError> {
    sql::first(
        client,
        "SELECT coalesce(max(seq), 0) FROM outbox",
        &[],
        "reading the last outbox position",
        |row| rows::get(row, 0, "max(outbox.seq)"),
    )
    .await
    .map(Option::unwrap_or_default)
}

pub(crate) async fn cursor(client: &impl GenericClient, consumer: &str) -> Result<i64, StoreError> {
    sql::first(
        client,
        "SELECT seq FROM consumer_cursors WHERE consumer = $1",
        &[&consumer],
        "reading a consumer's cursor",
        |row| rows::get(row, 0, "consumer_cursors.seq"),
    )
    .await
    .map(Option::unwrap_or_default)
}

/// Moves a consumer's position forward, never back.
pub(crate) async fn save_cursor(
    client: &impl GenericClient,
    consumer: &str,
    seq: i64,
) -> Result<(), StoreError> {
    sql::execute(
        client,
        "INSERT INTO consumer_cursors (consumer, seq) VALUES ($1, $2) \
         ON CONFLICT (consumer) DO UPDATE \
         SET seq = greatest(consumer_cursors.seq, excluded.seq)",
        &[&consumer, &seq.max(0)],
        "saving a consumer's cursor",
    )
    .await?;
    Ok(())
}
