//! Live events for server-sent event streams: one tail of the bus, fanned out
//! in memory to every open stream. Not durable: a stream starts from the
//! order's history in the store and continues here.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::ports::{EventBus, StoredEvent};

/// Events buffered for slow streams; a stream that falls further behind
/// catches up from the store.
const CAPACITY: usize = 4096;

pub struct LiveEvents {
    sender: broadcast::Sender<Arc<StoredEvent>>,
}

impl Default for LiveEvents {
    fn default() -> Self {
        Self::new()
    }
}

impl LiveEvents {
    pub fn new() -> Self {
        let (sender, _) = broadcast::channel(CAPACITY);
        Self { sender }
    }

    /// Every event from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<StoredEvent>> {
        self.sender.subscribe()
    }

    /// Feeds the broadcast from the bus until `stop`.
    pub async fn run(self: Arc<Self>, bus: Arc<dyn EventBus>, stop: CancellationToken) {
        let mut tail = loop {
            match bus.tail().await {
                Ok(tail) => break tail,
                Err(err) => {
                    tracing::warn!(error = %err, "live events: cannot tail the bus; retrying");
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        };
        while !stop.is_cancelled() {
            let batch = tokio::select! {
                () = stop.cancelled() => break,
                batch = tail.next(512, Duration::from_secs(1)) => batch,
            };
            match batch {
                Ok(events) => {
                    if let Some(last) = events.last() {
                        let _ = tail.ack(last.seq).await;
                    }
                    // Nobody listening: skip the work, keep the position.
                    if self.sender.receiver_count() == 0 {
                        continue;
                    }
                    for event in events {
                        let _ = self.sender.send(Arc::new(event));
                    }
                }
                Err(err) => {
                    tracing::warn!(error = %err, "live events: reading the bus failed");
                    tokio::select! {
                        () = stop.cancelled() => break,
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        }
    }
}
