//! The event bus: how committed events reach the workers that act on them
//! (payments, webhook deliveries, live streams). At least once, in order per
//! subscription; consumers deduplicate by event id.
//!
//! In embedded mode the outbox table itself is the bus's log: each durable
//! consumer reads it from its own position (`OutboxStore::cursor`), so an
//! event committed just before a crash is delivered after the restart, and
//! nothing needs marking "published". In cluster mode a relay publishes the
//! outbox to JetStream and consumers are durable JetStream consumers.

use std::time::Duration;

use async_trait::async_trait;

use super::store::StoredEvent;
use crate::failure::{Cause, context_constructors};

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// The bus or its log cannot be reached. Retryable.
    #[error("event bus unavailable: {context}")]
    Unavailable {
        context: String,
        #[source]
        cause: Option<Cause>,
    },
}

context_constructors!(BusError {
    Unavailable => unavailable, unavailable_because;
});

impl BusError {
    /// Always: the bus's only failure is not being there.
    pub fn is_retryable(&self) -> bool {
        true
    }
}

#[async_trait]
pub trait EventBus: Send + Sync + 'static {
    /// Says that events were just committed, so waiting subscribers look now
    /// instead of at their next poll.
    fn notify(&self);

    /// A durable subscription named `consumer`, starting after the last event
    /// that consumer acknowledged.
    async fn subscribe(&self, consumer: &'static str)
    -> Result<Box<dyn BusSubscription>, BusError>;

    /// A subscription that starts at the end of the log and keeps no position:
    /// for live views that only care about what happens from now on.
    async fn tail(&self) -> Result<Box<dyn BusSubscription>, BusError>;
}

#[async_trait]
pub trait BusSubscription: Send {
    /// The next events (at most `max`), waiting up to `wait` for at least one;
    /// empty if none came.
    async fn next(&mut self, max: u32, wait: Duration) -> Result<Vec<StoredEvent>, BusError>;

    /// Everything up to and including `seq` is handled.
    async fn ack(&mut self, seq: i64) -> Result<(), BusError>;

    /// Handling failed: deliver again from the last acknowledged event.
    fn nack(&mut self);

    /// Events written but not yet acknowledged by this subscription.
    async fn lag(&self) -> Result<u64, BusError>;
}
