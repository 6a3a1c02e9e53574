//! The [`StockLedger`] contract. Each function is one behaviour, given a
//! fresh ledger that tracks no sale; names read as sentences. Every attempt is
//! made at fixed instants around [`NOW`], so ledgers built with
//! [`NOW`] as their clock see the same times.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use stampede_domain::catalog::{Product, Sale, SaleControl, SaleRequest, SaleState};
use stampede_domain::idempotency::{Answer, Fingerprint, IdempotencyKey, Remembered};
use stampede_domain::ids::{OrderId, UserId};
use stampede_domain::quantity::Quantity;
use stampede_domain::stock::Refusal;
use stampede_domain::time::Timestamp;
use tokio::sync::Barrier;

use stampede_app::ports::{
    Attempt, Decision, KeyRecord, LedgerError, SaleSnapshot, Settlement, StockLedger,
};

/// The fixed "now" of every test: 2027-01-15. Sales open at `NOW` and end an
/// hour later; attempts are made a second after `NOW` unless a test says.
pub const NOW: Timestamp = Timestamp::from_millis(1_800_000_000_000);

const DURING: Timestamp = Timestamp::from_millis(NOW.as_millis() + 1000);

/// A ledger under test, and what to clean up once a behaviour has run.
pub trait LedgerFixture: Send + 'static {
    fn ledger(&self) -> Arc<dyn StockLedger>;

    /// Runs after the behaviour, whether it passed or not.
    fn teardown(self) -> impl Future<Output = ()> + Send
    where
        Self: Sized,
    {
        async {}
    }
}

impl LedgerFixture for Arc<dyn StockLedger> {
    fn ledger(&self) -> Arc<dyn StockLedger> {
        self.clone()
    }
}

/// Runs one behaviour on a fresh fixture (none: skipped), tears the fixture
/// down, then passes on the behaviour's failure.
pub async fn run<F, B, Fut>(fresh: impl Future<Output = Option<F>>, behaviour: B)
where
    F: LedgerFixture,
    B: FnOnce(Arc<dyn StockLedger>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Some(fixture) = fresh.await else {
        return;
    };
    super::behave_then_tear_down(behaviour(fixture.ledger()), fixture.teardown()).await;
}

fn new_sale(quantity: i64, per_user_limit: i64) -> Sale {
    let product = Product::create("SKU-LEDGER", "Phone", 49_900, "EUR", NOW).unwrap();
    let request = SaleRequest {
        quantity,
        per_user_limit: Some(per_user_limit),
        starts_at: Some(NOW),
        ends_at: Some(NOW.plus_secs(3600)),
        ..SaleRequest::default()
    };
    Sale::create(&product, &request, NOW).unwrap()
}

/// An open sale of `quantity` units, at most `per_user_limit` per buyer.
async fn opened(ledger: &dyn StockLedger, quantity: i64, per_user_limit: i64) -> Sale {
    let sale = new_sale(quantity, per_user_limit);
    ledger.open_sale(&sale).await.unwrap();
    sale
}

fn user(name: &str) -> UserId {
    UserId::parse(name).unwrap()
}

fn qty(n: i64) -> Quantity {
    Quantity::parse("quantity", n).unwrap()
}

fn attempt_at(sale: &Sale, who: &str, key: &str, quantity: i64, now: Timestamp) -> Attempt {
    Attempt {
        user: user(who),
        key: IdempotencyKey::parse(key).unwrap(),
        fingerprint: Fingerprint {
            sale_id: sale.id,
            quantity: qty(quantity),
        },
        now,
    }
}

fn attempt(sale: &Sale, who: &str, key: &str, quantity: i64) -> Attempt {
    attempt_at(sale, who, key, quantity, DURING)
}

async fn decide(ledger: &dyn StockLedger, attempt: &Attempt) -> Decision {
    ledger.decide(attempt).await.unwrap()
}

async fn reserve(ledger: &dyn StockLedger, attempt: &Attempt) {
    let decision = decide(ledger, attempt).await;
    assert!(
        matches!(decision, Decision::Reserved),
        "expected a reservation, got {decision:?}"
    );
}

/// Reserves and commits: the key won this order.
async fn buy(ledger: &dyn StockLedger, attempt: &Attempt) -> OrderId {
    reserve(ledger, attempt).await;
    let order = OrderId::generate();
    ledger
        .settle(attempt, Settlement::Won(order))
        .await
        .unwrap();
    order
}

async fn remaining(ledger: &dyn StockLedger, sale: &Sale) -> u64 {
    ledger.remaining(sale.id).await.unwrap().unwrap()
}

fn assert_replays_order(decision: Decision, order: OrderId) {
    assert!(
        matches!(decision, Decision::Replay(Answer::Won(o)) if o == order),
        "expected a replay of {order}, got {decision:?}"
    );
}

fn assert_refused(decision: Decision, refusal: Refusal) {
    assert!(
        matches!(decision, Decision::Refused(r) if r == refusal),
        "expected a refusal ({}), got {decision:?}",
        refusal.slug()
    );
}

fn assert_replays_refusal(decision: Decision, refusal: Refusal) {
    assert!(
        matches!(decision, Decision::Replay(Answer::Refused(r)) if r == refusal),
        "expected a replayed refusal ({}), got {decision:?}",
        refusal.slug()
    );
}

