//! A subscription is a JetStream pull consumer: durable (`<namespace>-<name>`,
//! shared by every node running that consumer) or, for a tail, ephemeral.
//!
//! JetStream keeps each message's acknowledgement; the port speaks of event
//! positions (`ack(seq)`: everything up to `seq` is handled), so the
//! subscription keeps the messages it handed out until they are acknowledged
//! or handed back with `nack`. A consumer or stream that disappears is
//! recreated on the next `next`; what the old one had delivered comes again.

use stampede_app::failure::Chain;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull};
use async_nats::jetstream::{self, AckKind};
use async_trait::async_trait;
use stampede_app::ports::{BusError, BusSubscription, StoredEvent};
use tokio::time::Instant;

use crate::connection::{Shared, pull, unavailable};
use crate::wire;

/// Messages one consumer may have delivered and unacknowledged, across all
/// nodes: well above a batch per worker, low enough to bound redelivery.
const MAX_ACK_PENDING: i64 = 20_000;
/// An unused tail's consumer goes away on its own after this.
const TAIL_INACTIVE: Duration = Duration::from_secs(60);
/// Shortest pull worth asking the server to hold open.
const MIN_WAIT: Duration = Duration::from_millis(10);
/// Pause before binding again after the stream or consumer went missing.
const REBIND_PAUSE: Duration = Duration::from_millis(100);
/// How long past its expiry a pull may go unanswered. JetStream answers a
/// pull at once or at its expiry; a pull to a consumer that was deleted is
/// never answered, and this is how that is noticed.
const PULL_GRACE: Duration = Duration::from_secs(2);
/// Acknowledged (stream seq, event seq) pairs kept until a saved cursor
/// covers them; past this the oldest are forgotten, which only keeps the
/// saved cursor lower (more republishing after a loss, never less).
const MAX_UNSAVED: usize = 100_000;

enum Kind {
    Durable {
        durable: String,
        /// Store cursor holding the consumer's handled position.
        cursor: String,
    },
    /// An ephemeral consumer starting at this stream sequence (moved on as
    /// messages arrive, so a rebind continues where the last one stopped).
    Tail { start: u64 },
}

/// A message handed out and not yet acknowledged.
struct Delivered {
    seq: i64,
    stream_seq: u64,
    message: jetstream::Message,
}

pub(crate) struct JsSubscription {
    shared: Arc<Shared>,
    kind: Kind,
    /// `None` until bound, and again after the consumer or stream failed.
    consumer: Option<PullConsumer>,
    /// Handed out, not yet acknowledged, in `seq` order per batch.
    pending: Vec<Delivered>,
    /// Handed back by `nack`; refused (NAK) at the start of the next `next`,
    /// so JetStream delivers them again before anything newer.
    to_nak: Vec<jetstream::Message>,
    /// Events up to here are acknowledged on sight and not handed out: the
    /// consumer's saved position (durable), or the end of the log when the
    /// tail started.
    skip_through: i64,
    /// Acknowledged (stream seq, event seq) not yet covered by a saved cursor.
    unsaved: Vec<(u64, i64)>,
}

impl JsSubscription {
    pub async fn durable(shared: Arc<Shared>, name: &str) -> Result<Self, BusError> {
        let cursor = shared.names.consumer_cursor(name);
        let skip_through =
            shared.store.cursor(&cursor).await.map_err(|err| {
                unavailable(format!("reading the position of consumer {name}"), err)
            })?;
        let mut subscription = Self::new(
            shared.clone(),
            Kind::Durable {
                durable: shared.names.durable(name),
                cursor,
            },
            skip_through,
        );
        // Bind now, so the consumer exists (and keeps its place) from here.
        subscription.bind().await?;
        Ok(subscription)
    }

    /// Starts after the stream's last message and after the outbox's last
    /// event, read in that order: an event committed later is published
    /// later, so it lands past `start`; one committed earlier but published
    /// late is skipped by its `seq`.
    pub async fn tail(shared: Arc<Shared>) -> Result<Self, BusError> {
        let start = match shared.stream().await? {
            Some(stream) => stream.cached_info().state.last_sequence + 1,
            None => 1,
        };
        let end = shared
            .store
            .last_seq()
            .await
            .map_err(|err| unavailable("reading the end of the outbox", err))?;
        let mut subscription = Self::new(shared, Kind::Tail { start }, end);
        subscription.bind().await?;
        Ok(subscription)
    }

    fn new(shared: Arc<Shared>, kind: Kind, skip_through: i64) -> Self {
        Self {
            shared,
            kind,
            consumer: None,
            pending: Vec::new(),
            to_nak: Vec::new(),
            skip_through,
            unsaved: Vec::new(),
        }
    }

