//! What only the Redis ledger has: loss of a sale's state and its rebuild,
//! several nodes on one Redis, namespaces, the key layout, reconciliation
//! hooks, key expiry, sale hashes written before live sale controls, and an
//! unreachable server.

// Test code: a failed expectation is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Fixture, delete_matching, fixture_with, fresh_fixture, keys_matching};
use stampede_app::failure::Chain;
use stampede_app::ports::{
    Attempt, Decision, KeyRecord, LedgerError, SaleSnapshot, Settlement, StockLedger,
};
use stampede_contract::faults::CuttableProxy;
use stampede_contract::ledger::{LedgerFixture, NOW};
use stampede_domain::catalog::{Product, Sale, SaleControl, SaleRequest};
use stampede_domain::idempotency::{Answer, Fingerprint, IdempotencyKey};
use stampede_domain::ids::{OrderId, UserId};
use stampede_domain::quantity::Quantity;
use stampede_domain::stock::Refusal;
use stampede_domain::time::Timestamp;
use stampede_ledger_redis::{RedisLedger, RedisLedgerSettings, hash_slot};

const DURING: Timestamp = Timestamp::from_millis(NOW.as_millis() + 1000);

fn new_sale(quantity: i64, per_user_limit: i64) -> Sale {
    let product = Product::create("SKU-REDIS", "Phone", 49_900, "EUR", NOW).unwrap();
    let request = SaleRequest {
        quantity,
        per_user_limit: Some(per_user_limit),
        starts_at: Some(NOW),
        ..SaleRequest::default()
    };
    Sale::create(&product, &request, NOW).unwrap()
}

fn user(name: &str) -> UserId {
    UserId::parse(name).unwrap()
}

fn attempt(sale: &Sale, who: &str, key: &str, quantity: i64) -> Attempt {
    Attempt {
        user: user(who),
        key: IdempotencyKey::parse(key).unwrap(),
        fingerprint: Fingerprint {
            sale_id: sale.id,
            quantity: Quantity::parse("quantity", quantity).unwrap(),
        },
        now: DURING,
    }
}

async fn buy(ledger: &dyn StockLedger, attempt: &Attempt) -> OrderId {
    let decision = ledger.decide(attempt).await.unwrap();
    assert!(matches!(decision, Decision::Reserved), "got {decision:?}");
    let order = OrderId::generate();
    ledger
        .settle(attempt, Settlement::Won(order))
        .await
        .unwrap();
    order
}

fn assert_rebuilding<T: std::fmt::Debug>(result: Result<T, LedgerError>) {
    assert!(
        matches!(&result, Err(err @ LedgerError::Unavailable { .. }) if Chain(err).to_string().contains("rebuilding")),
        "expected unavailable while rebuilding, got {result:?}"
    );
}

/// Runs a test body on a fresh fixture, cleaning up even when it fails.
async fn with_fixture<F, Fut>(body: F)
where
    F: FnOnce(Arc<Fixture>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Some(fixture) = fresh_fixture().await else {
        return;
    };
    let fixture = Arc::new(fixture);
    let outcome = tokio::spawn(body(fixture.clone())).await;
    fixture.cleanup().await;
    if let Err(err) = outcome {
        std::panic::resume_unwind(err.into_panic());
    }
}

/// Deletes every key of one sale, as a flush or an operator would.
async fn lose_sale(fixture: &Fixture, sale: &Sale) -> usize {
    let pattern = format!("{{{}:sale:{}}}*", fixture.namespace, sale.id);
    delete_matching(&fixture.url, &pattern).await
}