fn assert_mismatch(decision: Decision) {
    assert!(
        matches!(decision, Decision::Mismatch),
        "expected a mismatch, got {decision:?}"
    );
}

fn assert_inconsistent<T: std::fmt::Debug>(result: Result<T, LedgerError>) {
    assert!(
        matches!(result, Err(LedgerError::Inconsistent { .. })),
        "expected an inconsistency, got {result:?}"
    );
}

/// `sale` after an admin's `control` (one version on), made at [`NOW`].
fn after(sale: &Sale, control: SaleControl) -> Sale {
    after_at(sale, control, NOW)
}

fn after_at(sale: &Sale, control: SaleControl, now: Timestamp) -> Sale {
    sale.apply(control, now)
        .unwrap()
        .expect("the control changes the sale")
}

/// Applies `control` to `sale` and hands the new version to the ledger.
async fn amend(ledger: &dyn StockLedger, sale: &Sale, control: SaleControl) -> Sale {
    let next = after(sale, control);
    ledger.amend_sale(&next).await.unwrap();
    next
}

/// Waits out a `Wait`, which must end (once the key is settled) within 5 s.
async fn wait_out(decision: Decision) {
    let Decision::Wait(wait) = decision else {
        panic!("expected a wait, got {decision:?}");
    };
    tokio::time::timeout(Duration::from_secs(5), wait)
        .await
        .expect("a wait did not end after its key was settled");
}

pub async fn a_won_reservation_replays_its_order_to_the_same_key(ledger: Arc<dyn StockLedger>) {
    let ledger = &*ledger;
    let sale = opened(ledger, 10, 2).await;
    let first = attempt(&sale, "alice", "k-1", 2);
    let order = buy(ledger, &first).await;
    assert_eq!(remaining(ledger, &sale).await, 8);
    for _ in 0..3 {
        assert_replays_order(decide(ledger, &first).await, order);
    }
    // A replay takes no stock, even later on.
    let later = attempt_at(&sale, "alice", "k-1", 2, DURING.plus_millis(60_000));
    assert_replays_order(decide(ledger, &later).await, order);
    assert_eq!(remaining(ledger, &sale).await, 8);
}

pub async fn a_repeat_of_a_key_in_flight_waits_until_it_is_settled(ledger: Arc<dyn StockLedger>) {
    let sale = opened(&*ledger, 10, 2).await;
    let first = attempt(&sale, "alice", "k-1", 1);
    reserve(&*ledger, &first).await;
    let repeat = decide(&*ledger, &first).await;
    assert!(matches!(repeat, Decision::Wait(_)), "got {repeat:?}");
    let order = OrderId::generate();
    let settler = ledger.clone();
    let settled = first.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(20)).await;
        settler
            .settle(&settled, Settlement::Won(order))
            .await
            .unwrap();
    });
    wait_out(repeat).await;
    // Woken early (a bounded wait) is allowed: ask until the answer is there.
    let mut decision = decide(&*ledger, &first).await;
    for _ in 0..50 {
        if !matches!(decision, Decision::Wait(_)) {
            break;
        }
        wait_out(decision).await;
        decision = decide(&*ledger, &first).await;
    }
    assert_replays_order(decision, order);
    assert_eq!(remaining(&*ledger, &sale).await, 9);
}

pub async fn a_key_sent_with_another_quantity_is_a_mismatch(ledger: Arc<dyn StockLedger>) {
    let ledger = &*ledger;
    let sale = opened(ledger, 10, 3).await;
    // Won.
    buy(ledger, &attempt(&sale, "alice", "won", 1)).await;
    assert_mismatch(decide(ledger, &attempt(&sale, "alice", "won", 2)).await);
    // In flight.
    reserve(ledger, &attempt(&sale, "bob", "flying", 1)).await;
    assert_mismatch(decide(ledger, &attempt(&sale, "bob", "flying", 2)).await);
    // Refused.
    assert_refused(
        decide(ledger, &attempt(&sale, "carol", "greedy", 4)).await,
        Refusal::LimitExceeded,
    );
    assert_mismatch(decide(ledger, &attempt(&sale, "carol", "greedy", 1)).await);
    assert_eq!(remaining(ledger, &sale).await, 8);
}

pub async fn a_key_used_on_one_sale_is_a_mismatch_on_another(ledger: Arc<dyn StockLedger>) {
    let ledger = &*ledger;
    let first = opened(ledger, 1, 1).await;
    let second = opened(ledger, 10, 1).await;
    // A key that won on the first sale.
    buy(ledger, &attempt(&first, "alice", "k-a", 1)).await;
    assert_mismatch(decide(ledger, &attempt(&second, "alice", "k-a", 1)).await);
    // A key refused on the first sale.
    assert_refused(
        decide(ledger, &attempt(&first, "bob", "k-b", 1)).await,
        Refusal::SoldOut,
    );
    assert_mismatch(decide(ledger, &attempt(&second, "bob", "k-b", 1)).await);
    // A key in flight on the second sale.
    reserve(ledger, &attempt(&second, "carol", "k-c", 1)).await;
    assert_mismatch(decide(ledger, &attempt(&first, "carol", "k-c", 1)).await);
    // None of it took the second sale's stock but carol's reservation.
    assert_eq!(remaining(ledger, &second).await, 9);
    assert_replays_refusal(
        decide(ledger, &attempt(&first, "bob", "k-b", 1)).await,
        Refusal::SoldOut,
    );
}

