//! An admin's live controls of a sale (pause, resume, end, new end or limit,
//! units added or withdrawn) and how every node catches up with them.
//!
//! A control is written to the store of record first: the sale row one
//! version on and its event, in one transaction, only if the row is still at
//! the version the change was made from (two admins at once: one retries
//! from the other's result). The stock column moves with the quantity under
//! the same guard as a purchase's commit, so a withdrawal can only take
//! units that are neither sold nor in an order, and a withdrawal racing a
//! purchase that the ledger reserved but the store has not committed wins:
//! that commit is refused as sold out, and its units come back.
//!
//! Then the stock ledger takes the new terms ([`StockLedger::amend_sale`]:
//! newer versions only, quantity as a total), then this node's directory.
//! Every node polls the store's sale versions ([`SALE_SYNC_EVERY`]) and does
//! the same for each version it has not applied, so a change reaches every
//! node within a poll, and a node that died between the store and the
//! ledger leaves nothing behind: the next poll anywhere applies it.

use std::sync::Arc;
use std::time::Duration;

use stampede_domain::catalog::{ControlRefusal, Sale, SaleControl};
use stampede_domain::ids::SaleId;
use stampede_domain::stock::Refusal;

use super::{CatalogService, SaleView};
use crate::error::AppError;
use crate::ports::SaleUpdate;

/// How often each node reads the store's sale versions: a control reaches
/// every node (and a ledger a dead node did not update) within this.
pub const SALE_SYNC_EVERY: Duration = Duration::from_millis(250);

/// Tries of a control that keeps meeting another admin's change.
const MAX_TRIES: u32 = 8;

impl CatalogService {
    /// Applies `control` to sale `id` and returns the sale as it is after.
    /// A control that changes nothing (pausing a paused sale) writes nothing.
    /// With `expected`, only to that version of the sale (the caller's
    /// `If-Match`: a retry after a lost answer cannot apply twice).
    pub async fn control(
        &self,
        id: SaleId,
        control: SaleControl,
        expected: Option<u64>,
    ) -> Result<SaleView, AppError> {
        for _ in 0..MAX_TRIES {
            let current = self.store.sale(id).await?.ok_or(AppError::NotFound)?;
            if expected.is_some_and(|version| version != current.version) {
                return Err(AppError::PreconditionFailed {
                    current: current.version,
                });
            }
            let now = self.clock.now();
            let next = match current.apply(control, now) {
                Ok(Some(next)) => next,
                Ok(None) => return self.view_after(current).await,
                Err(refusal) => return Err(refused(refusal)),
            };
            match self
                .store
                .update_sale(&current, &next, control, now)
                .await?
            {
                SaleUpdate::Updated => {
                    tracing::info!(
                        sale_id = %id,
                        version = next.version,
                        control = control.event_type(),
                        "sale changed"
                    );
                    return self.view_after(next).await;
                }
                SaleUpdate::Stale => continue,
                SaleUpdate::InsufficientStock => return Err(AppError::InsufficientStock),
            }
        }
        Err(AppError::unavailable(
            "the sale kept changing under this control; try again",
        ))
    }

    /// The ledger, then this node's copies, take `sale`; then its view.
    /// The change is on record whatever the ledger says, and an error would
    /// invite a retry that adds or withdraws twice: a ledger that does not
    /// answer is left to the next poll, and the view falls back to the
    /// store's stock column.
    async fn view_after(&self, sale: Sale) -> Result<SaleView, AppError> {
        if let Err(err) = self.take(sale.clone()).await {
            tracing::warn!(
                sale_id = %sale.id,
                error = %crate::failure::Chain(&err),
                "the stock ledger did not take a sale change; the next poll applies it"
            );
        }
        let remaining = match self.ledger.remaining(sale.id).await {
            Ok(Some(remaining)) => remaining,
            _ => self.orders.sale_counts(sale.id).await?.remaining,
        };
        Ok(self.view(Arc::new(sale), remaining))
    }

    /// Applies a version of a sale read from the store: to the ledger first
    /// (if that fails, the directory keeps the older version, so the next
    /// poll tries again), then to this node's directory and shared cache.
    async fn take(&self, sale: Sale) -> Result<(), AppError> {
        if self.sales.version(sale.id) >= Some(sale.version) {
            return Ok(());
        }
        self.ledger.amend_sale(&sale).await?;
        self.sales.forget_unknown(sale.id).await;
        self.sales.insert(sale);
        Ok(())
    }

    /// The sales this node knows that have not ended.
    pub fn live_sales(&self) -> Vec<SaleId> {
        let now = self.clock.now();
        let sales = self.sales.all();
        sales
            .iter()
            .filter(|s| !s.has_ended(now))
            .map(|s| s.id)
            .collect()
    }

    /// The sales this node knows that have a waiting room.
    pub fn room_sales(&self) -> Vec<Arc<Sale>> {
        let sales = self.sales.all();
        sales.iter().filter(|s| s.waiting_room).cloned().collect()
    }

    /// One poll: applies every sale version in the store this node has not
    /// applied yet. Returns how many it applied.
    pub async fn sync_sales(&self) -> Result<usize, AppError> {
        let mut applied = 0;
        for (id, version) in self.store.sale_versions().await? {
            if self.sales.version(id) >= Some(version) {
                continue;
            }
            if let Some(sale) = self.store.sale(id).await? {
                self.take(sale).await?;
                applied += 1;
            }
        }
        Ok(applied)
    }
}

fn refused(refusal: ControlRefusal) -> AppError {
    match refusal {
        ControlRefusal::Ended => AppError::Refused(Refusal::SaleNotActive),
        ControlRefusal::InsufficientStock => AppError::InsufficientStock,
        ControlRefusal::Invalid(err) => AppError::Validation(err),
    }
}
