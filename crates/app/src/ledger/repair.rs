//! Rebuilding one sale's ledger state from the store of record, when the
//! ledger says it lost it or never had it (cluster mode: Redis restarted
//! empty or flushed, or this node never saw the sale). The store is the
//! truth (docs/design.md §5); `StockLedger::restore` never
//! overwrites a live sale, so nodes repairing at once cannot double count.
//!
//! A crowd hitting a lost sale must not turn into a crowd of rebuilds: each
//! sale is rebuilt by one task at a time, at most once per `RETRY_EVERY`,
//! and the requests that noticed get 503 meanwhile.

use crate::failure::Chain;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use metrics::counter;
use stampede_domain::ids::SaleId;

use crate::error::AppError;
use crate::ports::{CatalogStore, Clock, OrderStore, StockLedger};
use crate::workers::TaskSpawner;

/// The shortest time between two rebuilds of one sale.
const RETRY_EVERY: Duration = Duration::from_millis(500);

pub struct LedgerRepair {
    catalog: Arc<dyn CatalogStore>,
    orders: Arc<dyn OrderStore>,
    ledger: Arc<dyn StockLedger>,
    clock: Arc<dyn Clock>,
    /// How far back winning keys are reloaded (the ledger's key retention).
    key_retention_ms: i64,
    last_tried: Mutex<HashMap<SaleId, Instant>>,
    /// Rebuilds run as tracked tasks, so shutdown waits for them.
    tasks: TaskSpawner,
}

impl LedgerRepair {
    pub fn new(
        catalog: Arc<dyn CatalogStore>,
        orders: Arc<dyn OrderStore>,
        ledger: Arc<dyn StockLedger>,
        clock: Arc<dyn Clock>,
        key_retention_ms: i64,
        tasks: TaskSpawner,
    ) -> Self {
        Self {
            catalog,
            orders,
            ledger,
            clock,
            key_retention_ms,
            last_tried: Mutex::new(HashMap::new()),
            tasks,
        }
    }

    /// The ledger this repairs.
    pub fn ledger(&self) -> &Arc<dyn StockLedger> {
        &self.ledger
    }

    /// Starts rebuilding `sale` on its own task unless one ran for it
    /// within `RETRY_EVERY`; returns at once.
    pub fn rebuild_soon(self: &Arc<Self>, sale: SaleId) {
        if !self.claim(sale) {
            return;
        }
        let repair = self.clone();
        self.tasks.spawn(|_stop| async move {
            match repair.rebuild(sale).await {
                Ok(()) => {
                    counter!("stampede_ledger_rebuilds_total", "result" => "ok").increment(1);
                    tracing::warn!(sale_id = %sale, "rebuilt the sale's stock ledger from the store");
                }
                Err(err) => {
                    counter!("stampede_ledger_rebuilds_total", "result" => "failed").increment(1);
                    tracing::warn!(sale_id = %sale, error = %Chain(&err), "rebuilding the sale's stock ledger failed");
                }
            }
        });
    }

    /// Rebuilds `sale` now: its stock column and holdings, and its recent
    /// winning keys, read from the store.
    pub async fn rebuild(&self, sale: SaleId) -> Result<(), AppError> {
        let now = self.clock.now();
        let snapshots: Vec<_> = self
            .catalog
            .sale_snapshots()
            .await?
            .into_iter()
            .filter(|snapshot| snapshot.sale.id == sale)
            .collect();
        if snapshots.is_empty() {
            return Ok(());
        }
        let keys = self
            .orders
            .keys_since(now.plus_millis(-self.key_retention_ms))
            .await?
            .into_iter()
            .filter(|key| key.sale_id == sale)
            .collect();
        self.ledger.restore(snapshots, keys, now).await?;
        Ok(())
    }

    fn claim(&self, sale: SaleId) -> bool {
        let mut tried = self
            .last_tried
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let now = Instant::now();
        tried.retain(|_, at| now.duration_since(*at) < RETRY_EVERY);
        if tried.contains_key(&sale) {
            return false;
        }
        tried.insert(sale, now);
        true
    }
}
