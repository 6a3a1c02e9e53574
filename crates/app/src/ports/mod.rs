//! Ports: the small traits the services use to reach the outside world. Each has
//! an in-process adapter and, for cluster mode, adapters for external engines,
//! and every adapter runs the same contract suite (`crate::contract`).

pub mod clock;
pub mod ledger;
pub mod store;

pub use clock::{Clock, SystemClock};
pub use ledger::{Attempt, Decision, LedgerError, Settlement, StockLedger};
pub use store::{
    CancelOutcome, CatalogStore, CommitOutcome, KeyRecord, OrderStore, SaleCounts, SaleSnapshot,
    Store, StoreError, UserStore,
};
