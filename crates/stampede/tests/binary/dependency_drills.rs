//! Dependency fault drills (cluster mode only): one node on its own private
//! PostgreSQL, Redis and NATS, each behind a faulty proxy. For each
//! dependency, five faults in turn, each mid-sale: added latency,
//! connection resets, a blackhole (through the proxy), SIGSTOP then
//! SIGCONT, and kill -9 then a restart (of the server itself). Under each:
//! purchases are answered (202, 409 or a clean `503` problem with
//! `Retry-After`, never a hang), `/readyz` comes back to 200 on its own
//! once the fault ends, every 202's order exists, and nothing is sold twice.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use stampede::cli::TokenRole;
use stampede_contract::faults::{CuttableProxy, Fault};
use stampede_contract::servers::{Kind, PrivateServer};

use crate::harness::{Api, Binary, DataDir, eventually, token};

/// Units per phase's sale: fewer than the phase's buyers, so a sale sells
/// out and an oversell would show.
const STOCK: u64 = 12;
/// Buyers before the fault, then during it.
const BEFORE: usize = 4;
const DURING: usize = 12;
/// The node's request deadline: short, so a fault costs the drill seconds.
const DEADLINE_MS: &str = "2000";
/// A request not answered in this long hangs: the drill's hang guard, far
/// past the deadline (not a latency expectation).
const HANG_GUARD: Duration = Duration::from_secs(60);

/// One fault of a drill.
#[derive(Clone, Copy, Debug)]
enum Drill {
    Latency,
    Reset,
    Blackhole,
    Freeze,
    Kill,
}

/// The node and its private servers, each behind a proxy.
struct Deployment {
    servers: HashMap<&'static str, (PrivateServer, CuttableProxy)>,
    shopper: Arc<Shopper>,
    api: Api,
    _node: Binary,
    _dir: DataDir,
}

impl Deployment {
    /// `None` when a server binary is missing outside CI.
    async fn start() -> Option<Self> {
        let mut servers = HashMap::new();
        for (name, kind) in [
            ("postgres", Kind::Postgres),
            ("redis", Kind::Redis),
            ("nats", Kind::Nats),
        ] {
            let server = tokio::task::spawn_blocking(move || PrivateServer::start(kind))
                .await
                .unwrap()?;
            let proxy = CuttableProxy::to(&server.addr()).await;
            servers.insert(name, (server, proxy));
        }
        let url = |name: &str| {
            let (server, proxy) = &servers[name];
            server.url_via(&proxy.addr)
        };
        let (database, redis, nats) = (url("postgres"), url("redis"), url("nats"));
        let dir = DataDir::bare();
        let node = Binary::start_with(
            &dir,
            &[
                ("STAMPEDE_DATABASE_URL", &database),
                ("STAMPEDE_REDIS_URL", &redis),
                ("STAMPEDE_NATS_URL", &nats),
                ("STAMPEDE_NAMESPACE", "drill"),
                ("STAMPEDE_REQUEST_TIMEOUT_MS", DEADLINE_MS),
                ("STAMPEDE_RESERVATION_TIMEOUT_MS", "2000"),
                ("STAMPEDE_NATS_ACK_WAIT_MS", "3000"),
            ],
        );
        let api = Api::new(&node);
        let shopper = Arc::new(Shopper {
            client: reqwest::Client::builder()
                .timeout(HANG_GUARD)
                .build()
                .unwrap(),
            base: api.base.clone(),
        });
        Some(Self {
            servers,
            shopper,
            api,
            _node: node,
            _dir: dir,
        })
    }

    fn server(&mut self, name: &str) -> &mut (PrivateServer, CuttableProxy) {
        self.servers.get_mut(name).unwrap()
    }

    fn inject(&mut self, name: &str, drill: Drill) {
        let (server, proxy) = self.server(name);
        match drill {
            Drill::Latency => proxy.set(Fault::Latency(Duration::from_millis(300))),
            Drill::Reset => proxy.set(Fault::Reset),
            Drill::Blackhole => proxy.set(Fault::Blackhole),
            Drill::Freeze => server.freeze(),
            // Waiting for the processes to go blocks: off the runtime.
            Drill::Kill => tokio::task::block_in_place(|| server.kill_9()),
        }
    }

    fn lift(&mut self, name: &str, drill: Drill) {
        let (server, proxy) = self.server(name);
        match drill {
            Drill::Latency | Drill::Reset | Drill::Blackhole => proxy.heal(),
            Drill::Freeze => server.thaw(),
            Drill::Kill => tokio::task::block_in_place(|| server.restart()),
        }
    }
}

