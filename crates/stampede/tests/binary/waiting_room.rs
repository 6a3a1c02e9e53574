//! Waiting rooms on the real binary (docs/api.md §3.3, "Waiting rooms";
//! docs/design.md §4.7). In cluster mode two `api` nodes share one room's
//! book in Redis: one numbering of tickets, one draw at the start, one line,
//! and one sell-out that ends the room on both. On one node, a crowd waits
//! its turn as the room tells it, and exactly the stock is sold, to admitted
//! holders only.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use stampede::cli::TokenRole;
use stampede_domain::time::Timestamp;
use tokio::sync::Semaphore;

use crate::harness::{Api, Binary, DataDir, eventually, token};

/// One answer of the room's routes: the status, the body, and `Retry-After`.
struct Answer {
    status: StatusCode,
    body: Value,
    retry_after: Option<u64>,
}

impl Answer {
    /// The problem's kind: the last segment of its `type` ("" if none).
    fn kind(&self) -> &str {
        let kind = self.body["type"].as_str().unwrap_or_default();
        kind.rsplit('/').next().unwrap_or_default()
    }

    fn is(&self, status: StatusCode, kind: &str) -> bool {
        self.status == status && self.kind() == kind
    }

    /// A standing's `status` is `admitted`.
    fn admitted(&self) -> bool {
        self.status == StatusCode::OK && self.body["status"] == "admitted"
    }

    fn ticket(&self) -> String {
        let ticket = self.body["ticket"].as_str();
        ticket
            .unwrap_or_else(|| panic!("no ticket: {}", self.body))
            .to_owned()
    }

    fn position(&self) -> Option<u64> {
        self.body["position"].as_u64()
    }
}

impl std::fmt::Display for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, self.body)
    }
}

async fn answer(response: reqwest::Response) -> Answer {
    let status = response.status();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().parse().unwrap());
    let body = response.json().await.unwrap_or(Value::Null);
    Answer {
        status,
        body,
        retry_after,
    }
}

impl Api {
    /// `POST /sales/{id}/queue` as `user`: joins, or tells where they stand.
    async fn join_room(&self, sale: &str, user: &str) -> Answer {
        let response = self
            .client
            .post(format!("{}/api/v1/sales/{sale}/queue", self.base))
            .bearer_auth(token(user, TokenRole::Customer))
            .send()
            .await
            .unwrap();
        answer(response).await
    }

    /// A purchase of one unit as `user`, showing `ticket` in `Queue-Ticket`.
    async fn purchase_with_ticket(
        &self,
        sale: &str,
        user: &str,
        ticket: Option<&str>,
        key: &str,
    ) -> Answer {
        let mut request = self
            .client
            .post(format!("{}/api/v1/sales/{sale}/purchase", self.base))
            .bearer_auth(token(user, TokenRole::Customer))
            .header("Idempotency-Key", key)
            .json(&json!({"quantity": 1}));
        if let Some(ticket) = ticket {
            request = request.header("Queue-Ticket", ticket);
        }
        answer(request.send().await.unwrap()).await
    }
}

/// A sale of `quantity` (one per buyer) with a waiting room, starting
/// `starts_in` from now; and when it starts.
async fn room_sale(api: &Api, quantity: u64, starts_in: Duration) -> (String, Instant) {
    let millis = i64::try_from(starts_in.as_millis()).unwrap();
    let starts = Instant::now() + starts_in;
    let starts_at = Timestamp::now().plus_millis(millis).to_rfc3339();
    let extra = json!({"waiting_room": true, "starts_at": starts_at});
    (api.create_sale_with(quantity, 1, extra).await, starts)
}

/// A ticket is `<number>.<MAC>` (design.md §4.7): its number.
fn ticket_number(ticket: &str) -> u64 {
    let (number, _mac) = ticket.split_once('.').expect("a ticket is <number>.<MAC>");
    number.parse().expect("a ticket's number")
}

