//! The payment provider: takes a charge and answers later, on Stampede's
//! signed payment webhook. A built-in simulated provider (with configurable
//! latency, declines and errors) serves tests and drills; a real provider is
//! one more adapter.

use async_trait::async_trait;
use stampede_domain::ids::{OrderId, PaymentId};
use stampede_domain::money::Currency;

/// A charge to send. `payment_id` doubles as the provider-side idempotency
/// key: sending the same charge twice charges once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChargeRequest {
    pub payment_id: PaymentId,
    pub order_id: OrderId,
    pub amount_cents: i64,
    pub currency: Currency,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChargeError {
    /// A business answer (card declined): final, not a fault of the provider,
    /// never opens its circuit breaker.
    #[error("declined: {0}")]
    Declined(String),
    /// A fault worth retrying (timeout, 5xx, connection refused).
    #[error("provider error: {0}")]
    Retryable(String),
    /// A fault that retrying cannot fix (the provider refused the request).
    #[error("provider refused the charge: {0}")]
    Fatal(String),
}

#[async_trait]
pub trait PaymentProvider: Send + Sync + 'static {
    /// Sends the charge; `Ok` carries the provider's reference and means the
    /// provider took it and will answer on the webhook.
    async fn charge(&self, request: &ChargeRequest) -> Result<String, ChargeError>;
}
