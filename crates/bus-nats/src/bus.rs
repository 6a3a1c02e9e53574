//! The `EventBus` port on a NATS connection, and the relay, subscriptions
//! and job queue it hands out.

use stampede_app::failure::Chain;
use std::collections::BTreeSet;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use async_nats::jetstream;
use async_trait::async_trait;
use stampede_app::ports::{BusError, BusSubscription, EventBus, OutboxStore};
use stampede_flow::breaker::{BreakerConfig, CircuitBreaker};
use tokio::sync::Notify;
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::connection::{Shared, connection_event, is_stream_missing, unavailable};
use crate::jobs::JetStreamJobs;
use crate::relay::OutboxRelay;
use crate::settings::{Names, NatsSettings};
use crate::subscription::JsSubscription;

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
            .map_err(|err| BusError::unavailable_because("opening the job queue", err))
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
            return Err(BusError::unavailable(format!(
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

    async fn subscribe(
        &self,
        consumer: &'static str,
    ) -> Result<Box<dyn BusSubscription>, BusError> {
        if !crate::settings::is_token(consumer) {
            return Err(BusError::unavailable(format!(
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

    async fn tail(&self) -> Result<Box<dyn BusSubscription>, BusError> {
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
            tracing::debug!(error = %Chain(&err), "cannot wake remote relays");
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
