//! Running a consumer: take a batch, handle it, acknowledge it; on failure,
//! wait with backoff and take the same batch again. Handlers must be
//! idempotent per event id, since a crash between handling and acknowledging
//! delivers a batch twice.

use crate::failure::Chain;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use metrics::{Counter, Gauge, counter, gauge};
use tokio_util::sync::CancellationToken;

use super::{Next, StepError, Worker};
use crate::error::AppError;
use crate::ports::{BusSubscription, EventBus, StoredEvent};

#[async_trait]
pub trait Consumer: Send + Sync + 'static {
    /// The durable subscription's name; never change it once deployed.
    fn name(&self) -> &'static str;

    /// Handles a batch, all or nothing as far as acknowledgement goes.
    async fn handle(&self, events: &[StoredEvent]) -> Result<(), AppError>;
}

const BATCH: u32 = 256;
const WAIT: Duration = Duration::from_secs(1);

/// After a batch that was not full, how long a reader of the bus waits
/// before taking the next: wake-ups come with every group commit (hundreds
/// a second under a crowd), and each would otherwise cost a read of the log
/// and an acknowledgement for a handful of events. Under load the batches
/// fill instead; a quiet node delivers within this much of a commit.
pub(super) const LINGER: Duration = Duration::from_millis(20);

/// Waits [`LINGER`] after a batch of `taken` of at most `max` events,
/// unless told to stop.
pub(super) async fn linger(taken: usize, max: u32, stop: &CancellationToken) {
    if taken < max as usize {
        tokio::select! {
            () = stop.cancelled() => {}
            () = tokio::time::sleep(LINGER) => {}
        }
    }
}

/// Runs one [`Consumer`] on a bus: subscribes (again after a failure to),
/// then takes, handles and acknowledges batches. The worker is named
/// `consumer-<name>`.
pub struct ConsumerWorker {
    bus: Arc<dyn EventBus>,
    consumer: Arc<dyn Consumer>,
    subscription: Option<Box<dyn BusSubscription>>,
    handled: Counter,
    failures: Counter,
    lag: Gauge,
}

impl ConsumerWorker {
    pub fn new(bus: Arc<dyn EventBus>, consumer: Arc<dyn Consumer>) -> Self {
        let name = consumer.name();
        Self {
            handled: counter!("stampede_consumer_events_total", "consumer" => name),
            failures: counter!("stampede_consumer_failures_total", "consumer" => name),
            lag: gauge!("stampede_consumer_lag", "consumer" => name),
            bus,
            consumer,
            subscription: None,
        }
    }
}

#[async_trait]
impl Worker for ConsumerWorker {
    fn name(&self) -> String {
        format!("consumer-{}", self.consumer.name())
    }

    /// One batch; an empty one after waiting up to a second. A failed one is
    /// taken again after the backoff.
    async fn step(&mut self, stop: &CancellationToken) -> Result<Next, StepError> {
        let name = self.consumer.name();
        let subscription = match &mut self.subscription {
            Some(subscription) => subscription,
            None => self.subscription.insert(self.bus.subscribe(name).await?),
        };
        let batch = tokio::select! {
            () = stop.cancelled() => return Ok(Next::Busy),
            batch = subscription.next(BATCH, WAIT) => batch,
        };
        let events = batch?;
        if let Ok(behind) = subscription.lag().await {
            self.lag.set(behind as f64);
        }
        let Some(last) = events.last().map(|e| e.seq) else {
            return Ok(Next::Busy);
        };
        // The batch's own span (events of many traces share it), linked to
        // each event's trace when exported; its line carries its ids.
        let span = stampede_trace::span!(
            "consume",
            consumer = name,
            events = events.len(),
            first_seq = events.first().map_or(0, |e| e.seq),
            last_seq = last,
        );
        stampede_trace::link_all(&span, events.iter().filter_map(|e| e.trace));
        let handled = stampede_trace::in_span(span, None, async {
            let handled = self.consumer.handle(&events).await;
            if handled.is_ok() {
                tracing::info!("events handled");
            }
            handled
        })
        .await;
        if let Err(err) = handled {
            self.failures.increment(1);
            subscription.nack();
            return Err(err.into());
        }
        match subscription.ack(last).await {
            Ok(()) => self.handled.increment(events.len() as u64),
            Err(err) => {
                // Handled but not recorded: the batch comes again, and
                // handlers are idempotent.
                tracing::warn!(consumer = name, error = %Chain(&err), "acknowledging failed");
                subscription.nack();
            }
        }
        linger(events.len(), BATCH, stop).await;
        Ok(Next::Busy)
    }

    /// Never idle: a step waits for events itself.
    async fn wait_for_work(&mut self) {}
}
