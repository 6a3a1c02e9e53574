//! How fast one node lets a sale's line in: a window, like TCP's. The node
//! keeps at most `window` admitted buyers who have not bought yet, so each
//! purchase answered makes room for one more and the line moves exactly as
//! fast as the purchase path drains it. A holder who never comes back stops
//! counting after [`ADMITTED_COUNTS_FOR`].
//!
//! The window itself follows the node's live adaptive in-flight limit, as
//! TCP's follows the path: it grows while the window is what holds the
//! line back and the purchase path has room (requests in flight under half
//! the limit), and shrinks by a tenth whenever the path is near its limit.
//! Holders spend most of their turn away (polling, paying attention), so
//! the window is larger than the in-flight limit, by as much as the path
//! bears.
//!
//! The drain rate the room tells clients is measured on the book's shared
//! count of purchases answered, over the last [`RATE_OVER`], so it is the
//! whole cluster's.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

/// How long an admitted ticket counts against the window if its holder
/// does not buy.
pub const ADMITTED_COUNTS_FOR: Duration = Duration::from_secs(10);

/// The span the drain rate is measured over.
pub const RATE_OVER: Duration = Duration::from_secs(2);

/// The smallest and the largest window.
pub const MIN_WINDOW: u64 = 8;
pub const MAX_WINDOW: u64 = 100_000;

#[derive(Debug)]
pub(crate) struct Pace {
    /// Admitted and not served this node lets be at once.
    window: u64,
    /// Per step that admitted someone: when, and how many of those it
    /// admitted have not been served. Purchases served are taken from the
    /// oldest first (holders buy about in the order they were let in).
    steps: VecDeque<Step>,
    /// `(when, the book's served count)`, over [`RATE_OVER`].
    served: VecDeque<(Instant, u64)>,
}

impl Pace {
    pub fn new(window: u64) -> Self {
        Self {
            window: window.clamp(MIN_WINDOW, MAX_WINDOW),
            steps: VecDeque::new(),
            served: VecDeque::new(),
        }
    }
}

#[derive(Debug)]
struct Step {
    at: Instant,
    unserved: u64,
}

impl Pace {
    /// Admitted by this node and not served yet, over the last
    /// [`ADMITTED_COUNTS_FOR`].
    pub fn outstanding(&mut self, now: Instant) -> u64 {
        while self
            .steps
            .front()
            .is_some_and(|step| now.duration_since(step.at) > ADMITTED_COUNTS_FOR)
        {
            self.steps.pop_front();
        }
        self.steps.iter().map(|s| s.unserved).sum()
    }

    /// How many more to admit now.
    pub fn room(&mut self, now: Instant) -> u64 {
        self.window.saturating_sub(self.outstanding(now))
    }

    pub fn window(&self) -> u64 {
        self.window
    }

    /// Moves the window by the purchase path's load: `in_flight` requests
    /// of at most `limit`.
    pub fn adjust(&mut self, now: Instant, in_flight: u32, limit: u32) {
        let (in_flight, limit) = (u64::from(in_flight), u64::from(limit.max(1)));
        if in_flight * 10 >= limit * 9 {
            self.window = (self.window * 9 / 10).max(MIN_WINDOW);
        } else if in_flight * 2 < limit && self.outstanding(now) * 10 >= self.window * 9 {
            self.window = (self.window + (self.window / 8).max(MIN_WINDOW)).min(MAX_WINDOW);
        }
    }

    /// Purchases of admitted holders answered here since the last step:
    /// taken from the oldest admissions first.
    pub fn serve(&mut self, served: u64) {
        let mut served = served;
        while let Some(oldest) = self.steps.front_mut() {
            let taken = oldest.unserved.min(served);
            oldest.unserved -= taken;
            served -= taken;
            if oldest.unserved > 0 {
                break;
            }
            self.steps.pop_front();
        }
        // What is left was served to holders no longer counted: nothing to
        // take it from.
    }

