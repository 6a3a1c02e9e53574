//! One simulated process: the services over the fault-injecting adapters,
//! built the way the binary's start-up builds them (`stampede::startup`):
//! open the SQLite store, rebuild the in-process ledger from it, then wire
//! the services. A crash drops all of it — the ledger, the commit stage, the
//! caches — and only the database files survive.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use stampede_app::AppError;
use stampede_app::catalog::SaleDirectory;
use stampede_app::ledger::{KeyMemorySettings, LedgerRepair};
use stampede_app::lifecycle::Lifecycle;
use stampede_app::orders::OrderService;
use stampede_app::payments::{PaymentService, PaymentSettings};
use stampede_app::ports::{Clock, ManualClockHandle, StockLedger, Store};
use stampede_app::purchase::{AnsweredKeys, CommitSettings, PurchaseService};
use stampede_app::room::{RoomSettings, TicketKey, WaitingRoom};
use stampede_app::workers::{Background, ExpirySweeper, Reconciler};
use stampede_inprocess::{MemoryLedger, MemoryRoomBook, OutboxBus};
use stampede_store_sqlite::{SqliteSettings, SqliteStore, Synchronous};

use crate::faults::{FaultPlan, FaultyLedger, FaultyStore};

/// The provider webhook's signing secret in the simulation.
pub(crate) const WEBHOOK_SECRET: &[u8] = b"simulated provider secret";

/// Answers younger than this are kept by the ledger (the default, 24 h).
pub(crate) fn key_retention_ms() -> i64 {
    KeyMemorySettings::default().retention_ms
}

pub(crate) struct Node {
    /// The store without faults, for the checker (and for start-up).
    pub store: Arc<dyn Store>,
    /// The ledger without faults, for the checker.
    pub ledger: Arc<dyn StockLedger>,
    pub purchases: PurchaseService,
    pub orders: OrderService,
    pub payments: PaymentService,
    pub expiry: ExpirySweeper,
    background: Arc<Background>,
}

pub(crate) fn db_path(dir: &Path) -> PathBuf {
    dir.join("stampede.db")
}

/// Opens the store in `dir`. `Normal` sync: a commit survives the process
/// dying (WAL), which is the crash simulated here, and it is much faster.
pub(crate) fn open_store(dir: &Path) -> Result<Arc<dyn Store>, AppError> {
    let settings = SqliteSettings {
        synchronous: Synchronous::Normal,
        readers: 1,
    };
    Ok(Arc::new(SqliteStore::open(&db_path(dir), settings)?))
}

impl Node {
    /// Starts a process over the files in `dir`: the ledger rebuilt from the
    /// store as start-up does, then left reservations reconciled.
    pub(crate) async fn boot(
        dir: &Path,
        clock: ManualClockHandle,
        plan: Arc<FaultPlan>,
    ) -> Result<Self, AppError> {
        let store = open_store(dir)?;
        let clock: Arc<dyn Clock> = clock;
        let now = clock.now();
        let ledger: Arc<dyn StockLedger> =
            Arc::new(MemoryLedger::new(KeyMemorySettings::default(), now));
        let snapshots = store.sale_snapshots().await?;
        let keys = store
            .keys_since(now.plus_millis(-key_retention_ms()))
            .await?;
        let sales: Vec<_> = snapshots.iter().map(|s| s.sale.clone()).collect();
        ledger.restore(snapshots, keys, now).await?;
        let faulty_store: Arc<dyn Store> = Arc::new(FaultyStore::new(store.clone(), plan.clone()));
        let faulty_ledger: Arc<dyn StockLedger> = Arc::new(FaultyLedger::new(ledger.clone(), plan));
        let bus = Arc::new(OutboxBus::new(store.clone()));
        let background = Arc::new(Background::new());
        let directory = Arc::new(SaleDirectory::new(
            store.clone(),
            sales,
            Default::default(),
            None,
        ));
        // The repair reads the store without faults: it runs as a task of its
        // own, and its calls must not draw from the fault stream.
        let repair = Arc::new(LedgerRepair::new(
            store.clone(),
            store.clone(),
            faulty_ledger.clone(),
            clock.clone(),
            key_retention_ms(),
            background.spawner(),
        ));
        let purchases = PurchaseService::new(
            directory,
            repair,
            faulty_store.clone(),
            bus.clone(),
            clock.clone(),
            Arc::new(Lifecycle::default()),
            CommitSettings::default(),
            Arc::new(AnsweredKeys::deterministic(key_retention_ms())),
            Arc::new(WaitingRoom::new(
                Arc::new(MemoryRoomBook::new()),
                TicketKey::derive(b"sim"),
                clock.clone(),
                RoomSettings::default(),
            )),
        );
        let orders = OrderService::new(
            faulty_store.clone(),
            store.clone(),
            faulty_ledger.clone(),
            bus.clone(),
            clock.clone(),
        );
        let payments = PaymentService::new(
            faulty_store.clone(),
            bus.clone(),
            clock.clone(),
            PaymentSettings {
                webhook_secret: WEBHOOK_SECRET.to_vec(),
                ..PaymentSettings::default()
            },
        );
        let expiry = ExpirySweeper::new(
            faulty_store,
            faulty_ledger,
            bus,
            clock.clone(),
            Duration::from_millis(250),
        );
        // The in-process ledger keeps no reservation across a restart, so this
        // settles none; run as the binary's worker would, to keep it honest.
        Reconciler::new(
            store.clone(),
            ledger.clone(),
            clock,
            Duration::from_secs(30),
        )
        .reconcile_once()
        .await?;
        Ok(Self {
            store,
            ledger,
            purchases,
            orders,
            payments,
            expiry,
            background,
        })
    }

    /// Kills the process: every in-memory part goes; the store's files stay
    /// as the last commit left them (the OS would drop the file lock).
    pub(crate) async fn crash(self) {
        let Self {
            store,
            ledger,
            purchases,
            orders,
            payments,
            expiry,
            background,
        } = self;
        drop((ledger, purchases, orders, payments, expiry));
        background.stop(Duration::from_secs(5)).await;
        // Let the dropped commit stage's workers see their queue closed.
        for _ in 0..4 {
            tokio::task::yield_now().await;
        }
        store.close().await;
    }
}
