//! The crowd: `connections` keep-alive connections, one task each, firing
//! either `GET /livez` (the ceiling) or purchases.
//!
//! - **Closed loop** (default): each connection sends its next request when
//!   the previous answer arrives; latency is measured from the send.
//! - **Open loop** (`--rate R`): request `i` is due at `start + i / R`. A
//!   connection takes the next due request from a shared counter, waits for
//!   its time, and sends it. When every connection is busy the schedule slips,
//!   and because latency is measured from the *scheduled* time, the wait shows
//!   in the figures (no coordinated omission). Tokio's timer has 1 ms
//!   granularity, so a request may leave up to 1 ms early rather than late;
//!   its latency is then measured from when it really left.
//!
//! Each purchase picks a customer at random and a fresh `Idempotency-Key`,
//! or, with probability `replay_ratio`, repeats one of this connection's
//! recent requests (same customer, same key), whose answer must then be the
//! first one (docs/api.md §4: a 202's order, or the same remembered refusal).
//!
//! With `--pay-cancel-ratio F`, a fresh win is followed, with probability F,
//! on the same connection by a pay, a cancel, or both in either order, on
//! that order (their answers go to the history, not into the latency
//! figures). With `--history`, every request is written to the history
//! ([`crate::history`]).

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST, HeaderName, HeaderValue, LOCATION};
use hyper::{Method, Request, Uri};

use crate::client::{Answer, Conn, Target};
use crate::history::{History, Op, Record};
use crate::outcome::{Outcome, classify_livez, classify_purchase};
use crate::progress::Progress;
use crate::report::Recorder;
use crate::sell_out::{SellOut, Span};
use crate::timeline::{Sampler, Timeline};
use crate::users::Users;

const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

/// Recent requests a connection remembers for replays.
const HISTORY: usize = 64;

/// Recorders shared by the connections (see [`crate::report`]).
const SHARDS: usize = 8;

/// Distinct error descriptions kept; past it they count as "other".
const ERROR_KINDS: usize = 20;

/// How much load, for how long.
#[derive(Debug, Clone)]
pub struct Load {
    pub connections: usize,
    /// Requests per second (open loop); `None`: closed loop.
    pub rate: Option<f64>,
    pub duration: Option<Duration>,
    pub requests: Option<u64>,
    pub timeout: Duration,
}

/// What the requests are.
#[derive(Debug, Clone)]
pub enum Work {
    Livez,
    Purchase(Arc<PurchaseWork>),
}

/// Everything a purchase request needs, built before the clock starts.
#[derive(Debug)]
pub struct PurchaseWork {
    /// `/api/v1/sales/{id}/purchase`
    pub path: Uri,
    /// `{"quantity": n}`
    pub body: Bytes,
    pub quantity: u32,
    pub users: Arc<Users>,
    pub replay_ratio: f64,
    /// Prefix of every key of this run, so reruns never reuse a key.
    pub run_id: String,
    pub sale_id: String,
    /// Share of fresh wins followed by a pay and/or a cancel.
    pub pay_cancel_ratio: f64,
    /// Where every request is recorded, if anywhere.
    pub history: Option<Arc<History>>,
}

/// A 202 to a fresh key: whose, and which order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WonOrder {
    pub user: u32,
    pub order_id: String,
    pub quantity: u32,
}

/// What one phase found.
#[derive(Debug, Default)]
pub struct PhaseResult {
    pub recorder: Recorder,
    /// From the first request sent to the last answer received.
    pub elapsed: Duration,
    /// From the first request sent to the last win answered.
    pub won_window: Duration,
    pub won: Vec<WonOrder>,
    pub replays_sent: u64,
    pub replay_mismatches: u64,
    /// Pays and cancels sent after wins.
    pub follow_ups: u64,
    /// Won orders a cancel was sent for (whatever its answer).
    pub cancel_sent: Vec<String>,
    pub errors: BTreeMap<String, u64>,
    /// The history could not be written.
    pub history_error: Option<String>,
    /// Counts per outcome through the phase.
    pub timeline: Timeline,
    /// When the sale sold out and how long the requests in flight then
    /// waited past it; `None` if no purchase was answered `sold-out`.
    pub sell_out: Option<SellOut>,
}

