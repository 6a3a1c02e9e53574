//! The one table of settings: each setting's place in [`Config`](super::Config)
//! and its one-line meaning. Everything else about a setting is derived:
//!
//! - its name (the key in the file): the path with `.` as `_`
//!   (`commit.queue_capacity` → `commit_queue_capacity`), except that the
//!   edge's settings (`http.*`) go without their section (`max_in_flight`);
//! - its flag: the name with `-` (`--commit-queue-capacity`);
//! - its variable: `STAMPEDE_` and the name in capitals;
//! - its default: the value at its path in `Config::default()`;
//! - its bounds, when it has any: listed here with it.
//!
//! A test checks the table against the schema both ways.

use std::sync::LazyLock;

/// One setting of `stampede serve`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    /// Where it sits in [`Config`](super::Config), sections joined by `.`.
    pub path: &'static str,
    /// The least and the most it may be, inclusive, in its unit.
    pub bounds: Option<(&'static str, &'static str)>,
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
        settings().iter().find(|setting| setting.name() == name)
    }

    /// The setting at `path`.
    pub fn at(path: &str) -> Option<&'static Setting> {
        settings().iter().find(|setting| setting.path == path)
    }

    /// The setting whose name is closest to `name`, if any is close.
    pub fn closest(name: &str) -> Option<&'static Setting> {
        let name = name.replace('-', "_");
        settings()
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

