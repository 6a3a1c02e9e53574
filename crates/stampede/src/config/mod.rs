//! Typed settings, resolved once at start: defaults, then the TOML file, then
//! the environment and flags (clap merges those two, flags first). A bad value
//! stops the start with a message naming the setting, its flag and variable.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Deserialize;
use stampede_app::AppSettings;
use stampede_app::auth::PasswordSettings;
use stampede_app::cache::CacheSettings;
use stampede_app::ledger::KeyMemorySettings;
use stampede_app::payments::PaymentSettings;
use stampede_app::purchase::CommitSettings;
use stampede_app::webhooks::WebhookSettings;
use stampede_flow::adaptive::AdaptiveConfig;
use stampede_flow::breaker::BreakerConfig;
use stampede_flow::retry::RetryPolicy;
use stampede_http::HttpSettings;
use stampede_http::client_ip::TrustedProxies;
use stampede_http::limits::{BackendName, RateLimitRule};
use stampede_http::protect::ProtectSettings;
use stampede_outbound::SimulatedSettings;
use stampede_store_postgres::PgSettings;

use crate::cli::{LogFormat, RateLimitsArg, RoleArg, ServeArgs, SqliteSync};

/// A value that must never be printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Self {
        Self(value)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// The `--config` file: the same keys as the flags, with underscores.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    listen: Option<SocketAddr>,
    data_dir: Option<PathBuf>,
    role: Option<RoleArg>,
    jwt_secret: Option<String>,
    database_url: Option<String>,
    redis_url: Option<String>,
    nats_url: Option<String>,
    namespace: Option<String>,
    log: Option<String>,
    log_format: Option<LogFormat>,
    max_body_bytes: Option<usize>,
    sqlite_synchronous: Option<SqliteSync>,
    db_pool_size: Option<usize>,
    db_statement_timeout_ms: Option<u64>,
    db_acquire_timeout_ms: Option<u64>,
    nats_replicas: Option<usize>,
    nats_ack_wait_ms: Option<u64>,
    reservation_timeout_ms: Option<u64>,
    commit_queue_capacity: Option<usize>,
    commit_max_batch: Option<usize>,
    commit_workers: Option<usize>,
    session_ttl_secs: Option<u32>,
    idempotency_retention_secs: Option<u32>,
    idempotency_capacity: Option<usize>,
    shutdown_grace_secs: Option<u32>,
    public_url: Option<String>,
    payment_webhook_secret: Option<String>,
    payment_timeout_ms: Option<u64>,
    payment_breaker_failure_rate: Option<f64>,
    payment_breaker_slow_ms: Option<u64>,
    payment_breaker_slow_rate: Option<f64>,
    payment_breaker_open_secs: Option<u64>,
    payment_sweep_interval_ms: Option<u64>,
    payment_sweep_after_ms: Option<u64>,
    payment_sim_latency_min_ms: Option<u64>,
    payment_sim_latency_max_ms: Option<u64>,
    payment_sim_decline_rate: Option<f64>,
    payment_sim_error_rate: Option<f64>,
    payment_sim_confirm_delay_ms: Option<u64>,
    webhook_max_attempts: Option<u32>,
    webhook_timeout_ms: Option<u64>,
    webhook_backoff_ms: Option<u64>,
    expiry_interval_ms: Option<u64>,
    cache_ttl_ms: Option<u64>,
    cache_negative_ttl_ms: Option<u64>,
    cache_capacity: Option<u64>,
    rate_limits: Option<Vec<RateLimitRule>>,
    rate_limit_timeout_ms: Option<u64>,
    purchases_per_user_per_sec: Option<u32>,
    trusted_proxies: Option<String>,
    request_timeout_ms: Option<u64>,
    max_request_timeout_ms: Option<u64>,
    max_in_flight: Option<u32>,
    min_in_flight: Option<u32>,
    in_flight_latency_target_ms: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct LogSettings {
    pub filter: String,
    /// `None`: pretty on a terminal, JSON otherwise.
    pub format: Option<LogFormat>,
}

