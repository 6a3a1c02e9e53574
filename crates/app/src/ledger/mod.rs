//! In-process adapters of the stock ledger port (embedded mode).

mod key_memory;
mod memory;

pub use key_memory::KeyMemorySettings;
pub use memory::MemoryLedger;
