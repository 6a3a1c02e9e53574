//! Feeds [`LiveEvents`] from a tail of the bus.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use super::{Next, StepError, Worker, consumer};
use crate::live::LiveEvents;
use crate::ports::{BusSubscription, EventBus};

const BATCH: u32 = 512;

pub struct LiveFeed {
    live: Arc<LiveEvents>,
    bus: Arc<dyn EventBus>,
    tail: Option<Box<dyn BusSubscription>>,
}

impl LiveFeed {
    pub fn new(live: Arc<LiveEvents>, bus: Arc<dyn EventBus>) -> Self {
        Self {
            live,
            bus,
            tail: None,
        }
    }
}

#[async_trait]
impl Worker for LiveFeed {
    fn name(&self) -> String {
        "live-events".into()
    }

    /// One batch of the tail (waiting up to a second for it), passed on.
    async fn step(&mut self, stop: &CancellationToken) -> Result<Next, StepError> {
        let tail = match &mut self.tail {
            Some(tail) => tail,
            None => self.tail.insert(self.bus.tail().await?),
        };
        let events = tokio::select! {
            () = stop.cancelled() => return Ok(Next::Busy),
            batch = tail.next(BATCH, Duration::from_secs(1)) => batch?,
        };
        let Some(last) = events.last().map(|e| e.seq) else {
            return Ok(Next::Busy);
        };
        let _ = tail.ack(last).await;
        let taken = events.len();
        self.live.publish(events);
        consumer::linger(taken, BATCH, stop).await;
        Ok(Next::Busy)
    }

    /// Never idle: a step waits for events itself.
    async fn wait_for_work(&mut self) {}

    fn backoff(&self, _failures: u32) -> Duration {
        Duration::from_secs(1)
    }
}
