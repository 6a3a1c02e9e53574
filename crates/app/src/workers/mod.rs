//! Background work, in one place: every loop of a node is a [`Worker`] — one
//! step, when to step again, what to do after a failure — run by one driver
//! ([`Background`], after garage's `Worker` and its processor) under the
//! shutdown tracker. The driver owns the loop, the sleeps, the backoff and
//! the bookkeeping: each worker's state, steps, failures, last run and last
//! error, in `/metrics` (`stampede_worker_*`) and `GET /api/v1/admin/workers`.
//!
//! The workers:
//!
//! - [`ExpirySweeper`]: expires unpaid orders past their payment window;
//! - [`Reconciler`]: settles reservations a dead node left in a shared ledger;
//! - [`SaleSync`]: applies admins' sale controls made on other nodes;
//! - [`RoomPace`]: moves the waiting rooms' lines;
//! - [`DeliveryWorker`]: POSTs due webhook deliveries;
//! - [`PaymentWorker`]: sends payment jobs to the provider, and sweeps;
//! - [`ConsumerWorker`]: runs a bus [`Consumer`] (the payment feeder, the
//!   webhook fan-out);
//! - [`LiveFeed`]: feeds the bus's events to server-sent event streams;
//! - adapters' own (the JetStream outbox relay) and the edge's (the rate
//!   limiters' upkeep), handed to the same driver by the start-up.

mod consumer;
mod driver;
mod expiry;
mod live;
mod payments;
mod reconcile;
mod room_pace;
mod sale_sync;
mod webhook_delivery;
mod webhook_fanout;

use std::time::Duration;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

pub use consumer::{Consumer, ConsumerWorker};
pub use driver::{Background, TaskSpawner, WorkerReport, WorkerState};
pub use expiry::ExpirySweeper;
pub use live::LiveFeed;
pub use payments::{PAYMENT_JOB, PaymentFeeder, PaymentWorker};
pub use reconcile::Reconciler;
pub use room_pace::RoomPace;
pub use sale_sync::SaleSync;
pub use webhook_delivery::DeliveryWorker;
pub use webhook_fanout::WebhookFanout;

/// Why a step failed, with its causes (`source()` chain).
pub type StepError = Box<dyn std::error::Error + Send + Sync>;

/// What a successful step says about the next one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// There may be more to do: step again at once.
    Busy,
    /// Nothing to do now: step again once [`Worker::wait_for_work`] returns.
    Idle,
}

/// One background loop, as a step the driver repeats.
#[async_trait]
pub trait Worker: Send + 'static {
    /// A short, stable name: the `worker` label of its metrics.
    fn name(&self) -> String;

    /// One unit of work. A step that waits (for jobs, for events) returns
    /// soon after `stop` is cancelled; one that does not may ignore it, since
    /// shutdown lets the step in hand finish.
    async fn step(&mut self, stop: &CancellationToken) -> Result<Next, StepError>;

    /// After an idle step: returns when there may be work again (a wake-up,
    /// or a poll interval). Cancelled at shutdown.
    async fn wait_for_work(&mut self);

    /// After the `failures`-th failed step in a row: how long to wait before
    /// the next. Default: from 100 ms, doubling, at most 30 s.
    fn backoff(&self, failures: u32) -> Duration {
        doubling(
            Duration::from_millis(100),
            failures,
            Duration::from_secs(30),
        )
    }

    /// Once stopped: finish the work in hand (e.g. sends in flight).
    async fn finish(&mut self) {}
}

/// `base` doubled for each failure after the first, at most `cap`.
pub fn doubling(base: Duration, failures: u32, cap: Duration) -> Duration {
    let shift = failures.saturating_sub(1).min(16);
    base.saturating_mul(1 << shift).min(cap)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_its_base_up_to_the_cap() {
        let base = Duration::from_millis(100);
        let cap = Duration::from_secs(1);
        let waits: Vec<_> = (1..=6)
            .map(|n| doubling(base, n, cap).as_millis())
            .collect();
        assert_eq!(waits, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(doubling(base, u32::MAX, cap), cap);
    }
}
