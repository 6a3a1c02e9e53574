//! What the JetStream bus promises beyond the port's contract: losing the
//! stream or a consumer loses no event (the store is the record), several
//! relays publish each event once, and an unreachable server is a clear
//! `Unavailable`.

// Test code: a failed expectation is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use common::Cluster;
use stampede_app::failure::Chain;
use stampede_app::ports::{BusError, EventBus, JobQueue, QueueError, Store};
use stampede_app::workers::Background;
use stampede_bus_nats::{JetStreamBus, NatsSettings};
use stampede_contract::bus::{BusUnderTest, commit, nothing_more, receive};
use stampede_contract::faults::CuttableProxy;
use stampede_contract::scratch_dir;
use stampede_domain::ids::EventId;
use stampede_store_sqlite::{SqliteSettings, SqliteStore};
use tokio::time::Instant;

const PATIENCE: Duration = Duration::from_secs(30);

fn under_test(bus: &Arc<JetStreamBus>, store: &Arc<dyn Store>) -> BusUnderTest {
    BusUnderTest {
        bus: bus.clone(),
        store: store.clone(),
    }
}

/// A fresh SQLite store in `scratch`.
fn sqlite_store(scratch: &stampede_contract::TempDir) -> Arc<dyn Store> {
    Arc::new(
        SqliteStore::open(
            &scratch.path().join("stampede.db"),
            SqliteSettings::default(),
        )
        .unwrap(),
    )
}

/// A JetStream context of its own, to do behind the bus's back what an
/// operator or an outage would.
async fn jetstream() -> async_nats::jetstream::Context {
    let client = async_nats::connect(common::nats_url()).await.unwrap();
    async_nats::jetstream::new(client)
}

/// Reads and acknowledges until every id in `expected` was seen at least
/// once (duplicates allowed: consumers deduplicate by id).
async fn consume_until_seen(
    subscription: &mut dyn stampede_app::ports::BusSubscription,
    seen: &mut HashSet<EventId>,
    expected: &HashSet<EventId>,
) {
    let deadline = Instant::now() + PATIENCE;
    while !expected.is_subset(seen) {
        assert!(
            Instant::now() < deadline,
            "{} of {} events never came back",
            expected.difference(seen).count(),
            expected.len()
        );
        match subscription.next(64, Duration::from_millis(250)).await {
            Ok(events) => {
                if let Some(last) = events.last() {
                    subscription.ack(last.seq).await.unwrap();
                }
                seen.extend(events.iter().map(|event| event.id));
            }
            // The bus is recovering; the consumer loop retries too.
            Err(BusError::Unavailable { .. }) => {}
        }
    }
}

