//! The event bus of cluster mode on NATS JetStream: an [`OutboxRelay`] that
//! publishes the store's outbox to a stream, and a [`JetStreamBus`] whose
//! durable pull consumers let every node's workers share the work.
//!
//! # Layout
//!
//! - `settings`: [`NatsSettings`] and the names derived from the namespace:
//!   stream `<ns>-events`, subjects `<ns>.events.<event_type>`, consumers
//!   `<ns>-<name>`, store cursors `nats.<ns>.<name>` and `nats.<ns>.relay`.
//! - `connection`: what every other module shares: the JetStream context, the
//!   stream, the breaker, pulls. It imports none of them.
//! - `bus`: the `EventBus` port on the connection; it hands out the others.
//! - `subscription`: a durable or tail subscription on a pull consumer.
//! - `relay`: the outbox relay.
//! - `jobs`: the `JobQueue` port on a work-queue stream `<ns>-jobs`.
//! - `wire`: a `StoredEvent` as a message body (JSON).
//!
//! # Nothing on the bus is the only copy
//!
//! JetStream acknowledges before it syncs (docs/stack.md, Traps), so the store's
//! outbox stays the record and the stream is a rebuildable copy of its
//! tail:
//!
//! - The relay reads the outbox after its position, publishes up to
//!   `max_in_flight` events before awaiting their acknowledgements, each
//!   with `Nats-Msg-Id` = event id (a republished event within the
//!   duplicate window is dropped by JetStream; later, consumers deduplicate
//!   it by id), and saves its position in the store only after JetStream
//!   acknowledged the batch. Several relays may run; positions only move
//!   forward.
//! - Each durable subscription records in the store how far its consumer has
//!   handled everything (`save_cursor` after an acknowledgement). With many
//!   nodes sharing a consumer, one node's acknowledgement says nothing of
//!   the events another node still holds, so the recorded position is the
//!   highest event this node acknowledged at or below the consumer's *ack
//!   floor* (every stream message up to it is acknowledged). A subscription
//!   also skips (acknowledges unseen) events at or below that position, so
//!   a republished backlog costs consumers little.
//! - The relay identifies the stream by its creation time. On its first
//!   step, and whenever the stream turns out to be new (missing and
//!   recreated, found at a periodic check, after any publish error, or
//!   because a new message was numbered below the last one seen), it
//!   rewinds to the lowest of its own position and the recorded positions of
//!   every known consumer (`NatsSettings::consumers` plus those subscribed
//!   through this bus), and publishes from there. Whoever recreates the
//!   stream (a relay, or a node starting), the relays notice. A relay that
//!   finds the stream missing waits a second before creating it: a stream
//!   created while the server still deletes one of the same name loses its
//!   files to that deletion (nats-server 2.9), and then never delivers.
//! - A subscription whose stream or consumer disappeared binds again on its
//!   next `next`: it waits while the stream is missing (a relay recreates
//!   it) and recreates its consumer, which then reads the republished
//!   events from the start of the new stream.
//!
//! What is left to chance: a consumer missing from `consumers` is not
//! waited for when republishing; and if a stream is recreated by hand
//! between a relay's check and its publish, consumers could acknowledge
//! that batch (moving their recorded position) before the relay notices
//! the numbering going back — a window of one batch.
//!
//! # Order and acknowledgement
//!
//! A subscription hands out each pulled batch in `seq` order. `ack(seq)`
//! acknowledges every message it handed out with `seq` at or below it (the
//! last one confirmed by the server); `nack` refuses the rest (NAK), so
//! JetStream delivers them again before newer ones; dropping a
//! subscription refuses what it still held, so the next subscriber gets it
//! without waiting for the ack wait. A tail is an ephemeral consumer
//! starting after the stream's end, skipping events committed before it
//! started.

mod bus;
mod connection;
mod jobs;
mod relay;
mod settings;
mod subscription;
#[cfg(feature = "testing")]
pub mod testing;
mod wire;

pub use bus::JetStreamBus;
pub use jobs::JetStreamJobs;
pub use relay::{OutboxRelay, RelayStep};
pub use settings::NatsSettings;
