//! The figures of `--scenario waiting-room`, from what each customer saw of
//! the sale's waiting room (docs/api.md §3.3, "Waiting rooms"): how long
//! the line took, how often it was asked, how it ended, whether the draw
//! was fair, and whether the waits it told came true.
//!
//! The line's progress is read off every waiting answer after the draw: a
//! place `position` with `ahead` places before it not admitted yet says
//! that `position − 1 − ahead` places were admitted when it was answered.
//! With thousands of answers a second, those samples tell when each place
//! was reached more precisely than its holder's next poll does (which comes
//! when the room told it to, so it can never be early).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::Serialize;

/// A waiting answer after the draw, as its customer got it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Told {
    /// When the answer arrived.
    pub at: Instant,
    pub position: u64,
    /// Places before this one not admitted yet.
    pub ahead: u64,
    /// The wait the room told (the body's milliseconds).
    pub retry_after_ms: u64,
    /// The drain rate the wait was computed from.
    pub served_per_sec: f64,
}

/// How a customer's visit ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum End {
    /// The phase's deadline came first.
    #[default]
    Unfinished,
    Won,
    /// Told `sold-out` by the room, on a join or a poll.
    SoldOutInLine,
    /// Admitted, then its purchase was answered `sold-out`.
    SoldOutAtPurchase,
    /// Any other final answer, by its outcome's name.
    Other(&'static str),
}

impl End {
    fn sold_out(self) -> bool {
        matches!(self, Self::SoldOutInLine | Self::SoldOutAtPurchase)
    }
}

/// One customer's visit.
#[derive(Debug, Clone, Default)]
pub struct Visit {
    /// Its first join: when it was sent, and when its 200 arrived.
    pub join_sent: Option<Instant>,
    pub joined: Option<Instant>,
    /// The first 200 carried no place: the ticket was taken before the
    /// draw, and drawn at the start.
    pub drawn: bool,
    /// Its place, once an answer told it.
    pub position: Option<u64>,
    /// Its first waiting answer with a place.
    pub first_told: Option<Told>,
    /// When an answer first said `admitted`.
    pub admitted: Option<Instant>,
    /// `POST /queue` requests sent, the join included.
    pub polls: u32,
    /// Purchases answered `not-your-turn`.
    pub not_your_turn: u32,
    pub end: End,
    /// When the final answer arrived.
    pub ended: Option<Instant>,
    /// `(answered, places admitted then)` from each answer after the draw.
    pub line: Vec<(Instant, u64)>,
}

/// Percentiles of a set of measures (nearest rank).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Spread {
    pub count: usize,
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

impl Spread {
    /// `None` for an empty set.
    pub fn of(mut values: Vec<f64>) -> Option<Self> {
        if values.is_empty() {
            return None;
        }
        values.sort_by(f64::total_cmp);
        let pick = |q: f64| {
            let i = ((values.len() as f64 * q).ceil() as usize).clamp(1, values.len()) - 1;
            round3(values[i])
        };
        Some(Self {
            count: values.len(),
            p50: pick(0.5),
            p99: pick(0.99),
            max: pick(1.0),
        })
    }
}

fn round3(x: f64) -> f64 {
    (x * 1_000.0).round() / 1_000.0
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1_000.0
}

/// Join order against place.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Fairness {
    /// Customers who joined before the start and learnt their place.
    pub drawn_placed: usize,
    /// Spearman's rank correlation between their join order and their
    /// place: near 0 for a fair draw (±3/√n is chance at n of them).
    pub spearman: Option<f64>,
    /// Customers who joined after the start and learnt their place.
    pub late_placed: usize,
    /// Pairs of them where the one whose join was answered before the
    /// other's was sent got the later place: 0 in a first-come line.
    pub late_inversions: Option<u64>,
}

