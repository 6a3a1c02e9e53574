//! The simulated payment provider. It behaves like a real one, with knobs:
//! each charge takes a random latency, fails with `error_rate` (retryable),
//! and is otherwise accepted — once per payment id, like a provider's
//! idempotency key — and answered `confirm_delay` later on Stampede's payment
//! webhook, signed, approved or (with `decline_rate`) declined. Webhook calls
//! that fail are retried a few times, as providers do (`flow::retry`).

use stampede_app::failure::Chain;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::json;
use stampede_app::auth::signature;
use stampede_app::ports::{ChargeError, ChargeRequest, Clock, PaymentProvider};
use stampede_app::workers::TaskSpawner;
use stampede_domain::ids::PaymentId;
use stampede_flow::retry::{Retry, RetryPolicy, retry};

/// The knobs of the simulation (the `payment_sim_*` settings; the webhook's
/// address and secret are set at start).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimulatedSettings {
    /// Each charge call takes a latency drawn uniformly from this range.
    #[serde(
        rename = "latency_min_ms",
        with = "stampede_flow::serde_duration::millis"
    )]
    pub latency_min: Duration,
    #[serde(
        rename = "latency_max_ms",
        with = "stampede_flow::serde_duration::millis"
    )]
    pub latency_max: Duration,
    /// Share of accepted charges answered `declined` (0.0–1.0).
    pub decline_rate: f64,
    /// Share of charge calls that fail with a retryable error (0.0–1.0).
    pub error_rate: f64,
    /// How long after accepting a charge the webhook is called.
    #[serde(
        rename = "confirm_delay_ms",
        with = "stampede_flow::serde_duration::millis"
    )]
    pub confirm_delay: Duration,
    /// Stampede's payment webhook.
    #[serde(skip)]
    pub webhook_url: String,
    #[serde(skip)]
    pub webhook_secret: Vec<u8>,
}

impl Default for SimulatedSettings {
    /// Approves every payment and confirms well within a second (docs/api.md §3.5).
    fn default() -> Self {
        Self {
            latency_min: Duration::from_millis(5),
            latency_max: Duration::from_millis(20),
            decline_rate: 0.0,
            error_rate: 0.0,
            confirm_delay: Duration::from_millis(100),
            webhook_url: "http://127.0.0.1:8080/api/v1/payments/webhook".into(),
            webhook_secret: Vec::new(),
        }
    }
}

pub struct SimulatedProvider {
    settings: SimulatedSettings,
    client: reqwest::Client,
    clock: Arc<dyn Clock>,
    /// Charges taken and not yet confirmed, by payment id: a repeat returns
    /// the same reference and starts no second confirmation.
    taken: Arc<Mutex<HashMap<PaymentId, String>>>,
    rng: Mutex<fastrand::Rng>,
    /// Confirmations run as tracked tasks.
    tasks: TaskSpawner,
}

impl SimulatedProvider {
    pub fn new(
        settings: SimulatedSettings,
        clock: Arc<dyn Clock>,
        tasks: TaskSpawner,
    ) -> reqwest::Result<Self> {
        Ok(Self {
            tasks,
            client: crate::client("stampede-simulated-provider")?,
            settings,
            clock,
            taken: Arc::default(),
            rng: Mutex::new(fastrand::Rng::new()),
        })
    }

    fn roll(&self) -> f64 {
        self.rng.lock().unwrap_or_else(|p| p.into_inner()).f64()
    }

    fn latency(&self) -> Duration {
        let (min, max) = (self.settings.latency_min, self.settings.latency_max);
        if max <= min {
            return min;
        }
        let span = (max - min).as_micros() as u64;
        let pick = self
            .rng
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .u64(0..=span);
        min + Duration::from_micros(pick)
    }

    /// Calls the webhook with the answer, retrying a failed call up to five
    /// times (full jitter, as providers do); forgets the charge once answered.
    /// A tracked task: shutdown ends it (a real provider would call again).
    fn confirm_later(&self, payment_id: PaymentId, provider_ref: String, approved: bool) {
        let client = self.client.clone();
        let settings = self.settings.clone();
        let clock = self.clock.clone();
        let taken = self.taken.clone();
        let body = if approved {
            json!({"payment_id": payment_id.to_string(), "status": "approved", "provider_ref": provider_ref})
        } else {
            json!({"payment_id": payment_id.to_string(), "status": "declined", "provider_ref": provider_ref,
                   "reason": "card declined (simulated)"})
        };
        let body = body.to_string().into_bytes();
        let call = move || {
            let signed = signature::sign(&settings.webhook_secret, &body, clock.now());
            client
                .post(&settings.webhook_url)
                .header("content-type", "application/json")
                .header(signature::HEADER, signed)
                .timeout(Duration::from_secs(5))
                .body(body.clone())
                .send()
        };
        let confirm_delay = self.settings.confirm_delay;
        self.tasks.spawn(move |stop| async move {
            let answered = async {
                tokio::time::sleep(confirm_delay).await;
                retry(CONFIRM_RETRY, None, classify, |_| async {
                    match call().await {
                        Ok(response) if response.status().is_success() => Ok(()),
                        Ok(response) => Err(WebhookFailure::Status(response.status())),
                        Err(err) => Err(WebhookFailure::Unreachable(err)),
                    }
                })
                .await
            };
            let result = tokio::select! {
                () = stop.cancelled() => return,
                result = answered => result,
            };
            match result {
                Ok(()) => {}
                Err(WebhookFailure::Status(status)) if status.is_client_error() => {
                    tracing::warn!(payment_id = %payment_id, status = status.as_u16(), "simulated provider: webhook refused");
                }
                Err(err) => {
                    tracing::warn!(payment_id = %payment_id, error = %Chain(&err), "simulated provider: gave up calling the webhook");
                    return;
                }
            }
            taken
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&payment_id);
        });
    }
}

/// Six calls in all, the delays' ceilings from 400 ms doubling.
const CONFIRM_RETRY: RetryPolicy = RetryPolicy {
    max_attempts: 6,
    base: Duration::from_millis(400),
    cap: Duration::from_secs(10),
};

/// Why a webhook call did not land.
#[derive(Debug, thiserror::Error)]
enum WebhookFailure {
    #[error("answered {0}")]
    Status(reqwest::StatusCode),
    #[error("unreachable")]
    Unreachable(#[source] reqwest::Error),
}

/// A refusal (4xx) will not change; anything else may.
fn classify(failure: &WebhookFailure) -> Retry {
    match failure {
        WebhookFailure::Status(status) if status.is_client_error() => Retry::Final,
        _ => Retry::Retryable,
    }
}

#[async_trait]
impl PaymentProvider for SimulatedProvider {
    async fn charge(&self, request: &ChargeRequest) -> Result<String, ChargeError> {
        tokio::time::sleep(self.latency()).await;
        if self.roll() < self.settings.error_rate {
            return Err(ChargeError::Retryable("simulated provider error".into()));
        }
        let provider_ref = {
            let mut taken = self.taken.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(existing) = taken.get(&request.payment_id) {
                return Ok(existing.clone());
            }
            let provider_ref = format!("sim_{}", request.payment_id.as_uuid().simple());
            taken.insert(request.payment_id, provider_ref.clone());
            provider_ref
        };
        let approved = self.roll() >= self.settings.decline_rate;
        self.confirm_later(request.payment_id, provider_ref.clone(), approved);
        Ok(provider_ref)
    }
}
