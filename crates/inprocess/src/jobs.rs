//! The embedded job queue: jobs in memory, per kind. It holds nothing the
//! store does not: after a restart the sweepers push again what is still to
//! do (see `ports::jobs`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Notify;
use tokio::time::Instant;

use stampede_app::ports::{Job, JobQueue, Lease, QueueError};
use stampede_trace::TraceParent;

/// Jobs of every kind, in this process.
pub struct MemoryJobQueue {
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    /// Woken on every push and every job handed back.
    changed: Notify,
    lease: Duration,
}

#[derive(Default)]
struct State {
    kinds: HashMap<&'static str, Kind>,
    next_token: u64,
}

/// One kind's jobs: queued (with the instant each is due) and leased.
#[derive(Default)]
struct Kind {
    queued: HashMap<String, Queued>,
    leased: HashMap<String, Leased>,
}

struct Queued {
    due: Instant,
    delivered: u32,
    /// The trace it was pushed in, handed out with it.
    trace: Option<TraceParent>,
}

struct Leased {
    until: Instant,
    delivered: u32,
    trace: Option<TraceParent>,
    /// Which hand-out holds it: an expired lease's late `done` is ignored.
    token: u64,
}

impl MemoryJobQueue {
    /// A job not done or retried within `lease` is taken again.
    pub fn new(lease: Duration) -> Self {
        Self {
            shared: Arc::new(Shared {
                state: Mutex::new(State::default()),
                changed: Notify::new(),
                lease,
            }),
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Kind {
    /// Leases whose time ran out go back to the queue, due now.
    fn reclaim(&mut self, now: Instant) {
        let expired: Vec<String> = self
            .leased
            .iter()
            .filter(|(_, leased)| leased.until <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired {
            if let Some(leased) = self.leased.remove(&id) {
                self.queued.insert(
                    id,
                    Queued {
                        due: now,
                        delivered: leased.delivered,
                        trace: leased.trace,
                    },
                );
            }
        }
    }

    /// The earliest instant something may change without a push: a queued
    /// job falling due or a lease running out.
    fn next_change(&self) -> Option<Instant> {
        let due = self.queued.values().map(|queued| queued.due);
        let until = self.leased.values().map(|leased| leased.until);
        due.chain(until).min()
    }
}

#[async_trait]
impl JobQueue for MemoryJobQueue {
    async fn push(&self, kind: &'static str, id: &str, delay: Duration) -> Result<(), QueueError> {
        {
            let mut state = self.shared.lock();
            let jobs = state.kinds.entry(kind).or_default();
            if jobs.queued.contains_key(id) || jobs.leased.contains_key(id) {
                return Ok(());
            }
            jobs.queued.insert(
                id.to_owned(),
                Queued {
                    due: Instant::now() + delay,
                    delivered: 0,
                    trace: stampede_trace::current(),
                },
            );
        }
        self.shared.changed.notify_waiters();
        Ok(())
    }

    async fn take(
        &self,
        kind: &'static str,
        max: u32,
        wait: Duration,
    ) -> Result<Vec<Job>, QueueError> {
        let deadline = Instant::now() + wait;
        loop {
            // Registered before looking, so a push meanwhile is not missed.
            let changed = self.shared.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let next_change = {
                let now = Instant::now();
                let mut state = self.shared.lock();
                state.next_token += 1;
                let token = state.next_token;
                let jobs = state.kinds.entry(kind).or_default();
                jobs.reclaim(now);
                let mut due: Vec<(Instant, String)> = jobs
                    .queued
                    .iter()
                    .filter(|(_, queued)| queued.due <= now)
                    .map(|(id, queued)| (queued.due, id.clone()))
                    .collect();
                if !due.is_empty() {
                    due.sort();
                    due.truncate(max.max(1) as usize);
                    let taken = due
                        .into_iter()
                        .filter_map(|(_, id)| {
                            let queued = jobs.queued.remove(&id)?;
                            let delivered = queued.delivered + 1;
                            jobs.leased.insert(
                                id.clone(),
                                Leased {
                                    until: now + self.shared.lease,
                                    delivered,
                                    trace: queued.trace,
                                    token,
                                },
                            );
                            let lease = MemoryLease {
                                shared: self.shared.clone(),
                                kind,
                                id: id.clone(),
                                token,
                            };
                            Some(Job::new(id, delivered, Box::new(lease)).traced(queued.trace))
                        })
                        .collect();
                    return Ok(taken);
                }
                jobs.next_change()
            };
            let now = Instant::now();
            if now >= deadline {
                return Ok(Vec::new());
            }
            let until = next_change.map_or(deadline, |at| at.min(deadline));
            tokio::select! {
                () = &mut changed => {}
                () = tokio::time::sleep_until(until) => {}
            }
        }
    }
}

struct MemoryLease {
    shared: Arc<Shared>,
    kind: &'static str,
    id: String,
    token: u64,
}

impl MemoryLease {
    /// Ends the lease if this hand-out still holds it; `requeue` puts the
    /// job back, due after that long.
    fn end(&self, requeue: Option<Duration>) {
        {
            let mut state = self.shared.lock();
            let Some(jobs) = state.kinds.get_mut(self.kind) else {
                return;
            };
            let holds = jobs
                .leased
                .get(&self.id)
                .is_some_and(|leased| leased.token == self.token);
            if !holds {
                return;
            }
            let Some(leased) = jobs.leased.remove(&self.id) else {
                return;
            };
            if let Some(after) = requeue {
                jobs.queued.insert(
                    self.id.clone(),
                    Queued {
                        due: Instant::now() + after,
                        delivered: leased.delivered,
                        trace: leased.trace,
                    },
                );
            }
        }
        self.shared.changed.notify_waiters();
    }
}

#[async_trait]
impl Lease for MemoryLease {
    async fn done(self: Box<Self>) -> Result<(), QueueError> {
        self.end(None);
        Ok(())
    }

    async fn retry(self: Box<Self>, after: Duration) -> Result<(), QueueError> {
        self.end(Some(after));
        Ok(())
    }
}
