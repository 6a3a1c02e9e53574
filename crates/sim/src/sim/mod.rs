//! The simulation loop: random operations by many users, each answer checked
//! against the model, crashes and restarts, and the periodic and final checks.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use stampede_app::auth::Caller;
use stampede_app::ports::{ManualClock, ManualClockHandle};
use stampede_domain::account::Role;
use stampede_domain::catalog::{Product, Sale, SaleRequest};
use stampede_domain::ids::UserId;
use stampede_domain::time::Timestamp;

use crate::faults::{FaultPlan, FaultRates};
use crate::model::{Answer, Model, SaleM};
use crate::node::{Node, open_store};
use crate::trace::Trace;

mod check;
mod ops;

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
                waiting_room: false,
            };
            let sale = Sale::create(&product, &request, now).map_err(|e| e.to_string())?;
            store.insert_sale(&sale).await.map_err(|e| e.to_string())?;
            sales.push(SaleM {
                id: sale.id,
                quantity: sale.quantity.into(),
                limit: sale.per_user_limit.get(),
                remaining: sale.quantity.into(),
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
}

fn user_id(user: usize) -> Result<UserId, String> {
    UserId::parse(format!("u{user}")).map_err(|e| e.to_string())
}
