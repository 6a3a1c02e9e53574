//! The only write connection, owned by one OS thread that group-commits.
//!
//! Callers send commands over a bounded channel. The thread blocks for one
//! command, takes every command already waiting, and runs them all in one
//! `BEGIN IMMEDIATE … COMMIT`, each inside its own `SAVEPOINT`: a command that
//! fails is rolled back alone (`ROLLBACK TO` + `RELEASE`) while the others
//! commit, and one fsync serves them all. Replies go out only after `COMMIT`
//! returns, so an answer means durable; if the transaction itself fails, every
//! command in it is answered `Unavailable`.
//!
//! `commit_orders` batches arrive already grouped by the app's commit workers;
//! catalog, account and cancel writes ride along in the same transactions.
//!
//! A dedicated thread rather than `spawn_blocking`: the connection is not
//! `Sync`, the thread never competes with the runtime's blocking pool, and its
//! queue is the one place where writes are ordered.

use std::fs::File;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use rusqlite::Connection;
use stampede_app::failure::Chain;
use stampede_app::ports::{StoreError, StoreGuard};
use stampede_trace::TraceParent;
use tokio::sync::{mpsc, oneshot};

use crate::checkpointer::Checkpointer;
use crate::error::{Context, closed};

/// Commands that may wait for the writer. When it is full, callers wait (the
/// `send` is async) until the writer takes the next group: backpressure, never
/// an error. Upstream queues are bounded too, so this is rarely reached: the
/// app's commit workers have one batch in flight each.
const QUEUE_CAPACITY: usize = 256;

/// One caller's write, boxed so the thread needs no knowledge of what it
/// writes.
trait Job: Send {
    /// Runs the write inside the open transaction and keeps its result;
    /// returns whether it succeeded (a failed one is rolled back alone).
    fn run(&mut self, conn: &Connection) -> bool;
    /// Answers the caller once the transaction's fate is known.
    fn answer(self: Box<Self>, transaction: Result<(), &Arc<StoreError>>);
}

/// A typed write and the caller waiting for its result.
struct Call<T, F> {
    what: &'static str,
    /// The caller's trace: outbox events the write records carry it.
    trace: Option<TraceParent>,
    op: Option<F>,
    result: Option<Result<T, StoreError>>,
    reply: oneshot::Sender<Result<T, StoreError>>,
}

impl<T, F> Job for Call<T, F>
where
    T: Send,
    F: FnOnce(&Connection) -> Result<T, StoreError> + Send,
{
    fn run(&mut self, conn: &Connection) -> bool {
        let Some(op) = self.op.take() else {
            return false;
        };
        let result = stampede_trace::within_sync(self.trace, || op(conn));
        let ok = result.is_ok();
        if let Err(err) = &result {
            tracing::debug!(what = self.what, error = %Chain(err), "write refused");
        }
        self.result = Some(result);
        ok
    }

    fn answer(self: Box<Self>, transaction: Result<(), &Arc<StoreError>>) {
        let answer = match (transaction, self.result) {
            (Ok(()), Some(result)) => result,
            (Ok(()), None) => Err(StoreError::unavailable(format!(
                "{}: the write was not run",
                self.what
            ))),
            // The group's transaction failed: every write in it answers
            // with that failure as its cause.
            (Err(err), _) => Err(StoreError::unavailable_because(self.what, err.clone())),
        };
        // The caller may have gone; what was committed stands either way.
        let _ = self.reply.send(answer);
    }
}

type Queue = mpsc::Sender<Box<dyn Job>>;

/// The handle to the writer thread.
pub(crate) struct Writer {
    /// `None` once closed. Callers clone it for the length of one `send`, so
    /// taking it out stops new commands while those already sent still run.
    queue: Mutex<Option<Queue>>,
    /// Joined on close or drop, so the database and its lock are released when
    /// either returns.
    thread: Mutex<Option<JoinHandle<()>>>,
    guard: StoreGuard,
}

