//! The in-process event bus and the loop that runs a consumer on any bus.

mod consumer;
mod memory;

pub use consumer::{Consumer, run_consumer};
pub use memory::OutboxBus;
