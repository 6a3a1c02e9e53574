//! Sending requested payments to the provider, as jobs (`ports::jobs`):
//!
//! - the `payments` consumer turns each `payment.requested` event into a
//!   `payment` job (its id the payment's), acknowledging the events once the
//!   jobs are queued;
//! - workers on every worker node take the jobs, send each payment, and
//!   finish the job once the outcome is committed, or retry it later when
//!   the store failed; one slow payment holds up no other;
//! - a sweep queues again every payment still `requested` a while after it
//!   was asked for, so a lost queue (a restart in embedded mode, a lost
//!   stream) costs a sweep, never a payment.
//!
//! Idempotent per payment: a payment no longer `requested` was already
//! sent, and the provider deduplicates charges by payment id.

use crate::failure::Chain;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::future::try_join_all;
use metrics::counter;
use stampede_domain::ids::PaymentId;
use stampede_domain::payment::{PaymentResult, PaymentStatus};
use stampede_flow::breaker::BreakerError;
use stampede_flow::deadline::Deadline;
use stampede_flow::retry::{Retry, retry};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::{Consumer, Next, StepError, Worker, doubling};
use crate::error::AppError;
use crate::payments::PaymentService;
use crate::ports::{ChargeError, ChargeRequest, Job, JobQueue, PaymentProvider, StoredEvent};

/// The job kind of a payment to send.
pub const PAYMENT_JOB: &str = "payment";
/// Jobs taken at once at most (fewer when fewer charge slots are free),
/// and the longest wait for the first.
const TAKE: u32 = 64;
const TAKE_WAIT: Duration = Duration::from_secs(1);
/// Payments a sweep queues again at most (the next sweep takes the rest).
const SWEEP_BATCH: u32 = 1_000;
/// A job whose payment could not be recorded comes back after this, times
/// its delivery, up to the cap.
const RETRY_BASE: Duration = Duration::from_millis(500);
const RETRY_CAP: Duration = Duration::from_secs(30);

/// Sends payments: what the tasks of the [`PaymentWorker`] share.
struct Charger {
    payments: Arc<PaymentService>,
    provider: Arc<dyn PaymentProvider>,
    jobs: Arc<dyn JobQueue>,
}

/// Takes payment jobs and sends each on its own task, as many at once as the
/// provider's bulkhead has slots; sweeps now and then.
pub struct PaymentWorker {
    charger: Arc<Charger>,
    sending: JoinSet<()>,
    next_sweep: tokio::time::Instant,
}

impl PaymentWorker {
    pub fn new(
        payments: Arc<PaymentService>,
        provider: Arc<dyn PaymentProvider>,
        jobs: Arc<dyn JobQueue>,
    ) -> Self {
        Self {
            charger: Arc::new(Charger {
                payments,
                provider,
                jobs,
            }),
            sending: JoinSet::new(),
            next_sweep: tokio::time::Instant::now(),
        }
    }
}

#[async_trait]
impl Worker for PaymentWorker {
    fn name(&self) -> String {
        "payments".into()
    }

    /// A sweep when one is due, then as many jobs as there are free slots
    /// (waiting up to a second for them), each sent on its own task.
    async fn step(&mut self, stop: &CancellationToken) -> Result<Next, StepError> {
        let charger = &self.charger;
        if tokio::time::Instant::now() >= self.next_sweep {
            if let Err(err) = charger.sweep().await {
                tracing::warn!(error = %Chain(&err), "payment sweep failed");
            }
            self.next_sweep =
                tokio::time::Instant::now() + charger.payments.settings.sweep_interval;
        }
        // Finished sends leave the set; the rest go on concurrently.
        while self.sending.try_join_next().is_some() {}
        // Only as many jobs as there are free slots: a job taken and left
        // waiting would spend its lease and come back to another worker.
        let slots = charger.payments.bulkhead.max_concurrent();
        let free = slots.saturating_sub(self.sending.len()).min(TAKE as usize);
        if free == 0 {
            tokio::select! {
                () = stop.cancelled() => {}
                _ = self.sending.join_next() => {}
            }
            return Ok(Next::Busy);
        }
        let taken = tokio::select! {
            () = stop.cancelled() => return Ok(Next::Busy),
            taken = charger.jobs.take(PAYMENT_JOB, free as u32, TAKE_WAIT) => taken,
        };
        for job in taken? {
            self.sending.spawn(charger.clone().handle(job));
        }
        Ok(Next::Busy)
    }

    /// Never idle: a step waits for jobs itself.
    async fn wait_for_work(&mut self) {}

    fn backoff(&self, failures: u32) -> Duration {
        doubling(Duration::from_millis(100), failures, RETRY_CAP)
    }

    /// Lets the sends in flight finish.
    async fn finish(&mut self) {
        while self.sending.join_next().await.is_some() {}
    }
}

impl Charger {
    /// Sends one job's payment in a `payment_charge` span that continues the
    /// trace of the pay request (stored with its `payment.requested` event).
    async fn handle(self: Arc<Self>, job: Job) {
        let span = stampede_trace::span!(
            "payment_charge",
            payment_id = %job.id,
            delivery = job.delivery,
        );
        let parent = job.trace;
        stampede_trace::in_span(span, parent, self.charge(job)).await;
    }

