//! The audit: does the server's state keep the contract (docs/design.md
//! §1) for one sale? Run after every bench, or alone
//! (`stampede audit --target URL --sale ID`).
//!
//! Checks, each failure a human-readable violation:
//!
//! - from `GET /api/v1/sales/{id}/stats`: nothing oversold (`sold <= quantity`,
//!   I1) and the ledger equals the database (`remaining == quantity - sold`,
//!   I2), read at rest (re-read briefly while reservations settle);
//! - for every customer it knows (the bench's, or `--users/--user-prefix`),
//!   their orders (`GET /api/v1/orders`, all pages): non-cancelled units in
//!   this sale within `per_user_limit` (I3), and no order id twice;
//! - after a bench: every 202's order is retrievable by its owner with the
//!   same sale and user, and the database counts at least the units won
//!   (I5: a 202 whose answer was lost is fine, a missing one is not); when
//!   the bench made the sale and every request got a definite answer, sold
//!   equals the units won exactly; and when the crowd was told `sold-out`
//!   and no reservation can have been abandoned, the whole stock is sold (I9).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use hyper::header::HeaderValue;
use hyper::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use stampede_domain::account::Role;

use crate::client::{Api, Target};
use crate::users::Minter;

/// What to check.
#[derive(Debug, Clone)]
pub struct AuditPlan {
    pub sale_id: String,
    /// Customers whose holdings are checked.
    pub users: Vec<String>,
    /// 202s to fresh keys the bench saw: (customer, order id, units).
    pub won: Vec<(String, String, u32)>,
    /// Won orders the bench sent a cancel for: they must still be there, but
    /// their units may have gone back to the sale.
    pub cancel_sent: HashSet<String>,
    /// Only `users` can have bought from this sale (the bench created it).
    pub exclusive: bool,
    /// Every purchase got a definite answer: no transport error, timeout or
    /// 503, so no reservation was abandoned or answered unseen.
    pub answers_complete: bool,
    /// Some purchase was refused `sold-out`.
    pub sold_out_seen: bool,
    pub concurrency: usize,
}

impl AuditPlan {
    /// Only the sale's own numbers (no customers known).
    pub fn sale_only(sale_id: String) -> Self {
        Self {
            sale_id,
            users: Vec::new(),
            won: Vec::new(),
            cancel_sent: HashSet::new(),
            exclusive: false,
            answers_complete: false,
            sold_out_seen: false,
            concurrency: 32,
        }
    }
}

/// What the audit found.
#[derive(Debug, Clone, Serialize)]
pub struct AuditReport {
    pub ok: bool,
    pub violations: Vec<String>,
    pub sale_id: String,
    pub quantity: u64,
    pub per_user_limit: u64,
    pub sold: u64,
    pub remaining: u64,
    pub users_checked: usize,
    /// Units the checked customers hold in the sale (not cancelled).
    pub units_held: u64,
    pub orders_checked: usize,
    pub units_won: u64,
}

impl AuditReport {
    /// One line for reports.
    pub fn summary(&self) -> String {
        format!(
            "sale {}: sold {} of {}, remaining {}; {} customers hold {} units (limit {} each); \
             {} won orders retrieved",
            self.sale_id,
            self.sold,
            self.quantity,
            self.remaining,
            self.users_checked,
            self.units_held,
            self.per_user_limit,
            self.orders_checked
        )
    }
}

#[derive(Debug, Deserialize)]
struct SaleBody {
    quantity: u64,
    per_user_limit: u64,
}

#[derive(Debug, Deserialize)]
struct StatsBody {
    quantity: u64,
    remaining: u64,
    sold: u64,
}

/// An order as `GET /api/v1/orders` lists it (the fields checked).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct OrderBody {
    pub id: String,
    pub user_id: String,
    pub sale_id: String,
    pub quantity: u64,
    pub status: String,
}

/// A sale's terms and its numbers at rest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaleState {
    pub quantity: u64,
    pub per_user_limit: u64,
    pub remaining: u64,
    pub sold: u64,
}

/// Reads a sale's terms and its settled stats.
pub async fn sale_state(
    target: &Target,
    minter: &Minter,
    sale_id: &str,
) -> anyhow::Result<SaleState> {
    let admin = minter.bearer("stampede-audit", Role::Admin)?;
    let mut api = Api::new(target.clone());
    let sale: SaleBody = api
        .json(
            Method::GET,
            &format!("/api/v1/sales/{sale_id}"),
            None,
            None,
            StatusCode::OK,
        )
        .await
        .with_context(|| format!("reading sale {sale_id}"))?;
    let stats = settled_stats(&mut api, sale_id, &admin).await?;
    Ok(SaleState {
        quantity: stats.quantity,
        per_user_limit: sale.per_user_limit,
        remaining: stats.remaining,
        sold: stats.sold,
    })
}

