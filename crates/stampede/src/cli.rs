//! The command line of docs/api.md §10. Every `serve` flag also reads a `STAMPEDE_*`
//! environment variable and a key of the same name in the `--config` file;
//! flags win over the environment, which wins over the file.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "stampede",
    version,
    about = "A flash-sale order platform in one binary"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service (embedded mode: SQLite and in-process components).
    Serve(Box<ServeArgs>),
    /// Print a signed JWT for a user.
    Token(TokenArgs),
    /// Load-test a running Stampede (`bench flash-sale`), then audit the sale.
    Bench(stampede_bench::cli::BenchArgs),
    /// Check a sale on a running Stampede against the contract (no oversell,
    /// ledger = database, per-user limits); exits 1 on a violation.
    Audit(Box<stampede_bench::cli::AuditArgs>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RoleArg {
    /// Serve the API and run the background workers.
    All,
    /// Serve the API only (cluster mode).
    Api,
    /// Run the background workers only (cluster mode).
    Worker,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Json,
    Pretty,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RateLimitsArg {
    /// The config file's `[[rate_limits]]`, or the built-in per-user purchase limit.
    Default,
    /// No rate limits (load tests from few users; not for production).
    Off,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SqliteSync {
    /// fsync on every commit: a 2xx survives power loss.
    Full,
    /// Survives a crash of the process, not of the machine.
    Normal,
}

#[derive(Debug, Clone, Default, Args)]
pub struct ServeArgs {
    /// TOML file with settings (keys as the flags, with underscores).
    #[arg(long, env = "STAMPEDE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, env = "STAMPEDE_LISTEN", value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Directory of the SQLite database and the generated JWT secret [default: ./stampede-data].
    #[arg(long, env = "STAMPEDE_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// What this node does [default: all].
    #[arg(long, env = "STAMPEDE_ROLE", value_enum)]
    pub role: Option<RoleArg>,
    /// HS256 secret for tokens; without one, a secret is generated and kept in the data directory.
    #[arg(
        long,
        env = "STAMPEDE_JWT_SECRET",
        hide_env_values = true,
        value_name = "SECRET"
    )]
    pub jwt_secret: Option<String>,
    /// PostgreSQL URL (cluster mode).
    #[arg(
        long,
        env = "STAMPEDE_DATABASE_URL",
        hide_env_values = true,
        value_name = "URL"
    )]
    pub database_url: Option<String>,
    /// Redis URL (cluster mode).
    #[arg(
        long,
        env = "STAMPEDE_REDIS_URL",
        hide_env_values = true,
        value_name = "URL"
    )]
    pub redis_url: Option<String>,
    /// NATS URL (cluster mode).
    #[arg(
        long,
        env = "STAMPEDE_NATS_URL",
        hide_env_values = true,
        value_name = "URL"
    )]
    pub nats_url: Option<String>,
    /// Prefix of every Redis key, stream and subject [default: stampede].
    #[arg(long, env = "STAMPEDE_NAMESPACE")]
    pub namespace: Option<String>,
    /// Log filter, e.g. `info` or `stampede=debug,info` [default: info].
    #[arg(long, env = "STAMPEDE_LOG", value_name = "FILTER")]
    pub log: Option<String>,
    /// Log format [default: pretty on a terminal, json otherwise].
    #[arg(long, env = "STAMPEDE_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// Largest request body in bytes [default: 1048576].
    #[arg(long, env = "STAMPEDE_MAX_BODY_BYTES", value_name = "BYTES")]
    pub max_body_bytes: Option<usize>,
    /// SQLite durability [default: full].
    #[arg(long, env = "STAMPEDE_SQLITE_SYNCHRONOUS", value_enum)]
    pub sqlite_synchronous: Option<SqliteSync>,
    /// PostgreSQL connections per node [default: 16].
    #[arg(long, env = "STAMPEDE_DB_POOL_SIZE", value_name = "N")]
    pub db_pool_size: Option<usize>,
    /// PostgreSQL aborts statements running longer [default: 10000].
    #[arg(long, env = "STAMPEDE_DB_STATEMENT_TIMEOUT_MS", value_name = "MS")]
    pub db_statement_timeout_ms: Option<u64>,
    /// JetStream redelivers an event a worker took but did not acknowledge after this [default: 30000].
    #[arg(long, env = "STAMPEDE_NATS_ACK_WAIT_MS", value_name = "MS")]
    pub nats_ack_wait_ms: Option<u64>,
    /// A ledger reservation older than this with no committed order is taken back (cluster mode) [default: 30000].
    #[arg(long, env = "STAMPEDE_RESERVATION_TIMEOUT_MS", value_name = "MS")]
    pub reservation_timeout_ms: Option<u64>,
    /// Replicas of the JetStream stream when Stampede creates it [default: 1; 3 in production].
    #[arg(long, env = "STAMPEDE_NATS_REPLICAS", value_name = "N")]
    pub nats_replicas: Option<usize>,
    /// Longest wait for a free PostgreSQL connection before answering 503 [default: 5000].
    #[arg(long, env = "STAMPEDE_DB_ACQUIRE_TIMEOUT_MS", value_name = "MS")]
    pub db_acquire_timeout_ms: Option<u64>,
    /// Reserved orders that may wait for a commit before purchases get 503 [default: 8192].
    #[arg(long, env = "STAMPEDE_COMMIT_QUEUE_CAPACITY", value_name = "N")]
    pub commit_queue_capacity: Option<usize>,
    /// Most orders in one group commit [default: 512].
    #[arg(long, env = "STAMPEDE_COMMIT_MAX_BATCH", value_name = "N")]
    pub commit_max_batch: Option<usize>,
    /// Group commits in flight at once [default: 2].
    #[arg(long, env = "STAMPEDE_COMMIT_WORKERS", value_name = "N")]
    pub commit_workers: Option<usize>,
    /// Lifetime of tokens from POST /api/v1/sessions [default: 3600].
    #[arg(long, env = "STAMPEDE_SESSION_TTL_SECS", value_name = "SECS")]
    pub session_ttl_secs: Option<u32>,
    /// How long purchase answers are remembered per Idempotency-Key, at least [default: 86400].
    #[arg(long, env = "STAMPEDE_IDEMPOTENCY_RETENTION_SECS", value_name = "SECS")]
    pub idempotency_retention_secs: Option<u32>,
    /// Most purchase answers remembered in memory [default: 1000000].
    #[arg(long, env = "STAMPEDE_IDEMPOTENCY_CAPACITY", value_name = "N")]
    pub idempotency_capacity: Option<usize>,
    /// Longest wait for in-flight requests on shutdown [default: 30].
    #[arg(long, env = "STAMPEDE_SHUTDOWN_GRACE_SECS", value_name = "SECS")]
    pub shutdown_grace_secs: Option<u32>,
    /// Base URL at which this node is reachable, for the payment provider's
    /// callbacks [default: http://<listen address>].
    #[arg(long, env = "STAMPEDE_PUBLIC_URL", value_name = "URL")]
    pub public_url: Option<String>,
    /// Secret of the payment provider's webhook signatures; generated in the data directory when unset.
    #[arg(
        long,
        env = "STAMPEDE_PAYMENT_WEBHOOK_SECRET",
        hide_env_values = true,
        value_name = "SECRET"
    )]
    pub payment_webhook_secret: Option<String>,
    /// Longest wait for one call to the payment provider [default: 2000].
    #[arg(long, env = "STAMPEDE_PAYMENT_TIMEOUT_MS", value_name = "MS")]
    pub payment_timeout_ms: Option<u64>,
    /// Failure rate (percent) that opens the payment provider's breaker [default: 50].
    #[arg(
        long,
        env = "STAMPEDE_PAYMENT_BREAKER_FAILURE_RATE",
        value_name = "PERCENT"
    )]
    pub payment_breaker_failure_rate: Option<f64>,
    /// Calls that count as slow for the payment provider's breaker [default: 2000].
    #[arg(long, env = "STAMPEDE_PAYMENT_BREAKER_SLOW_MS", value_name = "MS")]
    pub payment_breaker_slow_ms: Option<u64>,
    /// Slow-call rate (percent) that opens the payment provider's breaker [default: 100].
    #[arg(
        long,
        env = "STAMPEDE_PAYMENT_BREAKER_SLOW_RATE",
        value_name = "PERCENT"
    )]
    pub payment_breaker_slow_rate: Option<f64>,
    /// How long the payment provider's breaker stays open [default: 10].
    #[arg(long, env = "STAMPEDE_PAYMENT_BREAKER_OPEN_SECS", value_name = "SECS")]
    pub payment_breaker_open_secs: Option<u64>,
    /// How often workers queue again the payments still waiting to be sent
    /// [default: 30000].
    #[arg(long, env = "STAMPEDE_PAYMENT_SWEEP_INTERVAL_MS", value_name = "MS")]
    pub payment_sweep_interval_ms: Option<u64>,
    /// How long a payment waits to be sent before the sweep queues it again
    /// [default: 10000].
    #[arg(long, env = "STAMPEDE_PAYMENT_SWEEP_AFTER_MS", value_name = "MS")]
    pub payment_sweep_after_ms: Option<u64>,
    /// Simulated provider: fastest charge call [default: 5].
    #[arg(long, env = "STAMPEDE_PAYMENT_SIM_LATENCY_MIN_MS", value_name = "MS")]
    pub payment_sim_latency_min_ms: Option<u64>,
    /// Simulated provider: slowest charge call [default: 20].
    #[arg(long, env = "STAMPEDE_PAYMENT_SIM_LATENCY_MAX_MS", value_name = "MS")]
    pub payment_sim_latency_max_ms: Option<u64>,
    /// Simulated provider: share of payments declined, 0 to 1 [default: 0].
    #[arg(long, env = "STAMPEDE_PAYMENT_SIM_DECLINE_RATE", value_name = "RATE")]
    pub payment_sim_decline_rate: Option<f64>,
    /// Simulated provider: share of charge calls that fail, 0 to 1 [default: 0].
    #[arg(long, env = "STAMPEDE_PAYMENT_SIM_ERROR_RATE", value_name = "RATE")]
    pub payment_sim_error_rate: Option<f64>,
    /// Simulated provider: delay before it confirms on the webhook [default: 100].
    #[arg(long, env = "STAMPEDE_PAYMENT_SIM_CONFIRM_DELAY_MS", value_name = "MS")]
    pub payment_sim_confirm_delay_ms: Option<u64>,
    /// Attempts to deliver a webhook before it is dead-lettered [default: 8].
    #[arg(long, env = "STAMPEDE_WEBHOOK_MAX_ATTEMPTS", value_name = "N")]
    pub webhook_max_attempts: Option<u32>,
    /// Longest wait for a webhook endpoint's answer [default: 5000].
    #[arg(long, env = "STAMPEDE_WEBHOOK_TIMEOUT_MS", value_name = "MS")]
    pub webhook_timeout_ms: Option<u64>,
    /// First delay between webhook attempts; it doubles (full jitter) up to 10 minutes [default: 1000].
    #[arg(long, env = "STAMPEDE_WEBHOOK_BACKOFF_MS", value_name = "MS")]
    pub webhook_backoff_ms: Option<u64>,
    /// How often unpaid orders past their payment window are expired [default: 250].
    #[arg(long, env = "STAMPEDE_EXPIRY_INTERVAL_MS", value_name = "MS")]
    pub expiry_interval_ms: Option<u64>,
    /// How long product and sale reads stay cached (±10% jitter) [default: 30000].
    #[arg(long, env = "STAMPEDE_CACHE_TTL_MS", value_name = "MS")]
    pub cache_ttl_ms: Option<u64>,
    /// How long an unknown product or sale id is remembered as unknown [default: 5000].
    #[arg(long, env = "STAMPEDE_CACHE_NEGATIVE_TTL_MS", value_name = "MS")]
    pub cache_negative_ttl_ms: Option<u64>,
    /// Most entries per cache [default: 100000].
    #[arg(long, env = "STAMPEDE_CACHE_CAPACITY", value_name = "N")]
    pub cache_capacity: Option<u64>,
    /// `default` (the built-in rules, or the config file's `[[rate_limits]]`) or `off` [default: default].
    #[arg(long, env = "STAMPEDE_RATE_LIMITS", value_enum)]
    pub rate_limits: Option<RateLimitsArg>,
    /// Longest wait for Redis on a shared rate limit before the rule's fallback (cluster mode) [default: 50].
    #[arg(long, env = "STAMPEDE_RATE_LIMIT_TIMEOUT_MS", value_name = "MS")]
    pub rate_limit_timeout_ms: Option<u64>,
    /// The default rule: purchase attempts per user per second (burst as many) [default: 20].
    #[arg(long, env = "STAMPEDE_PURCHASES_PER_USER_PER_SEC", value_name = "N")]
    pub purchases_per_user_per_sec: Option<u32>,
    /// Proxies whose X-Forwarded-For is believed: comma-separated addresses or CIDRs [default: none].
    #[arg(long, env = "STAMPEDE_TRUSTED_PROXIES", value_name = "LIST")]
    pub trusted_proxies: Option<String>,
    /// Each request's deadline [default: 10000].
    #[arg(long, env = "STAMPEDE_REQUEST_TIMEOUT_MS", value_name = "MS")]
    pub request_timeout_ms: Option<u64>,
    /// The longest deadline a client may ask for with `Request-Timeout: <seconds>` [default: 60000].
    #[arg(long, env = "STAMPEDE_MAX_REQUEST_TIMEOUT_MS", value_name = "MS")]
    pub max_request_timeout_ms: Option<u64>,
    /// Upper bound of the adaptive limit on requests in flight; 0 turns it off [default: 4096].
    #[arg(long, env = "STAMPEDE_MAX_IN_FLIGHT", value_name = "N")]
    pub max_in_flight: Option<u32>,
    /// Lower bound of the adaptive limit on requests in flight [default: 32].
    #[arg(long, env = "STAMPEDE_MIN_IN_FLIGHT", value_name = "N")]
    pub min_in_flight: Option<u32>,
    /// A request slower than this counts against the adaptive limit [default: 250].
    #[arg(long, env = "STAMPEDE_IN_FLIGHT_LATENCY_TARGET_MS", value_name = "MS")]
    pub in_flight_latency_target_ms: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TokenRole {
    Customer,
    Admin,
}

#[derive(Debug, Clone, Args)]
pub struct TokenArgs {
    /// The user id (`sub` claim): any non-empty string up to 128 bytes.
    #[arg(long)]
    pub sub: String,
    #[arg(long, value_enum, default_value = "customer")]
    pub role: TokenRole,
    /// Lifetime in seconds.
    #[arg(long, default_value_t = 3600)]
    pub ttl: u32,
    /// Where `stampede serve` keeps its generated secret (used without STAMPEDE_JWT_SECRET).
    #[arg(
        long,
        env = "STAMPEDE_DATA_DIR",
        default_value = "./stampede-data",
        value_name = "DIR"
    )]
    pub data_dir: PathBuf,
    #[arg(
        long,
        env = "STAMPEDE_JWT_SECRET",
        hide_env_values = true,
        value_name = "SECRET"
    )]
    pub jwt_secret: Option<String>,
}
