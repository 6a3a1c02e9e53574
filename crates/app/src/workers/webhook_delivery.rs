//! The delivery worker: POSTs due deliveries, signed with the subscription's
//! secret. Each endpoint has its own circuit breaker, so a dead endpoint is
//! skipped quickly (its deliveries postponed, attempts unspent) instead of
//! tying up the worker; a failed attempt is rescheduled with full-jitter
//! backoff, and the last one leaves a dead letter visible through the API.

use crate::failure::Chain;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use metrics::counter;
use serde_json::json;
use stampede_domain::ids::SubscriptionId;
use stampede_flow::breaker::{CircuitBreaker, Outcome};
use stampede_flow::bulkhead::Bulkhead;
use stampede_flow::retry::Rng;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::{Next, StepError, Worker};
use crate::auth::signature;
use crate::error::AppError;
use crate::ports::{AttemptResult, DueDelivery, WebhookSender};
use crate::webhooks::{WebhookService, WebhookSettings};

/// POSTs in flight to one endpoint at once.
const PER_ENDPOINT: u32 = 4;

#[derive(Clone)]
struct Endpoint {
    breaker: CircuitBreaker,
    bulkhead: Bulkhead,
}

pub struct DeliveryWorker {
    service: Arc<WebhookService>,
    sender: Arc<dyn WebhookSender>,
    settings: WebhookSettings,
    /// Per endpoint: a breaker, and a concurrency budget so one slow
    /// endpoint cannot take every delivery slot.
    endpoints: Mutex<HashMap<SubscriptionId, Endpoint>>,
    rng: Mutex<Rng>,
}

/// The JSON every subscriber receives.
pub fn envelope(due: &DueDelivery) -> serde_json::Value {
    json!({
        "id": due.event.id.to_string(),
        "type": due.event.event_type,
        "created_at": due.event.created_at.to_rfc3339(),
        "data": due.event.payload,
    })
}

impl DeliveryWorker {
    pub fn new(
        service: Arc<WebhookService>,
        sender: Arc<dyn WebhookSender>,
        settings: WebhookSettings,
    ) -> Self {
        Self {
            service,
            sender,
            settings,
            endpoints: Mutex::new(HashMap::new()),
            rng: Mutex::new(Rng::new()),
        }
    }

    fn endpoint(&self, id: SubscriptionId) -> Endpoint {
        let mut endpoints = self.endpoints.lock().unwrap_or_else(|p| p.into_inner());
        endpoints
            .entry(id)
            .or_insert_with(|| Endpoint {
                breaker: CircuitBreaker::new(format!("webhook:{id}"), self.settings.breaker),
                bulkhead: Bulkhead::new(format!("webhook:{id}"), PER_ENDPOINT, Duration::ZERO),
            })
            .clone()
    }

    fn backoff(&self, attempts: u32) -> Duration {
        let mut rng = self.rng.lock().unwrap_or_else(|p| p.into_inner());
        self.settings
            .backoff
            .backoff(attempts.saturating_sub(1), &mut rng)
    }

    /// Attempts the deliveries due now, as many as run at once; returns how
    /// many (the caller comes back at once while there were some). They are
    /// leased for two POST timeouts, so workers on other nodes leave them
    /// alone meanwhile, and a worker that dies holds them no longer.
    pub async fn deliver_due(self: &Arc<Self>) -> Result<usize, AppError> {
        let now = self.service.clock.now();
        let batch = u32::try_from(self.settings.concurrency.max(1)).unwrap_or(u32::MAX);
        let lease = i64::try_from((self.settings.timeout * 2).as_millis()).unwrap_or(i64::MAX);
        let due = self
            .service
            .store
            .claim_due_deliveries(now, batch, now.plus_millis(lease))
            .await?;
        let count = due.len();
        let slots = Arc::new(Semaphore::new(self.settings.concurrency.max(1)));
        let mut attempts = JoinSet::new();
        for delivery in due {
            let worker = self.clone();
            let slots = slots.clone();
            // Each attempt continues the trace of the event it carries.
            let span = stampede_trace::span!(
                "webhook_delivery",
                delivery_id = %delivery.delivery.id,
                event_type = %delivery.event.event_type,
                attempt = delivery.delivery.attempts + 1,
            );
            let parent = delivery.event.trace;
            attempts.spawn(stampede_trace::in_span(span, parent, async move {
                let _slot = slots.acquire_owned().await;
                worker.attempt(delivery).await
            }));
        }
        while let Some(joined) = attempts.join_next().await {
            match joined {
                Ok(Ok(())) => {}
                Ok(Err(err)) => {
                    tracing::warn!(error = %Chain(&err), "recording a delivery attempt failed")
                }
                Err(err) => tracing::error!(error = %Chain(&err), "delivery task failed"),
            }
        }
        Ok(count)
    }

