//! The `payments` consumer: sends each requested payment to the provider.
//! Idempotent per event: a payment no longer `requested` was already sent,
//! and the provider deduplicates charges by payment id.

use std::sync::Arc;

use async_trait::async_trait;
use stampede_domain::ids::PaymentId;
use stampede_domain::payment::{PaymentResult, PaymentStatus};
use stampede_flow::breaker::BreakerError;
use stampede_flow::deadline::Deadline;
use stampede_flow::retry::{Retry, retry};
use tokio::task::JoinSet;

use super::PaymentService;
use crate::bus::Consumer;
use crate::error::AppError;
use crate::ports::{ChargeError, ChargeRequest, PaymentProvider, StoredEvent};

pub struct PaymentWorker {
    payments: Arc<PaymentService>,
    provider: Arc<dyn PaymentProvider>,
}

impl PaymentWorker {
    pub fn new(payments: Arc<PaymentService>, provider: Arc<dyn PaymentProvider>) -> Self {
        Self { payments, provider }
    }

    /// Sends one payment: provider faults are retried, a breaker in front of
    /// the provider fails the rest fast once it is failing, and a payment that
    /// cannot be sent is settled as failed so the customer can pay again.
    async fn send(&self, id: PaymentId) -> Result<(), AppError> {
        let store = &self.payments.store;
        let Some(payment) = store.payment(id).await? else {
            return Ok(());
        };
        if payment.status != PaymentStatus::Requested {
            return Ok(());
        }
        let request = ChargeRequest {
            payment_id: payment.id,
            order_id: payment.order_id,
            amount_cents: payment.amount_cents,
            currency: payment.currency,
        };
        let settings = &self.payments.settings;
        let breaker = &self.payments.breaker;
        // Each attempt: the breaker, then the provider under its timeout. A
        // decline is the provider working, not failing.
        let attempt = |_| async {
            let charge = async {
                match Deadline::after(settings.timeout)
                    .run(self.provider.charge(&request))
                    .await
                {
                    Ok(result) => result,
                    Err(_) => Err(ChargeError::Retryable("timed out".into())),
                }
            };
            breaker
                .call(charge, |err: &ChargeError| {
                    !matches!(err, ChargeError::Declined(_))
                })
                .await
        };
        let classify = |err: &BreakerError<ChargeError>| match err {
            BreakerError::Inner(ChargeError::Retryable(_)) => Retry::Retryable,
            _ => Retry::Final,
        };
        let result = match retry(settings.retry, None, classify, attempt).await {
            Ok(provider_ref) => {
                store
                    .mark_submitted(id, &provider_ref, self.payments.clock.now())
                    .await?;
                return Ok(());
            }
            Err(BreakerError::Inner(ChargeError::Declined(reason))) => {
                PaymentResult::Declined { reason }
            }
            Err(BreakerError::Inner(err)) => PaymentResult::Failed {
                reason: err.to_string(),
            },
            Err(err) => PaymentResult::Failed {
                reason: err.to_string(),
            },
        };
        tracing::info!(payment_id = %id, status = result.status().as_str(), "payment not sent");
        self.payments.settle(id, &result).await?;
        Ok(())
    }
}

#[async_trait]
impl Consumer for Arc<PaymentWorker> {
    fn name(&self) -> &'static str {
        "payments"
    }

    async fn handle(&self, events: &[StoredEvent]) -> Result<(), AppError> {
        let mut sends = JoinSet::new();
        for event in events
            .iter()
            .filter(|e| e.event_type == "payment.requested")
        {
            let Some(id) = event.payload["id"].as_str().and_then(PaymentId::parse) else {
                tracing::error!(event_id = %event.id, "payment.requested without a payment id");
                continue;
            };
            let worker = self.clone();
            sends.spawn(async move {
                let _slot = worker.payments.bulkhead.acquire().await.map_err(|full| {
                    AppError::Unavailable(format!("payment provider busy: {full}"))
                })?;
                worker.send(id).await
            });
        }
        let mut failed = None;
        while let Some(joined) = sends.join_next().await {
            match joined {
                Ok(Ok(())) => {}
                Ok(Err(err)) => failed = Some(err),
                Err(err) => failed = Some(AppError::Internal(format!("payment task: {err}"))),
            }
        }
        // Any failure (the store, not the provider) redelivers the batch;
        // payments already sent are skipped then.
        failed.map_or(Ok(()), Err)
    }
}
