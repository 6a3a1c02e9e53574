//! In-process adapters of the stock ledger port (embedded mode), and the
//! repair that rebuilds a sale any ledger lost from the store.

mod key_memory;
mod memory;
mod reconcile;
mod repair;

pub use key_memory::KeyMemorySettings;
pub use memory::MemoryLedger;
pub use reconcile::Reconciler;
pub use repair::LedgerRepair;
