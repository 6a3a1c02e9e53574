//! The `StockLedger` contract suite (stampede_contract::ledger), run
//! against the Redis ledger, each test in a namespace of its own that is
//! deleted when it ends.

// Test code: a failed expectation is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

stampede_contract::ledger_contract_tests!(common::fresh_fixture());
