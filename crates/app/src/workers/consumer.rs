//! Running a consumer: take a batch, handle it, acknowledge it; on failure,
//! wait with backoff and take the same batch again. Handlers must be
//! idempotent per event id, since a crash between handling and acknowledging
//! delivers a batch twice.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use metrics::{counter, gauge};
use tokio_util::sync::CancellationToken;

use crate::error::AppError;
use crate::ports::{EventBus, StoredEvent};

#[async_trait]
pub trait Consumer: Send + Sync + 'static {
    /// The durable subscription's name; never change it once deployed.
    fn name(&self) -> &'static str;

    /// Handles a batch, all or nothing as far as acknowledgement goes.
    async fn handle(&self, events: &[StoredEvent]) -> Result<(), AppError>;
}

const BATCH: u32 = 256;
const WAIT: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Runs `consumer` on `bus` until `stop` is cancelled; finishes the batch in
/// hand before returning.
pub async fn run_consumer(
    bus: Arc<dyn EventBus>,
    consumer: Arc<dyn Consumer>,
    stop: CancellationToken,
) {
    let name = consumer.name();
    let handled = counter!("stampede_consumer_events_total", "consumer" => name);
    let failures = counter!("stampede_consumer_failures_total", "consumer" => name);
    let lag = gauge!("stampede_consumer_lag", "consumer" => name);
    let mut backoff = Duration::from_millis(100);
    let mut subscription = loop {
        match bus.subscribe(name).await {
            Ok(subscription) => break subscription,
            Err(err) => {
                tracing::warn!(consumer = name, error = %err, "cannot subscribe; retrying");
                if pause(&stop, &mut backoff).await {
                    return;
                }
            }
        }
    };
    tracing::debug!(consumer = name, "consumer running");
    while !stop.is_cancelled() {
        let batch = tokio::select! {
            () = stop.cancelled() => break,
            batch = subscription.next(BATCH, WAIT) => batch,
        };
        let events = match batch {
            Ok(events) => events,
            Err(err) => {
                tracing::warn!(consumer = name, error = %err, "reading events failed");
                if pause(&stop, &mut backoff).await {
                    break;
                }
                continue;
            }
        };
        if let Ok(behind) = subscription.lag().await {
            lag.set(behind as f64);
        }
        let Some(last) = events.last().map(|e| e.seq) else {
            continue;
        };
        match consumer.handle(&events).await {
            Ok(()) => match subscription.ack(last).await {
                Ok(()) => {
                    handled.increment(events.len() as u64);
                    backoff = Duration::from_millis(100);
                }
                Err(err) => {
                    // Handled but not recorded: the batch comes again, and
                    // handlers are idempotent.
                    tracing::warn!(consumer = name, error = %err, "acknowledging failed");
                    subscription.nack();
                }
            },
            Err(err) => {
                failures.increment(1);
                tracing::warn!(consumer = name, error = %err, "handling events failed; retrying");
                subscription.nack();
                if pause(&stop, &mut backoff).await {
                    break;
                }
            }
        }
    }
    tracing::debug!(consumer = name, "consumer stopped");
}

/// Sleeps for `backoff` (doubling it, up to a cap) unless stopped first;
/// `true` if stopped.
async fn pause(stop: &CancellationToken, backoff: &mut Duration) -> bool {
    let nap = *backoff;
    *backoff = (*backoff * 2).min(MAX_BACKOFF);
    tokio::select! {
        () = stop.cancelled() => true,
        () = tokio::time::sleep(nap) => false,
    }
}
