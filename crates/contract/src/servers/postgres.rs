//! PostgreSQL in the test's directory: `initdb` once, `postgres` at each
//! start, as the `postgres` user when the test runs as root (the server
//! refuses root). Trust authentication on 127.0.0.1.

use std::fs::File;
use std::path::Path;
use std::process::{Child, Command};
use std::time::Duration;

use super::process;

/// `bin` (a PostgreSQL tool) run as the `postgres` user when we are root.
fn as_postgres(bin: &Path) -> Command {
    if process::is_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(bin);
        command
    } else {
        Command::new(bin)
    }
}

/// A new cluster in `dir/data`, owned by the user the server runs as.
pub fn init(postgres: &Path, dir: &Path) {
    if process::is_root() {
        let status = Command::new("chown")
            .arg("postgres")
            .arg(dir)
            .status()
            .expect("chown");
        assert!(status.success(), "chown postgres {}", dir.display());
    }
    let initdb = postgres.with_file_name("initdb");
    let out = as_postgres(&initdb)
        .arg("-D")
        .arg(dir.join("data"))
        .args(["-A", "trust", "-U", "postgres", "--locale=C", "-E", "UTF8"])
        // The drills crash processes, not the machine: skip initdb's fsyncs.
        .arg("--no-sync")
        .output()
        .expect("running initdb");
    assert!(
        out.status.success(),
        "initdb failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Starts the postmaster; returns the `runuser` child and the postmaster's
/// pid once `postmaster.pid` says it is ready (`previous` is the pid of a
/// killed earlier start, whose stale file must not count).
pub fn launch(bin: &Path, dir: &Path, port: u16, previous: u32, guard: Duration) -> (Child, u32) {
    let log = File::create(dir.join("postgres.log")).expect("the PostgreSQL log");
    let child = as_postgres(bin)
        .arg("-D")
        .arg(dir.join("data"))
        .args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1"])
        .arg("-c")
        .arg(format!("unix_socket_directories={}", dir.display()))
        // A killed process loses nothing the OS holds; only a machine crash
        // would need fsync, and the drills do not crash the machine.
        .args(["-c", "fsync=off", "-c", "max_connections=200"])
        // Dynamic shared memory in files under the data directory, not
        // /dev/shm: a killed server's segments go with its directory.
        .args(["-c", "dynamic_shared_memory_type=mmap"])
        .stdout(log.try_clone().expect("the PostgreSQL log"))
        .stderr(log)
        .spawn()
        .expect("spawning postgres");
    let pid_file = dir.join("data").join("postmaster.pid");
    let pid = process::wait_until(guard, "the private PostgreSQL to be ready", || {
        let contents = process::read(&pid_file);
        let lines: Vec<&str> = contents.lines().collect();
        let pid: u32 = lines.first()?.trim().parse().ok()?;
        let ready = lines.get(7).is_some_and(|status| status.trim() == "ready");
        (pid != previous && ready && process::answers_tcp(port)).then_some(pid)
    });
    (child, pid)
}
