//! Stampede's flow control: generic tools that keep one slow or failing
//! dependency, or one greedy client, from taking the service down with it.
//! Nothing here knows about orders, sales or any other Stampede crate;
//! callers decide what a key, a failure or a dependency is.
//!
//! From the edge inward, in the order a request meets them:
//!
//! - [`limit`]: rate limiters per key (global, IP, user, route, sale): GCRA,
//!   a queueing leaky bucket, fixed and sliding windows, with the values of
//!   the `RateLimit-*` and `Retry-After` headers; [`limit::shared`] keeps a
//!   rule's state in a store every node shares, with a fallback.
//! - [`adaptive`]: a limit on requests in flight that finds its own level
//!   (AIMD on latency) and sheds the excess at once.
//! - [`deadline`]: a request's deadline, passed inward (explicitly or through
//!   a task-local scope) so each call takes only what remains of it;
//!   [`queue_budget`]: an internal queue admits a request only if its
//!   predicted wait and service fit what is left of that deadline.
//! - [`bulkhead`]: a concurrency budget per dependency, so one slow
//!   dependency cannot hold every task.
//! - [`breaker`]: a circuit breaker (closed → open → half-open) over a count or
//!   time window, with failure-rate and slow-call thresholds, per dependency.
//! - [`mod@retry`]: retries with exponential backoff and full jitter, bounded by
//!   attempts and by a deadline; the backoff alone for persisted schedules.
//!
//! All timing goes through `tokio::time`, so tests run under paused time.
//! Every component reports metrics through the `metrics` facade, with its
//! name as a label; handles are made once, at construction.

pub mod adaptive;
pub mod breaker;
pub mod bulkhead;
pub mod deadline;
pub mod limit;
pub mod queue_budget;
pub mod retry;
pub mod serde_duration;

#[cfg(test)]
mod testing;

pub use adaptive::{AdaptiveConfig, AdaptiveLimit, InFlight};
pub use breaker::{
    BreakerConfig, BreakerError, CircuitBreaker, ConfigError, Outcome, Permit, Rejected, State,
    Window,
};
pub use bulkhead::{Bulkhead, BulkheadPermit, Full};
pub use deadline::{Deadline, Elapsed};
pub use limit::shared::{
    Fallback, RateStore, RateStoreError, SharedLimiter, SharedStore, StoredRules, Undecided,
};
pub use limit::{
    Algorithm, Bounds, HotKey, KeyedLimiter, LimitDecision, NotBoundable, Quota, QuotaError,
};
pub use queue_budget::{Late, QueueBudget};
pub use retry::{Retry, RetryPolicy, retry};
