//! Property test of the in-memory stock ledger: random interleavings of
//! decisions, settlements (committed or abandoned), replays and releases of
//! cancelled orders keep the contract — no oversell (I1), per-user limits (I3),
//! one winning order per key and the first answer on every replay (I4), stock
//! back exactly once (I6) — and the ledger's numbers always match a model.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;

use proptest::prelude::*;
use stampede_app::ledger::KeyMemorySettings;
use stampede_app::ports::{Attempt, Decision, Settlement, StockLedger};
use stampede_domain::catalog::{Product, Sale, SaleRequest};
use stampede_domain::idempotency::{Answer, Fingerprint, IdempotencyKey};
use stampede_domain::ids::{OrderId, UserId};
use stampede_domain::quantity::Quantity;
use stampede_domain::time::Timestamp;
use stampede_inprocess::MemoryLedger;

const NOW: Timestamp = Timestamp::from_millis(1_800_000_000_000);

#[derive(Debug, Clone)]
enum Step {
    Decide { user: u8, key: u8, quantity: u8 },
    Settle { nth: u8, committed: bool },
    Cancel { nth: u8 },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        5 => (0u8..8, 0u8..3, 1u8..3).prop_map(|(user, key, quantity)| Step::Decide { user, key, quantity }),
        3 => (any::<u8>(), prop::bool::weighted(0.8)).prop_map(|(nth, committed)| Step::Settle { nth, committed }),
        1 => any::<u8>().prop_map(|nth| Step::Cancel { nth }),
    ]
}

struct Won {
    user: UserId,
    quantity: u32,
    cancelled: bool,
}

fn run<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(future)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn interleavings_keep_the_contract(
        quantity in 1i64..15,
        limit in 1i64..4,
        steps in prop::collection::vec(step(), 1..150),
    ) {
        run(async move {
            let product = Product::create("SKU", "Thing", 100, "EUR", NOW).unwrap();
            let request = SaleRequest { quantity, per_user_limit: Some(limit), ..SaleRequest::default() };
            let sale = Sale::create(&product, &request, NOW).unwrap();
            let ledger = MemoryLedger::new(KeyMemorySettings::default(), NOW);
            ledger.open_sale(&sale).await.unwrap();

            let mut reserved: Vec<Attempt> = Vec::new();
            let mut won: Vec<Won> = Vec::new();
            // The first answer each (user, key) got: the order it won, if any.
            let mut winners: HashMap<(u8, u8), (OrderId, Fingerprint)> = HashMap::new();
            let users: Vec<UserId> = (0..8).map(|u| UserId::parse(format!("u{u}")).unwrap()).collect();

            for step in steps {
                match step {
                    Step::Decide { user, key, quantity } => {
                        let fingerprint = Fingerprint {
                            sale_id: sale.id,
                            quantity: Quantity::parse("quantity", i64::from(quantity)).unwrap(),
                        };
                        let attempt = Attempt {
                            user: users[usize::from(user)].clone(),
                            key: IdempotencyKey::parse(&format!("k{key}")).unwrap(),
                            fingerprint,
                            now: NOW,
                        };
                        let in_flight = reserved.iter().any(|a| a.user == attempt.user && a.key == attempt.key);
                        match ledger.decide(&attempt).await.unwrap() {
                            Decision::Reserved => {
                                prop_assert!(!in_flight, "a key in flight was reserved twice");
                                prop_assert!(!winners.contains_key(&(user, key)), "a winning key reserved again");
                                reserved.push(attempt);
                            }
                            Decision::Wait(_) => prop_assert!(in_flight),
                            Decision::Replay(Answer::Won(order)) => {
                                let (first, first_fp) = winners[&(user, key)];
                                prop_assert_eq!(order, first);
                                prop_assert_eq!(first_fp, fingerprint);
                            }
                            Decision::Mismatch => {
                                let same_as_winner = winners.get(&(user, key)).is_some_and(|(_, fp)| *fp == fingerprint);
                                let same_as_pending = reserved
                                    .iter()
                                    .any(|a| a.user == attempt.user && a.key == attempt.key && a.fingerprint == fingerprint);
                                prop_assert!(!same_as_winner && !same_as_pending, "a repeat of the same request was called a mismatch");
                            }
                            Decision::Refused(_) | Decision::Replay(Answer::Refused(_)) => {
                                prop_assert!(!winners.contains_key(&(user, key)), "a winning key was refused");
                            }
                            Decision::UnknownSale => prop_assert!(false, "the sale is open"),
                        }
                    }
                    Step::Settle { nth, committed } => {
                        if reserved.is_empty() {
                            continue;
                        }
                        let attempt = reserved.remove(usize::from(nth) % reserved.len());
                        if committed {
                            let order = OrderId::generate();
                            ledger.settle(&attempt, Settlement::Won(order)).await.unwrap();
                            let user = attempt.user.as_str()[1..].parse::<u8>().unwrap();
                            let key = attempt.key.as_str()[1..].parse::<u8>().unwrap();
                            winners.insert((user, key), (order, attempt.fingerprint));
                            won.push(Won { user: attempt.user, quantity: attempt.fingerprint.quantity.get(), cancelled: false });
                        } else {
                            ledger.settle(&attempt, Settlement::Abandoned).await.unwrap();
                        }
                    }
                    Step::Cancel { nth } => {
                        if won.is_empty() {
                            continue;
                        }
                        let count = won.len();
                        let order = &mut won[usize::from(nth) % count];
                        // The store's compare-and-set lets only the first cancel release.
                        if !order.cancelled {
                            order.cancelled = true;
                            ledger.release(sale.id, &order.user, order.quantity).await.unwrap();
                        }
                    }
                }

                // The model: what each user holds is what they reserved plus
                // what they won and did not cancel.
                let mut expected: HashMap<&UserId, u32> = HashMap::new();
                for a in &reserved {
                    *expected.entry(&a.user).or_default() += a.fingerprint.quantity.get();
                }
                for w in won.iter().filter(|w| !w.cancelled) {
                    *expected.entry(&w.user).or_default() += w.quantity;
                }
                let mut held_total = 0u64;
                for user in &users {
                    let held = ledger.held_by(sale.id, user);
                    prop_assert_eq!(held, expected.get(user).copied().unwrap_or(0));
                    prop_assert!(i64::from(held) <= limit, "{} holds {} > {}", user, held, limit);
                    held_total += u64::from(held);
                }
                let remaining = ledger.remaining(sale.id).await.unwrap().unwrap();
                prop_assert_eq!(remaining + held_total, quantity as u64, "stock leaked or oversold");
            }
            Ok(())
        })?;
    }
}
