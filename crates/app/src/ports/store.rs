//! The store of record: catalog, orders with their idempotency keys, accounts,
//! and the outbox. SQLite in embedded mode, PostgreSQL in cluster mode.
//!
//! Every write that changes state also writes its event to the outbox in the same
//! transaction (I8); the adapters own that, so no caller can forget it.

use async_trait::async_trait;
use stampede_domain::account::{Email, User};
use stampede_domain::catalog::{Product, Sale};
use stampede_domain::idempotency::IdempotencyKey;
use stampede_domain::ids::{OrderId, ProductId, SaleId, UserId};
use stampede_domain::order::{Order, OrderStatus};
use stampede_domain::time::Timestamp;

/// Why the store could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness rule refused the write; `field` names what must be unique.
    #[error("{field} already exists")]
    Conflict { field: &'static str },
    /// The store could not be reached or did not finish (I/O error, busy, closed,
    /// shutting down). Retryable: nothing was committed.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// Data in the store does not parse: a bug or tampering, never retryable.
    #[error("corrupt data in store: {0}")]
    Corrupt(String),
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
}

#[async_trait]
pub trait OrderStore: Send + Sync {
    /// Makes a batch of orders durable in one transaction (group commit): for
    /// each, the order row with its idempotency key, the sale's conditional stock
    /// decrement and its `order.created` event. Orders are independent: one
    /// refused order does not affect the others. Returns one outcome per order,
    /// in order, only after the transaction is committed and synced.
    async fn commit_orders(&self, orders: &[Order]) -> Result<Vec<CommitOutcome>, StoreError>;
    async fn order(&self, id: OrderId) -> Result<Option<Order>, StoreError>;
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
}

#[async_trait]
pub trait UserStore: Send + Sync {
    /// Fails with `Conflict { field: "email" }` if the address is taken.
    async fn insert_user(&self, user: &User) -> Result<(), StoreError>;
    async fn user_by_email(&self, email: &Email) -> Result<Option<User>, StoreError>;
}

/// The whole store of record, as startup wires it.
#[async_trait]
pub trait Store: CatalogStore + OrderStore + UserStore + Send + Sync + 'static {
    /// A cheap round trip, for readiness.
    async fn ping(&self) -> Result<(), StoreError>;
    /// Finishes queued writes and closes connections; later calls fail with
    /// `Unavailable`.
    async fn close(&self);
}
