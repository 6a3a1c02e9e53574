//! The command line of `stampede bench flash-sale` and `stampede audit`. Every
//! flag also reads a `STAMPEDE_*` environment variable: the target and the
//! secret are shared with the server's own (`STAMPEDE_JWT_SECRET`,
//! `STAMPEDE_DATA_DIR`), the load's shape is `STAMPEDE_BENCH_*`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};

/// Load-test a running Stampede (`bench flash-sale`), then audit the sale.
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub command: BenchCommand,
}

#[derive(Debug, Clone, Subcommand)]
pub enum BenchCommand {
    /// Fire a flash-sale crowd at a running Stampede, measure it against the
    /// plain-HTTP ceiling (GET /livez) in the same run, then audit the sale.
    FlashSale(Box<FlashSaleArgs>),
}

/// Where the server is and how to sign tokens it accepts.
#[derive(Debug, Clone, Args)]
pub struct ServerArgs {
    /// Base URL of the running server; plain `http://` only.
    #[arg(
        long,
        env = "STAMPEDE_TARGET",
        default_value = "http://127.0.0.1:8080",
        value_name = "URL"
    )]
    pub target: String,
    /// The server's HS256 secret; tokens for customers and the admin are minted with it.
    #[arg(
        long,
        env = "STAMPEDE_JWT_SECRET",
        hide_env_values = true,
        value_name = "SECRET"
    )]
    pub jwt_secret: Option<String>,
    /// Without --jwt-secret: the server's data directory, whose `jwt-secret` file is read.
    #[arg(
        long,
        env = "STAMPEDE_DATA_DIR",
        default_value = "./stampede-data",
        value_name = "DIR"
    )]
    pub data_dir: PathBuf,
}

/// A named shape of the crowd, applied over the other flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// A crowd a hundred times the stock: `--users` becomes 100 × `--stock`,
    /// one unit each. The report's sell-out line says how long the losing
    /// requests in flight at the sell-out waited past it.
    #[value(name = "crowd-100x-stock")]
    Crowd100xStock,
    /// A sale with a waiting room (docs/api.md §3.3): the sale starts
    /// `--room-lead-ms` after it is created, every one of `--users`
    /// customers joins its room before then (joins spread over the lead
    /// time), polls `POST /queue` as each answer's `retry_after_ms` says
    /// until admitted or told `sold-out`, and buys one unit once with its
    /// ticket. Runs until every customer is done, at most `--duration` +
    /// 30 s (the room's longest wait) past the start. The report's
    /// waiting-room section: waits, polls, the sell-out as the line saw
    /// it, the draw's fairness and the waits told against those lived.
    #[value(name = "waiting-room")]
    WaitingRoom,
}

