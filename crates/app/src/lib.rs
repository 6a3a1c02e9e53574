//! Stampede's application layer: the services the HTTP edge calls, the ports
//! (traits) they use to reach storage, the stock ledger, the event bus, the
//! payment provider and outbound webhooks, and the background workers. The
//! adapters live in their own crates, the in-process ones of embedded mode in
//! `stampede-inprocess`.
//!
//! - [`ports`]: the traits adapters implement.
//! - [`ledger`]: the repair that rebuilds a sale any ledger lost.
//! - [`workers`]: every background loop, run by one driver.
//! - [`purchase`]: the purchase path and its group-commit stage.
//! - [`catalog`], [`orders`], [`accounts`], [`payments`], [`webhooks`]: the
//!   services; [`detail`]: the fan-out order view; [`live`]: events for SSE.
//! - [`auth`]: tokens, password hashes, webhook signatures.
//! - [`events`]: what the outbox records for each state change.
//! - [`App`]: all of it wired over one set of adapters.

pub mod accounts;
pub mod auth;
pub mod cache;
pub mod catalog;
pub mod detail;
pub mod error;
pub mod events;
pub mod failure;
pub mod ledger;
pub mod lifecycle;
pub mod live;
pub mod orders;
pub mod paging;
pub mod payments;
pub mod ports;
pub mod purchase;
pub mod webhooks;
pub mod workers;

use std::sync::Arc;
use std::time::Duration;

pub use error::AppError;

use accounts::AccountService;
use auth::{JwtKey, PasswordHasher, PasswordSettings};
use catalog::{CatalogService, SaleDirectory};
use detail::DetailService;
use ledger::LedgerRepair;
use lifecycle::Lifecycle;
use live::LiveEvents;
use orders::OrderService;
use payments::{PaymentService, PaymentSettings};
use ports::{
    Clock, EventBus, JobQueue, PaymentProvider, Probe, StockLedger, Store, StoreProbe,
    WebhookSender,
};
use purchase::{CommitSettings, PurchaseService};
use webhooks::{WebhookService, WebhookSettings};
use workers::{
    Background, ConsumerWorker, DeliveryWorker, ExpirySweeper, LiveFeed, PaymentFeeder,
    PaymentWorker, Reconciler, WebhookFanout,
};

/// Settings of the services, validated by the caller.
#[derive(Debug, Clone)]
pub struct AppSettings {
    pub commit: CommitSettings,
    pub passwords: PasswordSettings,
    /// How long a session token from `POST /sessions` lives.
    pub session_ttl_secs: u32,
    /// Winning keys of orders younger than this are loaded into the ledger's
    /// memory at start (the ledger keeps answers at least this long).
    pub key_retention_ms: i64,
    pub payments: PaymentSettings,
    pub webhooks: WebhookSettings,
    /// How often the expiry sweep runs.
    pub expiry_interval: Duration,
    /// The order detail view's budget.
    pub detail_budget: Duration,
    /// Run the background workers: payments, expiry, webhook fan-out and
    /// delivery (`worker` and `all` nodes).
    pub run_workers: bool,
    /// Feed live events to SSE streams (`api` and `all` nodes).
    pub run_live: bool,
    /// A reservation older than this whose order is not committed is taken
    /// for abandoned by a dead node (shared ledgers only).
    pub reservation_timeout: Duration,
    /// The catalog read caches.
    pub cache: cache::CacheSettings,
}

impl Default for AppSettings {
    fn default() -> Self {
        Self {
            commit: CommitSettings::default(),
            passwords: PasswordSettings::default(),
            session_ttl_secs: 3600,
            key_retention_ms: ledger::KeyMemorySettings::default().retention_ms,
            payments: PaymentSettings::default(),
            webhooks: WebhookSettings::default(),
            expiry_interval: Duration::from_millis(250),
            detail_budget: Duration::from_secs(2),
            run_workers: true,
            run_live: true,
            reservation_timeout: Duration::from_secs(30),
            cache: cache::CacheSettings::default(),
        }
    }
}

