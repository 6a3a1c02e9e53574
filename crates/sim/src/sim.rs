//! The simulation loop: random operations by many users, each answer checked
//! against the model, crashes and restarts, and the periodic and final checks.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use stampede_app::AppError;
use stampede_app::auth::{Caller, signature};
use stampede_app::payments::Confirmation;
use stampede_app::ports::{ManualClock, ManualClockHandle};
use stampede_app::purchase::PurchaseRequest;
use stampede_domain::account::Role;
use stampede_domain::catalog::{Product, Sale, SaleRequest};
use stampede_domain::idempotency::IdempotencyKey;
use stampede_domain::ids::UserId;
use stampede_domain::order::{Order, OrderStatus};
use stampede_domain::payment::PaymentStatus;
use stampede_domain::quantity::Quantity;
use stampede_domain::stock::Refusal;
use stampede_domain::time::Timestamp;

use crate::faults::{FaultPlan, FaultRates};
use crate::model::{Answer, Model, SaleM, Status};
use crate::node::{Node, WEBHOOK_SECRET, open_store};
use crate::trace::Trace;

/// One run.
#[derive(Debug, Clone)]
pub struct Config {
    pub seed: u64,
    /// Operations to simulate (each a service call, a sweep, or a crash).
    pub ops: u64,
    pub users: usize,
    pub sales: usize,
    pub faults: FaultRates,
    /// Of 1,000,000 steps, how many end with a crash between operations.
    pub crash_between: u32,
    /// Compare the store and the ledger with the model every this many steps.
    pub check_every: u64,
}

impl Config {
    pub fn new(seed: u64, ops: u64) -> Self {
        Self {
            seed,
            ops,
            users: 1_000,
            sales: 4,
            faults: FaultRates::default(),
            crash_between: 200,
            check_every: 5_000,
        }
    }
}

/// A finished run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub seed: u64,
    pub ops: u64,
    /// Digest of the whole trace: equal for equal seeds.
    pub digest: u64,
    pub orders: usize,
    pub restarts: u32,
    pub faults: u64,
    /// Purchases answered, by outcome: won, replayed, refused, unavailable.
    pub purchases: [u64; 4],
}

