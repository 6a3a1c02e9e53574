//! The driver: runs each [`Worker`] on its own task under one tracker and one
//! stop token, and keeps the worker's report.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use metrics::{Counter, Gauge, counter, gauge};
use stampede_domain::time::Timestamp;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{Next, StepError, Worker};
use crate::failure::Chain;

/// What a worker is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerState {
    /// In a step.
    Busy,
    /// Waiting for work.
    Idle,
    /// Waiting after a failed step.
    BackingOff,
    /// Stopped (shutdown).
    Stopped,
}

impl WorkerState {
    const ALL: [Self; 4] = [Self::Busy, Self::Idle, Self::BackingOff, Self::Stopped];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Busy => "busy",
            Self::Idle => "idle",
            Self::BackingOff => "backing_off",
            Self::Stopped => "stopped",
        }
    }
}

/// One worker's record, for operators.
#[derive(Debug, Clone)]
pub struct WorkerReport {
    pub name: String,
    pub state: WorkerState,
    /// Steps finished, successful or not.
    pub steps: u64,
    pub failures: u64,
    /// When the last step finished.
    pub last_run_at: Option<Timestamp>,
    /// The last failure, with its causes, and when it happened (kept after
    /// later successes).
    pub last_error: Option<String>,
    pub last_error_at: Option<Timestamp>,
}

/// A worker's report and its metric handles (resolved once).
struct Status {
    report: Mutex<WorkerReport>,
    ok: Counter,
    failed: Counter,
    last_run: Gauge,
    states: [Gauge; 4],
}

impl Status {
    fn new(name: String) -> Self {
        let state_gauge = |state: WorkerState| gauge!("stampede_worker_state", "worker" => name.clone(), "state" => state.as_str());
        let status = Self {
            ok: counter!("stampede_worker_steps_total", "worker" => name.clone(), "result" => "ok"),
            failed: counter!("stampede_worker_steps_total", "worker" => name.clone(), "result" => "error"),
            last_run: gauge!("stampede_worker_last_run_timestamp_seconds", "worker" => name.clone()),
            states: WorkerState::ALL.map(state_gauge),
            report: Mutex::new(WorkerReport {
                name,
                state: WorkerState::Busy,
                steps: 0,
                failures: 0,
                last_run_at: None,
                last_error: None,
                last_error_at: None,
            }),
        };
        // Every state's series exists from the start, zero but the first.
        status.set(WorkerState::Busy);
        status
    }

    fn report(&self) -> std::sync::MutexGuard<'_, WorkerReport> {
        self.report.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn set(&self, state: WorkerState) {
        self.report().state = state;
        for (gauge, each) in self.states.iter().zip(WorkerState::ALL) {
            gauge.set(if each == state { 1.0 } else { 0.0 });
        }
    }

    fn finished(&self, error: Option<&StepError>) {
        let now = Timestamp::now();
        let mut report = self.report();
        report.steps += 1;
        report.last_run_at = Some(now);
        if let Some(error) = error {
            report.failures += 1;
            report.last_error = Some(Chain(error.as_ref()).to_string());
            report.last_error_at = Some(now);
        }
        drop(report);
        match error {
            Some(_) => self.failed.increment(1),
            None => self.ok.increment(1),
        }
        self.last_run.set(now.as_millis() as f64 / 1000.0);
    }
}

/// Runs the node's background work: every worker, and the one-off tasks
/// (a ledger rebuild, a simulated provider's callback), under one tracker
/// that shutdown waits for.
pub struct Background {
    tasks: TaskSpawner,
    statuses: Mutex<Vec<Arc<Status>>>,
}

/// Spawns tracked tasks that get the stop token; cheap to clone, for the
/// parts that start one-off tasks.
#[derive(Clone, Debug)]
pub struct TaskSpawner {
    tracker: TaskTracker,
    stop: CancellationToken,
}

impl TaskSpawner {
    /// Runs `task` on its own tracked task; it gets the token that shutdown
    /// cancels, and shutdown waits for it.
    pub fn spawn<F>(&self, task: impl FnOnce(CancellationToken) -> F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.tracker.spawn(task(self.stop.clone()));
    }
}

impl Default for Background {
    fn default() -> Self {
        Self::new()
    }
}

impl Background {
    pub fn new() -> Self {
        Self {
            tasks: TaskSpawner {
                tracker: TaskTracker::new(),
                stop: CancellationToken::new(),
            },
            statuses: Mutex::new(Vec::new()),
        }
    }

    /// A handle for one-off tracked tasks.
    pub fn spawner(&self) -> TaskSpawner {
        self.tasks.clone()
    }

