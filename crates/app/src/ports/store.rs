//! The store of record: catalog, orders with their idempotency keys, accounts,
//! and the outbox. SQLite in embedded mode, PostgreSQL in cluster mode.
//!
//! Every write that changes state also writes its event to the outbox in the same
//! transaction (I8); the adapters own that, so no caller can forget it.

use async_trait::async_trait;
use stampede_domain::account::{Email, User};
use stampede_domain::catalog::{Product, Sale, SaleControl};
use stampede_domain::idempotency::IdempotencyKey;
use stampede_domain::ids::{
    DeliveryId, EventId, OrderId, PaymentId, ProductId, SaleId, SubscriptionId, UserId,
};
use stampede_domain::order::{Order, OrderStatus};
use stampede_domain::payment::{Payment, PaymentResult};
use stampede_domain::time::Timestamp;
use stampede_domain::webhook::{Delivery, DeliveryStatus, StoredSecret, Subscription};
use stampede_trace::TraceParent;

use crate::failure::{Cause, context_constructors};

/// Why the store could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness rule refused the write; `field` names what must be unique.
    #[error("{field} already exists")]
    Conflict { field: &'static str },
    /// The store could not be reached or did not finish (I/O error, busy, closed,
    /// shutting down). Retryable: nothing was committed.
    #[error("store unavailable: {context}")]
    Unavailable {
        context: String,
        #[source]
        cause: Option<Cause>,
    },
    /// Data in the store does not parse: a bug or tampering, never retryable.
    #[error("corrupt data in store: {context}")]
    Corrupt {
        context: String,
        #[source]
        cause: Option<Cause>,
    },
}

context_constructors!(StoreError {
    Unavailable => unavailable, unavailable_because;
    Corrupt => corrupt, corrupt_because;
});

impl StoreError {
    /// Whether trying again may succeed (nothing was done).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }
}

/// What became of one order in a group commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommitOutcome {
    /// The order, its key, the sale's stock decrement and its `order.created`
    /// event are committed.
    Created,
    /// The user already has an order under this key (one the ledger forgot):
    /// nothing was written, and this is that order.
    KeyTaken(Order),
    /// The sale's conditional stock decrement failed: the store of record has
    /// fewer units left than the ledger believed. Nothing was written.
    SoldOut,
}

/// What a cancel did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelOutcome {
    /// The order was cancellable and is now cancelled; its units are back in the
    /// sale's stock in the store. The caller returns them to the ledger.
    Cancelled(Order),
    /// The order was not cancellable (already cancelled, or paid): unchanged.
    Unchanged(Order),
    NotFound,
}

/// Order counts and sold units of one sale, counted in the store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SaleCounts {
    /// Units in orders that are not cancelled.
    pub sold: u64,
    /// The sale's own stock column: quantity minus sold, kept by the
    /// conditional decrements and cancels.
    pub remaining: u64,
    pub by_status: Vec<(OrderStatus, u64)>,
}

impl SaleCounts {
    /// From a store's `(status, orders, units)` rows and the sale's stock
    /// column: units sold are those of statuses that hold stock, and the
    /// statuses come in the domain's order, whatever the query plan gave.
    pub fn from_rows(rows: Vec<(OrderStatus, u64, u64)>, remaining: u64) -> Self {
        let sold = rows
            .iter()
            .filter(|(status, _, _)| status.holds_stock())
            .map(|(_, _, units)| units)
            .sum();
        let mut by_status: Vec<(OrderStatus, u64)> = rows
            .into_iter()
            .map(|(status, orders, _)| (status, orders))
            .collect();
        by_status.sort_by_key(|(status, _)| OrderStatus::ALL.iter().position(|s| s == status));
        Self {
            sold,
            remaining,
            by_status,
        }
    }
}

/// A sale as the store knows it, for rebuilding the ledger at start.
#[derive(Debug, Clone)]
pub struct SaleSnapshot {
    pub sale: Sale,
    /// The stock column of the sale row.
    pub remaining: u64,
    /// Units each buyer holds in orders that are not cancelled.
    pub holdings: Vec<(UserId, u32)>,
}

/// A winning idempotency key, for the ledger's memory of answers.
#[derive(Debug, Clone)]
pub struct KeyRecord {
    pub user_id: UserId,
    pub key: IdempotencyKey,
    pub order_id: OrderId,
    pub sale_id: SaleId,
    pub quantity: u32,
}