pub async fn keys_are_scoped_to_their_user(ledger: Arc<dyn StockLedger>) {
    let ledger = &*ledger;
    let sale = opened(ledger, 10, 1).await;
    let alice = buy(ledger, &attempt(&sale, "alice", "same", 1)).await;
    let bob = buy(ledger, &attempt(&sale, "bob", "same", 1)).await;
    assert_replays_order(
        decide(ledger, &attempt(&sale, "alice", "same", 1)).await,
        alice,
    );
    assert_replays_order(decide(ledger, &attempt(&sale, "bob", "same", 1)).await, bob);
    assert_eq!(remaining(ledger, &sale).await, 8);
}

pub async fn a_sold_out_refusal_is_remembered_under_the_key(ledger: Arc<dyn StockLedger>) {
    let ledger = &*ledger;
    let sale = opened(ledger, 2, 2).await;
    buy(ledger, &attempt(&sale, "alice", "k-a", 2)).await;
    let bob = attempt(&sale, "bob", "k-b", 1);
    assert_refused(decide(ledger, &bob).await, Refusal::SoldOut);
    assert_replays_refusal(decide(ledger, &bob).await, Refusal::SoldOut);
    // Units coming back do not turn the remembered refusal into a win…
    ledger.release(sale.id, &user("alice"), 1).await.unwrap();
    assert_eq!(remaining(ledger, &sale).await, 1);
    assert_replays_refusal(decide(ledger, &bob).await, Refusal::SoldOut);
    // …but asking for more than is left is sold out, and a new key may win.
    assert_refused(
        decide(ledger, &attempt(&sale, "carol", "k-c", 2)).await,
        Refusal::SoldOut,
    );
    reserve(ledger, &attempt(&sale, "bob", "k-b2", 1)).await;
    assert_eq!(remaining(ledger, &sale).await, 0);
}

pub async fn a_purchase_past_the_per_user_limit_is_refused_and_remembered(
    ledger: Arc<dyn StockLedger>,
) {
    let ledger = &*ledger;
    let sale = opened(ledger, 10, 2).await;
    // In one purchase…
    let greedy = attempt(&sale, "bob", "k-b", 3);
    assert_refused(decide(ledger, &greedy).await, Refusal::LimitExceeded);
    assert_replays_refusal(decide(ledger, &greedy).await, Refusal::LimitExceeded);
    // …or in several.
    buy(ledger, &attempt(&sale, "alice", "k-1", 2)).await;
    let more = attempt(&sale, "alice", "k-2", 1);
    assert_refused(decide(ledger, &more).await, Refusal::LimitExceeded);
    assert_replays_refusal(decide(ledger, &more).await, Refusal::LimitExceeded);
    assert_eq!(remaining(ledger, &sale).await, 8);
    // A cancelled unit makes room under the limit for a new key.
    ledger.release(sale.id, &user("alice"), 1).await.unwrap();
    reserve(ledger, &attempt(&sale, "alice", "k-3", 1)).await;
}

pub async fn a_sale_not_started_is_not_active_and_the_refusal_is_remembered(
    ledger: Arc<dyn StockLedger>,
) {
    let ledger = &*ledger;
    let sale = opened(ledger, 10, 2).await;
    let early = attempt_at(&sale, "alice", "k-1", 1, NOW.plus_millis(-1));
    assert_refused(decide(ledger, &early).await, Refusal::SaleNotActive);
    // The same key once the sale has started gets the first answer.
    let same_key_later = attempt(&sale, "alice", "k-1", 1);
    assert_replays_refusal(
        decide(ledger, &same_key_later).await,
        Refusal::SaleNotActive,
    );
    assert_eq!(remaining(ledger, &sale).await, 10);
    reserve(ledger, &attempt_at(&sale, "alice", "k-2", 1, NOW)).await;
}

pub async fn an_ended_sale_is_not_active(ledger: Arc<dyn StockLedger>) {
    let ledger = &*ledger;
    let sale = opened(ledger, 10, 2).await;
    let end = NOW.plus_secs(3600);
    reserve(
        ledger,
        &attempt_at(&sale, "alice", "k-1", 1, end.plus_millis(-1)),
    )
    .await;
    let late = attempt_at(&sale, "bob", "k-2", 1, end);
    assert_refused(decide(ledger, &late).await, Refusal::SaleNotActive);
    assert_replays_refusal(decide(ledger, &late).await, Refusal::SaleNotActive);
    assert_eq!(remaining(ledger, &sale).await, 9);
}

pub async fn an_abandoned_reservation_gives_its_units_back_and_forgets_the_key(
    ledger: Arc<dyn StockLedger>,
) {
    let ledger = &*ledger;
    let sale = opened(ledger, 10, 2).await;
    let other = opened(ledger, 10, 2).await;
    let first = attempt(&sale, "alice", "k-1", 2);
    reserve(ledger, &first).await;
    assert_eq!(remaining(ledger, &sale).await, 8);
    ledger.settle(&first, Settlement::Abandoned).await.unwrap();
    assert_eq!(remaining(ledger, &sale).await, 10);
    // The key is decided afresh, its holding counts no more against the limit…
    reserve(ledger, &first).await;
    ledger.settle(&first, Settlement::Abandoned).await.unwrap();
    // …and it is free to be used on another sale.
    reserve(ledger, &attempt(&other, "alice", "k-1", 2)).await;
    assert_eq!(remaining(ledger, &sale).await, 10);
    assert_eq!(remaining(ledger, &other).await, 8);
}

