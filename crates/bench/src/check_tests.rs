//! Hand-made histories: a consistent one passes, and breaking each promise in
//! it is caught.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;

const SALE: &str = "sale-1";

fn purchase(user: &str, key: &str, at: u64, status: Option<u16>, outcome: &str) -> Record {
    Record {
        op: Op::Purchase,
        user: user.into(),
        sale: SALE.into(),
        key: Some(key.into()),
        quantity: Some(1),
        invoke_us: at,
        complete_us: status.map(|_| at + 5),
        status,
        outcome: outcome.into(),
        order: None,
        order_status: None,
        node: None,
    }
}

fn won(user: &str, key: &str, at: u64, order: &str) -> Record {
    Record {
        order: Some(order.into()),
        ..purchase(user, key, at, Some(202), "won")
    }
}

fn follow(op: Op, user: &str, order: &str, at: u64, status: u16, outcome: &str) -> Record {
    Record {
        op,
        key: None,
        quantity: None,
        order: Some(order.into()),
        order_status: (outcome == "ok").then(|| {
            if op == Op::Cancel {
                "cancelled"
            } else {
                "awaiting_payment"
            }
            .to_owned()
        }),
        ..purchase(user, "", at, Some(status), outcome)
    }
}

fn crash(at: u64) -> Record {
    Record {
        op: Op::Crash,
        user: String::new(),
        sale: String::new(),
        key: None,
        quantity: None,
        invoke_us: at,
        complete_us: None,
        status: None,
        outcome: "crash".into(),
        order: None,
        order_status: None,
        node: Some("node-0".into()),
    }
}

fn order(id: &str, user: &str, status: &str) -> OrderBody {
    OrderBody {
        id: id.into(),
        user_id: user.into(),
        sale_id: SALE.into(),
        quantity: 1,
        status: status.into(),
    }
}

/// A sale of 3, one each: a wins and replays, b wins and cancels, c's answer
/// is lost (its order exists), d is refused, e wins and pays (a later
/// cancel is refused); a node crashed at 45.
fn consistent() -> (Vec<Record>, FinalState) {
    let history = vec![
        won("a", "ka", 10, "o1"),
        Record {
            outcome: "replayed".into(),
            ..won("a", "ka", 30, "o1")
        },
        won("b", "kb", 10, "o2"),
        follow(Op::Cancel, "b", "o2", 20, 200, "ok"),
        purchase("c", "kc", 40, None, "indeterminate"),
        crash(45),
        purchase("d", "kd", 10, Some(409), "sold-out"),
        won("e", "ke", 50, "o4"),
        follow(Op::Pay, "e", "o4", 60, 202, "ok"),
        follow(Op::Cancel, "e", "o4", 90, 409, "invalid-state"),
    ];
    let orders = HashMap::from([
        ("a".to_owned(), vec![order("o1", "a", "awaiting_payment")]),
        ("b".to_owned(), vec![order("o2", "b", "cancelled")]),
        ("c".to_owned(), vec![order("o3", "c", "awaiting_payment")]),
        ("d".to_owned(), vec![]),
        ("e".to_owned(), vec![order("o4", "e", "paid")]),
    ]);
    let sale = SaleState {
        quantity: 3,
        per_user_limit: 1,
        remaining: 0,
        sold: 3,
    };
    (history, FinalState { sale, orders })
}

/// Checks and returns the violations, all in one string.
fn violations(history: &[Record], state: &FinalState) -> String {
    let report = check(history, SALE, state);
    assert_eq!(report.ok, report.violations.is_empty());
    report.violations.join("\n")
}

fn assert_caught(history: &[Record], state: &FinalState, what: &str) {
    let found = violations(history, state);
    assert!(found.contains(what), "expected `{what}`, found:\n{found}");
}

#[test]
fn a_consistent_history_passes() {
    let (history, state) = consistent();
    let report = check(&history, SALE, &state);
    assert!(report.ok, "{:#?}", report.violations);
    assert_eq!(report.requests, 9);
    assert_eq!(report.indeterminate, 1);
    assert_eq!(report.acknowledged_orders, 3);
    assert_eq!(report.crashes, 1);
}

#[test]
fn an_acknowledged_order_missing_after_a_crash_is_lost() {
    let (history, mut state) = consistent();
    state.orders.insert("e".into(), vec![]);
    state.sale.sold = 2;
    state.sale.remaining = 1;
    assert_caught(&history, &state, "lost order (I5): order o4");
    let (history, mut state) = consistent();
    state.orders.insert("a".into(), vec![]);
    assert_caught(&history, &state, "(acknowledged before a crash)");
}

