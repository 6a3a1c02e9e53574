//! Stampede's store of record on PostgreSQL (cluster mode, docs/design.md
//! §2): the same [`Store`] port as the embedded SQLite store, with the
//! same schema and the same answers — the contract suite runs on both.
//!
//! - [`PgStore::connect`] opens a pool (deadpool, `settings.rs`) and brings
//!   the schema up to date under an advisory lock (`migrations.rs`, SQL in
//!   `migrations/`), so nodes starting together migrate once.
//! - Each write is one transaction from the pool. The purchase path's group
//!   commit hands a batch of orders to [`OrderStore::commit_orders`], which
//!   commits them in one set-based transaction (`orders.rs`).
//! - Events go to the outbox in their change's transaction, in commit order
//!   (`outbox.rs` says how); `rows.rs` turns rows back into domain values and
//!   `error.rs` errors into the port's [`StoreError`].
//!
//! Where SQLite's single writer made a read-then-write atomic, these use row
//! locks (`FOR UPDATE`) or compare-and-set updates, so any number of nodes
//! can write at once.

mod catalog;
mod error;
mod migrations;
mod orders;
mod outbox;
mod payments;
mod rows;
mod settings;
mod sql;
#[cfg(feature = "testing")]
pub mod testing;
mod users;
mod webhooks;

use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use deadpool_postgres::{Hook, Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use stampede_app::ports::{
    AttemptResult, CancelOutcome, CatalogStore, CommitOutcome, DueDelivery, KeyRecord, OrderStore,
    OutboxStore, PayOutcome, PaymentStore, Probe, SaleCounts, SaleSnapshot, SaleUpdate,
    SettleOutcome, Store, StoreError, StoreGuard, StoredEvent, UserStore, WebhookStore,
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
use tokio_postgres::IsolationLevel;

pub use settings::PgSettings;

use error::Context;

/// The store of record on PostgreSQL: a pool of connections, any number of
/// nodes on one database.
pub struct PgStore {
    pool: Pool,
    /// Circuit breakers in front of reads and writes (`StoreGuard`).
    reads: StoreGuard,
    writes: StoreGuard,
    closed: AtomicBool,
    /// Dropped after the pool: whatever must outlive the connections (a test
    /// database's teardown).
    _keep: Option<Box<dyn Send + Sync>>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("pool", &self.pool.status())
            .finish_non_exhaustive()
    }
}

/// Runs `$body` (an expression that may `.await` on `$tx`, giving a
/// `Result`) in one read-write transaction and commits it, through the
/// write breaker.
macro_rules! in_tx {
    ($store:expr, $what:expr, |$tx:ident| $body:expr) => {{
        let what = $what;
        $store
            .writes
            .run(what, async {
                let mut client = $store.client(what).await?;
                let $tx = client.transaction().await.context(what)?;
                let out = $body?;
                $tx.commit().await.context(what)?;
                Ok(out)
            })
            .await
    }};
}

/// Runs `$body` on a connection from the pool, outside a transaction,
/// through the breaker `$guard` (`reads` or `writes`).
macro_rules! on_client {
    ($store:expr, $guard:ident, $what:expr, |$client:ident| $body:expr) => {{
        let what = $what;
        $store
            .$guard
            .run(what, async {
                let $client = $store.client(what).await?;
                $body
            })
            .await
    }};
}

/// The same in a read-only repeatable-read transaction: several reads that
/// must see one snapshot.
macro_rules! in_snapshot {
    ($store:expr, $what:expr, |$tx:ident| $body:expr) => {{
        let what = $what;
        $store
            .reads
            .run(what, async {
                let mut client = $store.client(what).await?;
                let $tx = client
                    .build_transaction()
                    .isolation_level(IsolationLevel::RepeatableRead)
                    .read_only(true)
                    .start()
                    .await
                    .context(what)?;
                let out = $body?;
                $tx.commit().await.context(what)?;
                Ok(out)
            })
            .await
    }};
}

impl PgStore {
    /// Opens a pool on `settings.url` and migrates the schema. Fails with
    /// `Unavailable` if the database cannot be reached or was written by a
    /// newer build.
    pub async fn connect(settings: &PgSettings) -> Result<Self, StoreError> {
        let mut config = tokio_postgres::Config::from_str(&settings.url)
            .map_err(|err| StoreError::unavailable_because("the database url is not valid", err))?;
        let timeout = format!(
            "-c statement_timeout={}",
            settings.statement_timeout.as_millis()
        );
        let options = match config.get_options() {
            Some(given) => format!("{given} {timeout}"),
            None => timeout,
        };
        config.options(&options);
        if config.get_application_name().is_none() {
            config.application_name("stampede");
        }
        config.connect_timeout(settings.acquire_timeout);
        let manager = Manager::from_config(
            config,
            tokio_postgres::NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let opened = metrics::counter!(
            "stampede_dependency_connections_opened_total",
            "dependency" => "postgres"
        );
        let pool = Pool::builder(manager)
            .max_size(settings.pool_size.max(1))
            // Opened beyond the pool's size means connections were lost.
            .post_create(Hook::sync_fn(move |_, _| {
                opened.increment(1);
                Ok(())
            }))
            .wait_timeout(Some(settings.acquire_timeout))
            .create_timeout(Some(settings.acquire_timeout))
            .recycle_timeout(Some(settings.acquire_timeout))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|err| StoreError::unavailable_because("building the pool", err))?;
        let store = Self {
            pool,
            reads: StoreGuard::new("database_read"),
            writes: StoreGuard::new("database_write"),
            closed: AtomicBool::new(false),
            _keep: None,
        };
        let mut client = store.client("connecting").await?;
        let found = migrations::apply(&mut client).await?;
        tracing::info!(
            pool_size = settings.pool_size,
            schema_found = found,
            schema = migrations::LATEST,
            "opened postgres store"
        );
        Ok(store)
    }

    /// Keeps `value` until the store is dropped, after its connections.
    #[doc(hidden)]
    pub fn keep(mut self, value: impl Send + Sync + 'static) -> Self {
        self._keep = Some(Box::new(value));
        self
    }

    /// Connections open and idle, for metrics and readiness.
    pub fn pool_status(&self) -> (usize, usize) {
        let status = self.pool.status();
        (status.size, status.available)
    }

    async fn client(&self, what: &str) -> Result<Object, StoreError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(error::closed());
        }
        // Waiting for a connection takes no longer than the request that
        // asked has left (`stampede_flow::deadline::scope`).
        let mut timeouts = self.pool.timeouts();
        if let Some(deadline) = stampede_flow::deadline::current() {
            let left = deadline.remaining();
            timeouts.wait = Some(timeouts.wait.map_or(left, |wait| wait.min(left)));
        }
        self.pool.timeout_get(&timeouts).await.context(what)
    }
}

