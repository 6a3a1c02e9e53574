//! Deterministic simulation of Stampede's services (docs/reliability.md,
//! "Deterministic simulation").
//!
//! One seed drives a single-threaded run: many users buy, replay their
//! idempotency keys, cancel, pay and let orders expire over a few sales, on
//! the real services over the in-process ledger and a real SQLite store, with
//! simulated time, failing dependency calls and crashes that throw away the
//! process's memory. A model checks the promises (docs/design.md §1) after
//! every step, and the store and the ledger against it periodically, after
//! every restart and at the end. `SIM_SEED` and `SIM_OPS` replay one run
//! exactly: same seed, same trace.

mod faults;
mod model;
mod node;
mod sim;
mod trace;

pub use faults::FaultRates;
pub use sim::{Config, Failure, Report, run};