/// Asks `api` where `user` stands until admitted (the answer) or the room
/// has ended (`None`: `409 sold-out`).
async fn until_admitted(api: &Api, sale: &str, user: &str) -> Option<Answer> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let standing = api.join_room(sale, user).await;
        if standing.admitted() {
            return Some(standing);
        }
        if standing.is(StatusCode::CONFLICT, "sold-out") {
            return None;
        }
        assert_eq!(standing.status, StatusCode::OK, "{user}: {standing}");
        assert!(
            Instant::now() < deadline,
            "{user} not admitted within 10 s: {standing}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_keep_one_line_with_one_draw_and_end_it_together_at_the_sell_out() {
    const UNITS: u64 = 5;
    const EARLY: usize = 20;
    const LATE: usize = 4;
    let dir = DataDir::new();
    if !dir.is_cluster() {
        eprintln!("skipped: a shared room needs the cluster run (PostgreSQL, Redis and NATS)");
        return;
    }
    let env = [("STAMPEDE_ROLE", "api")];
    let node_a = Binary::start_with(&dir, &env);
    let node_b = Binary::start_with(&dir, &env);
    let (a, b) = (Api::new(&node_a), Api::new(&node_b));
    let nodes = [&a, &b];
    let (sale, starts) = room_sale(&a, UNITS, Duration::from_secs(2)).await;

    // Before the start, joins alternate nodes: one numbering across both.
    let early: Vec<String> = (0..EARLY).map(|n| format!("early-{n}")).collect();
    let mut tickets = Vec::new();
    for (n, user) in early.iter().enumerate() {
        let joined = nodes[n % 2].join_room(&sale, user).await;
        assert_eq!(joined.status, StatusCode::OK, "{user}: {joined}");
        assert_eq!(joined.body["status"], "waiting", "{user}: {joined}");
        assert_eq!(
            joined.position(),
            None,
            "{user} has a place before the start (the joins took over 2 s?): {joined}"
        );
        assert!(joined.retry_after.is_some(), "a wait without Retry-After");
        let ticket = joined.ticket();
        assert_eq!(
            ticket_number(&ticket),
            n as u64 + 1,
            "tickets are numbered in the order issued, whichever node issues them"
        );
        tickets.push(ticket);
    }
    // A ticket of node A is good on node B, but not before its turn.
    let early_buy = b
        .purchase_with_ticket(&sale, &early[0], Some(&tickets[0]), "too-early")
        .await;
    assert!(
        early_buy.is(StatusCode::CONFLICT, "not-your-turn"),
        "{early_buy}"
    );
    assert!(early_buy.retry_after.is_some(), "{early_buy}");
    assert!(
        Instant::now() < starts,
        "the joins ended after the start: the test proves nothing"
    );

    // After the start: one draw, the same on both nodes.
    eventually(10, "the draw", || async {
        a.join_room(&sale, &early[0]).await.position()
    })
    .await;
    let mut positions = Vec::new();
    for (n, user) in early.iter().enumerate() {
        let (on_a, on_b) = (
            a.join_room(&sale, user).await,
            b.join_room(&sale, user).await,
        );
        for standing in [&on_a, &on_b] {
            assert_eq!(standing.status, StatusCode::OK, "{user}: {standing}");
            assert_eq!(standing.ticket(), tickets[n], "{user}: the same ticket");
        }
        let position = on_a.position().expect("a place after the draw");
        assert_eq!(
            on_b.position(),
            Some(position),
            "{user} has two places: {on_a} / {on_b}"
        );
        positions.push(position);
    }
    assert_eq!(
        positions.iter().copied().collect::<BTreeSet<_>>(),
        (1..=EARLY as u64).collect(),
        "one draw over the early tickets: {positions:?}"
    );
    assert_ne!(
        positions,
        (1..=EARLY as u64).collect::<Vec<_>>(),
        "the places are drawn, not the arrival order"
    );

    // Later joiners, on either node, queue behind in the order they came.
    let mut line: Vec<(u64, String, String)> = Vec::new();
    for n in 0..LATE {
        let user = format!("late-{n}");
        let joined = nodes[(n + 1) % 2].join_room(&sale, &user).await;
        assert_eq!(joined.status, StatusCode::OK, "{user}: {joined}");
        let expected = (EARLY + n + 1) as u64;
        assert_eq!(joined.position(), Some(expected), "{user}: {joined}");
        assert_eq!(ticket_number(&joined.ticket()), expected, "{user}");
        let elsewhere = nodes[n % 2].join_room(&sale, &user).await;
        assert_eq!(elsewhere.position(), Some(expected), "{user}: {elsewhere}");
        line.push((expected, user, joined.ticket()));
    }

    // Node A's ticket buys on node B once admitted; nobody else's does, on
    // either node.
    until_admitted(&b, &sale, &early[0])
        .await
        .expect("the room ended before anything sold");
    for (i, node) in nodes.iter().enumerate() {
        let stolen = node
            .purchase_with_ticket(&sale, &early[1], Some(&tickets[0]), &format!("stolen-{i}"))
            .await;
        assert!(
            stolen.is(StatusCode::FORBIDDEN, "queue-ticket"),
            "another's ticket on node {i}: {stolen}"
        );
        let none = node
            .purchase_with_ticket(&sale, &early[1], None, &format!("none-{i}"))
            .await;
        assert!(
            none.is(StatusCode::FORBIDDEN, "queue-ticket"),
            "no ticket on node {i}: {none}"
        );
    }
    let bought = b
        .purchase_with_ticket(&sale, &early[0], Some(&tickets[0]), "buy")
        .await;
    assert_eq!(bought.status, StatusCode::ACCEPTED, "{bought}");

    // The others buy in line order, alternating nodes, until sold out.
    line.extend(
        early
            .iter()
            .zip(&tickets)
            .zip(&positions)
            .skip(1)
            .map(|((user, ticket), &at)| (at, user.clone(), ticket.clone())),
    );
    line.sort();
    let mut sold = 1;
    let mut sold_out = None;
    for (i, (at, user, ticket)) in line.iter().enumerate() {
        let node = nodes[i % 2];
        if until_admitted(node, &sale, user).await.is_none() {
            sold_out = Some(Instant::now());
            break;
        }
        let answer = node
            .purchase_with_ticket(&sale, user, Some(ticket), "buy")
            .await;
        if answer.is(StatusCode::CONFLICT, "sold-out") {
            sold_out = Some(Instant::now());
            break;
        }
        assert_eq!(
            answer.status,
            StatusCode::ACCEPTED,
            "{user} (place {at}) on node {}: {answer}",
            i % 2
        );
        sold += 1;
        assert!(sold <= UNITS, "oversold: {sold} of {UNITS}");
    }
    assert_eq!(sold, UNITS, "the stock was not sold out");
    let sold_out = sold_out.expect("nobody was told sold-out");

    // The room is over on both nodes within a second: joins, old and new,
    // and purchases with a good ticket all answer sold-out.
    let (holder, ticket) = (&line[line.len() - 1].1, &line[line.len() - 1].2);
    for (i, node) in nodes.iter().enumerate() {
        loop {
            let again = node.join_room(&sale, holder).await;
            let newcomer = node.join_room(&sale, &format!("after-{i}")).await;
            if again.is(StatusCode::CONFLICT, "sold-out")
                && newcomer.is(StatusCode::CONFLICT, "sold-out")
            {
                break;
            }
            assert!(
                sold_out.elapsed() < Duration::from_secs(1),
                "node {i} still lets buyers join a second after the sell-out: {again} / {newcomer}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let late_buy = node
            .purchase_with_ticket(&sale, holder, Some(ticket), &format!("after-{i}"))
            .await;
        assert!(
            late_buy.is(StatusCode::CONFLICT, "sold-out"),
            "node {i}: {late_buy}"
        );
    }
    eprintln!(
        "both nodes ended the room {:?} after the sell-out",
        sold_out.elapsed()
    );

    for (i, node) in nodes.iter().enumerate() {
        let stats = node.stats(&sale).await;
        assert_eq!(
            (
                stats["quantity"].as_u64(),
                stats["sold"].as_u64(),
                stats["remaining"].as_u64()
            ),
            (Some(UNITS), Some(UNITS), Some(0)),
            "node {i}: {stats}"
        );
    }
}

/// What one customer of the crowd went through.
#[derive(Debug, Default)]
struct Journey {
    user: String,
    /// Their place once drawn, as the room told it.
    position: Option<u64>,
    /// The room said `admitted` (only then do they try to buy for real).
    admitted: bool,
    /// Answered 202.
    won: bool,
    /// The answer that ended their journey, when it was not a 202.
    lost_with: Option<String>,
    /// Waiting answers after the draw (with a place, not admitted yet).
    waited: u32,
    /// The longest wait the room asked for.
    longest_wait_ms: u64,
    /// Waits asked for that were longer than [`LONGEST_POLL`].
    cut_short: u32,
}

/// A customer asks again after `retry_after_ms`, or after this if told to
/// wait longer (a page that refreshes itself): far back in the line, the
/// room asks for up to 30 s, longer than this test may take.
const LONGEST_POLL: Duration = Duration::from_secs(3);

/// Holds one of the crowd's request slots while `request` runs.
async fn gated<T>(gate: &Semaphore, request: impl Future<Output = T>) -> T {
    let _slot = gate.acquire().await.unwrap();
    request.await
}

/// Shed by the protection layer: try again shortly.
fn shed(answer: &Answer) -> bool {
    matches!(
        answer.status,
        StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS
    )
}

/// A customer: joins before the start, tries once too early, then asks
/// again after each `retry_after_ms` and buys once admitted.
async fn customer(
    api: Arc<Api>,
    gate: Arc<Semaphore>,
    sale: String,
    user: String,
    starts: Instant,
    impatient: bool,
) -> Journey {
    let deadline = starts + Duration::from_secs(40);
    let mut journey = Journey {
        user: user.clone(),
        ..Journey::default()
    };
    let mut standing = loop {
        let joined = gated(&gate, api.join_room(&sale, &user)).await;
        if !shed(&joined) {
            break joined;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(standing.status, StatusCode::OK, "{user}: {standing}");
    assert_eq!(
        standing.position(),
        None,
        "{user} joined after the start (the crowd took over 4 s to join?): {standing}"
    );
    let ticket = standing.ticket();
    if impatient && Instant::now() + Duration::from_millis(500) < starts {
        // Nobody buys before the draw, even with their own ticket.
        let early = gated(
            &gate,
            api.purchase_with_ticket(&sale, &user, Some(&ticket), "too-early"),
        )
        .await;
        assert!(
            early.is(StatusCode::CONFLICT, "not-your-turn") || shed(&early),
            "{user} before the start: {early}"
        );
    }
    // Wait as told until admitted, or until the room ends.
    loop {
        assert!(
            Instant::now() < deadline,
            "{user} still waiting: {standing}"
        );
        if standing.admitted() {
            journey.admitted = true;
            journey.position = standing.position();
            break;
        }
        let wait = standing.body["retry_after_ms"].as_u64().unwrap();
        let header = standing.retry_after.expect("a wait without Retry-After");
        assert_eq!(
            header,
            wait.div_ceil(1000).max(1),
            "Retry-After is retry_after_ms in whole seconds, rounded up: {standing}"
        );
        journey.longest_wait_ms = journey.longest_wait_ms.max(wait);
        journey.cut_short += u32::from(wait > LONGEST_POLL.as_millis() as u64);
        tokio::time::sleep(Duration::from_millis(wait).min(LONGEST_POLL)).await;
        standing = gated(&gate, api.join_room(&sale, &user)).await;
        if shed(&standing) {
            // Asked again later; the previous standing still holds.
            tokio::time::sleep(Duration::from_millis(50)).await;
            standing = gated(&gate, api.join_room(&sale, &user)).await;
        }
        if standing.is(StatusCode::CONFLICT, "sold-out") {
            journey.lost_with = Some(format!("join: {}", standing.kind()));
            return journey;
        }
        assert_eq!(standing.status, StatusCode::OK, "{user}: {standing}");
        assert_eq!(standing.ticket(), ticket, "{user}: another ticket");
        if let Some(position) = standing.position() {
            assert!(
                journey.position.is_none_or(|p| p == position),
                "{user} moved from place {:?} to {position}",
                journey.position
            );
            journey.position = Some(position);
            journey.waited += u32::from(!standing.admitted());
        }
    }
    // Admitted: buy (the same key again if shed).
    loop {
        let bought = gated(
            &gate,
            api.purchase_with_ticket(&sale, &user, Some(&ticket), "buy"),
        )
        .await;
        if shed(&bought) {
            assert!(Instant::now() < deadline, "{user} shed until the end");
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        match bought.status {
            StatusCode::ACCEPTED => journey.won = true,
            StatusCode::CONFLICT => {
                journey.lost_with = Some(format!("purchase: {}", bought.kind()))
            }
            _ => journey.lost_with = Some(format!("purchase: {bought}")),
        }
        return journey;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crowd_waits_its_turn_and_only_admitted_holders_buy_exactly_the_stock() {
    const CROWD: usize = 200;
    const UNITS: u64 = 20;
    let dir = DataDir::new();
    // The window of admitted holders follows the in-flight limit (design.md
    // §4.7): 32 here, so most of the crowd waits at the start. The crowd
    // keeps fewer requests than that in flight, so none is shed.
    let limit = [
        ("STAMPEDE_MAX_IN_FLIGHT", "32"),
        ("STAMPEDE_MIN_IN_FLIGHT", "32"),
    ];
    let node = Binary::start_with(&dir, &limit);
    let api = Arc::new(Api::new(&node));
    let (sale, starts) = room_sale(&api, UNITS, Duration::from_secs(4)).await;
    let gate = Arc::new(Semaphore::new(16));
    let began = Instant::now();
    let crowd: Vec<_> = (0..CROWD)
        .map(|n| {
            tokio::spawn(customer(
                api.clone(),
                gate.clone(),
                sale.clone(),
                format!("crowd-{n}"),
                starts,
                n % 5 == 0,
            ))
        })
        .collect();
    let mut journeys = Vec::new();
    for task in crowd {
        journeys.push(task.await.unwrap());
    }
    let took = began.elapsed();

    let winners: Vec<&Journey> = journeys.iter().filter(|j| j.won).collect();
    assert_eq!(winners.len() as u64, UNITS, "winners: {winners:?}");
    for journey in &journeys {
        assert!(
            !journey.won || journey.admitted,
            "won without being admitted: {journey:?}"
        );
        if !journey.won {
            let lost = journey.lost_with.as_deref().unwrap_or_default();
            assert!(
                lost == "join: sold-out" || lost == "purchase: sold-out",
                "a loser not told sold-out: {journey:?}"
            );
        }
    }
    // No place given twice.
    let mut places: HashMap<u64, &str> = HashMap::new();
    for journey in &journeys {
        if let Some(at) = journey.position
            && let Some(other) = places.insert(at, &journey.user)
        {
            panic!("place {at} given to {other} and {}", journey.user);
        }
    }
    // The store agrees: one order per winner, none for anyone else.
    for journey in &journeys {
        let orders = api.orders_of(&journey.user).await;
        assert_eq!(
            orders.len(),
            usize::from(journey.won),
            "{journey:?}: {orders:?}"
        );
    }
    let stats = api.stats(&sale).await;
    let (quantity, sold, remaining) = (
        stats["quantity"].as_u64().unwrap(),
        stats["sold"].as_u64().unwrap(),
        stats["remaining"].as_u64().unwrap(),
    );
    assert_eq!((quantity, sold), (UNITS, UNITS), "{stats}");
    assert_eq!(quantity - sold, remaining, "unbalanced: {stats}");

    let admitted = journeys.iter().filter(|j| j.admitted).count();
    let waited = journeys.iter().filter(|j| j.waited > 0).count();
    let longest = journeys.iter().map(|j| j.longest_wait_ms).max();
    let cut_short: u32 = journeys.iter().map(|j| j.cut_short).sum();
    eprintln!(
        "{CROWD} customers in {took:?} ({:?} after the start): {admitted} admitted, \
         {waited} waited their turn after the draw, longest wait told {longest:?} ms, \
         {cut_short} waits cut to {LONGEST_POLL:?}",
        Instant::now().saturating_duration_since(starts)
    );
    assert!(
        waited > 0,
        "nobody had to wait after the draw: the room let everyone in at once"
    );
}