#[async_trait]
impl CatalogStore for PgStore {
    async fn insert_product(&self, product: &Product) -> Result<(), StoreError> {
        in_tx!(self, "inserting product", |tx| catalog::insert_product(
            &tx, product
        )
        .await)
    }

    async fn product(&self, id: ProductId) -> Result<Option<Product>, StoreError> {
        on_client!(self, reads, "reading product", |client| catalog::product(
            &client, id
        )
        .await)
    }

    async fn products(
        &self,
        after: Option<ProductId>,
        limit: u32,
    ) -> Result<Vec<Product>, StoreError> {
        on_client!(self, reads, "listing products", |client| catalog::products(
            &client, after, limit
        )
        .await)
    }

    async fn insert_sale(&self, sale: &Sale) -> Result<(), StoreError> {
        in_tx!(self, "inserting sale", |tx| catalog::insert_sale(&tx, sale)
            .await)
    }

    async fn sale(&self, id: SaleId) -> Result<Option<Sale>, StoreError> {
        on_client!(self, reads, "reading sale", |client| catalog::sale(
            &client, id
        )
        .await)
    }

    async fn sale_snapshots(&self) -> Result<Vec<SaleSnapshot>, StoreError> {
        in_snapshot!(self, "reading sale snapshots", |tx| {
            catalog::sale_snapshots(&tx).await
        })
    }

    async fn update_sale(
        &self,
        current: &Sale,
        next: &Sale,
        control: SaleControl,
        at: Timestamp,
    ) -> Result<SaleUpdate, StoreError> {
        in_tx!(self, "updating sale", |tx| catalog::update_sale(
            &tx, current, next, control, at
        )
        .await)
    }

    async fn sale_versions(&self) -> Result<Vec<(SaleId, u64)>, StoreError> {
        on_client!(self, reads, "reading sale versions", |client| {
            catalog::sale_versions(&client).await
        })
    }
}

#[async_trait]
impl OrderStore for PgStore {
    #[tracing::instrument(level = "debug", skip_all, fields(orders = orders.len()))]
    async fn commit_traced_orders(
        &self,
        orders: &[Order],
        traces: &[Option<TraceParent>],
    ) -> Result<Vec<CommitOutcome>, StoreError> {
        if orders.is_empty() {
            return Ok(Vec::new());
        }
        in_tx!(self, "committing orders", |tx| orders::commit(
            &tx, orders, traces
        )
        .await)
    }

