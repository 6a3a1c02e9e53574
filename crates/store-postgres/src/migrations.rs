//! The schema's history, applied at connect. Versions are recorded in
//! `schema_migrations`; each migration runs in one transaction with its
//! record, and every node takes the same advisory lock first, so nodes
//! starting together apply each migration once.

use deadpool_postgres::Object;
use stampede_app::ports::StoreError;

use crate::error::Context;

/// Every migration, oldest first. Append only: never edit a released one.
const MIGRATIONS: &[&str] = &[
    include_str!("../migrations/0001_initial.sql"),
    include_str!("../migrations/0002_outbox_traces.sql"),
    include_str!("../migrations/0003_sale_controls.sql"),
    include_str!("../migrations/0004_waiting_rooms.sql"),
];

/// The schema version this build writes.
pub(crate) const LATEST: i64 = MIGRATIONS.len() as i64;

/// Session-level advisory lock key for migrating ("stampede" in ASCII, as a
/// number nothing else in the database is likely to use).
const MIGRATION_LOCK: i64 = 0x7374_616d_7065_6465;

/// Brings the database to [`LATEST`]; returns the version it found.
pub(crate) async fn apply(client: &mut Object) -> Result<i64, StoreError> {
    let what = "migrating the schema";
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await
        .context(what)?;
    let result = apply_locked(client).await;
    // Unlock even after a failure: the connection goes back to the pool.
    let unlocked = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await
        .context(what);
    let found = result?;
    unlocked?;
    Ok(found)
}

async fn apply_locked(client: &mut Object) -> Result<i64, StoreError> {
    let what = "migrating the schema";
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (\
                 version    BIGINT NOT NULL PRIMARY KEY, \
                 applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
        )
        .await
        .context(what)?;
    let found: i64 = client
        .query_one(
            "SELECT coalesce(max(version), 0) FROM schema_migrations",
            &[],
        )
        .await
        .context(what)?
        .get(0);
    if found > LATEST {
        return Err(StoreError::unavailable(format!(
            "the database has schema version {found}, newer than this build's {LATEST}: \
             run a newer stampede on it"
        )));
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let version = index as i64 + 1;
        let what = format!("applying migration {version}");
        let tx = client.transaction().await.context(&what)?;
        tx.batch_execute(sql).await.context(&what)?;
        tx.execute(
            "INSERT INTO schema_migrations (version) VALUES ($1)",
            &[&version],
        )
        .await
        .context(&what)?;
        tx.commit().await.context(&what)?;
        tracing::info!(version, "applied postgres migration");
    }
    Ok(found)
}
