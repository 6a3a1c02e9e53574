//! `stampede serve`'s configuration: one schema, layered once, validated once.
//!
//! - **Schema.** [`Config`] holds the node's own settings and, as sections,
//!   the settings types of the components that use them: `commit`
//!   ([`CommitSettings`]), `idempotency` ([`KeyMemorySettings`]), `payment`
//!   ([`PaymentSettings`] with its `breaker`), `payment_sim`
//!   ([`SimulatedSettings`]), `webhook` ([`WebhookSettings`]), `cache`
//!   ([`CacheSettings`]), `room` ([`RoomSettings`]), `db` ([`PgSettings`])
//!   and `http` ([`HttpConfig`]).
//!   Each keeps its defaults in its `Default` impl and refuses unknown keys.
//! - **Layers.** `Config::default()`, then the TOML file (`--config`,
//!   `STAMPEDE_CONFIG`), then `STAMPEDE_*` variables, then flags, merged by
//!   figment ([`sources`]); an error says which layer the bad value came from.
//! - **Names.** A setting has one flat name in every source: the file key
//!   `commit_queue_capacity`, the variable `STAMPEDE_COMMIT_QUEUE_CAPACITY`,
//!   the flag `--commit-queue-capacity`. The file stays flat, as it always
//!   was: operators' files keep working, and one name per setting is simpler
//!   to document, search and type than a section in the file and a joined
//!   name elsewhere. The sections are how the code is organised; the one
//!   table in [`names`] maps names to paths (`commit.queue_capacity`) and
//!   gives each its meaning, from which `stampede serve --help` and the
//!   flags are generated.
//! - **Validation.** After extraction: each setting within its bounds (kept
//!   with it in the table, in its unit), then the rules between settings and
//!   what the components check of their own ([`HttpConfig::settings`]); the
//!   message names the setting, its flag, its variable and its source.

pub mod names;
pub mod sources;

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use figment::providers::Serialized;
use figment::value::Value;
use serde::{Deserialize, Serialize, Serializer};
use stampede_app::AppSettings;
use stampede_app::abuse::AbuseSettings;
use stampede_app::auth::{JwtKey, PasswordSettings};
use stampede_app::cache::CacheSettings;
use stampede_app::ledger::KeyMemorySettings;
use stampede_app::payments::PaymentSettings;
use stampede_app::purchase::CommitSettings;
use stampede_app::room::RoomSettings;
use stampede_app::webhooks::{SecretSealer, WebhookSettings};
use stampede_bus_nats::NatsSettings;
use stampede_flow::serde_duration::millis;
use stampede_http::HttpSettings;
use stampede_http::config::HttpConfig;
use stampede_http::limits::validate_rules;
use stampede_outbound::SimulatedSettings;
use stampede_store_postgres::PgSettings;

use names::Setting;
use sources::Sources;

/// A value that must never be printed (nor serialised).
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
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

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str("***")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Serve the API and run the background workers.
    All,
    /// Serve the API only (cluster mode).
    Api,
    /// Run the background workers only (cluster mode).
    Worker,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Json,
    Pretty,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SqliteSync {
    /// fsync on every commit: a 2xx survives power loss.
    Full,
    /// Survives a crash of the process, not of the machine.
    Normal,
}

/// Every setting of `stampede serve`, as given: the schema. [`names`] lists
/// them with their meanings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub role: Role,
    /// `None`: generated and kept in the data directory.
    pub jwt_secret: Option<Secret>,
    /// Tokens whose `exp` is further ahead are refused.
    pub jwt_max_ttl_secs: u32,
    /// PostgreSQL (cluster mode); `None`: SQLite in the data directory.
    pub database_url: Option<String>,
    /// The PostgreSQL pool, used with `database_url`.
    pub db: PgSettings,
    pub redis_url: Option<String>,
    pub nats_url: Option<String>,
    pub nats_replicas: usize,
    #[serde(rename = "nats_ack_wait_ms", with = "millis")]
    pub nats_ack_wait: Duration,
    #[serde(rename = "reservation_timeout_ms", with = "millis")]
    pub reservation_timeout: Duration,
    pub namespace: String,
    /// The log filter.
    pub log: String,
    /// `None`: pretty on a terminal, JSON otherwise.
    pub log_format: Option<LogFormat>,
    /// Base URL of an OTLP collector; `None`: the standard variables decide.
    pub otlp_endpoint: Option<String>,
    pub sqlite_synchronous: SqliteSync,
    pub commit: CommitSettings,
    pub session_ttl_secs: u32,
    pub idempotency: KeyMemorySettings,
    pub shutdown_grace_secs: u32,
    /// Where the payment provider calls back; `None`: this node's address.
    pub public_url: Option<String>,
    /// `None`: generated and kept in the data directory.
    pub payment_webhook_secret: Option<Secret>,
    /// Seals webhook signing secrets at rest; `None`: generated and kept in
    /// the data directory.
    pub webhook_secret_key: Option<Secret>,
    pub payment: PaymentSettings,
    pub payment_sim: SimulatedSettings,
    pub webhook: WebhookSettings,
    #[serde(rename = "expiry_interval_ms", with = "millis")]
    pub expiry_interval: Duration,
    pub cache: CacheSettings,
    pub room: RoomSettings,
    pub abuse: AbuseSettings,
    /// The captcha provider's verification URL; `None`: no captcha asked.
    pub captcha_verify_url: Option<String>,
    pub captcha_secret: Option<Secret>,
    pub http: HttpConfig,
}

