//! The in-process job queue (embedded mode) and the sweeper that refills a
//! queue from the store.

mod memory;

pub use memory::MemoryJobQueue;
