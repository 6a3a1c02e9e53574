//! The one table of settings: each setting's place in [`Config`](super::Config)
//! and its one-line meaning. Everything else about a setting is derived:
//!
//! - its name (the key in the file): the path with `.` as `_`
//!   (`commit.queue_capacity` → `commit_queue_capacity`), except that the
//!   edge's settings (`http.*`) go without their section (`max_in_flight`);
//! - its flag: the name with `-` (`--commit-queue-capacity`);
//! - its variable: `STAMPEDE_` and the name in capitals;
//! - its default: the value at its path in `Config::default()`.
//!
//! A test checks the table against the schema both ways.

/// One setting of `stampede serve`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    /// Where it sits in [`Config`](super::Config), sections joined by `.`.
    pub path: &'static str,
    /// What it means, in one line.
    pub about: &'static str,
}

/// The section whose settings are named without it.
const UNPREFIXED: &str = "http.";

impl Setting {
    /// The key in the file, and the flag and variable without their dress.
    pub fn name(&self) -> String {
        self.path
            .strip_prefix(UNPREFIXED)
            .unwrap_or(self.path)
            .replace('.', "_")
    }

    pub fn flag(&self) -> String {
        format!("--{}", self.name().replace('_', "-"))
    }

    pub fn var(&self) -> String {
        format!("{PREFIX}{}", self.name().to_ascii_uppercase())
    }

    /// The setting named `name` (with `_` or `-`).
    pub fn named(name: &str) -> Option<&'static Setting> {
        let name = name.replace('-', "_");
        SETTINGS.iter().find(|setting| setting.name() == name)
    }

    /// The setting at `path`.
    pub fn at(path: &str) -> Option<&'static Setting> {
        SETTINGS.iter().find(|setting| setting.path == path)
    }

    /// The setting whose name is closest to `name`, if any is close.
    pub fn closest(name: &str) -> Option<&'static Setting> {
        let name = name.replace('-', "_");
        SETTINGS
            .iter()
            .map(|setting| (edit_distance(&name, &setting.name()), setting))
            .filter(|(distance, _)| *distance <= name.len().div_ceil(3).max(2))
            .min_by_key(|(distance, _)| *distance)
            .map(|(_, setting)| setting)
    }
}

/// Every variable of a setting starts with this.
pub const PREFIX: &str = "STAMPEDE_";

/// Levenshtein distance, for "did you mean".
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

const fn s(path: &'static str, about: &'static str) -> Setting {
    Setting { path, about }
}

