//! The schema's history, applied at open. Migration `n` (1-based) takes the
//! database from `PRAGMA user_version` `n - 1` to `n`, in one transaction
//! together with the version bump, so a crash leaves either version, never half
//! a migration.
//!
//! Hand-written on purpose: a list of SQL files and a version counter is all we
//! need, and a migration crate would tie our rusqlite version to the one it
//! supports (docs/stack.md, Traps: one SQLite library per build).

use rusqlite::{Connection, TransactionBehavior};
use stampede_app::ports::StoreError;

use crate::error::Context;

/// Every migration, oldest first. Append only: never edit a released one.
const MIGRATIONS: &[&str] = &[
    include_str!("../migrations/0001_initial.sql"),
    include_str!("../migrations/0002_order_lifecycle.sql"),
    include_str!("../migrations/0003_outbox_traces.sql"),
    include_str!("../migrations/0004_sale_controls.sql"),
    include_str!("../migrations/0005_waiting_rooms.sql"),
];

/// The schema version this build writes.
pub(crate) const LATEST: usize = MIGRATIONS.len();

/// Brings the database to [`LATEST`]; returns the version it found.
pub(crate) fn apply(conn: &mut Connection) -> Result<usize, StoreError> {
    let found = version(conn)?;
    if found > LATEST {
        return Err(StoreError::unavailable(format!(
            "the database has schema version {found}, newer than this build's {LATEST}: \
             run a newer stampede on it"
        )));
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(found) {
        let target = index + 1;
        let what = format!("applying migration {target}");
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .context(&what)?;
        tx.execute_batch(sql).context(&what)?;
        tx.pragma_update(None, "user_version", target as i64)
            .context(&what)?;
        tx.commit().context(&what)?;
        tracing::info!(version = target, "applied sqlite migration");
    }
    Ok(found)
}

fn version(conn: &Connection) -> Result<usize, StoreError> {
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .context("reading the schema version")?;
    usize::try_from(version)
        .map_err(|_| StoreError::corrupt(format!("negative schema version {version}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_run_once_and_record_the_version() {
        let mut conn = Connection::open_in_memory().unwrap();
        assert_eq!(apply(&mut conn).unwrap(), 0);
        assert_eq!(version(&conn).unwrap(), LATEST);
        assert_eq!(apply(&mut conn).unwrap(), LATEST);
    }

    /// Version 1's outbox rows survive the rebuild into a log, numbered in the
    /// order they were written.
    #[test]
    fn the_outbox_keeps_its_events_in_order_when_it_becomes_a_log() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(MIGRATIONS[0]).unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        // Ids out of order on purpose: the order written is what counts.
        for (id, kind) in [
            ("c", "product.created"),
            ("a", "sale.created"),
            ("b", "order.created"),
        ] {
            conn.execute(
                "INSERT INTO outbox (id, event_type, aggregate_id, payload, created_at, \
                 published_at) VALUES (?1, ?2, 'x', '{}', 7, NULL)",
                [id, kind],
            )
            .unwrap();
        }
        assert_eq!(apply(&mut conn).unwrap(), 1);
        let mut statement = conn
            .prepare("SELECT seq, id, event_type FROM outbox ORDER BY seq")
            .unwrap();
        let rows: Vec<(i64, String, String)> = statement
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(
            rows,
            [
                (1, "c".into(), "product.created".into()),
                (2, "a".into(), "sale.created".into()),
                (3, "b".into(), "order.created".into()),
            ]
        );
        // The next event continues the sequence.
        conn.execute(
            "INSERT INTO outbox (id, event_type, aggregate_id, payload, created_at) \
             VALUES ('d', 'user.registered', 'x', '{}', 8)",
            [],
        )
        .unwrap();
        let last: i64 = conn
            .query_row("SELECT max(seq) FROM outbox", [], |row| row.get(0))
            .unwrap();
        assert_eq!(last, 4);
    }

    #[test]
    fn a_database_from_a_newer_build_is_refused() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "user_version", LATEST as i64 + 1)
            .unwrap();
        let err = apply(&mut conn).unwrap_err();
        assert!(err.to_string().contains("newer than this build"), "{err}");
    }
}