pub async fn a_replaced_reservation_gives_its_units_back_and_remembers_the_stores_answer(
    ledger: Arc<dyn StockLedger>,
) {
    let ledger = &*ledger;
    let sale = opened(ledger, 10, 2).await;
    let first = attempt(&sale, "alice", "k-1", 1);
    reserve(ledger, &first).await;
    let existing = OrderId::generate();
    let remembered = Remembered {
        fingerprint: first.fingerprint,
        answer: Answer::Won(existing),
    };
    ledger
        .settle(&first, Settlement::Replaced(remembered))
        .await
        .unwrap();
    assert_eq!(remaining(ledger, &sale).await, 10);
    assert_replays_order(decide(ledger, &first).await, existing);
    assert_mismatch(decide(ledger, &attempt(&sale, "alice", "k-1", 2)).await);
}

pub async fn a_replaced_answer_from_another_sale_binds_the_key_to_that_sale(
    ledger: Arc<dyn StockLedger>,
) {
    let ledger = &*ledger;
    let earlier = opened(ledger, 10, 2).await;
    let sale = opened(ledger, 10, 2).await;
    let here = attempt(&sale, "alice", "k-1", 1);
    reserve(ledger, &here).await;
    // The store had an order for this key on the earlier sale.
    let existing = OrderId::generate();
    let there = attempt(&earlier, "alice", "k-1", 2);
    let remembered = Remembered {
        fingerprint: there.fingerprint,
        answer: Answer::Won(existing),
    };
    ledger
        .settle(&here, Settlement::Replaced(remembered))
        .await
        .unwrap();
    assert_eq!(remaining(ledger, &sale).await, 10);
    assert_mismatch(decide(ledger, &here).await);
    assert_replays_order(decide(ledger, &there).await, existing);
}

pub async fn released_units_come_back_once_and_an_over_release_is_inconsistent(
    ledger: Arc<dyn StockLedger>,
) {
    let ledger = &*ledger;
    let sale = opened(ledger, 5, 3).await;
    let alice = user("alice");
    buy(ledger, &attempt(&sale, "alice", "k-1", 2)).await;
    assert_eq!(remaining(ledger, &sale).await, 3);
    ledger.release(sale.id, &alice, 1).await.unwrap();
    assert_eq!(remaining(ledger, &sale).await, 4);
    ledger.release(sale.id, &alice, 1).await.unwrap();
    assert_eq!(remaining(ledger, &sale).await, 5);
    // Nothing is held any more: releasing again (twice-applied cancel) is a bug.
    assert_inconsistent(ledger.release(sale.id, &alice, 1).await);
    assert_inconsistent(ledger.release(sale.id, &user("bob"), 1).await);
    assert_eq!(remaining(ledger, &sale).await, 5);
    // More than is held changes nothing either.
    buy(ledger, &attempt(&sale, "alice", "k-2", 1)).await;
    assert_inconsistent(ledger.release(sale.id, &alice, 2).await);
    assert_eq!(remaining(ledger, &sale).await, 4);
    // A sale it does not track.
    assert!(ledger.release(new_sale(5, 1).id, &alice, 1).await.is_err());
}

pub async fn remaining_counts_the_units_purchases_can_still_take(ledger: Arc<dyn StockLedger>) {
    let ledger = &*ledger;
    let sale = new_sale(10, 5);
    assert_eq!(ledger.remaining(sale.id).await.unwrap(), None);
    ledger.open_sale(&sale).await.unwrap();
    assert_eq!(remaining(ledger, &sale).await, 10);
    let first = attempt(&sale, "alice", "k-1", 3);
    reserve(ledger, &first).await;
    assert_eq!(remaining(ledger, &sale).await, 7);
    ledger.settle(&first, Settlement::Abandoned).await.unwrap();
    assert_eq!(remaining(ledger, &sale).await, 10);
    buy(ledger, &attempt(&sale, "alice", "k-2", 2)).await;
    assert_eq!(remaining(ledger, &sale).await, 8);
}

pub async fn opening_a_sale_twice_changes_nothing(ledger: Arc<dyn StockLedger>) {
    let ledger = &*ledger;
    let sale = opened(ledger, 10, 5).await;
    buy(ledger, &attempt(&sale, "alice", "k-1", 2)).await;
    ledger.open_sale(&sale).await.unwrap();
    assert_eq!(remaining(ledger, &sale).await, 8);
    assert_refused(
        decide(ledger, &attempt(&sale, "alice", "k-2", 4)).await,
        Refusal::LimitExceeded,
    );
}

/// A sale of 10 (at most 3 per buyer) where alice holds 2 (won with `k-a`) and
/// bob 1, with the key record the store would list.
fn snapshot_with_holdings() -> (SaleSnapshot, KeyRecord) {
    let sale = new_sale(10, 3);
    let record = KeyRecord {
        user_id: user("alice"),
        key: IdempotencyKey::parse("k-a").unwrap(),
        order_id: OrderId::generate(),
        sale_id: sale.id,
        quantity: 2,
    };
    let snapshot = SaleSnapshot {
        sale,
        remaining: 7,
        holdings: vec![(user("alice"), 2), (user("bob"), 1)],
    };
    (snapshot, record)
}

