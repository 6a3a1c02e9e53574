//! The [`EventBus`] contract. Each function is one behaviour, given a bus
//! over a fresh, empty store; names read as sentences. Events are committed
//! as the services commit them, by writing to the store (a product insert
//! writes its `product.created`), and the bus must carry them from there —
//! in cluster mode through its relay, so delivery is awaited with generous
//! deadlines that only bound a failure, never measure speed.
//!
//! An adapter runs the suite with
//! [`bus_contract_tests!`](crate::bus_contract_tests):
//!
//! ```ignore
//! // crates/bus-nats/tests/contract.rs
//! stampede_contract::bus_contract_tests!(|dir| fresh_bus(dir));
//! ```
//!
//! where `fresh_bus(dir)` is a future of `Option<impl BusFixture>`: `None`
//! skips the test (its fixture says why), and the fixture's teardown runs
//! after the behaviour, even when it failed.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use stampede_domain::catalog::Product;
use stampede_domain::ids::{EventId, ProductId};
use stampede_domain::time::Timestamp;
use stampede_trace::TraceParent;
use tokio::time::Instant;

use stampede_app::ports::{BusSubscription, EventBus, Store, StoredEvent};

/// The fixed creation time of the products written to make events.
const NOW: Timestamp = Timestamp::from_millis(1_800_000_000_000);

/// Longest wait for something that must happen.
const PATIENCE: Duration = Duration::from_secs(20);
/// Wait of one `next` call.
const WAIT: Duration = Duration::from_millis(250);
/// How long nothing must arrive for "nothing more" to hold.
const QUIET: Duration = Duration::from_millis(500);

/// A bus under test, and what to clean up once a behaviour has run.
pub trait BusFixture: Send + 'static {
    /// The bus; it must deliver what is committed to [`store`](Self::store).
    fn bus(&self) -> Arc<dyn EventBus>;

    /// The store of record behind the bus.
    fn store(&self) -> Arc<dyn Store>;

    /// Runs after the behaviour, whether it passed or not.
    fn teardown(self) -> impl Future<Output = ()> + Send
    where
        Self: Sized,
    {
        async {}
    }
}

/// What a behaviour is given.
pub struct BusUnderTest {
    pub bus: Arc<dyn EventBus>,
    pub store: Arc<dyn Store>,
}

/// Runs one behaviour on a fresh fixture (none: skipped), tears the fixture
/// down, then passes on the behaviour's failure.
pub async fn run<F, B, Fut>(fresh: impl Future<Output = Option<F>>, behaviour: B)
where
    F: BusFixture,
    B: FnOnce(BusUnderTest) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Some(fixture) = fresh.await else {
        return;
    };
    let under_test = BusUnderTest {
        bus: fixture.bus(),
        store: fixture.store(),
    };
    super::behave_then_tear_down(behaviour(under_test), fixture.teardown()).await;
}

/// Commits `n` events (one product each) and says so to the bus; returns
/// them as the outbox holds them.
pub async fn commit(t: &BusUnderTest, n: usize) -> Vec<StoredEvent> {
    let before = t.store.last_seq().await.unwrap();
    for _ in 0..n {
        let sku = format!("SKU-{}", ProductId::generate());
        let product = Product::create(&sku, "Phone", 49_900, "EUR", NOW).unwrap();
        t.store.insert_product(&product).await.unwrap();
    }
    t.bus.notify();
    let events = t
        .store
        .events_after(before, u32::try_from(n).unwrap())
        .await
        .unwrap();
    assert_eq!(events.len(), n, "each product insert writes one event");
    events
}

/// Takes events until `n` came (or more, if a batch brings them), failing
/// after [`PATIENCE`].
pub async fn receive(subscription: &mut dyn BusSubscription, n: usize) -> Vec<StoredEvent> {
    let deadline = Instant::now() + PATIENCE;
    let mut got: Vec<StoredEvent> = Vec::new();
    while got.len() < n {
        assert!(
            Instant::now() < deadline,
            "expected {n} events, got {} within {PATIENCE:?}: {:?}",
            got.len(),
            seqs(&got)
        );
        let missing = u32::try_from(n - got.len()).unwrap();
        got.extend(subscription.next(missing, WAIT).await.unwrap());
    }
    got
}

