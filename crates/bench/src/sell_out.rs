//! The sell-out as the crowd saw it: the first `sold-out` answer, and the
//! requests in flight at that moment (sent before it, answered after) that
//! did not win. Their wait past it is time spent on stock that was already
//! gone, the figure of the `crowd-100x-stock` scenario. (Winners still
//! committing then are not counted: their wait is their commit's.)

use std::time::Instant;

/// A purchase's (sent, answered, won).
pub(crate) type Span = (Instant, Instant, bool);

/// What a connection saw of the sell-out: its first `sold-out` answer, and
/// its last purchases up to it.
pub(crate) type SellOutView = (Option<Instant>, Vec<Span>);

/// See the [module documentation](self).
#[derive(Debug, Clone, serde::Serialize)]
pub struct SellOut {
    /// Seconds from the phase's start to the first `sold-out` answer.
    pub at_s: f64,
    /// Requests in flight then that did not win.
    pub in_flight: usize,
    /// How long after the sell-out those requests were answered.
    pub waited_p50_ms: f64,
    pub waited_p99_ms: f64,
    pub waited_max_ms: f64,
}

impl SellOut {
    /// From each connection's last requests up to its first `sold-out`.
    pub(crate) fn measure(start: Instant, conns: &[SellOutView]) -> Option<Self> {
        let at = conns.iter().filter_map(|(first, _)| *first).min()?;
        let mut waited: Vec<f64> = conns
            .iter()
            .flat_map(|(_, recent)| recent)
            .filter(|(sent, done, won)| *sent <= at && *done >= at && !won)
            .map(|(_, done, _)| done.duration_since(at).as_secs_f64() * 1000.0)
            .collect();
        waited.sort_by(f64::total_cmp);
        let pick = |q: f64| {
            let i = ((waited.len() as f64 * q).ceil() as usize).clamp(1, waited.len().max(1)) - 1;
            waited
                .get(i)
                .map_or(0.0, |ms| (ms * 1000.0).round() / 1000.0)
        };
        Some(Self {
            at_s: at.duration_since(start).as_secs_f64(),
            in_flight: waited.len(),
            waited_p50_ms: pick(0.5),
            waited_p99_ms: pick(0.99),
            waited_max_ms: pick(1.0),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn the_sell_out_is_the_first_sold_out_and_counts_only_the_requests_in_flight_then() {
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let conns: Vec<SellOutView> = vec![
            // Sold out at 100 ms; its request was sent at 90.
            (
                Some(at(100)),
                vec![(at(10), at(50), false), (at(90), at(100), false)],
            ),
            // In flight at 100 (sent 95), answered at 130: 30 ms on stock gone.
            (
                Some(at(140)),
                vec![(at(95), at(130), false), (at(135), at(140), false)],
            ),
            // Sent after the sell-out: not in flight then.
            (Some(at(160)), vec![(at(120), at(160), false)]),
            // A winner still committing at 100: its wait is its commit's.
            (
                Some(at(170)),
                vec![(at(99), at(150), true), (at(150), at(170), false)],
            ),
            // Never saw one.
            (None, vec![(at(5), at(7), false)]),
        ];
        let sold = SellOut::measure(start, &conns).unwrap();
        assert!((sold.at_s - 0.1).abs() < 1e-9);
        assert_eq!(sold.in_flight, 2);
        assert_eq!(sold.waited_max_ms, 30.0);
        assert_eq!(sold.waited_p50_ms, 0.0);
        assert!(SellOut::measure(start, &[(None, Vec::new())]).is_none());
    }
}
