//! `--scenario waiting-room`: a crowd that goes through a sale's waiting
//! room (docs/api.md §3.3, "Waiting rooms") the way its client is told to.
//!
//! Each customer is a task. It joins the room (`POST /queue`) at its time
//! in the lead before the start (the joins spread evenly over it), asks
//! again after each answer's `retry_after_ms` (the body's milliseconds,
//! not the rounded `Retry-After`) until the room says `admitted` or
//! `sold-out`, and once admitted buys one unit with its ticket in
//! `Queue-Ticket`, under one `Idempotency-Key` however many tries it takes
//! (`not-your-turn` waits its `Retry-After`; a 429 or 503, or a lost
//! connection, a second or the `Retry-After` given).
//!
//! Requests go over `connections` keep-alive connections shared by all
//! customers: a customer whose time has come takes a free one, first come
//! first served. Latencies count from when the customer meant to send, so a
//! wait for a connection shows in them; it is also reported on its own
//! (the generator's doing, not the server's).
//!
//! What each customer saw goes to [`crate::room_stats`].

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST, HeaderName, HeaderValue, RETRY_AFTER};
use hyper::{Method, Request, Uri};
use serde::Deserialize;
use tokio::sync::Semaphore;

use crate::client::{Answer, Conn, Target};
use crate::crowd::{PhaseResult, WonOrder, describe, order_id};
use crate::outcome::{Outcome, classify_purchase, classify_queue};
use crate::progress::Progress;
use crate::report::{Latency, Recorder, round3};
use crate::room_stats::{End, RoomLoad, Spread, Told, Visit, WaitingRoom};
use crate::sell_out::{SellOut, SellOutView, Span};
use crate::timeline::Sampler;
use crate::users::Users;

const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
const QUEUE_TICKET: HeaderName = HeaderName::from_static("queue-ticket");

/// The wait after an answer that gives none (a lost connection, a 503
/// without `Retry-After`).
const BACK_OFF: Duration = Duration::from_secs(1);

/// Buckets of `POST /queue` answers, for the busiest moment.
const BUCKET: Duration = Duration::from_millis(250);

/// Distinct error descriptions kept; past it they count as "other".
const ERROR_KINDS: usize = 20;

/// Requests each customer keeps (sent, answered) up to its first
/// `sold-out`, for [`SellOut`].
const KEPT_BEFORE_SELL_OUT: usize = 4;

/// What the room phase is to do.
#[derive(Debug)]
pub struct RoomWork {
    pub sale_id: String,
    pub users: Arc<Users>,
    /// Prefix of every key of this run.
    pub run_id: String,
    pub connections: usize,
    pub timeout: Duration,
    /// The sale's start (the draw), on this clock.
    pub draw: Instant,
    /// The joins are spread from the phase's start to this.
    pub joins_until: Instant,
    /// Customers still going then give up.
    pub deadline: Instant,
    pub lead_ms: u64,
}

/// What the room phase found.
#[derive(Debug)]
pub struct RoomResult {
    /// The purchases alone, as a purchase phase reports them: from the
    /// first purchase sent to the last answered.
    pub purchase: PhaseResult,
    /// Without the server's CPU and the ceiling's ratio (the caller's).
    pub section: WaitingRoom,
}

/// One `POST /queue` answer, as far as the bench reads it.
#[derive(Debug, Deserialize)]
struct QueueAnswer {
    ticket: String,
    status: String,
    position: Option<u64>,
    ahead: Option<u64>,
    retry_after_ms: u64,
    #[serde(default)]
    served_per_sec: f64,
}

/// The shared keep-alive connections.
struct Pool {
    targets: Vec<Target>,
    slots: Mutex<Vec<Slot>>,
    permits: Semaphore,
}

struct Slot {
    /// `None` after a failure: reopened by the next request that takes it.
    conn: Option<Conn>,
    target: usize,
}

/// A request's trip: when it was sent, its answer, and how long it waited
/// for a connection first.
struct Trip {
    sent: Instant,
    done: Instant,
    waited: Duration,
    answer: Result<Answer, String>,
}

