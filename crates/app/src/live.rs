//! Live events for server-sent event streams: one tail of the bus, fanned out
//! in memory to every open stream. Not durable: a stream starts from the
//! order's history in the store and continues here. The worker
//! [`LiveFeed`](crate::workers::LiveFeed) feeds it.

use std::sync::Arc;

use crate::ports::StoredEvent;
use tokio::sync::broadcast;

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

    /// Passes events on to every open stream; skips the work when none is
    /// open.
    pub(crate) fn publish(&self, events: Vec<StoredEvent>) {
        if self.sender.receiver_count() == 0 {
            return;
        }
        for event in events {
            let _ = self.sender.send(Arc::new(event));
        }
    }
}
