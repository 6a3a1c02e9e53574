//! Crash drills (`stampede drill`): each round starts a fresh deployment of
//! the real binary, sends a crowd that buys, replays, pays and cancels with
//! its history recorded, kills one node with SIGKILL at a seeded random
//! moment and restarts it at once, waits for recovery, and then runs the
//! audit ([`crate::audit`]) and the history check ([`crate::check`]).
//!
//! Round `i` of `--seed S` uses seed `S + i` for its choices (which node,
//! when), so `--seed S+i --rounds 1` replays them; the machine's timing is
//! not replayed. A failed round keeps its directory: node logs and history.
//!
//! Victims today are the nodes. Dependencies (PostgreSQL, Redis, NATS on
//! private servers) join as more [`Victim`]s: their kill and restart go in
//! [`Round::kill`] and [`Round::restart`].

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use hyper::{Method, StatusCode};
use stampede_bus_nats::testing::TestStream;
use stampede_ledger_redis::testing::TestNamespace;
use stampede_store_postgres::testing::TestDatabase;

use crate::audit::{self, AuditPlan};
use crate::check;
use crate::cli::{DrillArgs, DrillMode, FlashSaleArgs, ServerArgs};
use crate::client::{Api, Target};
use crate::history::{History, Op, Record};
use crate::users::Minter;

/// Longest wait for a node to serve, or to be ready after a restart.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Longest wait for a cluster's ledger to settle a killed node's reservations.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);

/// `stampede drill`: runs the rounds, prints one line each and a summary;
/// exits 1 if a round failed.
pub fn drill(args: DrillArgs) -> anyhow::Result<ExitCode> {
    // Checked before any server starts, not in the first round's crowd.
    if !(0.0..=1.0).contains(&args.pay_cancel_ratio) {
        bail!("--pay-cancel-ratio must be between 0 and 1");
    }
    let seed = args.seed.unwrap_or_else(|| fastrand::u64(..1 << 48));
    let binary = match &args.binary {
        Some(path) => path.clone(),
        None => std::env::current_exe().context("finding the stampede binary")?,
    };
    let base = match &args.work_dir {
        Some(dir) => dir.clone(),
        None => std::env::temp_dir().join(format!("stampede-drill-{}", std::process::id())),
    };
    std::fs::create_dir_all(&base).with_context(|| format!("creating {}", base.display()))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    println!(
        "drill: {} rounds, mode {:?}, seed {seed}, binary {}",
        args.rounds,
        args.mode,
        binary.display()
    );
    let started = Instant::now();
    let mut failed = Vec::new();
    for i in 0..args.rounds {
        let round_seed = seed.wrapping_add(i);
        let dir = base.join(format!("round-{round_seed}"));
        let result = run_round(&runtime, &args, &binary, round_seed, &dir);
        match result {
            Ok(line) if line.ok => {
                println!("round {i} seed {round_seed}: ok, {}", line.text);
                let _ = std::fs::remove_dir_all(&dir);
            }
            Ok(line) => {
                println!("round {i} seed {round_seed}: FAILED, {}", line.text);
                for violation in &line.violations {
                    println!("  - {violation}");
                }
                println!("  kept {}", dir.display());
                failed.push(round_seed);
            }
            Err(err) => {
                println!("round {i} seed {round_seed}: FAILED to run: {err:#}");
                println!("  kept {}", dir.display());
                failed.push(round_seed);
            }
        }
        let _ = std::io::stdout().flush();
    }
    println!(
        "drill: {} rounds, {} failed, seed {seed}, {:.1} s{}",
        args.rounds,
        failed.len(),
        started.elapsed().as_secs_f64(),
        if failed.is_empty() {
            String::new()
        } else {
            format!("; failed seeds {failed:?}")
        }
    );
    if failed.is_empty() {
        let _ = std::fs::remove_dir(&base);
        Ok(ExitCode::SUCCESS)
    } else {
        Ok(ExitCode::from(crate::EXIT_VIOLATION))
    }
}

/// One round's verdict.
struct RoundLine {
    ok: bool,
    text: String,
    violations: Vec<String>,
}