/// The waits the room told against those lived, for customers admitted
/// after a first waiting answer with a place.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RetryCheck {
    /// The first wait told after the draw, to every customer told one
    /// (admitted later or not).
    pub told_everyone_ms: Option<Spread>,
    pub customers: usize,
    /// The wait told there (`retry_after_ms`).
    pub told_ms: Option<Spread>,
    /// Median of (time until the line reached the place, read off every
    /// customer's answers) ÷ (the wait told).
    pub line_over_told_p50: Option<f64>,
    /// Median of (time until the customer's own poll found it admitted) ÷
    /// (the wait told); at least about 1 when customers poll when told.
    pub admitted_over_told_p50: Option<f64>,
    /// Waits told while the room knew no drain rate yet (`served_per_sec`
    /// 0: a flat 1 s).
    pub unmeasured: usize,
    /// Waits told at the room's longest (30 s).
    pub at_longest: usize,
}

/// The load the room phase put on the server.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Default)]
pub struct RoomLoad {
    /// `POST /queue` requests answered (joins and polls).
    pub queue_requests: u64,
    pub purchase_requests: u64,
    /// Over the room phase, from the first join sent to the last answer.
    pub seconds: f64,
    pub queue_rps: f64,
    /// The busiest quarter of a second of `POST /queue` answers, per second.
    pub queue_peak_rps: f64,
    /// `queue_peak_rps ÷ livez_rps` (with the ceiling phase).
    pub queue_peak_ratio: Option<f64>,
    /// Latency of `POST /queue`, from when the customer meant to send it.
    pub queue_latency_ms: Option<Spread>,
    /// How long requests waited for one of the generator's connections:
    /// part of the latencies above, and the generator's doing.
    pub connection_wait_ms: Option<Spread>,
    /// Server CPU per request (queue and purchase) over the room phase
    /// (with `--server-pid`).
    pub server_cpu_us: Option<f64>,
}

/// The report's `waiting_room` section.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WaitingRoom {
    /// From the sale's creation to its start.
    pub lead_ms: u64,
    pub customers: usize,
    /// Tickets taken before the start: drawn at random at it.
    pub drawn: usize,
    pub joined_after_start: usize,
    /// Customers never answered 200 to a join.
    pub never_joined: usize,
    /// Customers still going when the phase's deadline came.
    pub unfinished: usize,
    /// Seconds from the start (`draw_at`) to the first `sold-out` answer.
    pub sold_out_after_s: Option<f64>,
    pub admitted: usize,
    /// From the start to the answer that said `admitted`.
    pub admission_wait_ms: Option<Spread>,
    pub polls_mean: f64,
    pub polls_max: u32,
    pub not_your_turn: u64,
    pub won: usize,
    /// Told `sold-out` on a join or poll.
    pub sold_out_in_line: usize,
    /// Admitted, then refused `sold-out` at the purchase.
    pub sold_out_at_purchase: usize,
    /// Other ends, by outcome.
    pub other_ends: BTreeMap<&'static str, usize>,
    /// For the customers still in line at the sell-out: how long after the
    /// first `sold-out` answer (anyone's, a purchase's or a poll's) the room
    /// told them.
    pub told_sold_out_ms: Option<Spread>,
    pub fairness: Fairness,
    pub retry_after: RetryCheck,
    pub load: RoomLoad,
}

/// Sums up `visits`; `draw` is the sale's start on this clock.
pub fn summarise(visits: &[Visit], draw: Instant, lead_ms: u64, load: RoomLoad) -> WaitingRoom {
    let sold_out_at = visits
        .iter()
        .filter(|v| v.end.sold_out())
        .filter_map(|v| v.ended)
        .min();
    let since_draw = |at: Instant| at.saturating_duration_since(draw);
    let admitted: Vec<f64> = visits
        .iter()
        .filter_map(|v| v.admitted)
        .map(|at| ms(since_draw(at)))
        .collect();
    let joined = visits.iter().filter(|v| v.joined.is_some());
    let polls_total: u64 = visits.iter().map(|v| u64::from(v.polls)).sum();
    let mut other_ends = BTreeMap::new();
    for visit in visits {
        if let End::Other(name) = visit.end {
            *other_ends.entry(name).or_default() += 1;
        }
    }
    let told_sold_out = sold_out_at.map_or_else(Vec::new, |first| {
        visits
            .iter()
            .filter(|v| v.end == End::SoldOutInLine)
            .filter_map(|v| v.ended)
            .map(|at| ms(at.saturating_duration_since(first)))
            .collect()
    });
    let count = |end: End| visits.iter().filter(|v| v.end == end).count();
    WaitingRoom {
        lead_ms,
        customers: visits.len(),
        drawn: joined.clone().filter(|v| v.drawn).count(),
        joined_after_start: joined.filter(|v| !v.drawn).count(),
        never_joined: visits.iter().filter(|v| v.joined.is_none()).count(),
        unfinished: count(End::Unfinished),
        sold_out_after_s: sold_out_at.map(|at| round3(since_draw(at).as_secs_f64())),
        admitted: admitted.len(),
        admission_wait_ms: Spread::of(admitted),
        polls_mean: round3(polls_total as f64 / visits.len().max(1) as f64),
        polls_max: visits.iter().map(|v| v.polls).max().unwrap_or(0),
        not_your_turn: visits.iter().map(|v| u64::from(v.not_your_turn)).sum(),
        won: count(End::Won),
        sold_out_in_line: count(End::SoldOutInLine),
        sold_out_at_purchase: count(End::SoldOutAtPurchase),
        other_ends,
        told_sold_out_ms: Spread::of(told_sold_out),
        fairness: fairness(visits),
        retry_after: retry_check(visits),
        load,
    }
}

