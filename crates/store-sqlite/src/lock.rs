//! Exclusive use of a database file. Each Stampede process trusts its own
//! in-memory stock ledger, so two processes on one data directory would both
//! sell the same units: the second must refuse to start. SQLite's own locks only
//! serialise transactions, so an advisory lock on a sibling file, held for the
//! store's life, says who owns the database.

use std::fs::{File, OpenOptions, TryLockError};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use stampede_app::ports::StoreError;

use crate::files;

/// The lock file of a database: `<db path>.lock`.
pub(crate) fn lock_path(db: &Path) -> PathBuf {
    files::beside(db, ".lock")
}

/// Takes the exclusive lock of `db`, or says who holds it. The lock lasts as
/// long as the returned file is open (the OS drops it if the process dies).
/// The lock file is never deleted: removing it while another process waits on
/// it would let two processes lock two different files.
pub(crate) fn acquire(db: &Path) -> Result<File, StoreError> {
    let path = lock_path(db);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(files::PRIVATE)
        .open(&path)
        .map_err(|err| {
            StoreError::unavailable(format!("opening lock file {}: {err}", path.display()))
        })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err(StoreError::unavailable(format!(
            "another process is using {} (its lock file {} is held); \
             two processes on one database would oversell",
            db.display(),
            path.display()
        ))),
        Err(TryLockError::Error(err)) => Err(StoreError::unavailable(format!(
            "locking {}: {err}",
            path.display()
        ))),
    }
}