/// Purchases each connection keeps (sent, answered) up to its first
/// `sold-out`: the one in flight at the sell-out is among its last few.
const KEPT_BEFORE_SELL_OUT: usize = 4;

/// State every connection of a phase reads or adds to.
pub(crate) struct Shared {
    start: Instant,
    deadline: Option<Instant>,
    requests: Option<u64>,
    /// Seconds between scheduled requests (open loop).
    interval: Option<f64>,
    tickets: AtomicU64,
    recorders: Vec<Mutex<Recorder>>,
}

impl Shared {
    fn recorder(&self, connection: usize) -> MutexGuard<'_, Recorder> {
        // A recorder is only ever added to; a panic mid-record leaves at worst
        // one count without its latency.
        self.recorders[connection % SHARDS]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Counts so far, for progress lines.
    pub(crate) fn snapshot(&self) -> Recorder {
        let mut sum = Recorder::default();
        for shard in &self.recorders {
            sum.merge(&shard.lock().unwrap_or_else(|p| p.into_inner()));
        }
        sum
    }

    /// Counts per outcome so far, without the latencies.
    fn counts(&self) -> [u64; Outcome::COUNT] {
        let mut sum = [0; Outcome::COUNT];
        for shard in &self.recorders {
            let counts = shard.lock().unwrap_or_else(|p| p.into_inner()).counts();
            for (total, n) in sum.iter_mut().zip(counts) {
                *total += n;
            }
        }
        sum
    }

    pub(crate) fn start(&self) -> Instant {
        self.start
    }
}

/// What one connection found, besides latencies.
#[derive(Default)]
struct ConnResult {
    /// When this connection got its first `sold-out`, and its last
    /// purchases (sent, answered) up to it.
    first_sold_out: Option<Instant>,
    before_sell_out: VecDeque<Span>,
    last_answer: Option<Instant>,
    last_won: Option<Instant>,
    won: Vec<WonOrder>,
    replays_sent: u64,
    replay_mismatches: u64,
    follow_ups: u64,
    cancel_sent: Vec<String>,
    errors: BTreeMap<String, u64>,
    history_error: Option<String>,
}

impl ConnResult {
    fn error(&mut self, what: String) {
        if self.errors.len() < ERROR_KINDS || self.errors.contains_key(&what) {
            *self.errors.entry(what).or_default() += 1;
        } else {
            *self.errors.entry("other".to_owned()).or_default() += 1;
        }
    }
}

/// The first answer a key got, for checking its replays.
#[derive(Debug, Clone)]
enum First {
    Won(Box<str>),
    Refused(Outcome),
}

#[derive(Debug, Clone)]
struct Sent {
    user: u32,
    key: HeaderValue,
    first: First,
}