/// Fails if anything arrives within [`QUIET`].
pub async fn nothing_more(subscription: &mut dyn BusSubscription) {
    let deadline = Instant::now() + QUIET;
    while Instant::now() < deadline {
        let extra = subscription.next(16, WAIT).await.unwrap();
        assert!(
            extra.is_empty(),
            "expected nothing more, got {:?}",
            seqs(&extra)
        );
    }
}

/// Waits until the subscription's lag is `expected`, failing after
/// [`PATIENCE`] (a relay publishes in the background). Takes `&mut` only so
/// the future stays `Send` (subscriptions are not `Sync`).
pub async fn lag_becomes(subscription: &mut dyn BusSubscription, expected: u64) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let lag = subscription.lag().await.unwrap();
        if lag == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "lag stayed {lag}, expected {expected}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn ids(events: &[StoredEvent]) -> Vec<EventId> {
    events.iter().map(|event| event.id).collect()
}

fn seqs(events: &[StoredEvent]) -> Vec<i64> {
    events.iter().map(|event| event.seq).collect()
}

pub async fn events_committed_after_subscribing_are_delivered_in_order(t: BusUnderTest) {
    let mut subscription = t.bus.subscribe("contract-order").await.unwrap();
    let committed = commit(&t, 5).await;
    let got = receive(&mut *subscription, 5).await;
    assert_eq!(
        got, committed,
        "the events as the outbox holds them, in order"
    );
    nothing_more(&mut *subscription).await;
}

pub async fn an_acknowledgement_moves_the_durable_position(t: BusUnderTest) {
    let mut first = t.bus.subscribe("contract-ack").await.unwrap();
    let committed = commit(&t, 5).await;
    let got = receive(&mut *first, 5).await;
    first.ack(got[2].seq).await.unwrap();
    drop(first);

    let mut second = t.bus.subscribe("contract-ack").await.unwrap();
    let rest = receive(&mut *second, 2).await;
    assert_eq!(
        ids(&rest),
        ids(&committed[3..]),
        "starts after the acknowledged event"
    );
    nothing_more(&mut *second).await;
}

pub async fn a_nack_delivers_again_from_the_last_acknowledgement(t: BusUnderTest) {
    let mut subscription = t.bus.subscribe("contract-nack").await.unwrap();
    let committed = commit(&t, 5).await;
    let got = receive(&mut *subscription, 5).await;
    subscription.ack(got[1].seq).await.unwrap();
    subscription.nack();
    let again = receive(&mut *subscription, 3).await;
    assert_eq!(
        ids(&again),
        ids(&committed[2..]),
        "the unacknowledged events, in order"
    );
    subscription.ack(again[2].seq).await.unwrap();
    nothing_more(&mut *subscription).await;
}

pub async fn a_durable_consumer_resumes_after_a_restart_without_losing_or_skipping(
    t: BusUnderTest,
) {
    let mut subscription = t.bus.subscribe("contract-restart").await.unwrap();
    let before = commit(&t, 3).await;
    let got = receive(&mut *subscription, 3).await;
    assert_eq!(ids(&got), ids(&before));
    subscription.ack(got[2].seq).await.unwrap();
    drop(subscription);

    // Committed while no subscription runs.
    let during = commit(&t, 3).await;
    let mut subscription = t.bus.subscribe("contract-restart").await.unwrap();
    let got = receive(&mut *subscription, 3).await;
    assert_eq!(
        ids(&got),
        ids(&during),
        "resumes exactly after the last acknowledgement"
    );
    subscription.ack(got[2].seq).await.unwrap();

    let after = commit(&t, 2).await;
    let got = receive(&mut *subscription, 2).await;
    assert_eq!(ids(&got), ids(&after));
    subscription.ack(got[1].seq).await.unwrap();
    nothing_more(&mut *subscription).await;
}

pub async fn a_tail_sees_only_events_committed_after_it_started(t: BusUnderTest) {
    commit(&t, 3).await;
    let mut tail = t.bus.tail().await.unwrap();
    let after = commit(&t, 2).await;
    let got = receive(&mut *tail, 2).await;
    assert_eq!(
        ids(&got),
        ids(&after),
        "only what came after the tail started"
    );
    tail.ack(got[1].seq).await.unwrap();
    nothing_more(&mut *tail).await;
}

