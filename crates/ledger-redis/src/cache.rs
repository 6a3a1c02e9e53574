//! [`RedisCache`]: the shared read cache (L2) of cluster mode
//! ([`SharedCache`]): plain `GET`, `SET … PX` and `DEL` on
//! `{<namespace>:cache:<cache>:<id>}`, one key per command, so the layout is
//! Redis Cluster-safe. Values and lifetimes (jittered) come from the caller
//! (`stampede_app::cache`).

use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use stampede_app::ports::{CacheError, SharedCache};

use crate::keys::Namespace;

/// The shared cache on Redis. Its own multiplexed connection, made at the
/// first call, so cache reads never queue behind purchases.
pub struct RedisCache {
    con: ConnectionManager,
    ns: Namespace,
}

impl RedisCache {
    /// A cache on the Redis at `url` with every key under `namespace`.
    pub fn new(url: &str, namespace: &str) -> Result<Self, CacheError> {
        let ns = Namespace::parse(namespace).map_err(|e| CacheError(e.to_string()))?;
        let client = redis::Client::open(url)
            .map_err(|e| CacheError(format!("redis url is not valid: {e}")))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(Duration::from_secs(1)))
            .set_number_of_retries(1);
        let con = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| CacheError(format!("redis connection: {e}")))?;
        Ok(Self { con, ns })
    }

    /// The Redis key of a cache key.
    pub fn key(&self, key: &str) -> String {
        format!("{{{}:cache:{key}}}", self.ns.as_str())
    }
}

fn failed(what: &str, err: &redis::RedisError) -> CacheError {
    CacheError(format!("{what}: {err}"))
}

#[async_trait]
impl SharedCache for RedisCache {
    async fn get(&self, key: &str) -> Result<Option<String>, CacheError> {
        redis::cmd("GET")
            .arg(self.key(key))
            .query_async(&mut self.con.clone())
            .await
            .map_err(|e| failed("cache get", &e))
    }

    async fn set(&self, key: &str, value: &str, ttl: Duration) -> Result<(), CacheError> {
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        redis::cmd("SET")
            .arg(self.key(key))
            .arg(value)
            .arg("PX")
            .arg(ttl_ms)
            .query_async(&mut self.con.clone())
            .await
            .map_err(|e| failed("cache set", &e))
    }

    async fn delete(&self, key: &str) -> Result<(), CacheError> {
        redis::cmd("DEL")
            .arg(self.key(key))
            .query_async(&mut self.con.clone())
            .await
            .map_err(|e| failed("cache delete", &e))
    }
}
