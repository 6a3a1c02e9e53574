//! Counts per outcome sampled through a phase, for the report's throughput
//! over time. Reads only the counters (not the histograms) a few times a
//! second, so sampling costs the generator next to nothing.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

use crate::outcome::Outcome;

/// How often the counts are read.
const EVERY: Duration = Duration::from_millis(250);

/// Cumulative counts per outcome (indexed by [`Outcome::index`]) at a time
/// since the phase started.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub secs: f64,
    pub counts: [u64; Outcome::COUNT],
}

/// A phase's samples, oldest first, starting at zero.
#[derive(Debug, Clone, Default)]
pub struct Timeline {
    pub samples: Vec<Sample>,
}

impl Timeline {
    /// Requests per second of `outcome` between consecutive samples, at each
    /// interval's end.
    pub fn rates(&self, outcome: Outcome) -> Vec<(f64, f64)> {
        let i = outcome.index();
        self.samples
            .windows(2)
            .filter(|pair| pair[1].secs > pair[0].secs)
            .map(|pair| {
                let n = pair[1].counts[i].saturating_sub(pair[0].counts[i]);
                (pair[1].secs, n as f64 / (pair[1].secs - pair[0].secs))
            })
            .collect()
    }
}

/// Samples `counts` until [`Sampler::finish`].
pub(crate) struct Sampler {
    started: Instant,
    samples: Arc<Mutex<Vec<Sample>>>,
    task: JoinHandle<()>,
}

impl Sampler {
    pub(crate) fn start(
        started: Instant,
        counts: impl Fn() -> [u64; Outcome::COUNT] + Send + 'static,
    ) -> Self {
        let samples = Arc::new(Mutex::new(vec![Sample {
            secs: 0.0,
            counts: [0; Outcome::COUNT],
        }]));
        let written = samples.clone();
        let task = tokio::spawn(async move {
            let mut ticker = tokio::time::interval_at((started + EVERY).into(), EVERY);
            loop {
                ticker.tick().await;
                let sample = Sample {
                    secs: started.elapsed().as_secs_f64(),
                    counts: counts(),
                };
                written
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(sample);
            }
        });
        Self {
            started,
            samples,
            task,
        }
    }

    /// Stops sampling; the last sample is `last` at `ended`.
    pub(crate) fn finish(self, ended: Instant, last: [u64; Outcome::COUNT]) -> Timeline {
        self.task.abort();
        let mut samples =
            std::mem::take(&mut *self.samples.lock().unwrap_or_else(PoisonError::into_inner));
        let secs = ended.duration_since(self.started).as_secs_f64();
        samples.retain(|s| s.secs < secs);
        samples.push(Sample { secs, counts: last });
        Timeline { samples }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_counts_per_second_between_samples() {
        let at = |secs: f64, won: u64| {
            let mut counts = [0; Outcome::COUNT];
            counts[Outcome::Won.index()] = won;
            Sample { secs, counts }
        };
        let timeline = Timeline {
            samples: vec![at(0.0, 0), at(0.5, 100), at(1.0, 100), at(2.0, 400)],
        };
        assert_eq!(
            timeline.rates(Outcome::Won),
            vec![(0.5, 200.0), (1.0, 0.0), (2.0, 300.0)]
        );
        assert!(
            timeline
                .rates(Outcome::SoldOut)
                .iter()
                .all(|(_, r)| *r == 0.0)
        );
    }
}
