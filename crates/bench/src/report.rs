//! Latencies and results: HDR histograms per outcome (`hdrhistogram`, 3
//! significant figures, 1 µs to 60 s), the JSON document of `--json`, and the
//! human report.
//!
//! Histograms are kept per shard, not per connection: one set of eleven 3-digit
//! histograms is ~1.5 MB, which times 256 connections would make the
//! generator's memory traffic part of the measurement. Connections record
//! into `SHARDS` recorders behind uncontended mutexes instead.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::audit::AuditReport;
use crate::outcome::Outcome;
use crate::room_stats::{Spread, WaitingRoom};

/// Highest latency recorded, in microseconds; slower answers are clamped.
const MAX_MICROS: u64 = 60_000_000;

/// Latencies and counts per outcome.
#[derive(Debug, Clone, Default)]
pub struct Recorder {
    /// Created on first use: most runs see three or four outcomes.
    histograms: [Option<Histogram<u64>>; Outcome::COUNT],
    counts: [u64; Outcome::COUNT],
}

impl Recorder {
    pub fn record(&mut self, outcome: Outcome, latency: Duration) {
        let i = outcome.index();
        self.counts[i] += 1;
        let micros = u64::try_from(latency.as_micros())
            .unwrap_or(MAX_MICROS)
            .clamp(1, MAX_MICROS);
        if self.histograms[i].is_none() {
            self.histograms[i] = Histogram::new_with_bounds(1, MAX_MICROS, 3).ok();
        }
        if let Some(histogram) = self.histograms[i].as_mut() {
            histogram.saturating_record(micros);
        }
    }

    pub fn merge(&mut self, other: &Recorder) {
        for i in 0..Outcome::COUNT {
            self.counts[i] += other.counts[i];
            if let Some(theirs) = &other.histograms[i] {
                match &mut self.histograms[i] {
                    Some(mine) => {
                        // Same bounds on both sides: adding cannot fail.
                        let _ = mine.add(theirs);
                    }
                    None => self.histograms[i] = Some(theirs.clone()),
                }
            }
        }
    }

    /// Counts per outcome, indexed by [`Outcome::index`].
    pub fn counts(&self) -> [u64; Outcome::COUNT] {
        self.counts
    }

    /// The latencies (µs) of one outcome, if any was recorded.
    pub fn histogram(&self, outcome: Outcome) -> Option<&Histogram<u64>> {
        self.histograms[outcome.index()]
            .as_ref()
            .filter(|h| !h.is_empty())
    }

