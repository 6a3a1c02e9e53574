//! Inventory-aware admission: at most `left × k` purchase attempts of a sale
//! are in the costly path at once (the ledger's decision, then the commit),
//! where `left` is what this node last knew the sale had left and `k` is
//! `commit_attempts_per_unit`. With 10 units left and k = 4, forty attempts
//! race for them; the rest wait their turn in a queue, first come first
//! served, instead of queueing in the ledger (a Redis round trip each, in
//! cluster mode) for units that forty attempts will already take.
//!
//! The moment the sale sells out, every waiter is let through at once:
//! the ledger refuses them in microseconds (and remembers each key's
//! answer), so nobody waits for stock that is gone. From then on the gate
//! stands open. What is left is read from the ledger for every sale that
//! has not ended by the `sale-sync` poll (so a sale created ahead of its
//! start is gated from its first purchase; one bought within a poll of its
//! creation, not until that poll), and between polls moved by this node's
//! own attempts (a reservation takes units off, a `sold-out` sets 0). Units
//! returned on any node (a cancel, an expiry, an admin's addition) close
//! the gate again to `left × k` everywhere within a poll.
//!
//! A waiter joins only if its predicted wait fits its deadline (the one
//! deadline budget, `stampede_flow::QueueBudget`); otherwise it is refused
//! at once with `503 overloaded`. A waiter that goes away (its client hung
//! up) loses its place without holding a slot.
//!
//! Metrics: `stampede_sale_gate_waits_total` (attempts that queued),
//! `stampede_sale_gate_released_total` (waiters let through at a sell-out).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use metrics::{Counter, counter};
use stampede_domain::ids::SaleId;
use stampede_flow::{Late, QueueBudget};
use tokio::sync::oneshot;

/// `left` before this node has learned it: no bound.
const UNKNOWN: u64 = u64::MAX;

/// All the gates of a node, one per sale.
pub struct SaleGates {
    /// Attempts per unit left; 0: no gate.
    per_unit: u64,
    gates: RwLock<HashMap<SaleId, Arc<Gate>>>,
    waits: Counter,
    released: Counter,
}

struct Gate {
    per_unit: u64,
    left: AtomicU64,
    /// Slots taken: attempts between [`SaleGates::enter`] and the drop of
    /// their [`Pass`].
    inside: AtomicUsize,
    /// Waiters queued (kept beside the queue to skip its lock when none).
    waiting: AtomicUsize,
    queue: Mutex<VecDeque<oneshot::Sender<Pass>>>,
    budget: QueueBudget,
    released: Counter,
}

/// Leave to go through the costly path; its drop frees the slot it holds
/// (if any) for the next waiter.
pub struct Pass {
    /// `None`: let through without a slot (no gate, or sold out).
    slot: Option<(Arc<Gate>, Instant)>,
}

impl SaleGates {
    pub fn new(per_unit: u32) -> Self {
        Self {
            per_unit: u64::from(per_unit),
            gates: RwLock::new(HashMap::new()),
            waits: counter!("stampede_sale_gate_waits_total"),
            released: counter!("stampede_sale_gate_released_total"),
        }
    }