impl Default for Config {
    /// The node's own defaults; the sections' and the app's come from their
    /// own `Default` impls.
    fn default() -> Self {
        let app = AppSettings::default();
        let nats = NatsSettings::default();
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("./stampede-data"),
            role: Role::All,
            jwt_secret: None,
            jwt_max_ttl_secs: JwtKey::DEFAULT_MAX_TTL_SECS,
            database_url: None,
            db: PgSettings::default(),
            redis_url: None,
            nats_url: None,
            nats_replicas: nats.replicas,
            nats_ack_wait: nats.ack_wait,
            reservation_timeout: app.reservation_timeout,
            namespace: "stampede".into(),
            log: "info".into(),
            log_format: None,
            otlp_endpoint: None,
            sqlite_synchronous: SqliteSync::Full,
            commit: app.commit,
            session_ttl_secs: app.session_ttl_secs,
            idempotency: KeyMemorySettings::default(),
            shutdown_grace_secs: 30,
            public_url: None,
            payment_webhook_secret: None,
            webhook_secret_key: None,
            payment: app.payments,
            payment_sim: SimulatedSettings::default(),
            webhook: app.webhooks,
            expiry_interval: app.expiry_interval,
            cache: app.cache,
            room: app.room,
            abuse: app.abuse,
            captcha_verify_url: None,
            captcha_secret: None,
            http: HttpConfig::default(),
        }
    }
}

impl Config {
    /// The defaults, as the layers see them.
    pub fn defaults() -> Value {
        Value::serialize(Self::default())
            .unwrap_or_else(|_| Value::from(figment::value::Dict::new()))
    }

    /// Defaults → file → environment → flags, before validation.
    pub fn layered(sources: &Sources) -> anyhow::Result<(Self, figment::Figment)> {
        let figment = sources.figment(Serialized::defaults(Self::default()))?;
        let config = figment
            .extract_lossy()
            .map_err(|err| anyhow::anyhow!(extraction_error(err)))?;
        Ok((config, figment))
    }
}

/// `setting`'s default as `--help` and the README show it; `None` when it
/// has none (unset, or a list).
pub fn default_text(defaults: &Value, setting: &Setting) -> Option<String> {
    value_text(defaults.find_ref(setting.path)?)
}

/// A single value as text; `None` for none or a list.
fn value_text(value: &Value) -> Option<String> {
    match value {
        Value::String(_, text) => Some(text.clone()),
        Value::Bool(_, value) => Some(value.to_string()),
        value @ Value::Num(..) => value
            .to_u128()
            .map(|n| n.to_string())
            .or_else(|| value.to_i128().map(|n| n.to_string()))
            .or_else(|| value.to_f64().map(|n| n.to_string())),
        _ => None,
    }
}

/// figment's complaint, with the setting's name, flag and variable.
fn extraction_error(err: figment::Error) -> String {
    let lines: Vec<String> = err
        .into_iter()
        .map(|err| match sources::setting_of(&err.path) {
            Some((setting, rest)) => {
                let origin = err
                    .metadata
                    .as_ref()
                    .map(|metadata| format!(" from {}", metadata.name))
                    .unwrap_or_default();
                let within = if rest.is_empty() {
                    String::new()
                } else {
                    format!("at {rest}: ")
                };
                format!("{}{origin}: {within}{}", describe(setting), err.kind)
            }
            None => err.to_string(),
        })
        .collect();
    lines.join("\n")
}

/// "invalid setting `x` (--x, STAMPEDE_X)".
fn describe(setting: &Setting) -> String {
    format!(
        "invalid setting `{}` ({}, {})",
        setting.name(),
        setting.flag(),
        setting.var()
    )
}

/// A setting's value refused by validation.
#[derive(Debug)]
struct Invalid {
    path: &'static str,
    message: String,
}

impl Invalid {
    fn new(path: &'static str, message: impl fmt::Display) -> Self {
        Self {
            path,
            message: message.to_string(),
        }
    }

