//! The job queue on JetStream: one work-queue stream per namespace
//! (`<ns>-jobs`, subjects `<ns>.jobs.<kind>`), one durable pull consumer per
//! kind, shared by every worker node.
//!
//! - A job is a message whose body is its id, published with `Nats-Msg-Id` =
//!   `<kind>:<id>`, so a second push within the stream's two-minute
//!   duplicate window is dropped.
//! - The consumer's ack wait is the lease: a message neither acknowledged
//!   nor refused within it is delivered again. `done` acknowledges it (and
//!   the work-queue stream forgets it); `retry` refuses it with a delay.
//! - A push with a delay carries `Stampede-Not-Before`; a job taken before
//!   then is refused at once with the delay that is left (JetStream 2.9 has
//!   no scheduled delivery), which counts as a delivery.
//! - Nothing here is the only copy: the sweepers push again from the store
//!   whatever is still to do, so a lost stream costs a sweep, never a job.
//!   A missing stream is created again after a pause (see `relay.rs` on why).

use stampede_app::failure::Chain;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::{self, AckKind, stream};
use async_trait::async_trait;
use stampede_app::ports::{BusError, Job, JobQueue, Lease, QueueError};
use tokio::time::Instant;

use crate::connection::{STREAM_SETTLE, Shared, pull, unavailable as bus_unavailable};
use crate::wire;

const NOT_BEFORE: &str = "Stampede-Not-Before";
/// Jobs of one kind taken and not yet ended, across all nodes.
const MAX_ACK_PENDING: i64 = 10_000;
/// How long past its expiry a pull may go unanswered (see `subscription.rs`).
const PULL_GRACE: Duration = Duration::from_secs(2);

/// The [`JobQueue`] port on JetStream. Made by
/// [`JetStreamBus::job_queue`](crate::JetStreamBus::job_queue).
pub struct JetStreamJobs {
    shared: Arc<Shared>,
    /// Bound consumers by kind; dropped on a failure and bound again.
    consumers: Mutex<HashMap<&'static str, PullConsumer>>,
}

impl JetStreamJobs {
    /// The queue, its stream made if it is missing.
    pub(crate) async fn new(shared: Arc<Shared>) -> Result<Self, QueueError> {
        let jobs = Self {
            shared,
            consumers: Mutex::new(HashMap::new()),
        };
        jobs.stream(false).await?;
        Ok(jobs)
    }

    fn config(&self) -> stream::Config {
        let names = &self.shared.names;
        stream::Config {
            name: names.jobs_stream(),
            subjects: vec![names.jobs_subjects()],
            storage: stream::StorageType::File,
            num_replicas: self.shared.settings.replicas,
            retention: stream::RetentionPolicy::WorkQueue,
            description: Some("Stampede's jobs for worker nodes".to_owned()),
            ..stream::Config::default()
        }
    }

    /// The stream, created if missing: at once the first time, after a
    /// pause when it went missing (a deletion may still be under way).
    async fn stream(&self, went_missing: bool) -> Result<stream::Stream, QueueError> {
        if went_missing {
            tokio::time::sleep(STREAM_SETTLE).await;
        }
        self.shared
            .js
            .get_or_create_stream(self.config())
            .await
            .map_err(|err| unavailable("creating the job stream", err))
    }