pub async fn restore_rebuilds_sales_and_winning_keys_exactly(ledger: Arc<dyn StockLedger>) {
    let ledger = &*ledger;
    let (snapshot, record) = snapshot_with_holdings();
    let sale = snapshot.sale.clone();
    ledger
        .restore(vec![snapshot], vec![record.clone()], NOW)
        .await
        .unwrap();
    assert_eq!(remaining(ledger, &sale).await, 7);
    // The winning key replays its order; another request with it mismatches.
    assert_replays_order(
        decide(ledger, &attempt(&sale, "alice", "k-a", 2)).await,
        record.order_id,
    );
    assert_mismatch(decide(ledger, &attempt(&sale, "alice", "k-a", 1)).await);
    // Holdings count against the limit and can be released, exactly.
    assert_refused(
        decide(ledger, &attempt(&sale, "alice", "k-b", 2)).await,
        Refusal::LimitExceeded,
    );
    reserve(ledger, &attempt(&sale, "alice", "k-c", 1)).await;
    assert_eq!(remaining(ledger, &sale).await, 6);
    ledger.release(sale.id, &user("bob"), 1).await.unwrap();
    assert_inconsistent(ledger.release(sale.id, &user("bob"), 1).await);
    assert_eq!(remaining(ledger, &sale).await, 7);
}

pub async fn restoring_twice_does_not_count_twice(ledger: Arc<dyn StockLedger>) {
    let (snapshot, record) = snapshot_with_holdings();
    let sale = snapshot.sale.clone();
    ledger
        .restore(vec![snapshot.clone()], vec![record.clone()], NOW)
        .await
        .unwrap();
    ledger
        .restore(vec![snapshot.clone()], vec![record.clone()], NOW)
        .await
        .unwrap();
    assert_eq!(remaining(&*ledger, &sale).await, 7);
    // Two nodes restoring at once.
    let (one, two) = tokio::join!(
        ledger.restore(vec![snapshot.clone()], vec![record.clone()], NOW),
        ledger.restore(vec![snapshot.clone()], vec![record.clone()], NOW),
    );
    one.unwrap();
    two.unwrap();
    assert_eq!(remaining(&*ledger, &sale).await, 7);
    // Bob's one unit is held once: a second release is inconsistent.
    ledger.release(sale.id, &user("bob"), 1).await.unwrap();
    assert_inconsistent(ledger.release(sale.id, &user("bob"), 1).await);
}

pub async fn a_snapshot_whose_numbers_disagree_is_inconsistent(ledger: Arc<dyn StockLedger>) {
    let (mut snapshot, _) = snapshot_with_holdings();
    snapshot.remaining = 9;
    let sale = snapshot.sale.clone();
    assert_inconsistent(ledger.restore(vec![snapshot.clone()], vec![], NOW).await);
    snapshot.remaining = 0;
    snapshot.holdings = vec![(user("alice"), 8), (user("bob"), 3)];
    assert_inconsistent(ledger.restore(vec![snapshot], vec![], NOW).await);
    // Nothing was loaded.
    assert_eq!(ledger.remaining(sale.id).await.unwrap(), None);
}

pub async fn concurrent_decides_never_oversell_or_pass_the_per_user_limit(
    ledger: Arc<dyn StockLedger>,
) {
    const QUANTITY: u64 = 40;
    const LIMIT: u32 = 3;
    let sale = opened(&*ledger, QUANTITY as i64, i64::from(LIMIT)).await;
    let start = Arc::new(Barrier::new(64));
    let mut tasks = Vec::new();
    for task in 0..64u64 {
        let ledger = ledger.clone();
        let sale = sale.clone();
        let start = start.clone();
        tasks.push(tokio::spawn(async move {
            let mut rng = fastrand::Rng::with_seed(task);
            let mut won: Vec<(String, u32)> = Vec::new();
            start.wait().await;
            for i in 0..8 {
                let who = format!("user-{}", rng.u32(0..24));
                let quantity = rng.i64(1..=2);
                let attempt = attempt(&sale, &who, &format!("t{task}-{i}"), quantity);
                match decide(&*ledger, &attempt).await {
                    Decision::Reserved if rng.u8(0..5) == 0 => {
                        ledger
                            .settle(&attempt, Settlement::Abandoned)
                            .await
                            .unwrap();
                    }
                    Decision::Reserved => {
                        let order = OrderId::generate();
                        ledger
                            .settle(&attempt, Settlement::Won(order))
                            .await
                            .unwrap();
                        won.push((who, quantity as u32));
                    }
                    Decision::Refused(_) => {}
                    other => panic!("a fresh key got {other:?}"),
                }
            }
            won
        }));
    }
    let mut held: HashMap<String, u32> = HashMap::new();
    for task in tasks {
        for (who, quantity) in task.await.unwrap() {
            *held.entry(who).or_default() += quantity;
        }
    }
    let sold: u64 = held.values().map(|n| u64::from(*n)).sum();
    assert!(sold <= QUANTITY, "oversold: {sold} of {QUANTITY}");
    for (who, n) in &held {
        assert!(*n <= LIMIT, "{who} holds {n}, above the limit of {LIMIT}");
    }
    assert_eq!(remaining(&*ledger, &sale).await, QUANTITY - sold);
}

