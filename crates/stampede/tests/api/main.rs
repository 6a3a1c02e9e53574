//! Black-box tests of the HTTP API (API.md) on a real socket: one test binary,
//! one module per area.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod accounts;
mod auth;
mod catalog;
mod errors;
mod helpers;
mod ops;
mod orders;
mod purchase;
mod restart;
mod states;
