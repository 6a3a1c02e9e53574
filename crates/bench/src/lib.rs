//! Stampede's flash-sale load generator and audit, called by the binary as
//! `stampede bench flash-sale …` and `stampede audit …`.
//!
//! A run, in the order it happens ([`flash_sale`]):
//!
//! 1. [`users`]: a fresh run id; a token per customer (subs
//!    `bench-<run id>-<i>`) minted from the server's JWT secret.
//! 2. The sale: a product and a sale made through the admin API, or `--sale`.
//! 3. [`crowd`]: the ceiling phase (`GET /livez`), then the purchase phase,
//!    each with the same number of keep-alive connections ([`client`]), closed
//!    or open loop; answers are classified ([`outcome`]) and their latencies
//!    recorded in HDR histograms ([`report`]); a line per second on a
//!    terminal ([`progress`]); the sell-out as the crowd saw it
//!    ([`sell_out`]). With `--scenario waiting-room`, the sale is made
//!    after the ceiling phase, to start a lead time later, and the
//!    purchase phase is [`room`]: customers who join the sale's waiting
//!    room, poll it as told and buy once admitted ([`room_stats`]).
//! 4. [`audit`]: the server's state checked against the contract.
//! 5. [`report`]: the human report, and the JSON document with `--json`.
//!
//! Performance is measured here and in `cargo bench`, never asserted in tests.

pub mod audit;
pub mod check;
pub mod cli;
pub mod client;
pub mod crowd;
pub mod drill;
pub mod history;
pub mod outcome;
pub mod procfs;
pub mod progress;
pub mod report;
pub mod report_html;
pub mod room;
pub mod room_stats;
pub mod sell_out;
pub mod timeline;
pub mod users;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use hyper::{Method, StatusCode};
use serde::Deserialize;
use stampede_domain::time::Timestamp;

use crate::audit::{AuditPlan, AuditReport};
use crate::cli::{AuditArgs, BenchCommand, CheckHistoryArgs, FlashSaleArgs, Scenario};
use crate::client::{Api, Target};
use crate::crowd::{Load, PurchaseWork, Work};
use crate::history::History;
use crate::outcome::Outcome;
use crate::procfs::CpuMeter;
use crate::progress::Progress;
use crate::report::{PhaseSummary, ProcessUsage, ReplayStats, Report, round3};
use crate::room::RoomWork;
use crate::room_stats::WaitingRoom;
use crate::users::{Minter, Users};

/// Exit code of a run whose audit found a violation.
pub const EXIT_VIOLATION: u8 = 1;

/// Orders made by the bench stay open for the longest window the API allows
/// (a week), so a later `stampede audit` still finds them unexpired.
const PAYMENT_WINDOW_SECS: u32 = 604_800;

/// `stampede bench …`: runs, prints, and exits 1 if the audit failed.
pub fn bench(command: BenchCommand) -> anyhow::Result<ExitCode> {
    match command {
        BenchCommand::FlashSale(args) => {
            let runtime = runtime(args.threads)?;
            let json = args.json;
            let (report, text) = runtime.block_on(flash_sale(&args))?;
            if json {
                eprint!("{text}");
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report).context("encoding the report")?
                );
            } else {
                print!("{text}");
            }
            Ok(exit_code(report.audit_ok != Some(false)))
        }
    }
}

/// `stampede audit`: checks one sale, prints, and exits 1 on a violation.
pub fn audit(args: AuditArgs) -> anyhow::Result<ExitCode> {
    let runtime = runtime(None)?;
    let report = runtime.block_on(audit_sale(&args))?;
    print_verdict(
        "audit",
        &report,
        report.ok,
        &report.summary(),
        &report.violations,
        args.json,
    )
}

/// Prints a checked report (as JSON, or a verdict line and its violations)
/// and turns its verdict into the exit code.
fn print_verdict(
    what: &str,
    report: &impl serde::Serialize,
    ok: bool,
    summary: &str,
    violations: &[String],
    json: bool,
) -> anyhow::Result<ExitCode> {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(report).context("encoding the report")?
        );
    } else {
        println!("{what} {}: {summary}", if ok { "ok" } else { "FAILED" });
        for violation in violations {
            println!("  - {violation}");
        }
    }
    Ok(exit_code(ok))
}

