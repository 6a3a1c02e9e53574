//! The loop that runs a consumer on any event bus.

mod consumer;

pub use consumer::{Consumer, run_consumer};