#[test]
fn an_order_read_back_for_another_quantity_is_caught() {
    let (history, mut state) = consistent();
    state.orders.get_mut("a").unwrap()[0].quantity = 2;
    assert_caught(&history, &state, "order o1 was answered to a");
}

#[test]
fn one_key_answered_two_orders_is_caught() {
    let (mut history, state) = consistent();
    history[1].order = Some("o9".into());
    assert_caught(&history, &state, "two orders for one key (I4): a key ka");
}

#[test]
fn one_key_answered_two_ways_is_caught_unless_a_crash_lies_between() {
    let (mut history, state) = consistent();
    history.push(purchase("d", "kd", 20, Some(409), "limit-exceeded"));
    assert_caught(&history, &state, "a key got two answers (I4): d key kd");
    // Across the crash, a refusal is decided afresh: allowed.
    let (mut history, state) = consistent();
    history.push(purchase("d", "kd", 50, Some(409), "limit-exceeded"));
    assert!(violations(&history, &state).is_empty());
    // A refusal then a win with no crash between: caught.
    let (mut history, state) = consistent();
    history.push(Record {
        outcome: "replayed".into(),
        ..won("a", "ka", 40, "o1")
    });
    history.push(purchase("a", "ka", 20, Some(409), "sold-out"));
    assert_caught(&history, &state, "a key got two answers (I4): a key ka");
}

#[test]
fn a_mismatch_for_a_key_always_sent_alike_is_caught() {
    let (mut history, state) = consistent();
    history.push(purchase("d", "kd", 60, Some(422), "idempotency-mismatch"));
    assert_caught(
        &history,
        &state,
        "d key kd was answered idempotency-mismatch",
    );
}

#[test]
fn an_order_no_request_can_explain_is_caught() {
    // c's order is explained only by the request that got no answer.
    let (mut history, state) = consistent();
    history.retain(|r| r.user != "c");
    assert_caught(&history, &state, "unexplained orders (I4): c holds 1");
    // A second order for a key answered once (a duplicate) is caught too.
    let (history, mut state) = consistent();
    state
        .orders
        .get_mut("b")
        .unwrap()
        .push(order("o7", "b", "cancelled"));
    assert_caught(&history, &state, "unexplained orders (I4): b holds 1");
}

#[test]
fn a_customer_over_the_limit_is_caught() {
    let (history, mut state) = consistent();
    state.sale.per_user_limit = 0;
    assert_caught(
        &history,
        &state,
        "per-user limit broken (I3): a holds 1 units",
    );
}

#[test]
fn stock_that_is_not_conserved_is_caught() {
    let (history, mut state) = consistent();
    state.sale.sold = 4;
    state.sale.remaining = 0;
    let found = violations(&history, &state);
    assert!(found.contains("oversold (I1)"), "{found}");
    assert!(found.contains("stock not conserved (I2)"), "{found}");
    assert!(found.contains("stock not conserved (I6)"), "{found}");
    // Units of a cancelled order counted as sold (returned twice, or never).
    let (history, mut state) = consistent();
    state.sale.sold = 2;
    state.sale.remaining = 1;
    assert_caught(&history, &state, "the live orders hold 3 units");
}

#[test]
fn an_order_both_cancelled_and_paid_is_caught() {
    // Acknowledged cancel, yet the order ends paid.
    let (history, mut state) = consistent();
    state.orders.get_mut("b").unwrap()[0].status = "paid".into();
    state.sale.sold = 4;
    state.sale.remaining = 0;
    state.sale.quantity = 4;
    assert_caught(&history, &state, "pay and cancel both took (I7): order o2");
    // A pay accepted after the cancel was.
    let (mut history, state) = consistent();
    history.push(follow(Op::Pay, "b", "o2", 40, 202, "ok"));
    assert_caught(&history, &state, "then a pay was accepted");
    // A cancel refused as if paid, on an order that is not.
    let (history, mut state) = consistent();
    state.orders.get_mut("e").unwrap()[0].status = "awaiting_payment".into();
    assert_caught(
        &history,
        &state,
        "order o4: a cancel was refused invalid-state",
    );
    // A 200 to a cancel that does not show the order cancelled.
    let (mut history, state) = consistent();
    history[3].order_status = Some("awaiting_payment".into());
    assert_caught(&history, &state, "order o2: a cancel answered");
}

#[test]
fn a_history_of_several_sales_is_refused() {
    let (mut history, state) = consistent();
    assert_eq!(sale_of(&history).unwrap(), SALE);
    history[0].sale = "other".into();
    assert!(sale_of(&history).is_err());
    assert_caught(&history, &state, "the history mixes sales");
}
