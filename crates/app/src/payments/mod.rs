//! Paying orders (docs/design.md §6.2). `pay` records an attempt with
//! its `payment.requested` event and answers at once; the `payments` consumer
//! sends the charge to the provider through a timeout, retries with full
//! jitter for retryable faults, and a circuit breaker; the provider answers on
//! the signed payment webhook, which settles the attempt exactly once. Pay and
//! cancel exclude each other by compare-and-set on the order (I7).

use crate::failure::Chain;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use stampede_domain::ids::{OrderId, PaymentId};
use stampede_domain::order::{Order, PayDecision};
use stampede_domain::payment::{Payment, PaymentResult};
use stampede_flow::breaker::{BreakerConfig, CircuitBreaker, State};
use stampede_flow::bulkhead::Bulkhead;
use stampede_flow::retry::RetryPolicy;

use crate::auth::Caller;
use crate::auth::signature;
use crate::error::AppError;
use crate::ports::{Clock, EventBus, PayOutcome, SettleOutcome, Store};

/// How payments reach the provider and how its answers are checked (the
/// `payment_*` settings; the retries, the bulkhead and the webhook's secret
/// and tolerance are not settings).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PaymentSettings {
    /// Longest wait for one charge call.
    #[serde(rename = "timeout_ms", with = "stampede_flow::serde_duration::millis")]
    pub timeout: Duration,
    /// Retries of retryable provider faults.
    #[serde(skip)]
    pub retry: RetryPolicy,
    pub breaker: BreakerConfig,
    /// Charges in flight at once (a bulkhead: a slow provider holds at most
    /// this many).
    #[serde(skip)]
    pub concurrency: usize,
    /// Secret of the provider's webhook signatures.
    #[serde(skip)]
    pub webhook_secret: Vec<u8>,
    /// Accepted clock difference of a webhook's signed timestamp.
    #[serde(skip)]
    pub webhook_tolerance_secs: i64,
    /// How often workers queue again the payments still `requested`...
    #[serde(
        rename = "sweep_interval_ms",
        with = "stampede_flow::serde_duration::millis"
    )]
    pub sweep_interval: Duration,
    /// ...that were requested at least this long ago (younger ones are on
    /// their way through the job queue).
    #[serde(
        rename = "sweep_after_ms",
        with = "stampede_flow::serde_duration::millis"
    )]
    pub sweep_after: Duration,
}

impl Default for PaymentSettings {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(2),
            retry: RetryPolicy {
                max_attempts: 4,
                base: Duration::from_millis(100),
                cap: Duration::from_secs(2),
            },
            breaker: BreakerConfig::default(),
            concurrency: 64,
            webhook_secret: Vec::new(),
            webhook_tolerance_secs: 300,
            sweep_interval: Duration::from_secs(30),
            sweep_after: Duration::from_secs(10),
        }
    }
}

/// The provider's answer, as its webhook sends it.
#[derive(Debug, Deserialize)]
pub struct ProviderAnswer {
    pub payment_id: String,
    /// `approved` or `declined`.
    pub status: String,
    #[serde(default)]
    pub provider_ref: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
}

/// What a webhook call did, for the answer and the logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confirmation {
    Paid,
    RefundRequired,
    NotPaid,
    /// A repeat of an answer already applied.
    AlreadySettled,
}

/// Fields are the crate's: the payment worker (`workers`) sends what this
/// records.
pub struct PaymentService {
    pub(crate) store: Arc<dyn Store>,
    bus: Arc<dyn EventBus>,
    pub(crate) breaker: CircuitBreaker,
    /// The provider's concurrency budget: a slow provider holds at most this
    /// many of the worker's calls, and nothing else waits on it.
    pub(crate) bulkhead: Bulkhead,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) settings: PaymentSettings,
}

impl PaymentService {
    pub fn new(
        store: Arc<dyn Store>,
        bus: Arc<dyn EventBus>,
        clock: Arc<dyn Clock>,
        settings: PaymentSettings,
    ) -> Self {
        Self {
            breaker: CircuitBreaker::new("payment_provider", settings.breaker),
            bulkhead: Bulkhead::new(
                "payment_provider",
                u32::try_from(settings.concurrency).unwrap_or(u32::MAX),
                Duration::from_secs(60),
            ),
            store,
            bus,
            clock,
            settings,
        }
    }

    /// The breaker in front of the provider, shared with the worker.
    pub fn breaker(&self) -> &CircuitBreaker {
        &self.breaker
    }

    pub fn settings(&self) -> &PaymentSettings {
        &self.settings
    }

