//! The background workers in-process, on the real adapters (SQLite, memory
//! ledger, outbox bus) with a clock the tests move.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod expiry;
