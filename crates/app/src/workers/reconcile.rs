//! Reconciliation of reservations a dead node left behind (cluster mode).
//!
//! A node that reserves units in the shared ledger and dies before its group
//! commit answers leaves the reservation in the ledger: its units are held
//! for nobody, and retries of its key wait. After `timeout` (far longer than
//! any live commit takes: the store's statement timeout bounds those) the
//! worker settles each one against the store of record: `Won` if the order
//! was committed after all, `Abandoned` (units back, key forgotten) if not.
//! Settling is atomic in the ledger and removes the reservation, so units
//! come back once however many workers reconcile at once.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use metrics::counter;
use tokio_util::sync::CancellationToken;

use super::{Next, StepError, Worker};
use crate::error::AppError;
use crate::ports::{Clock, OrderStore, Settlement, StockLedger};

pub struct Reconciler {
    orders: Arc<dyn OrderStore>,
    ledger: Arc<dyn StockLedger>,
    clock: Arc<dyn Clock>,
    timeout: Duration,
}

impl Reconciler {
    pub fn new(
        orders: Arc<dyn OrderStore>,
        ledger: Arc<dyn StockLedger>,
        clock: Arc<dyn Clock>,
        timeout: Duration,
    ) -> Self {
        Self {
            orders,
            ledger,
            clock,
            timeout,
        }
    }

    fn every(&self) -> Duration {
        (self.timeout / 4).clamp(Duration::from_millis(100), Duration::from_secs(5))
    }

    /// Settles every reservation older than `timeout`; returns how many.
    pub async fn reconcile_once(&self) -> Result<usize, AppError> {
        let now = self.clock.now();
        let timeout_ms = i64::try_from(self.timeout.as_millis()).unwrap_or(i64::MAX);
        let stale = self
            .ledger
            .reservations_before(now.plus_millis(-timeout_ms))
            .await?;
        for reservation in &stale {
            let committed = self
                .orders
                .order_by_key(&reservation.user, &reservation.key)
                .await?
                .filter(|order| order.sale_id == reservation.sale_id);
            let (settlement, result) = match committed {
                Some(order) => (Settlement::Won(order.id), "won"),
                None => (Settlement::Abandoned, "abandoned"),
            };
            self.ledger
                .settle(&reservation.attempt(now), settlement)
                .await?;
            counter!("stampede_reservations_reconciled_total", "result" => result).increment(1);
            tracing::warn!(
                sale_id = %reservation.sale_id,
                user_id = %reservation.user.as_str(),
                units = reservation.quantity.get(),
                result,
                "settled a reservation left by a node that did not finish it"
            );
        }
        Ok(stale.len())
    }
}

/// Reconciles every `timeout / 4` (at most every 5 s).
#[async_trait]
impl Worker for Reconciler {
    fn name(&self) -> String {
        "reconcile".into()
    }

    async fn step(&mut self, _stop: &CancellationToken) -> Result<Next, StepError> {
        self.reconcile_once().await?;
        Ok(Next::Idle)
    }

    async fn wait_for_work(&mut self) {
        tokio::time::sleep(self.every()).await;
    }

    fn backoff(&self, _failures: u32) -> Duration {
        self.every()
    }
}
