//! The outbox relay: publishes committed events from the store's outbox to
//! the stream, in order, many in flight, and records how far JetStream has
//! acknowledged. See the crate documentation for how it recovers a lost
//! stream.

use stampede_app::failure::Chain;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_nats::jetstream::message::PublishMessage;
use async_trait::async_trait;
use futures_util::StreamExt;
use metrics::{Counter, Gauge, counter, gauge};
use stampede_app::ports::{BusError, StoredEvent};
use stampede_app::workers::{Next, StepError, Worker, doubling};
use tokio::sync::futures::OwnedNotified;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::connection::{STREAM_SETTLE, Shared, unavailable};
use crate::wire;

/// How often the relay makes sure the stream it publishes to is still the
/// one it knows, besides after every error.
const STREAM_CHECK: Duration = Duration::from_secs(1);
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// What one [`OutboxRelay::publish_next`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayStep {
    /// Published this many events, all acknowledged by JetStream (0 when the
    /// batch turned out to land in a new stream and is republished).
    Published(usize),
    /// Nothing new in the outbox.
    Idle,
}

/// Publishes the outbox to JetStream. Several may run, on several nodes:
/// JetStream drops repeated `Nats-Msg-Id`s, and consumers deduplicate.
pub struct OutboxRelay {
    shared: Arc<Shared>,
    /// The last event published and acknowledged (`None` before the first
    /// step, which starts from the stored positions).
    position: Option<i64>,
    /// Creation time of the stream published to, in Unix nanoseconds: a
    /// different one means the stream was lost and recreated.
    stream_created: Option<i128>,
    /// The stream's last sequence as last seen: a new message numbered at or
    /// below it means the stream was recreated.
    last_stream_seq: u64,
    checked_at: Option<Instant>,
    /// Check the stream before the next batch.
    recheck: bool,
    published: Counter,
    lag: Gauge,
    /// Wake-ups from other nodes' commits (`None` before the first step,
    /// or while NATS will not deliver them: then the relay polls).
    remote: Option<async_nats::Subscriber>,
    /// This node's wake-up, registered before each step so a commit during
    /// the step is not missed.
    woken: Option<Pin<Box<OwnedNotified>>>,
}

