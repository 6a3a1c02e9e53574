//! Payment-window expiry (I6): a sweep asks the store for open orders whose
//! `expires_at` has passed and expires them — each a compare-and-set in the
//! store that returns its units to the sale with `order.expired` — then gives
//! the units back to the ledger. Driven by the store's timestamps, never by a
//! timer alone, so downtime delays an expiry but never loses or repeats one.

use crate::failure::Chain;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use metrics::counter;
use stampede_domain::order::Order;
use tokio_util::sync::CancellationToken;

use super::{Next, StepError, Worker};
use crate::error::AppError;
use crate::ports::{Clock, EventBus, OrderStore, StockLedger};

/// Orders expired per transaction.
const BATCH: u32 = 500;

pub struct ExpirySweeper {
    store: Arc<dyn OrderStore>,
    ledger: Arc<dyn StockLedger>,
    bus: Arc<dyn EventBus>,
    clock: Arc<dyn Clock>,
    interval: Duration,
}

impl ExpirySweeper {
    pub fn new(
        store: Arc<dyn OrderStore>,
        ledger: Arc<dyn StockLedger>,
        bus: Arc<dyn EventBus>,
        clock: Arc<dyn Clock>,
        interval: Duration,
    ) -> Self {
        Self {
            store,
            ledger,
            bus,
            clock,
            interval,
        }
    }

    /// One sweep: expires what is due (up to a batch); returns how many.
    pub async fn sweep_once(&self) -> Result<usize, AppError> {
        let expired = self.store.expire_due(self.clock.now(), BATCH).await?;
        if expired.is_empty() {
            return Ok(0);
        }
        // A sweep that found work is a trace of its own (an empty one, every
        // interval, would only be noise): the units going back, and its line.
        let span = stampede_trace::span!("expire_orders", orders = expired.len());
        stampede_trace::in_span(span, None, self.give_back(&expired)).await;
        Ok(expired.len())
    }

    /// Returns expired orders' units to the ledger and announces them.
    async fn give_back(&self, expired: &[Order]) {
        for order in expired {
            // The store already has the units back; a ledger that cannot take
            // them is rebuilt from the store at the next start.
            if let Err(err) = self
                .ledger
                .release(order.sale_id, &order.user_id, order.quantity.get())
                .await
            {
                tracing::error!(order_id = %order.id, error = %Chain(&err), "returning expired units to the ledger failed");
            }
        }
        counter!("stampede_orders_expired_total").increment(expired.len() as u64);
        tracing::info!(orders = expired.len(), "expired unpaid orders");
        self.bus.notify();
    }
}

/// Sweeps every `interval`, at once again while batches come back full.
#[async_trait]
impl Worker for Arc<ExpirySweeper> {
    fn name(&self) -> String {
        "expiry".into()
    }

    async fn step(&mut self, _stop: &CancellationToken) -> Result<Next, StepError> {
        let expired = self.sweep_once().await?;
        Ok(if expired as u32 == BATCH {
            Next::Busy
        } else {
            Next::Idle
        })
    }

    async fn wait_for_work(&mut self) {
        tokio::time::sleep(self.interval).await;
    }

    fn backoff(&self, _failures: u32) -> Duration {
        self.interval * 4
    }
}