/// Everything `stampede serve` needs, validated.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub role: RoleArg,
    pub jwt_secret: Option<Secret>,
    pub namespace: String,
    pub log: LogSettings,
    pub http: HttpSettings,
    pub sqlite_synchronous: SqliteSync,
    /// PostgreSQL (cluster mode); `None`: SQLite in the data directory.
    pub database: Option<PgSettings>,
    /// Redis (cluster mode): the stock ledger, shared rate limits and the
    /// catalog's shared cache; `None`: all three in process memory.
    pub redis_url: Option<String>,
    /// The NATS JetStream bus (cluster mode); `None`: the outbox table is
    /// the bus.
    pub nats_url: Option<String>,
    /// Replicas of the JetStream stream when it is created.
    pub nats_replicas: usize,
    /// How long JetStream waits for a worker's acknowledgement.
    pub nats_ack_wait: Duration,
    pub app: AppSettings,
    pub key_memory: KeyMemorySettings,
    pub shutdown_grace: Duration,
    /// Where the payment provider calls back; `None`: this node's address.
    pub public_url: Option<String>,
    /// `None`: generated and kept in the data directory.
    pub payment_webhook_secret: Option<Secret>,
    pub payment_sim: SimulatedSettings,
    /// Things worth a warning once logging is up.
    pub warnings: Vec<String>,
}

fn invalid(name: &str, message: impl fmt::Display) -> anyhow::Error {
    let flag = name.replace('_', "-");
    let var = format!("STAMPEDE_{}", name.to_uppercase());
    anyhow::anyhow!("invalid setting `{name}` (--{flag}, {var}): {message}")
}

fn within<T: PartialOrd + fmt::Display + Copy>(
    name: &str,
    value: T,
    min: T,
    max: T,
) -> anyhow::Result<T> {
    if value < min || value > max {
        return Err(invalid(
            name,
            format!("must be from {min} to {max}, got {value}"),
        ));
    }
    Ok(value)
}

/// PostgreSQL settings when a database URL is given.
fn database_settings(args: &ServeArgs, file: &FileSettings) -> anyhow::Result<Option<PgSettings>> {
    let Some(url) = args.database_url.clone().or(file.database_url.clone()) else {
        return Ok(None);
    };
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(invalid(
            "database_url",
            "must be a postgres:// or postgresql:// URL",
        ));
    }
    let mut settings = PgSettings::new(url);
    settings.pool_size = within(
        "db_pool_size",
        args.db_pool_size.or(file.db_pool_size).unwrap_or(16),
        1,
        1024,
    )?;
    let millis = |name, flag: Option<u64>, file: Option<u64>, default| {
        within(name, flag.or(file).unwrap_or(default), 100, 600_000).map(Duration::from_millis)
    };
    settings.statement_timeout = millis(
        "db_statement_timeout_ms",
        args.db_statement_timeout_ms,
        file.db_statement_timeout_ms,
        10_000,
    )?;
    settings.acquire_timeout = millis(
        "db_acquire_timeout_ms",
        args.db_acquire_timeout_ms,
        file.db_acquire_timeout_ms,
        5_000,
    )?;
    Ok(Some(settings))
}

fn read_file(path: &Path) -> anyhow::Result<FileSettings> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("in config file {}", path.display()))
}