/// Every order of each of `users` (all pages, every sale).
pub async fn orders_of(
    target: &Target,
    minter: &Minter,
    users: &[String],
    concurrency: usize,
) -> anyhow::Result<HashMap<String, Vec<OrderBody>>> {
    let jobs = users
        .iter()
        .map(|user| Job::Holdings { user: user.clone() })
        .collect();
    let mut all = HashMap::new();
    for found in run_jobs(target, minter, jobs, concurrency).await? {
        if let Found::Holdings { user, orders } = found {
            all.insert(user, orders);
        }
    }
    Ok(all)
}

#[derive(Debug, Deserialize)]
struct OrdersPage {
    items: Vec<OrderBody>,
    next_cursor: Option<String>,
}

/// One unit of work for the audit's connections.
enum Job {
    /// All of a customer's orders.
    Holdings { user: String },
    /// One won order, fetched by its owner.
    Order {
        user: String,
        id: String,
        quantity: u32,
    },
}

/// What a job found.
enum Found {
    Holdings {
        user: String,
        orders: Vec<OrderBody>,
    },
    Order {
        user: String,
        id: String,
        quantity: u32,
        status: StatusCode,
        order: Option<OrderBody>,
    },
}

/// Runs the audit. `Err` only when the audit itself could not run (server
/// unreachable, unknown sale); violations are in the report.
pub async fn run(
    target: &Target,
    minter: &Minter,
    plan: &AuditPlan,
) -> anyhow::Result<AuditReport> {
    let admin = minter.bearer("stampede-audit", Role::Admin)?;
    let mut api = Api::new(target.clone());
    let sale_path = format!("/api/v1/sales/{}", plan.sale_id);
    let sale: SaleBody = api
        .json(Method::GET, &sale_path, None, None, StatusCode::OK)
        .await
        .with_context(|| format!("reading sale {}", plan.sale_id))?;
    let stats = settled_stats(&mut api, &plan.sale_id, &admin).await?;

    let mut violations = Vec::new();
    if stats.quantity != sale.quantity {
        violations.push(format!(
            "the sale says quantity {} but its stats say {}",
            sale.quantity, stats.quantity
        ));
    }
    if stats.sold > stats.quantity {
        violations.push(format!(
            "oversold (I1): {} units sold of {}",
            stats.sold, stats.quantity
        ));
    }
    let expected_remaining = i128::from(stats.quantity) - i128::from(stats.sold);
    if i128::from(stats.remaining) != expected_remaining {
        violations.push(format!(
            "ledger ≠ database (I2): the ledger says {} remaining, the database says quantity {} − sold {} = {}",
            stats.remaining, stats.quantity, stats.sold, expected_remaining
        ));
    }

    // Fetch holdings and won orders over a few keep-alive connections.
    let mut jobs: Vec<Job> = plan
        .users
        .iter()
        .map(|user| Job::Holdings { user: user.clone() })
        .collect();
    let mut ids = HashSet::new();
    let mut units_won = 0u64;
    // Units won and never sent a cancel: those must still be sold.
    let mut units_kept = 0u64;
    for (user, id, quantity) in &plan.won {
        units_won += u64::from(*quantity);
        if !plan.cancel_sent.contains(id) {
            units_kept += u64::from(*quantity);
        }
        if !ids.insert(id.as_str()) {
            violations.push(format!(
                "order {id} was answered 202 to two different requests"
            ));
            continue;
        }
        jobs.push(Job::Order {
            user: user.clone(),
            id: id.clone(),
            quantity: *quantity,
        });
    }
    let found = run_jobs(target, minter, jobs, plan.concurrency).await?;

    let mut units_held = 0u64;
    let mut orders_checked = 0usize;
    let mut held_ids: HashMap<String, String> = HashMap::new();
    for item in found {
        match item {
            Found::Holdings { user, orders } => {
                let mut units = 0u64;
                for order in orders {
                    if order.sale_id != plan.sale_id {
                        continue;
                    }
                    if let Some(other) = held_ids.insert(order.id.clone(), user.clone()) {
                        violations.push(format!(
                            "order {} is listed for both {other} and {user}",
                            order.id
                        ));
                    }
                    if order.user_id != user {
                        violations.push(format!(
                            "{user}'s order list holds order {} of {}",
                            order.id, order.user_id
                        ));
                    }
                    if order.status != "cancelled" {
                        units += order.quantity;
                    }
                }
                if units > sale.per_user_limit {
                    violations.push(format!(
                        "per-user limit broken (I3): {user} holds {units} units of sale {}, \
                         per_user_limit is {}",
                        plan.sale_id, sale.per_user_limit
                    ));
                }
                units_held += units;
            }
            Found::Order {
                user,
                id,
                quantity,
                status,
                order,
            } => {
                orders_checked += 1;
                match order {
                    Some(order) if status == StatusCode::OK => {
                        if order.sale_id != plan.sale_id
                            || order.user_id != user
                            || order.quantity != u64::from(quantity)
                        {
                            violations.push(format!(
                                "order {id} was won by {user} for {quantity} units of sale {}, \
                                 but reads as {} units of sale {} for {}",
                                plan.sale_id, order.quantity, order.sale_id, order.user_id
                            ));
                        }
                    }
                    _ => violations.push(format!(
                        "lost order (I5): order {id} answered 202 to {user} is not retrievable \
                         (GET answered {status})"
                    )),
                }
            }
        }
    }

    if units_held > stats.sold {
        violations.push(format!(
            "the checked customers hold {units_held} units of the sale, but the database counts \
             only {} sold",
            stats.sold
        ));
    }
    if plan.exclusive && !plan.users.is_empty() && units_held != stats.sold {
        violations.push(format!(
            "only the bench's customers bought, and they hold {units_held} units, but the \
             database counts {} sold",
            stats.sold
        ));
    }
    if stats.sold < units_kept {
        violations.push(format!(
            "lost orders (I5): the bench won {units_kept} units (and cancelled none of them), \
             the database counts only {} sold",
            stats.sold
        ));
    }
    if plan.exclusive && plan.answers_complete && !(units_kept..=units_won).contains(&stats.sold) {
        violations.push(format!(
            "every purchase was answered, the bench won {units_won} units (of which \
             {units_kept} were never sent a cancel), but the database counts {} sold",
            stats.sold
        ));
    }
    if plan.sold_out_seen
        && plan.answers_complete
        && plan.cancel_sent.is_empty()
        && stats.sold != stats.quantity
    {
        violations.push(format!(
            "undersold (I9): the crowd was told sold-out, no reservation was abandoned, yet only \
             {} of {} units are sold",
            stats.sold, stats.quantity
        ));
    }

    Ok(AuditReport {
        ok: violations.is_empty(),
        violations,
        sale_id: plan.sale_id.clone(),
        quantity: stats.quantity,
        per_user_limit: sale.per_user_limit,
        sold: stats.sold,
        remaining: stats.remaining,
        users_checked: plan.users.len(),
        units_held,
        orders_checked,
        units_won,
    })
}