/// What a round can kill.
#[derive(Debug, Clone, Copy)]
pub enum Victim {
    /// The node at this index of the deployment.
    Node(usize),
}

/// The services a cluster round owns: dropped (database, keys, streams
/// deleted) at the end of the round.
struct Backing {
    _database: TestDatabase,
    _redis: TestNamespace,
    _nats: TestStream,
    env: Vec<(String, String)>,
}

async fn backing() -> anyhow::Result<Backing> {
    let database = TestDatabase::create()
        .await
        .ok_or_else(|| anyhow!("cluster drills need PostgreSQL (STAMPEDE_TEST_POSTGRES_URL)"))?;
    let redis = TestNamespace::create()
        .await
        .ok_or_else(|| anyhow!("cluster drills need Redis (REDIS_URL)"))?;
    let nats = TestStream::create(&redis.name)
        .await
        .ok_or_else(|| anyhow!("cluster drills need NATS (NATS_URL)"))?;
    let env = vec![
        ("STAMPEDE_DATABASE_URL".to_owned(), database.url.clone()),
        ("STAMPEDE_REDIS_URL".to_owned(), redis.url.clone()),
        ("STAMPEDE_NAMESPACE".to_owned(), redis.name.clone()),
        ("STAMPEDE_NATS_URL".to_owned(), nats.url.clone()),
        // A killed node's reservations and unacknowledged events come back
        // within seconds, not the production half-minute.
        (
            "STAMPEDE_RESERVATION_TIMEOUT_MS".to_owned(),
            "2000".to_owned(),
        ),
        ("STAMPEDE_NATS_ACK_WAIT_MS".to_owned(), "3000".to_owned()),
    ];
    Ok(Backing {
        _database: database,
        _redis: redis,
        _nats: nats,
        env,
    })
}

/// A running `stampede serve`.
struct Node {
    name: String,
    role: &'static str,
    child: Child,
    addr: SocketAddr,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How to start the nodes of one round.
struct Launcher {
    binary: PathBuf,
    dir: PathBuf,
    env: Vec<(String, String)>,
}

impl Launcher {
    /// Starts `name` on `listen` and waits until it serves. Its logs go to
    /// `<dir>/<name>.log` (appended across restarts).
    fn start(&self, name: &str, role: &'static str, listen: &str) -> anyhow::Result<Node> {
        let log_path = self.dir.join(format!("{name}.log"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("opening {}", log_path.display()))?;
        let mut child = Command::new(&self.binary)
            .args(["serve", "--listen", listen, "--data-dir"])
            .arg(self.dir.join("data"))
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("STAMPEDE_ROLE", role)
            .env("STAMPEDE_LOG", "info")
            .env("STAMPEDE_LOG_FORMAT", "json")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log.try_clone().context("log file")?)
            .spawn()
            .with_context(|| format!("starting {}", self.binary.display()))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow!("no stdout to read"))?;
        let (tx, rx) = std::sync::mpsc::channel();
        // Keep draining the logs so the child never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut log = log;
            let mut tx = Some(tx);
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = writeln!(log, "{line}");
                if tx.is_some()
                    && let Ok(event) = serde_json::from_str::<serde_json::Value>(&line)
                    && event["fields"]["message"] == "serving"
                    && let Some(tx) = tx.take()
                {
                    let addr = event["fields"]["addr"].as_str().unwrap_or_default();
                    let _ = tx.send(addr.to_owned());
                }
            }
        });
        let mut node = Node {
            name: name.to_owned(),
            role,
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        let addr = rx.recv_timeout(START_TIMEOUT).map_err(|_| {
            anyhow!(
                "{name} did not serve within {START_TIMEOUT:?} (see {})",
                log_path.display()
            )
        })?;
        node.addr = addr
            .parse()
            .with_context(|| format!("{name} logged the address `{addr}`"))?;
        Ok(node)
    }
}

/// A round in progress: its nodes and its history.
struct Round {
    launcher: Launcher,
    nodes: Vec<Option<Node>>,
    history: Arc<History>,
    /// From the kill to the node serving again.
    down_for: Duration,
}