impl Pool {
    async fn open(targets: &[Target], connections: usize) -> anyhow::Result<Self> {
        anyhow::ensure!(!targets.is_empty(), "no target to send the crowd to");
        let mut slots = Vec::with_capacity(connections);
        for index in 0..connections {
            let target = index % targets.len();
            slots.push(Slot {
                conn: Some(Conn::open(targets[target].addr).await?),
                target,
            });
        }
        Ok(Self {
            targets: targets.to_vec(),
            slots: Mutex::new(slots),
            permits: Semaphore::new(connections),
        })
    }

    fn slots(&self) -> MutexGuard<'_, Vec<Slot>> {
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sends the request `build` makes for a target's `Host` over the first
    /// free connection.
    async fn send(
        &self,
        build: impl FnOnce(&HeaderValue) -> Request<Full<Bytes>>,
        timeout: Duration,
    ) -> Trip {
        let wanted = Instant::now();
        let trip = |sent: Instant, answer| Trip {
            sent,
            done: Instant::now(),
            waited: sent.duration_since(wanted),
            answer,
        };
        let Ok(_permit) = self.permits.acquire().await else {
            return trip(wanted, Err("the connections are closed".to_owned()));
        };
        // A permit is a free slot.
        let Some(mut slot) = self.slots().pop() else {
            return trip(wanted, Err("no free connection".to_owned()));
        };
        let sent = Instant::now();
        let target = &self.targets[slot.target];
        let mut conn = match slot.conn.take() {
            Some(conn) => conn,
            None => match Conn::open(target.addr).await {
                Ok(conn) => conn,
                Err(err) => {
                    self.slots().push(slot);
                    return trip(sent, Err(format!("reconnect: {err:#}")));
                }
            },
        };
        let answer = match tokio::time::timeout(timeout, conn.send(build(&target.host))).await {
            Ok(Ok(answer)) => {
                slot.conn = Some(conn);
                Ok(answer)
            }
            Ok(Err(err)) => Err(format!("connection: {err}")),
            Err(_) => Err(format!("no answer within {timeout:?}")),
        };
        self.slots().push(slot);
        trip(sent, answer)
    }
}

/// What every customer adds to.
struct Shared {
    work: RoomWork,
    pool: Pool,
    start: Instant,
    queue_path: Uri,
    purchase_path: Uri,
    queue: Mutex<Recorder>,
    purchases: Mutex<Recorder>,
    /// How long requests waited for a connection (as `ok`).
    waits: Mutex<Recorder>,
    errors: Mutex<BTreeMap<String, u64>>,
    /// `POST /queue` answers per [`BUCKET`] since the start.
    buckets: Vec<AtomicU64>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    fn error(&self, what: String) {
        let mut errors = lock(&self.errors);
        if errors.len() < ERROR_KINDS || errors.contains_key(&what) {
            *errors.entry(what).or_default() += 1;
        } else {
            *errors.entry("other".to_owned()).or_default() += 1;
        }
    }

    fn request(&self, path: &Uri, user: u32, host: &HeaderValue) -> Request<Full<Bytes>> {
        let mut request = Request::new(Full::new(Bytes::new()));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = path.clone();
        let headers = request.headers_mut();
        headers.insert(HOST, host.clone());
        if let Some(auth) = self.work.users.auth.get(user as usize) {
            headers.insert(AUTHORIZATION, auth.clone());
        }
        request
    }

    fn purchase(
        &self,
        user: u32,
        key: &HeaderValue,
        ticket: &HeaderValue,
        host: &HeaderValue,
    ) -> Request<Full<Bytes>> {
        let mut request = self.request(&self.purchase_path, user, host);
        *request.body_mut() = Full::new(Bytes::from_static(b"{\"quantity\":1}"));
        let headers = request.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(IDEMPOTENCY_KEY, key.clone());
        headers.insert(QUEUE_TICKET, ticket.clone());
        request
    }
}

/// One customer's visit and what the phase needs of it besides.
#[derive(Default)]
struct Customer {
    visit: Visit,
    /// Its first `sold-out` answer, and its requests up to it.
    first_sold_out: Option<Instant>,
    recent: VecDeque<Span>,
    /// Its purchases: the first sent, the last answered.
    purchases: Option<(Instant, Instant)>,
    won: Option<(WonOrder, Instant)>,
    last_answer: Option<Instant>,
}

