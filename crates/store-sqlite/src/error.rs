//! How SQLite's errors become the port's [`StoreError`]: a unique violation names
//! the field that must be unique, data that breaks the schema's own rules is
//! corruption, and everything else (I/O, busy, closed) is unavailability.

use rusqlite::ErrorCode;
use stampede_app::ports::StoreError;

/// Unique constraints callers can violate, and the field each one protects.
/// SQLite names the columns in its message ("UNIQUE constraint failed:
/// products.sku"), not the constraint, so the match is on that text.
const UNIQUE_FIELDS: [(&str, &str); 2] = [("products.sku", "sku"), ("users.email", "email")];

/// Turns a SQLite error met while doing `what` into the port's error.
pub(crate) fn map(what: &str, err: rusqlite::Error) -> StoreError {
    use rusqlite::Error as E;
    match &err {
        E::SqliteFailure(failure, message) => match failure.code {
            ErrorCode::ConstraintViolation => {
                let message = message.as_deref().unwrap_or_default();
                let unique = failure.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE;
                match UNIQUE_FIELDS
                    .iter()
                    .find(|(columns, _)| message.contains(columns))
                {
                    Some((_, field)) if unique => StoreError::Conflict { field },
                    // A rule of the schema no caller can break on purpose (the
                    // stock CHECK, a foreign key, an unexpected duplicate id):
                    // the stored data disagrees with itself. Never retryable.
                    _ => StoreError::corrupt_because(what, err),
                }
            }
            ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase => {
                StoreError::corrupt_because(what, err)
            }
            _ => StoreError::unavailable_because(what, err),
        },
        E::FromSqlConversionFailure(..)
        | E::IntegralValueOutOfRange(..)
        | E::Utf8Error(..)
        | E::InvalidColumnType(..) => StoreError::corrupt_because(what, err),
        _ => StoreError::unavailable_because(what, err),
    }
}

/// Adds what was being done to a SQLite error.
pub(crate) trait Context<T> {
    fn context(self, what: &str) -> Result<T, StoreError>;
}

impl<T> Context<T> for rusqlite::Result<T> {
    fn context(self, what: &str) -> Result<T, StoreError> {
        self.map_err(|err| map(what, err))
    }
}

/// The answer to every call once the store is closed.
pub(crate) fn closed() -> StoreError {
    StoreError::unavailable("store closed")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn constraint(extended_code: i32, message: &str) -> rusqlite::Error {
        rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(extended_code),
            Some(message.to_owned()),
        )
    }

    #[test]
    fn unique_violations_on_sku_and_email_are_conflicts_on_those_fields() {
        let sku = constraint(
            rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE,
            "UNIQUE constraint failed: products.sku",
        );
        assert!(matches!(
            map("x", sku),
            StoreError::Conflict { field: "sku" }
        ));
        let email = constraint(
            rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE,
            "UNIQUE constraint failed: users.email",
        );
        assert!(matches!(
            map("x", email),
            StoreError::Conflict { field: "email" }
        ));
    }

    #[test]
    fn other_constraint_failures_are_corruption_with_context() {
        let check = constraint(
            rusqlite::ffi::SQLITE_CONSTRAINT_CHECK,
            "CHECK constraint failed: remaining >= 0",
        );
        match map("cancelling order", check) {
            StoreError::Corrupt { context, cause } => {
                assert_eq!(context, "cancelling order");
                assert!(cause.is_some());
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn busy_and_io_errors_are_unavailable() {
        let busy = constraint(rusqlite::ffi::SQLITE_BUSY, "database is locked");
        assert!(matches!(map("x", busy), StoreError::Unavailable { .. }));
        let io = constraint(rusqlite::ffi::SQLITE_IOERR_FSYNC, "disk I/O error");
        assert!(matches!(map("x", io), StoreError::Unavailable { .. }));
    }
}
