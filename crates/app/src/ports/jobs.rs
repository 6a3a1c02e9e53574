//! The job queue: work for worker nodes, one job per thing to do (a payment
//! to send), each taken by one worker at a time and acknowledged once its
//! work is committed.
//!
//! At least once: a job whose worker dies, or that is neither done nor
//! retried within the queue's lease, is taken again, so handlers are
//! idempotent. Nothing in the queue is the only copy of anything: every job
//! stands for a row of the store, and a sweeper pushes again whatever the
//! store says is still to do (after a restart of the in-process queue, or
//! the loss of a JetStream stream).

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use stampede_trace::TraceParent;

use crate::failure::{Cause, context_constructors};

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The queue cannot be reached. Retryable.
    #[error("job queue unavailable: {context}")]
    Unavailable {
        context: String,
        #[source]
        cause: Option<Cause>,
    },
}

context_constructors!(QueueError {
    Unavailable => unavailable, unavailable_because;
});

impl QueueError {
    /// Always: the queue's only failure is not being there.
    pub fn is_retryable(&self) -> bool {
        true
    }
}

#[async_trait]
pub trait JobQueue: Send + Sync + 'static {
    /// Queues job `id` of `kind`, to be taken `delay` from now or later,
    /// carrying the caller's trace ([`stampede_trace::current`]) to whoever
    /// takes it. Pushing a job that is already queued or taken does not
    /// queue it a second time (JetStream: within its two-minute
    /// deduplication window).
    async fn push(&self, kind: &'static str, id: &str, delay: Duration) -> Result<(), QueueError>;

    /// Up to `max` jobs of `kind` that are due, waiting up to `wait` for the
    /// first; empty if none came. Each is leased to the caller until it is
    /// done, retried, or its lease runs out.
    async fn take(
        &self,
        kind: &'static str,
        max: u32,
        wait: Duration,
    ) -> Result<Vec<Job>, QueueError>;
}

/// A job in hand. Dropped without `done` or `retry`, it is taken again when
/// its lease runs out.
pub struct Job {
    /// What to do, as pushed: the id of the row it stands for.
    pub id: String,
    /// How many times it was handed out, this time included (1 the first).
    pub delivery: u32,
    /// The trace of whoever pushed it: the work continues it.
    pub trace: Option<TraceParent>,
    lease: Box<dyn Lease>,
}

impl Job {
    pub fn new(id: String, delivery: u32, lease: Box<dyn Lease>) -> Self {
        Self {
            id,
            delivery,
            trace: None,
            lease,
        }
    }

    /// The job with the trace it was pushed in.
    pub fn traced(self, trace: Option<TraceParent>) -> Self {
        Self { trace, ..self }
    }

    /// The work is committed: the job leaves the queue.
    pub async fn done(self) -> Result<(), QueueError> {
        self.lease.done().await
    }

    /// The work failed and may succeed later: take the job again `after`
    /// from now.
    pub async fn retry(self, after: Duration) -> Result<(), QueueError> {
        self.lease.retry(after).await
    }
}

impl fmt::Debug for Job {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Job")
            .field("id", &self.id)
            .field("delivery", &self.delivery)
            .finish_non_exhaustive()
    }
}

/// How an adapter ends a job's lease.
#[async_trait]
pub trait Lease: Send {
    async fn done(self: Box<Self>) -> Result<(), QueueError>;
    async fn retry(self: Box<Self>, after: Duration) -> Result<(), QueueError>;
}