impl Customer {
    /// Notes a request's trip; `Some` with its answer if it got one.
    fn trip<'t>(&mut self, trip: &'t Trip, won: bool) -> Option<&'t Answer> {
        self.last_answer = Some(trip.done);
        if self.first_sold_out.is_none() {
            if self.recent.len() == KEPT_BEFORE_SELL_OUT {
                self.recent.pop_front();
            }
            self.recent.push_back((trip.sent, trip.done, won));
        }
        trip.answer.as_ref().ok()
    }

    fn end(&mut self, end: End, at: Instant) {
        self.visit.end = end;
        self.visit.ended = Some(at);
        if matches!(end, End::SoldOutInLine | End::SoldOutAtPurchase) {
            self.first_sold_out.get_or_insert(at);
        }
    }
}

/// When to ask again after a refusal that does not end the visit.
fn retry_after(answer: Option<&Answer>) -> Duration {
    answer
        .and_then(|a| a.headers.get(RETRY_AFTER))
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or(BACK_OFF, Duration::from_secs)
}

/// Waits until `due`, or the deadline; `false` if the deadline came.
async fn wait(due: Instant, deadline: Instant) -> bool {
    tokio::time::sleep_until(due.min(deadline).into()).await;
    Instant::now() < deadline
}

/// Customer `user`'s visit: its place in line, then its purchase.
async fn visit(shared: &Shared, user: u32, join_at: Instant) -> Customer {
    let mut me = Customer::default();
    let deadline = shared.work.deadline;
    let Some(ticket) = line(shared, user, join_at, &mut me).await else {
        return me;
    };
    let ticket = match HeaderValue::try_from(ticket) {
        Ok(ticket) => ticket,
        Err(_) => {
            shared.error("a ticket that is no header value".to_owned());
            me.end(End::Other(Outcome::Error.name()), Instant::now());
            return me;
        }
    };
    // Run ids and numbers are ASCII: always a valid header value.
    let key = HeaderValue::try_from(format!("{}-room-{user}", shared.work.run_id))
        .unwrap_or(HeaderValue::from_static("invalid"));
    let mut due = Instant::now();
    while wait(due, deadline).await {
        let trip = shared
            .pool
            .send(
                |host| shared.purchase(user, &key, &ticket, host),
                shared.work.timeout,
            )
            .await;
        let first = me.purchases.map_or(trip.sent, |(first, _)| first);
        me.purchases = Some((first, trip.done));
        let outcome = match &trip.answer {
            Ok(answer) => classify_purchase(answer.status, &answer.headers, &answer.body),
            Err(err) => {
                shared.error(err.clone());
                Outcome::Error
            }
        };
        // A key answered as a replay is this customer's own earlier
        // purchase, whose first answer was lost: a win all the same.
        let won = matches!(outcome, Outcome::Won | Outcome::Replayed);
        lock(&shared.purchases).record(outcome, trip.done.duration_since(due));
        lock(&shared.waits).record(Outcome::Ok, trip.waited);
        let answer = me.trip(&trip, won);
        due = match (outcome, answer) {
            (Outcome::Won | Outcome::Replayed, Some(answer)) => {
                match order_id(answer) {
                    Some(order_id) => {
                        let order = WonOrder {
                            user,
                            order_id,
                            quantity: 1,
                        };
                        me.won = Some((order, trip.done));
                        me.end(End::Won, trip.done);
                    }
                    None => {
                        shared.error("a 202 without an order id".to_owned());
                        me.end(End::Other(Outcome::Error.name()), trip.done);
                    }
                }
                return me;
            }
            (Outcome::NotYourTurn, _) => {
                me.visit.not_your_turn += 1;
                trip.done + retry_after(answer)
            }
            (Outcome::RateLimited | Outcome::Overloaded | Outcome::Unavailable, _) => {
                trip.done + retry_after(answer)
            }
            // Lost on the way: the same key again is safe.
            (Outcome::Error, None) => trip.done + BACK_OFF,
            (Outcome::SoldOut, _) => {
                me.end(End::SoldOutAtPurchase, trip.done);
                return me;
            }
            (outcome, answer) => {
                if let (Outcome::Error, Some(answer)) = (outcome, answer) {
                    shared.error(format!("purchase: {}", describe(answer)));
                }
                me.end(End::Other(outcome.name()), trip.done);
                return me;
            }
        };
    }
    me
}

