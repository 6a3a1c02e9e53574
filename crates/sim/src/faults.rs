//! Fault injection at the ports: wrappers around the store and the ledger
//! that, per a seeded RNG of their own, fail a call, or "crash" the process
//! just before or just after it. A crash marks the process dead: every later
//! call fails until the simulator rebuilds the process over the same files.
//!
//! Only calls the services make in a fixed order draw from the RNG (orders and
//! payments, not catalog reads, whose cache hits depend on wall time), so one
//! seed always injects the same faults at the same steps.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use stampede_app::ports::Attempt;
use stampede_app::ports::{
    AttemptResult, CancelOutcome, CatalogStore, CommitOutcome, Decision, DueDelivery, KeyRecord,
    LedgerError, OrderStore, OutboxStore, PayOutcome, PaymentStore, Reservation, SaleCounts,
    SaleSnapshot, SaleUpdate, SettleOutcome, Settlement, StockLedger, Store, StoreError,
    StoredEvent, UserStore, WebhookStore,
};
use stampede_domain::account::{Email, User};
use stampede_domain::catalog::{Product, Sale, SaleControl};
use stampede_domain::idempotency::IdempotencyKey;
use stampede_domain::ids::{
    DeliveryId, OrderId, PaymentId, ProductId, SaleId, SubscriptionId, UserId,
};
use stampede_domain::order::Order;
use stampede_domain::payment::{Payment, PaymentResult};
use stampede_domain::time::Timestamp;
use stampede_domain::webhook::{Delivery, DeliveryStatus, StoredSecret, Subscription};
use stampede_trace::TraceParent;

/// How often each kind of fault fires, per call at a fault point, out of
/// 1,000,000.
#[derive(Debug, Clone, Copy)]
pub struct FaultRates {
    /// A call fails without doing anything (`Unavailable`).
    pub fail: u32,
    /// The process dies before the call.
    pub crash_before: u32,
    /// The process dies after the call took effect, before anyone heard.
    pub crash_after: u32,
    /// A deliberately broken store: a group commit answers `Created` without
    /// writing anything. Zero except in the test that shows the checker
    /// catches it.
    pub forget_commit: u32,
}