/// What a pay request did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PayOutcome {
    /// A new attempt is recorded with its `payment.requested` event.
    Requested(Payment),
    /// An attempt is already waiting for the provider: this one, nothing new.
    InFlight(Payment),
    /// The order is not open (paid, cancelled, expired): nothing written.
    NotPayable(Order),
    NotFound,
}

/// What a provider's answer did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SettleOutcome {
    /// Approved, and the order moved from open to `paid` (`order.paid`).
    Paid(Order),
    /// Approved, but the order was no longer open: the payment is flagged for
    /// refund (`payment.refund_required`), the order unchanged.
    RefundRequired(Order),
    /// Declined or failed (`payment.declined` / `payment.failed`); the order
    /// stays open and may be paid again.
    NotPaid(Order),
    /// The attempt already had its answer: nothing written (webhooks repeat).
    AlreadySettled(Payment),
    NotFound,
}

/// An outbox row as consumers read it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    /// Position in the outbox: strictly increasing in commit order, so a
    /// consumer's progress is one number.
    pub seq: i64,
    pub id: EventId,
    /// `<aggregate>.<past tense>`, e.g. `order.paid`.
    pub event_type: String,
    /// The order (for order and payment events), product, sale or user.
    pub aggregate_id: String,
    pub payload: serde_json::Value,
    pub created_at: Timestamp,
    /// The trace of the change that wrote it (a request, a worker step):
    /// whoever acts on the event continues it.
    pub trace: Option<TraceParent>,
}

/// A delivery due now, with what is needed to send it.
#[derive(Debug, Clone)]
pub struct DueDelivery {
    pub delivery: Delivery,
    pub subscription: Subscription,
    pub event: StoredEvent,
}

impl DueDelivery {
    /// Puts a due delivery together from what a store read, refusing one
    /// whose event is gone from the outbox or is another event: corrupt,
    /// never skipped (it would stay pending for ever).
    pub fn checked(
        delivery: Delivery,
        subscription: Subscription,
        event: Option<StoredEvent>,
    ) -> Result<Self, StoreError> {
        let Some(event) = event else {
            return Err(StoreError::corrupt(format!(
                "webhook delivery {} refers to event {}, which is not in the outbox",
                delivery.id, delivery.event_id
            )));
        };
        if event.id != delivery.event_id {
            return Err(StoreError::corrupt(format!(
                "webhook delivery {} is for event {} but its outbox position holds {}",
                delivery.id, delivery.event_id, event.id
            )));
        }
        Ok(Self {
            delivery,
            subscription,
            event,
        })
    }
}

/// How a delivery attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptResult {
    Delivered {
        status: u16,
    },
    /// Try again at `retry_at`.
    Failed {
        error: String,
        status: Option<u16>,
        retry_at: Timestamp,
    },
    /// The last attempt failed: dead letter.
    Dead {
        error: String,
        status: Option<u16>,
    },
    /// Not attempted (the endpoint's breaker is open): same attempt count,
    /// tried again at `retry_at`.
    Postponed {
        retry_at: Timestamp,
    },
}

#[async_trait]
pub trait CatalogStore: Send + Sync {
    /// Fails with `Conflict { field: "sku" }` if the SKU exists.
    async fn insert_product(&self, product: &Product) -> Result<(), StoreError>;
    async fn product(&self, id: ProductId) -> Result<Option<Product>, StoreError>;
    /// Products in id (creation) order, after `after`.
    async fn products(
        &self,
        after: Option<ProductId>,
        limit: u32,
    ) -> Result<Vec<Product>, StoreError>;
    async fn insert_sale(&self, sale: &Sale) -> Result<(), StoreError>;
    async fn sale(&self, id: SaleId) -> Result<Option<Sale>, StoreError>;
    /// Every sale with its holdings, for rebuilding the ledger.
    async fn sale_snapshots(&self) -> Result<Vec<SaleSnapshot>, StoreError>;
    /// Writes `next` over `current` (the same sale one version on, after
    /// `control` at `at`) with its event `Event::SaleChanged(next, control,
    /// at)`, in one transaction, if the row is still at `current.version`. The stock column moves by `next.quantity −
    /// current.quantity` and may not go below 0: a withdrawal of units that
    /// are sold (or in orders not cancelled) writes nothing.
    async fn update_sale(
        &self,
        current: &Sale,
        next: &Sale,
        control: SaleControl,
        at: Timestamp,
    ) -> Result<SaleUpdate, StoreError>;
    /// Every sale's id and version, oldest sale first: how a node notices
    /// another node's changes.
    async fn sale_versions(&self) -> Result<Vec<(SaleId, u64)>, StoreError>;
}

