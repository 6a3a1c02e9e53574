//! The transactional outbox (I8): every state-changing write records exactly
//! one event row in its own transaction, so an event exists if and only if its
//! change was committed.
//!
//! The outbox is a log: each row has a `seq`, handed out in commit order by
//! the single writer (migration 0002 says why that holds). Consumers (the
//! in-process bus, webhooks, an order's event stream) read it by position and
//! keep their own durable cursor here, so no row is ever marked published.
//!
//! What each event says (type, aggregate, payload) is defined once for every
//! adapter in `stampede_app::events`.
//!
//! Bookkeeping of the consumers themselves (cursors, webhook subscriptions
//! and deliveries) writes no events: they are how events get delivered, and
//! announcing them would feed the consumers their own progress.

use rusqlite::{Connection, params};
pub(crate) use stampede_app::events::Event;
use stampede_app::ports::{StoreError, StoredEvent};
use stampede_domain::ids::EventId;

use crate::error::Context;
use crate::rows::{self, EVENT_COLUMNS};

/// Writes the event's row, with the trace of the write that made it (the
/// writer thread runs each write in its caller's trace); call it inside the
/// change's transaction.
pub(crate) fn record(conn: &Connection, event: &Event<'_>) -> Result<(), StoreError> {
    let what = "recording an outbox event";
    conn.prepare_cached(
        "INSERT INTO outbox (id, event_type, aggregate_id, payload, created_at, traceparent) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )
    .and_then(|mut statement| {
        statement.execute(params![
            EventId::generate().to_string(),
            event.event_type(),
            event.aggregate_id(),
            event.payload_text(),
            event.at().as_millis(),
            stampede_trace::current().map(|trace| trace.to_string()),
        ])
    })
    .context(what)?;
    Ok(())
}

/// Events after position `after`, in order.
pub(crate) fn events_after(
    conn: &Connection,
    after: i64,
    limit: u32,
) -> Result<Vec<StoredEvent>, StoreError> {
    let what = "reading the outbox";
    // No `LIMIT ?`: SQLite prepares a statement again whenever a bound
    // LIMIT changes, and the bus's readers share connections while asking
    // for different batch sizes. The scan follows `seq`, so stopping after
    // `limit` rows reads no more than a LIMIT would.
    let mut statement = conn
        .prepare_cached(&format!(
            "SELECT {EVENT_COLUMNS} FROM outbox WHERE seq > ?1 ORDER BY seq"
        ))
        .context(what)?;
    rows::up_to(&mut statement, [after], limit as usize, what, |row| {
        rows::event(row, 0)
    })
}

/// One aggregate's events, in order (through `outbox_by_aggregate`).
pub(crate) fn events_of(
    conn: &Connection,
    aggregate_id: &str,
) -> Result<Vec<StoredEvent>, StoreError> {
    let what = "reading an aggregate's events";
    let mut statement = conn
        .prepare_cached(&format!(
            "SELECT {EVENT_COLUMNS} FROM outbox WHERE aggregate_id = ?1 ORDER BY seq"
        ))
        .context(what)?;
    rows::all(&mut statement, [aggregate_id], what, |row| {
        rows::event(row, 0)
    })
}

/// The largest `seq` in the outbox, 0 when it is empty. `max` of the rowid
/// is one step down the b-tree, not a scan.
pub(crate) fn last_seq(conn: &Connection) -> Result<i64, StoreError> {
    let what = "reading the last outbox position";
    let mut statement = conn
        .prepare_cached("SELECT coalesce(max(seq), 0) FROM outbox")
        .context(what)?;
    rows::first(&mut statement, [], what, |row| {
        rows::int(row, 0, "max(outbox.seq)")
    })
    .map(Option::unwrap_or_default)
}

/// A consumer's position, 0 if it never saved one.
pub(crate) fn cursor(conn: &Connection, consumer: &str) -> Result<i64, StoreError> {
    let what = "reading a consumer's cursor";
    let mut statement = conn
        .prepare_cached("SELECT seq FROM consumer_cursors WHERE consumer = ?1")
        .context(what)?;
    rows::first(&mut statement, [consumer], what, |row| {
        rows::int(row, 0, "consumer_cursors.seq")
    })
    .map(Option::unwrap_or_default)
}

/// Moves a consumer's position to `seq` unless it is already further: two
/// workers of one consumer racing, or a retried save, never move it back. A
/// negative position means nothing done, like 0.
pub(crate) fn save_cursor(conn: &Connection, consumer: &str, seq: i64) -> Result<(), StoreError> {
    let seq = seq.max(0);
    conn.prepare_cached(
        "INSERT INTO consumer_cursors (consumer, seq) VALUES (?1, ?2) \
         ON CONFLICT (consumer) DO UPDATE SET seq = max(seq, excluded.seq)",
    )
    .and_then(|mut statement| statement.execute(params![consumer, seq]))
    .context("saving a consumer's cursor")?;
    Ok(())
}
