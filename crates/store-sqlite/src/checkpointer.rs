//! Folds the write-ahead log back into the database on a thread of its own.
//!
//! SQLite's automatic checkpoint runs inside the `COMMIT` that crosses its
//! threshold, on the writer's thread: every order queued behind that commit
//! waits for the copy and its fsyncs (7–12 ms, three times a second at half
//! the winners' closed-loop rate; docs/benchmarks.md). Here the writer's
//! commit only signals, and a second connection runs a `PASSIVE` checkpoint,
//! which blocks neither the writer nor the readers.
//!
//! The log starts over only at a transaction that finds it wholly copied and
//! no reader inside it, which a busy writer seldom offers the thread. So once
//! the log passes a limit, the thread is woken once more, and after that pass
//! the writer copies the rest itself at each commit (what the commits wrote
//! meanwhile: a few hundred pages at first, then a commit's own) until the log
//! starts over, as SQLite's own checkpoint would. Past twice the limit (the
//! thread gone or failing) the writer copies at every commit whatever the
//! thread does, so the log stays bounded.

use std::ffi::c_int;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;
use std::time::Instant;

use rusqlite::Connection;
use rusqlite::hooks::Wal;
use stampede_app::failure::Chain;
use stampede_app::ports::StoreError;

use crate::connection;
use crate::settings::Synchronous;

/// When the log is copied back, in log pages (4 KiB).
#[derive(Debug, Clone, Copy)]
struct Thresholds {
    /// Pages written since the last signal after which the checkpointer is
    /// woken.
    signal: i64,
    /// Pages past which the writer helps: it copies the rest after the
    /// thread's next pass (and at once past twice this).
    limit: i64,
}

impl Thresholds {
    /// A hot index page dirtied by many group commits is copied back once per
    /// checkpoint, so a long interval pays (measured when the writer still
    /// checkpointed itself: 43k orders/s with 256 random buyers per commit at
    /// 10,000 pages, 36k at SQLite's default 1,000). The log starts over at
    /// about 160 MB.
    const DEFAULT: Self = Self {
        signal: 10_000,
        limit: 40_000,
    };
}

/// The checkpoint thread, woken by a hook on the writer's connection.
pub(crate) struct Checkpointer {
    thread: JoinHandle<()>,
}

impl Checkpointer {
    /// Opens the checkpoint connection, starts its thread and hooks the
    /// writer's commits to it (replacing SQLite's automatic checkpoint).
    pub(crate) fn start(
        path: &Path,
        synchronous: Synchronous,
        writer: &mut Connection,
    ) -> Result<Self, StoreError> {
        Self::start_with(path, synchronous, writer, Thresholds::DEFAULT)
    }

    fn start_with(
        path: &Path,
        synchronous: Synchronous,
        writer: &mut Connection,
        thresholds: Thresholds,
    ) -> Result<Self, StoreError> {
        // Its `synchronous` decides the checkpoint's fsyncs: the database file
        // must be on disk before the writer may overwrite the log.
        let conn = connection::open_checkpointer(path, synchronous)?;
        let (signal, signals) = sync_channel(1);
        let passes = Arc::new(AtomicU64::new(0));
        let counted = passes.clone();
        let thread = std::thread::Builder::new()
            .name("stampede-sqlite-checkpointer".into())
            .spawn(move || run(conn, signals, &counted))
            .map_err(|err| {
                StoreError::unavailable_because("starting the sqlite checkpoint thread", err)
            })?;
        Hook::install(writer, signal, passes, thresholds)?;
        Ok(Self { thread })
    }

    /// Unhooks the writer (its signal goes with the hook, which ends the
    /// thread) and waits for a checkpoint under way to finish.
    pub(crate) fn stop(self, writer: &mut Connection) {
        type NoHook = fn(&mut Wal, c_int) -> rusqlite::Result<()>;
        if let Err(err) = writer.wal_hook(None::<NoHook>) {
            tracing::warn!(error = %Chain(&err), "unhooking the sqlite log failed");
        }
        if self.thread.join().is_err() {
            tracing::error!("the sqlite checkpoint thread panicked");
        }
    }
}

/// What the writer does after each commit, told the log's length in pages.
struct Hook {
    signal: SyncSender<()>,
    /// Checkpoints the thread has finished.
    passes: Arc<AtomicU64>,
    thresholds: Thresholds,
    /// The log's length at the last signal.
    signalled_at: i64,
    /// Past the limit: the thread's pass count when the log got there.
    limit_reached_at: Option<u64>,
}

impl Hook {
    fn install(
        writer: &mut Connection,
        signal: SyncSender<()>,
        passes: Arc<AtomicU64>,
        thresholds: Thresholds,
    ) -> Result<(), StoreError> {
        let mut hook = Self {
            signal,
            passes,
            thresholds,
            signalled_at: 0,
            limit_reached_at: None,
        };
        writer
            .wal_hook(Some(move |wal: &mut Wal, pages: c_int| {
                hook.committed(wal, i64::from(pages));
                // An error here would fail a commit that has happened.
                Ok(())
            }))
            .map_err(|err| StoreError::unavailable_because("hooking the sqlite log", err))
    }