    /// The message, with where the value came from when `figment` knows.
    fn into_error(self, figment: Option<&figment::Figment>) -> anyhow::Error {
        let Some(setting) = Setting::at(self.path) else {
            return anyhow::anyhow!("invalid setting `{}`: {}", self.path, self.message);
        };
        let defaults = std::any::type_name::<Config>();
        let origin = figment
            .and_then(|figment| figment.find_metadata(self.path))
            .filter(|metadata| metadata.name != defaults)
            .map(|metadata| format!(" from {}", metadata.name))
            .unwrap_or_default();
        anyhow::anyhow!("{}{origin}: {}", describe(setting), self.message)
    }
}

#[derive(Debug, Clone)]
pub struct LogSettings {
    pub filter: String,
    /// `None`: pretty on a terminal, JSON otherwise.
    pub format: Option<LogFormat>,
    /// Where spans go (`otlp_endpoint` and the `OTEL_*` variables); `None`:
    /// not exported.
    pub traces: Option<stampede_trace::export::Plan>,
}

/// A captcha provider's `siteverify` endpoint and secret key.
#[derive(Debug, Clone)]
pub struct CaptchaSettings {
    pub url: String,
    pub secret: Secret,
}

/// Everything `stampede serve` needs, validated.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub role: Role,
    pub jwt_secret: Option<Secret>,
    /// Tokens whose `exp` is further ahead are refused.
    pub jwt_max_ttl_secs: u32,
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
    /// Seals webhook signing secrets (64 hex digits, checked); `None`:
    /// generated and kept in the data directory.
    pub webhook_secret_key: Option<Secret>,
    pub payment_sim: SimulatedSettings,
    /// The captcha provider, when purchase tokens ask for a captcha.
    pub captcha: Option<CaptchaSettings>,
    /// Things worth a warning once logging is up.
    pub warnings: Vec<String>,
}

impl Settings {
    /// Resolves and validates the settings from `sources`: the defaults,
    /// the file, the environment and the flags (`cli::ServeArgs::load`).
    pub fn layered(sources: &Sources) -> anyhow::Result<Self> {
        let (config, figment) = Config::layered(sources)?;
        Self::resolve(config).map_err(|invalid| invalid.into_error(Some(&figment)))
    }

    /// Validates `config` (tests build theirs in code).
    pub fn new(config: Config) -> anyhow::Result<Self> {
        Self::resolve(config).map_err(|invalid| invalid.into_error(None))
    }

