//! `bench flash-sale --report FILE`: the run as one self-contained HTML page
//! (inline CSS and SVG, no script, nothing fetched): the key figures,
//! throughput over time per outcome, latency percentile curves per outcome
//! from the HDR histograms, and the audit.

use std::fmt::Write as _;

use crate::outcome::Outcome;
use crate::report::{Recorder, Report, rate, thousands};
use crate::timeline::Timeline;

/// A colour per outcome, by [`Outcome::index`], distinct on white.
const COLOURS: [&str; Outcome::COUNT] = [
    "#2e7d32", "#1565c0", "#c62828", "#ef6c00", "#6a1b9a", "#283593", "#f9a825", "#558b2f",
    "#827717", "#00838f", "#ad1457", "#4e342e", "#9e9d24", "#37474f", "#5d4037",
];

const WIDTH: f64 = 760.0;
const HEIGHT: f64 = 300.0;
/// Room for the axes' labels: left, right, top, bottom.
const MARGIN: (f64, f64, f64, f64) = (64.0, 28.0, 12.0, 40.0);

/// Latency curves run to the 99.999th percentile (5 nines) at most.
const MAX_NINES: f64 = 5.0;

const STYLE: &str = "body{font:15px/1.45 system-ui,sans-serif;color:#222;max-width:820px;margin:2em auto;padding:0 1em}\
h1{font-size:1.5em;margin-bottom:.2em}h2{font-size:1.15em;margin-top:1.8em}\
.sub{color:#666;margin-top:0}table{border-collapse:collapse;margin:.5em 0}\
td,th{padding:.25em .8em;text-align:right;border-bottom:1px solid #e3e3e3}\
th:first-child,td:first-child{text-align:left}th{font-weight:600}\
.ok{color:#2e7d32;font-weight:600}.bad{color:#c62828;font-weight:600}\
svg{display:block;margin:.4em 0}svg text{font:12px system-ui,sans-serif;fill:#555}\
.legend span{display:inline-block;margin-right:1.2em}.legend i{display:inline-block;width:.9em;height:.9em;margin-right:.35em;vertical-align:-.1em}";

/// The page for a finished run.
pub fn render(report: &Report, recorder: &Recorder, timeline: &Timeline) -> String {
    let outcomes: Vec<Outcome> = Outcome::PURCHASE
        .into_iter()
        .filter(|o| recorder.count(*o) > 0)
        .collect();
    let mut page = String::new();
    let _ = write!(
        page,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>stampede bench {run}</title><style>{STYLE}</style></head><body>\
         <h1>stampede bench flash-sale</h1><p class=\"sub\">run {run} against {target}: \
         {users} customers, stock {stock}, per-user limit {limit}, {mode}</p>",
        run = esc(&report.run_id),
        target = esc(&report.target),
        users = report.users,
        stock = report.stock,
        limit = report.per_user_limit,
        mode = match report.rate {
            Some(rate) => format!(
                "open loop at {rate:.0} req/s, {} connections",
                report.connections
            ),
            None => format!("closed loop, {} connections", report.connections),
        },
    );
    figures(&mut page, report);
    page.push_str("<h2>Throughput over time</h2>");
    legend(&mut page, &outcomes);
    throughput_chart(&mut page, &outcomes, timeline);
    page.push_str("<h2>Latency by percentile</h2>");
    legend(&mut page, &outcomes);
    latency_chart(&mut page, &outcomes, recorder);
    latency_table(&mut page, &outcomes, recorder);
    audit(&mut page, report);
    page.push_str("</body></html>\n");
    page
}

fn figures(page: &mut String, report: &Report) {
    page.push_str("<table>");
    let mut row = |name: &str, value: String| {
        let _ = write!(page, "<tr><td>{name}</td><td>{}</td></tr>", esc(&value));
    };
    if let Some(livez) = report.livez_rps {
        row("GET /livez (the ceiling)", format!("{livez:.0} req/s"));
    }
    row("purchases", format!("{:.0} req/s", report.purchase.rps));
    row(
        "refused purchases",
        format!("{:.0} req/s", report.losing_rps),
    );
    if let Some(ratio) = report.losing_ratio {
        row("refused ÷ livez", format!("{ratio:.3}"));
    }
    row(
        "durable wins",
        format!(
            "{} per second over {:.2} s",
            rate(report.won_per_sec),
            report.won_window_s
        ),
    );
    if let Some(server) = &report.server {
        if let Some(kb) = server.peak_rss_kb {
            row("server peak RSS", format!("{} MB", kb / 1024));
        }
        if let Some(cpu) = report.purchase.server_cpu_us {
            row("server CPU per purchase", format!("{cpu:.1} µs"));
        }
    }
    page.push_str("</table>");
}