fn fairness(visits: &[Visit]) -> Fairness {
    let placed = |drawn: bool| {
        visits
            .iter()
            .enumerate()
            .filter(move |(_, v)| v.drawn == drawn)
            .filter_map(|(i, v)| Some((v.join_sent?, v.joined?, v.position?, i)))
    };
    // Join order: when the join was answered (the ticket is numbered
    // in between), then the customer's index.
    let drawn: Vec<(Instant, u64, usize)> = placed(true).map(|(_, at, p, i)| (at, p, i)).collect();
    let late: Vec<(Instant, Instant, u64)> = placed(false).map(|(s, a, p, _)| (s, a, p)).collect();
    Fairness {
        drawn_placed: drawn.len(),
        spearman: spearman(&drawn),
        late_placed: late.len(),
        late_inversions: (!late.is_empty()).then(|| inversions(&late)),
    }
}

/// Spearman's ρ between the order of `(joined, position, index)` by
/// join and by position (positions are distinct: no ties).
fn spearman(joins: &[(Instant, u64, usize)]) -> Option<f64> {
    let n = joins.len();
    if n < 3 {
        return None;
    }
    let mut by_join: Vec<usize> = (0..n).collect();
    by_join.sort_by_key(|&k| (joins[k].0, joins[k].2));
    let mut by_place: Vec<usize> = (0..n).collect();
    by_place.sort_by_key(|&k| joins[k].1);
    let mut place_rank = vec![0usize; n];
    for (rank, &k) in by_place.iter().enumerate() {
        place_rank[k] = rank;
    }
    let d2: f64 = by_join
        .iter()
        .enumerate()
        .map(|(rank, &k)| {
            let d = rank as f64 - place_rank[k] as f64;
            d * d
        })
        .sum();
    let n = n as f64;
    Some(((1.0 - 6.0 * d2 / (n * (n * n - 1.0))) * 10_000.0).round() / 10_000.0)
}

/// Pairs `(i, j)` of `(join sent, join answered, position)` where i's
/// join was answered before j's was sent and i's place is after j's.
/// Joins in flight together may be numbered either way: not counted.
fn inversions(late: &[(Instant, Instant, u64)]) -> u64 {
    // Positions ranked 1..=n for a Fenwick tree over them.
    let mut places: Vec<u64> = late.iter().map(|l| l.2).collect();
    places.sort_unstable();
    places.dedup();
    let rank = |p: u64| places.partition_point(|&q| q < p) + 1;
    let mut tree = vec![0u64; places.len() + 1];
    let mut by_answer: Vec<&(Instant, Instant, u64)> = late.iter().collect();
    by_answer.sort_by_key(|l| l.1);
    let mut by_send: Vec<&(Instant, Instant, u64)> = late.iter().collect();
    by_send.sort_by_key(|l| l.0);
    let (mut inserted, mut found, mut next) = (0u64, 0u64, 0usize);
    for j in by_send {
        // Every join answered before j was sent, into the tree.
        while let Some(i) = by_answer.get(next).filter(|i| i.1 < j.0) {
            let mut at = rank(i.2);
            while at < tree.len() {
                tree[at] += 1;
                at += at & at.wrapping_neg();
            }
            inserted += 1;
            next += 1;
        }
        // Of those, the ones placed at or before j: the rest are after it.
        let (mut at, mut before) = (rank(j.2), 0u64);
        while at > 0 {
            before += tree[at];
            at -= at & at.wrapping_neg();
        }
        found += inserted - before;
    }
    found
}

