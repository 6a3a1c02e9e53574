//! The `EventBus` contract suite (stampede_contract::bus), run against
//! the in-process bus of embedded mode over a fresh SQLite file per test.

// Test code: a failed expectation is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;

use stampede_app::ports::{EventBus, Store};
use stampede_contract::bus::BusFixture;
use stampede_inprocess::OutboxBus;
use stampede_store_sqlite::{SqliteSettings, SqliteStore};

struct Embedded {
    store: Arc<dyn Store>,
    bus: Arc<dyn EventBus>,
}

impl BusFixture for Embedded {
    fn bus(&self) -> Arc<dyn EventBus> {
        self.bus.clone()
    }

    fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }

    async fn teardown(self) {
        self.store.close().await;
    }
}

async fn fresh_bus(dir: &Path) -> Option<Embedded> {
    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::open(&dir.join("stampede.db"), SqliteSettings::default())
            .expect("opening a fresh store"),
    );
    let bus = Arc::new(OutboxBus::new(store.clone()));
    Some(Embedded { store, bus })
}

stampede_contract::bus_contract_tests!(|dir| fresh_bus(dir));
