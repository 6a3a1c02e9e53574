//! What a service call can answer besides success. The HTTP edge maps each
//! variant to one problem type of docs/api.md §5; internal causes stay in the logs.

use std::time::Duration;

use stampede_domain::ValidationError;
use stampede_domain::stock::Refusal;

use crate::failure::{Cause, context_constructors};
use crate::ports::{LedgerError, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// Unknown id, an id that cannot exist, or someone else's order.
    #[error("not found")]
    NotFound,
    #[error("invalid input: {0}")]
    Validation(#[from] ValidationError),
    /// A uniqueness rule: `field` must be unique and is taken.
    #[error("{field} already exists")]
    Conflict { field: &'static str },
    /// A purchase refused for a business reason (remembered per key).
    #[error("purchase refused: {}", .0.slug())]
    Refused(Refusal),
    /// A withdrawal of more units than the sale has unsold.
    #[error("insufficient stock")]
    InsufficientStock,
    /// The caller's `If-Match` names another version than the current one.
    #[error("precondition failed: the sale is at version {current}")]
    PreconditionFailed { current: u64 },
    /// The order's status does not allow the change.
    #[error("invalid state: {0}")]
    InvalidState(String),
    /// The sale has no waiting room to join.
    #[error("the sale has no waiting room")]
    NoWaitingRoom,
    /// A purchase of a room sale without a ticket of the caller's for it.
    #[error("no valid waiting-room ticket: {0:?}")]
    QueueTicket(TicketProblem),
    /// A purchase of a room sale whose ticket's place is not reached yet.
    #[error("not this ticket's turn yet")]
    NotYourTurn(Wait),
    /// A purchase token asked for before it is issued: wait this long.
    #[error("too early: tokens are issued in {0:?}")]
    TooEarly(Duration),
    /// An anti-abuse check refused (a proof of work, a captcha, a token).
    #[error("refused by an anti-abuse check: {0:?}")]
    Abuse(AbuseRefusal),
    /// The idempotency key was used for another request.
    #[error("idempotency key reused for another request")]
    IdempotencyMismatch,
    #[error("unauthorized: {0}")]
    Unauthorized(&'static str),
    #[error("forbidden")]
    Forbidden,
    /// Too much work queued: try again shortly.
    #[error("overloaded: {0}")]
    Overloaded(&'static str),
    /// Draining, or a dependency is down: try again later.
    #[error("unavailable: {context}")]
    Unavailable {
        context: String,
        #[source]
        cause: Option<Cause>,
    },
    /// A bug or corrupt data; the cause is logged, never sent.
    #[error("internal error: {context}")]
    Internal {
        context: String,
        #[source]
        cause: Option<Cause>,
    },
}

/// A purchase of a waiting-room sale that must wait its turn (`crate::room`).
#[derive(Debug, Clone, PartialEq)]
pub struct Wait {
    pub position: Option<u64>,
    pub ahead: Option<u64>,
    pub retry_after: Duration,
    pub served_per_sec: f64,
}

/// Why a waiting-room ticket was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TicketProblem {
    Missing,
    /// Malformed, forged, or another user's or sale's.
    Invalid,
}

/// Why an anti-abuse check refused (`crate::abuse`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AbuseRefusal {
    /// No proof of work, or one that does not reach the bits, or a
    /// challenge not this buyer's or too old.
    ProofOfWork,
    /// No captcha answer, or one the provider did not take.
    Captcha,
    /// A purchase without the buyer's token for the sale.
    PurchaseToken,
}

context_constructors!(AppError {
    Unavailable => unavailable, unavailable_because;
    Internal => internal, internal_because;
});

impl AppError {
    /// Whether the same request may succeed later (the answers that carry
    /// `Retry-After`).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Overloaded(_) | Self::Unavailable { .. })
    }

    /// Seconds a client should wait before retrying, for the answers that ask it
    /// to retry.
    pub fn retry_after_secs(&self) -> Option<u32> {
        match self {
            Self::Overloaded(_) => Some(1),
            // Rounded up: a client that waits what it is told is never early.
            Self::NotYourTurn(wait) => {
                let secs = stampede_flow::limit::headers::delay_seconds(wait.retry_after);
                Some(u32::try_from(secs.max(1)).unwrap_or(u32::MAX))
            }
            Self::TooEarly(wait) => {
                let secs = stampede_flow::limit::headers::delay_seconds(*wait);
                Some(u32::try_from(secs.max(1)).unwrap_or(u32::MAX))
            }
            Self::Unavailable { .. } => Some(5),
            _ => None,
        }
    }
}

impl From<StoreError> for AppError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Conflict { field } => Self::Conflict { field },
            StoreError::Unavailable { .. } => Self::unavailable_because("the store", err),
            StoreError::Corrupt { .. } => Self::internal_because("the store", err),
        }
    }
}

impl From<LedgerError> for AppError {
    fn from(err: LedgerError) -> Self {
        match err {
            LedgerError::Unavailable { .. } => Self::unavailable_because("the stock ledger", err),
            LedgerError::Inconsistent { .. } => Self::internal_because("the stock ledger", err),
        }
    }
}
