//! Stampede's application layer: the services the HTTP edge calls, the ports
//! (traits) they use to reach storage and the stock ledger, and the in-process
//! adapters of embedded mode.
//!
//! - [`ports`]: `Store` (store of record), `StockLedger` (decides purchases), `Clock`.
//! - [`ledger`]: the in-memory stock ledger.
//! - [`purchase`]: the purchase path and its group-commit stage.
//! - [`catalog`], [`orders`], [`accounts`]: the other services.
//! - [`auth`]: HS256 tokens and argon2id password hashes.
//! - [`App`]: all services wired over one store and one ledger.

pub mod accounts;
pub mod auth;
pub mod catalog;
#[cfg(feature = "contract-tests")]
pub mod contract;
pub mod error;
pub mod ledger;
pub mod lifecycle;
pub mod orders;
pub mod paging;
pub mod ports;
pub mod purchase;

use std::sync::Arc;

pub use error::AppError;

use accounts::AccountService;
use auth::{JwtKey, PasswordHasher, PasswordSettings};
use catalog::{CatalogService, SaleDirectory};
use lifecycle::Lifecycle;
use orders::OrderService;
use ports::{Clock, StockLedger, Store};
use purchase::{CommitSettings, PurchaseService};

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
}

impl Default for AppSettings {
    fn default() -> Self {
        Self {
            commit: CommitSettings::default(),
            passwords: PasswordSettings::default(),
            session_ttl_secs: 3600,
            key_retention_ms: 24 * 3600 * 1000,
        }
    }
}

/// Every service, wired over one store and one ledger.
pub struct App {
    pub catalog: CatalogService,
    pub purchases: PurchaseService,
    pub orders: OrderService,
    pub accounts: AccountService,
    pub lifecycle: Arc<Lifecycle>,
    pub jwt: JwtKey,
    pub clock: Arc<dyn Clock>,
    store: Arc<dyn Store>,
}

impl App {
    /// Rebuilds the ledger from the store and starts the commit workers.
    pub async fn start(
        store: Arc<dyn Store>,
        ledger: Arc<dyn StockLedger>,
        clock: Arc<dyn Clock>,
        jwt: JwtKey,
        settings: AppSettings,
    ) -> Result<Self, AppError> {
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
        let directory = Arc::new(SaleDirectory::new(store.clone(), sales));
        let hasher = PasswordHasher::new(settings.passwords)?;
        Ok(Self {
            catalog: CatalogService::new(
                store.clone(),
                store.clone(),
                ledger.clone(),
                directory.clone(),
                clock.clone(),
            ),
            purchases: PurchaseService::new(
                directory,
                ledger.clone(),
                store.clone(),
                clock.clone(),
                lifecycle.clone(),
                settings.commit,
            ),
            orders: OrderService::new(store.clone(), ledger, clock.clone()),
            accounts: AccountService::new(
                store.clone(),
                hasher,
                jwt.clone(),
                settings.session_ttl_secs,
                clock.clone(),
            ),
            lifecycle,
            jwt,
            clock,
            store,
        })
    }

    /// Whether the store answers.
    pub async fn store_ok(&self) -> bool {
        self.store.ping().await.is_ok()
    }

    /// The last stage of shutdown: no new purchases, every queued order
    /// committed, the store closed.
    pub async fn shutdown(&self) {
        self.lifecycle.start_draining();
        self.purchases.shutdown().await;
        self.store.close().await;
    }
}