    /// A step's result: `admitted` by this node, and the book's served
    /// count across the cluster.
    pub fn record(&mut self, now: Instant, admitted: u64, served_total: u64) {
        if admitted > 0 {
            self.steps.push_back(Step {
                at: now,
                unserved: admitted,
            });
        }
        self.served.push_back((now, served_total));
        while self.served.len() > 2
            && self
                .served
                .get(1)
                .is_some_and(|(at, _)| now.duration_since(*at) >= RATE_OVER)
        {
            self.served.pop_front();
        }
    }

    /// Purchases answered per second across the cluster, over the last
    /// [`RATE_OVER`]; 0 until half of it is known: the first hundreds of
    /// milliseconds of a sale are its admitted buyers' first asks, and a
    /// rate taken then would tell the rest of the line to sleep.
    pub fn rate(&self) -> f64 {
        match (self.served.front(), self.served.back()) {
            (Some((from, first)), Some((to, last))) if *to >= *from + RATE_OVER / 2 => {
                last.saturating_sub(*first) as f64 / to.duration_since(*from).as_secs_f64()
            }
            _ => 0.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_fills_then_moves_with_each_purchase_served() {
        let start = Instant::now();
        let mut pace = Pace::new(100);
        assert_eq!(pace.room(start), 100);
        pace.record(start, 100, 0);
        assert_eq!(pace.room(start), 0, "full");
        let later = start + Duration::from_millis(100);
        pace.serve(30);
        assert_eq!(pace.room(later), 30);
    }

    #[test]
    fn the_window_stays_full_however_long_the_sale_runs() {
        let start = Instant::now();
        let mut pace = Pace::new(100);
        pace.record(start, 100, 0);
        // A minute at 30 served and 30 admitted a step: always 100 out.
        for step in 1..=600u64 {
            let now = start + Duration::from_millis(step * 100);
            assert_eq!(pace.room(now), 0, "step {step}");
            pace.serve(30);
            assert_eq!(pace.room(now), 30, "step {step}");
            pace.record(now, 30, step * 30);
        }
    }

    #[test]
    fn the_window_grows_while_the_path_has_room_and_shrinks_near_its_limit() {
        let now = Instant::now();
        let mut pace = Pace::new(64);
        // Not full: the window is not what holds the line back.
        pace.adjust(now, 0, 100);
        assert_eq!(pace.window(), 64);
        pace.record(now, 64, 0);
        pace.adjust(now, 10, 100);
        assert_eq!(pace.window(), 72, "full, and the path idle: grows");
        pace.adjust(now, 60, 100);
        assert_eq!(pace.window(), 72, "half busy: holds");
        pace.adjust(now, 95, 100);
        assert_eq!(pace.window(), 64, "near the limit: shrinks");
        for _ in 0..100 {
            pace.adjust(now, 100, 100);
        }
        assert_eq!(pace.window(), MIN_WINDOW);
    }

    #[test]
    fn holders_who_never_buy_stop_counting() {
        let start = Instant::now();
        let mut pace = Pace::new(100);
        pace.record(start, 100, 0);
        let after = start + ADMITTED_COUNTS_FOR + Duration::from_millis(1);
        assert_eq!(pace.room(after), 100);
    }

    #[test]
    fn the_rate_is_the_served_count_over_the_last_two_seconds() {
        let start = Instant::now();
        let mut pace = Pace::new(100);
        assert_eq!(pace.rate(), 0.0);
        pace.record(start, 0, 0);
        pace.record(start + Duration::from_millis(900), 0, 900);
        assert_eq!(pace.rate(), 0.0, "under a second: not measured yet");
        let mut pace = Pace::new(100);
        for step in 0..=50u64 {
            // 100 a second for 3 s, then 400 a second.
            let served = if step <= 30 {
                step * 10
            } else {
                300 + (step - 30) * 40
            };
            pace.record(start + Duration::from_millis(step * 100), 0, served);
        }
        assert!((pace.rate() - 400.0).abs() < 1.0, "{}", pace.rate());
    }
}