    async fn order(&self, id: OrderId) -> Result<Option<Order>, StoreError> {
        on_client!(self, reads, "reading order", |client| orders::order(
            &client, id
        )
        .await)
    }

    async fn order_by_key(
        &self,
        user: &UserId,
        key: &IdempotencyKey,
    ) -> Result<Option<Order>, StoreError> {
        on_client!(self, reads, "reading order by idempotency key", |client| {
            orders::by_key(&client, user, key).await
        })
    }

    async fn orders_of(
        &self,
        user: &UserId,
        before: Option<OrderId>,
        limit: u32,
    ) -> Result<Vec<Order>, StoreError> {
        on_client!(self, reads, "listing a user's orders", |client| {
            orders::orders_of(&client, user, before, limit).await
        })
    }

    #[tracing::instrument(level = "debug", skip_all, fields(order_id = %id))]
    async fn cancel_order(&self, id: OrderId, now: Timestamp) -> Result<CancelOutcome, StoreError> {
        in_tx!(self, "cancelling order", |tx| orders::cancel(&tx, id, now)
            .await)
    }

    async fn sale_counts(&self, sale: SaleId) -> Result<SaleCounts, StoreError> {
        in_snapshot!(self, "counting a sale's orders", |tx| {
            orders::sale_counts(&tx, sale).await
        })
    }

    async fn keys_since(&self, since: Timestamp) -> Result<Vec<KeyRecord>, StoreError> {
        on_client!(self, reads, "listing recent idempotency keys", |client| {
            orders::keys_since(&client, since).await
        })
    }

    #[tracing::instrument(level = "debug", skip_all, fields(limit = limit))]
    async fn expire_due(&self, now: Timestamp, limit: u32) -> Result<Vec<Order>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        in_tx!(self, "expiring due orders", |tx| orders::expire_due(
            &tx, now, limit
        )
        .await)
    }
}

#[async_trait]
impl PaymentStore for PgStore {
    #[tracing::instrument(level = "debug", skip_all, fields(order_id = %payment.order_id, payment_id = %payment.id))]
    async fn request_payment(&self, payment: &Payment) -> Result<PayOutcome, StoreError> {
        in_tx!(self, "requesting payment", |tx| payments::request(
            &tx, payment
        )
        .await)
    }

    async fn payment(&self, id: PaymentId) -> Result<Option<Payment>, StoreError> {
        on_client!(self, reads, "reading payment", |client| payments::payment(
            &client, id
        )
        .await)
    }

    async fn payments_of(&self, order: OrderId) -> Result<Vec<Payment>, StoreError> {
        on_client!(self, reads, "listing an order's payments", |client| {
            payments::payments_of(&client, order).await
        })
    }

    async fn requested_before(
        &self,
        before: Timestamp,
        limit: u32,
    ) -> Result<Vec<PaymentId>, StoreError> {
        on_client!(self, reads, "listing payments still requested", |client| {
            payments::requested_before(&client, before, limit).await
        })
    }

    #[tracing::instrument(level = "debug", skip_all, fields(payment_id = %id))]
    async fn mark_submitted(
        &self,
        id: PaymentId,
        provider_ref: &str,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        in_tx!(self, "marking a payment submitted", |tx| {
            payments::mark_submitted(&tx, id, provider_ref, now).await
        })
    }

    #[tracing::instrument(level = "debug", skip_all, fields(payment_id = %id))]
    async fn settle_payment(
        &self,
        id: PaymentId,
        result: &PaymentResult,
        now: Timestamp,
    ) -> Result<SettleOutcome, StoreError> {
        in_tx!(self, "settling payment", |tx| payments::settle(
            &tx, id, result, now
        )
        .await)
    }
}

#[async_trait]
impl OutboxStore for PgStore {
    async fn events_after(&self, after: i64, limit: u32) -> Result<Vec<StoredEvent>, StoreError> {
        on_client!(self, reads, "reading the outbox", |client| {
            outbox::events_after(&client, after, limit).await
        })
    }

    async fn events_of(&self, aggregate_id: &str) -> Result<Vec<StoredEvent>, StoreError> {
        on_client!(self, reads, "reading an aggregate's events", |client| {
            outbox::events_of(&client, aggregate_id).await
        })
    }

    async fn last_seq(&self) -> Result<i64, StoreError> {
        on_client!(self, reads, "reading the last outbox position", |client| {
            outbox::last_seq(&client).await
        })
    }

    async fn cursor(&self, consumer: &str) -> Result<i64, StoreError> {
        on_client!(self, reads, "reading a consumer's cursor", |client| {
            outbox::cursor(&client, consumer).await
        })
    }

