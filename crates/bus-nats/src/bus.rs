//! The connection, the stream, and the `EventBus` port on top of them.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use async_nats::jetstream::{self, stream};
use async_trait::async_trait;
use stampede_app::ports::{BusError, EventBus, OutboxStore, Subscription};
use stampede_flow::breaker::{BreakerConfig, BreakerError, CircuitBreaker};
use tokio::sync::Notify;
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::jobs::JetStreamJobs;
use crate::relay::OutboxRelay;
use crate::settings::{Names, NatsSettings};
use crate::subscription::JsSubscription;

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
fn connection_event(event: &async_nats::Event) {
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
pub(crate) fn unavailable(what: impl std::fmt::Display, err: impl std::fmt::Display) -> BusError {
    BusError::Unavailable(format!("{what}: {err}"))
}

fn is_stream_missing(err: &jetstream::context::GetStreamError) -> bool {
    matches!(
        err.kind(),
        jetstream::context::GetStreamErrorKind::JetStream(js)
            if js.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
    )
}

/// The event bus on NATS JetStream: durable pull consumers over one stream
/// per namespace, fed by an [`OutboxRelay`].
pub struct JetStreamBus {
    shared: Arc<Shared>,
    /// Stops the task forwarding `notify` to other nodes when the bus goes.
    _forwarder: DropGuard,
}

impl JetStreamBus {
    /// Connects to NATS and makes sure the stream exists. Fails with
    /// `Unavailable` (saying why) if the server cannot be reached, has no
    /// JetStream, or a setting is invalid; never retries the first connect.
    pub async fn connect(
        settings: NatsSettings,
        store: Arc<dyn OutboxStore>,
    ) -> Result<Self, BusError> {
        settings.validate()?;
        let client = async_nats::ConnectOptions::new()
            .name("stampede")
            .event_callback(|event| async move { connection_event(&event) })
            .connection_timeout(settings.timeout)
            .request_timeout(Some(settings.timeout))
            .connect(settings.url.as_str())
            .await
            .map_err(|err| unavailable(format!("connecting to nats at {}", settings.url), err))?;
        let js = jetstream::ContextBuilder::new()
            .timeout(settings.timeout)
            .build(client.clone());
        let names = Names {
            namespace: settings.namespace.clone(),
        };
        let shared = Arc::new(Shared {
            js,
            names,
            settings,
            store,
            wake: Arc::new(Notify::new()),
            poke: Notify::new(),
            subscribed: Mutex::new(BTreeSet::new()),
            check_stream: AtomicBool::new(false),
            breaker: CircuitBreaker::new("nats", BreakerConfig::default()),
        });
        // Also tells a server without JetStream apart, with a clear error.
        shared.ensure_stream().await?;
        let stop = CancellationToken::new();
        tokio::spawn(forward_wakeups(client, shared.clone(), stop.clone()));
        Ok(Self {
            shared,
            _forwarder: stop.drop_guard(),
        })
    }

    /// The relay that publishes this store's outbox to the stream. Run one
    /// or more per cluster (worker nodes); see the crate documentation.
    pub fn relay(&self) -> OutboxRelay {
        OutboxRelay::new(self.shared.clone())
    }

    /// The job queue on this connection (`jobs.rs`): jobs taken and not
    /// ended within `NatsSettings::ack_wait` are taken again.
    pub async fn job_queue(&self) -> Result<JetStreamJobs, BusError> {
        JetStreamJobs::new(self.shared.clone())
            .await
            .map_err(|err| BusError::Unavailable(err.to_string()))
    }

    /// Deletes the job stream: for tests and operators resetting a
    /// namespace. The sweepers push again what the store still needs done.
    pub async fn delete_job_stream(&self) -> Result<(), BusError> {
        self.delete_named(self.shared.names.jobs_stream()).await
    }

    /// The stream's name, `<namespace>-events`.
    pub fn stream_name(&self) -> String {
        self.shared.names.stream()
    }

    /// Replicas of the stream as the server reports them, for start-up logs
    /// and readiness details (docs/design.md §5). A missing stream is
    /// `Unavailable`: only relays create it again (see [`OutboxRelay`]).
    pub async fn stream_replicas(&self) -> Result<usize, BusError> {
        let Some(mut stream) = self.shared.stream().await? else {
            return Err(BusError::Unavailable(format!(
                "stream {} is missing; a relay creates it again",
                self.shared.names.stream()
            )));
        };
        let info = stream
            .info()
            .await
            .map_err(|err| unavailable("reading stream info", err))?;
        Ok(info.config.num_replicas)
    }

    /// Deletes the stream and with it every consumer: for tests and for
    /// operators resetting a namespace. Nothing is lost for good: the
    /// relays republish what consumers still need from the store.
    pub async fn delete_stream(&self) -> Result<(), BusError> {
        self.delete_named(self.shared.names.stream()).await
    }

    /// Deletes stream `name`; one already gone is no error.
    async fn delete_named(&self, name: String) -> Result<(), BusError> {
        match self.shared.js.delete_stream(&name).await {
            Ok(_) => Ok(()),
            Err(err) if is_stream_missing(&err) => Ok(()),
            Err(err) => Err(unavailable(format!("deleting stream {name}"), err)),
        }
    }
}

#[async_trait]
impl EventBus for JetStreamBus {
    fn notify(&self) {
        self.shared.wake.notify_waiters();
        self.shared.poke.notify_one();
    }

    async fn subscribe(&self, consumer: &'static str) -> Result<Box<dyn Subscription>, BusError> {
        if !crate::settings::is_token(consumer) {
            return Err(BusError::Unavailable(format!(
                "invalid consumer name {consumer:?}: use letters, digits, '-' and '_'"
            )));
        }
        if let Ok(mut subscribed) = self.shared.subscribed.lock() {
            subscribed.insert(consumer.to_owned());
        }
        Ok(Box::new(
            JsSubscription::durable(self.shared.clone(), consumer).await?,
        ))
    }

    async fn tail(&self) -> Result<Box<dyn Subscription>, BusError> {
        Ok(Box::new(JsSubscription::tail(self.shared.clone()).await?))
    }
}

/// Tells every node's relay that events were committed: commits happen on
/// `api` nodes, relays run on `worker` nodes. Bursts of `notify` coalesce
/// into one message (`Notify` keeps a single permit).
async fn forward_wakeups(client: async_nats::Client, shared: Arc<Shared>, stop: CancellationToken) {
    let subject = shared.names.wake_subject();
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = shared.poke.notified() => {}
        }
        if let Err(err) = client.publish(subject.clone(), bytes::Bytes::new()).await {
            tracing::debug!(error = %err, "cannot wake remote relays");
        }
    }
}

/// Readiness: the stream answers (missing until a relay recreates it), and its
/// replica count as a gauge, `stampede_bus_stream_replicas`.
#[async_trait::async_trait]
impl stampede_app::ports::Probe for JetStreamBus {
    fn name(&self) -> &'static str {
        "bus"
    }

    async fn check(&self) -> Result<(), String> {
        let replicas = self
            .stream_replicas()
            .await
            .map_err(|err| err.to_string())?;
        metrics::gauge!("stampede_bus_stream_replicas").set(replicas as f64);
        Ok(())
    }
}
