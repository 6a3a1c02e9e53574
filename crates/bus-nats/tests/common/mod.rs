//! What the NATS tests share: a JetStream bus with its relay over a fresh
//! SQLite store, in a namespace of its own, removed at the end.

// Test code: a failed expectation is a failed test; not every test binary
// uses every helper.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use stampede_app::ports::{EventBus, Store};
use stampede_app::workers::Background;
use stampede_bus_nats::{JetStreamBus, NatsSettings};
use stampede_contract::bus::BusFixture;
use stampede_store_sqlite::{SqliteSettings, SqliteStore};

/// The NATS server the tests use (`NATS_URL` to change it).
pub fn nats_url() -> String {
    std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned())
}

/// Settings for a test: a namespace nobody else uses, quick polling.
pub fn test_settings(consumers: &[&str]) -> NatsSettings {
    NatsSettings {
        url: nats_url(),
        namespace: format!("t{}", uuid::Uuid::new_v4().simple()),
        consumers: consumers.iter().map(|name| (*name).to_owned()).collect(),
        poll: Duration::from_millis(50),
        ..NatsSettings::default()
    }
}

/// The one answer to "NATS is not there": under `CI=true` the test fails;
/// elsewhere it is skipped, saying why.
pub fn unreachable<T>(reason: impl std::fmt::Display) -> Option<T> {
    if std::env::var("CI").is_ok_and(|ci| ci == "true") {
        panic!(
            "NATS is required under CI and unreachable at {}: {reason}",
            nats_url()
        );
    }
    eprintln!("skipped: NATS unreachable at {}: {reason}", nats_url());
    None
}

/// `Some` if the NATS server accepts TCP connections; otherwise see
/// [`unreachable`]. Anything else failing on a reachable server fails the
/// test.
pub async fn reachable() -> Option<()> {
    let url = nats_url();
    let address = url.trim_start_matches("nats://").to_owned();
    let connect = tokio::net::TcpStream::connect(address);
    match tokio::time::timeout(Duration::from_secs(2), connect).await {
        Ok(Ok(_)) => Some(()),
        Ok(Err(err)) => unreachable(err),
        Err(_) => unreachable("connecting timed out"),
    }
}

/// A bus, its relay running as a task, and the store behind them.
pub struct Cluster {
    pub store: Arc<dyn Store>,
    pub bus: Arc<JetStreamBus>,
    pub settings: NatsSettings,
    /// Runs the relay, as a node does.
    background: Background,
}

impl Cluster {
    /// `None` (or a failure under CI) when NATS cannot be reached.
    pub async fn start(dir: &Path, consumers: &[&str]) -> Option<Self> {
        let store: Arc<dyn Store> = Arc::new(
            SqliteStore::open(&dir.join("stampede.db"), SqliteSettings::default())
                .expect("opening a fresh store"),
        );
        let settings = test_settings(consumers);
        reachable().await?;
        let bus = Arc::new(
            JetStreamBus::connect(settings.clone(), store.clone())
                .await
                .expect("connecting to a reachable NATS"),
        );
        let background = Background::new();
        background.run(bus.relay());
        Some(Self {
            store,
            bus,
            settings,
            background,
        })
    }

    /// Runs `body` on this cluster, then tears it down, then passes on the
    /// body's failure: the stream goes away even when the test fails.
    pub async fn run<Fut>(self, body: impl FnOnce(Arc<JetStreamBus>, Arc<dyn Store>) -> Fut)
    where
        Fut: Future<Output = ()> + Send + 'static,
    {
        let outcome = tokio::spawn(body(self.bus.clone(), self.store.clone())).await;
        self.shutdown().await;
        if let Err(err) = outcome {
            if err.is_panic() {
                std::panic::resume_unwind(err.into_panic());
            }
            panic!("the test body did not finish: {err}");
        }
    }

    /// Stops the relay, deletes the stream, closes the store.
    pub async fn shutdown(self) {
        self.background.stop(Duration::from_secs(30)).await;
        if let Err(err) = self.bus.delete_stream().await {
            eprintln!("deleting test stream {}: {err}", self.bus.stream_name());
        }
        self.store.close().await;
    }
}

impl BusFixture for Cluster {
    fn bus(&self) -> Arc<dyn EventBus> {
        self.bus.clone()
    }

    fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }

    async fn teardown(self) {
        self.shutdown().await;
    }
}
