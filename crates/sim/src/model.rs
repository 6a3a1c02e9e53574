//! What the simulator believes the system must hold: every sale's stock,
//! every accepted order and its status, every idempotency key's answer. The
//! services' answers move it; the checker compares it with the store and the
//! ledger (docs/design.md §1, I1–I7).

use stampede_domain::ids::{OrderId, SaleId};
use stampede_domain::order::OrderStatus;
use stampede_domain::stock::Refusal;
use stampede_domain::time::Timestamp;

use crate::node::key_retention_ms;

/// At least this many refusals are kept in memory (the ledger's default).
const REFUSAL_CAPACITY: u64 = 1_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    Open,
    Paid,
    Cancelled,
}

impl Status {
    pub(crate) fn of(status: OrderStatus) -> Self {
        match status {
            OrderStatus::Pending | OrderStatus::AwaitingPayment => Self::Open,
            OrderStatus::Paid | OrderStatus::Fulfilled => Self::Paid,
            OrderStatus::Cancelled => Self::Cancelled,
        }
    }
}

pub(crate) struct SaleM {
    pub id: SaleId,
    pub quantity: u64,
    pub limit: u32,
    pub remaining: u64,
}

pub(crate) struct OrderM {
    pub id: OrderId,
    pub user: usize,
    pub sale: usize,
    pub qty: u32,
    pub status: Status,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    /// A payment attempt waits for the provider's answer.
    pub paying: bool,
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Answer {
    /// Nothing remembered: the last answer asked for a retry, or none yet.
    None,
    Won(usize),
    Refused {
        refusal: Refusal,
        epoch: u32,
        at: Timestamp,
    },
}

pub(crate) struct KeyM {
    pub user: usize,
    pub sale: usize,
    pub qty: u32,
    pub answer: Answer,
}

/// What a purchase may answer when the ledger decides it afresh.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fresh {
    pub win: bool,
    pub sold_out: bool,
    pub limit: bool,
}

pub(crate) struct Model {
    pub sales: Vec<SaleM>,
    pub orders: Vec<OrderM>,
    pub keys: Vec<KeyM>,
    /// Units each user holds per sale, `[user][sale]`.
    pub holdings: Vec<Vec<u32>>,
    /// Process lives so far: a refusal is remembered only in the one that gave it.
    pub epoch: u32,
    refusals_in_epoch: u64,
    /// A release to the ledger was lost: it holds units the store has back,
    /// until the next rebuild.
    pub ledger_short: bool,
    /// Orders changed since the last check.
    pub touched: Vec<usize>,
}

impl Model {
    pub(crate) fn new(sales: Vec<SaleM>, users: usize) -> Self {
        let holdings = vec![vec![0; sales.len()]; users];
        Self {
            sales,
            orders: Vec::new(),
            keys: Vec::new(),
            holdings,
            epoch: 0,
            refusals_in_epoch: 0,
            ledger_short: false,
            touched: Vec::new(),
        }
    }

    pub(crate) fn restarted(&mut self) {
        self.epoch += 1;
        self.refusals_in_epoch = 0;
        self.ledger_short = false;
    }

    /// The answers a fresh decision may give `user` buying `qty` of `sale`.
    /// Exact while the ledger agrees with the store; once it is short only
    /// refusals widen, a win never does.
    pub(crate) fn fresh(&self, user: usize, sale: usize, qty: u32) -> Fresh {
        let s = &self.sales[sale];
        let sold_out = u64::from(qty) > s.remaining;
        let over = self.holdings[user][sale] + qty > s.limit;
        if self.ledger_short {
            return Fresh {
                win: !sold_out && !over,
                sold_out: true,
                limit: true,
            };
        }
        Fresh {
            win: !sold_out && !over,
            sold_out,
            limit: !sold_out && over,
        }
    }

    /// Whether the ledger must still remember this refusal.
    pub(crate) fn remembers_refusal(&self, epoch: u32, at: Timestamp, now: Timestamp) -> bool {
        epoch == self.epoch
            && now.as_millis() - at.as_millis() < key_retention_ms()
            && self.refusals_in_epoch < REFUSAL_CAPACITY
    }

    /// Whether the ledger must still remember this won key.
    pub(crate) fn remembers_win(&self, order: usize, now: Timestamp) -> bool {
        now.as_millis() - self.orders[order].created_at.as_millis() < key_retention_ms()
    }

    pub(crate) fn refused(&mut self, key: usize, refusal: Refusal, now: Timestamp) {
        self.refusals_in_epoch += 1;
        self.keys[key].answer = Answer::Refused {
            refusal,
            epoch: self.epoch,
            at: now,
        };
    }

    /// Records a won order for `key`, checking it could be sold (I1, I3) and
    /// that the key has no other order (I4).
    pub(crate) fn won(
        &mut self,
        key: usize,
        id: OrderId,
        created_at: Timestamp,
        expires_at: Timestamp,
    ) -> Result<usize, String> {
        let k = &self.keys[key];
        if let Answer::Won(existing) = k.answer {
            let same = self.orders[existing].id == id;
            return match same {
                true => Ok(existing),
                false => Err(format!(
                    "key {key} won a second order {id} (first {})",
                    self.orders[existing].id
                )),
            };
        }
        let (user, sale, qty) = (k.user, k.sale, k.qty);
        let s = &mut self.sales[sale];
        if u64::from(qty) > s.remaining {
            return Err(format!(
                "I1 oversell: key {key} won {qty} of sale {sale} with {} left",
                s.remaining
            ));
        }
        let holding = &mut self.holdings[user][sale];
        if *holding + qty > s.limit {
            return Err(format!(
                "I3 limit: user {user} holds {holding} of sale {sale} (limit {}) and won {qty} more",
                s.limit
            ));
        }
        s.remaining -= u64::from(qty);
        *holding += qty;
        self.orders.push(OrderM {
            id,
            user,
            sale,
            qty,
            status: Status::Open,
            created_at,
            expires_at,
            paying: false,
        });
        let index = self.orders.len() - 1;
        self.keys[key].answer = Answer::Won(index);
        self.touched.push(index);
        Ok(index)
    }

    /// Moves an order to `to`, returning its units if it closes; only the
    /// moves the order life allows (I6, I7).
    pub(crate) fn transition(&mut self, order: usize, to: Status) -> Result<(), String> {
        let o = &mut self.orders[order];
        match (o.status, to) {
            (from, to) if from == to => return Ok(()),
            (Status::Open, Status::Cancelled) => {
                self.sales[o.sale].remaining += u64::from(o.qty);
                self.holdings[o.user][o.sale] -= o.qty;
            }
            (Status::Open, Status::Paid) => {}
            (from, to) => {
                return Err(format!(
                    "I7 order {order} ({}) went from {from:?} to {to:?}",
                    o.id
                ));
            }
        }
        o.status = to;
        self.touched.push(order);
        Ok(())
    }

    /// Orders per status of a sale: open, paid, cancelled.
    pub(crate) fn counts(&self, sale: usize) -> [u64; 3] {
        let mut counts = [0; 3];
        for o in self.orders.iter().filter(|o| o.sale == sale) {
            counts[o.status as usize] += 1;
        }
        counts
    }
}
