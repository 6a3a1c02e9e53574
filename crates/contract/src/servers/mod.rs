//! Private dependency servers for fault drills: a test starts its own
//! `redis-server`, `nats-server -js` or PostgreSQL on a free port with a
//! temporary directory, so it can `kill -9`, freeze (`SIGSTOP`) and restart
//! it without touching the servers other tests share. Each is killed and
//! its directory removed on drop.
//!
//! A missing server binary skips the test (printing why) outside CI and
//! fails it under `CI=true`, like the shared servers' test helpers.

// Test support: a failure here is a failed test.
#![allow(clippy::expect_used, clippy::panic)]

mod nats;
mod postgres;
mod process;
mod redis;

use std::path::PathBuf;
use std::process::Child;
use std::time::Duration;

use tempfile::TempDir;

/// The longest a server may take to become ready: a hang guard for a
/// loaded machine, not an expectation.
const READY_GUARD: Duration = Duration::from_secs(120);

/// Which server a [`PrivateServer`] runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `redis-server`, without persistence: a restart comes back empty.
    Redis,
    /// `nats-server -js`; JetStream's store survives a restart.
    Nats,
    /// PostgreSQL (`initdb` + `postgres`, as the `postgres` user when run
    /// as root); its data survives a restart, crash recovery included.
    Postgres,
}

/// One server of the test's own, on `127.0.0.1:<port>`.
pub struct PrivateServer {
    kind: Kind,
    bin: PathBuf,
    port: u16,
    dir: TempDir,
    child: Option<Child>,
    /// The server's pid at its last start (PostgreSQL's postmaster is not
    /// our child: `runuser` forks it).
    pid: u32,
}

impl PrivateServer {
    /// Starts a `kind` server and waits until it answers; `None` (after
    /// printing why) when its binary is missing outside CI.
    ///
    /// # Panics
    /// Under `CI=true` without the binary, or when the server does not
    /// start (a failed test).
    pub fn start(kind: Kind) -> Option<Self> {
        let bin = process::tool_or_skip(match kind {
            Kind::Redis => "redis-server",
            Kind::Nats => "nats-server",
            Kind::Postgres => "postgres",
        })?;
        let dir = tempfile::Builder::new()
            .prefix("stampede-private-")
            .tempdir()
            .expect("a temporary directory for the server");
        if kind == Kind::Postgres {
            postgres::init(&bin, dir.path());
        }
        let mut server = Self {
            kind,
            bin,
            port: process::free_port(),
            dir,
            child: None,
            pid: 0,
        };
        server.launch();
        Some(server)
    }

    /// `host:port` of the server.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The URL a client is given for `host:port` (the server's own address
    /// or a proxy's in front of it).
    pub fn url_via(&self, addr: &str) -> String {
        match self.kind {
            Kind::Redis => format!("redis://{addr}"),
            Kind::Nats => format!("nats://{addr}"),
            Kind::Postgres => format!("postgres://postgres@{addr}/postgres"),
        }
    }

    /// The URL of the server itself.
    pub fn url(&self) -> String {
        self.url_via(&self.addr())
    }

    /// SIGKILL to the server (and, for PostgreSQL, every backend): no
    /// chance to flush or say goodbye.
    ///
    /// # Panics
    /// When its processes outlive [`READY_GUARD`].
    pub fn kill_9(&mut self) {
        let pids = self.kill();
        // PostgreSQL refuses to start while a killed backend still holds
        // the shared memory: wait until every process is gone.
        process::wait_until(READY_GUARD, "the killed server's processes to go", || {
            process::all_gone(&pids).then_some(())
        });
    }

    /// SIGKILL to every process; returns their pids.
    fn kill(&mut self) -> Vec<u32> {
        let pids = self.pids();
        for &pid in &pids {
            process::signal(pid, "KILL");
        }
        self.wake_runuser();
        // Reaped by its parent: our child is the server, or `runuser`, which
        // reaps the postmaster and exits (killing `runuser` instead would
        // leave a zombie postmaster that blocks the restart).
        if let Some(mut child) = self.child.take() {
            let _ = child.wait();
        }
        pids
    }

    /// SIGSTOP to every process of the server: it keeps its connections
    /// open and answers nothing. The postmaster first, and only once it is
    /// stopped its backends: listed before, a backend it forked in between
    /// (a client reconnecting as the fault begins) would go on answering.
    pub fn freeze(&self) {
        process::signal(self.pid, "STOP");
        process::wait_until(READY_GUARD, "the server to stop", || {
            process::is_stopped(self.pid).then_some(())
        });
        for pid in self.pids() {
            process::signal(pid, "STOP");
        }
    }

    /// SIGCONT: the frozen server carries on.
    pub fn thaw(&self) {
        for pid in self.pids() {
            process::signal(pid, "CONT");
        }
        self.wake_runuser();
    }

    /// `runuser` stops itself when the server it runs stops, and is not
    /// woken when the server is: continue it too, or it never reaps.
    fn wake_runuser(&self) {
        if let Some(child) = &self.child {
            process::signal(child.id(), "CONT");
        }
    }

    /// Starts the server again on the same port and directory (after
    /// [`kill_9`](Self::kill_9)) and waits until it answers.
    pub fn restart(&mut self) {
        if self.child.is_some() {
            self.kill_9();
        }
        self.launch();
    }

    fn launch(&mut self) {
        let (bin, dir, port) = (&self.bin, self.dir.path(), self.port);
        let previous = self.pid;
        let (child, pid) = match self.kind {
            Kind::Redis => redis::launch(bin, dir, port, READY_GUARD),
            Kind::Nats => nats::launch(bin, dir, port, READY_GUARD),
            Kind::Postgres => postgres::launch(bin, dir, port, previous, READY_GUARD),
        };
        self.child = Some(child);
        self.pid = pid;
    }

    /// The server's processes: the main one, then its children.
    fn pids(&self) -> Vec<u32> {
        let mut pids = vec![self.pid];
        if self.kind == Kind::Postgres {
            pids.extend(process::children(self.pid));
        }
        pids
    }
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // The test failed: the server's side of the story.
            for log in ["redis.log", "nats.log", "postgres.log"] {
                let text = process::read(&self.dir.path().join(log));
                let lines: Vec<&str> = text.lines().collect();
                let tail = lines[lines.len().saturating_sub(40)..].join("\n");
                if !tail.is_empty() {
                    eprintln!("--- the private server's {log}, last lines:\n{tail}");
                }
            }
        }
        if self.child.is_some() {
            // No wait and no panic here: the directory goes with `dir`.
            let _ = self.kill();
        }
    }
}