    pub fn count(&self, outcome: Outcome) -> u64 {
        self.counts[outcome.index()]
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Requests refused with a problem answer (see [`Outcome::is_refusal`]).
    pub fn refusals(&self) -> u64 {
        Outcome::ALL
            .iter()
            .filter(|o| o.is_refusal())
            .map(|o| self.count(*o))
            .sum()
    }

    pub fn latency(&self, outcome: Outcome) -> Option<Latency> {
        self.histograms[outcome.index()]
            .as_ref()
            .filter(|h| !h.is_empty())
            .map(Latency::of)
    }

    /// Latency over every outcome.
    pub fn latency_all(&self) -> Option<Latency> {
        let mut all: Option<Histogram<u64>> = None;
        for histogram in self.histograms.iter().flatten() {
            match &mut all {
                Some(sum) => {
                    let _ = sum.add(histogram);
                }
                None => all = Some(histogram.clone()),
            }
        }
        all.filter(|h| !h.is_empty()).map(|h| Latency::of(&h))
    }
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Latency {
    pub count: u64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub mean: f64,
}

impl Latency {
    fn of(h: &Histogram<u64>) -> Self {
        let ms = |micros: u64| round3(micros as f64 / 1_000.0);
        Self {
            count: h.len(),
            p50: ms(h.value_at_quantile(0.5)),
            p90: ms(h.value_at_quantile(0.9)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
            mean: round3(h.mean() / 1_000.0),
        }
    }
}

pub fn round3(x: f64) -> f64 {
    (x * 1_000.0).round() / 1_000.0
}

/// One phase (the livez ceiling or the purchases), summed up.
#[derive(Debug, Clone, Serialize)]
pub struct PhaseSummary {
    pub requests: u64,
    /// From the first request sent to the last answer received.
    pub seconds: f64,
    pub rps: f64,
    pub errors: u64,
    /// Over every outcome of the phase.
    pub latency_ms: Option<Latency>,
    /// CPU microseconds per request the server spent (with `--server-pid`).
    pub server_cpu_us: Option<f64>,
    /// CPU microseconds per request the generator spent: on a shared
    /// machine, both sides of a ratio pay it.
    pub generator_cpu_us: Option<f64>,
}

/// Replays of earlier keys (`--replay-ratio`).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct ReplayStats {
    pub sent: u64,
    /// Replays whose answer differed from the first one (also counted as errors).
    pub mismatched: u64,
}

/// What the server process used, read from /proc (`--server-pid`).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ProcessUsage {
    /// `VmHWM`: the peak resident set since the process started.
    pub peak_rss_kb: Option<u64>,
    /// User + system CPU seconds spent during the purchase phase.
    pub cpu_s: Option<f64>,
}

/// Everything a run found; `--json` prints exactly this.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub run_id: String,
    pub target: String,
    pub sale_id: String,
    /// Customers are `<user_prefix><i>` for i in 0..users.
    pub user_prefix: String,
    pub users: u32,
    pub stock: u64,
    pub per_user_limit: u64,
    pub quantity: u32,
    /// `closed` (--connections) or `open` (--rate).
    pub mode: &'static str,
    pub connections: usize,
    pub rate: Option<f64>,
    pub replay_ratio: f64,
    /// The ceiling phase, run before the purchases with the same connections.
    pub livez: Option<PhaseSummary>,
    pub livez_rps: Option<f64>,
    pub purchase: PhaseSummary,
    /// Refused purchases ÷ purchase-phase seconds.
    pub losing_rps: f64,
    /// `losing_rps / livez_rps`.
    pub losing_ratio: Option<f64>,
    /// Won ÷ seconds from the first purchase sent to the last win answered.
    pub won_per_sec: f64,
    pub won_window_s: f64,
    /// The sell-out, if the crowd met one.
    pub sell_out: Option<crate::sell_out::SellOut>,
    /// `--scenario waiting-room`: the line as the customers lived it. The
    /// purchase figures above are then the purchases alone (from the first
    /// sent to the last answered).
    pub waiting_room: Option<WaitingRoom>,
    /// Count per purchase outcome (every outcome, zeros included).
    pub outcomes: BTreeMap<&'static str, u64>,
    /// Per purchase outcome that occurred.
    pub latency_ms: BTreeMap<&'static str, Latency>,
    pub replays: ReplayStats,
    /// What the errors were, with counts.
    pub errors: BTreeMap<String, u64>,
    pub server: Option<ProcessUsage>,
    /// CPU seconds the generator itself spent in the purchase phase.
    pub generator_cpu_s: Option<f64>,
    /// `null` with --no-audit.
    pub audit_ok: Option<bool>,
    pub audit_violations: Vec<String>,
    pub audit: Option<AuditReport>,
}

/// Per-outcome counts of a purchase phase, every outcome present.
pub fn outcome_counts(recorder: &Recorder) -> BTreeMap<&'static str, u64> {
    Outcome::PURCHASE
        .iter()
        .map(|o| (o.name(), recorder.count(*o)))
        .collect()
}

pub fn outcome_latencies(recorder: &Recorder) -> BTreeMap<&'static str, Latency> {
    Outcome::PURCHASE
        .iter()
        .filter_map(|o| recorder.latency(*o).map(|l| (o.name(), l)))
        .collect()
}

pub(crate) fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

pub(crate) fn rate(x: f64) -> String {
    thousands(x.round().max(0.0) as u64)
}

fn loop_kind(rate: Option<f64>, connections: usize) -> String {
    match rate {
        Some(rate) => format!(
            "open loop at {} req/s over {connections} connections (latency from the scheduled send)",
            thousands(rate as u64),
        ),
        None => format!("closed loop, {connections} connections"),
    }
}