/// The store's view of a sale of 10 where alice won 2 units with `k-a` and
/// bob 1 with `k-b`.
fn store_view(sale: &Sale, alice: OrderId, bob: OrderId) -> (SaleSnapshot, Vec<KeyRecord>) {
    let record = |who: &str, key: &str, order_id, quantity| KeyRecord {
        user_id: user(who),
        key: IdempotencyKey::parse(key).unwrap(),
        order_id,
        sale_id: sale.id,
        quantity,
    };
    let snapshot = SaleSnapshot {
        sale: sale.clone(),
        remaining: 7,
        holdings: vec![(user("alice"), 2), (user("bob"), 1)],
    };
    (
        snapshot,
        vec![
            record("alice", "k-a", alice, 2),
            record("bob", "k-b", bob, 1),
        ],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_sale_is_unavailable_until_rebuilt_and_then_counts_no_unit_twice() {
    with_fixture(|fixture| async move {
        let ledger = &*fixture.ledger;
        let sale = new_sale(10, 5);
        ledger.open_sale(&sale).await.unwrap();
        let alice = buy(ledger, &attempt(&sale, "alice", "k-a", 2)).await;
        let bob = buy(ledger, &attempt(&sale, "bob", "k-b", 1)).await;
        assert!(lose_sale(&fixture, &sale).await >= 3);

        // Never a fresh full sale: every use waits for the rebuild.
        assert_rebuilding(ledger.decide(&attempt(&sale, "carol", "k-c", 1)).await);
        assert_rebuilding(ledger.decide(&attempt(&sale, "alice", "k-a", 2)).await);
        assert_rebuilding(ledger.remaining(sale.id).await);
        assert_rebuilding(ledger.release(sale.id, &user("bob"), 1).await);
        assert_rebuilding(ledger.open_sale(&sale).await);
        assert_rebuilding(ledger.remaining(sale.id).await);
        assert_eq!(ledger.lost_sales().await.unwrap(), vec![sale.id]);

        // The rebuild from the store.
        let (snapshot, keys) = store_view(&sale, alice, bob);
        ledger.restore(vec![snapshot], keys, NOW).await.unwrap();
        assert!(ledger.lost_sales().await.unwrap().is_empty());
        assert_eq!(ledger.remaining(sale.id).await.unwrap(), Some(7));
        let replay = ledger
            .decide(&attempt(&sale, "alice", "k-a", 2))
            .await
            .unwrap();
        assert!(matches!(replay, Decision::Replay(Answer::Won(o)) if o == alice));
        let greedy = ledger
            .decide(&attempt(&sale, "alice", "k-x", 4))
            .await
            .unwrap();
        assert!(matches!(greedy, Decision::Refused(Refusal::LimitExceeded)));

        // Purchases go on and sell exactly what is left.
        for n in 0..7 {
            buy(ledger, &attempt(&sale, &format!("u{n}"), "k", 1)).await;
        }
        let late = ledger
            .decide(&attempt(&sale, "late", "k", 1))
            .await
            .unwrap();
        assert!(matches!(late, Decision::Refused(Refusal::SoldOut)));
        assert_eq!(ledger.remaining(sale.id).await.unwrap(), Some(0));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reservation_lost_with_its_sale_gives_nothing_back_after_the_rebuild() {
    with_fixture(|fixture| async move {
        let ledger = &*fixture.ledger;
        let sale = new_sale(10, 5);
        ledger.open_sale(&sale).await.unwrap();
        let alice = buy(ledger, &attempt(&sale, "alice", "k-a", 2)).await;
        let bob = buy(ledger, &attempt(&sale, "bob", "k-b", 1)).await;
        // Carol's reservation is in flight when the sale is lost; the store
        // never commits it.
        let carol = attempt(&sale, "carol", "k-c", 2);
        assert!(matches!(
            ledger.decide(&carol).await.unwrap(),
            Decision::Reserved
        ));
        lose_sale(&fixture, &sale).await;
        let (snapshot, keys) = store_view(&sale, alice, bob);
        ledger.restore(vec![snapshot], keys, NOW).await.unwrap();
        ledger.settle(&carol, Settlement::Abandoned).await.unwrap();
        assert_eq!(ledger.remaining(sale.id).await.unwrap(), Some(7));
        // Her key is decided afresh.
        assert!(matches!(
            ledger.decide(&carol).await.unwrap(),
            Decision::Reserved
        ));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flushed_namespace_is_lost_for_nodes_that_saw_the_sale_and_unknown_to_others() {
    with_fixture(|fixture| async move {
        let sale = new_sale(10, 5);
        fixture.ledger.open_sale(&sale).await.unwrap();
        let stranger = fixture.other_node().await;
        delete_matching(&fixture.url, &common::namespace_pattern(&fixture.namespace)).await;
        let first = attempt(&sale, "alice", "k-a", 1);
        assert_rebuilding(fixture.ledger.decide(&first).await);
        assert!(matches!(
            stranger.decide(&first).await.unwrap(),
            Decision::UnknownSale
        ));
        // Any node's rebuild serves both.
        let snapshot = SaleSnapshot {
            sale: sale.clone(),
            remaining: 10,
            holdings: vec![],
        };
        stranger.restore(vec![snapshot], vec![], NOW).await.unwrap();
        assert_eq!(fixture.ledger.remaining(sale.id).await.unwrap(), Some(10));
        assert!(matches!(
            fixture.ledger.decide(&first).await.unwrap(),
            Decision::Reserved
        ));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restoring_never_overwrites_a_live_sale() {
    with_fixture(|fixture| async move {
        let ledger = &*fixture.ledger;
        let sale = new_sale(10, 5);
        let alice = OrderId::generate();
        let bob = OrderId::generate();
        let (snapshot, keys) = store_view(&sale, alice, bob);
        ledger
            .restore(vec![snapshot.clone()], keys.clone(), NOW)
            .await
            .unwrap();
        // Live changes since: one won, one in flight.
        buy(ledger, &attempt(&sale, "carol", "k-c", 1)).await;
        let dave = attempt(&sale, "dave", "k-d", 2);
        assert!(matches!(
            ledger.decide(&dave).await.unwrap(),
            Decision::Reserved
        ));
        // Another node starting restores the (older) snapshot.
        let other = fixture.other_node().await;
        other.restore(vec![snapshot], keys, NOW).await.unwrap();
        assert_eq!(ledger.remaining(sale.id).await.unwrap(), Some(4));
        assert_eq!(ledger.reservations(sale.id).await.unwrap().len(), 1);
        ledger.settle(&dave, Settlement::Abandoned).await.unwrap();
        assert_eq!(ledger.remaining(sale.id).await.unwrap(), Some(6));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_restoring_at_once_count_each_unit_once() {
    with_fixture(|fixture| async move {
        let sale = new_sale(10, 5);
        let (snapshot, keys) = store_view(&sale, OrderId::generate(), OrderId::generate());
        // Many holders, so each restore of this one takes several chunks.
        let big = new_sale(5000, 1);
        let big_snapshot = SaleSnapshot {
            sale: big.clone(),
            remaining: 2000,
            holdings: (0..3000).map(|n| (user(&format!("h{n}")), 1)).collect(),
        };
        let mut restores = Vec::new();
        for _ in 0..4 {
            let node = fixture.other_node().await;
            let sales = vec![snapshot.clone(), big_snapshot.clone()];
            let keys = keys.clone();
            restores.push(tokio::spawn(
                async move { node.restore(sales, keys, NOW).await },
            ));
        }
        for restore in restores {
            restore.await.unwrap().unwrap();
        }
        let ledger = &*fixture.ledger;
        assert_eq!(ledger.remaining(sale.id).await.unwrap(), Some(7));
        assert_eq!(ledger.remaining(big.id).await.unwrap(), Some(2000));
        // Every holder holds exactly one unit: one more is over the limit.
        let over = ledger
            .decide(&attempt(&big, "h2999", "k", 1))
            .await
            .unwrap();
        assert!(matches!(over, Decision::Refused(Refusal::LimitExceeded)));
        ledger.release(big.id, &user("h0"), 1).await.unwrap();
        assert!(ledger.release(big.id, &user("h0"), 1).await.is_err());
        assert_eq!(ledger.remaining(big.id).await.unwrap(), Some(2001));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaces_isolate_ledgers_sharing_one_redis() {
    let Some(first) = fresh_fixture().await else {
        return;
    };
    let Some(second) = fresh_fixture().await else {
        return;
    };
    let sale = new_sale(10, 5);
    first.ledger.open_sale(&sale).await.unwrap();
    let same = attempt(&sale, "alice", "k", 1);
    let second_decision = second.ledger.decide(&same).await.unwrap();
    let isolated = matches!(second_decision, Decision::UnknownSale);
    second.ledger.open_sale(&sale).await.unwrap();
    buy(&*second.ledger, &same).await;
    let first_decision = first.ledger.decide(&same).await.unwrap();
    let first_remaining = first.ledger.remaining(sale.id).await.unwrap();
    let first_keys = keys_matching(&first.url, &common::namespace_pattern(&first.namespace)).await;
    let second_namespace = second.namespace.clone();
    first.teardown().await;
    second.teardown().await;
    assert!(isolated, "the second namespace saw the first's sale");
    assert!(
        matches!(first_decision, Decision::Reserved),
        "got {first_decision:?}"
    );
    assert_eq!(first_remaining, Some(9));
    assert!(first_keys.iter().all(|k| !k.contains(&second_namespace)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_key_of_a_sale_carries_its_hash_tag() {
    with_fixture(|fixture| async move {
        let ledger = &*fixture.ledger;
        let sales = [new_sale(3, 1), new_sale(3, 1)];
        for sale in &sales {
            ledger.open_sale(sale).await.unwrap();
            buy(
                ledger,
                &attempt(sale, "alice", &format!("won-{}", sale.id), 1),
            )
            .await;
            let _ = ledger
                .decide(&attempt(sale, "bob", &format!("greedy-{}", sale.id), 2))
                .await;
            let _ = ledger
                .decide(&attempt(sale, "carol", &format!("flying-{}", sale.id), 1))
                .await;
        }
        let ns = &fixture.namespace;
        let keys = keys_matching(&fixture.url, &common::namespace_pattern(ns)).await;
        // Per sale: its hash, a won and a refused record; per key a binding.
        assert_eq!(keys.len(), 12, "{keys:?}");
        for sale in &sales {
            let tag = format!("{{{ns}:sale:{}}}", sale.id);
            let of_sale: Vec<&String> = keys.iter().filter(|k| k.starts_with(&tag)).collect();
            assert_eq!(of_sale.len(), 3, "{of_sale:?}");
            for key in of_sale {
                assert_eq!(hash_slot(key), hash_slot(&tag), "{key}");
            }
        }
        let bindings = keys
            .iter()
            .filter(|k| k.starts_with(&format!("{{{ns}:key:")))
            .count();
        assert_eq!(bindings, 6);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reservations_in_flight_are_listed_for_reconciliation() {
    with_fixture(|fixture| async move {
        let ledger = &*fixture.ledger;
        let sale = new_sale(10, 5);
        ledger.open_sale(&sale).await.unwrap();
        let odd = UserId::parse("user:with:colons").unwrap();
        let mut first = attempt(&sale, "x", "key:1", 2);
        first.user = odd.clone();
        assert!(matches!(
            ledger.decide(&first).await.unwrap(),
            Decision::Reserved
        ));
        buy(ledger, &attempt(&sale, "bob", "k-b", 1)).await;
        let found = ledger.reservations(sale.id).await.unwrap();
        assert_eq!(found.len(), 1);
        let reservation = &found[0];
        assert_eq!(reservation.user, odd);
        assert_eq!(reservation.key.as_str(), "key:1");
        assert_eq!(reservation.quantity.get(), 2);
        assert_eq!(reservation.reserved_at, DURING);
        // The reconciliation job: the store has no order for it, so abandon.
        let later = DURING.plus_secs(600);
        ledger
            .settle(&reservation.attempt(later), Settlement::Abandoned)
            .await
            .unwrap();
        assert!(ledger.reservations(sale.id).await.unwrap().is_empty());
        assert_eq!(ledger.remaining(sale.id).await.unwrap(), Some(9));
        // Settling again gives nothing back twice.
        ledger
            .settle(&reservation.attempt(later), Settlement::Abandoned)
            .await
            .unwrap();
        assert_eq!(ledger.remaining(sale.id).await.unwrap(), Some(9));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remembered_answers_expire_after_the_retention() {
    let settings = RedisLedgerSettings {
        key_retention: Duration::from_millis(300),
        ..RedisLedgerSettings::default()
    };
    let Some(fixture) = fixture_with(settings).await else {
        return;
    };
    let ledger = fixture.ledger.clone();
    let sale = new_sale(1, 1);
    ledger.open_sale(&sale).await.unwrap();
    buy(&*ledger, &attempt(&sale, "alice", "k-a", 1)).await;
    let bob = attempt(&sale, "bob", "k-b", 1);
    let first = ledger.decide(&bob).await.unwrap();
    let replay = ledger.decide(&bob).await.unwrap();
    ledger.release(sale.id, &user("alice"), 1).await.unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    // Forgotten: decided afresh, and now there is a unit for it.
    let afresh = ledger.decide(&bob).await.unwrap();
    fixture.teardown().await;
    assert!(matches!(first, Decision::Refused(Refusal::SoldOut)));
    assert!(matches!(
        replay,
        Decision::Replay(Answer::Refused(Refusal::SoldOut))
    ));
    assert!(matches!(afresh, Decision::Reserved), "got {afresh:?}");
}

#[tokio::test]
async fn an_unreachable_redis_is_unavailable() {
    let settings = RedisLedgerSettings {
        connect_timeout: Duration::from_millis(300),
        reconnect_retries: 0,
        ..RedisLedgerSettings::default()
    };
    let result = RedisLedger::connect("redis://127.0.0.1:1", "stampede-test", settings).await;
    assert!(matches!(result, Err(LedgerError::Unavailable { .. })));
}

#[tokio::test]
async fn a_namespace_that_could_meet_another_is_refused() {
    let result =
        RedisLedger::connect("redis://127.0.0.1:1", "a:b", RedisLedgerSettings::default()).await;
    assert!(
        matches!(&result, Err(err @ LedgerError::Unavailable { .. }) if Chain(err).to_string().contains("namespace"))
    );
}

/// Redis going down opens the ledger's breaker: after a run of failures,
/// purchases are refused at once with `Unavailable` naming the breaker,
/// rather than each waiting for a connection that will not come.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_redis_opens_the_ledger_breaker() {
    let Some(fixture) = fresh_fixture().await else {
        return;
    };
    let upstream = fixture
        .url
        .trim_start_matches("redis://")
        .trim_end_matches('/');
    let mut relay = CuttableProxy::to(upstream).await;
    let settings = RedisLedgerSettings {
        connect_timeout: Duration::from_millis(300),
        response_timeout: Duration::from_millis(300),
        reconnect_retries: 0,
        ..RedisLedgerSettings::default()
    };
    let url = format!("redis://{}", relay.addr);
    let ledger = RedisLedger::connect(&url, &fixture.namespace, settings)
        .await
        .unwrap();
    let sale = new_sale(10, 10);
    ledger.open_sale(&sale).await.unwrap();
    buy(&ledger, &attempt(&sale, "u-before", "k", 1)).await;

    relay.cut();
    let mut failures = 0;
    let refusal = loop {
        match ledger.decide(&attempt(&sale, "u-after", "k", 1)).await {
            Err(err @ LedgerError::Unavailable { .. })
                if Chain(&err).to_string().contains("circuit breaker") =>
            {
                break Chain(&err).to_string();
            }
            Err(LedgerError::Unavailable { .. }) => failures += 1,
            other => panic!("a cut-off Redis answered {other:?}"),
        }
        assert!(failures <= 20, "the breaker never opened");
    };
    assert!(refusal.contains("redis_ledger is open"), "{refusal}");
    assert!(failures >= 5, "opened after {failures} failures");
    fixture.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_bound_elsewhere_leaves_nothing_in_the_sale_it_mismatched() {
    with_fixture(|fixture| async move {
        let ledger = &*fixture.ledger;
        let (first, sold_out) = (new_sale(5, 1), new_sale(1, 1));
        ledger.open_sale(&first).await.unwrap();
        ledger.open_sale(&sold_out).await.unwrap();
        buy(ledger, &attempt(&sold_out, "alice", "a", 1)).await;
        buy(ledger, &attempt(&first, "bob", "k", 1)).await;
        // The binding and the decision travel together, so the sold-out sale
        // refused the key before its binding said it was bob's first sale's…
        let decision = ledger.decide(&attempt(&sold_out, "bob", "k", 1)).await;
        assert!(matches!(decision, Ok(Decision::Mismatch)), "{decision:?}");
        // …and that refusal is forgotten: the sale holds only alice's answer.
        let ns = &fixture.namespace;
        let pattern = format!("{{{ns}:sale:{}}}:key:*", sold_out.id);
        let records = keys_matching(&fixture.url, &pattern).await;
        assert_eq!(records.len(), 1, "{records:?}");
        assert_eq!(ledger.remaining(first.id).await.unwrap(), Some(4));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_lost_by_redis_are_loaded_again() {
    with_fixture(|fixture| async move {
        let ledger = &*fixture.ledger;
        let sale = new_sale(5, 1);
        ledger.open_sale(&sale).await.unwrap();
        buy(ledger, &attempt(&sale, "alice", "a", 1)).await;
        // A restarted or flushed Redis forgets every script (other tests on
        // this Redis reload theirs the same way).
        flush_scripts(&fixture.url).await;
        buy(ledger, &attempt(&sale, "bob", "b", 1)).await;
        let replay = ledger.decide(&attempt(&sale, "bob", "b", 1)).await;
        assert!(
            matches!(replay, Ok(Decision::Replay(Answer::Won(_)))),
            "{replay:?}"
        );
        // A settlement that gives units back runs its script alone.
        let carol = attempt(&sale, "carol", "c", 1);
        let decision = ledger.decide(&carol).await.unwrap();
        assert!(matches!(decision, Decision::Reserved), "{decision:?}");
        flush_scripts(&fixture.url).await;
        ledger.settle(&carol, Settlement::Abandoned).await.unwrap();
        assert_eq!(ledger.remaining(sale.id).await.unwrap(), Some(3));
    })
    .await;
}

/// A plain connection, to look at and change a namespace by hand.
async fn raw(url: &str) -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(url).unwrap();
    client.get_multiplexed_async_connection().await.unwrap()
}

fn sale_hash(fixture: &Fixture, sale: &Sale) -> String {
    format!("{{{}:sale:{}}}", fixture.namespace, sale.id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sale_hash_from_before_sale_controls_reads_as_running_at_version_0() {
    with_fixture(|fixture| async move {
        let ledger = &*fixture.ledger;
        let sale = new_sale(10, 5);
        ledger.open_sale(&sale).await.unwrap();
        let hash = sale_hash(&fixture, &sale);
        let mut con = raw(&fixture.url).await;
        let removed: i64 = redis::cmd("HDEL")
            .arg(&hash)
            .arg("state")
            .arg("version")
            .query_async(&mut con)
            .await
            .unwrap();
        assert_eq!(removed, 2, "open writes the state and the version");
        buy(ledger, &attempt(&sale, "alice", "k-a", 1)).await;
        // Any version is newer: the first one takes the same terms again.
        ledger.amend_sale(&sale).await.unwrap();
        assert_eq!(ledger.remaining(sale.id).await.unwrap(), Some(9));
        let (state, version): (Option<String>, Option<u64>) = redis::cmd("HMGET")
            .arg(&hash)
            .arg("state")
            .arg("version")
            .query_async(&mut con)
            .await
            .unwrap();
        assert_eq!(state.as_deref(), Some("running"));
        assert_eq!(version, Some(1));
        let paused = sale.apply(SaleControl::Pause, NOW).unwrap().unwrap();
        ledger.amend_sale(&paused).await.unwrap();
        let decision = ledger.decide(&attempt(&sale, "bob", "k-b", 1)).await;
        assert!(
            matches!(decision, Ok(Decision::Refused(Refusal::SalePaused))),
            "{decision:?}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_leaves_no_record_and_no_binding_behind() {
    with_fixture(|fixture| async move {
        let ledger = &*fixture.ledger;
        let sale = new_sale(10, 5);
        ledger.open_sale(&sale).await.unwrap();
        let paused = sale.apply(SaleControl::Pause, NOW).unwrap().unwrap();
        ledger.amend_sale(&paused).await.unwrap();
        for _ in 0..2 {
            let decision = ledger.decide(&attempt(&sale, "bob", "k-b", 1)).await;
            assert!(
                matches!(decision, Ok(Decision::Refused(Refusal::SalePaused))),
                "{decision:?}"
            );
        }
        // Only the sale's hash, with no reservation in it.
        let ns = &fixture.namespace;
        let keys = keys_matching(&fixture.url, &common::namespace_pattern(ns)).await;
        assert_eq!(keys, vec![sale_hash(&fixture, &sale)]);
        assert!(ledger.reservations(sale.id).await.unwrap().is_empty());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_to_a_lost_sale_waits_for_its_rebuild() {
    with_fixture(|fixture| async move {
        let ledger = &*fixture.ledger;
        let sale = new_sale(10, 5);
        ledger.open_sale(&sale).await.unwrap();
        let alice = buy(ledger, &attempt(&sale, "alice", "k-a", 2)).await;
        let bob = buy(ledger, &attempt(&sale, "bob", "k-b", 1)).await;
        lose_sale(&fixture, &sale).await;
        // Five more units, made while the sale is lost: the caller is told
        // to try again (the store's snapshot may predate them)…
        let more = sale
            .apply(
                SaleControl::AddStock(Quantity::parse("add", 5).unwrap()),
                NOW,
            )
            .unwrap()
            .unwrap();
        assert_rebuilding(ledger.amend_sale(&more).await);
        // …and while another node (dead since) was restoring it.
        let mut con = raw(&fixture.url).await;
        redis::cmd("HSET")
            .arg(sale_hash(&fixture, &sale))
            .arg("loading")
            .arg("dead-node:0")
            .query_async::<()>(&mut con)
            .await
            .unwrap();
        assert_rebuilding(ledger.amend_sale(&more).await);
        // Rebuilt from a snapshot taken before the change, then changed.
        let (snapshot, keys) = store_view(&sale, alice, bob);
        ledger.restore(vec![snapshot], keys, NOW).await.unwrap();
        assert_eq!(ledger.remaining(sale.id).await.unwrap(), Some(7));
        ledger.amend_sale(&more).await.unwrap();
        assert_eq!(ledger.remaining(sale.id).await.unwrap(), Some(12));
    })
    .await;
}

async fn flush_scripts(url: &str) {
    let client = redis::Client::open(url).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async::<()>(&mut con)
        .await
        .unwrap();
}