    /// The consumer, created if missing; `None` while the stream is missing
    /// (a relay creates it and republishes).
    async fn bind(&mut self) -> Result<Option<PullConsumer>, BusError> {
        if let Some(consumer) = &self.consumer {
            return Ok(Some(consumer.clone()));
        }
        let Some(stream) = self.shared.stream().await? else {
            self.shared.check_stream.store(true, Ordering::Relaxed);
            self.shared.wake.notify_waiters();
            return Ok(None);
        };
        let settings = &self.shared.settings;
        let config = pull::Config {
            ack_policy: AckPolicy::Explicit,
            ack_wait: settings.ack_wait,
            max_deliver: -1,
            max_ack_pending: MAX_ACK_PENDING,
            ..pull::Config::default()
        };
        let consumer = match &self.kind {
            Kind::Durable { durable, .. } => {
                let config = pull::Config {
                    durable_name: Some(durable.clone()),
                    deliver_policy: DeliverPolicy::All,
                    ..config
                };
                stream.get_or_create_consumer(durable, config).await
            }
            Kind::Tail { start } => {
                let config = pull::Config {
                    deliver_policy: DeliverPolicy::ByStartSequence {
                        start_sequence: *start,
                    },
                    inactive_threshold: TAIL_INACTIVE,
                    ..config
                };
                stream.create_consumer(config).await
            }
        }
        .map_err(|err| unavailable("creating the consumer", err))?;
        // What the previous consumer delivered cannot be acknowledged any
        // more; the new one delivers it again.
        self.pending.clear();
        self.to_nak.clear();
        self.unsaved.clear();
        self.consumer = Some(consumer.clone());
        Ok(Some(consumer))
    }

    /// One attempt: whatever is there now, else the first message to arrive
    /// before `deadline` and whatever came with it. `None`: no stream.
    async fn take(
        &mut self,
        max: usize,
        deadline: Instant,
    ) -> Result<Option<Vec<StoredEvent>>, BusError> {
        let Some(consumer) = self.bind().await? else {
            return Ok(None);
        };
        let timeout = PULL_GRACE.min(self.shared.settings.timeout);
        let messages = self
            .shared
            .guarded("pulling events", async {
                let mut messages = pull(&consumer, max, None, timeout).await?;
                if messages.is_empty() {
                    let remaining = deadline.saturating_duration_since(Instant::now());
                    if remaining >= MIN_WAIT {
                        messages = pull(&consumer, 1, Some(remaining), timeout).await?;
                        if !messages.is_empty() && max > 1 {
                            messages.extend(pull(&consumer, max - 1, None, timeout).await?);
                        }
                    }
                }
                Ok(messages)
            })
            .await?;
        Ok(Some(self.accept(messages).await))
    }

    /// Decodes a batch, drops what is already handled, keeps the rest as
    /// pending, and returns it in `seq` order.
    async fn accept(&mut self, messages: Vec<jetstream::Message>) -> Vec<StoredEvent> {
        let mut batch = Vec::with_capacity(messages.len());
        for message in messages {
            let stream_seq = match message.info() {
                Ok(info) => info.stream_sequence,
                Err(err) => {
                    tracing::warn!(error = %Chain(&*err), "bus message without jetstream metadata; skipped");
                    continue;
                }
            };
            if let Kind::Tail { start } = &mut self.kind {
                *start = (*start).max(stream_seq + 1);
            }
            match wire::decode(&message.payload, message.headers.as_ref()) {
                Ok(event) if event.seq <= self.skip_through => {
                    if let Err(err) = message.ack().await {
                        tracing::debug!(error = %Chain(&*err), "acknowledging a handled event failed");
                    }
                }
                Ok(event) => batch.push((event, stream_seq, message)),
                Err(err) => {
                    // Nothing can handle it, and the store holds the event.
                    tracing::error!(stream_seq, error = %Chain(&err), "undecodable bus message; terminated");
                    if let Err(err) = message.ack_with(AckKind::Term).await {
                        tracing::debug!(error = %Chain(&*err), "terminating a message failed");
                    }
                }
            }
        }
        batch.sort_by_key(|(event, _, _)| event.seq);
        let mut events = Vec::with_capacity(batch.len());
        for (event, stream_seq, message) in batch {
            self.pending.push(Delivered {
                seq: event.seq,
                stream_seq,
                message,
            });
            events.push(event);
        }
        events
    }

    /// Refuses what `nack` handed back, the last one confirmed so the server
    /// has them all before the next pull.
    async fn send_naks(&mut self) {
        let messages = std::mem::take(&mut self.to_nak);
        let Some((last, rest)) = messages.split_last() else {
            return;
        };
        for message in rest {
            if let Err(err) = message.ack_with(AckKind::Nak(None)).await {
                tracing::debug!(error = %Chain(&*err), "refusing a message failed");
            }
        }
        let confirmed = tokio::time::timeout(
            self.shared.settings.timeout,
            last.double_ack_with(AckKind::Nak(None)),
        )
        .await;
        if !matches!(confirmed, Ok(Ok(()))) {
            tracing::debug!("refusing a message was not confirmed");
        }
    }

