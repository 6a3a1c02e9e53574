//! `spawn_app()`: the real server on port 0 with a fresh data directory, and a
//! typed client for the tests.
//!
//! The same tests run twice: in the `api` binary on the embedded SQLite
//! store, and in the `api-postgres` binary (`crate::ON_POSTGRES`) in cluster
//! mode: a fresh PostgreSQL database, and a fresh namespace in Redis (the
//! stock ledger) and NATS (the event bus) per server deployment, all
//! dropped with it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::{Value, json};
use stampede::cli::TokenRole;
use stampede::config::{Config, Secret, Settings};
use stampede::startup::Server;
use stampede_app::App;
use stampede_bus_nats::testing::TestStream;
use stampede_ledger_redis::testing::TestNamespace;
use stampede_store_postgres::testing::TestDatabase;
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const SECRET: &str = "test-secret-that-is-long-enough-for-hs256";
/// The payment provider's webhook secret in tests.
pub const PAYMENT_SECRET: &str = "test-payment-webhook-secret";

/// Where a server keeps its state: its data directory and, in the
/// PostgreSQL run, its database. A restarted server gets the same one.
pub struct Deployment {
    pub dir: TempDir,
    pub database: Option<TestDatabase>,
    pub redis: Option<TestNamespace>,
    pub nats: Option<TestStream>,
}

impl Deployment {
    pub async fn new() -> Self {
        // `None` outside CI when a service is down: the test then runs on
        // what is there rather than not at all.
        let database = match crate::ON_POSTGRES {
            true => TestDatabase::create().await,
            false => None,
        };
        let redis = match database.is_some() {
            true => TestNamespace::create().await,
            false => None,
        };
        let nats = match &redis {
            Some(redis) => TestStream::create(&redis.name).await,
            None => None,
        };
        Self {
            dir: tempfile::tempdir().unwrap(),
            database,
            redis,
            nats,
        }
    }

    /// Points `config` at this deployment's services.
    pub fn apply(&self, config: &mut Config) {
        config.database_url = self.database.as_ref().map(|db| db.url.clone());
        if let Some(redis) = &self.redis {
            config.redis_url = Some(redis.url.clone());
            config.namespace = redis.name.clone();
        }
        config.nats_url = self.nats.as_ref().map(|nats| nats.url.clone());
        if self.redis.is_some() {
            // A test's dead reservations and unacknowledged events come back
            // within seconds, not the production half-minute.
            config.reservation_timeout = Duration::from_secs(2);
            config.nats_ack_wait = Duration::from_secs(3);
        }
    }
}

pub struct TestApp {
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    pub app: Arc<App>,
    pub dir: TempDir,
    pub database: Option<TestDatabase>,
    pub redis: Option<TestNamespace>,
    pub nats: Option<TestStream>,
    stop: Option<oneshot::Sender<()>>,
    serving: Option<JoinHandle<anyhow::Result<()>>>,
}

/// Settings for a test server: port 0, its own data directory, quiet logs.
pub fn test_config(dir: &TempDir) -> Config {
    let mut config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().to_path_buf(),
        jwt_secret: Some(Secret::new(SECRET.into())),
        log: "warn".into(),
        shutdown_grace_secs: 5,
        payment_webhook_secret: Some(Secret::new(PAYMENT_SECRET.into())),
        expiry_interval: Duration::from_millis(50),
        ..Config::default()
    };
    config.webhook.backoff.base = Duration::from_millis(20);
    config
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// A server whose HTTP settings come from a TOML settings file with `text`.
pub async fn spawn_app_with_http_file(text: &str) -> TestApp {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), text).unwrap();
    let sources = stampede::config::sources::Sources {
        file: Some(file.path().to_path_buf()),
        ..Default::default()
    };
    let (from_file, _) = Config::layered(&sources).unwrap();
    spawn_app_with(move |config| config.http = from_file.http).await
}

pub async fn spawn_app_with(customise: impl FnOnce(&mut Config)) -> TestApp {
    spawn_app_in(Deployment::new().await, customise).await
}