/// `stampede bench flash-sale`
#[derive(Debug, Clone, Args)]
pub struct FlashSaleArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    /// A named crowd (see the values); it overrides the flags it sets.
    #[arg(long, env = "STAMPEDE_BENCH_SCENARIO", value_enum, value_name = "NAME")]
    pub scenario: Option<Scenario>,
    /// Buy from this existing sale instead of creating a product and a sale.
    #[arg(long, env = "STAMPEDE_BENCH_SALE", value_name = "ID")]
    pub sale: Option<String>,
    /// Distinct customers (tokens with subs `bench-<run id>-<i>`).
    #[arg(
        long,
        env = "STAMPEDE_BENCH_USERS",
        default_value_t = 10_000,
        value_name = "N"
    )]
    pub users: u32,
    /// Units on sale (ignored with --sale).
    #[arg(
        long,
        env = "STAMPEDE_BENCH_STOCK",
        default_value_t = 1_000,
        value_name = "N"
    )]
    pub stock: u32,
    /// Most units one customer may hold (ignored with --sale).
    #[arg(
        long,
        env = "STAMPEDE_BENCH_PER_USER_LIMIT",
        default_value_t = 1,
        value_name = "N"
    )]
    pub per_user_limit: u32,
    /// Keep-alive connections; each sends its next request when the previous answer arrives.
    #[arg(
        long,
        env = "STAMPEDE_BENCH_CONNECTIONS",
        default_value_t = 256,
        value_name = "N"
    )]
    pub connections: usize,
    /// Open loop: requests per second on a fixed schedule, latency counted from
    /// the scheduled time (no coordinated omission). Without it: closed loop.
    #[arg(long, env = "STAMPEDE_BENCH_RATE", value_name = "PER_SEC")]
    pub rate: Option<f64>,
    /// Length of each phase (livez, then purchases), e.g. `10s`, `500ms`, `1m`
    /// [default: 10s, or unlimited with --requests].
    #[arg(long, env = "STAMPEDE_BENCH_DURATION", value_parser = parse_duration, value_name = "TIME")]
    pub duration: Option<Duration>,
    /// Requests per phase; with --duration too, whichever ends first.
    #[arg(long, env = "STAMPEDE_BENCH_REQUESTS", value_name = "N")]
    pub requests: Option<u64>,
    /// Share of purchases that replay one of the customer's earlier
    /// Idempotency-Keys; a replay must get the first answer.
    #[arg(
        long,
        env = "STAMPEDE_BENCH_REPLAY_RATIO",
        default_value_t = 0.01,
        value_name = "F"
    )]
    pub replay_ratio: f64,
    /// Units per purchase.
    #[arg(
        long,
        env = "STAMPEDE_BENCH_QUANTITY",
        default_value_t = 1,
        value_name = "N"
    )]
    pub quantity: u32,
    /// Print the results as JSON on stdout (the human report goes to stderr).
    #[arg(long, env = "STAMPEDE_BENCH_JSON")]
    pub json: bool,
    /// `--scenario waiting-room`: milliseconds from the sale's creation to
    /// its start (the draw), over which the customers join.
    #[arg(
        long,
        env = "STAMPEDE_BENCH_ROOM_LEAD_MS",
        default_value_t = 3_000,
        value_name = "MS"
    )]
    pub room_lead_ms: u64,
    /// Skip the GET /livez ceiling phase (the ratios are then not reported).
    #[arg(long, env = "STAMPEDE_BENCH_NO_CEILING")]
    pub no_ceiling: bool,
    /// Skip the audit after the run.
    #[arg(long, env = "STAMPEDE_BENCH_NO_AUDIT")]
    pub no_audit: bool,
    /// Longest wait for one answer; a request past it counts as an error.
    #[arg(long, env = "STAMPEDE_BENCH_TIMEOUT", default_value = "10s", value_parser = parse_duration, value_name = "TIME")]
    pub timeout: Duration,
    /// Runtime threads of the generator [default: the number of cores].
    #[arg(long, env = "STAMPEDE_BENCH_THREADS", value_name = "N")]
    pub threads: Option<usize>,
    /// The server's process id, when it runs on this machine: its peak RSS and
    /// CPU time go into the report (read from /proc).
    #[arg(long, env = "STAMPEDE_BENCH_SERVER_PID", value_name = "PID")]
    pub server_pid: Option<u32>,
    /// Requests in flight at once during the audit.
    #[arg(long, default_value_t = 32, value_name = "N")]
    pub audit_concurrency: usize,
    /// More api nodes of the same deployment: the connections are spread
    /// over --target and these, in turn.
    #[arg(long = "also-target", value_name = "URL")]
    pub also_targets: Vec<String>,
    /// Share of won orders followed by a pay, a cancel, or both (in either
    /// order) on the same connection.
    #[arg(
        long,
        env = "STAMPEDE_BENCH_PAY_CANCEL_RATIO",
        default_value_t = 0.0,
        value_name = "F"
    )]
    pub pay_cancel_ratio: f64,
    /// Record every purchase, pay and cancel (sent, answered, answer) to
    /// FILE as JSON lines, for `stampede check-history`.
    #[arg(long, env = "STAMPEDE_BENCH_HISTORY", value_name = "FILE")]
    pub history: Option<PathBuf>,
    /// Also write the run as one self-contained HTML page to FILE:
    /// throughput over time and latency percentile curves per outcome, and
    /// the audit.
    #[arg(long, env = "STAMPEDE_BENCH_REPORT", value_name = "FILE")]
    pub report: Option<PathBuf>,
}

