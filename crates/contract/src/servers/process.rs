//! Processes for the private servers: finding binaries, free ports,
//! signals, children, and waiting for readiness.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The binary `name` on `PATH` (or `/usr/local/bin`, where the PostgreSQL
/// tools are linked); `None` outside CI when it is missing.
pub fn tool_or_skip(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/local/bin")])
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file());
    if found.is_none() {
        if std::env::var("CI").is_ok_and(|ci| ci == "true") {
            panic!("{name} is missing under CI=true: the fault drills need it");
        }
        eprintln!("skipped: {name} is not installed, so the drill cannot run its own");
    }
    found
}

/// A port nothing listens on now (the server binds it a moment later).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free local port")
        .port()
}

/// `kill -<signal> <pid>`; a process already gone is no error.
pub fn signal(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status();
}

/// The direct children of `pid` (empty once it is gone).
pub fn children(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|child| child.parse().ok())
        .collect()
}

/// Whether `pid` is stopped (SIGSTOP) or gone.
pub fn is_stopped(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |stat| {
        // The state follows the parenthesised command name.
        stat.rsplit_once(") ").is_none_or(|(_, rest)| {
            !rest.starts_with('R') && !rest.starts_with('S') && !rest.starts_with('D')
        })
    })
}

/// Whether every process of `pids` has exited (a zombie has).
pub fn all_gone(pids: &[u32]) -> bool {
    pids.iter().all(|pid| {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |stat| {
            // The state follows the parenthesised command name.
            stat.rsplit_once(") ")
                .is_none_or(|(_, rest)| rest.starts_with('Z') || rest.starts_with('X'))
        })
    })
}

/// Polls `check` every 50 ms until it returns `Some`; panics after `guard`.
pub fn wait_until<T>(guard: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + guard;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Sends `request` to `127.0.0.1:port` and whether the answer starts with
/// `expected` (a readiness probe in the server's own protocol).
pub fn answers(port: u16, request: &[u8], expected: &[u8]) -> bool {
    let exchange = || -> std::io::Result<bool> {
        let mut stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        stream.write_all(request)?;
        let mut answer = vec![0_u8; expected.len()];
        stream.read_exact(&mut answer)?;
        Ok(answer == expected)
    };
    exchange().unwrap_or(false)
}

/// The file's contents, empty when unreadable.
pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Whether this process runs as root (servers like PostgreSQL refuse to).
pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| out.stdout.trim_ascii() == b"0")
}

/// Whether something accepts connections on `127.0.0.1:port`.
pub fn answers_tcp(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).is_ok()
}
