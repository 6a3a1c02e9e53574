//! Moves the lines of this node's waiting rooms (`crate::room`) every
//! [`PACE_EVERY`]: for each room sale not over, what the ledger has left
//! (none: the room ends at once), and once it has started and runs, one
//! pacing step; for each that is over, its line is dropped.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use stampede_domain::catalog::SaleState;
use tokio_util::sync::CancellationToken;

use super::{Next, StepError, Worker};
use crate::catalog::CatalogService;
use crate::ports::{Clock, StockLedger};
use crate::room::{PACE_EVERY, WaitingRoom};

pub struct RoomPace {
    catalog: Arc<CatalogService>,
    room: Arc<WaitingRoom>,
    ledger: Arc<dyn StockLedger>,
    clock: Arc<dyn Clock>,
}

impl RoomPace {
    pub fn new(
        catalog: Arc<CatalogService>,
        room: Arc<WaitingRoom>,
        ledger: Arc<dyn StockLedger>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            catalog,
            room,
            ledger,
            clock,
        }
    }
}

#[async_trait]
impl Worker for RoomPace {
    fn name(&self) -> String {
        "room-pace".into()
    }

    async fn step(&mut self, _stop: &CancellationToken) -> Result<Next, StepError> {
        let now = self.clock.now();
        let kept = self.room.sales();
        for sale in self.catalog.room_sales() {
            if sale.has_ended(now) {
                if kept.contains(&sale.id) {
                    self.room.forget(sale.id).await?;
                }
                continue;
            }
            // Known before the start too: the first answers after the draw
            // are capped by it.
            let left = self.ledger.remaining(sale.id).await?;
            self.room.learn_left(sale.id, left);
            if now >= sale.starts_at && sale.state == SaleState::Running {
                self.room.pace(sale.id).await?;
            }
        }
        Ok(Next::Idle)
    }

    async fn wait_for_work(&mut self) {
        tokio::time::sleep(PACE_EVERY).await;
    }

    fn backoff(&self, _failures: u32) -> Duration {
        PACE_EVERY
    }
}
