//! The `EventBus` contract suite (stampede_contract::bus), run against
//! the JetStream bus and its outbox relay, on the NATS server of the machine
//! and a fresh SQLite store per test.

mod common;

stampede_contract::bus_contract_tests!(|dir| common::Cluster::start(dir, &[]));
