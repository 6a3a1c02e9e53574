//! What only a shared database adds to the store contract: many writers at
//! once, several nodes migrating together, and a database from a newer build.

// Test code: a failed expectation is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use stampede_app::failure::Chain;
use stampede_app::ports::{CatalogStore, OutboxStore, Store, StoreError};
use stampede_domain::catalog::Product;
use stampede_domain::time::Timestamp;
use stampede_store_postgres::testing::TestDatabase;
use stampede_store_postgres::{PgSettings, PgStore};

const NOW: Timestamp = Timestamp::from_millis(1_800_000_000_000);

/// A consumer that reads the outbox by position while many connections
/// write events at once sees every event exactly once: `seq` grows in commit
/// order, so nothing commits behind a position already read. Without the
/// outbox lock, a row with a smaller `seq` committing after a larger one
/// would be skipped here.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_consumer_reading_by_position_under_concurrent_writers_misses_nothing() {
    let Some(database) = TestDatabase::create().await else {
        return;
    };
    let store = database.store().await;
    let writing = Arc::new(AtomicBool::new(true));
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in 0..60 {
                    let product =
                        Product::create(&format!("SKU-{w}-{i}"), "Phone", 100, "EUR", NOW).unwrap();
                    store.insert_product(&product).await.unwrap();
                }
            })
        })
        .collect();
    let reader = {
        let store = store.clone();
        let writing = writing.clone();
        tokio::spawn(async move {
            let mut cursor = 0;
            let mut seen = Vec::new();
            loop {
                let done = !writing.load(Ordering::Acquire);
                let events = store.events_after(cursor, 50).await.unwrap();
                if let Some(last) = events.last() {
                    cursor = last.seq;
                }
                seen.extend(events.into_iter().map(|e| e.id));
                if done && store.events_after(cursor, 1).await.unwrap().is_empty() {
                    return seen;
                }
            }
        })
    };
    for writer in writers {
        writer.await.unwrap();
    }
    writing.store(false, Ordering::Release);
    let seen = reader.await.unwrap();
    let unique: HashSet<_> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "an event was read twice");
    assert_eq!(seen.len(), 8 * 60, "the consumer missed events");
}

/// Nodes starting together all migrate the same fresh database: each
/// migration is applied once and every node can use the schema.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_connecting_at_once_migrate_the_schema_once() {
    let Some(database) = TestDatabase::create().await else {
        return;
    };
    let settings = PgSettings::new(&database.url);
    let nodes: Vec<_> = (0..4)
        .map(|_| {
            let settings = settings.clone();
            tokio::spawn(async move { PgStore::connect(&settings).await })
        })
        .collect();
    for node in nodes {
        let store = node.await.unwrap().unwrap();
        store.ping().await.unwrap();
        store.close().await;
    }
    let (client, connection) = tokio_postgres::connect(&database.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let versions: i64 = client
        .query_one("SELECT count(*) FROM schema_migrations", &[])
        .await
        .unwrap()
        .get(0);
    // Each migration once (this build has four).
    assert_eq!(versions, 4);
}

/// A database written by a newer build is refused, untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_written_by_a_newer_build_is_refused() {
    let Some(database) = TestDatabase::create().await else {
        return;
    };
    let store = PgStore::connect(&PgSettings::new(&database.url))
        .await
        .unwrap();
    store.close().await;
    let (client, connection) = tokio_postgres::connect(&database.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
        .batch_execute("INSERT INTO schema_migrations (version) VALUES (999)")
        .await
        .unwrap();
    let err = PgStore::connect(&PgSettings::new(&database.url))
        .await
        .unwrap_err();
    match err {
        err @ StoreError::Unavailable { .. } => {
            let message = Chain(&err).to_string();
            assert!(message.contains("999"), "{message}")
        }
        other => panic!("{other:?}"),
    }
}

/// A closed store answers `Unavailable` at once, and an unreachable server
/// is `Unavailable` too (retryable), never a panic or a hang.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_is_unavailable() {
    let mut settings = PgSettings::new("postgres://postgres@127.0.0.1:1/none");
    settings.acquire_timeout = std::time::Duration::from_millis(500);
    let err = PgStore::connect(&settings).await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable { .. }), "{err:?}");
}

/// A database that keeps failing opens the store's breaker: after a run of
/// failures, calls are refused at once (naming the breaker) without
/// touching the database; once it is back and the breaker's wait is over,
/// probes close it. Uses the breaker's default settings (opens at 50 % of
/// the last 20 calls failing once 10 were seen; stays open 10 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_database_opens_the_read_breaker() {
    let Some(database) = TestDatabase::create().await else {
        return;
    };
    let mut settings = PgSettings::new(&database.url);
    settings.acquire_timeout = std::time::Duration::from_millis(500);
    let store = PgStore::connect(&settings).await.unwrap();
    let id = stampede_domain::ids::ProductId::generate();
    assert!(store.product(id).await.unwrap().is_none());

    // Cut the database off: no new connections, existing ones terminated.
    let admin = stampede_store_postgres::testing::admin_client().await;
    let cut = |allow: bool| {
        format!(
            "ALTER DATABASE {} WITH ALLOW_CONNECTIONS {allow}",
            database.name
        )
    };
    admin.batch_execute(&cut(false)).await.unwrap();
    admin
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
            &[&database.name],
        )
        .await
        .unwrap();

    let mut failures = 0;
    let refusal = loop {
        match store.product(id).await {
            Err(err @ StoreError::Unavailable { .. })
                if Chain(&err).to_string().contains("circuit breaker") =>
            {
                break Chain(&err).to_string();
            }
            Err(StoreError::Unavailable { .. }) => failures += 1,
            other => panic!("a cut-off database answered {other:?}"),
        }
        assert!(failures <= 20, "the breaker never opened");
    };
    assert!(refusal.contains("database_read is open"), "{refusal}");
    // The window's minimum of 10 calls: the first read and 9 failures.
    assert_eq!(failures, 9, "opened after {failures} failures");
    // Writes have their own breaker, still closed: they reach the database.
    let write = store
        .save_cursor("breaker-test", 1)
        .await
        .expect_err("the database is cut off");
    assert!(!write.to_string().contains("circuit breaker"), "{write}");

    admin.batch_execute(&cut(true)).await.unwrap();
    store.close().await;
}