fn legend(page: &mut String, outcomes: &[Outcome]) {
    page.push_str("<p class=\"legend\">");
    for outcome in outcomes {
        let _ = write!(
            page,
            "<span><i style=\"background:{}\"></i>{}</span>",
            COLOURS[outcome.index()],
            outcome.name()
        );
    }
    page.push_str("</p>");
}

/// A plot area: maps data coordinates to the SVG's.
struct Plot {
    x: (f64, f64),
    y: (f64, f64),
}

impl Plot {
    fn point(&self, x: f64, y: f64) -> (f64, f64) {
        let (left, right, top, bottom) = MARGIN;
        let fx = (x - self.x.0) / (self.x.1 - self.x.0).max(f64::MIN_POSITIVE);
        let fy = (y - self.y.0) / (self.y.1 - self.y.0).max(f64::MIN_POSITIVE);
        (
            left + fx.clamp(0.0, 1.0) * (WIDTH - left - right),
            HEIGHT - bottom - fy.clamp(0.0, 1.0) * (HEIGHT - top - bottom),
        )
    }

    /// The frame, grid lines and labels: `xs` and `ys` are (value, label).
    fn axes(&self, page: &mut String, xs: &[(f64, String)], ys: &[(f64, String)], x_name: &str) {
        let _ = write!(
            page,
            "<svg viewBox=\"0 0 {WIDTH} {HEIGHT}\" width=\"100%\" role=\"img\">"
        );
        for (value, label) in ys {
            let (x0, y) = self.point(self.x.0, *value);
            let (x1, _) = self.point(self.x.1, *value);
            let _ = write!(
                page,
                "<line x1=\"{x0:.1}\" y1=\"{y:.1}\" x2=\"{x1:.1}\" y2=\"{y:.1}\" stroke=\"#e8e8e8\"/>\
                 <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
                x0 - 6.0,
                y + 4.0,
                esc(label)
            );
        }
        for (value, label) in xs {
            let (x, y0) = self.point(*value, self.y.0);
            let _ = write!(
                page,
                "<line x1=\"{x:.1}\" y1=\"{y0:.1}\" x2=\"{x:.1}\" y2=\"{:.1}\" stroke=\"#ccc\"/>\
                 <text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
                y0 + 5.0,
                y0 + 18.0,
                esc(label)
            );
        }
        let _ = write!(
            page,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            (MARGIN.0 + WIDTH - MARGIN.1) / 2.0,
            HEIGHT - 4.0,
            esc(x_name)
        );
    }

    fn line(&self, page: &mut String, colour: &str, points: &[(f64, f64)]) {
        page.push_str("<polyline fill=\"none\" stroke-width=\"2\" stroke=\"");
        page.push_str(colour);
        page.push_str("\" points=\"");
        for (x, y) in points {
            let (px, py) = self.point(*x, *y);
            let _ = write!(page, "{px:.1},{py:.1} ");
        }
        page.push_str("\"/>");
    }
}

/// About five round steps from 0 to `max`.
fn ticks(max: f64) -> Vec<f64> {
    let raw = (max / 5.0).max(f64::MIN_POSITIVE);
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|step| *step >= raw)
        .unwrap_or(10.0 * magnitude);
    (0..)
        .map(|i| f64::from(i) * step)
        .take_while(|t| *t <= max * 1.0001)
        .collect()
}

fn throughput_chart(page: &mut String, outcomes: &[Outcome], timeline: &Timeline) {
    let series: Vec<(Outcome, Vec<(f64, f64)>)> =
        outcomes.iter().map(|o| (*o, timeline.rates(*o))).collect();
    let end = timeline.samples.last().map_or(1.0, |s| s.secs).max(0.001);
    let top = series
        .iter()
        .flat_map(|(_, points)| points.iter().map(|(_, rate)| *rate))
        .fold(1.0, f64::max)
        * 1.05;
    let plot = Plot {
        x: (0.0, end),
        y: (0.0, top),
    };
    let xs: Vec<(f64, String)> = ticks(end)
        .into_iter()
        .map(|t| (t, format!("{t}s")))
        .collect();
    let ys: Vec<(f64, String)> = ticks(top)
        .into_iter()
        .map(|t| (t, format!("{}/s", rate(t))))
        .collect();
    plot.axes(page, &xs, &ys, "seconds into the purchase phase");
    for (outcome, points) in &series {
        plot.line(page, COLOURS[outcome.index()], points);
    }
    page.push_str("</svg>");
}