/// The adapters the app runs on, one per port.
pub struct Adapters {
    pub store: Arc<dyn Store>,
    pub ledger: Arc<dyn StockLedger>,
    pub bus: Arc<dyn EventBus>,
    /// Work the worker role shares out (payments to send).
    pub jobs: Arc<dyn JobQueue>,
    pub provider: Arc<dyn PaymentProvider>,
    pub sender: Arc<dyn WebhookSender>,
    pub clock: Arc<dyn Clock>,
    pub jwt: JwtKey,
    /// The dependencies readiness checks; empty: the store's ping alone.
    pub probes: Vec<Arc<dyn Probe>>,
    /// The shared read cache (L2) behind each catalog cache (cluster mode);
    /// `None`: the in-process caches alone.
    pub shared_cache: Option<Arc<dyn ports::SharedCache>>,
}

/// How one dependency answered a readiness check.
#[derive(Debug, Clone)]
pub struct Check {
    pub name: &'static str,
    pub result: Result<(), String>,
}

/// Every service, wired over one set of adapters, and the background workers.
pub struct App {
    pub catalog: Arc<CatalogService>,
    pub purchases: PurchaseService,
    pub orders: Arc<OrderService>,
    pub accounts: AccountService,
    pub payments: Arc<PaymentService>,
    pub webhooks: Arc<WebhookService>,
    pub detail: DetailService,
    pub live: Arc<LiveEvents>,
    pub expiry: Arc<ExpirySweeper>,
    pub lifecycle: Arc<Lifecycle>,
    pub jwt: JwtKey,
    pub clock: Arc<dyn Clock>,
    store: Arc<dyn Store>,
    probes: Vec<Arc<dyn Probe>>,
    background: Arc<Background>,
}

impl App {
    /// Rebuilds the ledger from the store, starts the commit workers and,
    /// unless disabled, the background workers.
    pub async fn start(
        adapters: Adapters,
        settings: AppSettings,
        background: Arc<Background>,
    ) -> Result<Self, AppError> {
        let Adapters {
            store,
            ledger,
            bus,
            jobs,
            provider,
            sender,
            clock,
            jwt,
            mut probes,
            shared_cache,
        } = adapters;
        if probes.is_empty() {
            probes.push(Arc::new(StoreProbe(store.clone())));
        }
        let lifecycle = Arc::new(Lifecycle::default());
        let now = clock.now();
        let snapshots = store.sale_snapshots().await?;
        let keys = store
            .keys_since(now.plus_millis(-settings.key_retention_ms))
            .await?;
        let sales: Vec<_> = snapshots.iter().map(|s| s.sale.clone()).collect();
        tracing::info!(
            sales = sales.len(),
            keys = keys.len(),
            "rebuilding the stock ledger from the store"
        );
        ledger.restore(snapshots, keys, now).await?;
        let directory = Arc::new(SaleDirectory::new(
            store.clone(),
            sales,
            settings.cache,
            shared_cache.clone(),
        ));
        let hasher = PasswordHasher::new(settings.passwords)?;
        let catalog = Arc::new(CatalogService::new(
            store.clone(),
            store.clone(),
            ledger.clone(),
            directory.clone(),
            clock.clone(),
            settings.cache,
            shared_cache,
        ));
        let orders = Arc::new(OrderService::new(
            store.clone(),
            store.clone(),
            ledger.clone(),
            bus.clone(),
            clock.clone(),
        ));
        let payments = Arc::new(PaymentService::new(
            store.clone(),
            bus.clone(),
            clock.clone(),
            settings.payments.clone(),
        ));
        let webhooks = Arc::new(WebhookService::new(store.clone(), clock.clone()));
        let ledger_for_workers = ledger.clone();
        let expiry = Arc::new(ExpirySweeper::new(
            store.clone(),
            ledger.clone(),
            bus.clone(),
            clock.clone(),
            settings.expiry_interval,
        ));
        let app = Self {
            purchases: PurchaseService::new(
                directory,
                Arc::new(LedgerRepair::new(
                    store.clone(),
                    store.clone(),
                    ledger,
                    clock.clone(),
                    settings.key_retention_ms,
                    background.spawner(),
                )),
                store.clone(),
                bus.clone(),
                clock.clone(),
                lifecycle.clone(),
                settings.commit,
            ),
            detail: DetailService::new(
                orders.clone(),
                catalog.clone(),
                store.clone(),
                store.clone(),
                settings.detail_budget,
            ),
            accounts: AccountService::new(
                store.clone(),
                hasher,
                jwt.clone(),
                settings.session_ttl_secs,
                clock.clone(),
            ),
            live: Arc::new(LiveEvents::new()),
            catalog,
            orders,
            payments,
            webhooks,
            expiry,
            lifecycle,
            jwt,
            clock,
            store,
            probes,
            background,
        };
        if settings.run_live {
            app.background
                .run(LiveFeed::new(app.live.clone(), bus.clone()));
        }
        if settings.run_workers {
            app.background.run(Reconciler::new(
                app.store.clone(),
                ledger_for_workers,
                app.clock.clone(),
                settings.reservation_timeout,
            ));
            app.start_workers(bus, jobs, provider, sender, settings.webhooks);
        }
        Ok(app)
    }

