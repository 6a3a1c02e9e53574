//! The history check (`stampede check-history FILE…`, and every drill round):
//! a recorded history ([`crate::history`]) held against the final state read
//! from the API — every customer's orders and the sale's stats. The promises
//! (docs/design.md §1), as the history can see them:
//!
//! - **I5** every 202 is an order that exists, for its customer, sale and
//!   quantity — also when a node was killed after the answer;
//! - **I4** one order per idempotency key: every 202 to a key names the same
//!   order; a key's definite answers agree unless a crash lies between them
//!   (a refusal is then decided afresh, api.md §4); no mismatch for a key only
//!   ever sent one way; and every order is explained — a customer holds no
//!   more orders than were acknowledged plus the keys left without an answer;
//! - **I3** nobody holds more live units than the per-user limit;
//! - **I1, I2, I6** stock is conserved: `sold <= quantity`,
//!   `remaining = quantity - sold`, and `sold` is the units of the live
//!   (not cancelled) orders, counted once each;
//! - **I7** pay and cancel exclude each other: an acknowledged cancel leaves
//!   the order cancelled for good (no later pay accepted, never paid), and a
//!   cancel refused `invalid-state` means the order was paid.
//!
//! The history must hold every buyer of the sale (a sale the bench made).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::PathBuf;

use anyhow::{Context, bail};
use serde::Serialize;

use crate::audit::{self, OrderBody, SaleState};
use crate::client::Target;
use crate::history::{Op, Record};
use crate::users::Minter;

/// What the server holds once the dust has settled.
#[derive(Debug, Clone)]
pub struct FinalState {
    pub sale: SaleState,
    /// Every order of each customer in the history (any sale).
    pub orders: HashMap<String, Vec<OrderBody>>,
}

/// What the check found.
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    pub ok: bool,
    pub violations: Vec<String>,
    pub sale_id: String,
    pub requests: usize,
    pub indeterminate: usize,
    pub acknowledged_orders: usize,
    pub crashes: usize,
    pub quantity: u64,
    pub sold: u64,
    pub remaining: u64,
}

impl CheckReport {
    pub fn summary(&self) -> String {
        format!(
            "sale {}: {} requests ({} indeterminate), {} acknowledged orders, {} crashes; \
             sold {} of {}, remaining {}",
            self.sale_id,
            self.requests,
            self.indeterminate,
            self.acknowledged_orders,
            self.crashes,
            self.sold,
            self.quantity,
            self.remaining
        )
    }
}