/// When each place was reached: the first answer after which the line
/// had admitted it.
struct Progress {
    /// `(answered, most places admitted by then)`, oldest first.
    reached: Vec<(Instant, u64)>,
}

impl Progress {
    fn of(visits: &[Visit]) -> Self {
        let mut samples: Vec<(Instant, u64)> =
            visits.iter().flat_map(|v| v.line.iter().copied()).collect();
        samples.sort_by_key(|s| s.0);
        let mut reached: Vec<(Instant, u64)> = Vec::new();
        for (at, n) in samples {
            if reached.last().is_none_or(|(_, most)| n > *most) {
                reached.push((at, n));
            }
        }
        Self { reached }
    }

    fn reached(&self, position: u64) -> Option<Instant> {
        let i = self.reached.partition_point(|(_, n)| *n < position);
        self.reached.get(i).map(|(at, _)| *at)
    }
}

fn retry_check(visits: &[Visit]) -> RetryCheck {
    let progress = Progress::of(visits);
    let (mut told, mut by_line, mut by_poll) = (Vec::new(), Vec::new(), Vec::new());
    let (mut unmeasured, mut at_longest) = (0, 0);
    let everyone: Vec<f64> = visits
        .iter()
        .filter_map(|v| v.first_told)
        .map(|t| t.retry_after_ms as f64)
        .collect();
    for visit in visits {
        let (Some(first), Some(admitted)) = (visit.first_told, visit.admitted) else {
            continue;
        };
        if first.retry_after_ms == 0 {
            continue;
        }
        let wait = first.retry_after_ms as f64;
        told.push(wait);
        unmeasured += usize::from(first.served_per_sec <= 0.0);
        at_longest += usize::from(first.retry_after_ms >= 30_000);
        by_poll.push(ms(admitted.saturating_duration_since(first.at)) / wait);
        if let Some(reached) = progress.reached(first.position) {
            by_line.push(ms(reached.saturating_duration_since(first.at)) / wait);
        }
    }
    RetryCheck {
        told_everyone_ms: Spread::of(everyone),
        customers: told.len(),
        told_ms: Spread::of(told),
        line_over_told_p50: Spread::of(by_line).map(|s| s.p50),
        admitted_over_told_p50: Spread::of(by_poll).map(|s| s.p50),
        unmeasured,
        at_longest,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(start: Instant, ms: u64) -> Instant {
        start + Duration::from_millis(ms)
    }

    #[test]
    fn spreads_are_nearest_rank() {
        let s = Spread::of((1..=100).map(f64::from).collect()).unwrap();
        assert_eq!((s.count, s.p50, s.p99, s.max), (100, 50.0, 99.0, 100.0));
        assert_eq!(Spread::of(Vec::new()), None);
    }

    #[test]
    fn spearman_is_one_for_a_fifo_line_minus_one_reversed_and_near_zero_drawn() {
        let start = Instant::now();
        let fifo: Vec<_> = (0..100)
            .map(|i| (at(start, i), i + 1, i as usize))
            .collect();
        assert_eq!(spearman(&fifo), Some(1.0));
        let reversed: Vec<_> = (0..100)
            .map(|i| (at(start, i), 100 - i, i as usize))
            .collect();
        assert_eq!(spearman(&reversed), Some(-1.0));
        let mut rng = fastrand::Rng::with_seed(7);
        let mut places: Vec<u64> = (1..=5_000).collect();
        rng.shuffle(&mut places);
        let drawn: Vec<_> = places
            .iter()
            .enumerate()
            .map(|(i, p)| (at(start, i as u64), *p, i))
            .collect();
        let rho = spearman(&drawn).unwrap();
        assert!(rho.abs() < 3.0 / 4_999f64.sqrt(), "{rho}");
        assert_eq!(spearman(&fifo[..2]), None);
    }

    #[test]
    fn inversions_count_only_joins_that_did_not_overlap() {
        let start = Instant::now();
        let join = |sent: u64, done: u64, place: u64| (at(start, sent), at(start, done), place);
        // In order: none.
        let fifo = [join(0, 5, 1), join(10, 15, 2), join(20, 25, 3)];
        assert_eq!(inversions(&fifo), 0);
        // The first answered before the others were sent, yet placed last: 2.
        let late = [join(0, 5, 3), join(10, 15, 1), join(20, 25, 2)];
        assert_eq!(inversions(&late), 2);
        // In flight together: either order is first come, first served.
        let together = [join(0, 10, 2), join(5, 15, 1)];
        assert_eq!(inversions(&together), 0);
        // Against the quadratic count, on a shuffle.
        let mut rng = fastrand::Rng::with_seed(3);
        let mut places: Vec<u64> = (1..=300).collect();
        rng.shuffle(&mut places);
        let many: Vec<_> = places
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let sent = i as u64 * 2;
                join(sent, sent + rng.u64(1..8), *p)
            })
            .collect();
        let mut slow = 0;
        for i in &many {
            for j in &many {
                slow += u64::from(i.1 < j.0 && i.2 > j.2);
            }
        }
        assert_eq!(inversions(&many), slow);
    }

    #[test]
    fn a_visit_sums_up_into_the_section() {
        let draw = Instant::now() + Duration::from_secs(1);
        let t = |ms: u64| at(draw, ms);
        let before = draw - Duration::from_millis(500);
        let visit = |end: End, ended: u64| Visit {
            join_sent: Some(before),
            joined: Some(before + Duration::from_millis(1)),
            drawn: true,
            polls: 3,
            end,
            ended: Some(t(ended)),
            ..Visit::default()
        };
        // Place 1: admitted at the first poll after the draw.
        let mut first = visit(End::Won, 20);
        first.position = Some(1);
        first.admitted = Some(t(10));
        first.line = vec![(t(10), 1)];
        // Place 2: told 1,000 ms at 10; the line reached it at 510, its
        // own poll at 1,010 found it admitted.
        let mut second = visit(End::Won, 1_020);
        second.position = Some(2);
        second.first_told = Some(Told {
            at: t(10),
            position: 2,
            ahead: 1,
            retry_after_ms: 1_000,
            served_per_sec: 0.0,
        });
        second.line = vec![(t(10), 0), (t(1_010), 2)];
        second.admitted = Some(t(1_010));
        let mut third = visit(End::SoldOutInLine, 1_100);
        third.position = Some(3);
        third.line = vec![(t(510), 2)];
        let mut fourth = visit(End::SoldOutAtPurchase, 1_050);
        fourth.polls = 6;
        fourth.not_your_turn = 2;
        let never = Visit {
            polls: 1,
            end: End::Other("overloaded"),
            ..Visit::default()
        };
        let visits = [first, second, third, fourth, never];
        let w = summarise(&visits, draw, 3_000, RoomLoad::default());
        assert_eq!((w.customers, w.drawn, w.never_joined), (5, 4, 1));
        assert_eq!(
            (w.won, w.sold_out_in_line, w.sold_out_at_purchase),
            (2, 1, 1)
        );
        assert_eq!(w.other_ends.get("overloaded"), Some(&1));
        assert_eq!(w.sold_out_after_s, Some(1.05));
        let told = w.told_sold_out_ms.unwrap();
        assert_eq!((told.count, told.max), (1, 50.0));
        assert_eq!(w.admitted, 2);
        assert_eq!(w.admission_wait_ms.unwrap().max, 1_010.0);
        assert_eq!((w.polls_mean, w.polls_max, w.not_your_turn), (3.2, 6, 2));
        let r = w.retry_after;
        assert_eq!((r.customers, r.unmeasured, r.at_longest), (1, 1, 0));
        assert_eq!(r.line_over_told_p50, Some(0.5));
        assert_eq!(r.admitted_over_told_p50, Some(1.0));
        assert_eq!(w.fairness.drawn_placed, 3);
        assert_eq!(w.fairness.spearman, Some(1.0));
        assert_eq!(w.fairness.late_inversions, None);
    }
}
