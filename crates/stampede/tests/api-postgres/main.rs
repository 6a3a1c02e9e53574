//! The HTTP API tests of `tests/api`, run again with every server on a fresh
//! PostgreSQL database (cluster mode's store of record): both stores must
//! behave alike end to end. Under `CI=true` PostgreSQL must be up; elsewhere
//! a test whose database cannot be made runs on SQLite and says so.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../api/accounts.rs"]
mod accounts;
#[path = "../api/auth.rs"]
mod auth;
#[path = "../api/authz_matrix.rs"]
mod authz_matrix;
#[path = "../api/bus_loss.rs"]
mod bus_loss;
#[path = "../api/catalog.rs"]
mod catalog;
#[path = "../api/detail.rs"]
mod detail;
#[path = "../api/errors.rs"]
mod errors;
#[path = "../api/expiry.rs"]
mod expiry;
#[path = "../api/helpers.rs"]
mod helpers;
#[path = "../api/ledger_loss.rs"]
mod ledger_loss;
#[path = "../api/ops.rs"]
mod ops;
#[path = "../api/orders.rs"]
mod orders;
#[path = "../api/payments.rs"]
mod payments;
#[path = "../api/protect.rs"]
mod protect;
#[path = "../api/purchase.rs"]
mod purchase;
#[path = "../api/rate_limit_rules.rs"]
mod rate_limit_rules;
#[path = "../api/receiver.rs"]
mod receiver;
#[path = "../api/restart.rs"]
mod restart;
#[path = "../api/sale_controls.rs"]
mod sale_controls;
#[path = "../api/sse.rs"]
mod sse;
#[path = "../api/states.rs"]
mod states;
#[path = "../api/waiting_room.rs"]
mod waiting_room;
#[path = "../api/webhooks.rs"]
mod webhooks;

/// This binary runs the servers on PostgreSQL.
const ON_POSTGRES: bool = true;
