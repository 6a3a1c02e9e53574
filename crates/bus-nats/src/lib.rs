//! Cluster mode's event bus on NATS JetStream: in progress (issue 8), not wired yet.
