//! What the bus, its subscriptions, its relay and the job queue share: the
//! JetStream context, the stream, the breaker around every call, and how a
//! pull is made. Every other module builds on this one; it builds on none.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::consumer::PullConsumer;
use async_nats::jetstream::{self, stream};
use futures_util::StreamExt;
use stampede_app::ports::{BusError, OutboxStore};
use stampede_flow::breaker::{BreakerError, CircuitBreaker};
use tokio::sync::Notify;

use crate::settings::{Names, NatsSettings};

/// How long a relay (or the job queue) waits, after finding the stream missing, before it
/// creates it again. A stream created while the server is still deleting
/// one of the same name loses its files to that deletion (nats-server 2.9
/// answers pulls on it never again), so a deletion gets time to finish.
pub(crate) const STREAM_SETTLE: Duration = Duration::from_secs(1);

/// What the bus, its subscriptions and its relay share.
pub(crate) struct Shared {
    pub js: jetstream::Context,
    pub settings: NatsSettings,
    pub names: Names,
    pub store: Arc<dyn OutboxStore>,
    /// Wakes this node's relay (`notify`, or a wake-up from another node).
    pub wake: Arc<Notify>,
    /// Wakes the task that tells the other nodes' relays.
    pub poke: Notify,
    /// Consumers subscribed through this bus: their stored positions count
    /// when the relay republishes, besides those in the settings.
    pub subscribed: Mutex<BTreeSet<String>>,
    /// Set by a subscription that found the stream missing, so the relay
    /// looks at the stream now rather than at its next periodic check.
    pub check_stream: AtomicBool,
    /// Around publishing and pulling: while NATS keeps failing, the relay
    /// and the workers are refused at once and back off, rather than each
    /// waiting out a timeout per call.
    pub breaker: CircuitBreaker,
}

impl Shared {
    /// Runs one call to NATS through the breaker; every error is a failure.
    pub async fn guarded<T>(
        &self,
        what: &str,
        call: impl Future<Output = Result<T, BusError>>,
    ) -> Result<T, BusError> {
        self.breaker
            .call(call, |_| true)
            .await
            .map_err(|err| match err {
                BreakerError::Rejected(rejected) => unavailable(what, rejected),
                BreakerError::Inner(err) => err,
            })
    }

    /// Every consumer whose position bounds a republish.
    pub fn consumers(&self) -> BTreeSet<String> {
        let mut all: BTreeSet<String> = self.settings.consumers.iter().cloned().collect();
        if let Ok(subscribed) = self.subscribed.lock() {
            all.extend(subscribed.iter().cloned());
        }
        all
    }

    /// The stream, created (empty) if it is missing. Every node may create
    /// it; relays notice a new stream by its creation time and republish.
    pub async fn ensure_stream(&self) -> Result<stream::Stream, BusError> {
        let config = stream::Config {
            name: self.names.stream(),
            subjects: vec![self.names.subjects()],
            storage: stream::StorageType::File,
            num_replicas: self.settings.replicas,
            max_age: self.settings.max_age,
            retention: stream::RetentionPolicy::Limits,
            description: Some("Stampede's events, published from the outbox".to_owned()),
            ..stream::Config::default()
        };
        self.js
            .get_or_create_stream(config)
            .await
            .map_err(|err| unavailable(format!("creating stream {}", self.names.stream()), err))
    }

    /// The event stream if it exists (`None` if it does not).
    pub async fn stream(&self) -> Result<Option<stream::Stream>, BusError> {
        self.stream_named(self.names.stream()).await
    }

    /// The stream `name` if it exists (`None` if it does not).
    pub async fn stream_named(&self, name: String) -> Result<Option<stream::Stream>, BusError> {
        match self.js.get_stream(&name).await {
            Ok(stream) => Ok(Some(stream)),
            Err(err) if is_stream_missing(&err) => Ok(None),
            Err(err) => Err(unavailable(format!("reading stream {name}"), err)),
        }
    }
}

/// Counts (re)connections and disconnections, and logs them: a NATS that
/// comes and goes shows as a rising `stampede_dependency_disconnects_total`.
pub(crate) fn connection_event(event: &async_nats::Event) {
    match event {
        async_nats::Event::Connected => {
            metrics::counter!("stampede_dependency_connections_opened_total", "dependency" => "nats")
                .increment(1);
            tracing::info!("nats: connected");
        }
        async_nats::Event::Disconnected => {
            metrics::counter!("stampede_dependency_disconnects_total", "dependency" => "nats")
                .increment(1);
            tracing::warn!("nats: disconnected; reconnecting");
        }
        other => tracing::debug!(event = %other, "nats: connection event"),
    }
}

/// `Unavailable`, with what was being done.
pub(crate) fn unavailable(
    what: impl Into<String>,
    err: impl Into<stampede_app::failure::Cause>,
) -> BusError {
    BusError::unavailable_because(what, err)
}

pub(crate) fn is_stream_missing(err: &jetstream::context::GetStreamError) -> bool {
    matches!(
        err.kind(),
        jetstream::context::GetStreamErrorKind::JetStream(js)
            if js.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
    )
}

/// Pulls up to `max` messages: those there now (`wait` = `None`), or those
/// arriving within `wait`. Always completes the pull request, so nothing is
/// delivered to a pull nobody reads.
pub(crate) async fn pull(
    consumer: &PullConsumer,
    max: usize,
    wait: Option<Duration>,
    timeout: Duration,
) -> Result<Vec<jetstream::Message>, BusError> {
    let collect = async {
        let mut batch = match wait {
            None => consumer.fetch().max_messages(max).messages().await,
            Some(wait) => {
                consumer
                    .batch()
                    .max_messages(max)
                    .expires(wait)
                    .messages()
                    .await
            }
        }
        .map_err(|err| unavailable("pulling events", err))?;
        let mut messages = Vec::new();
        while let Some(message) = batch.next().await {
            messages.push(message.map_err(|err| unavailable("pulling events", err))?);
        }
        Ok(messages)
    };
    let limit = wait.unwrap_or_default() + timeout;
    tokio::time::timeout(limit, collect)
        .await
        .map_err(|_| BusError::unavailable("pulling events: timed out"))?
}
