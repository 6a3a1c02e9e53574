//! The database's files are the owner's only (0600), whatever the umask: they
//! hold password hashes, orders and webhook secrets. SQLite creates its
//! `-wal`, `-shm` and `-journal` files with the database file's mode, so
//! creating that file 0600 before SQLite opens it covers them; files an older
//! build left readable by others are narrowed at open.

use std::ffi::OsString;
use std::fs::{OpenOptions, Permissions};
use std::io::ErrorKind;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use stampede_app::ports::StoreError;

/// Owner read and write, nothing for anyone else.
pub(crate) const PRIVATE: u32 = 0o600;

/// The files SQLite keeps beside the database.
const SIDE_FILES: [&str; 3] = ["-wal", "-shm", "-journal"];

/// `db` with `suffix` appended (`stampede.db-wal`).
pub(crate) fn beside(db: &Path, suffix: &str) -> PathBuf {
    let mut path = OsString::from(db.as_os_str());
    path.push(suffix);
    PathBuf::from(path)
}

/// Creates `db` (empty: SQLite takes an empty file for a new database) with
/// mode 0600 if it is missing, and narrows it and its side files to 0600 if
/// others may read them.
pub(crate) fn make_private(db: &Path) -> Result<(), StoreError> {
    let failed = |path: &Path, err: std::io::Error| {
        StoreError::unavailable(format!("making {} private: {err}", path.display()))
    };
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(PRIVATE)
        .open(db)
        .map_err(|err| failed(db, err))?;
    let side = SIDE_FILES.iter().map(|suffix| beside(db, suffix));
    for path in std::iter::once(db.to_path_buf()).chain(side) {
        let mode = match std::fs::metadata(&path) {
            Ok(metadata) => metadata.permissions().mode(),
            Err(err) if err.kind() == ErrorKind::NotFound => continue,
            Err(err) => return Err(failed(&path, err)),
        };
        if mode & 0o077 != 0 {
            std::fs::set_permissions(&path, Permissions::from_mode(PRIVATE))
                .map_err(|err| failed(&path, err))?;
        }
    }
    Ok(())
}