impl OutboxRelay {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        let namespace = shared.names.namespace.clone();
        Self {
            published: counter!("stampede_relay_published_total", "namespace" => namespace.clone()),
            lag: gauge!("stampede_relay_lag", "namespace" => namespace),
            shared,
            position: None,
            stream_created: None,
            last_stream_seq: 0,
            checked_at: None,
            recheck: false,
            remote: None,
            woken: None,
        }
    }

    /// One pass: check the stream (rewinding if it is new), then publish the
    /// next events of the outbox and wait for JetStream to acknowledge them.
    pub async fn publish_next(&mut self) -> Result<RelayStep, BusError> {
        let position = self.check_stream().await?;
        let shared = self.shared.clone();
        let (settings, store) = (&shared.settings, &shared.store);
        let limit = u32::try_from(settings.max_in_flight).unwrap_or(u32::MAX);
        let events = store
            .events_after(position, limit)
            .await
            .map_err(|err| unavailable("reading the outbox", err))?;
        let Some(last) = events.last().map(|event| event.seq) else {
            self.lag.set(0.0);
            return Ok(RelayStep::Idle);
        };
        if let Ok(end) = store.last_seq().await {
            self.lag.set((end - position).max(0) as f64);
        }
        // The batch's own span, linked to its events' traces when exported
        // (each message carries its event's trace as a header); its line
        // carries its ids.
        let span = stampede_trace::span!(
            "relay_publish",
            events = events.len(),
            first_seq = events.first().map_or(0, |e| e.seq),
            last_seq = last,
        );
        stampede_trace::link_all(&span, events.iter().filter_map(|e| e.trace));
        let publish = async {
            shared
                .guarded("publishing events", self.publish(&events))
                .await?;
            tracing::info!("events published");
            Ok::<(), BusError>(())
        };
        stampede_trace::in_span(span, None, publish).await?;
        if self.recheck {
            // Numbering went back: these landed in a new stream. Do not move
            // on; the check rewinds.
            return Ok(RelayStep::Published(0));
        }
        self.position = Some(last);
        if let Err(err) = store.save_cursor(&shared.names.relay_cursor(), last).await {
            tracing::warn!(error = %Chain(&err), "relay: saving its position failed");
        }
        self.published.increment(events.len() as u64);
        Ok(RelayStep::Published(events.len()))
    }

    /// Publishes `events` and waits for JetStream to acknowledge them; a
    /// failure, or numbering that went back, makes the next step check the
    /// stream.
    async fn publish(&mut self, events: &[StoredEvent]) -> Result<(), BusError> {
        // All sent before any acknowledgement is awaited: one round trip
        // per batch, not per event (docs/stack.md).
        let mut acks = Vec::with_capacity(events.len());
        for event in events {
            let body = wire::encode(event).map_err(|err| unavailable("encoding an event", err))?;
            let publish = PublishMessage::build()
                .payload(body)
                .headers(wire::trace_headers(event.trace))
                .message_id(event.id.to_string());
            let subject = self.shared.names.subject(&event.event_type);
            match self.shared.js.send_publish(subject, publish).await {
                Ok(ack) => acks.push(ack),
                Err(err) => {
                    self.recheck = true;
                    return Err(unavailable("publishing an event", err));
                }
            }
        }
        for ack in acks {
            match ack.await {
                // A duplicate is numbered as its first copy: no news.
                Ok(ack) if ack.duplicate => {}
                Ok(ack) => {
                    if ack.sequence <= self.last_stream_seq {
                        self.recheck = true;
                    }
                    self.last_stream_seq = ack.sequence;
                }
                Err(err) => {
                    self.recheck = true;
                    return Err(unavailable("publishing an event", err));
                }
            }
        }
        Ok(())
    }

    /// Makes sure the stream exists and is the one published to so far;
    /// on the first check, or when it is new, rewinds to the oldest position
    /// a consumer may still need. Returns the position to publish after.
    async fn check_stream(&mut self) -> Result<i64, BusError> {
        let due = self.position.is_none()
            || self.recheck
            || self.shared.check_stream.swap(false, Ordering::Relaxed)
            || self
                .checked_at
                .is_none_or(|at| at.elapsed() >= STREAM_CHECK);
        if due {
            let stream = match self.shared.stream().await? {
                Some(stream) => stream,
                None => {
                    tracing::warn!(
                        stream = %self.shared.names.stream(),
                        "relay: the stream is missing; creating it again after a pause"
                    );
                    tokio::time::sleep(STREAM_SETTLE).await;
                    self.shared.ensure_stream().await?
                }
            };
            let info = stream.cached_info();
            let created = info.created.unix_timestamp_nanos();
            if self.stream_created != Some(created) {
                let from = self.rewind_point().await?;
                if self.stream_created.is_some() {
                    tracing::warn!(
                        stream = %info.config.name,
                        from,
                        "relay: the stream is new (it was lost); republishing from the oldest consumer position"
                    );
                } else {
                    tracing::info!(stream = %info.config.name, from, "relay: publishing");
                }
                self.position = Some(from);
                self.stream_created = Some(created);
            }
            self.last_stream_seq = info.state.last_sequence;
            self.recheck = false;
            self.checked_at = Some(Instant::now());
        }
        match self.position {
            Some(position) => Ok(position),
            None => Err(BusError::unavailable(
                "relay: no position after checking the stream",
            )),
        }
    }

    /// The lowest of the relay's own position (saved, at first) and every
    /// known consumer's saved position: nothing a consumer has not handled
    /// is passed over.
    async fn rewind_point(&self) -> Result<i64, BusError> {
        let store = &self.shared.store;
        let mut from = match self.position {
            Some(position) => position,
            None => store
                .cursor(&self.shared.names.relay_cursor())
                .await
                .map_err(|err| unavailable("reading the relay's position", err))?,
        };
        for consumer in self.shared.consumers() {
            let cursor = self.shared.names.consumer_cursor(&consumer);
            let handled = store.cursor(&cursor).await.map_err(|err| {
                unavailable(format!("reading the position of consumer {consumer}"), err)
            })?;
            from = from.min(handled);
        }
        Ok(from)
    }
}

/// The next wake-up from another node; never, without a subscription.
/// Publishes the outbox until shutdown, finishing the batch in hand. Wakes
/// on `EventBus::notify` (of any node) or every `poll`; backs off on errors,
/// which it outlives.
#[async_trait]
impl Worker for OutboxRelay {
    fn name(&self) -> String {
        "outbox-relay".into()
    }

    async fn step(&mut self, _stop: &CancellationToken) -> Result<Next, StepError> {
        let shared = self.shared.clone();
        if self.remote.is_none() {
            match shared
                .js
                .client()
                .subscribe(shared.names.wake_subject())
                .await
            {
                Ok(subscriber) => self.remote = Some(subscriber),
                Err(err) => {
                    tracing::warn!(error = %Chain(&err), "relay: no wake-ups from other nodes; polling");
                }
            }
        }
        let mut woken = Box::pin(shared.wake.clone().notified_owned());
        woken.as_mut().enable();
        self.woken = Some(woken);
        Ok(match self.publish_next().await? {
            RelayStep::Published(_) => Next::Busy,
            RelayStep::Idle => Next::Idle,
        })
    }

    async fn wait_for_work(&mut self) {
        let poll = self.shared.settings.poll;
        let woken = async {
            match &mut self.woken {
                Some(woken) => woken.as_mut().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = woken => {}
            () = next_wakeup(&mut self.remote) => {}
            () = tokio::time::sleep(poll) => {}
        }
    }

    fn backoff(&self, failures: u32) -> Duration {
        doubling(MIN_BACKOFF, failures, MAX_BACKOFF)
    }
}

async fn next_wakeup(remote: &mut Option<async_nats::Subscriber>) {
    match remote {
        Some(subscriber) => {
            if subscriber.next().await.is_none() {
                *remote = None;
            }
        }
        None => std::future::pending().await,
    }
}
