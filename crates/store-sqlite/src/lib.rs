//! Stampede's embedded store of record: the [`Store`] port on one SQLite file in
//! WAL mode (docs/design.md §2 and §5, embedded mode).
//!
//! A tour of the modules, in the order a write travels:
//!
//! - [`SqliteStore::open`] takes an exclusive lock on `<db>.lock` (`lock.rs`),
//!   makes the database's files the owner's only (`files.rs`), opens the
//!   write connection (`connection.rs`), brings the schema up to date
//!   (`migrations.rs`, SQL in `migrations/`), opens the read-only connections
//!   (`readers.rs`) and starts the writer thread (`writer.rs`) with its
//!   checkpoint thread (`checkpointer.rs`), which copies the log back into
//!   the database beside the writer instead of inside its commits.
//! - Every write is a command to the writer thread, which group-commits: all
//!   commands waiting at that moment share one transaction and one fsync, each
//!   in its own savepoint, answered only after `COMMIT`.
//! - The SQL lives per area: `catalog.rs` (products, sales, ledger snapshots),
//!   `orders.rs` (group commit of orders, cancel, the expiry sweep, order
//!   reads), `payments.rs` (attempts and the provider's answers),
//!   `webhooks.rs` (subscriptions and deliveries) and `users.rs`. Each change
//!   also records its event in the outbox (`outbox.rs`), in the same
//!   transaction (I8); `outbox.rs` also reads the outbox as a log by `seq` and
//!   keeps the consumers' cursors.
//! - `rows.rs` turns rows back into domain values through the domain's
//!   parsers, and `error.rs` turns SQLite errors into the port's
//!   [`StoreError`].
//!
//! Durability is a setting: [`Synchronous::Full`] (the default) fsyncs every
//! commit, so an answered write survives power loss; [`Synchronous::Normal`]
//! survives a process crash only.

mod catalog;
mod checkpointer;
mod connection;
mod error;
mod files;
mod lock;
mod migrations;
mod orders;
mod outbox;
mod payments;
mod readers;
mod rows;
mod settings;
mod users;
mod webhooks;
mod writer;

