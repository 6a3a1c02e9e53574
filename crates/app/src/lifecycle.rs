//! Where the process is in its life: starting, serving, draining. Read by the
//! health probes, by the purchase path (a draining node takes no new work), and
//! by long-lived streams (which end when draining starts, so shutdown is not
//! held up by them).

use std::sync::atomic::{AtomicBool, Ordering};

use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

#[derive(Debug, Default)]
pub struct Lifecycle {
    started: AtomicBool,
    draining: CancellationToken,
}

impl Lifecycle {
    /// Start-up (migrations, ledger rebuild) is done.
    pub fn mark_started(&self) {
        self.started.store(true, Ordering::Release);
    }

    /// Stop taking new work; readiness fails from now on.
    pub fn start_draining(&self) {
        self.draining.cancel();
    }

    pub fn is_started(&self) -> bool {
        self.started.load(Ordering::Acquire)
    }

    pub fn is_draining(&self) -> bool {
        self.draining.is_cancelled()
    }

    /// Completes when draining starts.
    pub fn drained(&self) -> WaitForCancellationFuture<'_> {
        self.draining.cancelled()
    }

    /// A token cancelled when draining starts, for tasks that outlive a borrow.
    pub fn draining_token(&self) -> CancellationToken {
        self.draining.clone()
    }
}