    async fn save_cursor(&self, consumer: &str, seq: i64) -> Result<(), StoreError> {
        on_client!(self, writes, "saving a consumer's cursor", |client| {
            outbox::save_cursor(&client, consumer, seq).await
        })
    }
}

#[async_trait]
impl WebhookStore for PgStore {
    async fn insert_subscription(&self, subscription: &Subscription) -> Result<(), StoreError> {
        on_client!(self, writes, "inserting webhook subscription", |client| {
            webhooks::insert_subscription(&client, subscription).await
        })
    }

    async fn subscription(&self, id: SubscriptionId) -> Result<Option<Subscription>, StoreError> {
        on_client!(self, reads, "reading webhook subscription", |client| {
            webhooks::subscription(&client, id).await
        })
    }

    async fn subscriptions(&self) -> Result<Vec<Subscription>, StoreError> {
        on_client!(self, reads, "listing webhook subscriptions", |client| {
            webhooks::subscriptions(&client).await
        })
    }

    async fn replace_subscription_secret(
        &self,
        id: SubscriptionId,
        old: &StoredSecret,
        new: &StoredSecret,
    ) -> Result<bool, StoreError> {
        on_client!(self, writes, "replacing a webhook secret", |client| {
            webhooks::replace_secret(&client, id, old, new).await
        })
    }

    async fn delete_subscription(&self, id: SubscriptionId) -> Result<bool, StoreError> {
        on_client!(self, writes, "deleting webhook subscription", |client| {
            webhooks::delete_subscription(&client, id).await
        })
    }

    async fn enqueue_deliveries(
        &self,
        event: &StoredEvent,
        subscriptions: &[SubscriptionId],
        now: Timestamp,
    ) -> Result<(), StoreError> {
        if subscriptions.is_empty() {
            return Ok(());
        }
        on_client!(self, writes, "scheduling webhook deliveries", |client| {
            webhooks::enqueue_deliveries(&client, event, subscriptions, now).await
        })
    }

    async fn claim_due_deliveries(
        &self,
        now: Timestamp,
        limit: u32,
        lease_until: Timestamp,
    ) -> Result<Vec<DueDelivery>, StoreError> {
        in_tx!(self, "claiming due webhook deliveries", |tx| {
            webhooks::claim_due_deliveries(&tx, now, limit, lease_until).await
        })
    }

    async fn record_attempt(
        &self,
        id: DeliveryId,
        result: &AttemptResult,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        on_client!(
            self,
            writes,
            "recording a webhook delivery attempt",
            |client| webhooks::record_attempt(&client, id, result, now).await
        )
    }

    async fn deliveries(
        &self,
        subscription: SubscriptionId,
        status: Option<DeliveryStatus>,
        before: Option<DeliveryId>,
        limit: u32,
    ) -> Result<Vec<Delivery>, StoreError> {
        on_client!(self, reads, "listing webhook deliveries", |client| {
            webhooks::deliveries(&client, subscription, status, before, limit).await
        })
    }
}

#[async_trait]
impl UserStore for PgStore {
    async fn insert_user(&self, user: &User) -> Result<(), StoreError> {
        in_tx!(self, "inserting user", |tx| users::insert_user(&tx, user)
            .await)
    }

    async fn user_by_email(&self, email: &Email) -> Result<Option<User>, StoreError> {
        on_client!(self, reads, "reading user by e-mail", |client| {
            users::user_by_email(&client, email).await
        })
    }
}

/// Readiness and pool gauges: `stampede_db_pool_connections{state}` (open,
/// idle) and `stampede_db_pool_waiting` (requests waiting for one).
#[async_trait]
impl Probe for PgStore {
    fn name(&self) -> &'static str {
        "store"
    }

    async fn check(&self) -> Result<(), String> {
        self.ping().await.map_err(|err| err.to_string())
    }

    fn record_gauges(&self) {
        let status = self.pool.status();
        metrics::gauge!("stampede_db_pool_connections", "state" => "open").set(status.size as f64);
        metrics::gauge!("stampede_db_pool_connections", "state" => "idle")
            .set(status.available as f64);
        metrics::gauge!("stampede_db_pool_waiting").set(status.waiting as f64);
    }
}

#[async_trait]
impl Store for PgStore {
    async fn ping(&self) -> Result<(), StoreError> {
        let client = self.client("pinging").await?;
        sql::execute(&client, "SELECT 1", &[], "pinging").await?;
        Ok(())
    }

    /// Stops taking work and closes the pool. Each write was its own
    /// transaction, committed before it answered: nothing is queued here.
    async fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.pool.close();
        tracing::info!("closed postgres store");
    }
}
