//! The embedded event bus: the outbox table is its log. A durable subscription
//! reads events after its consumer's saved position and saves the position on
//! acknowledgement; a wake-up on commit (`notify`) makes delivery prompt, a
//! short poll makes it certain. Nothing is held only in memory, so a crash
//! between a commit and its delivery loses nothing: after the restart each
//! consumer resumes from its position.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Notify;

use stampede_app::ports::{
    BusError, BusSubscription, EventBus, OutboxStore, StoreError, StoredEvent,
};

/// The in-process bus over the outbox.
pub struct OutboxBus {
    store: Arc<dyn OutboxStore>,
    wake: Arc<Notify>,
}

impl OutboxBus {
    pub fn new(store: Arc<dyn OutboxStore>) -> Self {
        Self {
            store,
            wake: Arc::new(Notify::new()),
        }
    }
}

fn unavailable(err: StoreError) -> BusError {
    BusError::unavailable_because("the outbox", err)
}

#[async_trait]
impl EventBus for OutboxBus {
    fn notify(&self) {
        self.wake.notify_waiters();
    }

    async fn subscribe(
        &self,
        consumer: &'static str,
    ) -> Result<Box<dyn BusSubscription>, BusError> {
        let acked = self.store.cursor(consumer).await.map_err(unavailable)?;
        Ok(Box::new(OutboxSubscription {
            store: self.store.clone(),
            wake: self.wake.clone(),
            consumer: Some(consumer),
            acked,
            position: acked,
        }))
    }

    async fn tail(&self) -> Result<Box<dyn BusSubscription>, BusError> {
        let end = self.store.last_seq().await.map_err(unavailable)?;
        Ok(Box::new(OutboxSubscription {
            store: self.store.clone(),
            wake: self.wake.clone(),
            consumer: None,
            acked: end,
            position: end,
        }))
    }
}

struct OutboxSubscription {
    store: Arc<dyn OutboxStore>,
    wake: Arc<Notify>,
    /// `None` for a tail, which keeps no position.
    consumer: Option<&'static str>,
    /// Last `seq` acknowledged (and saved, for a durable subscription).
    acked: i64,
    /// Last `seq` handed out.
    position: i64,
}

/// How often an idle subscription looks at the log without a wake-up.
const POLL: Duration = Duration::from_millis(200);

#[async_trait]
impl BusSubscription for OutboxSubscription {
    async fn next(&mut self, max: u32, wait: Duration) -> Result<Vec<StoredEvent>, BusError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Register for a wake-up before reading, so a commit between the
            // read and the wait is not missed.
            let woken = self.wake.notified();
            let events = self
                .store
                .events_after(self.position, max)
                .await
                .map_err(unavailable)?;
            if let Some(last) = events.last() {
                self.position = last.seq;
                return Ok(events);
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(Vec::new());
            }
            let nap = POLL.min(deadline - now);
            let _ = tokio::time::timeout(nap, woken).await;
        }
    }

    async fn ack(&mut self, seq: i64) -> Result<(), BusError> {
        if seq <= self.acked {
            return Ok(());
        }
        if let Some(consumer) = self.consumer {
            self.store
                .save_cursor(consumer, seq)
                .await
                .map_err(unavailable)?;
        }
        self.acked = seq;
        Ok(())
    }

    fn nack(&mut self) {
        self.position = self.acked;
    }

    async fn lag(&self) -> Result<u64, BusError> {
        let last = self.store.last_seq().await.map_err(unavailable)?;
        Ok(u64::try_from(last - self.acked).unwrap_or(0))
    }
}