    /// Records in the store how far this consumer has handled everything,
    /// for republishing after a loss of the stream. Only events at or below
    /// the consumer's ack floor count, so events another node still holds
    /// are not passed over. Best effort: a failure only leaves the saved
    /// position lower.
    async fn save_progress(&mut self) {
        let (Kind::Durable { cursor, .. }, Some(consumer)) = (&self.kind, &self.consumer) else {
            return;
        };
        let floor = match consumer.get_info().await {
            Ok(info) => info.ack_floor.stream_sequence,
            Err(err) => {
                tracing::debug!(error = %Chain(&err), "reading the consumer's ack floor failed");
                return;
            }
        };
        let mut handled = None;
        self.unsaved.retain(|&(stream_seq, seq)| {
            if stream_seq <= floor {
                handled = handled.max(Some(seq));
                false
            } else {
                true
            }
        });
        if self.unsaved.len() > MAX_UNSAVED {
            self.unsaved.sort_unstable();
            let excess = self.unsaved.len() - MAX_UNSAVED;
            self.unsaved.drain(..excess);
        }
        let Some(handled) = handled else {
            return;
        };
        match self.shared.store.save_cursor(cursor, handled).await {
            Ok(()) => self.skip_through = self.skip_through.max(handled),
            Err(err) => {
                tracing::warn!(cursor, error = %Chain(&err), "saving a consumer's position failed")
            }
        }
    }
}

#[async_trait]
impl BusSubscription for JsSubscription {
    async fn next(&mut self, max: u32, wait: Duration) -> Result<Vec<StoredEvent>, BusError> {
        self.send_naks().await;
        let max = max.clamp(1, self.shared.settings.fetch_batch) as usize;
        let deadline = Instant::now() + wait;
        let mut rebound = false;
        loop {
            let failure = match self.take(max, deadline).await {
                Ok(Some(events)) if !events.is_empty() => return Ok(events),
                // Nothing came, or only events already handled.
                Ok(Some(_)) => None,
                // No stream: wait for a relay to create it.
                Ok(None) => Some(None),
                Err(err) => {
                    tracing::debug!(error = %Chain(&err), "pulling failed; binding again");
                    self.consumer = None;
                    if !rebound {
                        // Once at once, even past the deadline: a deleted
                        // consumer is noticed only by a pull timing out.
                        rebound = true;
                        continue;
                    }
                    Some(Some(err))
                }
            };
            let now = Instant::now();
            if now >= deadline {
                return match failure {
                    Some(Some(err)) => Err(err),
                    _ => Ok(Vec::new()),
                };
            }
            if failure.is_some() {
                tokio::time::sleep(REBIND_PAUSE.min(deadline - now)).await;
            }
        }
    }

    async fn ack(&mut self, seq: i64) -> Result<(), BusError> {
        let (done, rest): (Vec<Delivered>, Vec<Delivered>) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|delivered| delivered.seq <= seq);
        self.pending = rest;
        let Some((last, others)) = done.split_last() else {
            return Ok(());
        };
        for delivered in others {
            delivered
                .message
                .ack()
                .await
                .map_err(|err| unavailable("acknowledging events", err))?;
        }
        // Confirmed, so the position has moved once `ack` returns.
        tokio::time::timeout(self.shared.settings.timeout, last.message.double_ack())
            .await
            .map_err(|_| BusError::unavailable("acknowledging events: timed out"))?
            .map_err(|err| unavailable("acknowledging events", err))?;
        if matches!(self.kind, Kind::Durable { .. }) {
            self.unsaved.extend(
                done.iter()
                    .map(|delivered| (delivered.stream_seq, delivered.seq)),
            );
            self.save_progress().await;
        }
        Ok(())
    }

    fn nack(&mut self) {
        self.to_nak
            .extend(self.pending.drain(..).map(|delivered| delivered.message));
    }

    async fn lag(&self) -> Result<u64, BusError> {
        let info = match (&self.consumer, &self.kind) {
            (Some(consumer), _) => consumer.get_info().await,
            (None, Kind::Durable { durable, .. }) => {
                let stream = self
                    .shared
                    .js
                    .get_stream_no_info(self.shared.names.stream())
                    .await
                    .map_err(|err| unavailable("reading the stream", err))?;
                stream.consumer_info(durable).await
            }
            (None, Kind::Tail { .. }) => return Ok(0),
        }
        .map_err(|err| unavailable("reading the consumer's state", err))?;
        Ok(info.num_pending + info.num_ack_pending as u64)
    }
}

impl Drop for JsSubscription {
    /// Hands back what was delivered and not acknowledged, so the next
    /// subscriber gets it now rather than after the ack wait; removes a
    /// tail's consumer.
    fn drop(&mut self) {
        let mut messages = std::mem::take(&mut self.to_nak);
        messages.extend(self.pending.drain(..).map(|delivered| delivered.message));
        let tail = match (&self.kind, self.consumer.take()) {
            (Kind::Tail { .. }, Some(consumer)) => Some(consumer),
            _ => None,
        };
        if messages.is_empty() && tail.is_none() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let shared = self.shared.clone();
        runtime.spawn(async move {
            for message in messages {
                if let Err(err) = message.ack_with(AckKind::Nak(None)).await {
                    tracing::debug!(error = %Chain(&*err), "handing back a message failed");
                }
            }
            if let Some(consumer) = tail {
                let name = consumer.cached_info().name.clone();
                if let Ok(stream) = shared.js.get_stream_no_info(shared.names.stream()).await {
                    let _ = stream.delete_consumer(&name).await;
                }
            }
        });
    }
}