/// A client whose every request has the hang guard as its timeout.
struct Shopper {
    client: reqwest::Client,
    base: String,
}

impl Shopper {
    async fn readyz(&self) -> StatusCode {
        let url = format!("{}/readyz", self.base);
        match self.client.get(url).send().await {
            Ok(response) => response.status(),
            Err(err) => panic!("/readyz did not answer: {err}"),
        }
    }

    /// One purchase with the buyer's one key; the answer must come before
    /// the hang guard and be clean.
    async fn purchase(&self, sale: &str, user: &str) -> Answer {
        let response = self
            .client
            .post(format!("{}/api/v1/sales/{sale}/purchase", self.base))
            .bearer_auth(token(user, TokenRole::Customer))
            .header("Idempotency-Key", format!("{user}-key"))
            .json(&json!({"quantity": 1}))
            .send()
            .await
            .unwrap_or_else(|err| panic!("{user}'s purchase hung or failed: {err}"));
        let status = response.status();
        let retry_after = response.headers().contains_key("retry-after");
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let body: Value = response.json().await.unwrap();
        match status {
            StatusCode::ACCEPTED => {}
            StatusCode::CONFLICT => assert!(
                body["type"]
                    .as_str()
                    .unwrap_or_default()
                    .ends_with("sold-out"),
                "{user}: {body}"
            ),
            StatusCode::SERVICE_UNAVAILABLE => {
                assert!(retry_after, "{user}: 503 without Retry-After: {body}");
                assert_eq!(content_type, "application/problem+json", "{user}: {body}");
            }
            other => panic!("{user}: unclean answer {other}: {body}"),
        }
        Answer { status, body }
    }
}