pub async fn lag_counts_the_events_not_yet_acknowledged(t: BusUnderTest) {
    let mut subscription = t.bus.subscribe("contract-lag").await.unwrap();
    lag_becomes(&mut *subscription, 0).await;
    commit(&t, 3).await;
    lag_becomes(&mut *subscription, 3).await;
    let got = receive(&mut *subscription, 3).await;
    lag_becomes(&mut *subscription, 3).await;
    subscription.ack(got[0].seq).await.unwrap();
    lag_becomes(&mut *subscription, 2).await;
    subscription.ack(got[2].seq).await.unwrap();
    lag_becomes(&mut *subscription, 0).await;
}

pub async fn events_committed_before_any_subscriber_reach_a_durable_consumer_created_later(
    t: BusUnderTest,
) {
    let committed = commit(&t, 4).await;
    let mut subscription = t.bus.subscribe("contract-late").await.unwrap();
    let got = receive(&mut *subscription, 4).await;
    assert_eq!(ids(&got), ids(&committed));
    nothing_more(&mut *subscription).await;
}

pub async fn each_durable_consumer_receives_every_event(t: BusUnderTest) {
    let mut one = t.bus.subscribe("contract-one").await.unwrap();
    let mut two = t.bus.subscribe("contract-two").await.unwrap();
    let committed = commit(&t, 3).await;
    let got_one = receive(&mut *one, 3).await;
    one.ack(got_one[2].seq).await.unwrap();
    let got_two = receive(&mut *two, 3).await;
    assert_eq!(ids(&got_one), ids(&committed));
    assert_eq!(
        ids(&got_two),
        ids(&committed),
        "one consumer's ack is not the other's"
    );
}

/// Traces ride along: an event written in a request's trace reaches a
/// consumer with it (as a message header on JetStream), one written outside
/// any trace with none.
pub async fn events_reach_consumers_with_the_trace_they_were_written_in(t: BusUnderTest) {
    let mut subscription = t.bus.subscribe("contract-trace").await.unwrap();
    let trace = TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
    let traced = stampede_trace::within(trace, commit(&t, 1)).await;
    let plain = commit(&t, 1).await;
    assert_eq!(
        traced[0].trace, trace,
        "the outbox keeps the writer's trace"
    );
    assert_eq!(plain[0].trace, None);
    let got = receive(&mut *subscription, 2).await;
    assert_eq!(got[0].trace, trace, "{got:?}");
    assert_eq!(got[1].trace, None, "{got:?}");
}

/// Expands to one `#[tokio::test]` per behaviour of the
/// [`EventBus`](stampede_app::ports::EventBus) contract
/// ([`bus`](crate::bus)), each on a fresh fixture.
///
/// `bus_contract_tests!(|dir| <async expression>)`: the expression produces
/// an `Option<F>` where `F:` [`BusFixture`](crate::bus::BusFixture)
/// (`None` skips the test) and may use `dir: &Path`, a scratch directory that
/// lives until the test ends. `bus_contract_tests!(<async expression>)`: the
/// same without a directory.
///
/// A new behaviour in [`bus`](crate::bus) must also be
/// added to the list below.
#[macro_export]
macro_rules! bus_contract_tests {
    (|$dir:ident| $fresh:expr) => {
        $crate::bus_contract_tests!(@names [$dir] $fresh);
    };
    (@names $dir:tt $fresh:expr) => {
        $crate::bus_contract_tests!(@tests $dir $fresh;
            events_committed_after_subscribing_are_delivered_in_order,
            an_acknowledgement_moves_the_durable_position,
            a_nack_delivers_again_from_the_last_acknowledgement,
            a_durable_consumer_resumes_after_a_restart_without_losing_or_skipping,
            a_tail_sees_only_events_committed_after_it_started,
            lag_counts_the_events_not_yet_acknowledged,
            events_committed_before_any_subscriber_reach_a_durable_consumer_created_later,
            each_durable_consumer_receives_every_event,
            events_reach_consumers_with_the_trace_they_were_written_in,
        );
    };
    (@tests [$dir:ident] $fresh:expr; $($name:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                // Lives until the test ends, after the fixture is torn down.
                let scratch = $crate::scratch_dir();
                let $dir: &::std::path::Path = scratch.path();
                $crate::bus::run($fresh, $crate::bus::$name).await;
            }
        )*
    };
    (@tests [] $fresh:expr; $($name:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                $crate::bus::run($fresh, $crate::bus::$name).await;
            }
        )*
    };
    ($fresh:expr) => {
        $crate::bus_contract_tests!(@names [] $fresh);
    };
}