/// The customer's time in line, from its join; its ticket once admitted,
/// `None` if the visit ended there.
async fn line(shared: &Shared, user: u32, join_at: Instant, me: &mut Customer) -> Option<String> {
    let deadline = shared.work.deadline;
    let mut due = join_at;
    while wait(due, deadline).await {
        let trip = shared
            .pool
            .send(
                |host| shared.request(&shared.queue_path, user, host),
                shared.work.timeout,
            )
            .await;
        me.visit.polls += 1;
        let outcome = match &trip.answer {
            Ok(answer) => classify_queue(answer.status, &answer.body),
            Err(err) => {
                shared.error(err.clone());
                Outcome::Error
            }
        };
        lock(&shared.queue).record(outcome, trip.done.duration_since(due));
        lock(&shared.waits).record(Outcome::Ok, trip.waited);
        let bucket = trip.done.duration_since(shared.start).as_nanos() / BUCKET.as_nanos();
        if let Some(n) = usize::try_from(bucket)
            .ok()
            .and_then(|i| shared.buckets.get(i))
        {
            n.fetch_add(1, Ordering::Relaxed);
        }
        let answer = me.trip(&trip, false);
        due = match (outcome, answer) {
            (Outcome::Ok, Some(answer)) => {
                let Ok(told) = serde_json::from_slice::<QueueAnswer>(&answer.body) else {
                    shared.error("queue: a 200 the bench cannot read".to_owned());
                    me.end(End::Other(Outcome::Error.name()), trip.done);
                    return None;
                };
                match place(&mut me.visit, &trip, told) {
                    Ok(ticket) => return Some(ticket),
                    Err(wait) => trip.done + wait,
                }
            }
            (Outcome::SoldOut, _) => {
                me.end(End::SoldOutInLine, trip.done);
                return None;
            }
            (Outcome::RateLimited | Outcome::Overloaded | Outcome::Unavailable, _) => {
                trip.done + retry_after(answer)
            }
            (Outcome::Error, None) => trip.done + BACK_OFF,
            (outcome, answer) => {
                if let (Outcome::Error, Some(answer)) = (outcome, answer) {
                    shared.error(format!("queue: {}", describe(answer)));
                }
                me.end(End::Other(outcome.name()), trip.done);
                return None;
            }
        };
    }
    None
}

/// Notes what a 200 from the room told: the ticket once admitted, else
/// the wait it asked for.
fn place(visit: &mut Visit, trip: &Trip, told: QueueAnswer) -> Result<String, Duration> {
    if visit.joined.is_none() {
        visit.join_sent = Some(trip.sent);
        visit.joined = Some(trip.done);
        visit.drawn = told.position.is_none();
    }
    let admitted = told.status == "admitted";
    if let Some(position) = told.position {
        visit.position.get_or_insert(position);
        if admitted {
            // At least this place is in.
            visit.line.push((trip.done, position));
        } else if let Some(ahead) = told.ahead {
            visit
                .line
                .push((trip.done, position.saturating_sub(ahead + 1)));
            if visit.first_told.is_none() {
                visit.first_told = Some(Told {
                    at: trip.done,
                    position,
                    ahead,
                    retry_after_ms: told.retry_after_ms,
                    served_per_sec: told.served_per_sec,
                });
            }
        }
    }
    if admitted {
        visit.admitted = Some(trip.done);
        return Ok(told.ticket);
    }
    Err(Duration::from_millis(told.retry_after_ms))
}