impl Shopper {
    /// Retries the buyer's key while it is refused for the fault, slowly
    /// enough to stay under the per-user rate limit (20 a second).
    async fn buy_once_recovered(&self, sale: &str, user: &str) -> Answer {
        let deadline = std::time::Instant::now() + HANG_GUARD;
        loop {
            let answer = self.purchase(sale, user).await;
            if answer.status != StatusCode::SERVICE_UNAVAILABLE {
                return answer;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{user} is still refused after the fault: {}",
                answer.body
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

struct Answer {
    status: StatusCode,
    body: Value,
}

/// Every fault in turn on dependency `name`, each on a sale of its own;
/// with `ledger`, the ledger must also come to equal the database.
async fn drill_dependency(name: &'static str, ledger: Ledger) {
    let Some(mut deployment) = Deployment::start().await else {
        return; // A server binary is missing outside CI: nothing to drill.
    };
    for drill in [
        Drill::Kill,
        Drill::Freeze,
        Drill::Latency,
        Drill::Reset,
        Drill::Blackhole,
    ] {
        phase(&mut deployment, name, drill, ledger).await;
    }
}

/// One fault mid-sale, then the audit.
async fn phase(deployment: &mut Deployment, name: &'static str, drill: Drill, ledger: Ledger) {
    let sale = deployment.api.create_sale(STOCK, 1).await;
    let shopper = deployment.shopper.clone();
    let buyer = move |i: usize| format!("{name}-{drill:?}-{i}");
    let mut answers: HashMap<String, Answer> = HashMap::new();
    for i in 0..BEFORE {
        let answer = shopper.purchase(&sale, &buyer(i)).await;
        assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.body);
        answers.insert(buyer(i), answer);
    }

    // The crowd buys while the fault holds; every answer must come.
    eprintln!("{name} {drill:?}: the fault begins");
    deployment.inject(name, drill);
    let mut crowd = tokio::task::JoinSet::new();
    for i in BEFORE..BEFORE + DURING {
        let (shopper, sale, user) = (shopper.clone(), sale.clone(), buyer(i));
        crowd.spawn(async move {
            let answer = shopper.purchase(&sale, &user).await;
            (user, answer)
        });
    }
    while let Some(joined) = crowd.join_next().await {
        let (user, answer) = joined.unwrap();
        answers.insert(user, answer);
    }
    let refused = answers
        .values()
        .filter(|a| a.status == StatusCode::SERVICE_UNAVAILABLE)
        .count();
    // Every fault but latency makes the dependency fail its probe: proof
    // the fault was on.
    let ready_under_fault = shopper.readyz().await;
    eprintln!(
        "{name} {drill:?}: {refused} of {DURING} refused (503); /readyz {ready_under_fault} under the fault"
    );
    if !matches!(drill, Drill::Latency) {
        assert_eq!(
            ready_under_fault,
            StatusCode::SERVICE_UNAVAILABLE,
            "{name} {drill:?}: the node looked ready under the fault"
        );
    }
    deployment.lift(name, drill);
    eprintln!("{name} {drill:?}: the fault ends");

    // Readiness comes back on its own.
    eventually(90, "/readyz to return to 200", || async {
        (shopper.readyz().await == StatusCode::OK).then_some(())
    })
    .await;
    audit(&shopper, &deployment.api, &sale, &answers, &buyer, ledger).await;
    ledger_equals_database(&deployment.api, &sale, &format!("{name} {drill:?}"), ledger).await;
}

/// After the fault: every 202's order exists and its key still answers
/// with it; refused buyers can buy again, no one holds two orders, and the
/// sale sells at most its stock.
async fn audit(
    shopper: &Shopper,
    api: &Api,
    sale: &str,
    answers: &HashMap<String, Answer>,
    buyer: &impl Fn(usize) -> String,
    ledger: Ledger,
) {
    let mut orders: HashMap<String, String> = HashMap::new();
    for (user, answer) in answers {
        let replay = shopper.buy_once_recovered(sale, user).await;
        if answer.status == StatusCode::ACCEPTED {
            let id = answer.body["id"].as_str().unwrap();
            let (status, order) = api.order(user, id).await;
            assert_eq!(status, StatusCode::OK, "{user}'s 202 order {id} was lost");
            assert_eq!(order["user_id"], user.as_str());
            assert_eq!(
                replay.status,
                StatusCode::ACCEPTED,
                "{user}: {}",
                replay.body
            );
            assert_eq!(
                replay.body["id"], id,
                "{user}'s key now names another order"
            );
        }
        if replay.status == StatusCode::ACCEPTED {
            orders.insert(user.clone(), replay.body["id"].as_str().unwrap().to_owned());
        }
    }
    for i in 0..BEFORE + DURING {
        let user = buyer(i);
        let held: Vec<_> = api
            .orders_of(&user)
            .await
            .into_iter()
            .filter(|order| order["sale_id"] == sale && order["status"] != "cancelled")
            .collect();
        assert!(
            held.len() <= 1,
            "{user} holds {} orders: sold twice",
            held.len()
        );
    }
    let stats = api.stats(sale).await;
    let sold = stats["sold"].as_u64().unwrap();
    assert!(sold <= STOCK, "oversold: {stats}");
    if ledger == Ledger::Assert {
        // Every unit sold answers its buyer's key with its order. A key the
        // reconciler forgot (the PostgreSQL drift in docs/reliability.md)
        // may answer sold-out instead.
        assert_eq!(
            sold,
            orders.len() as u64,
            "orders and answers disagree: {stats}"
        );
    }
}

/// Whether a drill asserts that the ledger comes to equal the database
/// (I2) or only reports how far apart they stay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ledger {
    Assert,
    Report,
}

/// Reservations a fault left behind are settled by the reconciler: then
/// the ledger's remaining stock is the database's. `Report` gives the
/// reconciler a few of its rounds and prints what is left apart.
async fn ledger_equals_database(api: &Api, sale: &str, what: &str, ledger: Ledger) {
    let wait = match ledger {
        Ledger::Assert => Duration::from_secs(30),
        Ledger::Report => Duration::from_secs(8),
    };
    let deadline = std::time::Instant::now() + wait;
    loop {
        let stats = api.stats(sale).await;
        let sold = stats["sold"].as_u64().unwrap();
        if stats["remaining"].as_u64().unwrap() == STOCK - sold.min(STOCK) {
            return;
        }
        if std::time::Instant::now() >= deadline {
            match ledger {
                Ledger::Assert => {
                    panic!("{what}: the ledger never came to equal the database: {stats}")
                }
                Ledger::Report => {
                    eprintln!("{what}: DRIFT: the ledger differs from the database: {stats}");
                    return;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_faults_mid_sale_keep_every_promise() {
    drill_dependency("postgres", Ledger::Report).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a commit still in flight when the reconciler abandons its reservation \
    (or whose COMMIT reached PostgreSQL before the connection failed) leaves the \
    ledger with units the database sold: see docs/reliability.md"]
async fn postgres_faults_mid_sale_leave_the_ledger_equal_to_the_database() {
    drill_dependency("postgres", Ledger::Assert).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_faults_mid_sale_keep_every_promise() {
    drill_dependency("redis", Ledger::Assert).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_faults_mid_sale_keep_every_promise() {
    drill_dependency("nats", Ledger::Assert).await;
}