impl Default for FaultRates {
    fn default() -> Self {
        Self {
            fail: 4_000,
            crash_before: 300,
            crash_after: 300,
            forget_commit: 0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    None,
    Fail,
    CrashBefore,
    CrashAfter,
    ForgetCommit,
}

#[derive(Debug, Default)]
struct State {
    crashed: bool,
    /// Faults fired since the simulator last asked.
    fired: u32,
    /// Ledger releases that failed since the simulator last asked: the
    /// ledger holds those units until it is rebuilt.
    lost_releases: u32,
}

/// What fired during one step, as the simulator reads it after the step.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Fired {
    pub faults: u32,
    pub crashed: bool,
    pub lost_releases: u32,
}

/// The faults of one run: its own RNG stream, shared by every wrapper.
pub struct FaultPlan {
    rates: FaultRates,
    rng: Mutex<fastrand::Rng>,
    state: Mutex<State>,
}

impl FaultPlan {
    pub fn new(seed: u64, rates: FaultRates) -> Arc<Self> {
        Arc::new(Self {
            rates,
            rng: Mutex::new(fastrand::Rng::with_seed(seed)),
            state: Mutex::new(State::default()),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the process is dead (calls fail until it is rebuilt).
    pub fn crashed(&self) -> bool {
        self.state().crashed
    }

    /// What fired since the last [`take`](Self::take), leaving it.
    pub fn peek(&self) -> Fired {
        let state = self.state();
        Fired {
            faults: state.fired,
            crashed: state.crashed,
            lost_releases: state.lost_releases,
        }
    }

    /// What fired since the last call; a new process starts alive.
    pub fn take(&self) -> Fired {
        let mut state = self.state();
        let fired = Fired {
            faults: state.fired,
            crashed: state.crashed,
            lost_releases: state.lost_releases,
        };
        *state = State::default();
        fired
    }

    fn draw(&self, commit: bool) -> Fault {
        let roll = self
            .rng
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .u32(0..1_000_000);
        let r = self.rates;
        let mut edge = r.fail;
        let fault = if roll < edge {
            Fault::Fail
        } else if roll < {
            edge += r.crash_before;
            edge
        } {
            Fault::CrashBefore
        } else if roll < {
            edge += r.crash_after;
            edge
        } {
            Fault::CrashAfter
        } else if commit && roll < edge + r.forget_commit {
            Fault::ForgetCommit
        } else {
            Fault::None
        };
        if fault != Fault::None {
            self.state().fired += 1;
        }
        fault
    }

    fn crash(&self) {
        self.state().crashed = true;
    }

    /// Runs `call` through the plan: dead processes do nothing, faults fire
    /// per the RNG.
    async fn guard<T, E>(
        &self,
        call: impl Future<Output = Result<T, E>>,
        error: impl Fn(&'static str) -> E,
    ) -> Result<T, E> {
        if self.crashed() {
            return Err(error("the process crashed"));
        }
        match self.draw(false) {
            Fault::None | Fault::ForgetCommit => call.await,
            Fault::Fail => Err(error("injected fault")),
            Fault::CrashBefore => {
                self.crash();
                Err(error("the process crashed"))
            }
            Fault::CrashAfter => {
                // Done, then the process dies before the answer is used.
                let _ = call.await;
                self.crash();
                Err(error("the process crashed"))
            }
        }
    }
}

fn store_error(context: &'static str) -> StoreError {
    StoreError::unavailable(context)
}

fn ledger_error(context: &'static str) -> LedgerError {
    LedgerError::unavailable(context)
}

/// The store of record behind the fault plan.
pub struct FaultyStore {
    inner: Arc<dyn Store>,
    plan: Arc<FaultPlan>,
}

impl FaultyStore {
    pub fn new(inner: Arc<dyn Store>, plan: Arc<FaultPlan>) -> Self {
        Self { inner, plan }
    }
}

#[async_trait]
impl CatalogStore for FaultyStore {
    async fn insert_product(&self, product: &Product) -> Result<(), StoreError> {
        self.inner.insert_product(product).await
    }
    async fn product(&self, id: ProductId) -> Result<Option<Product>, StoreError> {
        self.inner.product(id).await
    }
    async fn products(
        &self,
        after: Option<ProductId>,
        limit: u32,
    ) -> Result<Vec<Product>, StoreError> {
        self.inner.products(after, limit).await
    }
    async fn insert_sale(&self, sale: &Sale) -> Result<(), StoreError> {
        self.inner.insert_sale(sale).await
    }
    async fn sale(&self, id: SaleId) -> Result<Option<Sale>, StoreError> {
        self.inner.sale(id).await
    }
    async fn sale_snapshots(&self) -> Result<Vec<SaleSnapshot>, StoreError> {
        self.inner.sale_snapshots().await
    }
    async fn update_sale(
        &self,
        current: &Sale,
        next: &Sale,
        control: SaleControl,
        at: Timestamp,
    ) -> Result<SaleUpdate, StoreError> {
        self.inner.update_sale(current, next, control, at).await
    }
    async fn sale_versions(&self) -> Result<Vec<(SaleId, u64)>, StoreError> {
        self.inner.sale_versions().await
    }
}

#[async_trait]
impl OrderStore for FaultyStore {
    async fn commit_traced_orders(
        &self,
        orders: &[Order],
        traces: &[Option<TraceParent>],
    ) -> Result<Vec<CommitOutcome>, StoreError> {
        if self.plan.crashed() {
            return Err(store_error("the process crashed"));
        }
        // The sabotage draws first so it never changes the other faults' stream
        // when its rate is zero.
        if self.plan.rates.forget_commit > 0 && self.plan.draw(true) == Fault::ForgetCommit {
            return Ok(vec![CommitOutcome::Created; orders.len()]);
        }
        self.plan
            .guard(self.inner.commit_traced_orders(orders, traces), store_error)
            .await
    }
    async fn order(&self, id: OrderId) -> Result<Option<Order>, StoreError> {
        self.plan.guard(self.inner.order(id), store_error).await
    }
    async fn order_by_key(
        &self,
        user: &UserId,
        key: &IdempotencyKey,
    ) -> Result<Option<Order>, StoreError> {
        self.plan
            .guard(self.inner.order_by_key(user, key), store_error)
            .await
    }
    async fn orders_of(
        &self,
        user: &UserId,
        before: Option<OrderId>,
        limit: u32,
    ) -> Result<Vec<Order>, StoreError> {
        self.inner.orders_of(user, before, limit).await
    }
    async fn cancel_order(&self, id: OrderId, now: Timestamp) -> Result<CancelOutcome, StoreError> {
        self.plan
            .guard(self.inner.cancel_order(id, now), store_error)
            .await
    }
    async fn sale_counts(&self, sale: SaleId) -> Result<SaleCounts, StoreError> {
        self.inner.sale_counts(sale).await
    }
    async fn keys_since(&self, since: Timestamp) -> Result<Vec<KeyRecord>, StoreError> {
        self.inner.keys_since(since).await
    }
    async fn expire_due(&self, now: Timestamp, limit: u32) -> Result<Vec<Order>, StoreError> {
        self.plan
            .guard(self.inner.expire_due(now, limit), store_error)
            .await
    }
}

#[async_trait]
impl PaymentStore for FaultyStore {
    async fn request_payment(&self, payment: &Payment) -> Result<PayOutcome, StoreError> {
        self.plan
            .guard(self.inner.request_payment(payment), store_error)
            .await
    }
    async fn payment(&self, id: PaymentId) -> Result<Option<Payment>, StoreError> {
        self.inner.payment(id).await
    }
    async fn payments_of(&self, order: OrderId) -> Result<Vec<Payment>, StoreError> {
        self.plan
            .guard(self.inner.payments_of(order), store_error)
            .await
    }
    async fn requested_before(
        &self,
        before: Timestamp,
        limit: u32,
    ) -> Result<Vec<PaymentId>, StoreError> {
        self.inner.requested_before(before, limit).await
    }
    async fn mark_submitted(
        &self,
        id: PaymentId,
        provider_ref: &str,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.inner.mark_submitted(id, provider_ref, now).await
    }
    async fn settle_payment(
        &self,
        id: PaymentId,
        result: &PaymentResult,
        now: Timestamp,
    ) -> Result<SettleOutcome, StoreError> {
        self.plan
            .guard(self.inner.settle_payment(id, result, now), store_error)
            .await
    }
}

#[async_trait]
impl OutboxStore for FaultyStore {
    async fn events_after(&self, after: i64, limit: u32) -> Result<Vec<StoredEvent>, StoreError> {
        self.inner.events_after(after, limit).await
    }
    async fn events_of(&self, aggregate_id: &str) -> Result<Vec<StoredEvent>, StoreError> {
        self.inner.events_of(aggregate_id).await
    }
    async fn last_seq(&self) -> Result<i64, StoreError> {
        self.inner.last_seq().await
    }
    async fn cursor(&self, consumer: &str) -> Result<i64, StoreError> {
        self.inner.cursor(consumer).await
    }
    async fn save_cursor(&self, consumer: &str, seq: i64) -> Result<(), StoreError> {
        self.inner.save_cursor(consumer, seq).await
    }
}

#[async_trait]
impl WebhookStore for FaultyStore {
    async fn insert_subscription(&self, subscription: &Subscription) -> Result<(), StoreError> {
        self.inner.insert_subscription(subscription).await
    }
    async fn subscription(&self, id: SubscriptionId) -> Result<Option<Subscription>, StoreError> {
        self.inner.subscription(id).await
    }
    async fn subscriptions(&self) -> Result<Vec<Subscription>, StoreError> {
        self.inner.subscriptions().await
    }
    async fn replace_subscription_secret(
        &self,
        id: SubscriptionId,
        old: &StoredSecret,
        new: &StoredSecret,
    ) -> Result<bool, StoreError> {
        self.inner.replace_subscription_secret(id, old, new).await
    }
    async fn delete_subscription(&self, id: SubscriptionId) -> Result<bool, StoreError> {
        self.inner.delete_subscription(id).await
    }
    async fn enqueue_deliveries(
        &self,
        event: &StoredEvent,
        subscriptions: &[SubscriptionId],
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.inner
            .enqueue_deliveries(event, subscriptions, now)
            .await
    }
    async fn claim_due_deliveries(
        &self,
        now: Timestamp,
        limit: u32,
        lease_until: Timestamp,
    ) -> Result<Vec<DueDelivery>, StoreError> {
        self.inner
            .claim_due_deliveries(now, limit, lease_until)
            .await
    }
    async fn record_attempt(
        &self,
        id: DeliveryId,
        result: &AttemptResult,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.inner.record_attempt(id, result, now).await
    }
    async fn deliveries(
        &self,
        subscription: SubscriptionId,
        status: Option<DeliveryStatus>,
        before: Option<DeliveryId>,
        limit: u32,
    ) -> Result<Vec<Delivery>, StoreError> {
        self.inner
            .deliveries(subscription, status, before, limit)
            .await
    }
}

#[async_trait]
impl UserStore for FaultyStore {
    async fn insert_user(&self, user: &User) -> Result<(), StoreError> {
        self.inner.insert_user(user).await
    }
    async fn user_by_email(&self, email: &Email) -> Result<Option<User>, StoreError> {
        self.inner.user_by_email(email).await
    }
}

#[async_trait]
impl Store for FaultyStore {
    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
    async fn close(&self) {
        self.inner.close().await;
    }
}

/// The in-process ledger behind the fault plan: decisions may fail (as an
/// unreachable ledger would), and a release may be lost, leaving the units
/// held until the ledger is rebuilt from the store (docs/design.md I2).
pub struct FaultyLedger {
    inner: Arc<dyn StockLedger>,
    plan: Arc<FaultPlan>,
}

impl FaultyLedger {
    pub fn new(inner: Arc<dyn StockLedger>, plan: Arc<FaultPlan>) -> Self {
        Self { inner, plan }
    }
}

#[async_trait]
impl StockLedger for FaultyLedger {
    async fn open_sale(&self, sale: &Sale) -> Result<(), LedgerError> {
        self.inner.open_sale(sale).await
    }
    async fn amend_sale(&self, sale: &Sale) -> Result<(), LedgerError> {
        self.inner.amend_sale(sale).await
    }
    async fn decide(&self, attempt: &Attempt) -> Result<Decision, LedgerError> {
        self.plan
            .guard(self.inner.decide(attempt), ledger_error)
            .await
    }
    async fn settle(&self, attempt: &Attempt, settlement: Settlement) -> Result<(), LedgerError> {
        // Memory cannot fail here; a dead process's ledger is thrown away.
        self.inner.settle(attempt, settlement).await
    }
    async fn release(&self, sale: SaleId, user: &UserId, quantity: u32) -> Result<(), LedgerError> {
        let result = self
            .plan
            .guard(self.inner.release(sale, user, quantity), ledger_error)
            .await;
        if result.is_err() {
            self.plan.state().lost_releases += 1;
        }
        result
    }
    async fn remaining(&self, sale: SaleId) -> Result<Option<u64>, LedgerError> {
        self.inner.remaining(sale).await
    }
    async fn reservations_before(
        &self,
        before: Timestamp,
    ) -> Result<Vec<Reservation>, LedgerError> {
        self.inner.reservations_before(before).await
    }
    async fn restore(
        &self,
        sales: Vec<SaleSnapshot>,
        keys: Vec<KeyRecord>,
        now: Timestamp,
    ) -> Result<(), LedgerError> {
        self.inner.restore(sales, keys, now).await
    }
}
