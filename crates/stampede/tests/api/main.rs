//! Black-box tests of the HTTP API (docs/api.md) on a real socket: one test binary,
//! one module per area.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod account_limits;
mod accounts;
mod anti_abuse;
mod auth;
mod authz_matrix;
mod bus_loss;
mod catalog;
mod connections;
mod detail;
mod errors;
mod expiry;
mod helpers;
mod ledger_loss;
mod ops;
mod orders;
mod payments;
mod protect;
mod purchase;
mod rate_limit_rules;
mod receiver;
mod restart;
mod sale_controls;
mod sse;
mod states;
mod waiting_room;
mod webhooks;

/// This binary runs the servers on the embedded SQLite store.
const ON_POSTGRES: bool = false;
