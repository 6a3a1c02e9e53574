//! Helpers for this crate's tests: a metrics recorder that remembers every
//! counter and gauge, so tests can read what a component reported.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};

/// Remembers every counter and gauge by name and labels, as
/// `name{label=value,…}` in registration order.
#[derive(Default)]
pub(crate) struct TestRecorder {
    values: Mutex<HashMap<String, Arc<AtomicU64>>>,
}

impl TestRecorder {
    fn handle(&self, key: &Key) -> Arc<AtomicU64> {
        let labels: Vec<_> = key
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        let id = format!("{}{{{}}}", key.name(), labels.join(","));
        self.values.lock().unwrap().entry(id).or_default().clone()
    }

    /// A counter's value; 0 if it was never registered.
    pub(crate) fn read(&self, id: &str) -> u64 {
        self.values
            .lock()
            .unwrap()
            .get(id)
            .map_or(0, |v| v.load(Ordering::Acquire))
    }

    /// A gauge's value; 0 if it was never registered.
    pub(crate) fn gauge(&self, id: &str) -> f64 {
        f64::from_bits(self.read(id))
    }
}

impl Recorder for TestRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(self.handle(key))
    }
    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(self.handle(key))
    }
    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

/// Runs `make` with a fresh recorder installed, so the metric handles it
/// creates report to the recorder returned.
pub(crate) fn recorded<T>(make: impl FnOnce() -> T) -> (T, Arc<TestRecorder>) {
    let recorder = Arc::new(TestRecorder::default());
    let made = metrics::with_local_recorder(&*recorder, make);
    (made, recorder)
}
