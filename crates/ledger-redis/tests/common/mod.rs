//! Helpers of the Redis ledger's tests: one place that decides whether Redis
//! is there (and fails under CI if not), fresh namespaces, and cleanup.

// Test code: a failed expectation is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(dead_code)] // Each test binary uses a part of it.

use std::sync::Arc;

use stampede_app::ports::{RoomBook, StockLedger};
use stampede_contract::ledger::LedgerFixture;
use stampede_contract::room::RoomFixture;
#[allow(unused_imports)] // Each test binary uses a part of it.
pub use stampede_ledger_redis::testing::{
    delete_matching, fresh_namespace, keys_matching, namespace_pattern, redis_or_skip, redis_url,
};
use stampede_ledger_redis::{RedisLedger, RedisLedgerSettings, RedisRoomBook};

/// A ledger in a namespace of its own, deleted at teardown.
pub struct Fixture {
    pub url: String,
    pub namespace: String,
    pub ledger: Arc<RedisLedger>,
}

impl Fixture {
    /// Another node on the same namespace.
    pub async fn other_node(&self) -> RedisLedger {
        RedisLedger::connect(&self.url, &self.namespace, RedisLedgerSettings::default())
            .await
            .unwrap()
    }

    pub async fn cleanup(&self) {
        delete_matching(&self.url, &namespace_pattern(&self.namespace)).await;
    }
}

impl LedgerFixture for Fixture {
    fn ledger(&self) -> Arc<dyn StockLedger> {
        self.ledger.clone()
    }

    async fn teardown(self) {
        self.cleanup().await;
    }
}

/// A fresh ledger, or `None` (skipped) without Redis.
pub async fn fresh_fixture() -> Option<Fixture> {
    fixture_with(RedisLedgerSettings::default()).await
}

pub async fn fixture_with(settings: RedisLedgerSettings) -> Option<Fixture> {
    let url = redis_or_skip().await?;
    let namespace = fresh_namespace();
    let ledger = RedisLedger::connect(&url, &namespace, settings)
        .await
        .expect("connecting the redis ledger");
    Some(Fixture {
        url,
        namespace,
        ledger: Arc::new(ledger),
    })
}

/// A waiting rooms' book in a namespace of its own, deleted at teardown.
pub struct RoomBookFixture {
    pub url: String,
    pub namespace: String,
    pub book: Arc<RedisRoomBook>,
}

impl RoomFixture for RoomBookFixture {
    fn book(&self) -> Arc<dyn RoomBook> {
        self.book.clone()
    }

    async fn teardown(self) {
        delete_matching(&self.url, &namespace_pattern(&self.namespace)).await;
    }
}

/// A fresh book, or `None` (skipped) without Redis.
pub async fn fresh_room_book() -> Option<RoomBookFixture> {
    let url = redis_or_skip().await?;
    let namespace = fresh_namespace();
    let book = RedisRoomBook::new(&url, &namespace).expect("making the redis room book");
    Some(RoomBookFixture {
        url,
        namespace,
        book: Arc::new(book),
    })
}