/// What [`CatalogStore::update_sale`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaleUpdate {
    /// The row holds the new version, and its event is in the outbox.
    Updated,
    /// The row is no longer at the version the change was made from:
    /// nothing was written; read it again.
    Stale,
    /// Fewer units are unsold than the withdrawal takes: nothing was written.
    InsufficientStock,
}

#[async_trait]
pub trait OrderStore: Send + Sync {
    /// Makes a batch of orders durable in one transaction (group commit): for
    /// each, the order row with its idempotency key, the sale's conditional stock
    /// decrement and its `order.created` event. Orders are independent: one
    /// refused order does not affect the others. Returns one outcome per order,
    /// in order, only after the transaction is committed and synced.
    async fn commit_orders(&self, orders: &[Order]) -> Result<Vec<CommitOutcome>, StoreError> {
        self.commit_traced_orders(orders, &[]).await
    }

    /// [`commit_orders`](Self::commit_orders), each order's event carrying
    /// the trace of the purchase that placed it (`traces[i]` for
    /// `orders[i]`; an order past the end of `traces` has none).
    async fn commit_traced_orders(
        &self,
        orders: &[Order],
        traces: &[Option<TraceParent>],
    ) -> Result<Vec<CommitOutcome>, StoreError>;
    async fn order(&self, id: OrderId) -> Result<Option<Order>, StoreError>;
    /// The user's order under an idempotency key, if one was committed.
    async fn order_by_key(
        &self,
        user: &UserId,
        key: &IdempotencyKey,
    ) -> Result<Option<Order>, StoreError>;
    /// The user's orders, newest first, older than `before`.
    async fn orders_of(
        &self,
        user: &UserId,
        before: Option<OrderId>,
        limit: u32,
    ) -> Result<Vec<Order>, StoreError>;
    /// Cancels the order if its status allows, returning its units to the sale
    /// and writing `order.cancelled`, all in one transaction: a compare-and-set on
    /// the status, so units come back exactly once however often it is called.
    async fn cancel_order(&self, id: OrderId, now: Timestamp) -> Result<CancelOutcome, StoreError>;
    async fn sale_counts(&self, sale: SaleId) -> Result<SaleCounts, StoreError>;
    /// Winning keys of orders created at or after `since`.
    async fn keys_since(&self, since: Timestamp) -> Result<Vec<KeyRecord>, StoreError>;
    /// Expires up to `limit` open orders whose payment window closed at or
    /// before `now`, oldest first: each is a compare-and-set to `cancelled`
    /// that returns its units to the sale and writes `order.expired`, in one
    /// transaction, so an expiry is applied exactly once however often and on
    /// however many nodes the sweep runs. Returns the expired orders.
    async fn expire_due(&self, now: Timestamp, limit: u32) -> Result<Vec<Order>, StoreError>;
}

#[async_trait]
pub trait PaymentStore: Send + Sync {
    /// Starts paying an open order: records `payment` (status `requested`)
    /// with `payment.requested`, unless an attempt is already in flight or the
    /// order is not open.
    async fn request_payment(&self, payment: &Payment) -> Result<PayOutcome, StoreError>;
    async fn payment(&self, id: PaymentId) -> Result<Option<Payment>, StoreError>;
    /// The order's attempts, oldest first.
    async fn payments_of(&self, order: OrderId) -> Result<Vec<Payment>, StoreError>;
    /// Payments still `requested` that were requested before `before`,
    /// oldest first: what the payment sweeper queues again.
    async fn requested_before(
        &self,
        before: Timestamp,
        limit: u32,
    ) -> Result<Vec<PaymentId>, StoreError>;
    /// `requested → submitted`, keeping the provider's reference. A payment
    /// in any other status is left alone (a redelivered request).
    async fn mark_submitted(
        &self,
        id: PaymentId,
        provider_ref: &str,
        now: Timestamp,
    ) -> Result<(), StoreError>;
    /// Applies the provider's final answer, once: the payment's status, and
    /// on approval the order's compare-and-set to `paid` — or the refund flag
    /// when the order was cancelled first (I7) — with their events, in one
    /// transaction.
    async fn settle_payment(
        &self,
        id: PaymentId,
        result: &PaymentResult,
        now: Timestamp,
    ) -> Result<SettleOutcome, StoreError>;
}

