//! Whether a request should join an internal queue at all: only if its
//! predicted wait plus its own service time fits what is left of its
//! deadline ([`crate::deadline`]). A request that cannot make it is refused
//! at once, before it takes a place that someone who can make it would
//! have had, and before it does the work that its caller will never see
//! (the load-shedding rule of the Google SRE book's "Handling Overload":
//! reject early rather than time out late).
//!
//! The prediction comes from what the queue was measured to do: an
//! exponentially weighted average of the time one item takes (the drain
//! rate, per lane) and of the time one service takes (a batch, or one
//! call). With `ahead` items queued and `lanes` servers, the wait is
//! `ahead × item / lanes`, and the request is served within
//! `wait + service`. The averages move by 1/8 of each new sample, so a
//! slowing store is seen within a few batches. Before the first sample the
//! prediction is the `initial` service time given at construction.
//!
//! Without a deadline in scope nothing is refused: background work has
//! its own bounds.
//!
//! Metric: `stampede_queue_refused_total{queue}`, the requests refused for
//! their deadline.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use metrics::{Counter, counter};

use crate::deadline;

/// A request whose deadline is shorter than its predicted time in the
/// queue: refuse it now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("predicted {predicted:?} in the queue, {remaining:?} left of the deadline")]
pub struct Late {
    pub predicted: Duration,
    pub remaining: Duration,
}

/// See the [module documentation](self).
#[derive(Debug)]
pub struct QueueBudget {
    lanes: u64,
    /// Nanoseconds, averaged.
    item_ns: AtomicU64,
    service_ns: AtomicU64,
    refused: Counter,
}

/// The weight of a new sample: 1/8.
const SHIFT: u32 = 3;

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// Moves `average` by 1/8 of the way to `sample`. Racing updates may lose
/// one sample; an estimate does not need them all.
fn blend(average: &AtomicU64, sample: u64) {
    let old = average.load(Ordering::Relaxed);
    let new = if sample >= old {
        old + ((sample - old) >> SHIFT)
    } else {
        old - ((old - sample) >> SHIFT)
    };
    average.store(new, Ordering::Relaxed);
}

impl QueueBudget {
    /// A queue named `name` with `lanes` servers whose service takes about
    /// `initial` until measured.
    pub fn new(name: &'static str, lanes: usize, initial: Duration) -> Self {
        let initial = nanos(initial);
        Self {
            lanes: u64::try_from(lanes.max(1)).unwrap_or(u64::MAX),
            item_ns: AtomicU64::new(initial),
            service_ns: AtomicU64::new(initial),
            refused: counter!("stampede_queue_refused_total", "queue" => name),
        }
    }

    /// One service of `items` items (a batch, or 1) that took `took`.
    pub fn record(&self, items: usize, took: Duration) {
        let took = nanos(took);
        let items = u64::try_from(items.max(1)).unwrap_or(u64::MAX);
        blend(&self.item_ns, took / items);
        blend(&self.service_ns, took);
    }

    /// The time a request joining behind `ahead` items takes to be served.
    pub fn predicted(&self, ahead: usize) -> Duration {
        let ahead = u64::try_from(ahead).unwrap_or(u64::MAX);
        let item = self.item_ns.load(Ordering::Relaxed);
        let wait = ahead.saturating_mul(item) / self.lanes;
        Duration::from_nanos(wait.saturating_add(self.service_ns.load(Ordering::Relaxed)))
    }

    /// Whether a request joining behind `ahead` items can be served within
    /// the deadline in scope; a refusal is counted.
    pub fn admit(&self, ahead: usize) -> Result<(), Late> {
        let Some(deadline) = deadline::current() else {
            return Ok(());
        };
        self.admit_within(ahead, deadline.remaining())
    }

    /// [`admit`](Self::admit) with `remaining` of a deadline given.
    pub fn admit_within(&self, ahead: usize, remaining: Duration) -> Result<(), Late> {
        let predicted = self.predicted(ahead);
        if predicted <= remaining {
            return Ok(());
        }
        self.refused.increment(1);
        Err(Late {
            predicted,
            remaining,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deadline::Deadline;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn the_prediction_is_the_queue_ahead_drained_by_every_lane_plus_one_service() {
        let budget = QueueBudget::new("test", 2, 10 * MS);
        assert_eq!(budget.predicted(0), 10 * MS);
        // Each item 10 ms, two lanes: 4 ahead drain in 20 ms.
        assert_eq!(budget.predicted(4), 30 * MS);
        assert!(budget.admit_within(4, 30 * MS).is_ok());
        let late = budget.admit_within(4, 29 * MS).unwrap_err();
        assert_eq!(late.predicted, 30 * MS);
    }

    #[test]
    fn measured_batches_move_the_prediction_an_eighth_at_a_time() {
        let budget = QueueBudget::new("test", 1, 8 * MS);
        // A batch of 8 in 16 ms: 2 ms an item, 16 ms a service.
        budget.record(8, 16 * MS);
        assert_eq!(
            budget.item_ns.load(Ordering::Relaxed),
            nanos(8 * MS - 6 * MS / 8)
        );
        assert_eq!(budget.service_ns.load(Ordering::Relaxed), nanos(9 * MS));
        for _ in 0..200 {
            budget.record(8, 16 * MS);
        }
        let predicted = budget.predicted(100);
        // Converged to 100 × 2 ms + 16 ms, within rounding.
        assert!(
            predicted.abs_diff(216 * MS) < MS,
            "{predicted:?} after 200 batches"
        );
    }

    #[tokio::test]
    async fn only_a_deadline_in_scope_refuses() {
        let budget = QueueBudget::new("test", 1, Duration::from_secs(1));
        assert!(budget.admit(10).is_ok(), "no deadline, no refusal");
        let short = Deadline::after(100 * MS);
        let refused = deadline::scope(short, async { budget.admit(0) }).await;
        assert!(refused.is_err(), "a second of service does not fit 100 ms");
        let long = Deadline::after(Duration::from_secs(60));
        let admitted = deadline::scope(long, async { budget.admit(10) }).await;
        assert!(admitted.is_ok());
    }
}