/// A broken promise, with what replays it.
#[derive(Debug, Clone)]
pub struct Failure {
    pub seed: u64,
    pub ops: u64,
    pub step: u64,
    pub message: String,
    pub trace: Vec<String>,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "simulation failed at step {} of seed {}: {}",
            self.step, self.seed, self.message
        )?;
        writeln!(
            f,
            "replay: SIM_SEED={} SIM_OPS={} cargo nextest run -p stampede-sim --test sim replay",
            self.seed, self.ops
        )?;
        writeln!(f, "last steps:")?;
        for line in &self.trace {
            writeln!(f, "  {line}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Failure {}

/// Runs one seed on a current-thread runtime, in a temporary directory.
pub fn run(config: &Config) -> Result<Report, Failure> {
    let fail = |message: String| Failure {
        seed: config.seed,
        ops: config.ops,
        step: 0,
        message,
        trace: Vec::new(),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .map_err(|err| fail(format!("building the runtime: {err}")))?;
    // On a memory file system when there is one: the same SQLite files and
    // semantics (a killed process loses nothing committed), without the disk.
    let shm = Path::new("/dev/shm");
    let dir = match shm.is_dir() {
        true => tempfile::tempdir_in(shm),
        false => tempfile::tempdir(),
    }
    .map_err(|err| fail(format!("temp dir: {err}")))?;
    runtime.block_on(async {
        let mut sim = Sim::start(config, dir.path())
            .await
            .map_err(|err| fail(format!("start: {err}")))?;
        match sim.run().await {
            Ok(()) => Ok(sim.report()),
            Err(message) => Err(Failure {
                seed: config.seed,
                ops: config.ops,
                step: sim.step,
                message,
                trace: sim.trace.tail(),
            }),
        }
    })
}

/// A fixed start, so traces do not depend on the wall clock.
const EPOCH_MS: i64 = 1_767_225_600_000;

type Check = Result<(), String>;

struct Sim<'a> {
    config: &'a Config,
    dir: &'a Path,
    rng: fastrand::Rng,
    clock: ManualClockHandle,
    plan: Arc<FaultPlan>,
    node: Option<Node>,
    model: Model,
    trace: Trace,
    step: u64,
    restarts: u32,
    faults: u64,
    purchases: [u64; 4],
}

/// What one step did, for the trace.
enum Op {
    Buy { key: usize },
    Replay { key: usize },
    Mismatch { key: usize },
    Cancel { order: usize },
    Pay { order: usize },
    Answer { order: usize, approve: bool },
    Expire,
}

impl<'a> Sim<'a> {
    async fn start(config: &'a Config, dir: &'a Path) -> Result<Self, String> {
        let mut rng = fastrand::Rng::with_seed(config.seed);
        let clock = ManualClock::new(Timestamp::from_millis(EPOCH_MS));
        let now = Timestamp::from_millis(EPOCH_MS);
        // The catalog is made before the first start, as an admin would.
        let store = open_store(dir).map_err(|e| e.to_string())?;
        let product =
            Product::create("SIM-1", "Simulated", 1_000, "EUR", now).map_err(|e| e.to_string())?;
        store
            .insert_product(&product)
            .await
            .map_err(|e| e.to_string())?;
        let mut sales = Vec::new();
        for _ in 0..config.sales {
            let request = SaleRequest {
                price_cents: None,
                quantity: rng.i64(20..=300),
                per_user_limit: Some(rng.i64(1..=4)),
                starts_at: None,
                ends_at: None,
                payment_window_secs: Some(rng.i64(1_800..=3_600)),
            };
            let sale = Sale::create(&product, &request, now).map_err(|e| e.to_string())?;
            store.insert_sale(&sale).await.map_err(|e| e.to_string())?;
            sales.push(SaleM {
                id: sale.id,
                quantity: sale.quantity.get().into(),
                limit: sale.per_user_limit.get(),
                remaining: sale.quantity.get().into(),
            });
        }
        store.close().await;
        drop(store);
        let plan = FaultPlan::new(rng.u64(..), config.faults);
        let node = Node::boot(dir, clock.clone(), plan.clone())
            .await
            .map_err(|e| e.to_string())?;
        Ok(Self {
            config,
            dir,
            rng,
            clock,
            plan,
            node: Some(node),
            model: Model::new(sales, config.users),
            trace: Trace::new(),
            step: 0,
            restarts: 0,
            faults: 0,
            purchases: [0; 4],
        })
    }

    fn report(&self) -> Report {
        Report {
            seed: self.config.seed,
            ops: self.step,
            digest: self.trace.digest(),
            orders: self.model.orders.len(),
            restarts: self.restarts,
            faults: self.faults,
            purchases: self.purchases,
        }
    }

    fn node(&self) -> Result<&Node, String> {
        self.node.as_ref().ok_or_else(|| "no process".to_string())
    }

    fn now(&self) -> Timestamp {
        use stampede_app::ports::Clock;
        self.clock.now()
    }

    async fn run(&mut self) -> Check {
        while self.step < self.config.ops {
            self.step += 1;
            self.clock.advance_millis(self.rng.i64(0..20));
            let (op, outcome) = self.one_step().await?;
            let fired = self.plan.take();
            self.faults += u64::from(fired.faults);
            if fired.lost_releases > 0 {
                self.model.ledger_short = true;
            }
            let crash = fired.crashed || self.rng.u32(0..1_000_000) < self.config.crash_between;
            self.trace.record(format!(
                "{} {} -> {outcome}{}{}",
                self.step,
                self.describe(&op),
                if fired.faults > 0 { " [fault]" } else { "" },
                if crash { " [crash]" } else { "" },
            ));
            if crash {
                self.restart().await?;
            }
            if fired.faults > 0 || crash {
                self.resolve(&op).await?;
            }
            if crash || self.step.is_multiple_of(self.config.check_every) {
                self.check().await?;
            }
        }
        self.check().await?;
        self.deep_check().await
    }

    fn describe(&self, op: &Op) -> String {
        let key = |k: usize| {
            let k_ = &self.model.keys[k];
            format!("k{k} u{} s{} q{}", k_.user, k_.sale, k_.qty)
        };
        match op {
            Op::Buy { key: k } => format!("buy {}", key(*k)),
            Op::Replay { key: k } => format!("replay {}", key(*k)),
            Op::Mismatch { key: k } => format!("mismatch {}", key(*k)),
            Op::Cancel { order } => format!("cancel o{order}"),
            Op::Pay { order } => format!("pay o{order}"),
            Op::Answer { order, approve } => format!("answer o{order} approve={approve}"),
            Op::Expire => format!("expire at {}", self.now().as_millis() - EPOCH_MS),
        }
    }

    /// Picks and runs one operation; returns it and its outcome for the trace.
    async fn one_step(&mut self) -> Result<(Op, String), String> {
        let roll = self.rng.u32(0..1_000);
        let orders = self.model.orders.len();
        let keys = self.model.keys.len();
        let op = match roll {
            // A flash sale: mostly a crowd of first tries, most of them
            // refused by the ledger without touching the store once the
            // stock is gone.
            _ if keys == 0 || orders == 0 || roll < 950 => self.new_key(),
            950..975 => Op::Replay {
                key: self.rng.usize(..keys),
            },
            975..980 => {
                let key = self.rng.usize(..keys);
                match self.model.keys[key].answer {
                    Answer::None => Op::Replay { key },
                    _ => Op::Mismatch { key },
                }
            }
            980..985 => Op::Cancel {
                order: self.pick_order(),
            },
            985..997 => {
                let order = self.pick_order();
                match self.model.orders[order].paying {
                    true => Op::Answer {
                        order,
                        approve: self.rng.u32(0..4) > 0,
                    },
                    false => Op::Pay { order },
                }
            }
            _ => Op::Expire,
        };
        let outcome = match op {
            Op::Buy { key } | Op::Replay { key } => self.purchase(key, false).await?,
            Op::Mismatch { key } => self.purchase(key, true).await?,
            Op::Cancel { order } => self.cancel(order).await?,
            Op::Pay { order } => self.pay(order).await?,
            Op::Answer { order, approve } => self.answer(order, approve).await?,
            Op::Expire => self.expire().await?,
        };
        Ok((op, outcome))
    }

    fn new_key(&mut self) -> Op {
        let qty = match self.rng.u32(0..10) {
            0..7 => 1,
            7..9 => 2,
            _ => 3,
        };
        self.model.keys.push(crate::model::KeyM {
            user: self.rng.usize(..self.config.users),
            sale: self.rng.usize(..self.config.sales),
            qty,
            answer: Answer::None,
        });
        Op::Buy {
            key: self.model.keys.len() - 1,
        }
    }

    /// Mostly recent orders, where the action is.
    fn pick_order(&mut self) -> usize {
        let n = self.model.orders.len();
        match self.rng.u32(0..5) {
            0 => self.rng.usize(..n),
            _ => n - 1 - self.rng.usize(..n.min(200)),
        }
    }

    fn caller(&self, user: usize) -> Result<Caller, String> {
        Ok(Caller {
            user: user_id(user)?,
            role: Role::Customer,
        })
    }

    /// A purchase with `key`: its first use, a replay, or (with `mismatch`)
    /// another quantity under the same key.
    async fn purchase(&mut self, key: usize, mismatch: bool) -> Result<String, String> {
        let now = self.now();
        let k = &self.model.keys[key];
        let (user, sale, answer) = (k.user, k.sale, k.answer);
        // What the key's memory must answer, if it must.
        let remembered = match answer {
            Answer::Won(order) if self.model.remembers_win(order, now) => Some(Ok(order)),
            Answer::Refused { refusal, epoch, at }
                if self.model.remembers_refusal(epoch, at, now) =>
            {
                Some(Err(refusal))
            }
            _ => None,
        };
        let asked = if mismatch { k.qty % 3 + 1 } else { k.qty };
        // A key with no order and no answer remembered is anyone's: another
        // quantity under it is a new request (docs/api.md §4).
        let mismatch = match (mismatch, remembered, answer) {
            (true, None, Answer::None | Answer::Refused { .. }) => {
                self.model.keys[key].qty = asked;
                false
            }
            _ => mismatch,
        };
        let qty = self.model.keys[key].qty;
        let request = PurchaseRequest {
            user: user_id(user)?,
            key: IdempotencyKey::parse(&format!("k{key}")).map_err(|e| e.to_string())?,
            sale_id: self.model.sales[sale].id,
            quantity: Quantity::parse("quantity", asked.into()).map_err(|e| e.to_string())?,
        };
        let result = self.node()?.purchases.purchase(request).await;
        let faulted = self.plan_fired();
        let fresh = self.model.fresh(user, sale, qty);
        let slot = match &result {
            Ok(p) if p.replayed => 1,
            Ok(_) => 0,
            Err(AppError::Refused(_)) => 2,
            Err(_) => 3,
        };
        self.purchases[slot] += 1;
        if mismatch {
            return match (result, remembered) {
                (Err(AppError::IdempotencyMismatch), Some(_)) => Ok("mismatch".into()),
                (Err(AppError::Unavailable { .. }), _) if faulted => Ok("unavailable".into()),
                // A won key the ledger forgot: the store still holds its
                // order, or the ledger refuses first (docs/api.md §4).
                (Err(AppError::IdempotencyMismatch), None) => Ok("mismatch".into()),
                (Err(AppError::Refused(r)), None) if self.fresh_refusal(user, sale, asked, r) => {
                    Ok(format!("refused {r:?}"))
                }
                (other, _) => Err(format!(
                    "I4: key {key} reused with quantity {asked} answered {}",
                    show(&other)
                )),
            };
        }
        match result {
            Ok(p) => {
                let o = &p.order;
                if o.user_id.as_str() != user_id(user)?.as_str()
                    || o.sale_id != self.model.sales[sale].id
                    || o.quantity.get() != qty
                {
                    return Err(format!("key {key} answered someone else's order {}", o.id));
                }
                match (remembered, answer) {
                    (Some(Ok(order)), _) | (_, Answer::Won(order)) => {
                        if o.id != self.model.orders[order].id || !p.replayed {
                            return Err(format!(
                                "I4: key {key} won o{order} and now answered {} (replayed {})",
                                o.id, p.replayed
                            ));
                        }
                        self.same_status(order, o)?;
                        Ok(format!("replayed o{order}"))
                    }
                    (Some(Err(refusal)), _) => Err(format!(
                        "I4: key {key} was refused {refusal:?} and now won {}",
                        o.id
                    )),
                    (None, _) => {
                        if p.replayed {
                            return Err(format!("key {key} replayed an order it never won"));
                        }
                        if !fresh.win {
                            return Err(format!(
                                "I1/I3: key {key} won {qty} of sale {sale}, {} left, user holds {} (limit {})",
                                self.model.sales[sale].remaining,
                                self.model.holdings[user][sale],
                                self.model.sales[sale].limit
                            ));
                        }
                        let index = self.model.won(key, o.id, o.created_at, o.expires_at)?;
                        Ok(format!("won o{index}"))
                    }
                }
            }
            Err(AppError::Refused(refusal)) => {
                let fresh_ok = self.fresh_refusal(user, sale, qty, refusal);
                let ok = match remembered {
                    Some(Err(first)) => first == refusal,
                    Some(Ok(_)) => false,
                    None => fresh_ok,
                };
                if !ok {
                    return Err(format!(
                        "key {key} refused {refusal:?}: remembered {remembered:?}, fresh {fresh:?}"
                    ));
                }
                if !matches!(answer, Answer::Won(_)) {
                    self.model.refused(key, refusal, now);
                }
                Ok(format!("refused {refusal:?}"))
            }
            Err(AppError::Unavailable { .. }) if faulted => Ok("unavailable".into()),
            Err(other) => Err(format!("key {key} answered {other}")),
        }
    }

    fn fresh_refusal(&self, user: usize, sale: usize, qty: u32, refusal: Refusal) -> bool {
        let fresh = self.model.fresh(user, sale, qty);
        match refusal {
            Refusal::SoldOut => fresh.sold_out,
            Refusal::LimitExceeded => fresh.limit,
            Refusal::SaleNotActive => false,
        }
    }

    fn plan_fired(&self) -> bool {
        // Peeked, not taken: the loop takes it after the step.
        self.plan.crashed() || self.plan_faults() > 0
    }

    fn plan_faults(&self) -> u32 {
        self.plan.peek().faults
    }

    fn same_status(&self, order: usize, seen: &Order) -> Check {
        let model = self.model.orders[order].status;
        match Status::of(seen.status) == model {
            true => Ok(()),
            false => Err(format!(
                "order o{order} is {:?} in the store, {model:?} in the model",
                seen.status
            )),
        }
    }

    async fn cancel(&mut self, order: usize) -> Result<String, String> {
        let o = &self.model.orders[order];
        let (id, status) = (o.id, o.status);
        let caller = self.caller(o.user)?;
        let result = self.node()?.orders.cancel(&caller, id).await;
        let faulted = self.plan_fired();
        match (result, status) {
            (Ok(seen), Status::Open | Status::Cancelled)
                if seen.status == OrderStatus::Cancelled =>
            {
                self.model.transition(order, Status::Cancelled)?;
                Ok("cancelled".into())
            }
            (Err(AppError::InvalidState(_)), Status::Paid) => Ok("refused: paid".into()),
            (Err(AppError::Unavailable { .. }), _) if faulted => Ok("unavailable".into()),
            (other, _) => Err(format!(
                "I7: cancelling o{order} ({status:?}) answered {}",
                show_order(&other)
            )),
        }
    }

    async fn pay(&mut self, order: usize) -> Result<String, String> {
        let o = &self.model.orders[order];
        let (id, status) = (o.id, o.status);
        let caller = self.caller(o.user)?;
        let result = self.node()?.payments.pay(&caller, id).await;
        let faulted = self.plan_fired();
        match (result, status) {
            (Ok(_), Status::Open) => {
                self.model.orders[order].paying = true;
                Ok("payment requested".into())
            }
            (Err(AppError::InvalidState(_)), Status::Paid | Status::Cancelled) => {
                Ok("refused: closed".into())
            }
            (Err(AppError::Unavailable { .. }), _) if faulted => Ok("unavailable".into()),
            (other, _) => Err(format!(
                "I7: paying o{order} ({status:?}) answered {}",
                show_order(&other)
            )),
        }
    }

    /// The provider answers the order's payment in flight, on the signed
    /// webhook.
    async fn answer(&mut self, order: usize, approve: bool) -> Result<String, String> {
        let o = &self.model.orders[order];
        let (id, status) = (o.id, o.status);
        let node = self.node()?;
        let payments = match node.payments.payments_of(id).await {
            Ok(payments) => payments,
            Err(AppError::Unavailable { .. }) if self.plan_fired() => {
                return Ok("unavailable".into());
            }
            Err(err) => return Err(format!("payments of o{order}: {err}")),
        };
        let Some(payment) = payments.iter().find(|p| {
            matches!(
                p.status,
                PaymentStatus::Requested | PaymentStatus::Submitted
            )
        }) else {
            return Err(format!("o{order} has no payment in flight: {payments:?}"));
        };
        let body = serde_json::json!({
            "payment_id": payment.id.to_string(),
            "status": if approve { "approved" } else { "declined" },
            "provider_ref": "sim",
        })
        .to_string();
        let header = signature::sign(WEBHOOK_SECRET, body.as_bytes(), self.now());
        let result = node.payments.confirm(body.as_bytes(), Some(&header)).await;
        let faulted = self.plan_fired();
        let outcome = match (result, status, approve) {
            (Ok(Confirmation::Paid), Status::Open, true) => {
                self.model.transition(order, Status::Paid)?;
                "paid"
            }
            (Ok(Confirmation::RefundRequired), Status::Cancelled, true) => "refund required",
            (Ok(Confirmation::NotPaid), _, false) => "declined",
            (Err(AppError::Unavailable { .. }), _, _) if faulted => return Ok("unavailable".into()),
            (other, _, _) => {
                return Err(format!(
                    "I7: the provider's answer (approve {approve}) on o{order} ({status:?}) gave {other:?}"
                ));
            }
        };
        self.model.orders[order].paying = false;
        Ok(outcome.into())
    }

    /// Time passes; the sweep expires what is due (I6).
    async fn expire(&mut self) -> Result<String, String> {
        self.clock.advance_millis(self.rng.i64(5_000..30_000));
        let now = self.now();
        let due: Vec<usize> = (0..self.model.orders.len())
            .filter(|&i| {
                let o = &self.model.orders[i];
                o.status == Status::Open && o.expires_at <= now
            })
            .collect();
        let mut expired = 0;
        loop {
            match self.node()?.expiry.sweep_once().await {
                Ok(0) => break,
                Ok(n) => expired += n,
                Err(AppError::Unavailable { .. }) if self.plan_fired() => {
                    return Ok("unavailable".into());
                }
                Err(err) => return Err(format!("expiry sweep: {err}")),
            }
        }
        if expired != due.len() {
            return Err(format!(
                "I6: {expired} orders expired, {} were due",
                due.len()
            ));
        }
        for order in due {
            self.model.transition(order, Status::Cancelled)?;
        }
        Ok(format!("expired {expired}"))
    }

    /// Kills the process and starts a new one over the same files.
    async fn restart(&mut self) -> Check {
        if let Some(node) = self.node.take() {
            node.crash().await;
        }
        self.plan.take();
        self.model.restarted();
        self.restarts += 1;
        let node = Node::boot(self.dir, self.clock.clone(), self.plan.clone())
            .await
            .map_err(|e| format!("restart: {e}"))?;
        self.node = Some(node);
        Ok(())
    }

    /// After a fault the answer may not tell what happened: read it from the
    /// store (without faults) and move the model to it, if the move is allowed.
    async fn resolve(&mut self, op: &Op) -> Check {
        let store = self.node()?.store.clone();
        let orders: Vec<usize> = match *op {
            Op::Buy { key } | Op::Replay { key } | Op::Mismatch { key } => {
                let k = &self.model.keys[key];
                let key_text =
                    IdempotencyKey::parse(&format!("k{key}")).map_err(|e| e.to_string())?;
                let stored = store
                    .order_by_key(&user_id(k.user)?, &key_text)
                    .await
                    .map_err(|e| e.to_string())?;
                match (stored, k.answer) {
                    (Some(o), Answer::Won(order)) if o.id == self.model.orders[order].id => {}
                    (Some(o), Answer::Won(order)) => {
                        return Err(format!(
                            "I4: key {key} has o{order} and {} in the store",
                            o.id
                        ));
                    }
                    (Some(o), _) => {
                        if o.quantity.get() != k.qty || o.sale_id != self.model.sales[k.sale].id {
                            return Err(format!("key {key} has another request's order {}", o.id));
                        }
                        self.model.won(key, o.id, o.created_at, o.expires_at)?;
                    }
                    (None, Answer::Won(order)) => {
                        return Err(format!(
                            "I1/I4: accepted order o{order} of key {key} is not in the store"
                        ));
                    }
                    (None, _) => {}
                }
                Vec::new()
            }
            Op::Cancel { order } | Op::Pay { order } | Op::Answer { order, .. } => vec![order],
            Op::Expire => {
                let now = self.now();
                (0..self.model.orders.len())
                    .filter(|&i| {
                        let o = &self.model.orders[i];
                        o.status == Status::Open && o.expires_at <= now
                    })
                    .collect()
            }
        };
        for order in orders {
            let id = self.model.orders[order].id;
            let stored = store
                .order(id)
                .await
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("accepted order o{order} is not in the store"))?;
            self.model.transition(order, Status::of(stored.status))?;
            let payments = store.payments_of(id).await.map_err(|e| e.to_string())?;
            self.model.orders[order].paying = payments.iter().any(|p| {
                matches!(
                    p.status,
                    PaymentStatus::Requested | PaymentStatus::Submitted
                )
            });
        }
        Ok(())
    }

    /// The store and the ledger against the model: stock (I1, I2), orders
    /// per status, and every order changed since the last check (I5–I7).
    async fn check(&mut self) -> Check {
        let node = self.node()?;
        for (index, sale) in self.model.sales.iter().enumerate() {
            let counts = node
                .store
                .sale_counts(sale.id)
                .await
                .map_err(|e| e.to_string())?;
            if counts.sold > sale.quantity || counts.sold + counts.remaining != sale.quantity {
                return Err(format!(
                    "I1: sale {index} of {} sold {} with {} left",
                    sale.quantity, counts.sold, counts.remaining
                ));
            }
            if counts.remaining != sale.remaining {
                return Err(format!(
                    "sale {index}: {} left in the store, {} in the model",
                    counts.remaining, sale.remaining
                ));
            }
            let mut stored = [0u64; 3];
            for (status, n) in &counts.by_status {
                stored[Status::of(*status) as usize] += n;
            }
            let model = self.model.counts(index);
            if stored != model {
                return Err(format!(
                    "sale {index}: orders open/paid/cancelled {stored:?} in the store, {model:?} in the model"
                ));
            }
            let ledger = node
                .ledger
                .remaining(sale.id)
                .await
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("the ledger lost sale {index}"))?;
            let agrees = match self.model.ledger_short {
                true => ledger <= sale.remaining,
                false => ledger == sale.remaining,
            };
            if !agrees {
                return Err(format!(
                    "I2: sale {index} has {ledger} left in the ledger, {} in the store (ledger short: {})",
                    sale.remaining, self.model.ledger_short
                ));
            }
        }
        let mut touched = std::mem::take(&mut self.model.touched);
        touched.sort_unstable();
        touched.dedup();
        self.check_orders(&touched).await
    }

    async fn check_orders(&self, orders: &[usize]) -> Check {
        let store = &self.node()?.store;
        for &order in orders {
            let id = self.model.orders[order].id;
            let stored = store
                .order(id)
                .await
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("I5: accepted order o{order} ({id}) is not in the store"))?;
            self.same_status(order, &stored)?;
        }
        Ok(())
    }

    /// At the end: every order, every won key (I4) and every user's holdings
    /// (I3), read back from the store.
    async fn deep_check(&self) -> Check {
        let all: Vec<usize> = (0..self.model.orders.len()).collect();
        self.check_orders(&all).await?;
        let store = &self.node()?.store;
        for (index, key) in self.model.keys.iter().enumerate() {
            let Answer::Won(order) = key.answer else {
                continue;
            };
            let text = IdempotencyKey::parse(&format!("k{index}")).map_err(|e| e.to_string())?;
            let stored = store
                .order_by_key(&user_id(key.user)?, &text)
                .await
                .map_err(|e| e.to_string())?;
            if stored.map(|o| o.id) != Some(self.model.orders[order].id) {
                return Err(format!(
                    "I4: key {index} does not lead to its order o{order}"
                ));
            }
        }
        for user in 0..self.config.users {
            let orders = store
                .orders_of(&user_id(user)?, None, u32::MAX)
                .await
                .map_err(|e| e.to_string())?;
            let mut held = vec![0u32; self.model.sales.len()];
            for o in orders.iter().filter(|o| o.status.holds_stock()) {
                let sale = self
                    .model
                    .sales
                    .iter()
                    .position(|s| s.id == o.sale_id)
                    .ok_or_else(|| format!("order {} of an unknown sale", o.id))?;
                held[sale] += o.quantity.get();
            }
            for (sale, units) in held.iter().enumerate() {
                if *units > self.model.sales[sale].limit
                    || *units != self.model.holdings[user][sale]
                {
                    return Err(format!(
                        "I3: user {user} holds {units} of sale {sale} in the store, {} in the model (limit {})",
                        self.model.holdings[user][sale], self.model.sales[sale].limit
                    ));
                }
            }
        }
        Ok(())
    }
}

fn user_id(user: usize) -> Result<UserId, String> {
    UserId::parse(format!("u{user}")).map_err(|e| e.to_string())
}

fn show(result: &Result<stampede_app::purchase::Purchased, AppError>) -> String {
    match result {
        Ok(p) => format!("order {} (replayed {})", p.order.id, p.replayed),
        Err(err) => err.to_string(),
    }
}

fn show_order(result: &Result<Order, AppError>) -> String {
    match result {
        Ok(order) => format!("order {:?}", order.status),
        Err(err) => err.to_string(),
    }
}