    async fn consumer(&self, kind: &'static str) -> Result<PullConsumer, QueueError> {
        if let Some(consumer) = self.lock().get(kind) {
            return Ok(consumer.clone());
        }
        let stream = match self
            .shared
            .stream_named(self.shared.names.jobs_stream())
            .await
        {
            Ok(Some(stream)) => stream,
            Ok(None) => self.stream(true).await?,
            Err(err) => {
                return Err(QueueError::unavailable_because(
                    "reading the job stream",
                    err,
                ));
            }
        };
        let durable = self.shared.names.durable(kind);
        let config = pull::Config {
            durable_name: Some(durable.clone()),
            filter_subject: self.shared.names.jobs_subject(kind),
            deliver_policy: DeliverPolicy::All,
            ack_policy: AckPolicy::Explicit,
            ack_wait: self.shared.settings.ack_wait,
            max_deliver: -1,
            max_ack_pending: MAX_ACK_PENDING,
            ..pull::Config::default()
        };
        let consumer = stream
            .get_or_create_consumer(&durable, config)
            .await
            .map_err(|err| unavailable(format!("creating the consumer of {kind} jobs"), err))?;
        self.lock().insert(kind, consumer.clone());
        Ok(consumer)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<&'static str, PullConsumer>> {
        self.consumers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    async fn publish(&self, kind: &'static str, id: &str, not_before: u64) -> Result<(), BusError> {
        let mut headers = wire::trace_headers(stampede_trace::current());
        headers.insert(NOT_BEFORE, not_before.to_string().as_str());
        let message = PublishMessage::build()
            .payload(id.to_owned().into())
            .headers(headers)
            .message_id(format!("{kind}:{id}"));
        let ack = self
            .shared
            .js
            .send_publish(self.shared.names.jobs_subject(kind), message)
            .await
            .map_err(|err| bus_unavailable("publishing a job", err))?;
        ack.await
            .map(drop)
            .map_err(|err| bus_unavailable("publishing a job", err))
    }

    /// Splits pulled messages into jobs due now and refuses the early ones
    /// with the delay they have left.
    async fn due(messages: Vec<jetstream::Message>) -> Vec<Job> {
        let now = unix_millis(Duration::ZERO);
        let mut jobs = Vec::with_capacity(messages.len());
        for message in messages {
            let not_before = message
                .headers
                .as_ref()
                .and_then(|headers| headers.get(NOT_BEFORE))
                .and_then(|value| value.as_str().parse::<u64>().ok())
                .unwrap_or(0);
            if not_before > now {
                let left = Duration::from_millis(not_before - now);
                if let Err(err) = message.ack_with(AckKind::Nak(Some(left))).await {
                    tracing::debug!(error = %Chain(&*err), "putting back an early job failed");
                }
                continue;
            }
            let delivery = message
                .info()
                .map(|info| u32::try_from(info.delivered).unwrap_or(u32::MAX))
                .unwrap_or(1);
            let Ok(id) = std::str::from_utf8(&message.payload).map(str::to_owned) else {
                tracing::error!("a job whose id is not text; terminated");
                let _ = message.ack_with(AckKind::Term).await;
                continue;
            };
            let trace = wire::trace_of(message.headers.as_ref());
            let job = Job::new(id, delivery, Box::new(JsLease { message })).traced(trace);
            jobs.push(job);
        }
        jobs
    }
}

#[async_trait]
impl JobQueue for JetStreamJobs {
    async fn push(&self, kind: &'static str, id: &str, delay: Duration) -> Result<(), QueueError> {
        let not_before = unix_millis(delay);
        let first = self
            .shared
            .guarded("pushing a job", async {
                self.publish(kind, id, not_before).await
            })
            .await;
        let Err(failure) = first else {
            return Ok(());
        };
        // A lost stream is made again; any other failure is the caller's to
        // retry.
        let missing = matches!(
            self.shared
                .stream_named(self.shared.names.jobs_stream())
                .await,
            Ok(None)
        );
        if !missing {
            return Err(QueueError::unavailable_because("pushing a job", failure));
        }
        self.lock().clear();
        self.stream(true).await?;
        self.publish(kind, id, not_before)
            .await
            .map_err(|err| unavailable("pushing a job", err))
    }

    async fn take(
        &self,
        kind: &'static str,
        max: u32,
        wait: Duration,
    ) -> Result<Vec<Job>, QueueError> {
        let deadline = Instant::now() + wait;
        let max = max.clamp(1, self.shared.settings.fetch_batch) as usize;
        let timeout = PULL_GRACE.min(self.shared.settings.timeout);
        loop {
            let consumer = self.consumer(kind).await?;
            let remaining = deadline.saturating_duration_since(Instant::now());
            let pulled = self
                .shared
                .guarded("taking jobs", async {
                    let now = pull(&consumer, max, None, timeout).await?;
                    if !now.is_empty() || remaining.is_zero() {
                        return Ok(now);
                    }
                    // Wait for one only: a pull waiting for a full batch
                    // would hold what came first past its lease.
                    let mut first = pull(&consumer, 1, Some(remaining), timeout).await?;
                    if !first.is_empty() && max > 1 {
                        first.extend(pull(&consumer, max - 1, None, timeout).await?);
                    }
                    Ok(first)
                })
                .await;
            let messages = match pulled {
                Ok(messages) => messages,
                Err(err) => {
                    // Bind again next time: the consumer or stream may be gone.
                    self.lock().remove(kind);
                    return Err(QueueError::unavailable_because("taking jobs", err));
                }
            };
            let jobs = Self::due(messages).await;
            if !jobs.is_empty() || Instant::now() >= deadline {
                return Ok(jobs);
            }
        }
    }
}

struct JsLease {
    message: jetstream::Message,
}

#[async_trait]
impl Lease for JsLease {
    async fn done(self: Box<Self>) -> Result<(), QueueError> {
        // Confirmed: once `done` returns, the job is gone.
        tokio::time::timeout(PULL_GRACE, self.message.double_ack())
            .await
            .map_err(|_| QueueError::unavailable("finishing a job: timed out"))?
            .map_err(|err| unavailable("finishing a job", err))
    }

    async fn retry(self: Box<Self>, after: Duration) -> Result<(), QueueError> {
        self.message
            .ack_with(AckKind::Nak(Some(after)))
            .await
            .map_err(|err| unavailable("putting a job back", err))
    }
}

fn unavailable(
    what: impl Into<String>,
    err: impl Into<stampede_app::failure::Cause>,
) -> QueueError {
    QueueError::unavailable_because(what, err)
}

/// Unix time in milliseconds, `after` from now.
fn unix_millis(after: Duration) -> u64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from((now + after).as_millis()).unwrap_or(u64::MAX)
}
