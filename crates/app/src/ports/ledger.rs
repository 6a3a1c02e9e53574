//! The stock ledger: decides every purchase before anything is written. It holds
//! what each sale has left, what each buyer holds, and the answers given to
//! idempotency keys, and it decides all three together so that losers are
//! refused without touching the store. In memory (embedded) or in Redis with one
//! atomic script per decision (cluster).

use std::future::Future;
use std::pin::Pin;

use async_trait::async_trait;
use stampede_domain::catalog::Sale;
use stampede_domain::idempotency::{Answer, Fingerprint, IdempotencyKey, Remembered};
use stampede_domain::ids::{OrderId, SaleId, UserId};
use stampede_domain::quantity::Quantity;
use stampede_domain::stock::Refusal;
use stampede_domain::time::Timestamp;

use super::store::{KeyRecord, SaleSnapshot};
use crate::failure::{Cause, context_constructors};

/// One purchase attempt, as the ledger sees it.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub user: UserId,
    pub key: IdempotencyKey,
    pub fingerprint: Fingerprint,
    pub now: Timestamp,
}

/// Something to wait for before deciding again.
pub type WaitFor = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The ledger's verdict on an attempt.
pub enum Decision {
    /// Units and the buyer's allowance are held for this key. The caller must
    /// [`StockLedger::settle`] it once the order is committed or abandoned.
    Reserved,
    /// The key was decided before: repeat this answer.
    Replay(Answer),
    /// The key was used for another request.
    Mismatch,
    /// Refused now, and remembered under the key.
    Refused(Refusal),
    /// Another request with this key is being decided; wait, then ask again.
    Wait(WaitFor),
    /// The ledger does not know the sale; open it and ask again.
    UnknownSale,
}

impl std::fmt::Debug for Decision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Reserved => f.write_str("Reserved"),
            Self::Replay(answer) => f.debug_tuple("Replay").field(answer).finish(),
            Self::Mismatch => f.write_str("Mismatch"),
            Self::Refused(refusal) => f.debug_tuple("Refused").field(refusal).finish(),
            Self::Wait(_) => f.write_str("Wait"),
            Self::UnknownSale => f.write_str("UnknownSale"),
        }
    }
}

/// How a reservation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settlement {
    /// The order is committed: remember the key as won.
    Won(OrderId),
    /// Not committed (queue full, store down, shutdown): give the units back and
    /// forget the key, so a retry is decided afresh.
    Abandoned,
    /// The store already had an answer for this key: give the units back and
    /// remember that answer instead.
    Replaced(Remembered),
}

/// A reservation not settled yet: units held for a key whose order is not
/// known to be committed or abandoned. In a shared ledger one can outlive
/// the node that made it (killed between reserve and commit); the
/// reconciliation job settles those against the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    pub sale_id: SaleId,
    pub user: UserId,
    pub key: IdempotencyKey,
    pub quantity: Quantity,
    pub reserved_at: Timestamp,
}

impl Reservation {
    /// The attempt to pass to [`StockLedger::settle`] to end this reservation.
    pub fn attempt(&self, now: Timestamp) -> Attempt {
        Attempt {
            user: self.user.clone(),
            key: self.key.clone(),
            fingerprint: Fingerprint {
                sale_id: self.sale_id,
                quantity: self.quantity,
            },
            now,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The ledger cannot be reached, or has lost a sale's state and is
    /// rebuilding it. Retryable.
    #[error("stock ledger unavailable: {context}")]
    Unavailable {
        context: String,
        #[source]
        cause: Option<Cause>,
    },
    /// The ledger's numbers contradict themselves or the request (a release of
    /// units nobody holds): a bug, logged loudly.
    #[error("stock ledger inconsistent: {context}")]
    Inconsistent { context: String },
}

context_constructors!(LedgerError {
    Unavailable => unavailable, unavailable_because;
});

impl LedgerError {
    pub fn inconsistent(context: impl Into<String>) -> Self {
        Self::Inconsistent {
            context: context.into(),
        }
    }

    /// Whether trying again may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }
}

#[async_trait]
pub trait StockLedger: Send + Sync + 'static {
    /// Starts tracking a new sale with all its units left. Idempotent.
    async fn open_sale(&self, sale: &Sale) -> Result<(), LedgerError>;

    /// Takes the terms of a newer version of a sale an admin changed: its
    /// state, end, limit and quantity, what is left moving with the quantity
    /// (it may go below 0 while withdrawn units are held by purchases not
    /// yet committed; the store refuses those). A version the ledger has
    /// already, or an older one, changes nothing, so any node may apply any
    /// version it reads, in any order. A sale the ledger does not track is
    /// left alone: it gets the store's terms when it is restored.
    async fn amend_sale(&self, sale: &Sale) -> Result<(), LedgerError>;

    /// Decides an attempt: replay, mismatch, refusal, or a reservation.
    async fn decide(&self, attempt: &Attempt) -> Result<Decision, LedgerError>;

    /// Ends a reservation made by [`decide`](Self::decide).
    async fn settle(&self, attempt: &Attempt, settlement: Settlement) -> Result<(), LedgerError>;

    /// Returns the units of a cancelled order.
    async fn release(&self, sale: SaleId, user: &UserId, quantity: u32) -> Result<(), LedgerError>;

    /// Units purchases can still take; `None` for a sale it does not track.
    async fn remaining(&self, sale: SaleId) -> Result<Option<u64>, LedgerError>;

    /// Reservations made before `before` and not settled, across all sales.
    /// A ledger whose reservations cannot outlive their process (in memory)
    /// has none to report.
    async fn reservations_before(
        &self,
        before: Timestamp,
    ) -> Result<Vec<Reservation>, LedgerError> {
        let _ = before;
        Ok(Vec::new())
    }

    /// Rebuilds state from the store of record: the sales with their holdings,
    /// and the keys that won orders recently enough to be remembered.
    async fn restore(
        &self,
        sales: Vec<SaleSnapshot>,
        keys: Vec<KeyRecord>,
        now: Timestamp,
    ) -> Result<(), LedgerError>;
}