    fn committed(&mut self, wal: &mut Wal, pages: i64) {
        if pages < self.signalled_at {
            // The log started over.
            self.signalled_at = 0;
            self.limit_reached_at = None;
        }
        if pages >= self.thresholds.limit {
            let passes = self.passes.load(Ordering::Acquire);
            match self.limit_reached_at {
                None => {
                    self.limit_reached_at = Some(passes);
                    self.wake(pages);
                }
                Some(at) if passes > at || pages >= 2 * self.thresholds.limit => {
                    if let Err(err) = wal.checkpoint() {
                        // Busy while the thread is at it; the next commit retries.
                        tracing::debug!(pages, error = %Chain(&err), "the writer's checkpoint did not run");
                    }
                }
                Some(_) => {}
            }
        } else if pages - self.signalled_at >= self.thresholds.signal {
            self.wake(pages);
        }
    }

    fn wake(&mut self, pages: i64) {
        self.signalled_at = pages;
        match self.signal.try_send(()) {
            // Full: a checkpoint is already due; it will copy these pages too.
            Ok(()) | Err(TrySendError::Full(())) => {}
            Err(TrySendError::Disconnected(())) => {
                tracing::warn!(pages, "the sqlite checkpoint thread is gone");
            }
        }
    }
}

/// The thread: one checkpoint per signal, until the writer lets go.
fn run(conn: Connection, signals: Receiver<()>, passes: &AtomicU64) {
    while signals.recv().is_ok() {
        let started = Instant::now();
        let checkpoint = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
            Ok((row.get::<_, i64>(1)?, row.get::<_, i64>(2)?))
        });
        match checkpoint {
            Ok((log, copied)) => tracing::debug!(
                log,
                copied,
                millis = started.elapsed().as_millis() as u64,
                "checkpointed the sqlite log"
            ),
            Err(err) => tracing::warn!(error = %Chain(&err), "checkpointing the sqlite log failed"),
        }
        passes.fetch_add(1, Ordering::AcqRel);
    }
    if let Err((_, err)) = conn.close() {
        tracing::warn!(error = %Chain(&err), "closing the sqlite checkpoint connection failed");
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const SMALL: Thresholds = Thresholds {
        signal: 8,
        limit: 1_000_000,
    };

    /// A writer connection on a fresh file, and the file.
    fn writer(dir: &tempfile::TempDir) -> (Connection, std::path::PathBuf) {
        let path = dir.path().join("db.sqlite");
        let conn = connection::open_writer(&path, Synchronous::Full).unwrap();
        conn.execute_batch("CREATE TABLE t (v BLOB NOT NULL)")
            .unwrap();
        (conn, path)
    }

    /// Commits `n` transactions of one 4 KiB row each: a log page or more each.
    fn write(conn: &Connection, n: usize) {
        for _ in 0..n {
            conn.execute("INSERT INTO t (v) VALUES (zeroblob(4096))", [])
                .unwrap();
        }
    }

    fn size(path: &Path) -> u64 {
        std::fs::metadata(path).unwrap().len()
    }

    /// Waits up to ten seconds for `done`.
    fn eventually(mut done: impl FnMut() -> bool) -> bool {
        for _ in 0..1000 {
            if done() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    #[test]
    fn the_log_is_copied_back_by_the_thread_not_by_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let (mut conn, path) = writer(&dir);
        let checkpointer =
            Checkpointer::start_with(&path, Synchronous::Full, &mut conn, SMALL).unwrap();
        let before = size(&path);
        // Far below SQLite's own threshold (1,000 pages): only a signalled
        // checkpoint can bring these rows into the database file.
        write(&conn, 40);
        assert!(
            eventually(|| size(&path) > before + 20 * 4096),
            "the database file did not grow: {} bytes, {before} before",
            size(&path)
        );
        checkpointer.stop(&mut conn);
        let after = size(&path);
        write(&conn, 40);
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(size(&path), after, "unhooked, nothing copies the log back");
    }

    #[test]
    fn without_its_thread_the_writer_bounds_the_log_itself() {
        let dir = tempfile::tempdir().unwrap();
        let (mut conn, path) = writer(&dir);
        let (signal, signals) = sync_channel(1);
        drop(signals);
        let thresholds = Thresholds {
            signal: 8,
            limit: 16,
        };
        Hook::install(&mut conn, signal, Arc::default(), thresholds).unwrap();
        let before = size(&path);
        write(&conn, 80);
        assert!(
            size(&path) > before + 20 * 4096,
            "the writer did not checkpoint past twice its limit"
        );
        let wal = path.with_extension("sqlite-wal");
        assert!(
            size(&wal) < 48 * 4120,
            "the log started over: {} bytes",
            size(&wal)
        );
    }
}