/// The sale's stats at rest: reservations still being committed make
/// `remaining` and `sold` disagree for a moment, so a disagreement is re-read
/// for up to about two seconds before it counts.
async fn settled_stats(
    api: &mut Api,
    sale_id: &str,
    admin: &HeaderValue,
) -> anyhow::Result<StatsBody> {
    let path = format!("/api/v1/sales/{sale_id}/stats");
    let mut tries = 0;
    loop {
        let stats: StatsBody = api
            .json(Method::GET, &path, Some(admin), None, StatusCode::OK)
            .await
            .with_context(|| format!("reading the stats of sale {sale_id}"))?;
        tries += 1;
        let at_rest =
            i128::from(stats.remaining) == i128::from(stats.quantity) - i128::from(stats.sold);
        if at_rest || tries >= 20 {
            return Ok(stats);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn run_jobs(
    target: &Target,
    minter: &Minter,
    jobs: Vec<Job>,
    concurrency: usize,
) -> anyhow::Result<Vec<Found>> {
    let queue = Arc::new(Mutex::new(jobs));
    let mut workers = Vec::new();
    for _ in 0..concurrency.max(1) {
        let queue = queue.clone();
        let target = target.clone();
        let minter = minter.clone();
        workers.push(tokio::spawn(async move {
            let mut api = Api::new(target);
            let mut found = Vec::new();
            loop {
                let job = queue.lock().unwrap_or_else(|p| p.into_inner()).pop();
                let Some(job) = job else { break };
                found.push(do_job(&mut api, &minter, job).await?);
            }
            anyhow::Ok(found)
        }));
    }
    let mut all = Vec::new();
    for worker in workers {
        all.extend(worker.await.context("an audit task failed")??);
    }
    Ok(all)
}

async fn do_job(api: &mut Api, minter: &Minter, job: Job) -> anyhow::Result<Found> {
    match job {
        Job::Holdings { user } => {
            let token = minter.bearer(&user, Role::Customer)?;
            let mut orders = Vec::new();
            let mut cursor = String::new();
            loop {
                let path = format!("/api/v1/orders?limit=100&cursor={cursor}");
                let page: OrdersPage = api
                    .json(Method::GET, &path, Some(&token), None, StatusCode::OK)
                    .await
                    .with_context(|| format!("listing the orders of {user}"))?;
                orders.extend(page.items);
                match page.next_cursor {
                    Some(next) if !next.is_empty() => cursor = next,
                    _ => break,
                }
            }
            Ok(Found::Holdings { user, orders })
        }
        Job::Order { user, id, quantity } => {
            let token = minter.bearer(&user, Role::Customer)?;
            let answer = api
                .call(
                    Method::GET,
                    &format!("/api/v1/orders/{id}"),
                    Some(&token),
                    None,
                )
                .await
                .with_context(|| format!("reading order {id}"))?;
            let order = if answer.status == StatusCode::OK {
                serde_json::from_slice(&answer.body).ok()
            } else {
                None
            };
            Ok(Found::Order {
                user,
                id,
                quantity,
                status: answer.status,
                order,
            })
        }
    }
}
