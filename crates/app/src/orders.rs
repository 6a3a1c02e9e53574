//! Reading and cancelling orders. An order is visible to its owner and to
//! admins; to anyone else it does not exist (404, never 403, so ids leak nothing).

use crate::failure::Chain;
use std::sync::Arc;

use stampede_domain::ids::OrderId;
use stampede_domain::order::{CancelDecision, Order};

use crate::auth::Caller;
use crate::error::AppError;
use crate::paging;
use crate::ports::{
    CancelOutcome, Clock, EventBus, OrderStore, OutboxStore, StockLedger, StoredEvent,
};

pub struct OrderService {
    store: Arc<dyn OrderStore>,
    outbox: Arc<dyn OutboxStore>,
    ledger: Arc<dyn StockLedger>,
    bus: Arc<dyn EventBus>,
    clock: Arc<dyn Clock>,
}

impl OrderService {
    pub fn new(
        store: Arc<dyn OrderStore>,
        outbox: Arc<dyn OutboxStore>,
        ledger: Arc<dyn StockLedger>,
        bus: Arc<dyn EventBus>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            store,
            outbox,
            ledger,
            bus,
            clock,
        }
    }

    pub async fn get(&self, caller: &Caller, id: OrderId) -> Result<Order, AppError> {
        match self.store.order(id).await? {
            Some(order) if caller.may_see(&order) => Ok(order),
            _ => Err(AppError::NotFound),
        }
    }

    /// The order's events so far (its status changes and payments), oldest
    /// first, after `after_seq`.
    pub async fn history(
        &self,
        caller: &Caller,
        id: OrderId,
        after_seq: i64,
    ) -> Result<Vec<StoredEvent>, AppError> {
        self.get(caller, id).await?;
        let mut events = self.outbox.events_of(&id.to_string()).await?;
        events.retain(|e| e.seq > after_seq);
        Ok(events)
    }

    /// A page of the caller's orders, newest first, and the cursor of the next.
    pub async fn list(
        &self,
        caller: &Caller,
        before: Option<OrderId>,
        limit: u32,
    ) -> Result<(Vec<Order>, Option<OrderId>), AppError> {
        let items = self
            .store
            .orders_of(&caller.user, before, limit + 1)
            .await?;
        Ok(paging::split(items, limit, |o| o.id))
    }

    /// Cancels an unpaid order and returns its units to the sale, exactly once:
    /// the store's compare-and-set decides, and only the call that changed the
    /// status gives the units back to the ledger. Cancelling a cancelled order
    /// answers it unchanged.
    #[tracing::instrument(skip_all, fields(order_id = %id))]
    pub async fn cancel(&self, caller: &Caller, id: OrderId) -> Result<Order, AppError> {
        let order = self.get(caller, id).await?;
        if CancelDecision::for_status(order.status) == CancelDecision::Refuse {
            return Err(refuse(&order));
        }
        match self.store.cancel_order(id, self.clock.now()).await? {
            CancelOutcome::Cancelled(order) => {
                self.bus.notify();
                self.ledger
                    .release(order.sale_id, &order.user_id, order.quantity.get())
                    .await
                    .inspect_err(|err| {
                        // The store has the units back; the ledger is rebuilt
                        // from it at the next start.
                        tracing::error!(error = %Chain(err), "returning cancelled units to the ledger failed");
                    })?;
                Ok(order)
            }
            CancelOutcome::Unchanged(order) => match CancelDecision::for_status(order.status) {
                CancelDecision::Refuse => Err(refuse(&order)),
                CancelDecision::AlreadyCancelled | CancelDecision::Cancel => Ok(order),
            },
            CancelOutcome::NotFound => Err(AppError::NotFound),
        }
    }
}

fn refuse(order: &Order) -> AppError {
    AppError::InvalidState(format!(
        "an order that is {} cannot be cancelled",
        order.status.as_str()
    ))
}