/// `stampede check-history FILE…`: checks, prints, and exits 1 on a violation.
pub fn check_history(args: CheckHistoryArgs) -> anyhow::Result<ExitCode> {
    let runtime = runtime(None)?;
    let records = check::read_all(&args.files)?;
    let report = runtime.block_on(async {
        let target = Target::resolve(&args.server.target).await?;
        let minter = Minter::from_args(&args.server)?;
        check::check_live(&target, &minter, &records, args.concurrency).await
    })?;
    print_verdict(
        "history",
        &report,
        report.ok,
        &report.summary(),
        &report.violations,
        args.json,
    )
}

fn exit_code(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_VIOLATION)
    }
}

fn runtime(threads: Option<usize>) -> anyhow::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = threads {
        builder.worker_threads(threads.max(1));
    }
    builder
        .enable_all()
        .thread_name("stampede-bench")
        .build()
        .context("starting the runtime")
}

/// `stampede audit --sale ID [--users N --user-prefix P]`.
pub async fn audit_sale(args: &AuditArgs) -> anyhow::Result<AuditReport> {
    let target = Target::resolve(&args.server.target).await?;
    let minter = Minter::from_args(&args.server)?;
    let mut plan = AuditPlan::sale_only(args.sale.clone());
    plan.concurrency = args.concurrency;
    if let Some(prefix) = &args.user_prefix {
        plan.users = (0..args.users).map(|i| format!("{prefix}{i}")).collect();
    }
    audit::run(&target, &minter, &plan).await
}

#[derive(Debug, Deserialize)]
struct Created {
    id: String,
}

/// A sale as the API answers it, as far as the bench reads it.
#[derive(Debug, Deserialize)]
struct SaleTerms {
    id: String,
    quantity: u64,
    per_user_limit: u64,
    starts_at: String,
    #[serde(default)]
    waiting_room: bool,
}

/// The sale to buy from: the given one, or a new product and sale (with
/// `room_lead`, a sale with a waiting room starting that much later).
async fn prepare_sale(
    api: &mut Api,
    minter: &Minter,
    run_id: &str,
    args: &FlashSaleArgs,
    room_lead: Option<Duration>,
) -> anyhow::Result<SaleTerms> {
    if let Some(sale) = &args.sale {
        let terms: SaleTerms = api
            .json(
                Method::GET,
                &format!("/api/v1/sales/{sale}"),
                None,
                None,
                StatusCode::OK,
            )
            .await
            .with_context(|| format!("reading sale {sale}"))?;
        return Ok(terms);
    }
    let admin = minter.admin(run_id)?;
    let product: Created = api
        .json(
            Method::POST,
            "/api/v1/products",
            Some(&admin),
            Some(&serde_json::json!({
                "sku": format!("BENCH-{run_id}"),
                "name": format!("stampede bench {run_id}"),
                "price_cents": 100,
                "currency": "EUR",
            })),
            StatusCode::CREATED,
        )
        .await
        .context("creating the product")?;
    let mut sale = serde_json::json!({
        "product_id": product.id,
        "quantity": args.stock,
        "per_user_limit": args.per_user_limit,
        "payment_window_secs": PAYMENT_WINDOW_SECS,
    });
    if let Some(lead) = room_lead {
        let lead = i64::try_from(lead.as_millis()).unwrap_or(i64::MAX);
        sale["waiting_room"] = true.into();
        sale["starts_at"] = Timestamp::now().plus_millis(lead).to_rfc3339().into();
    }
    api.json(
        Method::POST,
        "/api/v1/sales",
        Some(&admin),
        Some(&sale),
        StatusCode::CREATED,
    )
    .await
    .context("creating the sale")
}