impl Settings {
    /// Resolves and validates the settings of `stampede serve`.
    pub fn load(args: &ServeArgs) -> anyhow::Result<Self> {
        let file = match &args.config {
            Some(path) => read_file(path)?,
            None => FileSettings::default(),
        };
        let mut warnings = Vec::new();
        // First: it only borrows the file, which later settings move out of.
        let protect = protect_settings(args, &file)?;

        let role = args.role.or(file.role).unwrap_or(RoleArg::All);
        let database = database_settings(args, &file)?;
        let redis_url = args.redis_url.clone().or(file.redis_url);
        if let Some(url) = &redis_url {
            if database.is_none() {
                return Err(invalid(
                    "redis_url",
                    "the Redis ledger is rebuilt from PostgreSQL: set database_url too",
                ));
            }
            if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
                return Err(invalid("redis_url", "must be a redis:// or rediss:// URL"));
            }
        } else if let Some(rule) = protect
            .rate_limits
            .iter()
            .find(|rule| rule.backend == Some(BackendName::Shared))
        {
            return Err(invalid(
                "rate_limits",
                format!(
                    "rate limit `{}` is shared, which needs redis_url (or say backend = \"local\")",
                    rule.name
                ),
            ));
        }
        let nats_url = args.nats_url.clone().or(file.nats_url);
        if let Some(url) = &nats_url {
            if database.is_none() {
                return Err(invalid(
                    "nats_url",
                    "the NATS bus relays the PostgreSQL outbox: set database_url too",
                ));
            }
            if !url.split(',').all(|u| u.trim().starts_with("nats://")) {
                return Err(invalid("nats_url", "must be nats:// URLs, comma-separated"));
            }
        }
        let nats_replicas = within(
            "nats_replicas",
            args.nats_replicas.or(file.nats_replicas).unwrap_or(1),
            1,
            5,
        )?;
        let nats_ack_wait = Duration::from_millis(within(
            "nats_ack_wait_ms",
            args.nats_ack_wait_ms
                .or(file.nats_ack_wait_ms)
                .unwrap_or(30_000),
            1_000,
            3_600_000,
        )?);
        let reservation_timeout = Duration::from_millis(within(
            "reservation_timeout_ms",
            args.reservation_timeout_ms
                .or(file.reservation_timeout_ms)
                .unwrap_or(30_000),
            1_000,
            3_600_000,
        )?);
        if role != RoleArg::All && (database.is_none() || redis_url.is_none()) {
            return Err(invalid(
                "role",
                "`api` and `worker` nodes share the database and the stock ledger: \
                 set database_url and redis_url",
            ));
        }

        let jwt_secret = args.jwt_secret.clone().or(file.jwt_secret);
        if let Some(secret) = &jwt_secret {
            if secret.is_empty() {
                return Err(invalid("jwt_secret", "must not be empty"));
            }
            if secret.len() < 32 {
                warnings.push(
                    "STAMPEDE_JWT_SECRET is shorter than 32 bytes; use a longer random secret"
                        .into(),
                );
            }
        }

        let namespace = args
            .namespace
            .clone()
            .or(file.namespace)
            .unwrap_or_else(|| "stampede".into());
        let namespace_ok = !namespace.is_empty()
            && namespace.len() <= 64
            && namespace
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !namespace_ok {
            return Err(invalid(
                "namespace",
                "must be 1 to 64 letters, digits, `-` or `_`",
            ));
        }

        let max_body_bytes = within(
            "max_body_bytes",
            args.max_body_bytes
                .or(file.max_body_bytes)
                .unwrap_or(1024 * 1024),
            1024,
            64 * 1024 * 1024,
        )?;
        let commit = CommitSettings {
            queue_capacity: within(
                "commit_queue_capacity",
                args.commit_queue_capacity
                    .or(file.commit_queue_capacity)
                    .unwrap_or(8192),
                1,
                1_000_000,
            )?,
            max_batch: within(
                "commit_max_batch",
                args.commit_max_batch
                    .or(file.commit_max_batch)
                    .unwrap_or(512),
                1,
                10_000,
            )?,
            workers: within(
                "commit_workers",
                args.commit_workers.or(file.commit_workers).unwrap_or(2),
                1,
                64,
            )?,
        };
        let session_ttl_secs = within(
            "session_ttl_secs",
            args.session_ttl_secs
                .or(file.session_ttl_secs)
                .unwrap_or(3600),
            60,
            30 * 24 * 3600,
        )?;
        let retention_secs = within(
            "idempotency_retention_secs",
            args.idempotency_retention_secs
                .or(file.idempotency_retention_secs)
                .unwrap_or(86_400),
            1,
            30 * 24 * 3600,
        )?;
        if retention_secs < 86_400 {
            warnings.push(format!(
                "idempotency answers are remembered for {retention_secs} s, less than the 24 hours API.md promises"
            ));
        }
        let key_memory = KeyMemorySettings {
            retention_ms: i64::from(retention_secs) * 1000,
            capacity: within(
                "idempotency_capacity",
                args.idempotency_capacity
                    .or(file.idempotency_capacity)
                    .unwrap_or(1_000_000),
                1000,
                100_000_000,
            )?,
        };
        let shutdown_grace_secs = within(
            "shutdown_grace_secs",
            args.shutdown_grace_secs
                .or(file.shutdown_grace_secs)
                .unwrap_or(30),
            1,
            3600,
        )?;
        let millis = |name: &str, value: u64, min: u64, max: u64| -> anyhow::Result<Duration> {
            within(name, value, min, max).map(Duration::from_millis)
        };
        let rate = |name: &str, value: f64| within(name, value, 0.0, 1.0);
        let percent = |name: &str, value: f64| within(name, value, 1.0, 100.0);

