//! Opening each port's adapter for the mode the settings choose: SQLite or
//! PostgreSQL, the memory or Redis ledger, the outbox or NATS bus.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use stampede_app::ports::{
    CaptchaVerifier, Clock, EventBus, JobQueue, Probe, RoomBook, SharedCache, StockLedger, Store,
    StoreProbe,
};
use stampede_bus_nats::{JetStreamBus, NatsSettings, OutboxRelay};
use stampede_flow::limit::shared::RateStore;
use stampede_inprocess::{MemoryJobQueue, MemoryLedger, MemoryRoomBook, OutboxBus};
use stampede_ledger_redis::{
    RedisCache, RedisLedger, RedisLedgerSettings, RedisRateSettings, RedisRateStore, RedisRoomBook,
};
use stampede_outbound::HttpCaptchaVerifier;
use stampede_store_postgres::PgStore;
use stampede_store_sqlite::{SqliteSettings, SqliteStore, Synchronous};

use crate::config::{Settings, SqliteSync};

/// The store of record: PostgreSQL when a database URL is set (cluster
/// mode), else SQLite in the data directory (embedded mode); with the
/// probes readiness checks.
pub(super) async fn open_store(
    settings: &Settings,
) -> anyhow::Result<(Arc<dyn Store>, Vec<Arc<dyn Probe>>)> {
    if let Some(database) = &settings.database {
        let store = Arc::new(
            PgStore::connect(database)
                .await
                .context("opening the PostgreSQL store")?,
        );
        return Ok((store.clone(), vec![store]));
    }
    let sqlite = SqliteSettings {
        synchronous: match settings.sqlite_synchronous {
            SqliteSync::Full => Synchronous::Full,
            SqliteSync::Normal => Synchronous::Normal,
        },
        ..SqliteSettings::default()
    };
    let db_path = settings.data_dir.join("stampede.db");
    let store = tokio::task::spawn_blocking(move || SqliteStore::open(&db_path, sqlite))
        .await
        .context("opening the store")?
        .context("opening the SQLite store")?;
    let store: Arc<dyn Store> = Arc::new(store);
    Ok((store.clone(), vec![Arc::new(StoreProbe(store))]))
}

/// The stock ledger: Redis when a Redis URL is set (cluster mode: shared by
/// every node, under the namespace), else in this process's memory.
pub(super) async fn open_ledger(
    settings: &Settings,
    clock: &dyn Clock,
    probes: &mut Vec<Arc<dyn Probe>>,
) -> anyhow::Result<Arc<dyn StockLedger>> {
    let Some(url) = &settings.redis_url else {
        return Ok(Arc::new(MemoryLedger::new(
            settings.key_memory,
            clock.now(),
        )));
    };
    let ledger_settings = RedisLedgerSettings {
        key_retention: Duration::from_millis(settings.key_memory.retention_ms.max(1) as u64),
        ..RedisLedgerSettings::default()
    };
    let ledger = Arc::new(
        RedisLedger::connect(url, &settings.namespace, ledger_settings)
            .await
            .context("connecting the Redis stock ledger")?,
    );
    probes.push(ledger.clone());
    Ok(ledger)
}

/// Where shared rate limits keep their state: Redis when a Redis URL is set
/// (cluster mode), on a connection of its own, made at the first check.
pub(super) fn open_rate_store(settings: &Settings) -> anyhow::Result<Option<Arc<dyn RateStore>>> {
    let Some(url) = &settings.redis_url else {
        return Ok(None);
    };
    let store = RedisRateStore::new(url, &settings.namespace, &RedisRateSettings::default())
        .context("building the Redis rate-limit store")?;
    Ok(Some(Arc::new(store)))
}

/// The waiting rooms' book: Redis when a Redis URL is set (cluster mode, on
/// a connection of its own, made at the first call), else in memory.
pub(super) fn open_room_book(settings: &Settings) -> anyhow::Result<Arc<dyn RoomBook>> {
    let Some(url) = &settings.redis_url else {
        return Ok(Arc::new(MemoryRoomBook::new()));
    };
    let book = RedisRoomBook::new(url, &settings.namespace)
        .context("building the Redis waiting-room book")?;
    Ok(Arc::new(book))
}

/// The captcha provider's verification, when one is configured.
pub(super) fn open_captcha(
    settings: &Settings,
) -> anyhow::Result<Option<Arc<dyn CaptchaVerifier>>> {
    let Some(captcha) = &settings.captcha else {
        return Ok(None);
    };
    let verifier =
        HttpCaptchaVerifier::new(captcha.url.clone(), captcha.secret.expose().to_owned())
            .context("building the captcha provider's HTTP client")?;
    Ok(Some(Arc::new(verifier)))
}

/// The catalog's shared read cache (L2): Redis when a Redis URL is set
/// (cluster mode), on a connection of its own, made at the first read.
pub(super) fn open_shared_cache(
    settings: &Settings,
) -> anyhow::Result<Option<Arc<dyn SharedCache>>> {
    let Some(url) = &settings.redis_url else {
        return Ok(None);
    };
    let cache = RedisCache::new(url, &settings.namespace).context("building the Redis cache")?;
    Ok(Some(Arc::new(cache)))
}

/// The event bus: NATS JetStream when a NATS URL is set (cluster mode: with
/// the relay that feeds it from the outbox, run on worker nodes), else the
/// outbox table read in process.
/// The event bus, the job queue, and the relay that feeds the bus (cluster
/// mode): JetStream with `--nats-url`, in-process otherwise.
pub(super) async fn open_bus(
    settings: &Settings,
    store: Arc<dyn Store>,
    probes: &mut Vec<Arc<dyn Probe>>,
) -> anyhow::Result<(Arc<dyn EventBus>, Arc<dyn JobQueue>, Option<OutboxRelay>)> {
    let Some(url) = &settings.nats_url else {
        let jobs = Arc::new(MemoryJobQueue::new(settings.nats_ack_wait));
        return Ok((Arc::new(OutboxBus::new(store)), jobs, None));
    };
    let nats = NatsSettings {
        url: url.clone(),
        namespace: settings.namespace.clone(),
        replicas: settings.nats_replicas,
        ack_wait: settings.nats_ack_wait,
        ..NatsSettings::default()
    };
    let bus = Arc::new(
        JetStreamBus::connect(nats, store)
            .await
            .context("connecting the NATS JetStream bus")?,
    );
    let replicas = bus.stream_replicas().await.context("reading the stream")?;
    tracing::info!(stream = %bus.stream_name(), replicas, "event bus on NATS JetStream");
    if replicas < 3 {
        tracing::warn!(
            replicas,
            "the event stream has fewer than 3 replicas; use 3 (and the server's \
             sync_interval: always) in production"
        );
    }
    probes.push(bus.clone());
    let jobs = Arc::new(bus.job_queue().await.context("opening the job queue")?);
    let relay = bus.relay();
    Ok((bus, jobs, Some(relay)))
}