/// Every setting, in the order of `stampede serve --help` and the README:
/// its path in the schema, its bounds in its unit (`-`: none, or checked
/// in code), its meaning in one line.
const TABLE: &str = "
listen                           | -               | Address to listen on
data_dir                         | -               | Directory of the SQLite database and the generated secrets; one process per directory
role                             | -               | What this node does: `all`, or in cluster mode `api` (the API) or `worker` (the background workers)
jwt_secret                       | -               | HS256 secret for tokens; without one, a secret is generated and kept in the data directory
jwt_max_ttl_secs                 | 60..31536000    | Longest token lifetime: tokens whose `exp` is further ahead are refused
database_url                     | -               | PostgreSQL URL: the store of record in PostgreSQL instead of SQLite (cluster mode)
db.pool_size                     | 1..1024         | PostgreSQL connections per node
db.statement_timeout_ms          | 100..600000     | PostgreSQL aborts statements running longer
db.acquire_timeout_ms            | 100..600000     | Longest wait for a free PostgreSQL connection before answering 503
redis_url                        | -               | Redis URL: the stock ledger, shared rate limits and cache (cluster mode; needs database_url)
nats_url                         | -               | NATS URLs, comma-separated: the event bus on JetStream (cluster mode; needs database_url)
nats_replicas                    | 1..5            | Replicas of the JetStream stream when Stampede creates it; 3 in production
nats_ack_wait_ms                 | 1000..3600000   | JetStream redelivers an event a worker took but did not acknowledge after this
reservation_timeout_ms           | 1000..3600000   | A ledger reservation older than this with no committed order is taken back (cluster mode)
namespace                        | -               | Prefix of every Redis key, stream and subject (cluster mode)
log                              | -               | Log filter, e.g. `info` or `stampede=debug,info`
log_format                       | -               | Log format, `json` or `pretty`; unset: pretty on a terminal, json otherwise
otlp_endpoint                    | -               | Base URL of an OpenTelemetry collector (OTLP): spans go to `<url>/v1/traces`, or over gRPC with `OTEL_EXPORTER_OTLP_PROTOCOL=grpc`; unset: `OTEL_EXPORTER_OTLP_ENDPOINT`, else off
http.max_body_bytes              | 1024..67108864  | Largest request body in bytes
sqlite_synchronous               | -               | SQLite durability: `full` (a 2xx survives power loss) or `normal` (survives a crash of the process)
commit.queue_capacity            | 1..1000000      | Reserved orders that may wait for a commit before purchases get 503
commit.max_batch                 | 1..10000        | Most orders in one group commit
commit.workers                   | 1..64           | Group commits in flight at once
commit.attempts_per_unit         | 0..1000000      | Purchase attempts of a sale deciding or committing at once, per unit it has left (0: no bound)
room.capacity                    | 1..100000000    | Most tickets a sale's waiting room issues; later joins get 503
abuse.purchase_token             | -               | Purchases need the buyer's token for the sale (POST /api/v1/sales/{id}/token), issued only shortly before the start
abuse.token_lead_secs            | 1..86400        | Purchase tokens are issued from this long before a sale's start
abuse.pow_bits                   | 0..28           | Proof of work a purchase token asks: leading zero bits of SHA-256(challenge:nonce); 0: none
captcha_verify_url               | -               | A captcha provider's verification URL (hCaptcha, reCAPTCHA, Turnstile `siteverify`): purchase tokens then need a solved captcha
captcha_secret                   | -               | The captcha provider's secret key, sent with each verification
session_ttl_secs                 | 60..2592000     | Lifetime of tokens from POST /api/v1/sessions
idempotency.retention_secs       | 1..2592000      | How long purchase answers are remembered per Idempotency-Key, at least
idempotency.capacity             | 1000..100000000 | Refusals remembered in memory before the oldest go early
shutdown_grace_secs              | 1..3600         | Longest wait for in-flight requests on shutdown
public_url                       | -               | Base URL at which this node is reachable, for the payment provider's callbacks; unset: http://<listen address>
payment_webhook_secret           | -               | Secret of the payment provider's webhook signatures; generated in the data directory when unset
webhook_secret_key               | -               | Key sealing webhook signing secrets in the database, 64 hex digits; generated in the data directory when unset (cluster: the same on every node)
payment.timeout_ms               | 10..60000       | Longest wait for one call to the payment provider
payment.breaker.failure_rate     | 1..100          | Failure rate (percent) that opens the payment provider's breaker
payment.breaker.slow_ms          | 1..600000       | Calls at least this slow count as slow for the payment provider's breaker
payment.breaker.slow_rate        | 1..100          | Slow-call rate (percent) that opens the payment provider's breaker
payment.breaker.open_secs        | 1..3600         | How long the payment provider's breaker stays open
payment.sweep_interval_ms        | 100..3600000    | How often workers queue again the payments still waiting to be sent
payment.sweep_after_ms           | 100..3600000    | How long a payment waits to be sent before the sweep queues it again
payment_sim.latency_min_ms       | 0..600000       | Simulated provider: fastest charge call
payment_sim.latency_max_ms       | 0..600000       | Simulated provider: slowest charge call
payment_sim.decline_rate         | 0..1            | Simulated provider: share of payments declined, 0 to 1
payment_sim.error_rate           | 0..1            | Simulated provider: share of charge calls that fail, 0 to 1
payment_sim.confirm_delay_ms     | 0..600000       | Simulated provider: delay before it confirms on the webhook
webhook.max_attempts             | 1..100          | Attempts to deliver a webhook before it is dead-lettered
webhook.timeout_ms               | 10..60000       | Longest wait for a webhook endpoint's answer
webhook.backoff_ms               | 1..3600000      | First delay between webhook attempts; it doubles (full jitter) up to 10 minutes
webhook.allow_hosts              | -               | Hosts and CIDRs, comma-separated, webhook URLs may reach though not public (loopback, private, link-local…)
expiry_interval_ms               | 10..60000       | How often unpaid orders past their payment window are expired
cache.ttl_ms                     | 1..86400000     | How long product and sale reads stay cached (±10% jitter)
cache.negative_ttl_ms            | 1..86400000     | How long an unknown product or sale id is remembered as unknown
cache.capacity                   | 100..100000000  | Most entries per cache
http.rate_limits                 | -               | `default` (the file's `[[rate_limits]]`, or the built-in per-user purchase rule) or `off`
http.rate_limit_timeout_ms       | 1..10000        | Longest wait for Redis on a shared rate limit before the rule's fallback (cluster mode)
http.purchases_per_user_per_sec  | 1..1000000      | The built-in rule: purchase attempts per user per second (burst as many)
http.login_failures_per_min     | 0..100000       | Built in, apart from the rate-limit rules: failed logins per client address per minute, then 429 (right password too); 0 turns it off
http.registrations_per_hour      | 0..100000       | Built in, apart from the rate-limit rules: registrations (created or e-mail taken) per client address per hour; 0 turns it off
http.trusted_proxies             | -               | Proxies whose X-Forwarded-For is believed: comma-separated addresses or CIDRs
http.request_timeout_ms          | 10..3600000     | Each request's deadline
http.max_request_timeout_ms      | 10..3600000     | The longest deadline a client may ask for with `Request-Timeout: <seconds>`
http.max_in_flight               | 0..1000000      | Upper bound of the adaptive limit on requests in flight; 0 turns it off
http.min_in_flight               | -               | Lower bound of the adaptive limit on requests in flight
http.in_flight_latency_target_ms | 1..600000       | A request slower than this counts against the adaptive limit
http.header_timeout_ms           | 100..600000     | Longest a client may take to send a request head, from its first byte; then the connection is closed
http.idle_timeout_ms             | 100..3600000    | A keep-alive connection with no request for this long is closed
http.max_connections             | 1..1000000      | Open connections at most; past it a new one gets 503 and is closed
http.max_event_streams           | 1..1000000      | Open order event streams per node at most, past it 503 (and 8 per user, past it 429)
";

/// The settings of the table above.
pub fn settings() -> &'static [Setting] {
    static SETTINGS: LazyLock<Vec<Setting>> = LazyLock::new(|| {
        TABLE
            .lines()
            .filter_map(|line| {
                let mut cells = line.splitn(3, " | ").map(str::trim_end);
                let (path, bounds, about) = (cells.next()?, cells.next()?, cells.next()?);
                Some(Setting {
                    path,
                    bounds: bounds.split_once(".."),
                    about,
                })
            })
            .collect()
    });
    &SETTINGS
}
