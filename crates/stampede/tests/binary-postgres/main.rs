//! The real-binary tests of `tests/binary` (SIGKILL mid-sale, SIGTERM,
//! restarts, expiry across downtime), run again with the binary on a fresh
//! PostgreSQL database: no acknowledged order may be lost there either; and
//! what only a cluster has (the multi-node drill, a shared rate limit, rules
//! replaced on one node reaching the others, nginx in front of two nodes).

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../binary/bench.rs"]
mod bench;
#[path = "../binary/cluster_drill.rs"]
mod cluster_drill;
#[path = "../binary/crash.rs"]
mod crash;
#[path = "../binary/dashboard.rs"]
mod dashboard;
#[path = "../binary/dependency_drills.rs"]
mod dependency_drills;
#[path = "../binary/drill.rs"]
mod drill;
#[path = "../binary/expiry.rs"]
mod expiry;
#[path = "../binary/harness.rs"]
mod harness;
#[path = "../binary/nginx.rs"]
mod nginx;
#[path = "../binary/outbox.rs"]
mod outbox;
#[path = "../binary/payments.rs"]
mod payments;
#[path = "../binary/prometheus.rs"]
mod prometheus;
#[path = "../binary/rule_reload.rs"]
mod rule_reload;
#[path = "../binary/rule_sync.rs"]
mod rule_sync;
#[path = "../binary/sale_controls.rs"]
mod sale_controls;
#[path = "../binary/shared_rate_limit.rs"]
mod shared_rate_limit;
#[path = "../binary/shutdown.rs"]
mod shutdown;
#[path = "../binary/traces.rs"]
mod traces;
#[path = "../binary/waiting_room.rs"]
mod waiting_room;

/// This binary runs the servers on PostgreSQL.
const ON_POSTGRES: bool = true;
