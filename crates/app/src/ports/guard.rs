//! A circuit breaker in front of a way into the store of record (reads,
//! writes), for every store adapter: when the database keeps failing (a
//! full disk, I/O errors, a PostgreSQL that is down or past its statement
//! timeout), callers are refused at once with `Unavailable` instead of
//! queueing up behind it, and a few probes test it again after a pause.
//! Only `Unavailable` counts as a failure: conflicts and corrupt rows are
//! answers, not signs of a failing database. The breakers' states and call
//! latencies are metrics (`stampede_breaker_state`,
//! `stampede_dependency_call_seconds`, label `database_read` or
//! `database_write`).

use std::future::Future;

use stampede_flow::breaker::{BreakerConfig, BreakerError, CircuitBreaker};

use crate::ports::StoreError;

pub struct StoreGuard {
    breaker: CircuitBreaker,
}

impl StoreGuard {
    /// `database_read` or `database_write`, by convention.
    pub fn new(name: &'static str) -> Self {
        Self {
            breaker: CircuitBreaker::new(name, BreakerConfig::default()),
        }
    }

    /// Runs `call` unless the breaker is open, and records how it went.
    pub async fn run<T>(
        &self,
        what: &str,
        call: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        self.breaker
            .call(call, |err| matches!(err, StoreError::Unavailable { .. }))
            .await
            .map_err(|err| match err {
                BreakerError::Rejected(rejected) => {
                    StoreError::unavailable(format!("{what}: {rejected}"))
                }
                BreakerError::Inner(err) => err,
            })
    }
}