    /// Runs `worker` until shutdown.
    pub fn run(&self, worker: impl Worker) {
        let status = Arc::new(Status::new(worker.name()));
        self.statuses
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(status.clone());
        self.tasks.spawn(|stop| drive(worker, status, stop));
    }

    /// Every worker's report, in the order they started.
    pub fn reports(&self) -> Vec<WorkerReport> {
        let statuses = self.statuses.lock().unwrap_or_else(PoisonError::into_inner);
        statuses
            .iter()
            .map(|status| status.report().clone())
            .collect()
    }

    /// Stops every worker and task and waits for them, at most `deadline`;
    /// `false` if some did not stop in time.
    pub async fn stop(&self, deadline: Duration) -> bool {
        self.tasks.stop.cancel();
        self.tasks.tracker.close();
        tokio::time::timeout(deadline, self.tasks.tracker.wait())
            .await
            .is_ok()
    }
}

/// The loop every worker runs on.
async fn drive(mut worker: impl Worker, status: Arc<Status>, stop: CancellationToken) {
    let name = worker.name();
    tracing::debug!(worker = %name, "worker running");
    let mut failures = 0u32;
    while !stop.is_cancelled() {
        status.set(WorkerState::Busy);
        let pause = match worker.step(&stop).await {
            Ok(next) => {
                status.finished(None);
                failures = 0;
                if next == Next::Busy {
                    // Busy steps may find work forever; let others run.
                    tokio::task::yield_now().await;
                    continue;
                }
                status.set(WorkerState::Idle);
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = worker.wait_for_work() => continue,
                }
            }
            Err(error) => {
                status.finished(Some(&error));
                failures = failures.saturating_add(1);
                tracing::warn!(worker = %name, error = %Chain(error.as_ref()), failures, "worker step failed");
                worker.backoff(failures)
            }
        };
        status.set(WorkerState::BackingOff);
        tokio::select! {
            () = stop.cancelled() => break,
            () = tokio::time::sleep(pause) => {}
        }
    }
    worker.finish().await;
    status.set(WorkerState::Stopped);
    tracing::debug!(worker = %name, "worker stopped");
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use async_trait::async_trait;

    use super::*;

    /// Fails its first `fail` steps, then is idle; counts finishes.
    struct Flaky {
        fail: u32,
        steps: Arc<AtomicU32>,
        finished: Arc<AtomicU32>,
    }

    #[derive(Debug, thiserror::Error)]
    #[error("reading the outbox")]
    struct Outer(#[source] std::io::Error);

    #[async_trait]
    impl Worker for Flaky {
        fn name(&self) -> String {
            "flaky".into()
        }

        async fn step(&mut self, _stop: &CancellationToken) -> Result<Next, StepError> {
            let n = self.steps.fetch_add(1, Ordering::SeqCst);
            if n < self.fail {
                return Err(Box::new(Outer(std::io::Error::other("connection reset"))));
            }
            Ok(Next::Idle)
        }

        async fn wait_for_work(&mut self) {
            tokio::time::sleep(Duration::from_secs(60)).await;
        }

        fn backoff(&self, _failures: u32) -> Duration {
            Duration::from_millis(10)
        }

        async fn finish(&mut self) {
            self.finished.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_worker_backs_off_after_failures_reports_them_and_finishes_at_stop() {
        let background = Background::new();
        let steps = Arc::new(AtomicU32::new(0));
        let finished = Arc::new(AtomicU32::new(0));
        background.run(Flaky {
            fail: 2,
            steps: steps.clone(),
            finished: finished.clone(),
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        let report = &background.reports()[0];
        assert_eq!(report.name, "flaky");
        assert_eq!((report.steps, report.failures), (3, 2));
        assert_eq!(report.state, WorkerState::Idle);
        assert_eq!(
            report.last_error.as_deref(),
            Some("reading the outbox: connection reset")
        );
        assert!(report.last_run_at.is_some());

        assert!(background.stop(Duration::from_secs(5)).await);
        assert_eq!(finished.load(Ordering::SeqCst), 1);
        assert_eq!(background.reports()[0].state, WorkerState::Stopped);
    }

    #[tokio::test(start_paused = true)]
    async fn one_off_tasks_get_the_stop_token_and_are_waited_for() {
        let background = Background::new();
        let done = Arc::new(AtomicU32::new(0));
        let seen = done.clone();
        background.spawner().spawn(|stop| async move {
            stop.cancelled().await;
            seen.fetch_add(1, Ordering::SeqCst);
        });
        assert!(background.stop(Duration::from_secs(5)).await);
        assert_eq!(done.load(Ordering::SeqCst), 1);
    }
}
