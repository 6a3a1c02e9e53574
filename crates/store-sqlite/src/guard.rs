//! A circuit breaker in front of each way into the database (reads, writes):
//! when the disk or the file keeps failing (full disk, I/O errors), callers
//! are refused at once with `Unavailable` instead of queueing up behind a
//! failing device, and a few probes test it again after a pause. Only
//! `Unavailable` counts as a failure: conflicts and corrupt rows are answers,
//! not signs of a failing database. The breakers' states are metrics
//! (`stampede_breaker_state{breaker="database_read"|"database_write"}`).

use std::future::Future;

use stampede_app::ports::StoreError;
use stampede_flow::breaker::{BreakerConfig, CircuitBreaker, Outcome};

pub(crate) struct Guard {
    breaker: CircuitBreaker,
}

impl Guard {
    pub(crate) fn new(name: &'static str) -> Self {
        Self {
            breaker: CircuitBreaker::new(name, BreakerConfig::default()),
        }
    }

    pub(crate) async fn run<T>(
        &self,
        what: &'static str,
        call: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let permit = self
            .breaker
            .try_acquire()
            .map_err(|rejected| StoreError::Unavailable(format!("{what}: {rejected}")))?;
        let result = call.await;
        permit.record(match &result {
            Err(StoreError::Unavailable(_)) => Outcome::Failure,
            _ => Outcome::Success,
        });
        result
    }
}