/// Runs one phase to its end and returns what it found. Connection `i`
/// talks to `targets[i % targets.len()]` (the api nodes of a cluster).
pub async fn run(
    targets: &[Target],
    work: Work,
    load: &Load,
    progress: Option<Progress>,
) -> anyhow::Result<PhaseResult> {
    let connections = load.connections.max(1);
    // Connect everything before the clock starts: connection set-up is not
    // what is measured.
    anyhow::ensure!(!targets.is_empty(), "no target to send the crowd to");
    let mut conns = Vec::with_capacity(connections);
    for index in 0..connections {
        conns.push(Conn::open(targets[index % targets.len()].addr).await?);
    }
    let start = Instant::now();
    if let Work::Purchase(purchase) = &work
        && let Some(history) = &purchase.history
    {
        history.mark_started(start);
    }
    let shared = Arc::new(Shared {
        start,
        deadline: load.duration.map(|d| start + d),
        requests: load.requests,
        interval: load.rate.filter(|r| *r > 0.0).map(|r| 1.0 / r),
        tickets: AtomicU64::new(0),
        recorders: (0..SHARDS).map(|_| Mutex::default()).collect(),
    });
    let reporter = progress.map(|p| {
        let counts = shared.clone();
        p.start(shared.start(), move || counts.snapshot())
    });
    let sampler = Sampler::start(start, {
        let shared = shared.clone();
        move || shared.counts()
    });
    let mut tasks = Vec::with_capacity(connections);
    for (index, conn) in conns.into_iter().enumerate() {
        let shared = shared.clone();
        let work = work.clone();
        let target = targets[index % targets.len()].clone();
        let timeout = load.timeout;
        tasks.push(tokio::spawn(async move {
            drive(index, conn, &target, &work, &shared, timeout).await
        }));
    }
    let mut result = PhaseResult::default();
    let mut last_answer = start;
    let mut last_won = None;
    let mut sell_outs = Vec::with_capacity(connections);
    for task in tasks {
        let mut conn = task.await.context("a connection task failed")?;
        let recent = std::mem::take(&mut conn.before_sell_out).into();
        sell_outs.push((conn.first_sold_out, recent));
        last_answer = last_answer.max(conn.last_answer.unwrap_or(start));
        last_won = last_won.max(conn.last_won);
        result.won.extend(conn.won);
        result.replays_sent += conn.replays_sent;
        result.replay_mismatches += conn.replay_mismatches;
        result.follow_ups += conn.follow_ups;
        result.cancel_sent.extend(conn.cancel_sent);
        if result.history_error.is_none() {
            result.history_error = conn.history_error;
        }
        for (what, n) in conn.errors {
            *result.errors.entry(what).or_default() += n;
        }
    }
    if let Some(reporter) = reporter {
        reporter.abort();
    }
    result.recorder = shared.snapshot();
    result.timeline = sampler.finish(last_answer, result.recorder.counts());
    result.elapsed = last_answer.duration_since(start);
    result.won_window = last_won.map_or(Duration::ZERO, |t| t.duration_since(start));
    result.sell_out = SellOut::measure(start, &sell_outs);
    Ok(result)
}

