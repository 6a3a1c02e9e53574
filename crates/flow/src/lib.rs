//! Stampede's flow control: generic tools that keep one slow or failing
//! dependency from taking the service down with it. Nothing here knows about
//! orders, sales or any other Stampede crate; callers decide what a failure is.
//!
//! - [`breaker`]: a circuit breaker (closed → open → half-open) over a count or
//!   time window, with failure-rate and slow-call thresholds, per dependency.
//! - [`mod@retry`]: retries with exponential backoff and full jitter, bounded by
//!   attempts and by a deadline; the backoff alone for persisted schedules.
//! - [`deadline`]: a request's deadline, passed inward so each call takes only
//!   what remains of it.
//!
//! All timing goes through `tokio::time`, so tests run under paused time.
//! Rate limiters, adaptive concurrency and bulkheads will join these.

pub mod breaker;
pub mod deadline;
pub mod retry;

pub use breaker::{
    BreakerConfig, BreakerError, CircuitBreaker, ConfigError, Outcome, Permit, Rejected, State,
    Window,
};
pub use deadline::{Deadline, Elapsed};
pub use retry::{Retry, RetryPolicy, retry};
