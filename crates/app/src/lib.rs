//! Stampede's application layer: the services the HTTP edge calls, the ports
//! (traits) they use to reach storage, the stock ledger, the event bus, the
//! payment provider and outbound webhooks, and the background workers. The
//! adapters live in their own crates, the in-process ones of embedded mode in
//! `stampede-inprocess`.
//!
//! - [`ports`]: the traits adapters implement.
//! - [`ledger`]: the repair that rebuilds a sale any ledger lost.
//! - [`workers`]: every background loop, run by one driver.
//! - [`purchase`]: the purchase path and its group-commit stage;
//!   [`admission`]: each sale's inventory-aware gate in front of it;
//!   [`room`]: the waiting room of the sales that have one.
//! - [`catalog`], [`orders`], [`accounts`], [`payments`], [`webhooks`]: the
//!   services; [`detail`]: the fan-out order view; [`live`]: events for SSE.
//! - [`auth`]: tokens, password hashes, webhook signatures;
//!   [`abuse`]: purchase tokens, proof of work, the captcha hook.
//! - [`events`]: what the outbox records for each state change.
//! - [`App`]: every service over one set of adapters, as the start-up wires
//!   them.

pub mod abuse;
pub mod accounts;
pub mod admission;
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
pub mod room;
pub mod webhooks;
pub mod workers;

use std::sync::Arc;
use std::time::Duration;

pub use error::AppError;

use accounts::AccountService;
use auth::{JwtKey, PasswordSettings};
use catalog::CatalogService;
use detail::DetailService;
use lifecycle::Lifecycle;
use live::LiveEvents;
use orders::OrderService;
use payments::{PaymentService, PaymentSettings};
use ports::{Clock, Probe, Store};
use purchase::{CommitSettings, PurchaseService};
use webhooks::{WebhookService, WebhookSettings};
use workers::{Background, ExpirySweeper};

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
    /// The waiting rooms.
    pub room: room::RoomSettings,
    /// Purchase tokens, proof of work.
    pub abuse: abuse::AbuseSettings,
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
            room: room::RoomSettings::default(),
            abuse: abuse::AbuseSettings::default(),
        }
    }
}

/// How one dependency answered a readiness check.
#[derive(Debug, Clone)]
pub struct Check {
    pub name: &'static str,
    pub result: Result<(), String>,
}

/// Every service, wired over one set of adapters, and the background workers.
/// Built in one place, the binary's start-up (`stampede::startup`).
pub struct App {
    pub catalog: Arc<CatalogService>,
    /// Purchase tokens, proof of work, the captcha hook.
    pub abuse: abuse::AbuseGuard,
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
    pub store: Arc<dyn Store>,
    /// The dependencies readiness checks.
    pub probes: Vec<Arc<dyn Probe>>,
    /// Runs this node's background work.
    pub background: Arc<Background>,
}

impl App {
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
