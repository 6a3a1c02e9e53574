//! The shared read cache (L2): text values by key with a lifetime, every
//! node reading what any node stored (Redis in cluster mode). Only a cache:
//! callers treat every error as a miss, so it may lose anything at any time.

use std::time::Duration;

use async_trait::async_trait;

/// The cache failed: unreachable, too slow, an unreadable reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("shared cache: {0}")]
pub struct CacheError(pub String);

/// A cache every node shares, in front of the store and behind each node's
/// own cache ([`crate::cache::ReadCache`]).
#[async_trait]
pub trait SharedCache: Send + Sync {
    /// The value stored under `key`, if any and not expired.
    async fn get(&self, key: &str) -> Result<Option<String>, CacheError>;
    /// Stores `value` under `key` for `ttl`.
    async fn set(&self, key: &str, value: &str, ttl: Duration) -> Result<(), CacheError>;
    /// Forgets `key` (after a write, so every node's next read sees it).
    async fn delete(&self, key: &str) -> Result<(), CacheError>;
}