    fn resolve(config: Config) -> Result<Self, Invalid> {
        check_bounds(&config)?;
        let Config {
            listen,
            data_dir,
            role,
            jwt_secret,
            jwt_max_ttl_secs,
            database_url,
            db,
            redis_url,
            nats_url,
            nats_replicas,
            nats_ack_wait,
            reservation_timeout,
            namespace,
            log,
            log_format,
            otlp_endpoint,
            sqlite_synchronous,
            commit,
            session_ttl_secs,
            idempotency,
            shutdown_grace_secs,
            public_url,
            payment_webhook_secret,
            webhook_secret_key,
            payment,
            payment_sim,
            mut webhook,
            expiry_interval,
            cache,
            room,
            abuse,
            captcha_verify_url,
            captcha_secret,
            http,
        } = config;
        let mut warnings = Vec::new();

        let http = http
            .settings(role != Role::Worker)
            .map_err(|refused| Invalid::new(http_path(refused.field), refused.message))?;
        let database = match database_url {
            None => None,
            Some(url) => {
                if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                    return Err(Invalid::new(
                        "database_url",
                        "must be a postgres:// or postgresql:// URL",
                    ));
                }
                Some(PgSettings { url, ..db })
            }
        };
        if let Some(url) = &redis_url {
            if database.is_none() {
                return Err(Invalid::new(
                    "redis_url",
                    "the Redis ledger is rebuilt from PostgreSQL: set database_url too",
                ));
            }
            if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
                return Err(Invalid::new(
                    "redis_url",
                    "must be a redis:// or rediss:// URL",
                ));
            }
        } else if let Err(err) = validate_rules(&http.protect.rate_limits, None, false) {
            return Err(Invalid::new("http.rate_limits", err.message));
        }
        if let Some(url) = &nats_url {
            if database.is_none() {
                return Err(Invalid::new(
                    "nats_url",
                    "the NATS bus relays the PostgreSQL outbox: set database_url too",
                ));
            }
            if !url.split(',').all(|u| u.trim().starts_with("nats://")) {
                return Err(Invalid::new(
                    "nats_url",
                    "must be nats:// URLs, comma-separated",
                ));
            }
        }
        if role != Role::All && (database.is_none() || redis_url.is_none()) {
            return Err(Invalid::new(
                "role",
                "`api` and `worker` nodes share the database and the stock ledger: \
                 set database_url and redis_url",
            ));
        }
        if let Some(secret) = &jwt_secret {
            if secret.expose().is_empty() {
                return Err(Invalid::new("jwt_secret", "must not be empty"));
            }
            if secret.expose().len() < 32 {
                warnings.push(
                    "STAMPEDE_JWT_SECRET is shorter than 32 bytes; use a longer random secret"
                        .into(),
                );
            }
        }
        if session_ttl_secs > jwt_max_ttl_secs {
            return Err(Invalid::new(
                "session_ttl_secs",
                format!(
                    "session tokens living {session_ttl_secs} s would be refused: \
                     the most is jwt_max_ttl_secs ({jwt_max_ttl_secs})"
                ),
            ));
        }
        let namespace_ok = !namespace.is_empty()
            && namespace.len() <= 64
            && namespace
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !namespace_ok {
            return Err(Invalid::new(
                "namespace",
                "must be 1 to 64 letters, digits, `-` or `_`",
            ));
        }
        let retention_secs = idempotency.retention_ms / 1000;
        if retention_secs < 86_400 {
            warnings.push(format!(
                "idempotency answers are remembered for {retention_secs} s, less than the 24 hours docs/api.md §4 promises"
            ));
        }
        if let Some(url) = &public_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(Invalid::new(
                "public_url",
                "must start with http:// or https://",
            ));
        }
        if payment_webhook_secret
            .as_ref()
            .is_some_and(|secret| secret.expose().is_empty())
        {
            return Err(Invalid::new("payment_webhook_secret", "must not be empty"));
        }
        let captcha = match (captcha_verify_url, captcha_secret) {
            (None, None) => None,
            (Some(url), Some(secret)) => {
                if !(url.starts_with("https://") || url.starts_with("http://")) {
                    return Err(Invalid::new(
                        "captcha_verify_url",
                        "must start with https:// (or http://)",
                    ));
                }
                if secret.expose().is_empty() {
                    return Err(Invalid::new("captcha_secret", "must not be empty"));
                }
                Some(CaptchaSettings { url, secret })
            }
            (Some(_), None) => {
                return Err(Invalid::new(
                    "captcha_secret",
                    "must be set with captcha_verify_url (the provider's secret key)",
                ));
            }
            (None, Some(_)) => {
                return Err(Invalid::new(
                    "captcha_verify_url",
                    "must be set with captcha_secret (e.g. https://hcaptcha.com/siteverify)",
                ));
            }
        };
        if let Some(key) = &webhook_secret_key {
            if SecretSealer::from_hex(key.expose()).is_none() {
                return Err(Invalid::new(
                    "webhook_secret_key",
                    "must be 64 hexadecimal digits (32 random bytes, e.g. `openssl rand -hex 32`)",
                ));
            }
        } else if database.is_some() {
            warnings.push(
                "STAMPEDE_WEBHOOK_SECRET_KEY is unset: this node seals webhook secrets with a key \
                 of its own data directory, which other nodes cannot open; give every node the same key"
                    .into(),
            );
        }
        if payment_sim.latency_max < payment_sim.latency_min {
            return Err(Invalid::new(
                "payment_sim.latency_max_ms",
                "must not be below payment_sim_latency_min_ms",
            ));
        }
        webhook.backoff.max_attempts = webhook.max_attempts;
        if tracing_subscriber::EnvFilter::try_new(&log).is_err() {
            return Err(Invalid::new(
                "log",
                format!("`{log}` is not a log filter (e.g. `info`, `stampede=debug,info`)"),
            ));
        }

        let traces = stampede_trace::export::Plan::read(otlp_endpoint.as_deref(), |name| {
            std::env::var(name).ok()
        })
        .map_err(|err| Invalid::new("otlp_endpoint", err))?;

        Ok(Self {
            listen,
            data_dir,
            role,
            jwt_secret,
            jwt_max_ttl_secs,
            namespace,
            log: LogSettings {
                filter: log,
                format: log_format,
                traces,
            },
            http,
            sqlite_synchronous,
            database,
            redis_url,
            nats_url,
            nats_replicas,
            nats_ack_wait,
            app: AppSettings {
                commit,
                passwords: PasswordSettings::default(),
                session_ttl_secs,
                key_retention_ms: idempotency.retention_ms,
                payments: payment,
                webhooks: webhook,
                expiry_interval,
                cache,
                room,
                abuse,
                run_workers: role != Role::Api,
                run_live: role != Role::Worker,
                reservation_timeout,
                ..AppSettings::default()
            },
            key_memory: idempotency,
            shutdown_grace: Duration::from_secs(u64::from(shutdown_grace_secs)),
            public_url,
            payment_webhook_secret,
            webhook_secret_key,
            payment_sim,
            captcha,
            warnings,
        })
    }
}

/// The path of an `http` field [`HttpConfig::settings`] refused.
fn http_path(field: &str) -> &'static str {
    names::settings()
        .iter()
        .find(|setting| setting.path.strip_prefix("http.") == Some(field))
        .map_or("http", |setting| setting.path)
}