impl Writer {
    /// Starts the thread; it owns the connection, its checkpointer and the
    /// lock file until it exits.
    pub(crate) fn start(
        conn: Connection,
        checkpointer: Checkpointer,
        lock: File,
    ) -> Result<Self, StoreError> {
        let (queue, commands) = mpsc::channel(QUEUE_CAPACITY);
        let thread = std::thread::Builder::new()
            .name("stampede-sqlite-writer".into())
            .spawn(move || write_loop(conn, checkpointer, lock, commands))
            .map_err(|err| {
                StoreError::unavailable_because("starting the sqlite writer thread", err)
            })?;
        Ok(Self {
            queue: Mutex::new(Some(queue)),
            thread: Mutex::new(Some(thread)),
            guard: StoreGuard::new("database_write"),
        })
    }

    /// Runs `op` on the write connection in the next group commit and returns
    /// its result once the group is committed, behind the write breaker. If
    /// this future is dropped after the command was sent, the write still
    /// happens.
    pub(crate) async fn run<T, F>(&self, what: &'static str, op: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.guard.run(what, self.run_unguarded(what, op)).await
    }

    async fn run_unguarded<T, F>(&self, what: &'static str, op: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let queue = self
            .queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .ok_or_else(closed)?;
        let (reply, answer) = oneshot::channel();
        let call = Call {
            what,
            trace: stampede_trace::current(),
            op: Some(op),
            result: None,
            reply,
        };
        queue
            .send(Box::new(call))
            .await
            .map_err(|_| stopped(what))?;
        drop(queue);
        answer.await.map_err(|_| stopped(what))?
    }

    /// `Ok` while the thread takes commands: `store closed` after
    /// [`stop`](Self::stop), `the sqlite writer has stopped` if it died.
    pub(crate) fn check(&self) -> Result<(), StoreError> {
        match &*self.queue.lock().unwrap_or_else(PoisonError::into_inner) {
            None => Err(closed()),
            Some(queue) if queue.is_closed() => Err(stopped("writing")),
            Some(_) => Ok(()),
        }
    }

    /// Stops taking commands. The thread commits what is already queued,
    /// checkpoints and exits; join the returned handle to wait for it.
    pub(crate) fn stop(&self) -> Option<JoinHandle<()>> {
        self.queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        self.thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}

impl Drop for Writer {
    /// Stops the thread and waits for it (at most one group commit and a
    /// checkpoint), so the file is free once the store is dropped.
    fn drop(&mut self) {
        if let Some(thread) = self.stop()
            && thread.join().is_err()
        {
            tracing::error!("the sqlite writer thread panicked");
        }
    }
}

fn stopped(what: &str) -> StoreError {
    StoreError::unavailable(format!("{what}: the sqlite writer has stopped"))
}

/// The thread: group commits until every sender is gone, then a checkpoint.
fn write_loop(
    mut conn: Connection,
    checkpointer: Checkpointer,
    lock: File,
    mut commands: mpsc::Receiver<Box<dyn Job>>,
) {
    while let Some(first) = commands.blocking_recv() {
        let mut group = vec![first];
        // Everything already waiting joins this transaction; the channel's
        // capacity bounds the group.
        while let Ok(next) = commands.try_recv() {
            group.push(next);
        }
        commit_group(&conn, group);
    }
    checkpointer.stop(&mut conn);
    // Fold the log into the database so the next open starts from a small WAL.
    if let Err(err) = conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)") {
        tracing::warn!(error = %Chain(&err), "checkpointing the sqlite log at close failed");
    }
    if let Err((_, err)) = conn.close() {
        tracing::warn!(error = %Chain(&err), "closing the sqlite write connection failed");
    }
    drop(lock);
    tracing::debug!("sqlite writer stopped");
}

/// Runs one group in one transaction and answers every job.
fn commit_group(conn: &Connection, mut jobs: Vec<Box<dyn Job>>) {
    let outcome = run_group(conn, &mut jobs).map_err(Arc::new);
    if let Err(err) = &outcome {
        tracing::error!(commands = jobs.len(), error = %Chain(err.as_ref()), "sqlite group commit failed");
        if !conn.is_autocommit()
            && let Err(err) = conn.execute_batch("ROLLBACK")
        {
            tracing::error!(error = %Chain(&err), "rolling back a failed group commit failed");
        }
    }
    for job in jobs {
        job.answer(outcome.as_ref().map(|_| ()));
    }
}

