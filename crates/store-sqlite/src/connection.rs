//! Opening connections with the pragmas every connection needs: WAL (readers
//! never block the writer nor the writer them), foreign keys, and a busy timeout
//! for the rare moments two connections want the same lock (checkpoints).

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};
use stampede_app::ports::StoreError;

use crate::error::Context;
use crate::settings::Synchronous;

/// How long a connection waits for a lock another connection holds before
/// giving up with `SQLITE_BUSY`.
const BUSY_TIMEOUT: Duration = Duration::from_millis(5000);

/// Prepared statements kept per connection: every statement this crate runs
/// fits, so the hot path never parses SQL.
const STATEMENT_CACHE: usize = 64;

/// The one connection allowed to write, creating the file if needed.
pub(crate) fn open_writer(path: &Path, synchronous: Synchronous) -> Result<Connection, StoreError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = open(path, flags)?;
    conn.pragma_update(None, "synchronous", synchronous.pragma_value())
        .context("setting synchronous")?;
    // Each command of a group commit runs in its own savepoint, which copies
    // every page it dirties again to a sub-journal: in memory rather than a
    // temporary file, those copies cost no system call. It only ever undoes
    // a command inside an open transaction; durability is the log's.
    conn.pragma_update(None, "temp_store", "MEMORY")
        .context("setting temp_store")?;
    Ok(conn)
}

/// The connection that copies the log back into the database (a
/// checkpoint writes the database file, so it may write).
pub(crate) fn open_checkpointer(
    path: &Path,
    synchronous: Synchronous,
) -> Result<Connection, StoreError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = open(path, flags)?;
    conn.pragma_update(None, "synchronous", synchronous.pragma_value())
        .context("setting synchronous")?;
    Ok(conn)
}

/// A read-only connection: it cannot write even by mistake.
pub(crate) fn open_reader(path: &Path) -> Result<Connection, StoreError> {
    open(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
}

fn open(path: &Path, flags: OpenFlags) -> Result<Connection, StoreError> {
    let what = || format!("opening {}", path.display());
    let conn = Connection::open_with_flags(path, flags).context(&what())?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .context("setting busy_timeout")?;
    // WAL is a property of the file: the writer switches it on at first open and
    // readers find it set. Asking on every connection checks that it took.
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
        .context("setting journal_mode")?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::unavailable(format!(
            "{}: journal_mode is {mode}, not wal",
            what()
        )));
    }
    conn.pragma_update(None, "foreign_keys", "ON")
        .context("setting foreign_keys")?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(conn)
}