        let public_url = args.public_url.clone().or(file.public_url);
        if let Some(url) = &public_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(invalid("public_url", "must start with http:// or https://"));
        }
        let payment_webhook_secret = args
            .payment_webhook_secret
            .clone()
            .or(file.payment_webhook_secret);
        if payment_webhook_secret.as_deref().is_some_and(str::is_empty) {
            return Err(invalid("payment_webhook_secret", "must not be empty"));
        }
        let breaker_defaults = BreakerConfig::default();
        let payments = PaymentSettings {
            timeout: millis(
                "payment_timeout_ms",
                args.payment_timeout_ms
                    .or(file.payment_timeout_ms)
                    .unwrap_or(2000),
                10,
                60_000,
            )?,
            breaker: BreakerConfig {
                failure_rate_threshold: percent(
                    "payment_breaker_failure_rate",
                    args.payment_breaker_failure_rate
                        .or(file.payment_breaker_failure_rate)
                        .unwrap_or(breaker_defaults.failure_rate_threshold),
                )?,
                slow_call_duration: millis(
                    "payment_breaker_slow_ms",
                    args.payment_breaker_slow_ms
                        .or(file.payment_breaker_slow_ms)
                        .unwrap_or(2000),
                    1,
                    600_000,
                )?,
                slow_call_rate_threshold: percent(
                    "payment_breaker_slow_rate",
                    args.payment_breaker_slow_rate
                        .or(file.payment_breaker_slow_rate)
                        .unwrap_or(breaker_defaults.slow_call_rate_threshold),
                )?,
                wait_in_open: Duration::from_secs(within(
                    "payment_breaker_open_secs",
                    args.payment_breaker_open_secs
                        .or(file.payment_breaker_open_secs)
                        .unwrap_or(10),
                    1,
                    3600,
                )?),
                ..breaker_defaults
            },
            sweep_interval: millis(
                "payment_sweep_interval_ms",
                args.payment_sweep_interval_ms
                    .or(file.payment_sweep_interval_ms)
                    .unwrap_or(30_000),
                100,
                3_600_000,
            )?,
            sweep_after: millis(
                "payment_sweep_after_ms",
                args.payment_sweep_after_ms
                    .or(file.payment_sweep_after_ms)
                    .unwrap_or(10_000),
                100,
                3_600_000,
            )?,
            ..PaymentSettings::default()
        };
        let latency_min = millis(
            "payment_sim_latency_min_ms",
            args.payment_sim_latency_min_ms
                .or(file.payment_sim_latency_min_ms)
                .unwrap_or(5),
            0,
            600_000,
        )?;
        let latency_max = millis(
            "payment_sim_latency_max_ms",
            args.payment_sim_latency_max_ms
                .or(file.payment_sim_latency_max_ms)
                .unwrap_or(20),
            0,
            600_000,
        )?;
        if latency_max < latency_min {
            return Err(invalid(
                "payment_sim_latency_max_ms",
                "must not be below payment_sim_latency_min_ms",
            ));
        }
        let payment_sim = SimulatedSettings {
            latency_min,
            latency_max,
            decline_rate: rate(
                "payment_sim_decline_rate",
                args.payment_sim_decline_rate
                    .or(file.payment_sim_decline_rate)
                    .unwrap_or(0.0),
            )?,
            error_rate: rate(
                "payment_sim_error_rate",
                args.payment_sim_error_rate
                    .or(file.payment_sim_error_rate)
                    .unwrap_or(0.0),
            )?,
            confirm_delay: millis(
                "payment_sim_confirm_delay_ms",
                args.payment_sim_confirm_delay_ms
                    .or(file.payment_sim_confirm_delay_ms)
                    .unwrap_or(100),
                0,
                600_000,
            )?,
            ..SimulatedSettings::default()
        };
        let webhook_defaults = WebhookSettings::default();
        let max_attempts = within(
            "webhook_max_attempts",
            args.webhook_max_attempts
                .or(file.webhook_max_attempts)
                .unwrap_or(webhook_defaults.max_attempts),
            1,
            100,
        )?;
        let webhooks = WebhookSettings {
            max_attempts,
            timeout: millis(
                "webhook_timeout_ms",
                args.webhook_timeout_ms
                    .or(file.webhook_timeout_ms)
                    .unwrap_or(5000),
                10,
                60_000,
            )?,
            backoff: RetryPolicy {
                max_attempts,
                base: millis(
                    "webhook_backoff_ms",
                    args.webhook_backoff_ms
                        .or(file.webhook_backoff_ms)
                        .unwrap_or(1000),
                    1,
                    3_600_000,
                )?,
                ..webhook_defaults.backoff
            },
            ..webhook_defaults
        };
        let expiry_interval = millis(
            "expiry_interval_ms",
            args.expiry_interval_ms
                .or(file.expiry_interval_ms)
                .unwrap_or(250),
            10,
            60_000,
        )?;

        let cache = CacheSettings {
            ttl: millis(
                "cache_ttl_ms",
                args.cache_ttl_ms.or(file.cache_ttl_ms).unwrap_or(30_000),
                1,
                86_400_000,
            )?,
            negative_ttl: millis(
                "cache_negative_ttl_ms",
                args.cache_negative_ttl_ms
                    .or(file.cache_negative_ttl_ms)
                    .unwrap_or(5_000),
                1,
                86_400_000,
            )?,
            capacity: within(
                "cache_capacity",
                args.cache_capacity
                    .or(file.cache_capacity)
                    .unwrap_or(100_000),
                100,
                100_000_000,
            )?,
            ..CacheSettings::default()
        };

        let filter = args
            .log
            .clone()
            .or(file.log)
            .unwrap_or_else(|| "info".into());
        if tracing_subscriber::EnvFilter::try_new(&filter).is_err() {
            bail!(invalid(
                "log",
                format!("`{filter}` is not a log filter (e.g. `info`, `stampede=debug,info`)")
            ));
        }

        Ok(Self {
            listen: args
                .listen
                .or(file.listen)
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080))),
            data_dir: args
                .data_dir
                .clone()
                .or(file.data_dir)
                .unwrap_or_else(|| PathBuf::from("./stampede-data")),
            role,
            jwt_secret: jwt_secret.map(Secret::new),
            namespace,
            log: LogSettings {
                filter,
                format: args.log_format.or(file.log_format),
            },
            http: HttpSettings {
                max_body_bytes,
                protect,
                serve_api: role != RoleArg::Worker,
            },
            sqlite_synchronous: args
                .sqlite_synchronous
                .or(file.sqlite_synchronous)
                .unwrap_or(SqliteSync::Full),
            database,
            redis_url,
            nats_url,
            nats_replicas,
            nats_ack_wait,
            app: AppSettings {
                commit,
                passwords: PasswordSettings::default(),
                session_ttl_secs,
                key_retention_ms: key_memory.retention_ms,
                payments,
                webhooks,
                expiry_interval,
                cache,
                run_workers: role != RoleArg::Api,
                run_live: role != RoleArg::Worker,
                reservation_timeout,
                ..AppSettings::default()
            },
            key_memory,
            shutdown_grace: Duration::from_secs(u64::from(shutdown_grace_secs)),
            public_url,
            payment_webhook_secret: payment_webhook_secret.map(Secret::new),
            payment_sim,
            warnings,
        })
    }
}