impl Round {
    /// SIGKILL, and a crash marker in the history.
    fn kill(&mut self, victim: Victim) -> anyhow::Result<Node> {
        let Victim::Node(index) = victim;
        let mut node = self.nodes[index]
            .take()
            .ok_or_else(|| anyhow!("node {index} is not running"))?;
        node.child.kill().context("SIGKILL")?;
        let at = Instant::now();
        node.child.wait().context("reaping the killed node")?;
        self.history.write(&Record {
            op: Op::Crash,
            user: String::new(),
            sale: String::new(),
            key: None,
            quantity: None,
            invoke_us: self.history.micros(at),
            complete_us: None,
            status: None,
            outcome: "crash".to_owned(),
            order: None,
            order_status: None,
            node: Some(node.name.clone()),
        })?;
        Ok(node)
    }

    /// The killed node again, on its old address (so the crowd's
    /// connections find it).
    fn restart(&mut self, victim: Victim, dead: Node) -> anyhow::Result<()> {
        let Victim::Node(index) = victim;
        let node = self
            .launcher
            .start(&dead.name, dead.role, &dead.addr.to_string())?;
        self.nodes[index] = Some(node);
        Ok(())
    }

    fn api_targets(&self) -> Vec<String> {
        self.nodes
            .iter()
            .flatten()
            .filter(|n| n.role != "worker")
            .map(|n| format!("http://{}", n.addr))
            .collect()
    }
}