pub async fn a_key_raced_from_many_tasks_reserves_once(ledger: Arc<dyn StockLedger>) {
    let sale = opened(&*ledger, 10, 5).await;
    let first = attempt(&sale, "alice", "raced", 1);
    let start = Arc::new(Barrier::new(16));
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let ledger = ledger.clone();
        let first = first.clone();
        let start = start.clone();
        tasks.push(tokio::spawn(async move {
            start.wait().await;
            ledger.decide(&first).await.unwrap()
        }));
    }
    let mut reserved = 0;
    let mut waits = Vec::new();
    for task in tasks {
        match task.await.unwrap() {
            Decision::Reserved => reserved += 1,
            wait @ Decision::Wait(_) => waits.push(wait),
            other => panic!("a raced key got {other:?}"),
        }
    }
    assert_eq!(reserved, 1);
    assert_eq!(remaining(&*ledger, &sale).await, 9);
    let order = OrderId::generate();
    ledger.settle(&first, Settlement::Won(order)).await.unwrap();
    for wait in waits {
        wait_out(wait).await;
        assert_replays_order(decide(&*ledger, &first).await, order);
    }
    assert_eq!(remaining(&*ledger, &sale).await, 9);
}

pub async fn an_unknown_sale_is_unknown_and_binds_no_key(ledger: Arc<dyn StockLedger>) {
    let ledger = &*ledger;
    let unknown = new_sale(10, 2);
    let first = attempt(&unknown, "alice", "k-1", 1);
    let decision = decide(ledger, &first).await;
    assert!(
        matches!(decision, Decision::UnknownSale),
        "got {decision:?}"
    );
    assert_eq!(ledger.remaining(unknown.id).await.unwrap(), None);
    // Nothing was remembered: the key is free on a sale that is open.
    let sale = opened(ledger, 10, 2).await;
    reserve(ledger, &attempt(&sale, "alice", "k-1", 1)).await;
}

pub async fn units_added_to_a_sale_are_for_sale_at_once(ledger: Arc<dyn StockLedger>) {
    let ledger = &*ledger;
    let sale = opened(ledger, 2, 5).await;
    buy(ledger, &attempt(&sale, "alice", "k-a", 2)).await;
    let bob = attempt(&sale, "bob", "k-b", 1);
    assert_refused(decide(ledger, &bob).await, Refusal::SoldOut);
    let sale = amend(ledger, &sale, SaleControl::AddStock(qty(3))).await;
    assert_eq!(remaining(ledger, &sale).await, 3);
    // A refusal given before keeps its answer; a new key gets the new units.
    assert_replays_refusal(decide(ledger, &bob).await, Refusal::SoldOut);
    buy(ledger, &attempt(&sale, "carol", "k-c", 3)).await;
    assert_eq!(remaining(ledger, &sale).await, 0);
    assert_refused(
        decide(ledger, &attempt(&sale, "dave", "k-d", 1)).await,
        Refusal::SoldOut,
    );
    // What was sold before the change is released up to the new quantity.
    ledger.release(sale.id, &user("alice"), 2).await.unwrap();
    assert_eq!(remaining(ledger, &sale).await, 2);
}

pub async fn units_withdrawn_are_never_sold_even_while_reservations_hold_them(
    ledger: Arc<dyn StockLedger>,
) {
    let ledger = &*ledger;
    let sale = opened(ledger, 5, 5).await;
    // Reserved, not committed: the store does not count these, so it lets
    // an admin withdraw four of the five units.
    let alice = attempt(&sale, "alice", "k-a", 3);
    reserve(ledger, &alice).await;
    let sale = amend(ledger, &sale, SaleControl::WithdrawStock(qty(4))).await;
    assert_eq!(sale.quantity, 1);
    // Two fewer than none are left: reported as none, and none are sold.
    assert_eq!(remaining(ledger, &sale).await, 0);
    assert_refused(
        decide(ledger, &attempt(&sale, "bob", "k-b", 1)).await,
        Refusal::SoldOut,
    );
    // The store refuses alice's commit; her units come back up to the new
    // quantity.
    ledger.settle(&alice, Settlement::Abandoned).await.unwrap();
    assert_eq!(remaining(ledger, &sale).await, 1);
    let carol = attempt(&sale, "carol", "k-c", 1);
    buy(ledger, &carol).await;
    assert_eq!(remaining(ledger, &sale).await, 0);
    assert_refused(
        decide(ledger, &attempt(&sale, "dave", "k-d", 1)).await,
        Refusal::SoldOut,
    );
    // A cancelled order gives back its unit, and no more than the quantity.
    ledger.release(sale.id, &user("carol"), 1).await.unwrap();
    assert_eq!(remaining(ledger, &sale).await, 1);
    assert_inconsistent(ledger.release(sale.id, &user("carol"), 1).await);
    // Withdrawn to none: sold out, not paused or ended.
    let sale = amend(ledger, &sale, SaleControl::WithdrawStock(qty(1))).await;
    assert_eq!(remaining(ledger, &sale).await, 0);
    assert_refused(
        decide(ledger, &attempt(&sale, "erin", "k-e", 1)).await,
        Refusal::SoldOut,
    );
}