    fn gate(&self, sale: SaleId) -> Option<Arc<Gate>> {
        if self.per_unit == 0 {
            return None;
        }
        if let Some(gate) = self
            .gates
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&sale)
        {
            return Some(gate.clone());
        }
        let mut gates = self.gates.write().unwrap_or_else(|p| p.into_inner());
        let gate = gates.entry(sale).or_insert_with(|| {
            Arc::new(Gate {
                per_unit: self.per_unit,
                left: AtomicU64::new(UNKNOWN),
                inside: AtomicUsize::new(0),
                waiting: AtomicUsize::new(0),
                queue: Mutex::new(VecDeque::new()),
                // One attempt's decision and commit: a few milliseconds.
                budget: QueueBudget::new("sale_gate", 1, Duration::from_millis(2)),
                released: self.released.clone(),
            })
        });
        Some(gate.clone())
    }

    /// Whether there are gates at all (`commit_attempts_per_unit` above 0).
    pub fn is_on(&self) -> bool {
        self.per_unit > 0
    }

    /// Waits for a slot of `sale`'s gate, or refuses an attempt whose wait
    /// would not fit its deadline.
    pub async fn enter(&self, sale: SaleId) -> Result<Pass, Late> {
        let Some(gate) = self.gate(sale) else {
            return Ok(Pass { slot: None });
        };
        if let Some(pass) = gate.try_enter() {
            return Ok(pass);
        }
        let waiter = {
            let mut queue = gate.queue();
            // Counted before the last look at the slots: a pass dropped
            // after that look sees this waiter (see `Pass::drop`).
            gate.waiting.fetch_add(1, Ordering::SeqCst);
            if let Some(pass) = gate.try_enter() {
                gate.waiting.fetch_sub(1, Ordering::SeqCst);
                return Ok(pass);
            }
            let lanes = gate.capacity().max(1);
            let ahead = u64::try_from(queue.len()).unwrap_or(u64::MAX) / lanes;
            if let Err(late) = gate
                .budget
                .admit(usize::try_from(ahead).unwrap_or(usize::MAX))
            {
                gate.waiting.fetch_sub(1, Ordering::SeqCst);
                return Err(late);
            }
            let (tx, rx) = oneshot::channel();
            queue.push_back(tx);
            rx
        };
        self.waits.increment(1);
        // The sender is only dropped with a pass sent or the gate gone.
        Ok(waiter.await.unwrap_or(Pass { slot: None }))
    }

    /// What this node now knows `sale` has left (from the ledger, or from an
    /// attempt's answer). 0 opens the gate to everyone waiting.
    pub fn learn(&self, sale: SaleId, left: u64) {
        if let Some(gate) = self.gate(sale) {
            gate.left.store(left, Ordering::SeqCst);
            gate.admit_waiters();
        }
    }

    /// Drops `sale`'s gate (the sale is over): nothing polls for it again.
    pub fn forget(&self, sale: SaleId) {
        let mut gates = self.gates.write().unwrap_or_else(|p| p.into_inner());
        if let Some(gate) = gates.remove(&sale) {
            // Nobody should wait at a sale that is over.
            gate.left.store(0, Ordering::SeqCst);
            gate.admit_waiters();
        }
    }

    /// A reservation of `units` on this node: that many fewer left. The
    /// last units taken open the gate to everyone waiting at once, not as
    /// the winners' commits end.
    pub fn took(&self, sale: SaleId, units: u32) {
        if let Some(gate) = self.gate(sale) {
            let units = u64::from(units);
            let before = gate
                .left
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                    (left != UNKNOWN).then(|| left.saturating_sub(units))
                });
            if before.is_ok_and(|left| left <= units) {
                gate.admit_waiters();
            }
        }
    }

    /// The sales that have a gate.
    pub fn sales(&self) -> Vec<SaleId> {
        let gates = self.gates.read().unwrap_or_else(|p| p.into_inner());
        gates.keys().copied().collect()
    }

    /// (slots taken, waiters) of `sale`'s gate, for tests and metrics.
    pub fn occupancy(&self, sale: SaleId) -> (usize, usize) {
        self.gates
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&sale)
            .map_or((0, 0), |gate| {
                (
                    gate.inside.load(Ordering::SeqCst),
                    gate.waiting.load(Ordering::SeqCst),
                )
            })
    }
}

impl Gate {
    fn queue(&self) -> MutexGuard<'_, VecDeque<oneshot::Sender<Pass>>> {
        // A queue of senders is whole at every step; a panic elsewhere
        // while it was held leaves nothing half-done.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Slots at once: `left × k`, unbounded while `left` is unknown.
    fn capacity(&self) -> u64 {
        self.left
            .load(Ordering::SeqCst)
            .saturating_mul(self.per_unit)
    }

    fn sold_out(&self) -> bool {
        self.left.load(Ordering::SeqCst) == 0
    }

    /// A slot if one is free, or a pass without one if sold out.
    fn try_enter(self: &Arc<Self>) -> Option<Pass> {
        if self.sold_out() {
            return Some(Pass { slot: None });
        }
        let capacity = usize::try_from(self.capacity()).unwrap_or(usize::MAX);
        self.inside
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |inside| {
                (inside < capacity).then_some(inside + 1)
            })
            .ok()
            .map(|_| self.pass())
    }

    fn pass(self: &Arc<Self>) -> Pass {
        Pass {
            slot: Some((self.clone(), Instant::now())),
        }
    }

    /// Hands free slots to waiters, first come first served; at a sell-out,
    /// lets every waiter through.
    fn admit_waiters(self: &Arc<Self>) {
        if self.waiting.load(Ordering::SeqCst) == 0 {
            return;
        }
        let mut queue = self.queue();
        while let Some(waiter) = queue.pop_front() {
            let pass = match self.try_enter() {
                Some(pass) => pass,
                None => {
                    queue.push_front(waiter);
                    break;
                }
            };
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            if pass.slot.is_none() {
                self.released.increment(1);
            }
            if let Err(mut unsent) = waiter.send(pass) {
                // Gone: its slot is free again, for the next in line.
                // (Freed here, not by its drop, which would take the lock.)
                if unsent.slot.take().is_some() {
                    self.inside.fetch_sub(1, Ordering::SeqCst);
                }
            }
        }
    }
}