/// One connection's loop.
async fn drive(
    index: usize,
    mut conn: Conn,
    target: &Target,
    work: &Work,
    shared: &Shared,
    timeout: Duration,
) -> ConnResult {
    let mut result = ConnResult::default();
    let mut rng = fastrand::Rng::new();
    let mut history: Vec<Sent> = Vec::with_capacity(HISTORY);
    let mut seq: u64 = 0;
    let mut broken = false;
    let mut failed_connects = 0u32;
    let purchase_work = match work {
        Work::Purchase(purchase) => Some(&**purchase),
        Work::Livez => None,
    };
    let mut log = purchase_work.and_then(|p| p.history.as_ref().map(|h| h.buffer()));
    let mut follow_ups: VecDeque<FollowUp> = VecDeque::new();
    loop {
        let ticket = shared.tickets.fetch_add(1, Ordering::Relaxed);
        if shared.requests.is_some_and(|n| ticket >= n) {
            break;
        }
        let scheduled = match shared.interval {
            Some(interval) => {
                let due = shared.start + Duration::from_secs_f64(ticket as f64 * interval);
                if shared.deadline.is_some_and(|d| due >= d) {
                    break;
                }
                // Wake at most 1 ms early rather than up to 1 ms late.
                if let Some(wake) = due.checked_sub(Duration::from_millis(1))
                    && wake > Instant::now()
                {
                    tokio::time::sleep_until(wake.into()).await;
                }
                due
            }
            None => {
                let now = Instant::now();
                if shared.deadline.is_some_and(|d| now >= d) {
                    break;
                }
                now
            }
        };
        if broken {
            match Conn::open(target.addr).await {
                Ok(fresh) => {
                    conn = fresh;
                    broken = false;
                    failed_connects = 0;
                }
                Err(err) => {
                    result.error(format!("reconnect: {err:#}"));
                    failed_connects += 1;
                    if failed_connects >= 100 && shared.deadline.is_none() {
                        // The server is gone; a phase bounded by --requests
                        // alone would otherwise never end. With a deadline,
                        // keep trying until it: the node may be restarting.
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            }
        }

        if let (Some(purchase), Some(next)) = (purchase_work, follow_ups.pop_front()) {
            result.follow_ups += 1;
            if next.op == Op::Cancel {
                result.cancel_sent.push(next.order_id.clone());
            }
            let sent = Instant::now();
            let answer = tokio::time::timeout(
                timeout,
                conn.send(follow_up_request(target, purchase, &next)),
            )
            .await;
            let done = Instant::now();
            result.last_answer = Some(done);
            let answer = match answer {
                Ok(Ok(answer)) => Some(answer),
                Ok(Err(_)) | Err(_) => {
                    broken = true;
                    None
                }
            };
            if let Some(log) = log.as_mut() {
                log.push(&follow_up_record(
                    purchase,
                    &next,
                    log.micros(sent),
                    log.micros(done),
                    answer.as_ref(),
                ));
            }
            continue;
        }

        let (request, pending) = match work {
            Work::Livez => (livez_request(target), None),
            Work::Purchase(purchase) => {
                let (request, pending) =
                    purchase_request(target, purchase, index, &mut seq, &mut rng, &history);
                (request, Some(pending))
            }
        };
        if pending.as_ref().is_some_and(|p| p.replay.is_some()) {
            result.replays_sent += 1;
        }
        // What the history needs of the request, before `pending` is consumed.
        let logged = log
            .as_ref()
            .and(pending.as_ref())
            .map(|p| (p.user, p.key.clone()));
        let sent = Instant::now();
        let answer = tokio::time::timeout(timeout, conn.send(request)).await;
        let done = Instant::now();
        let latency = done.duration_since(scheduled.min(sent));
        result.last_answer = Some(done);
        if let (Some(log), Some(purchase), Some((user, key))) =
            (log.as_mut(), purchase_work, logged)
        {
            let answered = match &answer {
                Ok(Ok(answer)) => Some(answer),
                _ => None,
            };
            log.push(&purchase_record(
                purchase,
                user,
                &key,
                log.micros(sent),
                log.micros(done),
                answered,
            ));
        }

        let outcome = match answer {
            Ok(Ok(answer)) => match (work, pending) {
                (Work::Livez, _) | (_, None) => {
                    let outcome = classify_livez(answer.status);
                    if outcome == Outcome::Error {
                        result.error(format!("livez answered {}", answer.status));
                    }
                    outcome
                }
                (Work::Purchase(purchase), Some(pending)) => settle_purchase(
                    purchase,
                    pending,
                    &answer,
                    done,
                    &mut result,
                    &mut history,
                    &mut rng,
                ),
            },
            Ok(Err(err)) => {
                result.error(format!("connection: {err}"));
                broken = true;
                Outcome::Error
            }
            Err(_) => {
                result.error(format!("no answer within {timeout:?}"));
                broken = true;
                Outcome::Error
            }
        };
        if outcome == Outcome::Won
            && let Some(purchase) = purchase_work
            && purchase.pay_cancel_ratio > 0.0
            && rng.f64() < purchase.pay_cancel_ratio
            && let Some(won) = result.won.last()
        {
            let ops: &[Op] = match rng.u8(..4) {
                0 => &[Op::Pay],
                1 => &[Op::Cancel],
                2 => &[Op::Pay, Op::Cancel],
                _ => &[Op::Cancel, Op::Pay],
            };
            for op in ops {
                follow_ups.push_back(FollowUp {
                    op: *op,
                    user: won.user,
                    order_id: won.order_id.clone(),
                });
            }
        }
        if purchase_work.is_some() && result.first_sold_out.is_none() {
            if result.before_sell_out.len() == KEPT_BEFORE_SELL_OUT {
                result.before_sell_out.pop_front();
            }
            result
                .before_sell_out
                .push_back((sent, done, outcome == Outcome::Won));
            if outcome == Outcome::SoldOut {
                result.first_sold_out = Some(done);
            }
        }
        shared.recorder(index).record(outcome, latency);
    }
    if let Some(log) = log
        && let Err(err) = log.finish()
    {
        result.history_error = Some(format!("{err:#}"));
    }
    result
}

/// A pay or cancel of an order this connection won.
struct FollowUp {
    op: Op,
    user: u32,
    order_id: String,
}

fn follow_up_request(
    target: &Target,
    work: &PurchaseWork,
    next: &FollowUp,
) -> Request<Full<Bytes>> {
    let action = if next.op == Op::Pay { "pay" } else { "cancel" };
    let mut request = Request::new(Full::new(Bytes::new()));
    *request.method_mut() = Method::POST;
    // Order ids are UUIDs: always a valid path.
    *request.uri_mut() = format!("/api/v1/orders/{}/{action}", next.order_id)
        .parse()
        .unwrap_or_else(|_| Uri::from_static("/"));
    let headers = request.headers_mut();
    headers.insert(HOST, target.host.clone());
    if let Some(auth) = work.users.auth.get(next.user as usize) {
        headers.insert(AUTHORIZATION, auth.clone());
    }
    request
}

fn follow_up_record(
    work: &PurchaseWork,
    next: &FollowUp,
    invoke_us: u64,
    complete_us: u64,
    answer: Option<&Answer>,
) -> Record {
    #[derive(serde::Deserialize)]
    struct Status {
        status: String,
    }
    let (outcome, order_status) = match answer {
        None => ("indeterminate".to_owned(), None),
        Some(answer) if answer.status.is_success() => (
            "ok".to_owned(),
            serde_json::from_slice::<Status>(&answer.body)
                .ok()
                .map(|s| s.status),
        ),
        Some(answer) => (answer_slug(answer), None),
    };
    Record {
        op: next.op,
        user: work.users.sub(next.user),
        sale: work.sale_id.clone(),
        key: None,
        quantity: None,
        invoke_us,
        complete_us: answer.map(|_| complete_us),
        status: answer.map(|a| a.status.as_u16()),
        outcome,
        order: Some(next.order_id.clone()),
        order_status,
        node: None,
    }
}

fn purchase_record(
    work: &PurchaseWork,
    user: u32,
    key: &HeaderValue,
    invoke_us: u64,
    complete_us: u64,
    answer: Option<&Answer>,
) -> Record {
    let (outcome, order) = match answer {
        None => ("indeterminate".to_owned(), None),
        Some(answer) => match classify_purchase(answer.status, &answer.headers, &answer.body) {
            Outcome::Error => (answer_slug(answer), None),
            outcome @ (Outcome::Won | Outcome::Replayed) => {
                (outcome.name().to_owned(), order_id(answer))
            }
            outcome => (outcome.name().to_owned(), None),
        },
    };
    Record {
        op: Op::Purchase,
        user: work.users.sub(user),
        sale: work.sale_id.clone(),
        key: Some(String::from_utf8_lossy(key.as_bytes()).into_owned()),
        quantity: Some(work.quantity),
        invoke_us,
        complete_us: answer.map(|_| complete_us),
        status: answer.map(|a| a.status.as_u16()),
        outcome,
        order,
        order_status: None,
        node: None,
    }
}

/// The problem slug of an answer, or `error` without one.
fn answer_slug(answer: &Answer) -> String {
    crate::outcome::problem_slug(&answer.body).map_or_else(
        || "error".to_owned(),
        |s| String::from_utf8_lossy(s).into_owned(),
    )
}

fn livez_request(target: &Target) -> Request<Full<Bytes>> {
    let mut request = Request::new(Full::new(Bytes::new()));
    *request.uri_mut() = Uri::from_static("/livez");
    request.headers_mut().insert(HOST, target.host.clone());
    request
}

/// A purchase on its way: what to check its answer against.
struct Pending {
    user: u32,
    key: HeaderValue,
    /// The first answer, when this is a replay.
    replay: Option<First>,
}

fn purchase_request(
    target: &Target,
    work: &PurchaseWork,
    connection: usize,
    seq: &mut u64,
    rng: &mut fastrand::Rng,
    history: &[Sent],
) -> (Request<Full<Bytes>>, Pending) {
    let pending = if !history.is_empty() && rng.f64() < work.replay_ratio {
        let earlier = &history[rng.usize(..history.len())];
        Pending {
            user: earlier.user,
            key: earlier.key.clone(),
            replay: Some(earlier.first.clone()),
        }
    } else {
        *seq += 1;
        let key = format!("{}-{connection}-{seq}", work.run_id);
        Pending {
            user: rng.u32(..work.users.len().max(1)),
            // Run ids and numbers are ASCII: always a valid header value.
            key: HeaderValue::try_from(key).unwrap_or(HeaderValue::from_static("invalid")),
            replay: None,
        }
    };
    let mut request = Request::new(Full::new(work.body.clone()));
    *request.method_mut() = Method::POST;
    *request.uri_mut() = work.path.clone();
    let headers = request.headers_mut();
    headers.insert(HOST, target.host.clone());
    if let Some(auth) = work.users.auth.get(pending.user as usize) {
        headers.insert(AUTHORIZATION, auth.clone());
    }
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(IDEMPOTENCY_KEY, pending.key.clone());
    (request, pending)
}

/// Classifies a purchase's answer, checks a replay against its first answer,
/// and remembers wins and remembered refusals.
fn settle_purchase(
    work: &PurchaseWork,
    pending: Pending,
    answer: &Answer,
    done: Instant,
    result: &mut ConnResult,
    history: &mut Vec<Sent>,
    rng: &mut fastrand::Rng,
) -> Outcome {
    let outcome = classify_purchase(answer.status, &answer.headers, &answer.body);
    if outcome == Outcome::Error {
        result.error(describe(answer));
        return outcome;
    }
    let order_id = || order_id(answer);
    match (pending.replay, outcome) {
        (Some(First::Won(first)), Outcome::Replayed) if order_id().as_deref() == Some(&*first) => {
            outcome
        }
        (Some(First::Refused(first)), now) if now == first => outcome,
        // Answers that are never remembered (429, 503) may come back for any
        // replay; a mismatch never may, the request being the same.
        (Some(_), now)
            if !now.is_remembered_refusal()
                && !matches!(
                    now,
                    Outcome::Won | Outcome::Replayed | Outcome::IdempotencyMismatch
                ) =>
        {
            outcome
        }
        (Some(first), now) => {
            result.replay_mismatches += 1;
            let first = match first {
                First::Won(_) => "won",
                First::Refused(o) => o.name(),
            };
            result.error(format!(
                "replay did not get its first answer (first {first}, then {})",
                now.name()
            ));
            Outcome::Error
        }
        (None, Outcome::Replayed) => {
            result.error("a fresh key was answered as a replay".to_owned());
            Outcome::Error
        }
        (None, Outcome::Won) => match order_id() {
            Some(id) => {
                result.last_won = Some(done);
                result.won.push(WonOrder {
                    user: pending.user,
                    order_id: id.clone(),
                    quantity: work.quantity,
                });
                remember(
                    history,
                    rng,
                    Sent {
                        user: pending.user,
                        key: pending.key,
                        first: First::Won(id.into_boxed_str()),
                    },
                );
                outcome
            }
            None => {
                result.error("a 202 without an order id".to_owned());
                Outcome::Error
            }
        },
        (None, now) => {
            if now.is_remembered_refusal() {
                remember(
                    history,
                    rng,
                    Sent {
                        user: pending.user,
                        key: pending.key,
                        first: First::Refused(now),
                    },
                );
            }
            outcome
        }
    }
}

fn remember(history: &mut Vec<Sent>, rng: &mut fastrand::Rng, sent: Sent) {
    if history.len() < HISTORY {
        history.push(sent);
    } else {
        let slot = rng.usize(..HISTORY);
        history[slot] = sent;
    }
}

/// The order id of a 202: the last segment of `Location`, else the body's `id`.
pub(crate) fn order_id(answer: &Answer) -> Option<String> {
    if let Some(id) = answer
        .headers
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.rsplit('/').next())
        .filter(|id| !id.is_empty())
    {
        return Some(id.to_owned());
    }
    #[derive(serde::Deserialize)]
    struct Id {
        id: String,
    }
    serde_json::from_slice::<Id>(&answer.body)
        .ok()
        .map(|o| o.id)
}

/// A short description of an unexpected answer, stable across requests so
/// that equal failures add up.
pub(crate) fn describe(answer: &Answer) -> String {
    match crate::outcome::problem_slug(&answer.body) {
        Some(slug) => format!("HTTP {} {}", answer.status, String::from_utf8_lossy(slug)),
        None => format!("HTTP {}", answer.status),
    }
}
