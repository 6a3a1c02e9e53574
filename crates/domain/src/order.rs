//! Orders and their life: `pending → awaiting_payment → paid → fulfilled`, with
//! `pending | awaiting_payment → cancelled`. Every change is a compare-and-set on
//! the current status in the store, decided by the rules here, so a change is
//! applied at most once (I6) and pay and cancel exclude each other (I7).

use serde::Serialize;

use crate::catalog::Sale;
use crate::idempotency::IdempotencyKey;
use crate::ids::{OrderId, ProductId, SaleId, UserId};
use crate::money::Currency;
use crate::quantity::Quantity;
use crate::time::Timestamp;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    Pending,
    AwaitingPayment,
    Paid,
    Fulfilled,
    Cancelled,
}

impl OrderStatus {
    pub const ALL: [Self; 5] = [
        Self::Pending,
        Self::AwaitingPayment,
        Self::Paid,
        Self::Fulfilled,
        Self::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::AwaitingPayment => "awaiting_payment",
            Self::Paid => "paid",
            Self::Fulfilled => "fulfilled",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// Whether the order's units count as sold (taken from the sale's stock).
    pub fn holds_stock(self) -> bool {
        self != Self::Cancelled
    }

    /// The statuses from which a cancel is allowed.
    pub const CANCELLABLE: [Self; 2] = [Self::Pending, Self::AwaitingPayment];

    pub fn is_cancellable(self) -> bool {
        Self::CANCELLABLE.contains(&self)
    }

    /// The statuses in which an order may be paid, and in which it expires when
    /// its payment window passes: the same set as [`Self::CANCELLABLE`].
    pub const OPEN: [Self; 2] = Self::CANCELLABLE;
}

/// A winning purchase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    pub id: OrderId,
    pub user_id: UserId,
    pub sale_id: SaleId,
    pub product_id: ProductId,
    pub quantity: Quantity,
    pub amount_cents: i64,
    pub currency: Currency,
    pub status: OrderStatus,
    /// The key that created the order; unique per user.
    pub idempotency_key: IdempotencyKey,
    pub created_at: Timestamp,
    /// When the payment window closes.
    pub expires_at: Timestamp,
}

impl Order {
    /// The order a reservation on `sale` becomes. It starts awaiting payment: the
    /// commit that makes it durable is the confirmation.
    pub fn place(
        sale: &Sale,
        user_id: UserId,
        quantity: Quantity,
        idempotency_key: IdempotencyKey,
        now: Timestamp,
    ) -> Self {
        Self {
            id: OrderId::generate(),
            user_id,
            sale_id: sale.id,
            product_id: sale.product_id,
            quantity,
            amount_cents: sale.price.times(quantity.get()),
            currency: sale.currency,
            status: OrderStatus::AwaitingPayment,
            idempotency_key,
            created_at: now,
            expires_at: now.plus_secs(sale.payment_window_secs),
        }
    }
}

/// What a cancel request does to an order in a given status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelDecision {
    /// Cancel it and return its stock.
    Cancel,
    /// Already cancelled: answer with the order, return nothing again.
    AlreadyCancelled,
    /// Paid or fulfilled: refuse.
    Refuse,
}

impl CancelDecision {
    pub fn for_status(status: OrderStatus) -> Self {
        match status {
            OrderStatus::Pending | OrderStatus::AwaitingPayment => Self::Cancel,
            OrderStatus::Cancelled => Self::AlreadyCancelled,
            OrderStatus::Paid | OrderStatus::Fulfilled => Self::Refuse,
        }
    }
}

/// What a pay request does to an order in a given status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayDecision {
    /// Start a payment.
    Pay,
    /// Already paid: refuse (`invalid-state`).
    AlreadyPaid,
    /// Cancelled or expired: refuse (`invalid-state`).
    Closed,
}

impl PayDecision {
    pub fn for_status(status: OrderStatus) -> Self {
        match status {
            OrderStatus::Pending | OrderStatus::AwaitingPayment => Self::Pay,
            OrderStatus::Paid | OrderStatus::Fulfilled => Self::AlreadyPaid,
            OrderStatus::Cancelled => Self::Closed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_open_orders_can_be_paid() {
        assert_eq!(
            PayDecision::for_status(OrderStatus::AwaitingPayment),
            PayDecision::Pay
        );
        assert_eq!(
            PayDecision::for_status(OrderStatus::Pending),
            PayDecision::Pay
        );
        assert_eq!(
            PayDecision::for_status(OrderStatus::Paid),
            PayDecision::AlreadyPaid
        );
        assert_eq!(
            PayDecision::for_status(OrderStatus::Cancelled),
            PayDecision::Closed
        );
        for status in OrderStatus::OPEN {
            assert_eq!(PayDecision::for_status(status), PayDecision::Pay);
            assert_eq!(CancelDecision::for_status(status), CancelDecision::Cancel);
        }
    }

    #[test]
    fn statuses_round_trip_through_text() {
        for status in OrderStatus::ALL {
            assert_eq!(OrderStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(OrderStatus::parse("shipped"), None);
    }

    #[test]
    fn only_unpaid_orders_can_be_cancelled_and_only_once() {
        use CancelDecision::*;
        use OrderStatus::*;
        assert_eq!(CancelDecision::for_status(Pending), Cancel);
        assert_eq!(CancelDecision::for_status(AwaitingPayment), Cancel);
        assert_eq!(CancelDecision::for_status(Cancelled), AlreadyCancelled);
        assert_eq!(CancelDecision::for_status(Paid), Refuse);
        assert_eq!(CancelDecision::for_status(Fulfilled), Refuse);
        assert!(!Cancelled.holds_stock());
        assert!(Paid.holds_stock());
    }
}
