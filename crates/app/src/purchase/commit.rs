//! The commit stage of the purchase path: a bounded queue of reserved orders,
//! drained by a small pool of workers that each take whatever is waiting (up to
//! a cap) and make it durable in one store transaction — a group commit. A lone
//! order is committed at once; under a crowd the batch grows with the queue, so
//! one fsync serves many orders (docs/design.md §4.3).
//!
//! Workers settle every reservation with the ledger before answering, so the
//! ledger and the store agree whatever the requester does meanwhile (it may have
//! gone away), and a replay arriving right after a 202 finds the key decided.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use futures_util::future::join_all;
use metrics::{Counter, Gauge, Histogram, counter, gauge, histogram};
use stampede_domain::idempotency::{Answer, Fingerprint, Remembered};
use stampede_domain::order::Order;
use stampede_domain::stock::Refusal;
use stampede_flow::QueueBudget;
use stampede_trace::TraceParent;
use tokio::sync::{Mutex, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::error::AppError;
use crate::failure::Chain;
use crate::ports::{Attempt, CommitOutcome, EventBus, OrderStore, Settlement, StockLedger};

/// Sizes of the commit stage (the `commit_*` settings).
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CommitSettings {
    /// Reserved orders that may wait for a commit; beyond it purchases are
    /// refused with `503 overloaded` and their reservation given back.
    pub queue_capacity: usize,
    /// Most orders in one transaction.
    pub max_batch: usize,
    /// Transactions in flight at once. With one SQLite writer, two workers let
    /// the next batch gather while the previous one syncs.
    pub workers: usize,
    /// Purchase attempts of a sale in the costly path at once, per unit it
    /// has left (`crate::admission`); 0: no bound. Off by default: measured
    /// in embedded mode, where the ledger decides in microseconds, slots
    /// held through a winner's fsync only slow the last units; the cluster
    /// deployments turn it on (docs/benchmarks.md, "A sale's line").
    pub attempts_per_unit: u32,
}

impl Default for CommitSettings {
    fn default() -> Self {
        Self {
            queue_capacity: 8192,
            max_batch: 512,
            workers: 2,
            attempts_per_unit: 0,
        }
    }
}

/// A committed purchase.
#[derive(Debug)]
pub(crate) enum Committed {
    Created(Order),
    /// The store already had an order for this user and key, for this request.
    Existing(Order),
}

pub(crate) type Reply = Result<Committed, AppError>;

pub(crate) struct Job {
    pub order: Order,
    pub attempt: Attempt,
    pub reply: oneshot::Sender<Reply>,
    /// When the job was queued: its wait for a worker is measured.
    pub queued: Instant,
    /// The purchase's trace: its `order.created` event carries it, and the
    /// commit is reported in it as a `commit_batch` span.
    pub trace: Option<TraceParent>,
}

/// Why a job was not queued; the job comes back so its reservation can be
/// given back.
pub(crate) enum Rejected {
    Full(Box<Job>),
    Closed(Box<Job>),
    /// Its predicted wait and commit do not fit its deadline.
    Late(Box<Job>),
}

struct Metrics {
    /// Purchases won, counted here because the commit always finishes, even
    /// when the requester has gone.
    won: Counter,
    depth: Gauge,
    batch_size: Histogram,
    commit_seconds: Histogram,
    wait_seconds: Histogram,
    failed_batches: Counter,
    drift: Counter,
}

impl Metrics {
    fn new() -> Self {
        Self {
            won: counter!("stampede_purchases_total", "outcome" => "won"),
            depth: gauge!("stampede_commit_queue_depth"),
            batch_size: histogram!("stampede_commit_batch_size"),
            commit_seconds: histogram!("stampede_commit_duration_seconds"),
            wait_seconds: histogram!("stampede_commit_queue_wait_seconds"),
            failed_batches: counter!("stampede_commit_failed_batches_total"),
            drift: counter!("stampede_ledger_drift_total"),
        }
    }
}

struct Shared {
    store: Arc<dyn OrderStore>,
    ledger: Arc<dyn StockLedger>,
    /// Told after each commit: `order.created` events are waiting.
    bus: Arc<dyn EventBus>,
    max_batch: usize,
    metrics: Metrics,
    /// How long a commit and the queue ahead take, measured per batch.
    budget: QueueBudget,
}

pub(crate) struct GroupCommitter {
    queue: mpsc::Sender<Job>,
    receiver: Arc<Mutex<mpsc::Receiver<Job>>>,
    capacity: usize,
    closed: AtomicBool,
    stop: CancellationToken,
    workers: TaskTracker,
    shared: Arc<Shared>,
}

impl GroupCommitter {
    pub(crate) fn start(
        store: Arc<dyn OrderStore>,
        ledger: Arc<dyn StockLedger>,
        bus: Arc<dyn EventBus>,
        settings: CommitSettings,
    ) -> Self {
        let capacity = settings.queue_capacity.max(1);
        let (queue, receiver) = mpsc::channel(capacity);
        let receiver = Arc::new(Mutex::new(receiver));
        let shared = Arc::new(Shared {
            store,
            ledger,
            bus,
            max_batch: settings.max_batch.max(1),
            metrics: Metrics::new(),
            // A few milliseconds until the first batch is measured.
            budget: QueueBudget::new("commit", settings.workers.max(1), Duration::from_millis(5)),
        });
        let stop = CancellationToken::new();
        let workers = TaskTracker::new();
        for _ in 0..settings.workers.max(1) {
            workers.spawn(work(receiver.clone(), shared.clone(), stop.clone()));
        }
        workers.close();
        Self {
            queue,
            receiver,
            capacity,
            closed: AtomicBool::new(false),
            stop,
            workers,
            shared,
        }
    }

    /// Queues a reserved order without waiting.
    pub(crate) fn submit(&self, job: Job) -> Result<(), Rejected> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Rejected::Closed(Box::new(job)));
        }
        if self.shared.budget.admit(self.depth()).is_err() {
            return Err(Rejected::Late(Box::new(job)));
        }
        match self.queue.try_send(job) {
            Ok(()) => {
                self.shared.metrics.depth.set(self.depth() as f64);
                Ok(())
            }
            Err(mpsc::error::TrySendError::Full(job)) => Err(Rejected::Full(Box::new(job))),
            Err(mpsc::error::TrySendError::Closed(job)) => Err(Rejected::Closed(Box::new(job))),
        }
    }

    pub(crate) fn depth(&self) -> usize {
        self.capacity - self.queue.capacity()
    }

    /// Stops taking orders, commits every order already queued, and waits for
    /// the workers to finish.
    pub(crate) async fn shutdown(&self) {
        self.closed.store(true, Ordering::Release);
        self.stop.cancel();
        self.workers.wait().await;
        // An order queued in the instant between the check in `submit` and the
        // workers stopping is answered, not forgotten.
        let mut receiver = self.receiver.lock().await;
        receiver.close();
        while let Ok(job) = receiver.try_recv() {
            abandon(&self.shared, job, AppError::unavailable("shutting down")).await;
        }
    }
}