/// The outbox as a log: the in-process event bus reads it, and each consumer
/// keeps its position in it durably.
#[async_trait]
pub trait OutboxStore: Send + Sync {
    /// Events with `seq > after`, in order.
    async fn events_after(&self, after: i64, limit: u32) -> Result<Vec<StoredEvent>, StoreError>;
    /// The events of one aggregate (an order's history), in order.
    async fn events_of(&self, aggregate_id: &str) -> Result<Vec<StoredEvent>, StoreError>;
    /// The last `seq` written (0 when empty).
    async fn last_seq(&self) -> Result<i64, StoreError>;
    /// A consumer's position: the last `seq` it finished (0 if it never ran).
    async fn cursor(&self, consumer: &str) -> Result<i64, StoreError>;
    /// Moves a consumer's position forward (never back).
    async fn save_cursor(&self, consumer: &str, seq: i64) -> Result<(), StoreError>;
}

#[async_trait]
pub trait WebhookStore: Send + Sync {
    async fn insert_subscription(&self, subscription: &Subscription) -> Result<(), StoreError>;
    async fn subscription(&self, id: SubscriptionId) -> Result<Option<Subscription>, StoreError>;
    async fn subscriptions(&self) -> Result<Vec<Subscription>, StoreError>;
    /// Sets the subscription's stored secret to `new` if it is still `old`
    /// (a compare-and-set: nodes sealing the same row at once write it once);
    /// `false` if it was not.
    async fn replace_subscription_secret(
        &self,
        id: SubscriptionId,
        old: &StoredSecret,
        new: &StoredSecret,
    ) -> Result<bool, StoreError>;
    /// Removes the subscription and its deliveries; `false` if there was none.
    async fn delete_subscription(&self, id: SubscriptionId) -> Result<bool, StoreError>;
    /// Schedules `event` for each subscription, due now; a (subscription,
    /// event) pair already scheduled is left as it is, so a redelivered event
    /// is delivered once.
    async fn enqueue_deliveries(
        &self,
        event: &StoredEvent,
        subscriptions: &[SubscriptionId],
        now: Timestamp,
    ) -> Result<(), StoreError>;
    /// Takes up to `limit` pending deliveries due at `now`, oldest first,
    /// and moves their next attempt to `lease_until`, in one step: a
    /// delivery one worker took is not due for another until its lease ends,
    /// so workers on several nodes never attempt it twice at once, and one
    /// that dies mid-attempt gives it back then. `record_attempt` sets the
    /// real next attempt.
    async fn claim_due_deliveries(
        &self,
        now: Timestamp,
        limit: u32,
        lease_until: Timestamp,
    ) -> Result<Vec<DueDelivery>, StoreError>;
    async fn record_attempt(
        &self,
        id: DeliveryId,
        result: &AttemptResult,
        now: Timestamp,
    ) -> Result<(), StoreError>;
    /// A subscription's deliveries, newest first, optionally of one status.
    async fn deliveries(
        &self,
        subscription: SubscriptionId,
        status: Option<DeliveryStatus>,
        before: Option<DeliveryId>,
        limit: u32,
    ) -> Result<Vec<Delivery>, StoreError>;
}

#[async_trait]
pub trait UserStore: Send + Sync {
    /// Fails with `Conflict { field: "email" }` if the address is taken.
    async fn insert_user(&self, user: &User) -> Result<(), StoreError>;
    async fn user_by_email(&self, email: &Email) -> Result<Option<User>, StoreError>;
}

/// The whole store of record, as startup wires it.
#[async_trait]
pub trait Store:
    CatalogStore
    + OrderStore
    + UserStore
    + PaymentStore
    + OutboxStore
    + WebhookStore
    + Send
    + Sync
    + 'static
{
    /// A cheap round trip, for readiness.
    async fn ping(&self) -> Result<(), StoreError>;
    /// Finishes queued writes and closes connections; later calls fail with
    /// `Unavailable`.
    async fn close(&self);
}
