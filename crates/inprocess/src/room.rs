//! The waiting room's book in process memory (embedded mode): one map per
//! sale under a lock held for a few map operations.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use stampede_app::ports::ledger::LedgerError;
use stampede_app::ports::room::{Draw, Joined, RoomBook, RoomCounters};
use stampede_domain::ids::{SaleId, UserId};

#[derive(Default)]
struct Line {
    tickets: HashMap<UserId, u64>,
    counters: RoomCounters,
}

impl Line {
    fn draw(&mut self, seed: u64) {
        if self.counters.draw.is_none() {
            self.counters.draw = Some(Draw {
                count: self.counters.issued,
                seed,
            });
        }
    }
}

/// Every sale's line; memory grows with the tickets issued, at most the
/// room's capacity per sale.
#[derive(Default)]
pub struct MemoryRoomBook {
    lines: Mutex<HashMap<SaleId, Line>>,
}

impl MemoryRoomBook {
    pub fn new() -> Self {
        Self::default()
    }

    fn lines(&self) -> MutexGuard<'_, HashMap<SaleId, Line>> {
        // A panic under the lock leaves the maps whole: every change is one
        // insert or one counter move.
        self.lines
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[async_trait]
impl RoomBook for MemoryRoomBook {
    async fn join(
        &self,
        sale: SaleId,
        user: &UserId,
        draw_seed: Option<u64>,
        capacity: u64,
    ) -> Result<Joined, LedgerError> {
        let mut lines = self.lines();
        let line = lines.entry(sale).or_default();
        if let Some(seed) = draw_seed {
            line.draw(seed);
        }
        if let Some(&ticket) = line.tickets.get(user) {
            return Ok(Joined::Ticket(ticket, line.counters));
        }
        if line.counters.issued >= capacity {
            return Ok(Joined::Full);
        }
        line.counters.issued += 1;
        let ticket = line.counters.issued;
        line.tickets.insert(user.clone(), ticket);
        Ok(Joined::Ticket(ticket, line.counters))
    }

    async fn admit(
        &self,
        sale: SaleId,
        seed: u64,
        by: u64,
        served: u64,
    ) -> Result<RoomCounters, LedgerError> {
        let mut lines = self.lines();
        let line = lines.entry(sale).or_default();
        line.draw(seed);
        let counters = &mut line.counters;
        counters.admitted = counters.admitted.saturating_add(by).min(counters.issued);
        counters.served = counters.served.saturating_add(served);
        Ok(*counters)
    }

    async fn counters(&self, sale: SaleId) -> Result<RoomCounters, LedgerError> {
        Ok(self
            .lines()
            .get(&sale)
            .map(|line| line.counters)
            .unwrap_or_default())
    }

    async fn forget(&self, sale: SaleId) -> Result<(), LedgerError> {
        self.lines().remove(&sale);
        Ok(())
    }
}