/// A purchase answer, as far as idempotency is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Answer<'a> {
    Order(&'a str),
    Refused(&'a str),
}

/// Refusals the server remembers under the key (api.md §4).
fn remembered(outcome: &str) -> bool {
    matches!(outcome, "sold-out" | "limit-exceeded" | "sale-not-active")
}

/// Answers after which the purchase may still have been committed.
fn maybe_committed(record: &Record) -> bool {
    record.is_indeterminate()
        || record.status.is_some_and(|s| s >= 500)
        || record.outcome == "error"
}

/// Checks `records` (one sale's, any order) against `state`.
pub fn check(records: &[Record], sale_id: &str, state: &FinalState) -> CheckReport {
    let mut violations = Vec::new();
    let crashes: Vec<u64> = records
        .iter()
        .filter(|r| r.op == Op::Crash)
        .map(|r| r.invoke_us)
        .collect();
    let crash_between = |from: u64, to: u64| crashes.iter().any(|t| (from..=to).contains(t));
    let requests: Vec<&Record> = records.iter().filter(|r| r.op != Op::Crash).collect();
    for r in &requests {
        if r.sale != sale_id {
            violations.push(format!(
                "the history mixes sales: {} besides {sale_id}",
                r.sale
            ));
            break;
        }
    }

    // The final orders of the sale, by id.
    let mut final_orders: HashMap<&str, &OrderBody> = HashMap::new();
    for (user, orders) in &state.orders {
        for order in orders.iter().filter(|o| o.sale_id == sale_id) {
            if order.user_id != *user {
                violations.push(format!(
                    "{user}'s order list holds order {} of {}",
                    order.id, order.user_id
                ));
            }
            if final_orders.insert(&order.id, order).is_some() {
                violations.push(format!("order {} is listed twice", order.id));
            }
        }
    }

    // I5: every 202 is an order that exists, as it was answered.
    let mut acknowledged: HashMap<&str, &Record> = HashMap::new();
    for r in requests
        .iter()
        .filter(|r| r.op == Op::Purchase && r.status == Some(202))
    {
        let Some(id) = r.order.as_deref() else {
            violations.push(format!(
                "a 202 to {} key {:?} names no order",
                r.user, r.key
            ));
            continue;
        };
        acknowledged.entry(id).or_insert(r);
    }
    for (id, r) in &acknowledged {
        let after_crash = r
            .complete_us
            .is_some_and(|done| crashes.iter().any(|t| *t >= done));
        let when = if after_crash {
            " (acknowledged before a crash)"
        } else {
            ""
        };
        match final_orders.get(id) {
            None => violations.push(format!(
                "lost order (I5): order {id} answered 202 to {} (key {}){when} is not among \
                 their orders",
                r.user,
                r.key.as_deref().unwrap_or("?")
            )),
            Some(order) => {
                if order.user_id != r.user || r.quantity.map(u64::from) != Some(order.quantity) {
                    violations.push(format!(
                        "order {id} was answered to {} for {:?} units but reads as {} units of {}",
                        r.user, r.quantity, order.quantity, order.user_id
                    ));
                }
            }
        }
    }

    // I4: one order, one answer, per key.
    let mut by_key: BTreeMap<(&str, &str), Vec<&Record>> = BTreeMap::new();
    for r in requests.iter().filter(|r| r.op == Op::Purchase) {
        if let Some(key) = r.key.as_deref() {
            by_key.entry((&r.user, key)).or_default().push(r);
        }
    }
    let mut maybe_keys: HashMap<&str, usize> = HashMap::new();
    for ((user, key), sent) in &mut by_key {
        sent.sort_by_key(|r| r.invoke_us);
        let orders: BTreeSet<&str> = sent
            .iter()
            .filter(|r| r.status == Some(202))
            .filter_map(|r| r.order.as_deref())
            .collect();
        if orders.len() > 1 {
            violations.push(format!(
                "two orders for one key (I4): {user} key {key} was answered orders {orders:?}"
            ));
        }
        if orders.is_empty() && sent.iter().any(|r| maybe_committed(r)) {
            *maybe_keys.entry(user).or_default() += 1;
        }
        let quantities: BTreeSet<Option<u32>> = sent.iter().map(|r| r.quantity).collect();
        if quantities.len() == 1 && sent.iter().any(|r| r.outcome == "idempotency-mismatch") {
            violations.push(format!(
                "{user} key {key} was answered idempotency-mismatch, though always sent with \
                 the same sale and quantity"
            ));
        }
        let definite: Vec<(&Record, Answer)> = sent
            .iter()
            .filter_map(|r| match (r.status, r.order.as_deref()) {
                (Some(202), Some(id)) => Some((*r, Answer::Order(id))),
                _ if remembered(&r.outcome) => Some((*r, Answer::Refused(&r.outcome))),
                _ => None,
            })
            .collect();
        for pair in definite.windows(2) {
            let ((first, a), (then, b)) = (&pair[0], &pair[1]);
            if a != b && !crash_between(first.invoke_us, then.complete_us.unwrap_or(u64::MAX)) {
                violations.push(format!(
                    "a key got two answers (I4): {user} key {key} was answered {a:?}, then {b:?} \
                     with no crash between"
                ));
            }
        }
    }
    // Every order is explained by a 202 or a key left without an answer.
    let mut users: BTreeSet<&str> = state.orders.keys().map(String::as_str).collect();
    users.extend(requests.iter().map(|r| r.user.as_str()));
    let mut live_units = 0u64;
    for user in users {
        let orders: Vec<&OrderBody> = state
            .orders
            .get(user)
            .into_iter()
            .flatten()
            .filter(|o| o.sale_id == sale_id)
            .collect();
        let unexplained = orders
            .iter()
            .filter(|o| !acknowledged.contains_key(o.id.as_str()))
            .count();
        let allowed = maybe_keys.get(user).copied().unwrap_or(0);
        if unexplained > allowed {
            violations.push(format!(
                "unexplained orders (I4): {user} holds {unexplained} orders no 202 named, but \
                 only {allowed} of their keys went unanswered"
            ));
        }
        let units: u64 = orders
            .iter()
            .filter(|o| o.status != "cancelled")
            .map(|o| o.quantity)
            .sum();
        if units > state.sale.per_user_limit {
            violations.push(format!(
                "per-user limit broken (I3): {user} holds {units} units, the limit is {}",
                state.sale.per_user_limit
            ));
        }
        live_units += units;
    }

    // I1, I2, I6: stock conserved.
    let sale = &state.sale;
    if sale.sold > sale.quantity {
        violations.push(format!(
            "oversold (I1): {} sold of {}",
            sale.sold, sale.quantity
        ));
    }
    if i128::from(sale.remaining) != i128::from(sale.quantity) - i128::from(sale.sold) {
        violations.push(format!(
            "stock not conserved (I2): remaining {} but quantity {} - sold {}",
            sale.remaining, sale.quantity, sale.sold
        ));
    }
    if live_units != sale.sold {
        violations.push(format!(
            "stock not conserved (I6): the live orders hold {live_units} units but the sale \
             counts {} sold",
            sale.sold
        ));
    }

    // I7: pay and cancel exclude each other.
    let mut per_order: HashMap<&str, Vec<&Record>> = HashMap::new();
    for r in requests
        .iter()
        .filter(|r| matches!(r.op, Op::Pay | Op::Cancel))
    {
        if let Some(id) = r.order.as_deref() {
            per_order.entry(id).or_default().push(r);
        }
    }
    for (id, ops) in &per_order {
        let status = final_orders.get(id).map(|o| o.status.as_str());
        let cancelled_at = ops
            .iter()
            .filter(|r| r.op == Op::Cancel && r.outcome == "ok")
            .filter_map(|r| r.complete_us)
            .min();
        if let Some(at) = cancelled_at {
            if status != Some("cancelled") {
                violations.push(format!(
                    "pay and cancel both took (I7): order {id} was cancelled (200) but ends {status:?}"
                ));
            }
            for pay in ops.iter().filter(|r| r.op == Op::Pay && r.outcome == "ok") {
                if pay.invoke_us > at {
                    violations.push(format!(
                        "pay and cancel both took (I7): order {id} was cancelled, then a pay \
                         was accepted ({:?})",
                        pay.status
                    ));
                }
            }
        }
        for cancel in ops.iter().filter(|r| r.op == Op::Cancel) {
            if cancel.outcome == "ok" && cancel.order_status.as_deref() != Some("cancelled") {
                violations.push(format!(
                    "order {id}: a cancel answered {:?} with the order {:?}",
                    cancel.status, cancel.order_status
                ));
            }
            if cancel.outcome == "invalid-state" && !matches!(status, Some("paid" | "fulfilled")) {
                violations.push(format!(
                    "order {id}: a cancel was refused invalid-state, yet the order ends {status:?}, \
                     not paid"
                ));
            }
        }
    }

    CheckReport {
        ok: violations.is_empty(),
        violations,
        sale_id: sale_id.to_owned(),
        requests: requests.len(),
        indeterminate: requests.iter().filter(|r| r.is_indeterminate()).count(),
        acknowledged_orders: acknowledged.len(),
        crashes: crashes.len(),
        quantity: sale.quantity,
        sold: sale.sold,
        remaining: sale.remaining,
    }
}

/// The one sale `records` are about.
pub fn sale_of(records: &[Record]) -> anyhow::Result<String> {
    let sales: HashSet<&str> = records
        .iter()
        .filter(|r| r.op != Op::Crash)
        .map(|r| r.sale.as_str())
        .collect();
    match sales.len() {
        0 => bail!("the history holds no request"),
        1 => Ok(sales.into_iter().next().unwrap_or_default().to_owned()),
        _ => bail!("the history holds several sales: {sales:?}"),
    }
}

/// Reads the final state for `records` from a running server and checks.
pub async fn check_live(
    target: &Target,
    minter: &Minter,
    records: &[Record],
    concurrency: usize,
) -> anyhow::Result<CheckReport> {
    let sale_id = sale_of(records)?;
    let users: Vec<String> = records
        .iter()
        .filter(|r| r.op != Op::Crash)
        .map(|r| r.user.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let sale = audit::sale_state(target, minter, &sale_id).await?;
    let orders = audit::orders_of(target, minter, &users, concurrency)
        .await
        .context("reading the customers' orders")?;
    Ok(check(records, &sale_id, &FinalState { sale, orders }))
}

/// The records of several history files, in one list.
pub fn read_all(files: &[PathBuf]) -> anyhow::Result<Vec<Record>> {
    let mut records = Vec::new();
    for file in files {
        records.extend(crate::history::read(file)?);
    }
    Ok(records)
}

#[cfg(test)]
#[path = "check_tests.rs"]
mod tests;
