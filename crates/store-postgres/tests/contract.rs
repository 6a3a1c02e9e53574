//! The `Store` contract suite (stampede_contract::store), run against a
//! fresh PostgreSQL database per test (dropped when the test ends). Skipped
//! with a printed reason when PostgreSQL is unreachable, except under
//! `CI=true`, where that fails.

// Test code: a failed expectation is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use stampede_store_postgres::testing::fresh_store;

stampede_contract::store_contract_tests!(match fresh_store().await {
    Some(store) => std::future::ready(store),
    None => return,
});