pub async fn a_new_per_user_limit_applies_to_the_next_purchase(ledger: Arc<dyn StockLedger>) {
    let ledger = &*ledger;
    let sale = opened(ledger, 10, 1).await;
    buy(ledger, &attempt(&sale, "alice", "k-1", 1)).await;
    let more = attempt(&sale, "alice", "k-2", 1);
    assert_refused(decide(ledger, &more).await, Refusal::LimitExceeded);
    let raised = SaleControl::Amend {
        ends_at: None,
        per_user_limit: Some(qty(3)),
    };
    let sale = amend(ledger, &sale, raised).await;
    assert_replays_refusal(decide(ledger, &more).await, Refusal::LimitExceeded);
    buy(ledger, &attempt(&sale, "alice", "k-3", 2)).await;
    assert_refused(
        decide(ledger, &attempt(&sale, "alice", "k-4", 1)).await,
        Refusal::LimitExceeded,
    );
    // Lowered: what buyers hold stays theirs, but counts against the new
    // limit.
    let lowered = SaleControl::Amend {
        ends_at: None,
        per_user_limit: Some(qty(1)),
    };
    let sale = amend(ledger, &sale, lowered).await;
    assert_refused(
        decide(ledger, &attempt(&sale, "bob", "k-b", 2)).await,
        Refusal::LimitExceeded,
    );
    ledger.release(sale.id, &user("alice"), 1).await.unwrap();
    assert_refused(
        decide(ledger, &attempt(&sale, "alice", "k-5", 1)).await,
        Refusal::LimitExceeded,
    );
    reserve(ledger, &attempt(&sale, "bob", "k-b2", 1)).await;
    assert_eq!(remaining(ledger, &sale).await, 7);
}

pub async fn a_new_end_applies_to_the_next_purchase(ledger: Arc<dyn StockLedger>) {
    let ledger = &*ledger;
    let sale = opened(ledger, 10, 5).await;
    let sooner = SaleControl::Amend {
        ends_at: Some(Some(DURING.plus_secs(10))),
        per_user_limit: None,
    };
    let sale = amend(ledger, &sale, sooner).await;
    reserve(ledger, &attempt(&sale, "alice", "k-1", 1)).await;
    let late = attempt_at(&sale, "bob", "k-b", 1, DURING.plus_secs(10));
    assert_refused(decide(ledger, &late).await, Refusal::SaleNotActive);
    // Until sold out.
    let open_ended = SaleControl::Amend {
        ends_at: Some(None),
        per_user_limit: None,
    };
    let sale = amend(ledger, &sale, open_ended).await;
    let much_later = attempt_at(&sale, "carol", "k-c", 1, NOW.plus_secs(7200));
    reserve(ledger, &much_later).await;
    assert_eq!(remaining(ledger, &sale).await, 8);
}

pub async fn a_paused_sale_refuses_without_remembering_the_key(ledger: Arc<dyn StockLedger>) {
    let ledger = &*ledger;
    let sale = opened(ledger, 10, 2).await;
    let other = opened(ledger, 10, 2).await;
    let paused = amend(ledger, &sale, SaleControl::Pause).await;
    let first = attempt(&sale, "alice", "k-1", 1);
    // Refused, and asked again: refused afresh (neither replayed nor in flight).
    for _ in 0..2 {
        assert_refused(decide(ledger, &first).await, Refusal::SalePaused);
    }
    assert_eq!(remaining(ledger, &sale).await, 10);
    // Nothing binds the key: another quantity is no mismatch…
    assert_refused(
        decide(ledger, &attempt(&sale, "alice", "k-1", 2)).await,
        Refusal::SalePaused,
    );
    // …nor is another sale.
    let elsewhere = attempt(&other, "bob", "k-b", 1);
    assert_refused(
        decide(ledger, &attempt(&sale, "bob", "k-b", 1)).await,
        Refusal::SalePaused,
    );
    reserve(ledger, &elsewhere).await;
    // Before its start, a paused sale is not active (and that is remembered).
    let early = attempt_at(&sale, "carol", "k-c", 1, NOW.plus_millis(-1));
    assert_refused(decide(ledger, &early).await, Refusal::SaleNotActive);
    assert_replays_refusal(decide(ledger, &early).await, Refusal::SaleNotActive);
    // Resumed: the same key is decided afresh.
    let resumed = amend(ledger, &paused, SaleControl::Resume).await;
    assert_eq!(resumed.state, SaleState::Running);
    let order = buy(ledger, &first).await;
    assert_replays_order(decide(ledger, &first).await, order);
    assert_eq!(remaining(ledger, &sale).await, 9);
}

pub async fn a_paused_sale_that_is_sold_out_answers_paused(ledger: Arc<dyn StockLedger>) {
    let ledger = &*ledger;
    let sale = opened(ledger, 1, 1).await;
    buy(ledger, &attempt(&sale, "alice", "k-a", 1)).await;
    let sale = amend(ledger, &sale, SaleControl::Pause).await;
    // The state is checked before the stock, as the stock book does.
    let bob = attempt(&sale, "bob", "k-b", 1);
    assert_refused(decide(ledger, &bob).await, Refusal::SalePaused);
    amend(ledger, &sale, SaleControl::Resume).await;
    assert_refused(decide(ledger, &bob).await, Refusal::SoldOut);
    assert_replays_refusal(decide(ledger, &bob).await, Refusal::SoldOut);
}