/// `at` on this process's monotonic clock (before now if it has passed).
fn instant_at(at: Timestamp) -> Instant {
    let (now, wall) = (Instant::now(), Timestamp::now());
    let gap = Duration::from_millis(at.as_millis().abs_diff(wall.as_millis()));
    if at >= wall {
        now + gap
    } else {
        now.checked_sub(gap).unwrap_or(now)
    }
}

/// `cpu`: the (server, generator) CPU seconds the phase took.
fn summary(result: &crowd::PhaseResult, cpu: (Option<f64>, Option<f64>)) -> PhaseSummary {
    let requests = result.recorder.total();
    let seconds = result.elapsed.as_secs_f64();
    let per_request = |s: f64| (requests > 0).then(|| (s * 1e7 / requests as f64).round() / 10.0);
    PhaseSummary {
        requests,
        seconds: round3(seconds),
        rps: round3(per_second(requests, result.elapsed)),
        errors: result.recorder.count(Outcome::Error),
        latency_ms: result.recorder.latency_all(),
        server_cpu_us: cpu.0.and_then(per_request),
        generator_cpu_us: cpu.1.and_then(per_request),
    }
}

fn per_second(n: u64, over: Duration) -> f64 {
    let secs = over.as_secs_f64();
    if secs > 0.0 { n as f64 / secs } else { 0.0 }
}

/// `stampede bench flash-sale`: the report and its human rendering.
pub async fn flash_sale(args: &FlashSaleArgs) -> anyhow::Result<(Report, String)> {
    let history = match &args.history {
        Some(path) => Some(Arc::new(History::create(path)?)),
        None => None,
    };
    flash_sale_with(args, history).await
}

/// `args` with its `--scenario`'s settings in place of theirs.
fn with_scenario(args: &FlashSaleArgs) -> FlashSaleArgs {
    let mut args = args.clone();
    match args.scenario {
        Some(Scenario::Crowd100xStock) => {
            args.users = args.stock.saturating_mul(100);
            args.per_user_limit = 1;
            args.quantity = 1;
        }
        Some(Scenario::WaitingRoom) => {
            args.per_user_limit = 1;
            args.quantity = 1;
            args.replay_ratio = 0.0;
        }
        None => {}
    }
    args
}

/// The purchase phase of `--scenario waiting-room` on `sale`: its
/// purchases as a purchase phase, and the room's section of the report.
async fn room_phase(
    args: &FlashSaleArgs,
    targets: &[Target],
    sale: &SaleTerms,
    users: Arc<Users>,
    run_id: &str,
) -> anyhow::Result<(crowd::PhaseResult, WaitingRoom)> {
    if !sale.waiting_room {
        bail!(
            "sale {} has no waiting room (its answer says `waiting_room` false, or nothing: a \
             server without waiting rooms?)",
            sale.id
        );
    }
    let starts_at = Timestamp::parse_rfc3339("starts_at", &sale.starts_at)
        .map_err(|e| anyhow::anyhow!("sale {}: starts_at {}", sale.id, e.message))?;
    let draw = instant_at(starts_at);
    let lead = Duration::from_millis(args.room_lead_ms);
    // Joins end a little before the start, so that they reach the server
    // before it; a sale that has started already takes them over the lead.
    let margin = (lead / 10).min(Duration::from_millis(500));
    let now = Instant::now();
    let joins_until = if draw > now + margin {
        draw - margin
    } else {
        now + lead
    };
    let work = RoomWork {
        sale_id: sale.id.clone(),
        users,
        run_id: run_id.to_owned(),
        connections: args.connections,
        timeout: args.timeout,
        draw,
        joins_until,
        // The room's longest wait past the run's length.
        deadline: draw.max(joins_until)
            + args.duration.unwrap_or(Duration::from_secs(10))
            + Duration::from_secs(30),
        lead_ms: args.room_lead_ms,
    };
    let result = room::run(work, targets).await?;
    Ok((result.purchase, result.section))
}

