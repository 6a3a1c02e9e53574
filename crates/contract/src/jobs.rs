//! The [`JobQueue`] contract. Each function is one behaviour, given an empty
//! queue whose lease is [`JobsFixture::lease`] (short: a second or so);
//! names read as sentences. Waits are generous deadlines that only bound a
//! failure; the one timing that is checked is that a job never comes before
//! its time.
//!
//! An adapter runs the suite with
//! [`jobs_contract_tests!`](crate::jobs_contract_tests):
//!
//! ```ignore
//! // crates/bus-nats/tests/jobs_contract.rs
//! stampede_contract::jobs_contract_tests!(fresh_queue());
//! ```
//!
//! where `fresh_queue()` is a future of `Option<impl JobsFixture>`: `None`
//! skips the test, and the fixture's teardown runs after the behaviour, even
//! when it failed.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use stampede_app::ports::{Job, JobQueue};
use stampede_trace::TraceParent;

/// The kind most behaviours use.
const KIND: &str = "contract";
/// Longest wait for something that must happen.
const PATIENCE: Duration = Duration::from_secs(10);
/// How long nothing must come for "nothing more" to hold.
const QUIET: Duration = Duration::from_millis(400);

/// A queue under test, and what to clean up once a behaviour has run.
pub trait JobsFixture: Send + 'static {
    fn queue(&self) -> Arc<dyn JobQueue>;

    /// How long a job taken and not ended stays leased.
    fn lease(&self) -> Duration;

    /// Runs after the behaviour, whether it passed or not.
    fn teardown(self) -> impl Future<Output = ()> + Send
    where
        Self: Sized,
    {
        async {}
    }
}

/// What a behaviour is given.
pub struct QueueUnderTest {
    pub queue: Arc<dyn JobQueue>,
    pub lease: Duration,
}

/// Runs one behaviour on a fresh fixture (none: skipped), tears the fixture
/// down, then passes on the behaviour's failure.
pub async fn run<F, B, Fut>(fresh: impl Future<Output = Option<F>>, behaviour: B)
where
    F: JobsFixture,
    B: FnOnce(QueueUnderTest) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Some(fixture) = fresh.await else {
        return;
    };
    let under_test = QueueUnderTest {
        queue: fixture.queue(),
        lease: fixture.lease(),
    };
    super::behave_then_tear_down(behaviour(under_test), fixture.teardown()).await;
}

async fn push(queue: &dyn JobQueue, id: &str) {
    queue.push(KIND, id, Duration::ZERO).await.unwrap();
}

/// The next jobs, waiting up to [`PATIENCE`] for them.
async fn take(queue: &dyn JobQueue, max: u32) -> Vec<Job> {
    let jobs = queue.take(KIND, max, PATIENCE).await.unwrap();
    assert!(!jobs.is_empty(), "no job came within {PATIENCE:?}");
    jobs
}

async fn nothing_more(queue: &dyn JobQueue) {
    let jobs = queue.take(KIND, 10, QUIET).await.unwrap();
    assert!(jobs.is_empty(), "unexpected jobs: {jobs:?}");
}

fn ids(jobs: &[Job]) -> Vec<&str> {
    jobs.iter().map(|job| job.id.as_str()).collect()
}

pub async fn a_pushed_job_is_taken_once_and_gone_when_done(t: QueueUnderTest) {
    push(&*t.queue, "a").await;
    let jobs = take(&*t.queue, 10).await;
    assert_eq!(ids(&jobs), ["a"]);
    assert_eq!(jobs[0].delivery, 1);
    for job in jobs {
        job.done().await.unwrap();
    }
    nothing_more(&*t.queue).await;
}

pub async fn a_job_pushed_twice_is_queued_once(t: QueueUnderTest) {
    push(&*t.queue, "a").await;
    push(&*t.queue, "a").await;
    let jobs = take(&*t.queue, 10).await;
    assert_eq!(ids(&jobs), ["a"]);
    // Pushed again while taken: still one job.
    push(&*t.queue, "a").await;
    for job in jobs {
        job.done().await.unwrap();
    }
    nothing_more(&*t.queue).await;
}

pub async fn a_delayed_job_is_not_taken_before_its_time(t: QueueUnderTest) {
    let delay = Duration::from_secs(1);
    let pushed = Instant::now();
    t.queue.push(KIND, "later", delay).await.unwrap();
    push(&*t.queue, "now").await;
    let first = take(&*t.queue, 10).await;
    assert_eq!(ids(&first), ["now"]);
    for job in first {
        job.done().await.unwrap();
    }
    let second = take(&*t.queue, 10).await;
    assert_eq!(ids(&second), ["later"]);
    assert!(
        pushed.elapsed() >= delay,
        "taken {:?} after a push delayed {delay:?}",
        pushed.elapsed()
    );
    for job in second {
        job.done().await.unwrap();
    }
}

