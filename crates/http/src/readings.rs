//! What the live sale page shows (`GET /api/v1/admin/live`), read from the
//! node's own Prometheus exposition: one source for the page and for
//! Prometheus, and nothing added to the purchase path. Counters become rates
//! by the difference between two readings; the purchase latency's
//! percentiles come from its histogram's buckets, as `histogram_quantile`
//! computes them.

use std::collections::BTreeMap;
use std::time::Instant;

use serde::Serialize;
use utoipa::ToSchema;

/// One sample line of the exposition: name, labels, value.
#[derive(Debug, Clone, PartialEq)]
struct Sample {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
}

impl Sample {
    fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// The samples of a Prometheus text exposition (comments and lines it
/// cannot read are skipped).
fn parse(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(parse_line)
        .collect()
}

fn parse_line(line: &str) -> Option<Sample> {
    let line = line.trim();
    let (name_and_labels, value) = line.rsplit_once(' ')?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    let Some((name, rest)) = name_and_labels.split_once('{') else {
        return Some(Sample {
            name: name_and_labels.to_owned(),
            labels: Vec::new(),
            value,
        });
    };
    let mut labels = Vec::new();
    let mut chars = rest.strip_suffix('}')?.chars().peekable();
    loop {
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            break;
        }
        if chars.next() != Some('"') {
            return None;
        }
        let mut value = String::new();
        loop {
            match chars.next()? {
                '\\' => match chars.next()? {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                '"' => break,
                c => value.push(c),
            }
        }
        labels.push((key.trim_start_matches(',').to_owned(), value));
        if chars.peek() == Some(&',') {
            chars.next();
        }
    }
    Some(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// What one reading of the exposition holds that the page shows.
#[derive(Debug, Clone)]
pub struct Reading {
    at: Instant,
    purchases: BTreeMap<String, f64>,
    /// The purchase route's latency buckets, summed over statuses: (upper
    /// bound in seconds, cumulative count).
    latency: Vec<(f64, f64)>,
    rate_limits: BTreeMap<String, f64>,
    queue_depth: f64,
    concurrency_limit: f64,
    in_flight: f64,
    breakers: BTreeMap<String, f64>,
}

impl Reading {
    /// Reads `exposition`, rendered at `at`, for the route `purchase_route`.
    pub fn of(exposition: &str, at: Instant, purchase_route: &str) -> Self {
        let mut reading = Self {
            at,
            purchases: BTreeMap::new(),
            latency: Vec::new(),
            rate_limits: BTreeMap::new(),
            queue_depth: 0.0,
            concurrency_limit: 0.0,
            in_flight: 0.0,
            breakers: BTreeMap::new(),
        };
        let mut buckets: BTreeMap<u64, (f64, f64)> = BTreeMap::new();
        for sample in parse(exposition) {
            match sample.name.as_str() {
                "stampede_purchases_total" => {
                    if let Some(outcome) = sample.label("outcome") {
                        *reading.purchases.entry(outcome.to_owned()).or_default() += sample.value;
                    }
                }
                "stampede_http_request_duration_seconds_bucket"
                    if sample.label("route") == Some(purchase_route) =>
                {
                    let Some(le) = sample.label("le").and_then(|le| match le {
                        "+Inf" => Some(f64::INFINITY),
                        le => le.parse::<f64>().ok(),
                    }) else {
                        continue;
                    };
                    // Keyed by the bound's bits: the same bound in every status.
                    buckets.entry(le.to_bits()).or_insert((le, 0.0)).1 += sample.value;
                }
                "stampede_ratelimit_decisions_total" => {
                    let key = format!(
                        "{} {}",
                        sample.label("limiter").unwrap_or("?"),
                        sample.label("decision").unwrap_or("?")
                    );
                    *reading.rate_limits.entry(key).or_default() += sample.value;
                }
                "stampede_commit_queue_depth" => reading.queue_depth += sample.value,
                "stampede_concurrency_limit" => reading.concurrency_limit += sample.value,
                "stampede_concurrency_in_flight" => reading.in_flight += sample.value,
                "stampede_breaker_state" => {
                    if let Some(breaker) = sample.label("breaker") {
                        reading.breakers.insert(breaker.to_owned(), sample.value);
                    }
                }
                _ => {}
            }
        }
        reading.latency = buckets.into_values().collect();
        reading
            .latency
            .sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal));
        reading
    }

    /// The page's view: totals now, and rates and latency since `before`
    /// (since the start when there is none).
    pub fn view(&self, before: Option<&Reading>, sales: Vec<LiveSale>, at: String) -> LiveBody {
        let secs = before.map_or(0.0, |b| self.at.duration_since(b.at).as_secs_f64());
        let rate = |now: &BTreeMap<String, f64>, then: Option<&BTreeMap<String, f64>>| {
            now.iter()
                .map(|(key, value)| {
                    let earlier = then.and_then(|t| t.get(key)).copied().unwrap_or(0.0);
                    let per_sec = if secs > 0.0 {
                        ((value - earlier).max(0.0) / secs * 10.0).round() / 10.0
                    } else {
                        0.0
                    };
                    (key.clone(), per_sec)
                })
                .collect::<BTreeMap<_, _>>()
        };
        let latency: Vec<(f64, f64)> = match before {
            Some(before) => self
                .latency
                .iter()
                .map(|(le, count)| {
                    let earlier = before
                        .latency
                        .iter()
                        .find(|(l, _)| l == le)
                        .map_or(0.0, |(_, c)| *c);
                    (*le, (count - earlier).max(0.0))
                })
                .collect(),
            None => self.latency.clone(),
        };
        let ms = |q: f64| quantile(q, &latency).map(|s| (s * 1e6).round() / 1e3);
        LiveBody {
            at,
            sales,
            purchases: self
                .purchases
                .iter()
                .map(|(k, v)| (k.clone(), *v as u64))
                .collect(),
            purchases_per_sec: rate(&self.purchases, before.map(|b| &b.purchases)),
            purchase_latency_ms: ms(0.5)
                .zip(ms(0.99))
                .map(|(p50, p99)| Percentiles { p50, p99 }),
            rate_limits_per_sec: rate(&self.rate_limits, before.map(|b| &b.rate_limits)),
            commit_queue_depth: self.queue_depth as u64,
            concurrency_limit: self.concurrency_limit as u64,
            in_flight: self.in_flight as u64,
            breakers: self
                .breakers
                .iter()
                .map(|(name, state)| {
                    let state = match *state as u8 {
                        0 => "closed",
                        1 => "open",
                        _ => "half-open",
                    };
                    (name.clone(), state)
                })
                .collect(),
        }
    }
}

/// The `q` quantile of cumulative `buckets` (upper bound, count), linear
/// within a bucket as Prometheus's `histogram_quantile`; `None` when empty.
fn quantile(q: f64, buckets: &[(f64, f64)]) -> Option<f64> {
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut lower = (0.0, 0.0);
    for (le, count) in buckets {
        if *count >= rank {
            if le.is_infinite() {
                return Some(lower.0);
            }
            let within = (rank - lower.1) / (count - lower.1).max(f64::MIN_POSITIVE);
            return Some(lower.0 + (le - lower.0) * within);
        }
        lower = (*le, *count);
    }
    Some(lower.0)
}

/// `GET /api/v1/admin/live`: the node's sales and the crowd, now.
#[derive(Debug, Serialize, ToSchema)]
pub struct LiveBody {
    /// When the figures were read (RFC 3339).
    pub at: String,
    /// Live sales (not ended) and the units left in each.
    pub sales: Vec<LiveSale>,
    /// Purchases by outcome since the node started.
    pub purchases: BTreeMap<String, u64>,
    /// Purchases per second by outcome, over the last interval of a stream
    /// (zero in a single reading).
    pub purchases_per_sec: BTreeMap<String, f64>,
    /// The purchase route's latency at the server over the last interval of
    /// a stream (since the start in a single reading); absent without
    /// purchases.
    pub purchase_latency_ms: Option<Percentiles>,
    /// Rate-limit decisions per second, by `"<limiter> <decision>"`.
    pub rate_limits_per_sec: BTreeMap<String, f64>,
    /// Won orders waiting for a commit.
    pub commit_queue_depth: u64,
    /// The adaptive concurrency limit and the requests in flight under it.
    pub concurrency_limit: u64,
    pub in_flight: u64,
    /// Each dependency's circuit breaker: `closed`, `open` or `half-open`.
    pub breakers: BTreeMap<String, &'static str>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LiveSale {
    pub id: String,
    /// Units the sale started with.
    pub quantity: u64,
    /// Units not yet taken.
    pub remaining: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Percentiles {
    pub p50: f64,
    pub p99: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROUTE: &str = "/api/v1/sales/{id}/purchase";

    fn exposition(won: u64, sold_out: u64, fast: u64, slow: u64) -> String {
        format!(
            "# TYPE stampede_purchases_total counter\n\
             stampede_purchases_total{{outcome=\"won\"}} {won}\n\
             stampede_purchases_total{{outcome=\"sold_out\"}} {sold_out}\n\
             stampede_http_request_duration_seconds_bucket{{method=\"POST\",route=\"{ROUTE}\",status=\"202\",le=\"0.001\"}} {fast}\n\
             stampede_http_request_duration_seconds_bucket{{method=\"POST\",route=\"{ROUTE}\",status=\"202\",le=\"0.01\"}} {}\n\
             stampede_http_request_duration_seconds_bucket{{method=\"POST\",route=\"{ROUTE}\",status=\"202\",le=\"+Inf\"}} {}\n\
             stampede_http_request_duration_seconds_bucket{{method=\"GET\",route=\"/livez\",status=\"200\",le=\"+Inf\"}} 999\n\
             stampede_breaker_state{{breaker=\"redis_ledger\"}} 1\n\
             stampede_breaker_state{{breaker=\"database_write\"}} 0\n\
             stampede_commit_queue_depth 7\n\
             stampede_ratelimit_decisions_total{{limiter=\"purchase\",decision=\"allowed\"}} {won}\n",
            fast + slow,
            fast + slow
        )
    }

    #[test]
    fn labels_with_escapes_are_read() {
        let sample = parse_line(r#"m{a="x\"y",b="1,2",c="\\"} 3.5"#).unwrap();
        assert_eq!(sample.name, "m");
        assert_eq!(sample.label("a"), Some("x\"y"));
        assert_eq!(sample.label("b"), Some("1,2"));
        assert_eq!(sample.label("c"), Some("\\"));
        assert_eq!(sample.value, 3.5);
        assert_eq!(parse_line("plain 2").unwrap().value, 2.0);
        assert_eq!(parse_line("garbage"), None);
    }

    #[test]
    fn rates_and_percentiles_cover_the_interval_between_readings() {
        let start = Instant::now();
        let before = Reading::of(&exposition(100, 0, 100, 0), start, ROUTE);
        let later = start + std::time::Duration::from_secs(2);
        // In two seconds: 200 more wins and 1,000 refusals; of the 1,200 new
        // purchase answers 600 under 1 ms and 600 between 1 and 10 ms.
        let now = Reading::of(&exposition(300, 1_000, 700, 600), later, ROUTE);
        let view = now.view(Some(&before), Vec::new(), "t".into());
        assert_eq!(view.purchases["won"], 300);
        assert_eq!(view.purchases_per_sec["won"], 100.0);
        assert_eq!(view.purchases_per_sec["sold_out"], 500.0);
        assert_eq!(view.rate_limits_per_sec["purchase allowed"], 100.0);
        let latency = view.purchase_latency_ms.unwrap();
        assert_eq!(latency.p50, 1.0);
        assert!((9.0..=10.0).contains(&latency.p99), "{latency:?}");
        assert_eq!(view.breakers["redis_ledger"], "open");
        assert_eq!(view.breakers["database_write"], "closed");
        assert_eq!(view.commit_queue_depth, 7);
        // A single reading: totals, no rates.
        let single = now.view(None, Vec::new(), "t".into());
        assert_eq!(single.purchases_per_sec["won"], 0.0);
    }

    #[test]
    fn quantiles_interpolate_within_a_bucket() {
        let buckets = [(0.1, 50.0), (0.2, 100.0), (f64::INFINITY, 100.0)];
        assert_eq!(quantile(0.5, &buckets), Some(0.1));
        assert!((quantile(0.75, &buckets).unwrap() - 0.15).abs() < 1e-9);
        assert_eq!(quantile(0.5, &[(0.1, 0.0)]), None);
        assert_eq!(quantile(0.5, &[]), None);
    }
}