/// [`flash_sale`] recording into `history` (which the caller may also write
/// to, e.g. a drill's crash markers) instead of `--history`.
pub async fn flash_sale_with(
    args: &FlashSaleArgs,
    history: Option<Arc<History>>,
) -> anyhow::Result<(Report, String)> {
    let args = &with_scenario(args);
    if args.connections == 0 {
        bail!("--connections must be at least 1");
    }
    if args.users == 0 {
        bail!("--users must be at least 1");
    }
    if !(0.0..=1.0).contains(&args.replay_ratio) {
        bail!("--replay-ratio must be between 0 and 1");
    }
    if args.rate.is_some_and(|r| r.is_nan() || r <= 0.0) {
        bail!("--rate must be above 0");
    }
    if !(0.0..=1.0).contains(&args.pay_cancel_ratio) {
        bail!("--pay-cancel-ratio must be between 0 and 1");
    }
    let room = args.scenario == Some(Scenario::WaitingRoom);
    if room {
        for (given, flag) in [
            (args.rate.is_some(), "--rate"),
            (args.requests.is_some(), "--requests"),
            (args.pay_cancel_ratio > 0.0, "--pay-cancel-ratio"),
            (history.is_some(), "--history"),
        ] {
            if given {
                bail!("{flag} does not go with --scenario waiting-room");
            }
        }
    }
    let target = Target::resolve(&args.server.target).await?;
    let mut targets = vec![target.clone()];
    for url in &args.also_targets {
        targets.push(Target::resolve(url).await?);
    }
    let minter = Minter::from_args(&args.server)?;
    let run_id = users::run_id();
    let prefix = format!("bench-{run_id}-");
    let users = Arc::new(Users::mint(&minter, &prefix, args.users)?);

    // A room sale is made after the ceiling phase: it starts a lead time
    // after its creation, and every customer joins in between.
    let room_lead = room.then(|| Duration::from_millis(args.room_lead_ms));
    let mut api = Api::new(target.clone());
    let mut sale = if room {
        None
    } else {
        Some(prepare_sale(&mut api, &minter, &run_id, args, None).await?)
    };

    let duration = match (args.duration, args.requests) {
        (Some(d), _) => Some(d),
        (None, Some(_)) => None,
        (None, None) => Some(Duration::from_secs(10)),
    };
    let load = Load {
        connections: args.connections,
        rate: args.rate,
        duration,
        requests: args.requests,
        timeout: args.timeout,
    };

    // The ceiling first, with the same connections and length: both phases
    // then see the same machine, minutes apart at most.
    let livez = if args.no_ceiling {
        None
    } else {
        let meter = CpuMeter::start(args.server_pid);
        let livez = crowd::run(&targets, Work::Livez, &load, Progress::for_phase("livez")).await?;
        Some(summary(&livez, meter.seconds()))
    };

    let sale = match sale.take() {
        Some(sale) => sale,
        None => prepare_sale(&mut api, &minter, &run_id, args, room_lead).await?,
    };
    drop(api);
    let (sale_id, stock, per_user_limit) = (sale.id.clone(), sale.quantity, sale.per_user_limit);

    let meter = CpuMeter::start(args.server_pid);
    let (mut purchase, waiting_room, cpu) = if room {
        let (purchase, mut section) =
            room_phase(args, &targets, &sale, users.clone(), &run_id).await?;
        let (server_cpu, own_cpu) = meter.seconds();
        let requests = section.load.queue_requests + section.load.purchase_requests;
        section.load.server_cpu_us = server_cpu
            .filter(|_| requests > 0)
            .map(|s| (s * 1e7 / requests as f64).round() / 10.0);
        // The whole phase's CPU is not the purchases' alone.
        (purchase, Some(section), (server_cpu, own_cpu, (None, None)))
    } else {
        let work = Work::Purchase(Arc::new(PurchaseWork {
            path: format!("/api/v1/sales/{sale_id}/purchase")
                .parse()
                .context("the sale id does not fit in a path")?,
            body: Bytes::from(format!("{{\"quantity\":{}}}", args.quantity)),
            quantity: args.quantity,
            users: users.clone(),
            replay_ratio: args.replay_ratio,
            run_id: run_id.clone(),
            sale_id: sale_id.clone(),
            pay_cancel_ratio: args.pay_cancel_ratio,
            history,
        }));
        let purchase = crowd::run(&targets, work, &load, Progress::for_phase("purchase")).await?;
        let (server_cpu, own_cpu) = meter.seconds();
        (purchase, None, (server_cpu, own_cpu, (server_cpu, own_cpu)))
    };
    let (server_cpu, own_cpu, purchase_cpu) = cpu;
    let server = args.server_pid.map(|pid| ProcessUsage {
        peak_rss_kb: procfs::peak_rss_kb(pid),
        cpu_s: server_cpu.map(round3),
    });

    if let Some(err) = purchase.history_error.take() {
        bail!("the history is incomplete: {err}");
    }
    let recorder = &purchase.recorder;
    let losing_rps = per_second(recorder.refusals(), purchase.elapsed);
    let livez_summary = livez;
    let livez_rps = livez_summary.as_ref().map(|s| s.rps);
    let losing_ratio = livez_rps
        .filter(|r| *r > 0.0)
        .map(|r| round3(losing_rps / r));
    let won = recorder.count(Outcome::Won);

    let audit = if args.no_audit {
        None
    } else {
        let plan = AuditPlan {
            sale_id: sale_id.clone(),
            users: (0..users.len()).map(|i| users.sub(i)).collect(),
            won: purchase
                .won
                .iter()
                .map(|w| (users.sub(w.user), w.order_id.clone(), w.quantity))
                .collect(),
            cancel_sent: purchase.cancel_sent.iter().cloned().collect(),
            exclusive: args.sale.is_none(),
            answers_complete: [Outcome::Error, Outcome::Overloaded, Outcome::Unavailable]
                .iter()
                .all(|o| recorder.count(*o) == 0),
            // The room ends at the sell-out: a customer told so in line
            // saw it as much as a refused purchase.
            sold_out_seen: recorder.count(Outcome::SoldOut) > 0
                || waiting_room
                    .as_ref()
                    .is_some_and(|w| w.sold_out_in_line > 0),
            concurrency: args.audit_concurrency,
        };
        Some(
            audit::run(&target, &minter, &plan)
                .await
                .context("auditing the sale")?,
        )
    };

    let report = Report {
        run_id,
        target: target.url.clone(),
        sale_id,
        user_prefix: prefix,
        users: args.users,
        stock,
        per_user_limit,
        quantity: args.quantity,
        mode: if args.rate.is_some() {
            "open"
        } else {
            "closed"
        },
        connections: args.connections,
        rate: args.rate,
        replay_ratio: args.replay_ratio,
        livez: livez_summary,
        livez_rps,
        purchase: summary(&purchase, purchase_cpu),
        losing_rps: round3(losing_rps),
        losing_ratio,
        won_per_sec: round3(per_second(won, purchase.won_window)),
        won_window_s: round3(purchase.won_window.as_secs_f64()),
        sell_out: purchase.sell_out.clone(),
        waiting_room: waiting_room.map(|mut section| {
            section.load.queue_peak_ratio = livez_rps
                .filter(|r| *r > 0.0)
                .map(|r| round3(section.load.queue_peak_rps / r));
            section
        }),
        outcomes: report::outcome_counts(recorder),
        latency_ms: report::outcome_latencies(recorder),
        replays: ReplayStats {
            sent: purchase.replays_sent,
            mismatched: purchase.replay_mismatches,
        },
        errors: purchase.errors.clone(),
        server,
        generator_cpu_s: own_cpu.map(round3),
        audit_ok: audit.as_ref().map(|a| a.ok),
        audit_violations: audit
            .as_ref()
            .map(|a| a.violations.clone())
            .unwrap_or_default(),
        audit,
    };
    let text = report::render(&report, recorder);
    if let Some(path) = &args.report {
        let page = report_html::render(&report, recorder, &purchase.timeline);
        std::fs::write(path, page)
            .with_context(|| format!("writing the report to {}", path.display()))?;
    }
    Ok((report, text))
}
