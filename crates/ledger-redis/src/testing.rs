//! Redis for tests: one place that decides whether Redis is there (and
//! fails under `CI=true` if not), fresh namespaces, and cleanup. Used by this
//! crate's tests and the binary's cluster-mode tests.

// Test support: a failure here is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use redis::AsyncCommands;

/// The Redis of the tests: `REDIS_URL`, or the one on this machine.
pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// Whether Redis answers. When it does not, the test fails under `CI=true`
/// (CI must run against a real Redis) and is skipped, with the reason
/// printed, anywhere else. Every Redis test starts here.
pub async fn redis_or_skip() -> Option<String> {
    let url = redis_url();
    let ping = async {
        let client = redis::Client::open(url.as_str()).map_err(|e| e.to_string())?;
        let mut con = client
            .get_multiplexed_async_connection()
            .await
            .map_err(|e| e.to_string())?;
        redis::cmd("PING")
            .query_async::<String>(&mut con)
            .await
            .map_err(|e| e.to_string())
    };
    let reason = match tokio::time::timeout(Duration::from_secs(2), ping).await {
        Ok(Ok(_)) => return Some(url),
        Ok(Err(err)) => err,
        Err(_) => "no answer within 2 s".to_owned(),
    };
    if std::env::var("CI").is_ok_and(|ci| ci == "true") {
        panic!("Redis at {url} is unreachable under CI=true: {reason}");
    }
    eprintln!(
        "skipped: Redis at {url} is unreachable ({reason}); set REDIS_URL or start redis-server"
    );
    None
}

/// A namespace no other test uses.
pub fn fresh_namespace() -> String {
    format!("stampede-test-{}", uuid::Uuid::new_v4().simple())
}

/// Deletes every key matching `pattern` (`SCAN MATCH` + `DEL`); returns how
/// many there were.
pub async fn delete_matching(url: &str, pattern: &str) -> usize {
    let client = redis::Client::open(url).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    let keys = scan(&mut con, pattern).await;
    for chunk in keys.chunks(500) {
        let _: () = con.del(chunk).await.unwrap();
    }
    keys.len()
}

/// Every key matching `pattern`.
pub async fn keys_matching(url: &str, pattern: &str) -> Vec<String> {
    let client = redis::Client::open(url).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    scan(&mut con, pattern).await
}

async fn scan(con: &mut redis::aio::MultiplexedConnection, pattern: &str) -> Vec<String> {
    let mut cursor = "0".to_owned();
    let mut keys = Vec::new();
    loop {
        let (next, batch): (String, Vec<String>) = redis::cmd("SCAN")
            .arg(&cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(con)
            .await
            .unwrap();
        keys.extend(batch);
        if next == "0" {
            return keys;
        }
        cursor = next;
    }
}

/// The pattern of every key of a namespace.
pub fn namespace_pattern(namespace: &str) -> String {
    format!("{{{namespace}:*")
}

/// A namespace for one test deployment; its keys are deleted on drop.
#[derive(Debug)]
pub struct TestNamespace {
    pub url: String,
    pub name: String,
}

impl TestNamespace {
    /// A fresh namespace, or `None` (after printing why) without Redis
    /// outside CI.
    pub async fn create() -> Option<Self> {
        let url = redis_or_skip().await?;
        Some(Self {
            url,
            name: fresh_namespace(),
        })
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        // Its own thread and runtime: drop may run inside a runtime or not.
        let (url, pattern) = (self.url.clone(), namespace_pattern(&self.name));
        let _ = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(delete_matching(&url, &pattern))
        })
        .join();
    }
}