    /// Starts paying an order (its owner, or an admin). Fails fast with 503
    /// while the provider's breaker is open: the attempt would only fail.
    #[tracing::instrument(skip_all, fields(order_id = %id))]
    pub async fn pay(&self, caller: &Caller, id: OrderId) -> Result<Order, AppError> {
        let order = match self.store.order(id).await? {
            Some(order) if caller.may_see(&order) => order,
            _ => return Err(AppError::NotFound),
        };
        refuse_unless_payable(&order)?;
        if self.breaker.state() == State::Open {
            return Err(AppError::unavailable(
                "the payment provider is failing; try again shortly",
            ));
        }
        match self
            .store
            .request_payment(&Payment::request(&order, self.clock.now()))
            .await?
        {
            PayOutcome::Requested(_) => {
                self.bus.notify();
                Ok(order)
            }
            PayOutcome::InFlight(_) => Ok(order),
            PayOutcome::NotPayable(order) => {
                refuse_unless_payable(&order)?;
                Err(AppError::InvalidState("the order cannot be paid".into()))
            }
            PayOutcome::NotFound => Err(AppError::NotFound),
        }
    }

    /// The order's payment attempts, oldest first.
    pub async fn payments_of(&self, id: OrderId) -> Result<Vec<Payment>, AppError> {
        Ok(self.store.payments_of(id).await?)
    }

    /// Applies a provider webhook: checks its signature (and the age of its
    /// signed timestamp), then settles the attempt once.
    #[tracing::instrument(skip_all)]
    pub async fn confirm(
        &self,
        body: &[u8],
        signature_header: Option<&str>,
    ) -> Result<Confirmation, AppError> {
        let header = signature_header.ok_or(AppError::Unauthorized("missing webhook signature"))?;
        signature::verify(
            &self.settings.webhook_secret,
            header,
            body,
            self.clock.now(),
            self.settings.webhook_tolerance_secs,
        )
        .map_err(|err| {
            tracing::warn!(error = %Chain(&err), "payment webhook refused");
            AppError::Unauthorized("invalid webhook signature")
        })?;
        let answer: ProviderAnswer = serde_json::from_slice(body).map_err(|err| {
            AppError::Validation(stampede_domain::ValidationError::new(
                "body",
                err.to_string(),
            ))
        })?;
        let id = PaymentId::parse(&answer.payment_id).ok_or(AppError::NotFound)?;
        let result = match answer.status.as_str() {
            "approved" => PaymentResult::Approved {
                provider_ref: answer.provider_ref.unwrap_or_default(),
            },
            "declined" => PaymentResult::Declined {
                reason: answer
                    .reason
                    .unwrap_or_else(|| "declined by the provider".into()),
            },
            _ => {
                return Err(AppError::Validation(stampede_domain::ValidationError::new(
                    "status",
                    "must be approved or declined",
                )));
            }
        };
        self.settle(id, &result).await
    }

    pub(crate) async fn settle(
        &self,
        id: PaymentId,
        result: &PaymentResult,
    ) -> Result<Confirmation, AppError> {
        let outcome = self
            .store
            .settle_payment(id, result, self.clock.now())
            .await?;
        let confirmation = match outcome {
            SettleOutcome::Paid(_) => Confirmation::Paid,
            SettleOutcome::RefundRequired(order) => {
                tracing::warn!(order_id = %order.id, payment_id = %id, "payment approved after the order closed: refund required");
                Confirmation::RefundRequired
            }
            SettleOutcome::NotPaid(_) => Confirmation::NotPaid,
            SettleOutcome::AlreadySettled(_) => return Ok(Confirmation::AlreadySettled),
            SettleOutcome::NotFound => return Err(AppError::NotFound),
        };
        metrics::counter!("stampede_payments_settled_total", "outcome" => match confirmation {
            Confirmation::Paid => "paid",
            Confirmation::RefundRequired => "refund_required",
            Confirmation::NotPaid => "not_paid",
            Confirmation::AlreadySettled => "repeat",
        })
        .increment(1);
        self.bus.notify();
        Ok(confirmation)
    }
}

fn refuse_unless_payable(order: &Order) -> Result<(), AppError> {
    match PayDecision::for_status(order.status) {
        PayDecision::Pay => Ok(()),
        PayDecision::AlreadyPaid => Err(AppError::InvalidState("the order is already paid".into())),
        PayDecision::Closed => Err(AppError::InvalidState(format!(
            "an order that is {} cannot be paid",
            order.status.as_str()
        ))),
    }
}