/// The human report.
pub fn render(report: &Report, recorder: &Recorder) -> String {
    let mut out = String::new();
    let r = report;
    let _ = writeln!(
        out,
        "stampede bench flash-sale: run {} against {}",
        r.run_id, r.target
    );
    let _ = writeln!(
        out,
        "sale {}: stock {}, per-user limit {}, quantity {} per purchase",
        r.sale_id, r.stock, r.per_user_limit, r.quantity
    );
    let _ = writeln!(
        out,
        "{} customers ({}0 … {}{}), replay ratio {}",
        thousands(u64::from(r.users)),
        r.user_prefix,
        r.user_prefix,
        r.users.saturating_sub(1),
        r.replay_ratio
    );
    let loop_kind = match (&r.waiting_room, r.rate) {
        (Some(room), _) => format!(
            "a waiting room: the sale starts {} ms after its creation; each customer joins \
             before, polls as told and buys once admitted, over {} connections",
            room.lead_ms, r.connections
        ),
        (None, rate) => loop_kind(rate, r.connections),
    };
    let phases = match (r.livez.is_some(), r.waiting_room.is_some()) {
        (true, true) => "the GET /livez ceiling runs first, then the room",
        (true, false) => "the GET /livez ceiling runs first, then the purchases",
        (false, _) => "purchases only (no ceiling phase)",
    };
    let _ = writeln!(out, "{loop_kind}; {phases}\n");

    let line = |out: &mut String, name: &str, p: &PhaseSummary| {
        let latency = p.latency_ms.map_or_else(String::new, |l| {
            format!(
                "  p50 {:.3}  p99 {:.3}  p99.9 {:.3} ms",
                l.p50, l.p99, l.p999
            )
        });
        let cpu = match (p.server_cpu_us, p.generator_cpu_us) {
            (Some(server), Some(generator)) => {
                format!("  CPU/req server {server:.1} µs, generator {generator:.1} µs")
            }
            (None, Some(generator)) => format!("  CPU/req generator {generator:.1} µs"),
            _ => String::new(),
        };
        let _ = writeln!(
            out,
            "{name:<10} {:>9} req/s  {:>10} requests in {:.2} s{latency}{cpu}",
            rate(p.rps),
            thousands(p.requests),
            p.seconds
        );
    };
    if let Some(livez) = &r.livez {
        line(&mut out, "livez", livez);
    }
    line(&mut out, "purchase", &r.purchase);

    let _ = writeln!(
        out,
        "\n{:<21} {:>10} {:>7} {:>9} {:>9} {:>9} {:>9}",
        "outcome", "count", "share", "p50 ms", "p99 ms", "p99.9 ms", "max ms"
    );
    let total = recorder.total().max(1);
    for outcome in Outcome::PURCHASE {
        let count = recorder.count(outcome);
        if count == 0 {
            continue;
        }
        let share = count as f64 * 100.0 / total as f64;
        let (p50, p99, p999, max) = recorder
            .latency(outcome)
            .map_or((0.0, 0.0, 0.0, 0.0), |l| (l.p50, l.p99, l.p999, l.max));
        let _ = writeln!(
            out,
            "{:<21} {:>10} {:>6.1}% {p50:>9.3} {p99:>9.3} {p999:>9.3} {max:>9.3}",
            outcome.name(),
            thousands(count),
            share
        );
    }

    let _ = writeln!(out);
    match r.losing_ratio {
        Some(ratio) => {
            let _ = writeln!(
                out,
                "losing purchases ÷ livez   {ratio:.2}  ({} refused req/s against {} livez req/s)",
                rate(r.losing_rps),
                rate(r.livez_rps.unwrap_or(0.0))
            );
        }
        None => {
            let _ = writeln!(
                out,
                "losing purchases           {} req/s (no ceiling phase)",
                rate(r.losing_rps)
            );
        }
    }
    let won = recorder.count(Outcome::Won);
    let _ = writeln!(
        out,
        "durable wins per second    {}  ({} wins in {:.3} s)",
        rate(r.won_per_sec),
        thousands(won),
        r.won_window_s
    );
    if let Some(sold) = &r.sell_out {
        let _ = writeln!(
            out,
            "sell-out                   at {:.3} s; the {} losing requests in flight then were answered within {:.3} ms of it (p50 {:.3} ms, p99 {:.3} ms)",
            sold.at_s, sold.in_flight, sold.waited_max_ms, sold.waited_p50_ms, sold.waited_p99_ms
        );
    }
    if let Some(room) = &r.waiting_room {
        render_room(&mut out, room);
        let _ = writeln!(out);
    }
    if r.replays.sent > 0 {
        let _ = writeln!(
            out,
            "replays                    {} sent, {} did not get their first answer",
            thousands(r.replays.sent),
            thousands(r.replays.mismatched)
        );
    }
    for (what, n) in &r.errors {
        let _ = writeln!(out, "error                      {n} × {what}");
    }
    if let Some(server) = &r.server {
        let rss = server
            .peak_rss_kb
            .map_or_else(|| "?".to_owned(), |kb| format!("{} MB", kb / 1024));
        let cpu = server
            .cpu_s
            .map_or_else(|| "?".to_owned(), |s| format!("{s:.2} s"));
        let _ = writeln!(
            out,
            "server                     peak RSS {rss}, CPU {cpu} in the purchase phase"
        );
    }
    if let Some(cpu) = r.generator_cpu_s {
        let _ = writeln!(
            out,
            "generator                  CPU {cpu:.2} s in the purchase phase"
        );
    }
    match (&r.audit, r.audit_ok) {
        (Some(audit), Some(true)) => {
            let _ = writeln!(out, "audit                      ok: {}", audit.summary());
        }
        (Some(audit), _) => {
            let _ = writeln!(
                out,
                "audit                      FAILED ({} violations): {}",
                r.audit_violations.len(),
                audit.summary()
            );
            for violation in &r.audit_violations {
                let _ = writeln!(out, "  - {violation}");
            }
        }
        (None, _) => {
            let _ = writeln!(out, "audit                      skipped (--no-audit)");
        }
    }
    out
}

