//! Read-only connections for queries. In WAL mode readers see the last
//! committed state and neither wait for the writer nor hold it up, so reads
//! run beside the group commit. A semaphore bounds how many run at once (one
//! per connection); each query runs on the runtime's blocking pool.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

use rusqlite::Connection;
use stampede_app::ports::{StoreError, StoreGuard};
use tokio::sync::Semaphore;

use crate::connection;
use crate::error::closed;

pub(crate) struct Readers {
    path: PathBuf,
    /// Connections not in use. Fewer than the permits when a query was
    /// abandoned mid-way (its connection is closed with it): the next query
    /// opens a fresh one.
    idle: Mutex<Vec<Connection>>,
    /// One permit per connection: more queries than that wait here.
    permits: Semaphore,
    closed: AtomicBool,
    guard: StoreGuard,
}

impl Readers {
    /// Opens `size` connections (at least one) at once, so a bad path or
    /// permission shows at start-up rather than at the first read.
    pub(crate) fn open(path: PathBuf, size: usize) -> Result<Self, StoreError> {
        let size = size.max(1);
        let idle = (0..size)
            .map(|_| connection::open_reader(&path))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            path,
            idle: Mutex::new(idle),
            permits: Semaphore::new(size),
            closed: AtomicBool::new(false),
            guard: StoreGuard::new("database_read"),
        })
    }

    /// Runs `query` on an idle connection, off the async threads, behind the
    /// read breaker.
    pub(crate) async fn run<T, F>(&self, what: &'static str, query: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.guard.run(what, self.run_unguarded(what, query)).await
    }

    async fn run_unguarded<T, F>(&self, what: &'static str, query: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        // Waiting for a connection takes no longer than the request that
        // asked has left (`stampede_flow::deadline::scope`).
        let acquire = self.permits.acquire();
        let _permit = match stampede_flow::deadline::current() {
            Some(deadline) => deadline.run(acquire).await.map_err(|_| {
                StoreError::unavailable(format!("{what}: no reader free before the deadline"))
            })?,
            None => acquire.await,
        }
        .map_err(|_| closed())?;
        if self.closed.load(Ordering::Acquire) {
            return Err(closed());
        }
        let idle = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let path = self.path.clone();
        let (conn, result) = tokio::task::spawn_blocking(move || {
            // A connection lost with an abandoned query is replaced here, off
            // the async threads.
            let conn = match idle {
                Some(conn) => conn,
                None => connection::open_reader(&path)?,
            };
            let result = query(&conn);
            Ok::<_, StoreError>((conn, result))
        })
        .await
        .map_err(|err| {
            StoreError::unavailable_because(format!("{what}: the query task failed"), err)
        })??;
        // Checked under the lock `close` clears the pool with, so a connection
        // never outlives a close in the pool.
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if !self.closed.load(Ordering::Acquire) {
            idle.push(conn);
        }
        result
    }

    /// Refuses new queries and closes the idle connections.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.permits.close();
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}
