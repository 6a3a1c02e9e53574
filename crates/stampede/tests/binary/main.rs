//! Tests on the real `stampede` binary: crash it with SIGKILL, stop it with
//! SIGTERM, restart it on the same data directory, and check the contract.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod bench;
mod crash;
mod dashboard;
mod drill;
mod expiry;
mod harness;
mod outbox;
mod payments;
mod prometheus;
mod rule_reload;
mod sale_controls;
mod shutdown;
mod traces;
mod waiting_room;

/// This binary runs the servers on the embedded SQLite store.
const ON_POSTGRES: bool = false;