/// Runs the room phase: every customer from its join to its end, or the
/// deadline.
pub async fn run(work: RoomWork, targets: &[Target]) -> anyhow::Result<RoomResult> {
    let connections = work.connections.max(1);
    // Connect everything before the clock starts.
    let pool = Pool::open(targets, connections).await?;
    let start = Instant::now();
    let path = |what: &str| -> anyhow::Result<Uri> {
        format!("/api/v1/sales/{}/{what}", work.sale_id)
            .parse()
            .context("the sale id does not fit in a path")
    };
    let buckets = work.deadline.saturating_duration_since(start).as_nanos() / BUCKET.as_nanos();
    let shared = Arc::new(Shared {
        queue_path: path("queue")?,
        purchase_path: path("purchase")?,
        pool,
        start,
        queue: Mutex::default(),
        purchases: Mutex::default(),
        waits: Mutex::default(),
        errors: Mutex::default(),
        buckets: (0..=buckets).map(|_| AtomicU64::new(0)).collect(),
        work,
    });
    let reporter = Progress::for_phase("room").map(|p| {
        let counts = shared.clone();
        p.start(start, move || {
            let mut sum = lock(&counts.queue).clone();
            sum.merge(&lock(&counts.purchases));
            sum
        })
    });
    let sampler = Sampler::start(start, {
        let shared = shared.clone();
        move || lock(&shared.purchases).counts()
    });

    let users = shared.work.users.len();
    let spread = shared.work.joins_until.saturating_duration_since(start);
    let mut tasks = Vec::with_capacity(users as usize);
    for user in 0..users {
        let shared = shared.clone();
        let join_at = start + spread.mul_f64(f64::from(user) / f64::from(users.max(1)));
        tasks.push(tokio::spawn(
            async move { visit(&shared, user, join_at).await },
        ));
    }
    let mut visits = Vec::with_capacity(tasks.len());
    let mut views: Vec<SellOutView> = Vec::with_capacity(tasks.len());
    let mut purchase = PhaseResult::default();
    let (mut first_purchase, mut last_purchase, mut last_won) = (None, None, None);
    let mut last_answer = start;
    for task in tasks {
        let customer = task.await.context("a customer's task failed")?;
        views.push((customer.first_sold_out, customer.recent.into()));
        if let Some((first, last)) = customer.purchases {
            first_purchase = Some(first_purchase.map_or(first, |f: Instant| f.min(first)));
            last_purchase = last_purchase.max(Some(last));
        }
        if let Some((won, at)) = customer.won {
            purchase.won.push(won);
            last_won = last_won.max(Some(at));
        }
        last_answer = last_answer.max(customer.last_answer.unwrap_or(start));
        visits.push(customer.visit);
    }
    if let Some(reporter) = reporter {
        reporter.abort();
    }

    let queue = lock(&shared.queue).clone();
    purchase.recorder = lock(&shared.purchases).clone();
    purchase.timeline = sampler.finish(last_answer, purchase.recorder.counts());
    let first_purchase = first_purchase.unwrap_or(start);
    purchase.elapsed = last_purchase.map_or(Duration::ZERO, |last: Instant| {
        last.saturating_duration_since(first_purchase)
    });
    purchase.won_window = last_won.map_or(Duration::ZERO, |last: Instant| {
        last.saturating_duration_since(first_purchase)
    });
    purchase.errors = lock(&shared.errors).clone();
    purchase.sell_out = SellOut::measure(start, &views);

    let seconds = last_answer.duration_since(start).as_secs_f64();
    let busiest = shared
        .buckets
        .iter()
        .map(|n| n.load(Ordering::Relaxed))
        .max()
        .unwrap_or(0);
    let load = RoomLoad {
        queue_requests: queue.total(),
        purchase_requests: purchase.recorder.total(),
        seconds: round3(seconds),
        queue_rps: round3(if seconds > 0.0 {
            queue.total() as f64 / seconds
        } else {
            0.0
        }),
        queue_peak_rps: round3(busiest as f64 / BUCKET.as_secs_f64()),
        queue_peak_ratio: None,
        queue_latency_ms: queue.latency_all().map(spread_of),
        connection_wait_ms: lock(&shared.waits).latency(Outcome::Ok).map(spread_of),
        server_cpu_us: None,
    };
    let section =
        crate::room_stats::summarise(&visits, shared.work.draw, shared.work.lead_ms, load);
    Ok(RoomResult { purchase, section })
}

fn spread_of(latency: Latency) -> Spread {
    Spread {
        count: usize::try_from(latency.count).unwrap_or(usize::MAX),
        p50: latency.p50,
        p99: latency.p99,
        max: latency.max,
    }
}