use stampede_app::failure::Chain;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use stampede_app::ports::{
    AttemptResult, CancelOutcome, CatalogStore, CommitOutcome, DueDelivery, KeyRecord, OrderStore,
    OutboxStore, PayOutcome, PaymentStore, SaleCounts, SaleSnapshot, SaleUpdate, SettleOutcome,
    Store, StoreError, StoredEvent, UserStore, WebhookStore,
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

pub use settings::{SqliteSettings, Synchronous};

use checkpointer::Checkpointer;
use readers::Readers;
use writer::Writer;

/// The store of record on a SQLite file: one writer thread that group-commits,
/// a few read-only connections beside it.
///
/// One process at a time: [`open`](Self::open) fails while another store (in
/// this process or another) has the file open. [`close`](Store::close) — or
/// dropping the store — commits what is queued, checkpoints and releases the
/// file.
pub struct SqliteStore {
    path: PathBuf,
    /// Declared before `readers` so it is dropped first: the last group commits
    /// and checkpoints while readers are idle.
    writer: Writer,
    readers: Readers,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and takes exclusive
    /// use of it through an advisory lock on `<path>.lock`, held until the
    /// store is closed or dropped. The directory must exist; the file must be a
    /// file (not `:memory:`: readers open it again). Blocking: call it once at
    /// start-up.
    ///
    /// Fails with `Unavailable` if another store holds the file ("another
    /// process is using …"), if the file cannot be opened, or if it was written
    /// by a newer build; with `Corrupt` if it is not a usable database.
    pub fn open(path: &Path, settings: SqliteSettings) -> Result<Self, StoreError> {
        let lock = lock::acquire(path)?;
        files::make_private(path)?;
        let mut conn = connection::open_writer(path, settings.synchronous)?;
        let found = migrations::apply(&mut conn)?;
        let checkpointer = Checkpointer::start(path, settings.synchronous, &mut conn)?;
        let readers = Readers::open(path.to_path_buf(), settings.readers)?;
        let writer = Writer::start(conn, checkpointer, lock)?;
        tracing::info!(
            path = %path.display(),
            synchronous = settings.synchronous.as_str(),
            readers = settings.readers.max(1),
            schema_found = found,
            schema = migrations::LATEST,
            "opened sqlite store"
        );
        Ok(Self {
            path: path.to_path_buf(),
            writer,
            readers,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[async_trait]
impl CatalogStore for SqliteStore {
    async fn insert_product(&self, product: &Product) -> Result<(), StoreError> {
        let product = product.clone();
        self.writer
            .run("inserting product", move |conn| {
                catalog::insert_product(conn, &product)
            })
            .await
    }

    async fn product(&self, id: ProductId) -> Result<Option<Product>, StoreError> {
        self.readers
            .run("reading product", move |conn| catalog::product(conn, id))
            .await
    }

    async fn products(
        &self,
        after: Option<ProductId>,
        limit: u32,
    ) -> Result<Vec<Product>, StoreError> {
        self.readers
            .run("listing products", move |conn| {
                catalog::products(conn, after, limit)
            })
            .await
    }

    async fn insert_sale(&self, sale: &Sale) -> Result<(), StoreError> {
        let sale = sale.clone();
        self.writer
            .run("inserting sale", move |conn| {
                catalog::insert_sale(conn, &sale)
            })
            .await
    }

    async fn sale(&self, id: SaleId) -> Result<Option<Sale>, StoreError> {
        self.readers
            .run("reading sale", move |conn| catalog::sale(conn, id))
            .await
    }

    async fn sale_snapshots(&self) -> Result<Vec<SaleSnapshot>, StoreError> {
        self.readers
            .run("reading sale snapshots", catalog::sale_snapshots)
            .await
    }

    async fn update_sale(
        &self,
        current: &Sale,
        next: &Sale,
        control: SaleControl,
        at: Timestamp,
    ) -> Result<SaleUpdate, StoreError> {
        let (current, next) = (current.clone(), next.clone());
        self.writer
            .run("updating sale", move |conn| {
                catalog::update_sale(conn, &current, &next, control, at)
            })
            .await
    }

    async fn sale_versions(&self) -> Result<Vec<(SaleId, u64)>, StoreError> {
        self.readers
            .run("reading sale versions", catalog::sale_versions)
            .await
    }
}

#[async_trait]
impl OrderStore for SqliteStore {
    #[tracing::instrument(level = "debug", skip_all, fields(orders = orders.len()))]
    async fn commit_traced_orders(
        &self,
        orders: &[Order],
        traces: &[Option<TraceParent>],
    ) -> Result<Vec<CommitOutcome>, StoreError> {
        if orders.is_empty() {
            return Ok(Vec::new());
        }
        let orders = orders.to_vec();
        let traces = traces.to_vec();
        self.writer
            .run("committing orders", move |conn| {
                orders::commit(conn, &orders, &traces)
            })
            .await
    }

    async fn order(&self, id: OrderId) -> Result<Option<Order>, StoreError> {
        self.readers
            .run("reading order", move |conn| orders::order(conn, id))
            .await
    }

    async fn order_by_key(
        &self,
        user: &UserId,
        key: &IdempotencyKey,
    ) -> Result<Option<Order>, StoreError> {
        let (user, key) = (user.clone(), key.clone());
        self.readers
            .run("reading order by idempotency key", move |conn| {
                orders::by_key(conn, &user, &key)
            })
            .await
    }

    async fn orders_of(
        &self,
        user: &UserId,
        before: Option<OrderId>,
        limit: u32,
    ) -> Result<Vec<Order>, StoreError> {
        let user = user.clone();
        self.readers
            .run("listing a user's orders", move |conn| {
                orders::orders_of(conn, &user, before, limit)
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(order_id = %id))]
    async fn cancel_order(&self, id: OrderId, now: Timestamp) -> Result<CancelOutcome, StoreError> {
        self.writer
            .run("cancelling order", move |conn| {
                orders::cancel(conn, id, now)
            })
            .await
    }

    async fn sale_counts(&self, sale: SaleId) -> Result<SaleCounts, StoreError> {
        self.readers
            .run("counting a sale's orders", move |conn| {
                orders::sale_counts(conn, sale)
            })
            .await
    }

    async fn keys_since(&self, since: Timestamp) -> Result<Vec<KeyRecord>, StoreError> {
        self.readers
            .run("listing recent idempotency keys", move |conn| {
                orders::keys_since(conn, since)
            })
            .await
    }

    /// One writer command: the sweep's select and every compare-and-set share
    /// one transaction (and its group commit).
    #[tracing::instrument(level = "debug", skip_all, fields(limit = limit))]
    async fn expire_due(&self, now: Timestamp, limit: u32) -> Result<Vec<Order>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        self.writer
            .run("expiring due orders", move |conn| {
                orders::expire_due(conn, now, limit)
            })
            .await
    }
}

#[async_trait]
impl PaymentStore for SqliteStore {
    #[tracing::instrument(level = "debug", skip_all, fields(order_id = %payment.order_id, payment_id = %payment.id))]
    async fn request_payment(&self, payment: &Payment) -> Result<PayOutcome, StoreError> {
        let payment = payment.clone();
        self.writer
            .run("requesting payment", move |conn| {
                payments::request(conn, &payment)
            })
            .await
    }

    async fn payment(&self, id: PaymentId) -> Result<Option<Payment>, StoreError> {
        self.readers
            .run("reading payment", move |conn| payments::payment(conn, id))
            .await
    }

    async fn payments_of(&self, order: OrderId) -> Result<Vec<Payment>, StoreError> {
        self.readers
            .run("listing an order's payments", move |conn| {
                payments::payments_of(conn, order)
            })
            .await
    }

    async fn requested_before(
        &self,
        before: Timestamp,
        limit: u32,
    ) -> Result<Vec<PaymentId>, StoreError> {
        self.readers
            .run("listing payments still requested", move |conn| {
                payments::requested_before(conn, before, limit)
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(payment_id = %id))]
    async fn mark_submitted(
        &self,
        id: PaymentId,
        provider_ref: &str,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let provider_ref = provider_ref.to_owned();
        self.writer
            .run("marking a payment submitted", move |conn| {
                payments::mark_submitted(conn, id, &provider_ref, now)
            })
            .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(payment_id = %id))]
    async fn settle_payment(
        &self,
        id: PaymentId,
        result: &PaymentResult,
        now: Timestamp,
    ) -> Result<SettleOutcome, StoreError> {
        let result = result.clone();
        self.writer
            .run("settling payment", move |conn| {
                payments::settle(conn, id, &result, now)
            })
            .await
    }
}

#[async_trait]
impl OutboxStore for SqliteStore {
    async fn events_after(&self, after: i64, limit: u32) -> Result<Vec<StoredEvent>, StoreError> {
        self.readers
            .run("reading the outbox", move |conn| {
                outbox::events_after(conn, after, limit)
            })
            .await
    }

    async fn events_of(&self, aggregate_id: &str) -> Result<Vec<StoredEvent>, StoreError> {
        let aggregate_id = aggregate_id.to_owned();
        self.readers
            .run("reading an aggregate's events", move |conn| {
                outbox::events_of(conn, &aggregate_id)
            })
            .await
    }

    async fn last_seq(&self) -> Result<i64, StoreError> {
        self.readers
            .run("reading the last outbox position", outbox::last_seq)
            .await
    }

    async fn cursor(&self, consumer: &str) -> Result<i64, StoreError> {
        let consumer = consumer.to_owned();
        self.readers
            .run("reading a consumer's cursor", move |conn| {
                outbox::cursor(conn, &consumer)
            })
            .await
    }

    async fn save_cursor(&self, consumer: &str, seq: i64) -> Result<(), StoreError> {
        let consumer = consumer.to_owned();
        self.writer
            .run("saving a consumer's cursor", move |conn| {
                outbox::save_cursor(conn, &consumer, seq)
            })
            .await
    }
}

#[async_trait]
impl WebhookStore for SqliteStore {
    async fn insert_subscription(&self, subscription: &Subscription) -> Result<(), StoreError> {
        let subscription = subscription.clone();
        self.writer
            .run("inserting webhook subscription", move |conn| {
                webhooks::insert_subscription(conn, &subscription)
            })
            .await
    }

    async fn subscription(&self, id: SubscriptionId) -> Result<Option<Subscription>, StoreError> {
        self.readers
            .run("reading webhook subscription", move |conn| {
                webhooks::subscription(conn, id)
            })
            .await
    }

    async fn subscriptions(&self) -> Result<Vec<Subscription>, StoreError> {
        self.readers
            .run("listing webhook subscriptions", webhooks::subscriptions)
            .await
    }

    async fn replace_subscription_secret(
        &self,
        id: SubscriptionId,
        old: &StoredSecret,
        new: &StoredSecret,
    ) -> Result<bool, StoreError> {
        let (old, new) = (old.clone(), new.clone());
        self.writer
            .run("replacing a webhook secret", move |conn| {
                webhooks::replace_secret(conn, id, &old, &new)
            })
            .await
    }

    async fn delete_subscription(&self, id: SubscriptionId) -> Result<bool, StoreError> {
        self.writer
            .run("deleting webhook subscription", move |conn| {
                webhooks::delete_subscription(conn, id)
            })
            .await
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
        let event = event.clone();
        let subscriptions = subscriptions.to_vec();
        self.writer
            .run("scheduling webhook deliveries", move |conn| {
                webhooks::enqueue_deliveries(conn, &event, &subscriptions, now)
            })
            .await
    }

    async fn claim_due_deliveries(
        &self,
        now: Timestamp,
        limit: u32,
        lease_until: Timestamp,
    ) -> Result<Vec<DueDelivery>, StoreError> {
        self.writer
            .run("claiming due webhook deliveries", move |conn| {
                webhooks::claim_due_deliveries(conn, now, limit, lease_until)
            })
            .await
    }

    async fn record_attempt(
        &self,
        id: DeliveryId,
        result: &AttemptResult,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let result = result.clone();
        self.writer
            .run("recording a webhook delivery attempt", move |conn| {
                webhooks::record_attempt(conn, id, &result, now)
            })
            .await
    }

    async fn deliveries(
        &self,
        subscription: SubscriptionId,
        status: Option<DeliveryStatus>,
        before: Option<DeliveryId>,
        limit: u32,
    ) -> Result<Vec<Delivery>, StoreError> {
        self.readers
            .run("listing webhook deliveries", move |conn| {
                webhooks::deliveries(conn, subscription, status, before, limit)
            })
            .await
    }
}

#[async_trait]
impl UserStore for SqliteStore {
    async fn insert_user(&self, user: &User) -> Result<(), StoreError> {
        let user = user.clone();
        self.writer
            .run("inserting user", move |conn| {
                users::insert_user(conn, &user)
            })
            .await
    }

    async fn user_by_email(&self, email: &Email) -> Result<Option<User>, StoreError> {
        let email = email.clone();
        self.readers
            .run("reading user by e-mail", move |conn| {
                users::user_by_email(conn, &email)
            })
            .await
    }
}

#[async_trait]
impl Store for SqliteStore {
    /// A read round trip, after checking that the writer still takes
    /// commands: a store that can read but not write is not ready.
    async fn ping(&self) -> Result<(), StoreError> {
        self.writer.check()?;
        self.readers
            .run("pinging", |conn| {
                conn.query_row("SELECT 1", [], |_| Ok(()))
                    .map_err(|err| error::map("pinging", err))
            })
            .await
    }

    /// Stops taking writes, waits until the writer has committed what was
    /// queued, checkpointed and released the file, then closes the readers.
    /// Later calls answer `Unavailable("store closed")`.
    async fn close(&self) {
        if let Some(thread) = self.writer.stop() {
            match tokio::task::spawn_blocking(move || thread.join()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => tracing::error!("the sqlite writer thread panicked"),
                Err(err) => {
                    tracing::error!(error = %Chain(&err), "waiting for the sqlite writer failed")
                }
            }
        }
        self.readers.close();
        tracing::info!(path = %self.path.display(), "closed sqlite store");
    }
}