/// Check a sale on a running Stampede against the contract (no oversell,
/// ledger = database, per-user limits); exits 1 on a violation.
#[derive(Debug, Clone, Args)]
pub struct AuditArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    /// The sale to check.
    #[arg(long, env = "STAMPEDE_AUDIT_SALE", value_name = "ID")]
    pub sale: String,
    /// Check the per-user limit of this many customers, subs `<prefix><i>`
    /// for i in 0..N (a bench run prints its prefix).
    #[arg(long, default_value_t = 0, value_name = "N", requires = "user_prefix")]
    pub users: u32,
    /// Prefix of the customers' subs, e.g. `bench-3f9a1c2e-`.
    #[arg(long, value_name = "P")]
    pub user_prefix: Option<String>,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 32, value_name = "N")]
    pub concurrency: usize,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Check a recorded history (`bench flash-sale --history FILE`) against the
/// final state of its sale on a running Stampede; exits 1 on a violation.
#[derive(Debug, Clone, Args)]
pub struct CheckHistoryArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    /// The history files (JSON lines) of one sale, e.g. of runs before and
    /// after a crash.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Requests in flight at once while reading the final state.
    #[arg(long, default_value_t = 32, value_name = "N")]
    pub concurrency: usize,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Which deployment a drill kills nodes of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DrillMode {
    /// One node on SQLite.
    Embedded,
    /// Two api nodes and a worker on the local PostgreSQL, Redis and NATS
    /// (`STAMPEDE_TEST_POSTGRES_URL`, `REDIS_URL`, `NATS_URL`), a fresh
    /// database, key namespace and streams per round.
    Cluster,
}

/// Crash drills: rounds of "fresh deployment → crowd with history → kill -9
/// a node at a seeded random moment → restart → audit and history check".
#[derive(Debug, Clone, Args)]
pub struct DrillArgs {
    /// Seed of the first round; round i uses seed + i, so `--seed S --rounds 1`
    /// replays the choices of a round printed with seed S [default: random].
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub rounds: u64,
    #[arg(long, value_enum, default_value = "embedded")]
    pub mode: DrillMode,
    /// The `stampede` binary to run nodes of [default: this one].
    #[arg(long, value_name = "PATH")]
    pub binary: Option<PathBuf>,
    /// Where rounds keep their data; a failed round's is kept [default: a
    /// temporary directory].
    #[arg(long, value_name = "DIR")]
    pub work_dir: Option<PathBuf>,
    /// Length of each round's crowd.
    #[arg(long, default_value = "2s", value_parser = parse_duration, value_name = "TIME")]
    pub duration: Duration,
    #[arg(long, default_value_t = 200, value_name = "N")]
    pub users: u32,
    #[arg(long, default_value_t = 60, value_name = "N")]
    pub stock: u32,
    #[arg(long, default_value_t = 2, value_name = "N")]
    pub per_user_limit: u32,
    #[arg(long, default_value_t = 8, value_name = "N")]
    pub connections: usize,
    /// Share of wins followed by a pay and/or a cancel.
    #[arg(long, default_value_t = 0.3, value_name = "F")]
    pub pay_cancel_ratio: f64,
}

/// `10s`, `250ms`, `1.5s`, `2m`, `1h`, or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration such as 10s, 500ms or 1m"))?;
    let seconds = match unit.trim() {
        "" | "s" | "sec" | "secs" => value,
        "ms" => value / 1_000.0,
        "us" | "µs" => value / 1_000_000.0,
        "m" | "min" => value * 60.0,
        "h" => value * 3_600.0,
        other => return Err(format!("unknown unit `{other}` in `{text}` (ms, s, m, h)")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("`{text}`: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_people_write_them() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("ten seconds").is_err());
        assert!(parse_duration("5 parsecs").is_err());
    }
}
