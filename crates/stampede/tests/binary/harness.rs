//! Starting, killing and stopping the real binary, and a crowd to throw at it.

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use stampede::cli::TokenRole;
use stampede_bus_nats::testing::TestStream;
use stampede_ledger_redis::testing::TestNamespace;
use stampede_store_postgres::testing::TestDatabase;

pub const SECRET: &str = "binary-test-secret-long-enough-for-hs256";
/// Every node of a deployment shares the key sealing webhook secrets.
pub const WEBHOOK_KEY: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// Where a binary keeps its state: a data directory and, in the PostgreSQL
/// run (`crate::ON_POSTGRES`), a fresh database dropped with it. A restart
/// on the same `DataDir` finds the same data.
pub struct DataDir {
    dir: tempfile::TempDir,
    database: Option<TestDatabase>,
    redis: Option<TestNamespace>,
    nats: Option<TestStream>,
}

impl DataDir {
    /// Blocking (tests here are sync and async alike): the database is made
    /// on a thread with its own runtime.
    pub fn new() -> Self {
        // `None` outside CI when a service is down: what is there is used.
        let (database, redis, nats) = if crate::ON_POSTGRES {
            std::thread::spawn(|| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap()
                    .block_on(async {
                        let database = TestDatabase::create().await;
                        let redis = match database.is_some() {
                            true => TestNamespace::create().await,
                            false => None,
                        };
                        let nats = match &redis {
                            Some(redis) => TestStream::create(&redis.name).await,
                            None => None,
                        };
                        (database, redis, nats)
                    })
            })
            .join()
            .unwrap()
        } else {
            (None, None, None)
        };
        Self {
            dir: tempfile::tempdir().unwrap(),
            database,
            redis,
            nats,
        }
    }

    /// A data directory only: the caller points the binary at its own
    /// servers through the environment.
    #[allow(dead_code)] // Used by the cluster-only drills.
    pub fn bare() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
            database: None,
            redis: None,
            nats: None,
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Whether the binary runs in cluster mode (a shared ledger).
    pub fn is_cluster(&self) -> bool {
        self.redis.is_some()
    }

    /// The database URL the binary is given, if any.
    pub fn database_url(&self) -> Option<&str> {
        self.database.as_ref().map(|db| db.url.as_str())
    }
}

/// A command-line tool the tests need from the machine (`scripts/setup.sh`
/// installs them): a failure when missing, never a skipped test.
#[allow(dead_code)] // Used by the tests of deploy/ and the live page.
pub fn require_tool(name: &str) -> Command {
    let found = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(name).is_file()));
    assert!(found, "`{name}` is not installed: run scripts/setup.sh");
    Command::new(name)
}

pub fn token(sub: &str, role: TokenRole) -> String {
    stampede::token::sign(SECRET, sub, role, 3600).unwrap()
}

/// A running `stampede serve`.
pub struct Binary {
    child: Child,
    pub addr: SocketAddr,
    /// Its last [`KEPT_LINES`] JSON log lines.
    logs: Arc<Mutex<VecDeque<Value>>>,
}

/// Log lines a [`Binary`] keeps for its test to read.
const KEPT_LINES: usize = 50_000;

impl Binary {
    /// Starts the binary on port 0 with `data` and waits until it serves.
    pub fn start(data: &DataDir) -> Self {
        Self::start_with(data, &[])
    }

