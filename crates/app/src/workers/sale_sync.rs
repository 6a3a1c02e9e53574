//! Keeps this node's sales and the stock ledger up with admins' controls
//! made on any node (docs/design.md, live sale controls): every
//! [`SALE_SYNC_EVERY`], the versions in the store against those applied.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use metrics::counter;
use tokio_util::sync::CancellationToken;

use super::{Next, StepError, Worker};
use crate::catalog::{CatalogService, SALE_SYNC_EVERY};

pub struct SaleSync {
    catalog: Arc<CatalogService>,
}

impl SaleSync {
    pub fn new(catalog: Arc<CatalogService>) -> Self {
        Self { catalog }
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
        Ok(Next::Idle)
    }

    async fn wait_for_work(&mut self) {
        tokio::time::sleep(SALE_SYNC_EVERY).await;
    }

    fn backoff(&self, _failures: u32) -> Duration {
        SALE_SYNC_EVERY
    }
}