impl Drop for Pass {
    fn drop(&mut self) {
        if let Some((gate, entered)) = self.slot.take() {
            gate.budget.record(1, entered.elapsed());
            gate.inside.fetch_sub(1, Ordering::SeqCst);
            gate.admit_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sale() -> SaleId {
        SaleId::generate()
    }

    #[tokio::test]
    async fn at_most_left_times_k_are_inside_and_the_rest_wait_in_order() {
        let gates = Arc::new(SaleGates::new(2));
        let id = sale();
        gates.learn(id, 2);
        let mut inside = Vec::new();
        for _ in 0..4 {
            inside.push(gates.enter(id).await.unwrap());
        }
        assert_eq!(gates.occupancy(id), (4, 0));
        let (order_tx, mut order_rx) = tokio::sync::mpsc::unbounded_channel();
        let mut waiters = Vec::new();
        for n in 0..3 {
            let (shared, order_tx) = (gates.clone(), order_tx.clone());
            waiters.push(tokio::spawn(async move {
                let pass = shared.enter(id).await.unwrap();
                order_tx.send(n).unwrap();
                pass
            }));
            // Queued one after another.
            while gates.occupancy(id).1 < n + 1 {
                tokio::task::yield_now().await;
            }
        }
        assert_eq!(gates.occupancy(id), (4, 3));
        // Each slot freed goes to the next in line.
        for n in 0..3 {
            inside.pop();
            assert_eq!(order_rx.recv().await, Some(n));
            assert_eq!(gates.occupancy(id), (4, 2 - n));
        }
        drop(inside);
        for waiter in waiters {
            drop(waiter.await.unwrap());
        }
        assert_eq!(gates.occupancy(id), (0, 0));
    }

    #[tokio::test]
    async fn a_sell_out_lets_every_waiter_through_at_once_and_leaves_the_gate_open() {
        let gates = Arc::new(SaleGates::new(1));
        let id = sale();
        gates.learn(id, 1);
        let held = gates.enter(id).await.unwrap();
        let waiters: Vec<_> = (0..50)
            .map(|_| {
                let gates = gates.clone();
                tokio::spawn(async move { gates.enter(id).await.unwrap() })
            })
            .collect();
        while gates.occupancy(id).1 < 50 {
            tokio::task::yield_now().await;
        }
        // The slot is still held: only the sell-out can release them.
        gates.learn(id, 0);
        for waiter in waiters {
            assert!(waiter.await.unwrap().slot.is_none());
        }
        assert!(gates.enter(id).await.unwrap().slot.is_none());
        drop(held);
        // Units came back: the gate closes to left × k again.
        gates.learn(id, 1);
        let one = gates.enter(id).await.unwrap();
        assert!(one.slot.is_some());
        assert_eq!(gates.occupancy(id), (1, 0));
    }

    #[tokio::test]
    async fn the_last_units_taken_let_every_waiter_through_before_the_winners_finish() {
        let gates = Arc::new(SaleGates::new(1));
        let id = sale();
        gates.learn(id, 1);
        let winner = gates.enter(id).await.unwrap();
        let waiter = {
            let gates = gates.clone();
            tokio::spawn(async move { gates.enter(id).await.unwrap() })
        };
        while gates.occupancy(id).1 < 1 {
            tokio::task::yield_now().await;
        }
        // The winner reserved the last unit and is still committing.
        gates.took(id, 1);
        assert!(waiter.await.unwrap().slot.is_none());
        drop(winner);
        assert_eq!(gates.occupancy(id), (0, 0));
    }

    #[tokio::test]
    async fn a_waiter_that_goes_away_holds_no_slot() {
        let gates = Arc::new(SaleGates::new(1));
        let id = sale();
        gates.learn(id, 1);
        let held = gates.enter(id).await.unwrap();
        let gone = {
            let gates = gates.clone();
            tokio::spawn(async move { gates.enter(id).await.map(drop) })
        };
        while gates.occupancy(id).1 < 1 {
            tokio::task::yield_now().await;
        }
        gone.abort();
        let _ = gone.await;
        drop(held);
        assert_eq!(gates.occupancy(id), (0, 0));
        assert!(gates.enter(id).await.unwrap().slot.is_some());
    }

    #[tokio::test]
    async fn reservations_shrink_the_gate_and_an_unknown_or_disabled_one_bounds_nothing() {
        let gates = SaleGates::new(3);
        let id = sale();
        let unknown: Vec<_> = enter_many(&gates, id, 100).await;
        assert_eq!(gates.occupancy(id), (100, 0));
        drop(unknown);
        gates.learn(id, 5);
        gates.took(id, 4);
        let passes = enter_many(&gates, id, 3).await;
        assert!(gates.gate(id).unwrap().try_enter().is_none(), "1 left × 3");
        drop(passes);
        let off = SaleGates::new(0);
        off.learn(id, 1);
        assert!(off.enter(id).await.unwrap().slot.is_none());
    }

    async fn enter_many(gates: &SaleGates, id: SaleId, n: usize) -> Vec<Pass> {
        let mut passes = Vec::new();
        for _ in 0..n {
            passes.push(gates.enter(id).await.unwrap());
        }
        passes
    }

    #[tokio::test]
    async fn a_waiter_whose_deadline_cannot_hold_the_wait_is_refused_at_once() {
        let gates = SaleGates::new(1);
        let id = sale();
        gates.learn(id, 1);
        let _held = gates.enter(id).await.unwrap();
        let deadline = stampede_flow::Deadline::after(Duration::from_micros(1));
        let refused = stampede_flow::deadline::scope(deadline, gates.enter(id)).await;
        assert!(refused.is_err());
        assert_eq!(gates.occupancy(id), (1, 0));
    }
}