/// Some events handled, some delivered and not, the stream deleted; with
/// `commit_after`, more events are committed after the loss (the relay
/// notices on publishing), otherwise none (it notices on its periodic check).
async fn losing_the_stream_loses_no_event(commit_after: bool) {
    let scratch = scratch_dir();
    let Some(cluster) = Cluster::start(scratch.path(), &["loss"]).await else {
        return;
    };
    let cursor = format!("nats.{}.loss", cluster.settings.namespace);
    cluster
        .run(move |bus, store| async move {
            let t = under_test(&bus, &store);
            let mut subscription = bus.subscribe("loss").await.unwrap();
            let first = commit(&t, 20).await;
            let got = receive(&mut *subscription, 20).await;
            subscription.ack(got[9].seq).await.unwrap();
            assert_eq!(
                store.cursor(&cursor).await.unwrap(),
                got[9].seq,
                "the consumer records how far it has handled everything"
            );
            let mut seen: HashSet<EventId> = got[..10].iter().map(|event| event.id).collect();

            bus.delete_stream().await.unwrap();
            // Handling the other ten failed: they are only in the store now.
            subscription.nack();
            let mut expected: HashSet<EventId> = first.iter().map(|event| event.id).collect();
            if commit_after {
                expected.extend(commit(&t, 10).await.iter().map(|event| event.id));
            }
            consume_until_seen(&mut *subscription, &mut seen, &expected).await;
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_lost_while_publishing_is_recreated_and_republished_with_no_event_missing() {
    losing_the_stream_loses_no_event(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_lost_while_idle_is_recreated_and_republished_with_no_event_missing() {
    losing_the_stream_loses_no_event(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_consumer_is_recreated_and_skips_what_was_handled() {
    let scratch = scratch_dir();
    let Some(cluster) = Cluster::start(scratch.path(), &[]).await else {
        return;
    };
    let durable = format!("{}-gone", cluster.settings.namespace);
    cluster
        .run(move |bus, store| async move {
            let t = under_test(&bus, &store);
            let mut subscription = bus.subscribe("gone").await.unwrap();
            commit(&t, 5).await;
            let got = receive(&mut *subscription, 5).await;
            subscription.ack(got[4].seq).await.unwrap();

            let stream = jetstream()
                .await
                .get_stream(bus.stream_name())
                .await
                .unwrap();
            stream.delete_consumer(&durable).await.unwrap();

            let after = commit(&t, 3).await;
            let got = receive(&mut *subscription, 3).await;
            let ids = |events: &[stampede_app::ports::StoredEvent]| {
                events.iter().map(|event| event.id).collect::<Vec<_>>()
            };
            assert_eq!(
                ids(&got),
                ids(&after),
                "only the new events, none handled before"
            );
            subscription.ack(got[2].seq).await.unwrap();
            nothing_more(&mut *subscription).await;
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_shared_by_two_nodes_records_no_position_past_an_event_still_in_hand() {
    let scratch = scratch_dir();
    let Some(cluster) = Cluster::start(scratch.path(), &[]).await else {
        return;
    };
    let cursor = format!("nats.{}.shared", cluster.settings.namespace);
    cluster
        .run(move |bus, store| async move {
            let t = under_test(&bus, &store);
            // Two workers of one consumer, as on two nodes.
            let mut slow = bus.subscribe("shared").await.unwrap();
            let mut quick = bus.subscribe("shared").await.unwrap();
            commit(&t, 10).await;
            let held = receive(&mut *slow, 5).await;
            let handled = receive(&mut *quick, 5).await;
            assert!(held.last().unwrap().seq < handled[0].seq);

            quick.ack(handled[4].seq).await.unwrap();
            assert_eq!(
                store.cursor(&cursor).await.unwrap(),
                0,
                "the slow worker still holds the first five"
            );
            slow.ack(held[4].seq).await.unwrap();
            let recorded = store.cursor(&cursor).await.unwrap();
            assert!(
                (held[4].seq..=handled[4].seq).contains(&recorded),
                "recorded {recorded}: at least what the slow worker handled, at most everything"
            );
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_relays_on_one_outbox_put_each_event_in_the_stream_once() {
    let scratch = scratch_dir();
    let Some(cluster) = Cluster::start(scratch.path(), &[]).await else {
        return;
    };
    let settings = cluster.settings.clone();
    cluster
        .run(move |bus, store| async move {
            // A second node: its own connection and relay, the same store.
            let other = JetStreamBus::connect(settings.clone(), store.clone())
                .await
                .unwrap();
            let background = Background::new();
            background.run(other.relay());

            let t = under_test(&bus, &store);
            let committed = commit(&t, 300).await;
            other.notify();
            let last = committed.last().unwrap().seq;
            let relay_cursor = format!("nats.{}.relay", settings.namespace);
            let deadline = Instant::now() + PATIENCE;
            while store.cursor(&relay_cursor).await.unwrap() < last {
                assert!(Instant::now() < deadline, "the relays never caught up");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            assert!(background.stop(Duration::from_secs(30)).await);

            let mut stream = jetstream()
                .await
                .get_stream(bus.stream_name())
                .await
                .unwrap();
            let info = stream.info().await.unwrap();
            assert_eq!(
                info.state.messages, 300,
                "Nats-Msg-Id drops the second copy"
            );
        })
        .await;
}

#[tokio::test]
async fn an_unreachable_server_is_unavailable_and_named() {
    let scratch = scratch_dir();
    let store = sqlite_store(&scratch);
    let settings = NatsSettings {
        // Nothing listens on port 1.
        url: "nats://127.0.0.1:1".to_owned(),
        ..NatsSettings::default()
    };
    let started = Instant::now();
    let Err(err @ BusError::Unavailable { .. }) =
        JetStreamBus::connect(settings, store.clone()).await
    else {
        panic!("connecting to a closed port must fail");
    };
    let message = Chain(&err).to_string();
    assert!(
        message.contains("127.0.0.1:1"),
        "names the address: {message}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "fails at once rather than retrying"
    );
    store.close().await;
}

/// NATS going down opens the bus's breaker: after a window of failed
/// calls, pushing a job (and pulling, and publishing) is refused at once
/// with `Unavailable` naming the breaker, instead of each call waiting out
/// its timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_nats_opens_the_bus_breaker() {
    if common::reachable().await.is_none() {
        return;
    }
    let scratch = scratch_dir();
    let store = sqlite_store(&scratch);
    let upstream = common::nats_url();
    let mut proxy = CuttableProxy::to(upstream.trim_start_matches("nats://")).await;
    let settings = NatsSettings {
        url: format!("nats://{}", proxy.addr),
        timeout: Duration::from_millis(200),
        ..common::test_settings(&[])
    };
    let namespace = settings.namespace.clone();
    let bus = JetStreamBus::connect(settings, store).await.unwrap();
    let jobs = bus.job_queue().await.unwrap();
    jobs.push("k", "before", Duration::ZERO).await.unwrap();

    proxy.cut();
    let mut failures = 0;
    let refusal = loop {
        match jobs
            .push("k", &format!("job-{failures}"), Duration::ZERO)
            .await
        {
            Err(err) if Chain(&err).to_string().contains("circuit breaker") => {
                break Chain(&err).to_string();
            }
            Err(QueueError::Unavailable { .. }) => failures += 1,
            Ok(()) => panic!("a push went through a cut connection"),
        }
        assert!(failures <= 20, "the breaker never opened");
    };
    assert!(refusal.contains("nats is open"), "{refusal}");
    // The window's minimum of 10 calls: the first push and 9 failures.
    assert_eq!(failures, 9, "opened after {failures} failures");

    let js = jetstream().await;
    for stream in ["events", "jobs"] {
        let _ = js.delete_stream(format!("{namespace}-{stream}")).await;
    }
}