async fn work(
    receiver: Arc<Mutex<mpsc::Receiver<Job>>>,
    shared: Arc<Shared>,
    stop: CancellationToken,
) {
    loop {
        let batch = {
            let mut receiver = receiver.lock().await;
            // `biased`: queued orders first, so stopping drains the queue.
            let first = tokio::select! {
                biased;
                job = receiver.recv() => job,
                () = stop.cancelled() => None,
            };
            let Some(first) = first else { break };
            let mut batch = Vec::with_capacity(shared.max_batch.min(64));
            batch.push(first);
            while batch.len() < shared.max_batch {
                match receiver.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            shared.metrics.depth.set(receiver.len() as f64);
            batch
        };
        commit(&shared, batch).await;
    }
}

async fn commit(shared: &Shared, batch: Vec<Job>) {
    let started = Instant::now();
    let started_at = SystemTime::now();
    shared.metrics.batch_size.record(batch.len() as f64);
    for job in &batch {
        let waited = started.saturating_duration_since(job.queued);
        shared.metrics.wait_seconds.record(waited.as_secs_f64());
    }
    let orders: Vec<Order> = batch.iter().map(|job| job.order.clone()).collect();
    let traces: Vec<Option<TraceParent>> = batch.iter().map(|job| job.trace).collect();
    let result = shared.store.commit_traced_orders(&orders, &traces).await;
    let took = started.elapsed();
    shared.metrics.commit_seconds.record(took.as_secs_f64());
    shared.budget.record(batch.len(), took);
    report_batch(&traces, started_at, took, result.is_ok());
    match result {
        Ok(outcomes) if outcomes.len() == batch.len() => {
            shared.bus.notify();
            // All at once: with a remote ledger each settlement is a round
            // trip, and one after another they held the batch's last winner
            // (and the next batch) for a round trip per order.
            let finishing = batch
                .into_iter()
                .zip(outcomes)
                .map(|(job, outcome)| finish(shared, job, outcome));
            join_all(finishing).await;
        }
        Ok(outcomes) => {
            shared.metrics.failed_batches.increment(1);
            tracing::error!(
                orders = batch.len(),
                outcomes = outcomes.len(),
                "store answered a group commit with the wrong number of outcomes"
            );
            join_all(batch.into_iter().map(|job| {
                let err = AppError::internal("group commit outcome count mismatch");
                abandon(shared, job, err)
            }))
            .await;
        }
        Err(err) => {
            shared.metrics.failed_batches.increment(1);
            tracing::error!(orders = batch.len(), error = %Chain(&err), "group commit failed");
            // One failure, every order of the batch: each answer carries it
            // as its cause.
            let retryable = err.is_retryable();
            let cause = Arc::new(err);
            join_all(batch.into_iter().map(|job| {
                let context = "committing the order";
                let err = match retryable {
                    true => AppError::unavailable_because(context, cause.clone()),
                    false => AppError::internal_because(context, cause.clone()),
                };
                abandon(shared, job, err)
            }))
            .await;
        }
    }
}

/// One `commit_batch` span in each purchase's trace: the transaction served
/// them all, and each trace shows the commit that made its order durable.
fn report_batch(traces: &[Option<TraceParent>], started: SystemTime, took: Duration, ok: bool) {
    if !stampede_trace::is_on() {
        return;
    }
    let orders = i64::try_from(traces.len()).unwrap_or(i64::MAX);
    let ended = started + took;
    for trace in traces.iter().flatten().filter(|trace| trace.sampled()) {
        stampede_trace::record_span(
            "commit_batch",
            *trace,
            started,
            ended,
            &[
                ("stampede.batch.orders", orders),
                ("stampede.batch.ok", i64::from(ok)),
            ],
        );
    }
}

async fn finish(shared: &Shared, job: Job, outcome: CommitOutcome) {
    let Job {
        order,
        attempt,
        reply,
        ..
    } = job;
    let (settlement, answer) = match outcome {
        CommitOutcome::Created => {
            shared.metrics.won.increment(1);
            (Settlement::Won(order.id), Ok(Committed::Created(order)))
        }
        CommitOutcome::KeyTaken(existing) => {
            let fingerprint = Fingerprint {
                sale_id: existing.sale_id,
                quantity: existing.quantity,
            };
            let remembered = Remembered {
                fingerprint,
                answer: Answer::Won(existing.id),
            };
            let answer = if fingerprint == attempt.fingerprint {
                Ok(Committed::Existing(existing))
            } else {
                Err(AppError::IdempotencyMismatch)
            };
            (Settlement::Replaced(remembered), answer)
        }
        CommitOutcome::SoldOut => {
            // The ledger promised units the store of record does not have.
            shared.metrics.drift.increment(1);
            tracing::error!(
                sale_id = %attempt.fingerprint.sale_id,
                "ledger drift: the store refused a reserved order as sold out"
            );
            (
                Settlement::Abandoned,
                Err(AppError::Refused(Refusal::SoldOut)),
            )
        }
    };
    if let Err(err) = shared.ledger.settle(&attempt, settlement).await {
        tracing::error!(error = %Chain(&err), "settling a committed reservation failed");
    }
    // The requester may have gone; the order stands either way.
    let _ = reply.send(answer);
}

async fn abandon(shared: &Shared, job: Job, err: AppError) {
    if let Err(settle_err) = shared
        .ledger
        .settle(&job.attempt, Settlement::Abandoned)
        .await
    {
        tracing::error!(error = %settle_err, "giving back an uncommitted reservation failed");
    }
    let _ = job.reply.send(Err(err));
}
