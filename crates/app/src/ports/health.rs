//! Dependencies as readiness sees them: each external engine a node needs
//! (the store of record, in cluster mode also Redis and NATS) is a probe that
//! `/readyz` checks and `/metrics` reports, by name.

use std::sync::Arc;

use async_trait::async_trait;

use super::store::Store;

#[async_trait]
pub trait Probe: Send + Sync + 'static {
    /// A short stable name for readiness bodies and metric labels: `store`,
    /// `ledger`, `bus`.
    fn name(&self) -> &'static str;

    /// A cheap round trip; `Err` says what is wrong.
    async fn check(&self) -> Result<(), String>;

    /// Sets this dependency's gauges (pool use, reconnects, ...), at scrape
    /// time rather than on the hot path.
    fn record_gauges(&self) {}
}

/// The store of record as a probe: its `ping`.
pub struct StoreProbe(pub Arc<dyn Store>);

#[async_trait]
impl Probe for StoreProbe {
    fn name(&self) -> &'static str {
        "store"
    }

    async fn check(&self) -> Result<(), String> {
        self.0.ping().await.map_err(|err| err.to_string())
    }
}