    /// [`start`](Self::start) with more environment.
    pub fn start_with(data: &DataDir, env: &[(&str, &str)]) -> Self {
        let data_dir = data.path();
        let mut command = Command::new(env!("CARGO_BIN_EXE_stampede"));
        if let Some(url) = data.database_url() {
            command.env("STAMPEDE_DATABASE_URL", url);
        }
        if let Some(redis) = &data.redis {
            command.env("STAMPEDE_REDIS_URL", &redis.url);
            command.env("STAMPEDE_NAMESPACE", &redis.name);
        }
        if let Some(nats) = &data.nats {
            command.env("STAMPEDE_NATS_URL", &nats.url);
        }
        if data.redis.is_some() {
            // A killed node's reservations and unacknowledged events come
            // back within seconds, not the production half-minute.
            command.env("STAMPEDE_RESERVATION_TIMEOUT_MS", "2000");
            command.env("STAMPEDE_NATS_ACK_WAIT_MS", "3000");
        }
        command.envs(env.iter().copied());
        let mut child = command
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .env("STAMPEDE_JWT_SECRET", SECRET)
            .env("STAMPEDE_WEBHOOK_SECRET_KEY", WEBHOOK_KEY)
            .env("STAMPEDE_LOG", "info")
            .env("STAMPEDE_LOG_FORMAT", "json")
            .env("STAMPEDE_SHUTDOWN_GRACE_SECS", "10")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawning stampede");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        let logs = Arc::new(Mutex::new(VecDeque::new()));
        let kept = logs.clone();
        // Keep draining the logs so the child never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let Ok(event) = serde_json::from_str::<Value>(&line) else {
                    continue;
                };
                if event["fields"]["message"] == "serving"
                    && let Some(tx) = tx.take()
                {
                    let addr = event["fields"]["addr"].as_str().unwrap_or_default();
                    let _ = tx.send(addr.to_owned());
                }
                let mut kept = kept.lock().unwrap();
                if kept.len() == KEPT_LINES {
                    kept.pop_front();
                }
                kept.push_back(event);
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("stampede did not start serving within a minute");
        Self {
            child,
            addr: addr.parse().expect("bound address"),
            logs,
        }
    }

    /// The JSON log lines it wrote so far (the last [`KEPT_LINES`]).
    #[allow(dead_code)] // Used by the trace tests.
    pub fn logs(&self) -> Vec<Value> {
        self.logs.lock().unwrap().iter().cloned().collect()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGHUP: read the configuration again (its rate-limit rules).
    pub fn hangup(&self) {
        let status = Command::new("kill")
            .args(["-HUP", &self.pid().to_string()])
            .status()
            .expect("kill -HUP");
        assert!(status.success());
    }

    /// SIGKILL: no chance to flush or clean up.
    pub fn kill_9(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaping");
    }

    /// SIGTERM, then wait for the exit (at most a minute).
    pub fn terminate(mut self) -> ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("kill -TERM");
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().expect("waiting") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "stampede did not exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An API client for one binary.
pub struct Api {
    pub client: reqwest::Client,
    pub base: String,
}

impl Api {
    pub fn new(binary: &Binary) -> Self {
        Self {
            client: stampede_outbound::client("stampede-tests").unwrap(),
            base: format!("http://{}", binary.addr),
        }
    }

    pub async fn create_sale(&self, quantity: u64, per_user_limit: u64) -> String {
        self.create_sale_with(quantity, per_user_limit, json!({}))
            .await
    }

    /// A sale with more fields (`extra` is merged into the request).
    pub async fn create_sale_with(
        &self,
        quantity: u64,
        per_user_limit: u64,
        extra: Value,
    ) -> String {
        let admin = token("admin", TokenRole::Admin);
        let product: Value = self
            .client
            .post(format!("{}/api/v1/products", self.base))
            .bearer_auth(&admin)
            .json(
                &json!({"sku": unique_sku(), "name": "Phone", "price_cents": 100, "currency": "EUR"}),
            )
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let sale: Value = self
            .client
            .post(format!("{}/api/v1/sales", self.base))
            .bearer_auth(&admin)
            .json(&{
                let mut body = json!({"product_id": product["id"], "quantity": quantity, "per_user_limit": per_user_limit});
                for (k, v) in extra.as_object().into_iter().flatten() {
                    body[k] = v.clone();
                }
                body
            })
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        sale["id"].as_str().unwrap().to_owned()
    }

    pub async fn purchase(
        &self,
        user: &str,
        sale: &str,
        key: &str,
    ) -> Result<(StatusCode, Value), reqwest::Error> {
        let response = self
            .client
            .post(format!("{}/api/v1/sales/{sale}/purchase", self.base))
            .bearer_auth(token(user, TokenRole::Customer))
            .header("Idempotency-Key", key)
            .json(&json!({"quantity": 1}))
            .send()
            .await?;
        let status = response.status();
        Ok((status, response.json().await?))
    }

    /// The node's `/metrics` text.
    pub async fn metrics(&self) -> String {
        let response = self.client.get(format!("{}/metrics", self.base)).send();
        response.await.unwrap().text().await.unwrap()
    }

    pub async fn stats(&self, sale: &str) -> Value {
        self.client
            .get(format!("{}/api/v1/sales/{sale}/stats", self.base))
            .bearer_auth(token("admin", TokenRole::Admin))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    pub async fn order(&self, user: &str, id: &str) -> (StatusCode, Value) {
        let response = self
            .client
            .get(format!("{}/api/v1/orders/{id}", self.base))
            .bearer_auth(token(user, TokenRole::Customer))
            .send()
            .await
            .unwrap();
        (response.status(), response.json().await.unwrap())
    }

    /// `POST /orders/{id}/pay` as `user`.
    pub async fn pay(&self, user: &str, id: &str) -> (StatusCode, Value) {
        let response = self
            .client
            .post(format!("{}/api/v1/orders/{id}/pay", self.base))
            .bearer_auth(token(user, TokenRole::Customer))
            .send()
            .await
            .unwrap();
        (response.status(), response.json().await.unwrap())
    }

    pub async fn orders_of(&self, user: &str) -> Vec<Value> {
        let page: Value = self
            .client
            .get(format!("{}/api/v1/orders?limit=100", self.base))
            .bearer_auth(token(user, TokenRole::Customer))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        page["items"].as_array().unwrap().clone()
    }
}

/// What each (user, key) was answered, for requests that got an answer.
pub type Answers = Arc<Mutex<HashMap<(String, String), (StatusCode, Value)>>>;

/// Fires `users × keys` purchases at once; answers are recorded as they come.
/// Returns the tasks (which end with an error when the server dies) and the answers.
pub fn crowd(
    api: &Arc<Api>,
    sale: &str,
    users: usize,
    keys: usize,
) -> (Vec<tokio::task::JoinHandle<()>>, Answers) {
    crowd_with_keys(api, sale, users, keys, "key-")
}

/// [`crowd`] with keys named `<prefix><n>`.
pub fn crowd_with_keys(
    api: &Arc<Api>,
    sale: &str,
    users: usize,
    keys: usize,
    prefix: &'static str,
) -> (Vec<tokio::task::JoinHandle<()>>, Answers) {
    let answers: Answers = Arc::default();
    let mut tasks = Vec::new();
    for user in 0..users {
        for key in 0..keys {
            let api = api.clone();
            let sale = sale.to_owned();
            let answers = answers.clone();
            tasks.push(tokio::spawn(async move {
                let (user, key) = (format!("buyer-{user}"), format!("{prefix}{key}"));
                if let Ok(answer) = api.purchase(&user, &sale, &key).await {
                    answers.lock().unwrap().insert((user, key), answer);
                }
            }));
        }
    }
    (tasks, answers)
}

/// Waits until `answers` holds at least `n` answers with `status`.
pub async fn wait_for(answers: &Answers, status: StatusCode, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let count = answers
            .lock()
            .unwrap()
            .values()
            .filter(|(s, _)| *s == status)
            .count();
        if count >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "only {count} answers with {status} after a minute"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

impl Api {
    /// Subscribes `url` to `types`; returns the subscription id.
    pub async fn subscribe(&self, url: &str, types: &[&str]) -> String {
        let subscription: Value = self
            .client
            .post(format!("{}/api/v1/webhooks", self.base))
            .bearer_auth(token("admin", TokenRole::Admin))
            .json(&json!({"url": url, "event_types": types}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        subscription["id"].as_str().unwrap().to_owned()
    }

    /// Every delivery of a subscription (all pages).
    pub async fn deliveries(&self, subscription: &str) -> Vec<Value> {
        let mut all = Vec::new();
        let mut cursor = String::new();
        loop {
            let page: Value = self
                .client
                .get(format!(
                    "{}/api/v1/webhooks/{subscription}/deliveries?limit=100&cursor={cursor}",
                    self.base
                ))
                .bearer_auth(token("admin", TokenRole::Admin))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            all.extend(page["items"].as_array().unwrap().iter().cloned());
            match page["next_cursor"].as_str() {
                Some(next) => cursor = next.to_owned(),
                None => return all,
            }
        }
    }
}

/// Polls `check` every 50 ms until it returns `Some`, for at most `secs`.
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn unique_sku() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "SKU-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}
