//! Keeps this node's sales and the stock ledger up with admins' controls
//! made on any node (docs/design.md §4.6): every [`SALE_SYNC_EVERY`], the
//! versions in the store against those applied. And tells each sale's gate
//! what the ledger has left (`crate::admission`), so units returned on any
//! node reopen a sold-out sale's gate everywhere within a poll.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use metrics::counter;
use tokio_util::sync::CancellationToken;

use super::{Next, StepError, Worker};
use crate::admission::SaleGates;
use crate::catalog::{CatalogService, SALE_SYNC_EVERY};
use crate::ports::StockLedger;

pub struct SaleSync {
    catalog: Arc<CatalogService>,
    gates: Arc<SaleGates>,
    ledger: Arc<dyn StockLedger>,
}

impl SaleSync {
    pub fn new(
        catalog: Arc<CatalogService>,
        gates: Arc<SaleGates>,
        ledger: Arc<dyn StockLedger>,
    ) -> Self {
        Self {
            catalog,
            gates,
            ledger,
        }
    }
}

#[async_trait]
impl Worker for SaleSync {
    fn name(&self) -> String {
        "sale-sync".into()
    }

    async fn step(&mut self, _stop: &CancellationToken) -> Result<Next, StepError> {
        let applied = self.catalog.sync_sales().await?;
        if applied > 0 {
            counter!("stampede_sale_versions_applied_total").increment(applied as u64);
        }
        if !self.gates.is_on() {
            return Ok(Next::Idle);
        }
        let live = self.catalog.live_sales();
        for sale in self.gates.sales() {
            if !live.contains(&sale) {
                self.gates.forget(sale);
            }
        }
        for sale in live {
            if let Some(left) = self.ledger.remaining(sale).await? {
                self.gates.learn(sale, left);
            }
        }
        Ok(Next::Idle)
    }

    async fn wait_for_work(&mut self) {
        tokio::time::sleep(SALE_SYNC_EVERY).await;
    }

    fn backoff(&self, _failures: u32) -> Duration {
        SALE_SYNC_EVERY
    }
}
