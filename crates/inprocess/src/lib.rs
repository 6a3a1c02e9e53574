//! The in-process adapters of embedded mode, beside the cluster adapters in
//! their own crates: each implements one of the app's ports in process memory
//! (or over the store of record) and runs that port's contract suite.
//!
//! - [`MemoryLedger`]: the stock ledger, with `ledger::KeyMemorySettings` (app) for how
//!   long and how many idempotency answers it keeps.
//! - [`OutboxBus`]: the event bus whose log is the store's outbox table.
//! - [`MemoryRoomBook`]: the waiting rooms' book.
//! - [`MemoryJobQueue`]: the job queue, in memory (the store holds everything
//!   a restart must redo, and sweepers push it again).

mod jobs;
mod key_memory;
mod ledger;
mod outbox_bus;
mod room;

pub use jobs::MemoryJobQueue;

pub use ledger::MemoryLedger;
pub use outbox_bus::OutboxBus;
pub use room::MemoryRoomBook;
