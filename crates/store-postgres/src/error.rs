//! PostgreSQL and pool errors in the port's terms: a unique key that callers
//! may break (SKU, e-mail) is a `Conflict`, data that does not parse is
//! `Corrupt`, everything else — connection lost, pool exhausted, timeout,
//! deadlock, serialization failure — is `Unavailable` (retryable: the
//! transaction was rolled back).

use stampede_app::ports::StoreError;
use tokio_postgres::error::SqlState;

/// Unique constraints (named in migrations/) that callers can hit.
const UNIQUE_FIELDS: [(&str, &str); 2] = [
    ("products_sku_unique", "sku"),
    ("users_email_unique", "email"),
];

pub(crate) fn map(what: &str, err: tokio_postgres::Error) -> StoreError {
    if let Some(db) = err.as_db_error() {
        let field = UNIQUE_FIELDS
            .iter()
            .find(|(name, _)| db.constraint() == Some(*name));
        if let (true, Some((_, field))) = (*db.code() == SqlState::UNIQUE_VIOLATION, field) {
            return StoreError::Conflict { field };
        }
        // A CHECK failing means a bug let a write through that the schema
        // refuses: loud, not retried.
        if *db.code() == SqlState::CHECK_VIOLATION || *db.code() == SqlState::UNIQUE_VIOLATION {
            return StoreError::corrupt_because(what, err);
        }
    }
    StoreError::unavailable_because(what, err)
}

pub(crate) trait Context<T> {
    fn context(self, what: &str) -> Result<T, StoreError>;
}

impl<T> Context<T> for Result<T, tokio_postgres::Error> {
    fn context(self, what: &str) -> Result<T, StoreError> {
        self.map_err(|err| map(what, err))
    }
}

impl<T> Context<T> for Result<T, deadpool_postgres::PoolError> {
    fn context(self, what: &str) -> Result<T, StoreError> {
        self.map_err(|err| match err {
            deadpool_postgres::PoolError::Backend(backend) => map(what, backend),
            _ => StoreError::unavailable_because(format!("{what}: no database connection"), err),
        })
    }
}

pub(crate) fn corrupt(column: &str, value: impl std::fmt::Debug) -> StoreError {
    StoreError::corrupt(format!("{column} holds {value:?}, which is not valid"))
}

pub(crate) fn closed() -> StoreError {
    StoreError::unavailable("store closed")
}