/// Starts a server on an existing deployment (to restart on the same data).
pub async fn spawn_app_in(deployment: Deployment, customise: impl FnOnce(&mut Config)) -> TestApp {
    let mut config = test_config(&deployment.dir);
    deployment.apply(&mut config);
    customise(&mut config);
    let Deployment {
        dir,
        database,
        redis,
        nats,
    } = deployment;
    let settings = Settings::new(config).unwrap();
    stampede::logging::init(&settings.log).unwrap();
    let server = Server::build(settings).await.unwrap();
    let addr = server.local_addr();
    let app = server.app();
    let (stop, stopped) = oneshot::channel::<()>();
    let serving = tokio::spawn(server.run_until_stopped(async {
        let _ = stopped.await;
    }));
    TestApp {
        addr,
        client: stampede_outbound::client("stampede-tests").unwrap(),
        app,
        dir,
        database,
        redis,
        nats,
        stop: Some(stop),
        serving: Some(serving),
    }
}

pub fn token(sub: &str, role: TokenRole) -> String {
    stampede::token::sign(SECRET, sub, role, 3600).unwrap()
}

pub fn admin() -> String {
    token("admin", TokenRole::Admin)
}

pub fn customer(name: &str) -> String {
    token(name, TokenRole::Customer)
}

/// Asserts a problem+json answer with this status and slug; returns its body.
pub async fn assert_problem(response: Response, status: StatusCode, slug: &str) -> Value {
    assert_eq!(response.status(), status, "status");
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    assert_eq!(content_type, "application/problem+json", "content type");
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["type"].as_str().unwrap(),
        format!("https://stampede.dev/problems/{slug}"),
        "problem {body}"
    );
    assert_eq!(body["status"], status.as_u16());
    assert!(body["title"].is_string());
    body
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn request(&self, method: Method, path: &str, token: Option<&str>) -> RequestBuilder {
        let builder = self.client.request(method, self.url(path));
        match token {
            Some(token) => builder.bearer_auth(token),
            None => builder,
        }
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Response {
        self.request(Method::GET, path, token).send().await.unwrap()
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: &Value) -> Response {
        self.request(Method::POST, path, token)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn create_product(&self, sku: &str) -> Value {
        let response = self
            .post(
                "/api/v1/products",
                Some(&admin()),
                &json!({"sku": sku, "name": "Phone X", "price_cents": 49900, "currency": "EUR"}),
            )
            .await;
        assert_eq!(response.status(), StatusCode::CREATED);
        response.json().await.unwrap()
    }

    /// A product and an active sale of it; `extra` overrides sale fields.
    pub async fn create_sale(&self, quantity: u64, per_user_limit: u64, extra: Value) -> Value {
        let product = self.create_product(&format!("SKU-{}", uuid_like())).await;
        let mut body = json!({
            "product_id": product["id"],
            "quantity": quantity,
            "per_user_limit": per_user_limit,
        });
        if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
            for (k, v) in extra {
                body.insert(k.clone(), v.clone());
            }
        }
        let response = self.post("/api/v1/sales", Some(&admin()), &body).await;
        assert_eq!(
            response.status(),
            StatusCode::CREATED,
            "{:?}",
            response.text().await
        );
        response.json().await.unwrap()
    }

    /// A fresh sale of 5 (one per user) and `user`'s order of one unit in it.
    pub async fn sale_and_order(&self, user: &str) -> (Value, Value) {
        let sale = self.create_sale(5, 1, json!({})).await;
        let response = self
            .purchase(&customer(user), sale["id"].as_str().unwrap(), "k", 1)
            .await;
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        (sale, response.json().await.unwrap())
    }

    pub async fn purchase(&self, token: &str, sale_id: &str, key: &str, quantity: u64) -> Response {
        self.request(
            Method::POST,
            &format!("/api/v1/sales/{sale_id}/purchase"),
            Some(token),
        )
        .header("Idempotency-Key", key)
        .json(&json!({ "quantity": quantity }))
        .send()
        .await
        .unwrap()
    }

    /// `user` buys one unit of `sale` under a fresh key, showing `shown`
    /// (`(header, value)`: a waiting-room ticket, a purchase token) if any.
    pub async fn buy_showing(
        &self,
        sale: &str,
        user: &str,
        shown: Option<(&str, &str)>,
    ) -> Response {
        let mut request = self
            .request(
                Method::POST,
                &format!("/api/v1/sales/{sale}/purchase"),
                Some(&customer(user)),
            )
            .header("Idempotency-Key", uuid_like())
            .json(&json!({ "quantity": 1 }));
        if let Some((name, value)) = shown {
            request = request.header(name, value);
        }
        request.send().await.unwrap()
    }

    pub async fn sale(&self, sale_id: &str) -> Value {
        let response = self.get(&format!("/api/v1/sales/{sale_id}"), None).await;
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.unwrap()
    }

    pub async fn stats(&self, sale_id: &str) -> Value {
        let response = self
            .get(&format!("/api/v1/sales/{sale_id}/stats"), Some(&admin()))
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.unwrap()
    }

    /// Stops the server gracefully and waits for it; returns its deployment.
    pub async fn stop(mut self) -> Deployment {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(serving) = self.serving.take() {
            serving.await.unwrap().unwrap();
        }
        Deployment {
            dir: self.dir,
            database: self.database,
            redis: self.redis,
            nats: self.nats,
        }
    }

    /// Runs one statement on the server's database behind its back (to make
    /// states the API cannot, or to break data); `$1` is `param`. Returns the
    /// rows changed.
    pub async fn sql(&self, statement: &str, param: &str) -> u64 {
        match &self.database {
            Some(database) => {
                let client = database.client().await;
                client.execute(statement, &[&param]).await.unwrap()
            }
            None => {
                let db = rusqlite::Connection::open(self.dir.path().join("stampede.db")).unwrap();
                db.busy_timeout(std::time::Duration::from_secs(5)).unwrap();
                db.execute(statement, [param]).unwrap() as u64
            }
        }
    }

    /// Holds the database's write lock on sales from outside until the guard
    /// is released: the next group commit waits for it.
    pub async fn hold_sales_lock(&self) -> SalesLock {
        match &self.database {
            Some(database) => {
                let client = database.client().await;
                client
                    .batch_execute("BEGIN; LOCK TABLE sales IN EXCLUSIVE MODE")
                    .await
                    .unwrap();
                SalesLock::Postgres(client)
            }
            None => {
                let db = rusqlite::Connection::open(self.dir.path().join("stampede.db")).unwrap();
                db.execute_batch("BEGIN IMMEDIATE").unwrap();
                SalesLock::Sqlite(db)
            }
        }
    }
}