pub async fn a_retried_job_comes_back_after_its_delay_counting_its_deliveries(t: QueueUnderTest) {
    push(&*t.queue, "a").await;
    let job = take(&*t.queue, 1).await.remove(0);
    let delay = Duration::from_millis(500);
    let retried = Instant::now();
    job.retry(delay).await.unwrap();
    let again = take(&*t.queue, 1).await.remove(0);
    assert_eq!((again.id.as_str(), again.delivery), ("a", 2));
    assert!(retried.elapsed() >= delay, "came back before its delay");
    again.done().await.unwrap();
    nothing_more(&*t.queue).await;
}

pub async fn a_job_left_unfinished_comes_back_when_its_lease_runs_out(t: QueueUnderTest) {
    push(&*t.queue, "a").await;
    // Before the take: the lease starts when the queue hands the job out.
    let taken = Instant::now();
    let job = take(&*t.queue, 1).await.remove(0);
    // Its worker died: the job is neither done nor retried.
    std::mem::forget(job);
    let again = take(&*t.queue, 1).await.remove(0);
    assert_eq!((again.id.as_str(), again.delivery), ("a", 2));
    assert!(taken.elapsed() >= t.lease, "came back within its lease");
    again.done().await.unwrap();
}

pub async fn workers_taking_at_once_never_hold_the_same_job(t: QueueUnderTest) {
    const JOBS: usize = 30;
    for i in 0..JOBS {
        push(&*t.queue, &format!("job-{i}")).await;
    }
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..3 {
        let queue = t.queue.clone();
        workers.spawn(async move {
            let mut handled = Vec::new();
            loop {
                let jobs = queue.take(KIND, 4, QUIET).await.unwrap();
                if jobs.is_empty() {
                    return handled;
                }
                for job in jobs {
                    handled.push(job.id.clone());
                    job.done().await.unwrap();
                }
            }
        });
    }
    let mut handled = Vec::new();
    while let Some(worker) = workers.join_next().await {
        handled.extend(worker.unwrap());
    }
    let distinct: HashSet<&String> = handled.iter().collect();
    assert_eq!(distinct.len(), handled.len(), "a job was handled twice");
    assert_eq!(handled.len(), JOBS, "every job was handled");
}

pub async fn kinds_are_separate_queues(t: QueueUnderTest) {
    t.queue.push("other", "x", Duration::ZERO).await.unwrap();
    push(&*t.queue, "a").await;
    let jobs = take(&*t.queue, 10).await;
    assert_eq!(ids(&jobs), ["a"]);
    let others = t.queue.take("other", 10, PATIENCE).await.unwrap();
    assert_eq!(ids(&others), ["x"]);
    for job in jobs.into_iter().chain(others) {
        job.done().await.unwrap();
    }
}

/// A job carries the trace it was pushed in to whoever takes it, again
/// after a retry; one pushed outside any trace carries none.
pub async fn a_job_carries_the_trace_it_was_pushed_in(t: QueueUnderTest) {
    let trace = TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
    let queue = &*t.queue;
    stampede_trace::within(trace, push(queue, "traced")).await;
    push(queue, "plain").await;
    let mut jobs = Vec::new();
    while jobs.len() < 2 {
        jobs.extend(take(queue, 2).await);
    }
    jobs.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(ids(&jobs), ["plain", "traced"]);
    assert_eq!(jobs[0].trace, None);
    assert_eq!(jobs[1].trace, trace);
    let mut jobs = jobs.into_iter();
    jobs.next().unwrap().done().await.unwrap();
    jobs.next().unwrap().retry(Duration::ZERO).await.unwrap();
    let again = take(queue, 1).await;
    assert_eq!(ids(&again), ["traced"]);
    assert_eq!(again[0].trace, trace, "kept through a retry");
    for job in again {
        job.done().await.unwrap();
    }
}

/// Runs every behaviour of the [`JobQueue`] contract against an adapter: one
/// test per behaviour, each on a fresh fixture from `$fresh` (a future of
/// `Option<impl JobsFixture>`).
#[macro_export]
macro_rules! jobs_contract_tests {
    ($fresh:expr) => {
        $crate::jobs_contract_tests!(@tests $fresh;
            a_pushed_job_is_taken_once_and_gone_when_done,
            a_job_pushed_twice_is_queued_once,
            a_delayed_job_is_not_taken_before_its_time,
            a_retried_job_comes_back_after_its_delay_counting_its_deliveries,
            a_job_left_unfinished_comes_back_when_its_lease_runs_out,
            workers_taking_at_once_never_hold_the_same_job,
            kinds_are_separate_queues,
            a_job_carries_the_trace_it_was_pushed_in,
        );
    };
    (@tests $fresh:expr; $($name:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                $crate::jobs::run($fresh, $crate::jobs::$name).await;
            }
        )*
    };
}