/// The waiting-room section's lines.
fn render_room(out: &mut String, w: &WaitingRoom) {
    let n = |count: usize| thousands(u64::try_from(count).unwrap_or(u64::MAX));
    let spread = |s: Option<Spread>| {
        s.map_or_else(
            || "none".to_owned(),
            |s| format!("p50 {:.0} / p99 {:.0} / max {:.0} ms", s.p50, s.p99, s.max),
        )
    };
    let _ = writeln!(
        out,
        "\nwaiting room               {} customers, joins spread over {} ms: {} before the start \
         (tickets drawn), {} after it, {} never joined",
        n(w.customers),
        w.lead_ms,
        n(w.drawn),
        n(w.joined_after_start),
        n(w.never_joined)
    );
    let sold_out = w.sold_out_after_s.map_or_else(
        || "never".to_owned(),
        |s| format!("{s:.3} s after the start"),
    );
    let _ = writeln!(
        out,
        "  ends                     {} won, {} told sold-out in line, {} sold-out at the \
         purchase, {} unfinished{}; first sold-out {sold_out}",
        n(w.won),
        n(w.sold_out_in_line),
        n(w.sold_out_at_purchase),
        n(w.unfinished),
        w.other_ends
            .iter()
            .map(|(name, n)| format!(", {n} {name}"))
            .collect::<String>()
    );
    let _ = writeln!(
        out,
        "  admitted                 {} after the start: {}",
        n(w.admitted),
        spread(w.admission_wait_ms)
    );
    let _ = writeln!(
        out,
        "  polls per customer       mean {:.2}, max {}; {} purchases answered not-your-turn",
        w.polls_mean,
        w.polls_max,
        thousands(w.not_your_turn)
    );
    let _ = writeln!(
        out,
        "  told sold-out in line    {} customers, after the first sold-out: {}",
        n(w.told_sold_out_ms.map_or(0, |s| s.count)),
        spread(w.told_sold_out_ms)
    );
    let f = &w.fairness;
    let rho = f
        .spearman
        .map_or_else(|| "n/a".to_owned(), |r| format!("{r:+.4}"));
    let chance = if f.drawn_placed > 1 {
        format!(
            " (chance: ±{:.4})",
            3.0 / ((f.drawn_placed - 1) as f64).sqrt()
        )
    } else {
        String::new()
    };
    let late = f.late_inversions.map_or_else(
        || "none joined after the start".to_owned(),
        |n| {
            format!(
                "{n} inversions among {} joined after the start",
                f.late_placed
            )
        },
    );
    let _ = writeln!(
        out,
        "  fairness                 join order vs place: Spearman {rho} over {}{chance}; {late}",
        n(f.drawn_placed)
    );
    let r = &w.retry_after;
    let ratio = |x: Option<f64>| x.map_or_else(|| "n/a".to_owned(), |x| format!("{x:.2}"));
    let _ = writeln!(
        out,
        "  waits told               first after the draw: {}; to the {} admitted later: {} ({} \
         with no drain measured yet, {} at 30 s): lived ÷ told, median {} by the line, {} by \
         their own polls",
        spread(r.told_everyone_ms),
        n(r.customers),
        spread(r.told_ms),
        n(r.unmeasured),
        n(r.at_longest),
        ratio(r.line_over_told_p50),
        ratio(r.admitted_over_told_p50)
    );
    let l = &w.load;
    let ratio = l
        .queue_peak_ratio
        .map_or_else(String::new, |x| format!(" ({x:.2} of livez)"));
    let cpu = l
        .server_cpu_us
        .map_or_else(String::new, |us| format!("; server CPU {us:.1} µs/request"));
    let _ = writeln!(
        out,
        "  load                     {} queue + {} purchase requests in {:.2} s; queue {} req/s, \
         busiest 250 ms at {} req/s{ratio}, latency {}; waiting for a connection {}{cpu}",
        thousands(l.queue_requests),
        thousands(l.purchase_requests),
        l.seconds,
        rate(l.queue_rps),
        rate(l.queue_peak_rps),
        spread(l.queue_latency_ms),
        spread(l.connection_wait_ms)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorders_merge_counts_and_latencies() {
        let mut a = Recorder::default();
        let mut b = Recorder::default();
        for ms in 1..=100 {
            a.record(Outcome::SoldOut, Duration::from_millis(ms));
        }
        b.record(Outcome::Won, Duration::from_micros(250));
        b.record(Outcome::SoldOut, Duration::from_secs(120));
        a.merge(&b);
        assert_eq!(a.count(Outcome::SoldOut), 101);
        assert_eq!(a.count(Outcome::Won), 1);
        assert_eq!(a.total(), 102);
        assert_eq!(a.refusals(), 101);
        let sold_out = a.latency(Outcome::SoldOut).unwrap();
        assert!((49.0..=52.0).contains(&sold_out.p50), "{sold_out:?}");
        // Clamped at the histogram's top, not lost.
        assert!(
            (59_000.0..=60_100.0).contains(&sold_out.max),
            "{sold_out:?}"
        );
        assert_eq!(a.latency(Outcome::Won).unwrap().p50, 0.25);
        assert_eq!(a.latency(Outcome::Error), None);
        assert_eq!(a.latency_all().unwrap().count, 102);
    }

    #[test]
    fn every_purchase_outcome_is_counted_even_at_zero() {
        let counts = outcome_counts(&Recorder::default());
        assert_eq!(counts.len(), Outcome::PURCHASE.len());
        for name in [
            "won",
            "sold-out",
            "limit-exceeded",
            "rate-limited",
            "overloaded",
            "error",
        ] {
            assert_eq!(counts.get(name), Some(&0), "{name}");
        }
    }

    #[test]
    fn the_waiting_room_section_reads_its_figures() {
        use std::time::Instant;

        use crate::room_stats::{End, RoomLoad, Visit, summarise};

        let draw = Instant::now();
        let at = |ms: u64| draw + Duration::from_millis(ms);
        let visit = |end: End, ended: u64, position: u64| Visit {
            join_sent: Some(draw),
            joined: Some(draw),
            drawn: true,
            position: Some(position),
            polls: 2,
            end,
            ended: Some(at(ended)),
            ..Visit::default()
        };
        let mut won = visit(End::Won, 30, 1);
        won.admitted = Some(at(20));
        let visits: Vec<Visit> = [won]
            .into_iter()
            .chain((2..=1_500).map(|p| visit(End::SoldOutInLine, 40 + p, p)))
            .collect();
        let room = summarise(&visits, draw, 3_000, RoomLoad::default());
        let mut text = String::new();
        render_room(&mut text, &room);
        for expected in [
            "1,500 customers, joins spread over 3000 ms: 1,500 before the start",
            "1 won, 1,499 told sold-out in line, 0 sold-out at the purchase, 0 unfinished; \
             first sold-out 0.042 s after the start",
            "admitted                 1 after the start: p50 20 / p99 20 / max 20 ms",
            "polls per customer       mean 2.00, max 2; 0 purchases answered not-your-turn",
            "told sold-out in line    1,499 customers, after the first sold-out: p50 749",
            "Spearman +1.0000 over 1,500 (chance: ±0.0775); none joined after the start",
        ] {
            assert!(text.contains(expected), "{expected}\nnot in\n{text}");
        }
    }

    #[test]
    fn large_numbers_get_thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }
}