    async fn attempt(&self, due: DueDelivery) -> Result<(), AppError> {
        let endpoint = self.endpoint(due.subscription.id);
        let store = &self.service.store;
        let clock = &self.service.clock;
        // This endpoint already has its share of slots: try again shortly.
        let Ok(_slot) = endpoint.bulkhead.try_acquire() else {
            let retry_at = clock.now().plus_millis(100);
            store
                .record_attempt(
                    due.delivery.id,
                    &AttemptResult::Postponed { retry_at },
                    clock.now(),
                )
                .await?;
            return Ok(());
        };
        let permit = match endpoint.breaker.try_acquire() {
            Ok(permit) => permit,
            Err(rejected) => {
                counter!("stampede_webhook_attempts_total", "result" => "postponed").increment(1);
                let retry_at = clock
                    .now()
                    .plus_millis(rejected.retry_after.as_millis() as i64);
                store
                    .record_attempt(
                        due.delivery.id,
                        &AttemptResult::Postponed { retry_at },
                        clock.now(),
                    )
                    .await?;
                return Ok(());
            }
        };
        let secret = self.service.signing_secret(&due.subscription)?;
        let body = serde_json::to_vec(&envelope(&due))
            .map_err(|e| AppError::internal_because("encoding a webhook body", e))?;
        let mut headers = vec![
            ("content-type", "application/json".to_owned()),
            ("stampede-event-id", due.event.id.to_string()),
            ("stampede-event-type", due.event.event_type.clone()),
            ("stampede-delivery-id", due.delivery.id.to_string()),
            (
                signature::HEADER,
                signature::sign(secret.expose().as_bytes(), &body, clock.now()),
            ),
        ];
        // The receiver may continue the trace too.
        if let Some(trace) = stampede_trace::current() {
            headers.push(("traceparent", trace.to_string()));
        }
        let sent = self
            .sender
            .post(
                due.subscription.url.as_str(),
                &headers,
                body,
                self.settings.timeout,
            )
            .instrument(tracing::debug_span!("webhook_post"))
            .await;
        let attempts = due.delivery.attempts + 1;
        let (ok, error, status) = match sent {
            Ok(status) if (200..300).contains(&status) => (true, String::new(), Some(status)),
            Ok(status) => (false, format!("answered {status}"), Some(status)),
            Err(err) => (false, err.0, None),
        };
        permit.record(if ok {
            Outcome::Success
        } else {
            Outcome::Failure
        });
        let result = if ok {
            AttemptResult::Delivered {
                status: status.unwrap_or(200),
            }
        } else if attempts >= self.settings.max_attempts {
            tracing::warn!(delivery_id = %due.delivery.id, url = %due.subscription.url.redacted(), error, "webhook delivery dead after its last attempt");
            AttemptResult::Dead { error, status }
        } else {
            let retry_at = clock
                .now()
                .plus_millis(self.backoff(attempts).as_millis() as i64);
            AttemptResult::Failed {
                error,
                status,
                retry_at,
            }
        };
        let outcome = match result {
            AttemptResult::Delivered { .. } => "delivered",
            AttemptResult::Failed { .. } => "failed",
            AttemptResult::Dead { .. } => "dead",
            AttemptResult::Postponed { .. } => "postponed",
        };
        counter!("stampede_webhook_attempts_total", "result" => outcome).increment(1);
        tracing::info!(outcome, status, attempts, "webhook attempted");
        store
            .record_attempt(due.delivery.id, &result, clock.now())
            .await?;
        Ok(())
    }
}

/// Delivers what is due, waking on new deliveries or every poll.
#[async_trait]
impl Worker for Arc<DeliveryWorker> {
    fn name(&self) -> String {
        "webhook-delivery".into()
    }

    async fn step(&mut self, _stop: &CancellationToken) -> Result<Next, StepError> {
        let delivered = self.deliver_due().await?;
        Ok(if delivered > 0 {
            Next::Busy
        } else {
            Next::Idle
        })
    }

    async fn wait_for_work(&mut self) {
        // The fan-out wakes with `notify_one`, whose permit waits here if it
        // came during the step: no wake-up is lost.
        tokio::select! {
            () = self.service.wake.notified() => {}
            () = tokio::time::sleep(self.settings.poll) => {}
        }
    }

