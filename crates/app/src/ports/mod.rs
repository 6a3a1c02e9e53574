//! Ports: the small traits the services use to reach the outside world — the
//! store of record, the stock ledger, the event bus, the payment provider,
//! outbound webhooks and the clock. Each has an in-process adapter and, for
//! cluster mode, adapters for external engines, and every adapter runs the
//! same contract suite (crate `stampede-contract`). The shared read cache (L2) is
//! cluster mode's only: embedded mode has just the in-process cache.

pub mod bus;
pub mod cache;
pub mod captcha;
pub mod clock;
pub mod guard;
pub mod health;
pub mod jobs;
pub mod ledger;
pub mod notify;
pub mod payment;
pub mod room;
pub mod store;

pub use bus::{BusError, BusSubscription, EventBus};
pub use cache::{CacheError, SharedCache};
pub use captcha::{CaptchaError, CaptchaVerifier};
pub use clock::{Clock, ManualClock, ManualClockHandle, SystemClock};
pub use guard::StoreGuard;
pub use health::{Probe, StoreProbe};
pub use jobs::{Job, JobQueue, Lease, QueueError};
pub use ledger::{Attempt, Decision, LedgerError, Reservation, Settlement, StockLedger};
pub use notify::{SendError, WebhookSender};
pub use payment::{ChargeError, ChargeRequest, PaymentProvider};
pub use room::{Draw, Joined, RoomBook, RoomCounters};
pub use store::{
    AttemptResult, CancelOutcome, CatalogStore, CommitOutcome, DueDelivery, KeyRecord, OrderStore,
    OutboxStore, PayOutcome, PaymentStore, SaleCounts, SaleSnapshot, SaleUpdate, SettleOutcome,
    Store, StoreError, StoredEvent, UserStore, WebhookStore,
};