fn run_round(
    runtime: &tokio::runtime::Runtime,
    args: &DrillArgs,
    binary: &Path,
    seed: u64,
    dir: &Path,
) -> anyhow::Result<RoundLine> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut rng = fastrand::Rng::with_seed(seed);
    let secret = format!("drill-secret-{:032x}", rng.u128(..));
    let backing = match args.mode {
        DrillMode::Embedded => None,
        DrillMode::Cluster => Some(runtime.block_on(backing())?),
    };
    let mut env: Vec<(String, String)> = vec![
        ("STAMPEDE_JWT_SECRET".to_owned(), secret.clone()),
        (
            "STAMPEDE_WEBHOOK_SECRET_KEY".to_owned(),
            format!("{:032x}{:032x}", rng.u128(..), rng.u128(..)),
        ),
        ("STAMPEDE_SHUTDOWN_GRACE_SECS".to_owned(), "5".to_owned()),
    ];
    env.extend(backing.iter().flat_map(|b| b.env.iter().cloned()));
    let launcher = Launcher {
        binary: binary.to_owned(),
        dir: dir.to_owned(),
        env,
    };
    let layout: &[(&str, &'static str)] = match args.mode {
        DrillMode::Embedded => &[("node", "all")],
        DrillMode::Cluster => &[("api-a", "api"), ("api-b", "api"), ("worker", "worker")],
    };
    let mut nodes = Vec::new();
    for (name, role) in layout {
        nodes.push(Some(launcher.start(name, role, "127.0.0.1:0")?));
    }
    let history_path = dir.join("history.jsonl");
    let mut round = Round {
        launcher,
        nodes,
        history: Arc::new(History::create(&history_path)?),
        down_for: Duration::ZERO,
    };

    let victim = Victim::Node(rng.usize(..layout.len()));
    // Counted from the start of the crowd's clock.
    let kill_after = args.duration.mul_f64(rng.f64());
    let targets = round.api_targets();
    let bench = FlashSaleArgs {
        scenario: None,
        server: ServerArgs {
            target: targets[0].clone(),
            jwt_secret: Some(secret.clone()),
            data_dir: dir.join("data"),
        },
        sale: None,
        users: args.users,
        stock: args.stock,
        per_user_limit: args.per_user_limit,
        connections: args.connections,
        rate: None,
        duration: Some(args.duration),
        requests: None,
        replay_ratio: 0.2,
        quantity: 1,
        json: false,
        room_lead_ms: 0,
        no_ceiling: true,
        no_audit: true,
        timeout: Duration::from_secs(5),
        threads: None,
        server_pid: None,
        audit_concurrency: 16,
        also_targets: targets[1..].to_vec(),
        pay_cancel_ratio: args.pay_cancel_ratio,
        history: None,
        report: None,
    };

    let history = round.history.clone();
    let (report, round) = runtime.block_on(async move {
        let crowd =
            tokio::spawn(async move { crate::flash_sale_with(&bench, Some(history)).await });
        let chaos = tokio::task::spawn_blocking(move || -> anyhow::Result<Round> {
            let waiting = Instant::now();
            let started = loop {
                if let Some(at) = round.history.started() {
                    break at;
                }
                if waiting.elapsed() > START_TIMEOUT {
                    bail!("the crowd did not start within {START_TIMEOUT:?}");
                }
                std::thread::sleep(Duration::from_millis(5));
            };
            std::thread::sleep((started + kill_after).saturating_duration_since(Instant::now()));
            let dead = round.kill(victim)?;
            let killed = Instant::now();
            round.restart(victim, dead)?;
            round.down_for = killed.elapsed();
            Ok(round)
        });
        let report = crowd.await.context("the crowd task")?;
        let round = chaos.await.context("the kill task")??;
        anyhow::Ok((report, round))
    })?;
    let (report, _) = report.context("the crowd")?;
    let killed = match victim {
        Victim::Node(i) => layout[i].0,
    };

    let recovery = Instant::now();
    let target = runtime.block_on(Target::resolve(&round.api_targets()[0]))?;
    let minter = Minter::new(secret.as_bytes());
    runtime.block_on(async {
        for node in round.nodes.iter().flatten() {
            ready(&node.addr).await?;
        }
        settled(&target, &minter, &report.sale_id).await
    })?;
    let recovered_in = recovery.elapsed();
    let down_for = round.down_for;

    let records = crate::history::read(&history_path)?;
    let plan = AuditPlan {
        sale_id: report.sale_id.clone(),
        users: (0..args.users)
            .map(|i| format!("{}{i}", report.user_prefix))
            .collect(),
        won: records
            .iter()
            .filter(|r| r.op == Op::Purchase && r.outcome == "won")
            .filter_map(|r| Some((r.user.clone(), r.order.clone()?, r.quantity?)))
            .collect(),
        cancel_sent: records
            .iter()
            .filter(|r| r.op == Op::Cancel)
            .filter_map(|r| r.order.clone())
            .collect(),
        exclusive: true,
        answers_complete: false,
        sold_out_seen: false,
        concurrency: 16,
    };
    let (audit, checked) = runtime.block_on(async {
        let audit = audit::run(&target, &minter, &plan).await?;
        let checked = check::check_live(&target, &minter, &records, 16).await?;
        anyhow::Ok((audit, checked))
    })?;
    drop(round);
    drop(backing);

    let mut violations: Vec<String> = audit
        .violations
        .iter()
        .map(|v| format!("audit: {v}"))
        .collect();
    violations.extend(checked.violations.iter().map(|v| format!("history: {v}")));
    Ok(RoundLine {
        ok: violations.is_empty(),
        text: format!(
            "killed {killed} {} ms into the crowd, serving again {} ms later, all ready {} ms \
             after the crowd; {}",
            kill_after.as_millis(),
            down_for.as_millis(),
            recovered_in.as_millis(),
            checked.summary()
        ),
        violations,
    })
}

/// Waits until the node at `addr` answers `/readyz` with 200.
async fn ready(addr: &SocketAddr) -> anyhow::Result<()> {
    let target = Target::resolve(&format!("http://{addr}")).await?;
    let mut api = Api::new(target);
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Ok(answer) = api.call(Method::GET, "/readyz", None, None).await
            && answer.status == StatusCode::OK
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{addr} was not ready within {START_TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the sale's ledger equals its database (a cluster's reconciler
/// settles a killed node's reservations after their timeout). Past the
/// deadline the audit reports what is left.
async fn settled(target: &Target, minter: &Minter, sale_id: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    loop {
        let sale = audit::sale_state(target, minter, sale_id).await?;
        if i128::from(sale.remaining) == i128::from(sale.quantity) - i128::from(sale.sold)
            || Instant::now() > deadline
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