/// A transaction holding a write lock, from [`TestApp::hold_sales_lock`].
pub enum SalesLock {
    Sqlite(rusqlite::Connection),
    Postgres(tokio_postgres::Client),
}

impl SalesLock {
    pub async fn release(self) {
        match self {
            Self::Sqlite(db) => db.execute_batch("COMMIT").unwrap(),
            Self::Postgres(client) => client.batch_execute("COMMIT").await.unwrap(),
        }
    }
}

/// A unique-enough suffix for SKUs and keys.
pub fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{nanos:x}-{}", N.fetch_add(1, Ordering::Relaxed))
}

/// Polls `check` every 20 ms until it returns `Some`, for at most `secs`.
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

impl TestApp {
    pub async fn order(&self, token: &str, id: &str) -> Value {
        let response = self.get(&format!("/api/v1/orders/{id}"), Some(token)).await;
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.unwrap()
    }

    pub async fn pay(&self, token: &str, id: &str) -> Response {
        self.request(
            Method::POST,
            &format!("/api/v1/orders/{id}/pay"),
            Some(token),
        )
        .send()
        .await
        .unwrap()
    }

    pub async fn cancel(&self, token: &str, id: &str) -> Response {
        self.request(
            Method::POST,
            &format!("/api/v1/orders/{id}/cancel"),
            Some(token),
        )
        .send()
        .await
        .unwrap()
    }

    pub async fn detail(&self, token: &str, id: &str) -> Value {
        let response = self
            .get(&format!("/api/v1/orders/{id}/detail"), Some(token))
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.unwrap()
    }

    /// Posts a provider answer to the payment webhook, signed as the provider would.
    pub async fn provider_says(&self, body: &Value) -> Response {
        let body = serde_json::to_vec(body).unwrap();
        let signature = stampede_app::auth::signature::sign(
            PAYMENT_SECRET.as_bytes(),
            &body,
            stampede_domain::time::Timestamp::now(),
        );
        self.request(Method::POST, "/api/v1/payments/webhook", None)
            .header("content-type", "application/json")
            .header("stampede-signature", signature)
            .body(body)
            .send()
            .await
            .unwrap()
    }

    /// Waits until the order has this status.
    pub async fn wait_for_status(&self, token: &str, id: &str, status: &str) -> Value {
        eventually(10, &format!("order {id} to become {status}"), || async {
            let order = self.order(token, id).await;
            (order["status"] == status).then_some(order)
        })
        .await
    }
}