fn latency_chart(page: &mut String, outcomes: &[Outcome], recorder: &Recorder) {
    // x: nines of the percentile (0 = p0, 1 = p90, 2 = p99, …); y: log10 ms.
    let mut series = Vec::new();
    for outcome in outcomes {
        let Some(histogram) = recorder.histogram(*outcome) else {
            continue;
        };
        let nines = (histogram.len() as f64).log10().clamp(0.0, MAX_NINES);
        let points: Vec<(f64, f64)> = (0..=(nines * 20.0) as u32)
            .map(|step| {
                let x = f64::from(step) / 20.0;
                let quantile = 1.0 - 10f64.powf(-x);
                let ms = histogram.value_at_quantile(quantile) as f64 / 1_000.0;
                (x, ms.max(0.001).log10())
            })
            .collect();
        series.push((*outcome, points));
    }
    let all = series.iter().flat_map(|(_, p)| p.iter().map(|(_, y)| *y));
    let (low, high) = all.fold((f64::MAX, f64::MIN), |(lo, hi), y| (lo.min(y), hi.max(y)));
    let (low, high) = if low <= high {
        (low.floor(), high.ceil().max(low.floor() + 1.0))
    } else {
        (-1.0, 1.0)
    };
    let right = series
        .iter()
        .flat_map(|(_, p)| p.last().map(|(x, _)| *x))
        .fold(1.0, f64::max)
        .ceil();
    let plot = Plot {
        x: (0.0, right),
        y: (low, high),
    };
    let names = ["p0", "p90", "p99", "p99.9", "p99.99", "p99.999"];
    let xs: Vec<(f64, String)> = (0..=right as usize)
        .map(|n| (n as f64, names.get(n).copied().unwrap_or("").to_owned()))
        .collect();
    let ys: Vec<(f64, String)> = (low as i32..=high as i32)
        .map(|decade| {
            let ms = 10f64.powi(decade);
            let label = if ms >= 1.0 {
                format!("{ms:.0} ms")
            } else {
                format!("{ms} ms")
            };
            (f64::from(decade), label)
        })
        .collect();
    plot.axes(page, &xs, &ys, "percentile (log scale of the tail)");
    for (outcome, points) in &series {
        plot.line(page, COLOURS[outcome.index()], points);
    }
    page.push_str("</svg>");
}

fn latency_table(page: &mut String, outcomes: &[Outcome], recorder: &Recorder) {
    page.push_str(
        "<table><tr><th>outcome</th><th>count</th><th>p50 ms</th><th>p90 ms</th>\
         <th>p99 ms</th><th>p99.9 ms</th><th>max ms</th></tr>",
    );
    for outcome in outcomes {
        let Some(l) = recorder.latency(*outcome) else {
            continue;
        };
        let _ = write!(
            page,
            "<tr><td>{}</td><td>{}</td><td>{:.3}</td><td>{:.3}</td><td>{:.3}</td><td>{:.3}</td><td>{:.3}</td></tr>",
            outcome.name(),
            thousands(l.count),
            l.p50,
            l.p90,
            l.p99,
            l.p999,
            l.max
        );
    }
    page.push_str("</table>");
}

fn audit(page: &mut String, report: &Report) {
    page.push_str("<h2>Audit</h2>");
    match (&report.audit, report.audit_ok) {
        (Some(audit), Some(true)) => {
            let _ = write!(
                page,
                "<p><span class=\"ok\">clean</span>: {}</p>",
                esc(&audit.summary())
            );
        }
        (Some(audit), _) => {
            let _ = write!(
                page,
                "<p><span class=\"bad\">{} violations</span>: {}</p><ul>",
                report.audit_violations.len(),
                esc(&audit.summary())
            );
            for violation in &report.audit_violations {
                let _ = write!(page, "<li>{}</li>", esc(violation));
            }
            page.push_str("</ul>");
        }
        (None, _) => page.push_str("<p>skipped (<code>--no-audit</code>)</p>"),
    }
    if !report.errors.is_empty() {
        page.push_str("<h2>Errors</h2><ul>");
        for (what, n) in &report.errors {
            let _ = write!(page, "<li>{n} × {}</li>", esc(what));
        }
        page.push_str("</ul>");
    }
}

/// Text for HTML, in an element or an attribute.
fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            esc("<a href=\"x\">&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn ticks_are_round_and_cover_the_range() {
        assert_eq!(ticks(10.0), vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
        assert_eq!(ticks(2.3), vec![0.0, 0.5, 1.0, 1.5, 2.0]);
        assert_eq!(ticks(48_000.0).last(), Some(&40_000.0));
    }
}