/// Every setting, in the order of `stampede serve --help` and the README.
pub const SETTINGS: &[Setting] = &[
    s("listen", "Address to listen on"),
    s(
        "data_dir",
        "Directory of the SQLite database and the generated secrets; one process per directory",
    ),
    s(
        "role",
        "What this node does: `all`, or in cluster mode `api` (the API) or `worker` (the background workers)",
    ),
    s(
        "jwt_secret",
        "HS256 secret for tokens; without one, a secret is generated and kept in the data directory",
    ),
    s(
        "database_url",
        "PostgreSQL URL: the store of record in PostgreSQL instead of SQLite (cluster mode)",
    ),
    s("db.pool_size", "PostgreSQL connections per node"),
    s(
        "db.statement_timeout_ms",
        "PostgreSQL aborts statements running longer",
    ),
    s(
        "db.acquire_timeout_ms",
        "Longest wait for a free PostgreSQL connection before answering 503",
    ),
    s(
        "redis_url",
        "Redis URL: the stock ledger, shared rate limits and cache (cluster mode; needs database_url)",
    ),
    s(
        "nats_url",
        "NATS URLs, comma-separated: the event bus on JetStream (cluster mode; needs database_url)",
    ),
    s(
        "nats_replicas",
        "Replicas of the JetStream stream when Stampede creates it; 3 in production",
    ),
    s(
        "nats_ack_wait_ms",
        "JetStream redelivers an event a worker took but did not acknowledge after this",
    ),
    s(
        "reservation_timeout_ms",
        "A ledger reservation older than this with no committed order is taken back (cluster mode)",
    ),
    s(
        "namespace",
        "Prefix of every Redis key, stream and subject (cluster mode)",
    ),
    s("log", "Log filter, e.g. `info` or `stampede=debug,info`"),
    s(
        "log_format",
        "Log format, `json` or `pretty`; unset: pretty on a terminal, json otherwise",
    ),
    s("http.max_body_bytes", "Largest request body in bytes"),
    s(
        "sqlite_synchronous",
        "SQLite durability: `full` (a 2xx survives power loss) or `normal` (survives a crash of the process)",
    ),
    s(
        "commit.queue_capacity",
        "Reserved orders that may wait for a commit before purchases get 503",
    ),
    s("commit.max_batch", "Most orders in one group commit"),
    s("commit.workers", "Group commits in flight at once"),
    s(
        "session_ttl_secs",
        "Lifetime of tokens from POST /api/v1/sessions",
    ),
    s(
        "idempotency.retention_secs",
        "How long purchase answers are remembered per Idempotency-Key, at least",
    ),
    s(
        "idempotency.capacity",
        "Most purchase answers remembered in memory",
    ),
    s(
        "shutdown_grace_secs",
        "Longest wait for in-flight requests on shutdown",
    ),
    s(
        "public_url",
        "Base URL at which this node is reachable, for the payment provider's callbacks; unset: http://<listen address>",
    ),
    s(
        "payment_webhook_secret",
        "Secret of the payment provider's webhook signatures; generated in the data directory when unset",
    ),
    s(
        "payment.timeout_ms",
        "Longest wait for one call to the payment provider",
    ),
    s(
        "payment.breaker.failure_rate",
        "Failure rate (percent) that opens the payment provider's breaker",
    ),
    s(
        "payment.breaker.slow_ms",
        "Calls at least this slow count as slow for the payment provider's breaker",
    ),
    s(
        "payment.breaker.slow_rate",
        "Slow-call rate (percent) that opens the payment provider's breaker",
    ),
    s(
        "payment.breaker.open_secs",
        "How long the payment provider's breaker stays open",
    ),
    s(
        "payment.sweep_interval_ms",
        "How often workers queue again the payments still waiting to be sent",
    ),
    s(
        "payment.sweep_after_ms",
        "How long a payment waits to be sent before the sweep queues it again",
    ),
    s(
        "payment_sim.latency_min_ms",
        "Simulated provider: fastest charge call",
    ),
    s(
        "payment_sim.latency_max_ms",
        "Simulated provider: slowest charge call",
    ),
    s(
        "payment_sim.decline_rate",
        "Simulated provider: share of payments declined, 0 to 1",
    ),
    s(
        "payment_sim.error_rate",
        "Simulated provider: share of charge calls that fail, 0 to 1",
    ),
    s(
        "payment_sim.confirm_delay_ms",
        "Simulated provider: delay before it confirms on the webhook",
    ),
    s(
        "webhook.max_attempts",
        "Attempts to deliver a webhook before it is dead-lettered",
    ),
    s(
        "webhook.timeout_ms",
        "Longest wait for a webhook endpoint's answer",
    ),
    s(
        "webhook.backoff_ms",
        "First delay between webhook attempts; it doubles (full jitter) up to 10 minutes",
    ),
    s(
        "expiry_interval_ms",
        "How often unpaid orders past their payment window are expired",
    ),
    s(
        "cache.ttl_ms",
        "How long product and sale reads stay cached (±10% jitter)",
    ),
    s(
        "cache.negative_ttl_ms",
        "How long an unknown product or sale id is remembered as unknown",
    ),
    s("cache.capacity", "Most entries per cache"),
    s(
        "http.rate_limits",
        "`default` (the file's `[[rate_limits]]`, or the built-in per-user purchase rule) or `off`",
    ),
    s(
        "http.rate_limit_timeout_ms",
        "Longest wait for Redis on a shared rate limit before the rule's fallback (cluster mode)",
    ),
    s(
        "http.purchases_per_user_per_sec",
        "The built-in rule: purchase attempts per user per second (burst as many)",
    ),
    s(
        "http.trusted_proxies",
        "Proxies whose X-Forwarded-For is believed: comma-separated addresses or CIDRs",
    ),
    s("http.request_timeout_ms", "Each request's deadline"),
    s(
        "http.max_request_timeout_ms",
        "The longest deadline a client may ask for with `Request-Timeout: <seconds>`",
    ),
    s(
        "http.max_in_flight",
        "Upper bound of the adaptive limit on requests in flight; 0 turns it off",
    ),
    s(
        "http.min_in_flight",
        "Lower bound of the adaptive limit on requests in flight",
    ),
    s(
        "http.in_flight_latency_target_ms",
        "A request slower than this counts against the adaptive limit",
    ),
];
