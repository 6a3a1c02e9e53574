//! Cluster mode's stock ledger in Redis: in progress (issue 8), not wired yet.
