//! How to reach PostgreSQL and how much of it to use.

use std::time::Duration;

/// Settings of a [`PgStore`](crate::PgStore). As configuration (the `db_*`
/// settings) without the URL, which is a setting of its own.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PgSettings {
    /// `postgres://user[:password]@host[:port]/database[?options]`. No TLS:
    /// run the database, or a PgBouncer in front of it, on a private network
    /// or put a TLS-terminating proxy beside each node.
    #[serde(skip)]
    pub url: String,
    /// Connections per node. Each api node's group commit holds one per
    /// batch in flight; reads take one each. With PgBouncer in transaction
    /// mode in front, this can exceed the server's `max_connections`.
    pub pool_size: usize,
    /// How long a request waits for a free connection, or for a new one to
    /// open, before the store answers `Unavailable`.
    #[serde(
        rename = "acquire_timeout_ms",
        with = "stampede_flow::serde_duration::millis"
    )]
    pub acquire_timeout: Duration,
    /// The server aborts any statement running longer (`statement_timeout`),
    /// so a stuck query frees its connection and its locks.
    #[serde(
        rename = "statement_timeout_ms",
        with = "stampede_flow::serde_duration::millis"
    )]
    pub statement_timeout: Duration,
}

impl PgSettings {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            ..Self::default()
        }
    }
}

impl Default for PgSettings {
    /// No URL: the caller sets one.
    fn default() -> Self {
        Self {
            url: String::new(),
            pool_size: 16,
            acquire_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(10),
        }
    }
}
