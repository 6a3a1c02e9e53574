//! The app over its adapters: the one place that builds every service and
//! decides which background workers a node runs (docs/design.md §10.3).

use std::sync::Arc;

use stampede_app::abuse::AbuseGuard;
use stampede_app::accounts::AccountService;
use stampede_app::auth::{JwtKey, PasswordHasher};
use stampede_app::catalog::{CatalogService, SaleDirectory};
use stampede_app::detail::DetailService;
use stampede_app::ledger::LedgerRepair;
use stampede_app::lifecycle::Lifecycle;
use stampede_app::live::LiveEvents;
use stampede_app::orders::OrderService;
use stampede_app::payments::PaymentService;
use stampede_app::ports::{
    CaptchaVerifier, Clock, EventBus, JobQueue, PaymentProvider, Probe, RoomBook, SharedCache,
    StockLedger, Store, StoreProbe, WebhookSender,
};
use stampede_app::purchase::{AnsweredKeys, PurchaseService};
use stampede_app::room::{TicketKey, WaitingRoom};
use stampede_app::webhooks::{SecretSealer, WebhookService, WebhookSettings};
use stampede_app::workers::{
    Background, ConsumerWorker, DeliveryWorker, ExpirySweeper, LiveFeed, PaymentFeeder,
    PaymentWorker, Reconciler, RoomPace, SaleSync, WebhookFanout,
};
use stampede_app::{App, AppError, AppSettings};

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
    /// Seals webhook signing secrets before the store sees them.
    pub sealer: SecretSealer,
    /// The dependencies readiness checks; empty: the store's ping alone.
    pub probes: Vec<Arc<dyn Probe>>,
    /// The shared read cache (L2) behind each catalog cache (cluster mode);
    /// `None`: the in-process caches alone.
    pub shared_cache: Option<Arc<dyn SharedCache>>,
    /// The waiting rooms' lines.
    pub room_book: Arc<dyn RoomBook>,
    /// What waiting-room tickets, purchase tokens and proof-of-work
    /// challenges derive their keys from: the JWT secret, the same on every
    /// node.
    pub tag_secret: Vec<u8>,
    /// The captcha provider's verification, if one is configured.
    pub captcha: Option<Arc<dyn CaptchaVerifier>>,
}

/// Rebuilds the ledger from the store, builds every service over the
/// adapters (starting the commit workers), and runs the background workers
/// the role asks for on `background`.
pub(crate) async fn start_app(
    adapters: Adapters,
    settings: AppSettings,
    background: Arc<Background>,
) -> Result<App, AppError> {
    let Adapters {
        store,
        ledger,
        bus,
        jobs,
        provider,
        sender,
        clock,
        jwt,
        sealer,
        mut probes,
        shared_cache,
        room_book,
        tag_secret,
        captcha,
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
    let webhooks = Arc::new(WebhookService::new(
        store.clone(),
        clock.clone(),
        sealer,
        settings.webhooks.allow_hosts.clone(),
    ));
    let sealed = webhooks.seal_clear_secrets().await?;
    if sealed > 0 {
        tracing::info!(sealed, "sealed webhook secrets stored in clear");
    }
    let ledger_for_workers = ledger.clone();
    let expiry = Arc::new(ExpirySweeper::new(
        store.clone(),
        ledger.clone(),
        bus.clone(),
        clock.clone(),
        settings.expiry_interval,
    ));
    let app = App {
        abuse: AbuseGuard::new(&tag_secret, settings.abuse, captcha, clock.clone()),
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
            Arc::new(AnsweredKeys::new(settings.key_retention_ms)),
            Arc::new(WaitingRoom::new(
                room_book,
                TicketKey::derive(&tag_secret),
                clock.clone(),
                settings.room,
            )),
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
    // Every node serving purchases, whatever its role: each keeps its own
    // copies of the sales.
    app.background.run(SaleSync::new(
        app.catalog.clone(),
        app.purchases.gates().clone(),
        ledger_for_workers.clone(),
    ));
    app.background.run(RoomPace::new(
        app.catalog.clone(),
        app.purchases.room().clone(),
        ledger_for_workers.clone(),
        app.clock.clone(),
    ));
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
        start_workers(&app, bus, jobs, provider, sender, settings.webhooks);
    }
    Ok(app)
}

/// The worker role's workers.
fn start_workers(
    app: &App,
    bus: Arc<dyn EventBus>,
    jobs: Arc<dyn JobQueue>,
    provider: Arc<dyn PaymentProvider>,
    sender: Arc<dyn WebhookSender>,
    webhook_settings: WebhookSettings,
) {
    let background = &app.background;
    let feeder = Arc::new(PaymentFeeder::new(jobs.clone()));
    background.run(ConsumerWorker::new(bus.clone(), feeder));
    background.run(PaymentWorker::new(app.payments.clone(), provider, jobs));
    let fanout = Arc::new(WebhookFanout::new(app.webhooks.clone()));
    background.run(ConsumerWorker::new(bus, fanout));
    background.run(Arc::new(DeliveryWorker::new(
        app.webhooks.clone(),
        sender,
        webhook_settings,
    )));
    background.run(app.expiry.clone());
}
