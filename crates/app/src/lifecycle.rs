//! Where the process is in its life: starting, serving, draining. Read by the
//! health probes and by the purchase path (a draining node takes no new work).

use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Debug, Default)]
pub struct Lifecycle {
    started: AtomicBool,
    draining: AtomicBool,
}

impl Lifecycle {
    /// Start-up (migrations, ledger rebuild) is done.
    pub fn mark_started(&self) {
        self.started.store(true, Ordering::Release);
    }

    /// Stop taking new work; readiness fails from now on.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    pub fn is_started(&self) -> bool {
        self.started.load(Ordering::Acquire)
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }
}
