//! `redis-server` without persistence: a restart comes back empty, as a
//! Redis that lost its memory does.

use std::fs::File;
use std::path::Path;
use std::process::{Child, Command};
use std::time::Duration;

use super::process;

pub fn launch(bin: &Path, dir: &Path, port: u16, guard: Duration) -> (Child, u32) {
    let log = dir.join("redis.log");
    let child = Command::new(bin)
        .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
        .args(["--save", "", "--appendonly", "no", "--dir"])
        .arg(dir)
        .stdout(File::create(&log).expect("the Redis log"))
        .stderr(File::create(dir.join("redis.err")).expect("the Redis log"))
        .spawn()
        .expect("spawning redis-server");
    let pid = child.id();
    process::wait_until(guard, "the private Redis to answer PING", || {
        process::answers(port, b"PING\r\n", b"+PONG").then_some(())
    });
    (child, pid)
}