fn run_group(conn: &Connection, jobs: &mut [Box<dyn Job>]) -> Result<(), StoreError> {
    if !conn.is_autocommit() {
        // A transaction left open by a rollback that failed last time: undo it
        // before starting afresh, or every later group would fail to begin.
        execute(conn, "ROLLBACK", "rolling back a leftover transaction")?;
    }
    execute(conn, "BEGIN IMMEDIATE", "beginning a transaction")?;
    for job in jobs.iter_mut() {
        execute(conn, "SAVEPOINT command", "opening a savepoint")?;
        if !job.run(conn) {
            execute(conn, "ROLLBACK TO command", "rolling back a failed command")?;
        }
        execute(conn, "RELEASE command", "releasing a savepoint")?;
        // Some errors (a full disk, I/O) make SQLite roll the whole
        // transaction back on its own; carrying on would run the remaining
        // commands in autocommit mode, each committed alone.
        if conn.is_autocommit() {
            return Err(StoreError::unavailable(
                "the transaction was rolled back by sqlite",
            ));
        }
    }
    execute(conn, "COMMIT", "committing")
}

fn execute(conn: &Connection, sql: &str, what: &str) -> Result<(), StoreError> {
    conn.prepare_cached(sql)
        .and_then(|mut statement| statement.execute([]))
        .context(what)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call<T: Send + 'static>(
        op: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> (Box<dyn Job>, oneshot::Receiver<Result<T, StoreError>>) {
        let (reply, answer) = oneshot::channel();
        let job = Call {
            trace: None,
            what: "testing",
            op: Some(op),
            result: None,
            reply,
        };
        (Box::new(job), answer)
    }

    fn insert(value: i64) -> impl FnOnce(&Connection) -> Result<(), StoreError> + Send {
        move |conn| {
            conn.execute("INSERT INTO t (v) VALUES (?1)", [value])
                .context("inserting")
                .map(drop)
        }
    }

    fn values(conn: &Connection) -> Vec<i64> {
        let mut statement = conn.prepare("SELECT v FROM t ORDER BY v").unwrap();
        statement
            .query_map([], |row| row.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    #[test]
    fn a_failing_command_is_rolled_back_alone_and_the_others_commit() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (v INTEGER NOT NULL UNIQUE)")
            .unwrap();
        let (first, first_answer) = call(insert(1));
        // Writes a row, then fails: its row must go too.
        let (failing, failing_answer) = call(|conn| {
            insert(2)(conn)?;
            insert(1)(conn)
        });
        let (last, last_answer) = call(insert(3));
        commit_group(&conn, vec![first, failing, last]);
        assert!(first_answer.blocking_recv().unwrap().is_ok());
        assert!(failing_answer.blocking_recv().unwrap().is_err());
        assert!(last_answer.blocking_recv().unwrap().is_ok());
        assert_eq!(values(&conn), vec![1, 3]);
        assert!(conn.is_autocommit(), "the transaction is closed");
    }

    #[test]
    fn when_the_transaction_fails_every_command_is_answered_unavailable() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (v INTEGER NOT NULL UNIQUE)")
            .unwrap();
        let (ok, ok_answer) = call(insert(1));
        // Ends the transaction behind the writer's back, as SQLite does on
        // some I/O errors.
        let (rogue, rogue_answer) = call(|conn| {
            conn.execute_batch("ROLLBACK").context("rolling back")?;
            Ok(())
        });
        let (after, after_answer) = call(insert(2));
        commit_group(&conn, vec![ok, rogue, after]);
        for answer in [ok_answer, rogue_answer, after_answer] {
            let err = answer.blocking_recv().unwrap().unwrap_err();
            assert!(matches!(err, StoreError::Unavailable { .. }), "{err:?}");
        }
        assert!(values(&conn).is_empty());
    }
}
