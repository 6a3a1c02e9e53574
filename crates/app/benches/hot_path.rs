//! Micro-benchmarks of the purchase path's in-memory steps (`cargo bench -p
//! stampede-app`): the stock ledger deciding a winner and a sold-out loser,
//! and HS256 token verification. Figures and method: docs/benchmarks.md.

// Bench code: a failed unwrap is a broken benchmark.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use divan::Bencher;
use stampede_app::auth::JwtKey;
use stampede_app::ledger::KeyMemorySettings;
use stampede_app::ports::ledger::{Attempt, Decision, Settlement, StockLedger};
use stampede_domain::account::Role;
use stampede_domain::catalog::{Product, Sale, SaleRequest};
use stampede_domain::idempotency::{Fingerprint, IdempotencyKey};
use stampede_domain::ids::{OrderId, UserId};
use stampede_domain::quantity::Quantity;
use stampede_domain::time::Timestamp;
use stampede_inprocess::MemoryLedger;

fn main() {
    divan::main();
}

/// The memory ledger finishes every call in one poll (its module says so), so
/// it is polled once with a no-op waker: no runtime in the measurement.
fn now_or_never<F: Future>(future: F) -> F::Output {
    match pin!(future).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("the memory ledger never waits"),
    }
}

/// A ledger with one open sale; the answer memory is bounded so that millions
/// of iterations rotate it instead of growing it.
fn ledger_with_sale(quantity: i64, per_user_limit: i64) -> (MemoryLedger, Sale, Timestamp) {
    let now = Timestamp::now();
    let ledger = MemoryLedger::new(
        KeyMemorySettings {
            capacity: 100_000,
            ..KeyMemorySettings::default()
        },
        now,
    );
    let product = Product::create("BENCH", "Phone", 100, "EUR", now).unwrap();
    let request = SaleRequest {
        quantity,
        per_user_limit: Some(per_user_limit),
        ..SaleRequest::default()
    };
    let sale = Sale::create(&product, &request, now).unwrap();
    now_or_never(ledger.open_sale(&sale)).unwrap();
    (ledger, sale, now)
}

fn attempt(sale: &Sale, user: UserId, n: u64, now: Timestamp) -> Attempt {
    Attempt {
        user,
        key: IdempotencyKey::parse(&format!("key-{n}")).unwrap(),
        fingerprint: Fingerprint {
            sale_id: sale.id,
            quantity: Quantity::parse("quantity", 1).unwrap(),
        },
        now,
    }
}

/// A winner: `decide` reserves a unit, then `settle` records the won key (as
/// the purchase path does once the order is committed). Both are measured:
/// a reservation left unsettled would pile up in the in-flight table.
#[divan::bench]
fn ledger_winner_decide_and_settle(bencher: Bencher) {
    let (ledger, sale, now) = ledger_with_sale(1_000_000_000, 1_000_000_000);
    let users: Vec<UserId> = (0..10_000)
        .map(|i| UserId::parse(format!("user-{i}")).unwrap())
        .collect();
    let mut n = 0u64;
    bencher
        .with_inputs(|| {
            n += 1;
            let user = users[(n % users.len() as u64) as usize].clone();
            (attempt(&sale, user, n, now), OrderId::generate())
        })
        .bench_local_refs(|(attempt, order)| {
            let decision = now_or_never(ledger.decide(attempt)).unwrap();
            assert!(matches!(decision, Decision::Reserved), "{decision:?}");
            now_or_never(ledger.settle(attempt, Settlement::Won(*order))).unwrap();
        });
}

/// A loser on a sold-out sale with a fresh key: refused from the atomic
/// copy of `remaining`, and the refusal remembered under the key.
#[divan::bench]
fn ledger_sold_out_loser(bencher: Bencher) {
    let (ledger, sale, now) = ledger_with_sale(1, 1);
    let first = attempt(&sale, UserId::parse("first").unwrap(), 0, now);
    assert!(matches!(
        now_or_never(ledger.decide(&first)).unwrap(),
        Decision::Reserved
    ));
    let users: Vec<UserId> = (0..10_000)
        .map(|i| UserId::parse(format!("user-{i}")).unwrap())
        .collect();
    let mut n = 0u64;
    bencher
        .with_inputs(|| {
            n += 1;
            let user = users[(n % users.len() as u64) as usize].clone();
            attempt(&sale, user, n, now)
        })
        .bench_local_refs(|attempt| {
            let decision = now_or_never(ledger.decide(attempt)).unwrap();
            assert!(matches!(decision, Decision::Refused(_)), "{decision:?}");
        });
}

/// `JwtKey::verify` on a customer token, as every purchase does.
#[divan::bench]
fn jwt_verify(bencher: Bencher) {
    let key = JwtKey::new(b"a-secret-of-the-usual-length-for-hs256-tokens");
    let now = Timestamp::now();
    let exp = now.as_millis() / 1000 + 3600;
    let token = key.sign(
        &UserId::parse("bench-0123abcd-4242").unwrap(),
        Role::Customer,
        exp,
    );
    bencher.bench_local(|| key.verify(divan::black_box(&token), now).unwrap());
}
