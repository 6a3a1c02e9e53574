//! Fresh, isolated PostgreSQL databases for tests: one per test, dropped
//! when the test's store is. Under `CI=true` an unreachable server fails the
//! test; elsewhere the test is skipped with a printed reason.

// Test support: a failure here is a failed test.
#![allow(clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use stampede_app::ports::Store;
use tokio_postgres::NoTls;

use crate::{PgSettings, PgStore};

/// The server tests use: `STAMPEDE_TEST_POSTGRES_URL`, or the local one.
pub fn admin_url() -> String {
    std::env::var("STAMPEDE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A database made for one test; dropped (connections and all) on drop.
#[derive(Debug)]
pub struct TestDatabase {
    pub name: String,
    pub url: String,
}

impl TestDatabase {
    /// Creates `stampede_test_<random>`; `None` (after printing why) when
    /// the server is unreachable outside CI.
    pub async fn create() -> Option<Self> {
        let admin = admin_url();
        let client = match connect(&admin).await {
            Ok(client) => client,
            Err(err) => {
                skip_or_fail(&format!("PostgreSQL at {admin} is unreachable: {err}"));
                return None;
            }
        };
        let name = format!("stampede_test_{}", uuid::Uuid::new_v4().simple());
        if let Err(err) = client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
        {
            panic!("creating test database {name}: {err}");
        }
        let url = with_dbname(&admin, &name);
        Some(Self { name, url })
    }

    /// A plain connection to this database, to look or meddle behind a
    /// store's back.
    pub async fn client(&self) -> tokio_postgres::Client {
        connect(&self.url)
            .await
            .expect("connecting to the test database")
    }

    /// A store on this database, which it keeps until the store is dropped.
    pub async fn store(self) -> Arc<dyn Store> {
        let store = PgStore::connect(&PgSettings::new(&self.url))
            .await
            .expect("connecting to the test database");
        Arc::new(store.keep(self))
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // On a thread of its own with its own runtime: drop may run inside
        // or outside a runtime, and must finish before the test process exits.
        let name = self.name.clone();
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime to drop the test database");
            runtime.block_on(async {
                let client = connect(&admin_url()).await?;
                client
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop test database {}: {dropped:?}", self.name);
        }
    }
}

/// A fresh store on a fresh database, or `None` if the test should skip.
pub async fn fresh_store() -> Option<Arc<dyn Store>> {
    Some(TestDatabase::create().await?.store().await)
}

/// Fails under CI (`CI=true`), where every service must be up; elsewhere
/// prints the reason the test is skipped.
pub fn skip_or_fail(reason: &str) {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{reason} (CI=true: cluster tests must run)");
    }
    eprintln!("skipping: {reason}");
}

/// A connection to the tests' server as its administrator (database
/// `test` by default), to cut a test database off and so on.
pub async fn admin_client() -> tokio_postgres::Client {
    connect(&admin_url())
        .await
        .expect("connecting to the tests' PostgreSQL server")
}

async fn connect(url: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

/// `url` with its database replaced by `name`.
fn with_dbname(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let base = match base.rfind('/') {
        Some(slash) if slash > "postgres://".len() => &base[..slash],
        _ => base,
    };
    match query {
        Some(query) => format!("{base}/{name}?{query}"),
        None => format!("{base}/{name}"),
    }
}