/// Every setting within its bounds (the table's): the `db_*` settings only
/// with a database, the latency target only with an adaptive limit.
fn check_bounds(config: &Config) -> Result<(), Invalid> {
    let values = Value::serialize(config)
        .map_err(|err| Invalid::new("", format!("cannot read the settings back: {err}")))?;
    for setting in names::settings() {
        let Some((min, max)) = setting.bounds else {
            continue;
        };
        let unused = (setting.path.starts_with("db.") && config.database_url.is_none())
            || (setting.path == "http.in_flight_latency_target_ms"
                && config.http.max_in_flight == 0);
        let Some(value) = values.find_ref(setting.path).filter(|_| !unused) else {
            continue;
        };
        let number = |text: &str| text.parse::<f64>().ok();
        let within = match (
            number(min),
            number(max),
            value_text(value).as_deref().and_then(number),
        ) {
            (Some(min), Some(max), Some(value)) => (min..=max).contains(&value),
            _ => false,
        };
        if !within {
            let got = value_text(value).unwrap_or_default();
            return Err(Invalid::new(
                setting.path,
                format!("must be from {min} to {max}, got {got}"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use stampede_http::config::LimitRules;

    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect()
    }

    /// Settings from a file with `toml` (if any), `env` and `flags`.
    fn load(
        toml: Option<&str>,
        env: &[(&str, &str)],
        flags: &[(&str, &str)],
    ) -> anyhow::Result<Settings> {
        let dir = tempfile::tempdir().unwrap();
        let file = toml.map(|text| {
            let path = dir.path().join("stampede.toml");
            std::fs::write(&path, text).unwrap();
            path
        });
        Settings::layered(&Sources {
            file,
            env: pairs(env),
            flags: pairs(flags),
        })
    }

    fn error(result: anyhow::Result<Settings>) -> String {
        format!("{:#}", result.unwrap_err())
    }

    #[test]
    fn defaults_need_no_configuration() {
        let settings = load(None, &[], &[]).unwrap();
        assert_eq!(settings.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(settings.data_dir, PathBuf::from("./stampede-data"));
        assert_eq!(settings.namespace, "stampede");
        assert_eq!(settings.http.max_body_bytes, 1024 * 1024);
        assert_eq!(settings.sqlite_synchronous, SqliteSync::Full);
        assert_eq!(settings.app.commit.queue_capacity, 8192);
        assert!(settings.database.is_none());
        assert!(settings.warnings.is_empty());
        let adaptive = settings.http.protect.adaptive.unwrap();
        assert_eq!(
            (adaptive.initial, adaptive.min, adaptive.max),
            (512, 32, 4096)
        );
        assert_eq!(settings.http.protect.rate_limits.len(), 1);
        assert_eq!(settings.app.webhooks.backoff.max_attempts, 8);
        assert_eq!(settings.key_memory.retention_ms, 86_400_000);
        assert_eq!(
            Settings::new(Config::default()).unwrap().listen,
            settings.listen
        );
    }

    #[test]
    fn flags_win_over_the_environment_which_wins_over_the_file() {
        let file = "listen = \"0.0.0.0:9000\"\ncommit_max_batch = 64\ncommit_workers = 3\n";
        let settings = load(Some(file), &[], &[("commit-max-batch", "128")]).unwrap();
        assert_eq!(settings.listen.to_string(), "0.0.0.0:9000");
        assert_eq!(settings.app.commit.max_batch, 128);
        let env = [
            ("STAMPEDE_COMMIT_MAX_BATCH", "256"),
            ("STAMPEDE_COMMIT_WORKERS", "4"),
        ];
        let settings = load(Some(file), &env, &[("commit_max_batch", "128")]).unwrap();
        assert_eq!(settings.app.commit.max_batch, 128);
        assert_eq!(settings.app.commit.workers, 4);
        assert_eq!(settings.listen.to_string(), "0.0.0.0:9000");
    }

    #[test]
    fn values_from_the_environment_and_flags_keep_their_type() {
        let env = [
            ("STAMPEDE_JWT_SECRET", "01234567890123456789012345678901234"),
            ("STAMPEDE_NAMESPACE", "2026"),
            ("STAMPEDE_PAYMENT_SIM_DECLINE_RATE", "0.5"),
            ("STAMPEDE_ROLE", "all"),
            ("STAMPEDE_UNRELATED", "ignored"),
        ];
        let settings = load(None, &env, &[("payment-breaker-open-secs", "60")]).unwrap();
        assert_eq!(
            settings.jwt_secret.unwrap().expose(),
            "01234567890123456789012345678901234"
        );
        assert_eq!(settings.namespace, "2026");
        assert_eq!(settings.payment_sim.decline_rate, 0.5);
        assert_eq!(
            settings.app.payments.breaker.wait_in_open,
            Duration::from_secs(60)
        );
    }

    #[test]
    fn a_bad_value_names_the_setting_its_flag_its_variable_and_its_source() {
        let message = error(load(None, &[], &[("commit-max-batch", "0")]));
        assert!(message.contains("commit_max_batch"), "{message}");
        assert!(message.contains("--commit-max-batch"), "{message}");
        assert!(message.contains("STAMPEDE_COMMIT_MAX_BATCH"), "{message}");
        assert!(message.contains("the command line"), "{message}");
        let message = error(load(None, &[("STAMPEDE_COMMIT_WORKERS", "many")], &[]));
        assert!(message.contains("--commit-workers"), "{message}");
        assert!(message.contains("the environment"), "{message}");
        let message = error(load(Some("role = \"boss\"\n"), &[], &[]));
        assert!(message.contains("STAMPEDE_ROLE"), "{message}");
        assert!(message.contains("boss"), "{message}");
        assert!(message.contains("config file"), "{message}");
    }

    #[test]
    fn unknown_names_are_refused_with_the_closest_one() {
        let message = error(load(Some("lisen = \"0.0.0.0:9000\"\n"), &[], &[]));
        assert!(message.contains("lisen"), "{message}");
        assert!(message.contains("did you mean `listen`"), "{message}");
        let message = error(load(None, &[], &[("commit-queue-capacty", "1")]));
        assert!(
            message.contains("did you mean `commit_queue_capacity`"),
            "{message}"
        );
        // A section path is not a name.
        let message = error(load(Some("[commit]\nworkers = 1\n"), &[], &[]));
        assert!(message.contains("unknown setting `commit`"), "{message}");
    }

    #[test]
    fn session_tokens_must_live_within_the_token_lifetime_cap() {
        let settings = load(None, &[], &[]).unwrap();
        assert_eq!(settings.jwt_max_ttl_secs, 604_800);
        let env = [("STAMPEDE_JWT_MAX_TTL_SECS", "7200")];
        let settings = load(None, &env, &[("session-ttl-secs", "7200")]).unwrap();
        assert_eq!(settings.jwt_max_ttl_secs, 7200);
        let message = error(load(None, &env, &[("session-ttl-secs", "7201")]));
        assert!(message.contains("--session-ttl-secs"), "{message}");
        assert!(message.contains("jwt_max_ttl_secs"), "{message}");
        let message = error(load(None, &[], &[("jwt-max-ttl-secs", "0")]));
        assert!(message.contains("STAMPEDE_JWT_MAX_TTL_SECS"), "{message}");
    }

    #[test]
    fn a_postgres_url_selects_the_postgres_store_with_its_pool_settings() {
        let flags = [
            ("database-url", "postgres://localhost/test"),
            ("db-pool-size", "32"),
        ];
        let database = load(None, &[], &flags).unwrap().database.unwrap();
        assert_eq!(database.url, "postgres://localhost/test");
        assert_eq!(database.pool_size, 32);
        assert_eq!(database.statement_timeout, Duration::from_secs(10));
    }

    #[test]
    fn a_database_url_that_is_not_postgres_is_refused() {
        let message = error(load(
            None,
            &[],
            &[("database-url", "mysql://localhost/test")],
        ));
        assert!(message.contains("database_url"), "{message}");
        assert!(message.contains("postgres://"), "{message}");
    }

    #[test]
    fn a_redis_ledger_needs_the_database_it_is_rebuilt_from() {
        let message = error(load(None, &[], &[("redis-url", "redis://localhost")]));
        assert!(message.contains("redis_url"), "{message}");
        assert!(message.contains("database_url"), "{message}");
        let flags = [
            ("redis-url", "redis://localhost"),
            ("database-url", "postgres://localhost/test"),
        ];
        let settings = load(None, &[], &flags).unwrap();
        assert_eq!(settings.redis_url.as_deref(), Some("redis://localhost"));
    }

    #[test]
    fn cluster_roles_need_the_shared_database_and_ledger_and_split_the_work() {
        let mut config = Config {
            role: Role::Api,
            database_url: Some("postgres://localhost/test".into()),
            ..Config::default()
        };
        let message = Settings::new(config.clone()).unwrap_err().to_string();
        assert!(message.contains("redis_url"), "{message}");

        config.redis_url = Some("redis://localhost".into());
        config.nats_url = Some("nats://localhost:4222".into());
        let api = Settings::new(config.clone()).unwrap();
        assert!(api.http.serve_api && api.app.run_live && !api.app.run_workers);
        config.role = Role::Worker;
        let worker = Settings::new(config).unwrap();
        assert!(!worker.http.serve_api && !worker.app.run_live && worker.app.run_workers);
    }

    const SHARED_RULE: &str = r#"rate_limit_timeout_ms = 20
[[rate_limits]]
name = "everyone"
key = "global"
limit = 50
backend = "shared"
"#;

    #[test]
    fn a_shared_rate_limit_needs_redis_and_its_timeout_is_bounded() {
        let message = error(load(Some(SHARED_RULE), &[], &[]));
        assert!(message.contains("rate_limits"), "{message}");
        assert!(message.contains("everyone"), "{message}");
        let cluster = [
            ("STAMPEDE_REDIS_URL", "redis://localhost"),
            ("STAMPEDE_DATABASE_URL", "postgres://localhost/test"),
        ];
        let settings = load(Some(SHARED_RULE), &cluster, &[]).unwrap();
        assert_eq!(
            settings.http.protect.shared_timeout,
            Duration::from_millis(20)
        );
        let message = error(load(None, &[], &[("rate-limit-timeout-ms", "0")]));
        assert!(
            message.contains("STAMPEDE_RATE_LIMIT_TIMEOUT_MS"),
            "{message}"
        );
    }

    #[test]
    fn rate_limits_default_keeps_the_files_rules_and_off_drops_them() {
        let cluster = [
            ("STAMPEDE_REDIS_URL", "redis://localhost"),
            ("STAMPEDE_DATABASE_URL", "postgres://localhost/test"),
        ];
        let settings = load(Some(SHARED_RULE), &cluster, &[("rate-limits", "default")]).unwrap();
        assert_eq!(settings.http.protect.rate_limits[0].name, "everyone");
        let settings = load(Some(SHARED_RULE), &cluster, &[("rate-limits", "off")]).unwrap();
        assert!(settings.http.protect.rate_limits.is_empty());
        let config = Config {
            http: HttpConfig {
                rate_limits: LimitRules::Off,
                ..HttpConfig::default()
            },
            ..Config::default()
        };
        assert!(
            Settings::new(config)
                .unwrap()
                .http
                .protect
                .rate_limits
                .is_empty()
        );
        let message = error(load(
            Some("[[rate_limits]]\nname = \"x\"\nkey = \"ip\"\nlmit = 1\n"),
            &[],
            &[],
        ));
        assert!(message.contains("lmit"), "{message}");
        assert!(message.contains("--rate-limits"), "{message}");
    }

    #[test]
    fn a_webhook_secret_key_is_64_hex_digits_and_never_prints() {
        let key = "0123456789abcdef".repeat(4);
        let settings = load(None, &[("STAMPEDE_WEBHOOK_SECRET_KEY", &key)], &[]).unwrap();
        assert_eq!(settings.webhook_secret_key.as_ref().unwrap().expose(), key);
        assert!(!format!("{settings:?}").contains(&key));
        let message = error(load(None, &[], &[("webhook-secret-key", "short")]));
        assert!(message.contains("--webhook-secret-key"), "{message}");
        assert!(message.contains("64 hexadecimal digits"), "{message}");
        assert!(!message.contains("short"), "{message}");
        let cluster = [("STAMPEDE_DATABASE_URL", "postgres://localhost/test")];
        let settings = load(None, &cluster, &[]).unwrap();
        assert!(
            settings
                .warnings
                .iter()
                .any(|w| w.contains("STAMPEDE_WEBHOOK_SECRET_KEY")),
            "{:?}",
            settings.warnings
        );
    }

    #[test]
    fn secrets_never_print() {
        assert_eq!(
            format!("{:?}", Secret::new("hunter2".into())),
            "Secret(***)"
        );
        let config = Config {
            jwt_secret: Some(Secret::new("hunter2".into())),
            ..Config::default()
        };
        assert!(!format!("{config:?}").contains("hunter2"));
        let value = Value::serialize(&config).unwrap();
        assert_eq!(value.find_ref("jwt_secret").unwrap().as_str(), Some("***"));
    }

    /// Every path of the schema's defaults, down to its values.
    fn leaves(value: &Value, prefix: &str, out: &mut BTreeSet<String>) {
        match value {
            Value::Dict(_, dict) => {
                for (key, value) in dict {
                    let path = match prefix {
                        "" => key.clone(),
                        _ => format!("{prefix}.{key}"),
                    };
                    leaves(value, &path, out);
                }
            }
            _ => {
                out.insert(prefix.to_owned());
            }
        }
    }

    #[test]
    fn the_table_names_every_setting_of_the_schema_once() {
        let mut schema = BTreeSet::new();
        leaves(&Config::defaults(), "", &mut schema);
        let table: BTreeSet<String> = names::settings()
            .iter()
            .map(|setting| setting.path.to_owned())
            .collect();
        assert_eq!(table.len(), names::settings().len(), "a path listed twice");
        assert_eq!(schema, table);
        let names: BTreeSet<String> = names::settings().iter().map(Setting::name).collect();
        assert_eq!(names.len(), names::settings().len(), "a name used twice");
    }

    #[test]
    fn every_default_lies_within_its_bounds() {
        let defaults = Config::defaults();
        for setting in names::settings() {
            let Some((min, max)) = setting.bounds else {
                continue;
            };
            let default = default_text(&defaults, setting).unwrap();
            let [min, max, default] = [min, max, &default].map(|n| n.parse::<f64>().unwrap());
            assert!(min <= default && default <= max, "{}", setting.path);
        }
    }

    #[test]
    fn webhook_allow_hosts_come_from_every_source_and_are_checked() {
        assert!(
            load(None, &[], &[])
                .unwrap()
                .app
                .webhooks
                .allow_hosts
                .is_empty()
        );
        let env = [("STAMPEDE_WEBHOOK_ALLOW_HOSTS", "127.0.0.1, hooks.internal")];
        let allow = load(None, &env, &[]).unwrap().app.webhooks.allow_hosts;
        assert_eq!(allow.to_string(), "hooks.internal,127.0.0.1/32");
        let file = "webhook_allow_hosts = \"10.0.0.0/8\"\n";
        let allow = load(Some(file), &[], &[]).unwrap().app.webhooks.allow_hosts;
        assert_eq!(allow.to_string(), "10.0.0.0/8");
        let flags = [("webhook-allow-hosts", "::1")];
        let allow = load(Some(file), &env, &flags)
            .unwrap()
            .app
            .webhooks
            .allow_hosts;
        assert_eq!(allow.to_string(), "::1/128");
        let message = error(load(None, &[], &[("webhook-allow-hosts", "10.0.0.0/40")]));
        assert!(message.contains("--webhook-allow-hosts"), "{message}");
        assert!(
            message.contains("`10.0.0.0/40` is not a host name"),
            "{message}"
        );
    }

    #[test]
    fn the_pool_is_checked_only_with_a_database() {
        assert!(load(None, &[], &[("db-pool-size", "0")]).is_ok());
        let url = ("database-url", "postgres://localhost/test");
        let message = error(load(None, &[], &[url, ("db-pool-size", "0")]));
        assert!(
            message.contains("must be from 1 to 1024, got 0"),
            "{message}"
        );
        let message = error(load(None, &[], &[("payment-sim-decline-rate", "1.5")]));
        assert!(
            message.contains("must be from 0 to 1, got 1.5"),
            "{message}"
        );
        let retention = [("STAMPEDE_IDEMPOTENCY_RETENTION_SECS", "3600")];
        let settings = load(None, &retention, &[]).unwrap();
        assert_eq!(settings.warnings.len(), 1);
        assert_eq!(settings.key_memory.retention_ms, 3_600_000);
    }

    #[test]
    fn the_commit_queue_default_is_written_once() {
        let setting = Setting::named("commit_queue_capacity").unwrap();
        assert_eq!(
            default_text(&Config::defaults(), setting).as_deref(),
            Some("8192")
        );
        assert_eq!(setting.flag(), "--commit-queue-capacity");
        assert_eq!(setting.var(), "STAMPEDE_COMMIT_QUEUE_CAPACITY");
    }

    /// The README's configuration table: (flag, variable, default) per row.
    fn readme_rows() -> Vec<(String, String, String)> {
        let readme = include_str!("../../../../README.md");
        let section = readme
            .split("\n## Configuration\n")
            .nth(1)
            .and_then(|rest| rest.split("\n## ").next())
            .unwrap();
        section
            .lines()
            .filter(|line| line.starts_with("| `--"))
            .map(|line| {
                let cells: Vec<&str> = line.split(" | ").collect();
                let plain = |cell: &str| cell.trim_matches(|c| c == '|' || c == ' ').to_owned();
                (
                    plain(cells[0]).trim_matches('`').to_owned(),
                    plain(cells[1]).trim_matches('`').to_owned(),
                    plain(cells[2]),
                )
            })
            .collect()
    }

    #[test]
    fn the_readme_lists_every_setting_with_its_variable_and_default() {
        let rows = readme_rows();
        let defaults = Config::defaults();
        for setting in names::settings() {
            let row = rows
                .iter()
                .find(|(flag, _, _)| *flag == setting.flag())
                .unwrap_or_else(|| panic!("README lacks {}", setting.flag()));
            assert_eq!(
                row.1,
                setting.var(),
                "README's variable of {}",
                setting.flag()
            );
            if let Some(default) = default_text(&defaults, setting) {
                assert_eq!(
                    row.2,
                    format!("`{default}`"),
                    "README's default of {}",
                    setting.flag()
                );
            }
        }
        for (flag, var, _) in &rows {
            if flag == "--config" {
                assert_eq!(var, "STAMPEDE_CONFIG");
                continue;
            }
            let name = flag.trim_start_matches("--");
            assert!(
                Setting::named(name).is_some(),
                "README lists {flag}, which is no setting"
            );
        }
    }
}
