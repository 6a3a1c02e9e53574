//! Slots for order event streams. A stream is long-lived by design (no
//! deadline, outside the in-flight limit), so without a bound one client
//! could hold any number of them: at most [`PER_USER`] per user (then `429
//! rate-limited`) and a configured number per node (then `503 overloaded`).

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::{Arc, Mutex};

use metrics::{Gauge, gauge};
use stampede_domain::ids::UserId;

use crate::problem::{ApiError, Kind};

/// Open event streams one user may hold on a node.
pub const PER_USER: usize = 8;

/// Counts of open streams, per user and per node.
pub struct StreamSlots {
    per_node: usize,
    open: Mutex<Open>,
    /// `stampede_http_event_streams_open`: how close the node is to its cap.
    gauge: Gauge,
}

#[derive(Default)]
struct Open {
    total: usize,
    by_user: HashMap<UserId, usize>,
}

/// An open stream's slot; given back when dropped.
pub struct StreamSlot {
    slots: Arc<StreamSlots>,
    user: UserId,
}

impl StreamSlots {
    pub fn new(per_node: usize) -> Arc<Self> {
        Arc::new(Self {
            per_node,
            open: Mutex::new(Open::default()),
            gauge: gauge!("stampede_http_event_streams_open"),
        })
    }

    /// A slot for one more stream of `user`, or the answer that refuses it.
    pub fn acquire(self: &Arc<Self>, user: &UserId) -> Result<StreamSlot, ApiError> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if open.total >= self.per_node {
            return Err(ApiError::new(Kind::OVERLOADED)
                .with_detail("this node has as many event streams open as it serves")
                .retry_after(5));
        }
        let held = open.by_user.entry(user.clone()).or_default();
        if *held >= PER_USER {
            return Err(ApiError::new(Kind::RATE_LIMITED)
                .with_detail(format!(
                    "at most {PER_USER} event streams per user; close one first"
                ))
                .retry_after(5));
        }
        *held += 1;
        open.total += 1;
        self.gauge.set(open.total as f64);
        Ok(StreamSlot {
            slots: self.clone(),
            user: user.clone(),
        })
    }

    /// Streams open now.
    pub fn open(&self) -> usize {
        self.open.lock().unwrap_or_else(|p| p.into_inner()).total
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = self.slots.open.lock().unwrap_or_else(|p| p.into_inner());
        open.total = open.total.saturating_sub(1);
        self.slots.gauge.set(open.total as f64);
        if let Entry::Occupied(mut held) = open.by_user.entry(self.user.clone()) {
            *held.get_mut() -= 1;
            if *held.get() == 0 {
                held.remove();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str) -> UserId {
        UserId::parse(name).unwrap()
    }

    #[test]
    fn a_user_holds_at_most_eight_and_gets_them_back_when_closed() {
        let slots = StreamSlots::new(100);
        let held: Vec<StreamSlot> = (0..PER_USER)
            .map(|_| slots.acquire(&user("ada")).unwrap())
            .collect();
        let refused = slots.acquire(&user("ada")).err().unwrap();
        assert_eq!(refused.kind(), Kind::RATE_LIMITED);
        assert!(slots.acquire(&user("bob")).is_ok());
        drop(held);
        assert_eq!(slots.open(), 0);
        assert!(slots.acquire(&user("ada")).is_ok());
    }

    #[test]
    fn a_full_node_refuses_everyone() {
        let slots = StreamSlots::new(2);
        let _a = slots.acquire(&user("ada")).unwrap();
        let _b = slots.acquire(&user("bob")).unwrap();
        assert_eq!(
            slots.acquire(&user("cy")).err().unwrap().kind(),
            Kind::OVERLOADED
        );
    }
}
