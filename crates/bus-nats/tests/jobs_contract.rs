//! The `JobQueue` contract suite (stampede_contract::jobs), run against
//! the JetStream job queue on the NATS server of the machine, in a namespace
//! of its own whose streams are deleted afterwards.

// Test code: a failed expectation is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use stampede_app::ports::{JobQueue, Store};
use stampede_bus_nats::{JetStreamBus, NatsSettings};
use stampede_contract::jobs::JobsFixture;
use stampede_store_sqlite::{SqliteSettings, SqliteStore};

const LEASE: Duration = Duration::from_secs(1);

struct OnJetStream {
    bus: JetStreamBus,
    queue: Arc<dyn JobQueue>,
    store: Arc<dyn Store>,
    _dir: tempfile::TempDir,
}

impl JobsFixture for OnJetStream {
    fn queue(&self) -> Arc<dyn JobQueue> {
        self.queue.clone()
    }

    fn lease(&self) -> Duration {
        LEASE
    }

    async fn teardown(self) {
        self.bus.delete_job_stream().await.unwrap();
        self.bus.delete_stream().await.unwrap();
        self.store.close().await;
    }
}

async fn fresh() -> Option<OnJetStream> {
    common::reachable().await?;
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::open(&dir.path().join("stampede.db"), SqliteSettings::default()).unwrap(),
    );
    let settings = NatsSettings {
        ack_wait: LEASE,
        ..common::test_settings(&[])
    };
    let bus = JetStreamBus::connect(settings, store.clone())
        .await
        .unwrap();
    let queue = Arc::new(bus.job_queue().await.unwrap());
    Some(OnJetStream {
        bus,
        queue,
        store,
        _dir: dir,
    })
}

stampede_contract::jobs_contract_tests!(fresh());
