//! The `webhooks` consumer: one delivery per event and matching subscription.
//! Scheduling is idempotent per (subscription, event), so a redelivered batch
//! schedules nothing twice.

use std::sync::Arc;

use async_trait::async_trait;

use super::Consumer;
use crate::error::AppError;
use crate::ports::StoredEvent;
use crate::webhooks::WebhookService;

pub struct WebhookFanout {
    service: Arc<WebhookService>,
}

impl WebhookFanout {
    pub fn new(service: Arc<WebhookService>) -> Self {
        Self { service }
    }
}

#[async_trait]
impl Consumer for WebhookFanout {
    fn name(&self) -> &'static str {
        "webhooks"
    }

    async fn handle(&self, events: &[StoredEvent]) -> Result<(), AppError> {
        // Read once per batch: always current, and cheap next to the events.
        let subscriptions = self.service.store.subscriptions().await?;
        if subscriptions.is_empty() {
            return Ok(());
        }
        let now = self.service.clock.now();
        let mut scheduled = false;
        for event in events {
            let targets: Vec<_> = subscriptions
                .iter()
                .filter(|s| s.events.matches(&event.event_type))
                .map(|s| s.id)
                .collect();
            if !targets.is_empty() {
                self.service
                    .store
                    .enqueue_deliveries(event, &targets, now)
                    .await?;
                scheduled = true;
            }
        }
        if scheduled {
            self.service.wake.notify_one();
        }
        Ok(())
    }
}
