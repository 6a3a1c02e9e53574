//! Property tests: random interleavings of purchases, replays and cancels, driven
//! through the domain's own rules (stock book, remembered answers, cancel
//! decisions), with an admin adding and withdrawing units and pausing the
//! sale in between, never oversell, never pass a per-user limit, never create
//! two orders for one idempotency key, and return stock exactly once.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;

use proptest::prelude::*;
use stampede_domain::catalog::SaleState;
use stampede_domain::idempotency::{Answer, Fingerprint, Remembered};
use stampede_domain::ids::{OrderId, SaleId, UserId};
use stampede_domain::order::{CancelDecision, OrderStatus};
use stampede_domain::quantity::Quantity;
use stampede_domain::stock::{Refusal, SaleTerms, StockBook};
use stampede_domain::time::Timestamp;

const NOW: Timestamp = Timestamp::from_millis(1_800_000_000_000);

#[derive(Debug, Clone)]
enum Step {
    /// `user` sends key number `key` asking for `quantity` units.
    Purchase { user: u8, key: u8, quantity: u8 },
    /// The owner cancels the `nth` order created so far (modulo their count).
    Cancel { nth: u8 },
    /// An admin adds `units`, or withdraws up to `units` of those unsold.
    Restock { add: bool, units: u8 },
    /// An admin pauses a running sale or resumes a paused one.
    TogglePause,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0u8..12, 0u8..3, 1u8..4).prop_map(|(user, key, quantity)| Step::Purchase { user, key, quantity }),
        1 => any::<u8>().prop_map(|nth| Step::Cancel { nth }),
        1 => (any::<bool>(), 1u8..6).prop_map(|(add, units)| Step::Restock { add, units }),
        1 => Just(Step::TogglePause),
    ]
}

struct Order {
    id: OrderId,
    user: UserId,
    quantity: u32,
    status: OrderStatus,
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn interleavings_keep_the_contract(
        quantity in 1u32..20,
        limit in 1u32..5,
        steps in prop::collection::vec(step(), 1..120),
    ) {
        let sale = SaleId::generate();
        let mut terms = SaleTerms {
            quantity,
            per_user_limit: limit,
            starts_at: NOW,
            ends_at: None,
            state: SaleState::Running,
            version: 1,
        };
        let mut book = StockBook::new(terms);
        let mut remembered: HashMap<(UserId, u8), Remembered> = HashMap::new();
        let mut orders: Vec<Order> = Vec::new();
        let mut released_per_order: HashMap<OrderId, u32> = HashMap::new();

        for step in steps {
            match step {
                Step::Purchase { user, key, quantity: asked } => {
                    let user = UserId::parse(format!("user-{user}")).unwrap();
                    let fingerprint = Fingerprint {
                        sale_id: sale,
                        quantity: Quantity::parse("quantity", i64::from(asked)).unwrap(),
                    };
                    if let Some(first) = remembered.get(&(user.clone(), key)) {
                        // A replay: answered from memory, the book is not touched.
                        let before = book.remaining();
                        let _ = first.replay(&fingerprint);
                        prop_assert_eq!(book.remaining(), before);
                        continue;
                    }
                    let answer = match book.reserve(&user, fingerprint.quantity, NOW) {
                        Ok(()) => {
                            let id = OrderId::generate();
                            orders.push(Order { id, user: user.clone(), quantity: u32::from(asked), status: OrderStatus::AwaitingPayment });
                            Answer::Won(id)
                        }
                        Err(refusal) => {
                            // Paused exactly when the admin paused it.
                            prop_assert_eq!(refusal == Refusal::SalePaused, terms.state == SaleState::Paused);
                            Answer::Refused(refusal)
                        }
                    };
                    // A pause is not remembered: the key is decided afresh.
                    if !matches!(answer, Answer::Refused(refusal) if !refusal.is_remembered()) {
                        remembered.insert((user, key), Remembered { fingerprint, answer });
                    }
                }
                Step::Restock { add, units } => {
                    // Withdrawals take unsold units only (the store's rule).
                    let units = u32::from(units);
                    terms.quantity = if add {
                        terms.quantity + units
                    } else {
                        terms.quantity - units.min(book.remaining() as u32)
                    };
                    terms.version += 1;
                    prop_assert!(book.amend(terms));
                    // Delivered twice: the second copy changes nothing.
                    prop_assert!(!book.amend(terms));
                }
                Step::TogglePause => {
                    terms.state = match terms.state {
                        SaleState::Paused => SaleState::Running,
                        _ => SaleState::Paused,
                    };
                    terms.version += 1;
                    prop_assert!(book.amend(terms));
                }
                Step::Cancel { nth } => {
                    if orders.is_empty() {
                        continue;
                    }
                    let count = orders.len();
                    let order = &mut orders[usize::from(nth) % count];
                    match CancelDecision::for_status(order.status) {
                        CancelDecision::Cancel => {
                            book.release(&order.user, order.quantity).unwrap();
                            order.status = OrderStatus::Cancelled;
                            *released_per_order.entry(order.id).or_default() += 1;
                        }
                        CancelDecision::AlreadyCancelled | CancelDecision::Refuse => {}
                    }
                }
            }

            // I1: no oversell, and the book agrees with the orders.
            let quantity = terms.quantity;
            let live: u64 = orders.iter().filter(|o| o.status.holds_stock()).map(|o| u64::from(o.quantity)).sum();
            prop_assert!(live <= u64::from(quantity));
            prop_assert_eq!(book.remaining() + live, u64::from(quantity));
            prop_assert_eq!(book.total_held(), live);
            // I3: nobody above the limit.
            let mut per_user: HashMap<&UserId, u32> = HashMap::new();
            for o in orders.iter().filter(|o| o.status.holds_stock()) {
                *per_user.entry(&o.user).or_default() += o.quantity;
            }
            prop_assert!(per_user.values().all(|held| *held <= limit));
            // I6: stock came back at most once per order.
            prop_assert!(released_per_order.values().all(|n| *n == 1));
        }

        // I4: one order per (user, key) — every order is the remembered answer of its key.
        let won: Vec<OrderId> = remembered.values().filter_map(|r| match r.answer {
            Answer::Won(id) => Some(id),
            Answer::Refused(_) => None,
        }).collect();
        prop_assert_eq!(won.len(), orders.len());
    }
}
