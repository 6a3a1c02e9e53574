//! The schema's history, applied at open. Migration `n` (1-based) takes the
//! database from `PRAGMA user_version` `n - 1` to `n`, in one transaction
//! together with the version bump, so a crash leaves either version, never half
//! a migration.
//!
//! Hand-written on purpose: a list of SQL files and a version counter is all we
//! need, and a migration crate would tie our rusqlite version to the one it
//! supports (shared/STACK.md: one SQLite library per build).

use rusqlite::{Connection, TransactionBehavior};
use stampede_app::ports::StoreError;

use crate::error::Context;

/// Every migration, oldest first. Append only: never edit a released one.
const MIGRATIONS: &[&str] = &[include_str!("../migrations/0001_initial.sql")];

/// The schema version this build writes.
pub(crate) const LATEST: usize = MIGRATIONS.len();

/// Brings the database to [`LATEST`]; returns the version it found.
pub(crate) fn apply(conn: &mut Connection) -> Result<usize, StoreError> {
    let found = version(conn)?;
    if found > LATEST {
        return Err(StoreError::Unavailable(format!(
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
        .map_err(|_| StoreError::Corrupt(format!("negative schema version {version}")))
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

    #[test]
    fn a_database_from_a_newer_build_is_refused() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "user_version", LATEST as i64 + 1)
            .unwrap();
        let err = apply(&mut conn).unwrap_err();
        assert!(err.to_string().contains("newer than this build"), "{err}");
    }
}
