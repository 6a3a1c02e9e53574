//! Payments: an order is paid through attempts, each sent to a payment provider
//! and answered later (the provider's signed webhook). The order changes only
//! when an attempt is approved, by a compare-and-set from an open status to
//! `paid`; an approval that finds the order cancelled or expired is recorded
//! and flagged for refund, never turned into a paid cancelled order (I7).

use crate::ids::{OrderId, PaymentId};
use crate::money::Currency;
use crate::order::Order;
use crate::time::Timestamp;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PaymentStatus {
    /// Asked for by the customer, not yet sent to the provider.
    Requested,
    /// The provider took it; its answer comes on the webhook.
    Submitted,
    Approved,
    Declined,
    /// Could not be sent (provider errors, breaker open): the customer may pay again.
    Failed,
}

impl PaymentStatus {
    pub const ALL: [Self; 5] = [
        Self::Requested,
        Self::Submitted,
        Self::Approved,
        Self::Declined,
        Self::Failed,
    ];

    /// Still waiting for an outcome: a new pay request joins it instead of
    /// starting another.
    pub const IN_FLIGHT: [Self; 2] = [Self::Requested, Self::Submitted];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Requested => "requested",
            Self::Submitted => "submitted",
            Self::Approved => "approved",
            Self::Declined => "declined",
            Self::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }

    pub fn is_final(self) -> bool {
        !Self::IN_FLIGHT.contains(&self)
    }
}

/// One attempt to pay an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payment {
    pub id: PaymentId,
    pub order_id: OrderId,
    pub amount_cents: i64,
    pub currency: Currency,
    pub status: PaymentStatus,
    /// The provider's id for the charge, once it took it.
    pub provider_ref: Option<String>,
    /// Approved after the order was cancelled or expired: the money must go back.
    pub refund_required: bool,
    /// Why it was declined or failed.
    pub reason: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl Payment {
    /// A new attempt for the whole amount of `order`.
    pub fn request(order: &Order, now: Timestamp) -> Self {
        Self {
            id: PaymentId::generate(),
            order_id: order.id,
            amount_cents: order.amount_cents,
            currency: order.currency,
            status: PaymentStatus::Requested,
            provider_ref: None,
            refund_required: false,
            reason: None,
            created_at: now,
            updated_at: now,
        }
    }
}

/// The provider's final answer on an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaymentResult {
    Approved {
        provider_ref: String,
    },
    Declined {
        reason: String,
    },
    /// Never reached the provider, or it kept failing.
    Failed {
        reason: String,
    },
}

impl PaymentResult {
    pub fn status(&self) -> PaymentStatus {
        match self {
            Self::Approved { .. } => PaymentStatus::Approved,
            Self::Declined { .. } => PaymentStatus::Declined,
            Self::Failed { .. } => PaymentStatus::Failed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip_and_only_requested_and_submitted_are_in_flight() {
        for status in PaymentStatus::ALL {
            assert_eq!(PaymentStatus::parse(status.as_str()), Some(status));
        }
        assert!(!PaymentStatus::Requested.is_final());
        assert!(!PaymentStatus::Submitted.is_final());
        assert!(PaymentStatus::Approved.is_final());
        assert!(PaymentStatus::Failed.is_final());
    }
}