pub async fn a_sale_ended_by_an_admin_is_not_active_and_the_refusal_is_remembered(
    ledger: Arc<dyn StockLedger>,
) {
    let ledger = &*ledger;
    let sale = opened(ledger, 10, 2).await;
    let paused = amend(ledger, &sale, SaleControl::Pause).await;
    // Ended (paused or not) a little after the attempts below: it is the
    // state that refuses them, not the end.
    let ended = after_at(&paused, SaleControl::End, DURING.plus_secs(60));
    assert_eq!(ended.state, SaleState::Ended);
    ledger.amend_sale(&ended).await.unwrap();
    let first = attempt(&sale, "alice", "k-1", 1);
    assert_refused(decide(ledger, &first).await, Refusal::SaleNotActive);
    assert_replays_refusal(decide(ledger, &first).await, Refusal::SaleNotActive);
    assert_refused(
        decide(ledger, &attempt(&sale, "bob", "k-b", 1)).await,
        Refusal::SaleNotActive,
    );
    assert_eq!(remaining(ledger, &sale).await, 10);
}

pub async fn an_older_or_the_same_version_of_a_sale_changes_nothing(ledger: Arc<dyn StockLedger>) {
    let ledger = &*ledger;
    let v1 = opened(ledger, 10, 2).await;
    let v2 = after(&v1, SaleControl::AddStock(qty(5)));
    let v3 = after(&v2, SaleControl::Pause);
    // Newest first, then the older ones arriving late, then all again.
    ledger.amend_sale(&v3).await.unwrap();
    for sale in [&v2, &v1, &v3, &v2] {
        ledger.amend_sale(sale).await.unwrap();
    }
    assert_eq!(remaining(ledger, &v1).await, 15);
    assert_refused(
        decide(ledger, &attempt(&v1, "alice", "k-1", 1)).await,
        Refusal::SalePaused,
    );
    // Opening the first version again changes nothing either.
    ledger.open_sale(&v1).await.unwrap();
    assert_eq!(remaining(ledger, &v1).await, 15);
    let v4 = after(&v3, SaleControl::Resume);
    ledger.amend_sale(&v4).await.unwrap();
    reserve(ledger, &attempt(&v1, "alice", "k-1", 1)).await;
    assert_eq!(remaining(ledger, &v1).await, 14);
}

pub async fn versions_applied_at_once_in_any_order_count_once(ledger: Arc<dyn StockLedger>) {
    let sale = opened(&*ledger, 10, 2).await;
    // Versions 2 to 9, each adding a unit, applied by many tasks at once.
    let mut versions = Vec::new();
    let mut last = sale.clone();
    for _ in 0..8 {
        last = after(&last, SaleControl::AddStock(qty(1)));
        versions.push(last.clone());
    }
    let start = Arc::new(Barrier::new(versions.len() * 2));
    let mut tasks = Vec::new();
    for version in versions.iter().rev().chain(versions.iter()) {
        let ledger = ledger.clone();
        let version = version.clone();
        let start = start.clone();
        tasks.push(tokio::spawn(async move {
            start.wait().await;
            ledger.amend_sale(&version).await.unwrap();
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(remaining(&*ledger, &sale).await, 18);
    // Version 9 is in force: a tenth unit is a version the ledger has not seen.
    let tenth = after(&last, SaleControl::AddStock(qty(1)));
    ledger.amend_sale(&tenth).await.unwrap();
    assert_eq!(remaining(&*ledger, &sale).await, 19);
}

pub async fn amending_a_sale_the_ledger_does_not_track_changes_nothing(
    ledger: Arc<dyn StockLedger>,
) {
    let ledger = &*ledger;
    let sale = new_sale(10, 2);
    let paused = after(&sale, SaleControl::Pause);
    ledger.amend_sale(&paused).await.unwrap();
    assert_eq!(ledger.remaining(sale.id).await.unwrap(), None);
    let decision = decide(ledger, &attempt(&sale, "alice", "k-1", 1)).await;
    assert!(
        matches!(decision, Decision::UnknownSale),
        "got {decision:?}"
    );
    // Opened afterwards (as the first version), it was never paused.
    ledger.open_sale(&sale).await.unwrap();
    reserve(ledger, &attempt(&sale, "alice", "k-1", 1)).await;
    assert_eq!(remaining(ledger, &sale).await, 9);
}

pub async fn a_restored_sale_keeps_its_state_and_version(ledger: Arc<dyn StockLedger>) {
    let ledger = &*ledger;
    let (mut snapshot, record) = snapshot_with_holdings();
    snapshot.sale.state = SaleState::Paused;
    snapshot.sale.version = 5;
    let v5 = snapshot.sale.clone();
    ledger
        .restore(vec![snapshot], vec![record], NOW)
        .await
        .unwrap();
    let first = attempt(&v5, "carol", "k-c", 1);
    assert_refused(decide(ledger, &first).await, Refusal::SalePaused);
    assert_eq!(remaining(ledger, &v5).await, 7);
    // Another copy of version 5 (running, with more units) is ignored…
    let mut same = v5.clone();
    same.state = SaleState::Running;
    same.quantity = 20;
    ledger.amend_sale(&same).await.unwrap();
    assert_refused(decide(ledger, &first).await, Refusal::SalePaused);
    assert_eq!(remaining(ledger, &v5).await, 7);
    // …version 6 applies.
    let v6 = after(&v5, SaleControl::Resume);
    assert_eq!(v6.version, 6);
    ledger.amend_sale(&v6).await.unwrap();
    reserve(ledger, &first).await;
    assert_eq!(remaining(ledger, &v5).await, 6);
    // Holdings still count against the limit.
    assert_refused(
        decide(ledger, &attempt(&v5, "alice", "k-b", 2)).await,
        Refusal::LimitExceeded,
    );
}