/// Rate limits, load shedding and deadlines.
fn protect_settings(args: &ServeArgs, file: &FileSettings) -> anyhow::Result<ProtectSettings> {
    let per_user = within(
        "purchases_per_user_per_sec",
        args.purchases_per_user_per_sec
            .or(file.purchases_per_user_per_sec)
            .unwrap_or(20),
        1,
        1_000_000,
    )?;
    let rate_limits = match args.rate_limits.unwrap_or(RateLimitsArg::Default) {
        RateLimitsArg::Off => Vec::new(),
        RateLimitsArg::Default => match &file.rate_limits {
            Some(rules) => rules.clone(),
            None => RateLimitRule::defaults(per_user),
        },
    };
    for rule in &rate_limits {
        rule.validate()
            .map_err(|message| invalid("rate_limits", message))?;
    }
    let trusted_proxies = match args
        .trusted_proxies
        .clone()
        .or(file.trusted_proxies.clone())
    {
        Some(list) => TrustedProxies::parse_list(&list).map_err(|bad| {
            invalid(
                "trusted_proxies",
                format!("`{bad}` is not an address or CIDR"),
            )
        })?,
        None => TrustedProxies::default(),
    };
    let request_timeout = within(
        "request_timeout_ms",
        args.request_timeout_ms
            .or(file.request_timeout_ms)
            .unwrap_or(10_000),
        10,
        3_600_000,
    )?;
    let max_request_timeout = within(
        "max_request_timeout_ms",
        args.max_request_timeout_ms
            .or(file.max_request_timeout_ms)
            .unwrap_or(60_000),
        10,
        3_600_000,
    )?;
    let max_in_flight = within(
        "max_in_flight",
        args.max_in_flight.or(file.max_in_flight).unwrap_or(4096),
        0,
        1_000_000,
    )?;
    let adaptive = if max_in_flight == 0 {
        None
    } else {
        let min = within(
            "min_in_flight",
            args.min_in_flight.or(file.min_in_flight).unwrap_or(32),
            1,
            max_in_flight,
        )?;
        let config = AdaptiveConfig {
            initial: 512.clamp(min, max_in_flight),
            min,
            max: max_in_flight,
            latency_target: Duration::from_millis(within(
                "in_flight_latency_target_ms",
                args.in_flight_latency_target_ms
                    .or(file.in_flight_latency_target_ms)
                    .unwrap_or(250),
                1,
                600_000,
            )?),
            ..AdaptiveConfig::default()
        };
        config
            .validate()
            .map_err(|err| invalid("max_in_flight", err))?;
        Some(config)
    };
    let shared_timeout = within(
        "rate_limit_timeout_ms",
        args.rate_limit_timeout_ms
            .or(file.rate_limit_timeout_ms)
            .unwrap_or(50),
        1,
        10_000,
    )?;
    Ok(ProtectSettings {
        rate_limits,
        trusted_proxies,
        adaptive,
        request_timeout: Duration::from_millis(request_timeout),
        max_request_timeout: Duration::from_millis(max_request_timeout),
        shared_timeout: Duration::from_millis(shared_timeout),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_need_no_configuration() {
        let settings = Settings::load(&ServeArgs::default()).unwrap();
        assert_eq!(settings.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(settings.data_dir, PathBuf::from("./stampede-data"));
        assert_eq!(settings.namespace, "stampede");
        assert_eq!(settings.http.max_body_bytes, 1024 * 1024);
        assert_eq!(settings.sqlite_synchronous, SqliteSync::Full);
        assert!(settings.warnings.is_empty());
    }

    #[test]
    fn flags_win_over_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stampede.toml");
        std::fs::write(&path, "listen = \"0.0.0.0:9000\"\ncommit_max_batch = 64\n").unwrap();
        let args = ServeArgs {
            config: Some(path),
            commit_max_batch: Some(128),
            ..ServeArgs::default()
        };
        let settings = Settings::load(&args).unwrap();
        assert_eq!(settings.listen.to_string(), "0.0.0.0:9000");
        assert_eq!(settings.app.commit.max_batch, 128);
    }

    #[test]
    fn a_bad_value_names_the_setting_its_flag_and_its_variable() {
        let args = ServeArgs {
            commit_max_batch: Some(0),
            ..ServeArgs::default()
        };
        let message = Settings::load(&args).unwrap_err().to_string();
        assert!(message.contains("commit_max_batch"), "{message}");
        assert!(message.contains("--commit-max-batch"), "{message}");
        assert!(message.contains("STAMPEDE_COMMIT_MAX_BATCH"), "{message}");
    }

    #[test]
    fn unknown_keys_in_the_file_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stampede.toml");
        std::fs::write(&path, "lisen = \"0.0.0.0:9000\"\n").unwrap();
        let args = ServeArgs {
            config: Some(path),
            ..ServeArgs::default()
        };
        let message = format!("{:#}", Settings::load(&args).unwrap_err());
        assert!(message.contains("lisen"), "{message}");
    }

    #[test]
    fn a_postgres_url_selects_the_postgres_store_with_its_pool_settings() {
        let args = ServeArgs {
            database_url: Some("postgres://localhost/test".into()),
            db_pool_size: Some(32),
            ..ServeArgs::default()
        };
        let database = Settings::load(&args).unwrap().database.unwrap();
        assert_eq!(database.url, "postgres://localhost/test");
        assert_eq!(database.pool_size, 32);
        assert_eq!(database.statement_timeout, Duration::from_secs(10));
    }

    #[test]
    fn a_database_url_that_is_not_postgres_is_refused() {
        let args = ServeArgs {
            database_url: Some("mysql://localhost/test".into()),
            ..ServeArgs::default()
        };
        let message = Settings::load(&args).unwrap_err().to_string();
        assert!(message.contains("database_url"), "{message}");
        assert!(message.contains("postgres://"), "{message}");
    }

    #[test]
    fn a_redis_ledger_needs_the_database_it_is_rebuilt_from() {
        let args = ServeArgs {
            redis_url: Some("redis://localhost".into()),
            ..ServeArgs::default()
        };
        let message = Settings::load(&args).unwrap_err().to_string();
        assert!(message.contains("redis_url"), "{message}");
        assert!(message.contains("database_url"), "{message}");
        let args = ServeArgs {
            redis_url: Some("redis://localhost".into()),
            database_url: Some("postgres://localhost/test".into()),
            ..ServeArgs::default()
        };
        let settings = Settings::load(&args).unwrap();
        assert_eq!(settings.redis_url.as_deref(), Some("redis://localhost"));
    }

    #[test]
    fn cluster_roles_need_the_shared_database_and_ledger_and_split_the_work() {
        let args = ServeArgs {
            role: Some(RoleArg::Api),
            database_url: Some("postgres://localhost/test".into()),
            ..ServeArgs::default()
        };
        let message = Settings::load(&args).unwrap_err().to_string();
        assert!(message.contains("redis_url"), "{message}");

        let cluster = |role| ServeArgs {
            role: Some(role),
            database_url: Some("postgres://localhost/test".into()),
            redis_url: Some("redis://localhost".into()),
            nats_url: Some("nats://localhost:4222".into()),
            ..ServeArgs::default()
        };
        let api = Settings::load(&cluster(RoleArg::Api)).unwrap();
        assert!(api.http.serve_api && api.app.run_live && !api.app.run_workers);
        let worker = Settings::load(&cluster(RoleArg::Worker)).unwrap();
        assert!(!worker.http.serve_api && !worker.app.run_live && worker.app.run_workers);
    }

    #[test]
    fn a_shared_rate_limit_needs_redis_and_its_timeout_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stampede.toml");
        std::fs::write(
            &path,
            r#"rate_limit_timeout_ms = 20
[[rate_limits]]
name = "everyone"
key = "global"
limit = 50
backend = "shared"
"#,
        )
        .unwrap();
        let embedded = ServeArgs {
            config: Some(path.clone()),
            ..ServeArgs::default()
        };
        let message = Settings::load(&embedded).unwrap_err().to_string();
        assert!(message.contains("rate_limits"), "{message}");
        assert!(message.contains("everyone"), "{message}");
        let cluster = ServeArgs {
            config: Some(path),
            redis_url: Some("redis://localhost".into()),
            database_url: Some("postgres://localhost/test".into()),
            ..ServeArgs::default()
        };
        let settings = Settings::load(&cluster).unwrap();
        assert_eq!(
            settings.http.protect.shared_timeout,
            Duration::from_millis(20)
        );
        let args = ServeArgs {
            rate_limit_timeout_ms: Some(0),
            ..ServeArgs::default()
        };
        let message = Settings::load(&args).unwrap_err().to_string();
        assert!(
            message.contains("STAMPEDE_RATE_LIMIT_TIMEOUT_MS"),
            "{message}"
        );
    }

    #[test]
    fn secrets_never_print() {
        assert_eq!(
            format!("{:?}", Secret::new("hunter2".into())),
            "Secret(***)"
        );
    }
}