    fn start_workers(
        &self,
        bus: Arc<dyn EventBus>,
        jobs: Arc<dyn JobQueue>,
        provider: Arc<dyn PaymentProvider>,
        sender: Arc<dyn WebhookSender>,
        webhook_settings: WebhookSettings,
    ) {
        let background = &self.background;
        let feeder = Arc::new(PaymentFeeder::new(jobs.clone()));
        background.run(ConsumerWorker::new(bus.clone(), feeder));
        background.run(PaymentWorker::new(self.payments.clone(), provider, jobs));
        let fanout = Arc::new(WebhookFanout::new(self.webhooks.clone()));
        background.run(ConsumerWorker::new(bus, fanout));
        background.run(Arc::new(DeliveryWorker::new(
            self.webhooks.clone(),
            sender,
            webhook_settings,
        )));
        background.run(self.expiry.clone());
    }

    /// Checks every dependency at once, each within `budget`, and records
    /// `stampede_dependency_up` and `stampede_dependency_check_seconds`.
    pub async fn check_dependencies(&self, budget: Duration) -> Vec<Check> {
        let checks = self.probes.iter().map(|probe| async move {
            let started = std::time::Instant::now();
            let result = match tokio::time::timeout(budget, probe.check()).await {
                Ok(result) => result,
                Err(_) => Err(format!("no answer within {} ms", budget.as_millis())),
            };
            let name = probe.name();
            metrics::histogram!("stampede_dependency_check_seconds", "dependency" => name)
                .record(started.elapsed().as_secs_f64());
            metrics::gauge!("stampede_dependency_up", "dependency" => name)
                .set(if result.is_ok() { 1.0 } else { 0.0 });
            Check { name, result }
        });
        futures_util::future::join_all(checks).await
    }

    /// The driver of this node's background work, for adapters' own
    /// workers (the outbox relay) and for operators' reports.
    pub fn background(&self) -> &Arc<Background> {
        &self.background
    }

    /// The store of record, for operations and tests.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Sets every dependency's own gauges; for `/metrics`.
    pub fn record_dependency_gauges(&self) {
        for probe in &self.probes {
            probe.record_gauges();
        }
    }

    /// The last stage of shutdown: no new purchases, every queued order
    /// committed, the background workers at a safe point, the store closed.
    pub async fn shutdown(&self) {
        self.lifecycle.start_draining();
        self.purchases.shutdown().await;
        if !self.background.stop(Duration::from_secs(10)).await {
            tracing::warn!("background workers did not stop within 10 s");
        }
        self.store.close().await;
    }
}