    fn backoff(&self, _failures: u32) -> Duration {
        self.settings.poll * 4
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use stampede_domain::ids::{DeliveryId, EventId};
    use stampede_domain::net::AllowList;
    use stampede_domain::time::Timestamp;
    use stampede_domain::webhook::{
        Delivery, DeliveryStatus, EventFilter, StoredSecret, Subscription, WebhookUrl,
    };

    use super::*;
    use crate::ports::{SendError, StoreError, StoredEvent, SystemClock, WebhookStore};
    use crate::webhooks::SecretSealer;

    /// A store that only records attempts.
    #[derive(Default)]
    struct Attempts(Mutex<Vec<AttemptResult>>);

    #[async_trait]
    impl WebhookStore for Attempts {
        async fn insert_subscription(&self, _: &Subscription) -> Result<(), StoreError> {
            Ok(())
        }
        async fn subscription(
            &self,
            _: SubscriptionId,
        ) -> Result<Option<Subscription>, StoreError> {
            Ok(None)
        }
        async fn subscriptions(&self) -> Result<Vec<Subscription>, StoreError> {
            Ok(Vec::new())
        }
        async fn replace_subscription_secret(
            &self,
            _: SubscriptionId,
            _: &StoredSecret,
            _: &StoredSecret,
        ) -> Result<bool, StoreError> {
            Ok(false)
        }
        async fn delete_subscription(&self, _: SubscriptionId) -> Result<bool, StoreError> {
            Ok(false)
        }
        async fn enqueue_deliveries(
            &self,
            _: &StoredEvent,
            _: &[SubscriptionId],
            _: Timestamp,
        ) -> Result<(), StoreError> {
            Ok(())
        }
        async fn claim_due_deliveries(
            &self,
            _: Timestamp,
            _: u32,
            _: Timestamp,
        ) -> Result<Vec<DueDelivery>, StoreError> {
            Ok(Vec::new())
        }
        async fn record_attempt(
            &self,
            _: DeliveryId,
            result: &AttemptResult,
            _: Timestamp,
        ) -> Result<(), StoreError> {
            self.0.lock().unwrap().push(result.clone());
            Ok(())
        }
        async fn deliveries(
            &self,
            _: SubscriptionId,
            _: Option<DeliveryStatus>,
            _: Option<DeliveryId>,
            _: u32,
        ) -> Result<Vec<Delivery>, StoreError> {
            Ok(Vec::new())
        }
    }

    /// A subscriber that always answers 503.
    struct Unavailable;

    #[async_trait]
    impl WebhookSender for Unavailable {
        async fn post(
            &self,
            _: &str,
            _: &[(&'static str, String)],
            _: Vec<u8>,
            _: Duration,
        ) -> Result<u16, SendError> {
            Ok(503)
        }
    }

    /// Log lines, captured.
    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl Write for Lines {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn due(url: &str) -> DueDelivery {
        let now = Timestamp::now();
        let subscription = Subscription {
            id: SubscriptionId::generate(),
            url: WebhookUrl::parse(url).unwrap(),
            events: EventFilter::parse(&["*".into()]).unwrap(),
            // Clear text, as rows from before sealing: opened as it is.
            secret: StoredSecret::parse("a-long-enough-secret").unwrap(),
            created_at: now,
        };
        let event = StoredEvent {
            seq: 1,
            id: EventId::generate(),
            event_type: "sale.created".into(),
            aggregate_id: "sale".into(),
            payload: json!({}),
            created_at: now,
            trace: None,
        };
        let delivery = Delivery {
            id: DeliveryId::generate(),
            subscription_id: subscription.id,
            event_id: event.id,
            event_type: event.event_type.clone(),
            status: DeliveryStatus::Pending,
            attempts: 0,
            next_attempt_at: now,
            last_error: None,
            last_status: None,
            created_at: now,
            updated_at: now,
        };
        DueDelivery::checked(delivery, subscription, Some(event)).unwrap()
    }

    #[tokio::test]
    async fn a_dead_letter_is_logged_without_the_urls_credentials() {
        let store = Arc::new(Attempts::default());
        let service = Arc::new(WebhookService::new(
            store.clone(),
            Arc::new(SystemClock),
            SecretSealer::new(&[7; 32]),
            AllowList::default(),
        ));
        let settings = WebhookSettings {
            max_attempts: 1,
            ..WebhookSettings::default()
        };
        let worker = DeliveryWorker::new(service, Arc::new(Unavailable), settings);
        let lines = Lines::default();
        let writer = lines.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        let _logging = tracing::subscriber::set_default(subscriber);

        let url = "https://hook-user:hunter2@hooks.example.com/stampede";
        worker.attempt(due(url)).await.unwrap();

        assert!(matches!(
            store.0.lock().unwrap()[..],
            [AttemptResult::Dead { .. }]
        ));
        let logged = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        assert!(logged.contains("webhook delivery dead"), "{logged}");
        assert!(
            logged.contains("https://hooks.example.com/stampede"),
            "{logged}"
        );
        assert!(!logged.contains("hunter2"), "{logged}");
        assert!(!logged.contains("hook-user"), "{logged}");
    }
}
