//! The `Store` contract suite (stampede_contract::store), run against a
//! fresh SQLite file per test.

// Test code: a failed expectation is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;

use stampede_app::ports::Store;
use stampede_store_sqlite::{SqliteSettings, SqliteStore};

async fn fresh_store(dir: &Path) -> Arc<dyn Store> {
    let store = SqliteStore::open(&dir.join("stampede.db"), SqliteSettings::default())
        .expect("opening a fresh store");
    Arc::new(store)
}

stampede_contract::store_contract_tests!(|dir| fresh_store(dir));