    /// Sends one job's payment and ends the job: done once the outcome is
    /// recorded, retried later if it could not be.
    async fn charge(self: Arc<Self>, job: Job) {
        let outcome = match PaymentId::parse(&job.id) {
            Some(id) => match self.payments.bulkhead.acquire().await {
                Ok(_slot) => self.send(id).await,
                Err(full) => Err(AppError::unavailable(format!(
                    "payment provider busy: {full}"
                ))),
            },
            None => {
                tracing::error!(job_id = %job.id, "a payment job without a payment id; dropped");
                Ok(())
            }
        };
        let ended = match outcome {
            Ok(()) => job.done().await,
            Err(err) => {
                counter!("stampede_payment_job_retries_total").increment(1);
                let after = (RETRY_BASE * job.delivery).min(RETRY_CAP);
                tracing::warn!(job_id = %job.id, error = %Chain(&err), ?after, "sending a payment failed; retrying");
                job.retry(after).await
            }
        };
        if let Err(err) = ended {
            // The lease runs out and the job comes back: harmless.
            tracing::debug!(error = %Chain(&err), "ending a payment job failed");
        }
    }

    /// Queues again every payment still `requested` a while after it was
    /// asked for. Queued or taken ones are not doubled (see `JobQueue::push`).
    async fn sweep(&self) -> Result<(), AppError> {
        let after = &self.payments.settings.sweep_after;
        let age = i64::try_from(after.as_millis()).unwrap_or(i64::MAX);
        let before = self.payments.clock.now().plus_millis(-age);
        let stale = self
            .payments
            .store
            .requested_before(before, SWEEP_BATCH)
            .await?;
        for id in &stale {
            self.jobs
                .push(PAYMENT_JOB, &id.to_string(), Duration::ZERO)
                .await
                .map_err(|err| AppError::unavailable_because("queueing payments again", err))?;
        }
        if !stale.is_empty() {
            counter!("stampede_payment_jobs_swept_total").increment(stale.len() as u64);
            tracing::info!(
                count = stale.len(),
                "payment sweep queued payments still requested"
            );
        }
        Ok(())
    }

    /// Sends one payment: provider faults are retried, a breaker in front of
    /// the provider fails the rest fast once it is failing, and a payment that
    /// cannot be sent is settled as failed so the customer can pay again.
    async fn send(&self, id: PaymentId) -> Result<(), AppError> {
        let store = &self.payments.store;
        let Some(payment) = store.payment(id).await? else {
            tracing::info!(payment_id = %id, "payment gone; nothing to send");
            return Ok(());
        };
        if payment.status != PaymentStatus::Requested {
            tracing::info!(payment_id = %id, status = payment.status.as_str(), "payment already sent");
            return Ok(());
        }
        let request = ChargeRequest {
            payment_id: payment.id,
            order_id: payment.order_id,
            amount_cents: payment.amount_cents,
            currency: payment.currency,
        };
        let settings = &self.payments.settings;
        let breaker = &self.payments.breaker;
        // Each attempt: the breaker, then the provider under its timeout. A
        // decline is the provider working, not failing.
        let attempt = |_| async {
            let charge = async {
                match Deadline::after(settings.timeout)
                    .run(self.provider.charge(&request))
                    .await
                {
                    Ok(result) => result,
                    Err(_) => Err(ChargeError::Retryable("timed out".into())),
                }
            };
            breaker
                .call(charge, |err: &ChargeError| {
                    !matches!(err, ChargeError::Declined(_))
                })
                .await
        };
        let classify = |err: &BreakerError<ChargeError>| match err {
            BreakerError::Inner(ChargeError::Retryable(_)) => Retry::Retryable,
            _ => Retry::Final,
        };
        let result = match retry(settings.retry, None, classify, attempt).await {
            Ok(provider_ref) => {
                store
                    .mark_submitted(id, &provider_ref, self.payments.clock.now())
                    .await?;
                tracing::info!(payment_id = %id, "payment sent");
                return Ok(());
            }
            Err(BreakerError::Inner(ChargeError::Declined(reason))) => {
                PaymentResult::Declined { reason }
            }
            Err(BreakerError::Inner(err)) => PaymentResult::Failed {
                reason: err.to_string(),
            },
            Err(err) => PaymentResult::Failed {
                reason: err.to_string(),
            },
        };
        tracing::info!(payment_id = %id, status = result.status().as_str(), "payment not sent");
        self.payments.settle(id, &result).await?;
        Ok(())
    }
}

/// The `payments` consumer: queues a job per `payment.requested` event.
pub struct PaymentFeeder {
    jobs: Arc<dyn JobQueue>,
}

impl PaymentFeeder {
    pub fn new(jobs: Arc<dyn JobQueue>) -> Self {
        Self { jobs }
    }
}

#[async_trait]
impl Consumer for PaymentFeeder {
    fn name(&self) -> &'static str {
        "payments"
    }

    async fn handle(&self, events: &[StoredEvent]) -> Result<(), AppError> {
        let mut ids = Vec::new();
        for event in events
            .iter()
            .filter(|e| e.event_type == "payment.requested")
        {
            let Some(id) = event.payload["id"].as_str().and_then(PaymentId::parse) else {
                tracing::error!(event_id = %event.id, "payment.requested without a payment id");
                continue;
            };
            ids.push((id.to_string(), event.trace));
        }
        // All at once, a round trip for the batch rather than one per job.
        // A failure redelivers the batch; jobs already queued are not queued
        // twice. Each job carries its pay request's trace.
        try_join_all(ids.iter().map(|(id, trace)| {
            let push = self.jobs.push(PAYMENT_JOB, id, Duration::ZERO);
            stampede_trace::within(*trace, push)
        }))
        .await
        .map_err(|err| AppError::unavailable_because("queueing payments", err))?;
        Ok(())
    }
}
