//! `nats-server -js` with its JetStream store in the test's directory, so
//! streams survive a restart.

use std::fs::File;
use std::path::Path;
use std::process::{Child, Command};
use std::time::Duration;

use super::process;

pub fn launch(bin: &Path, dir: &Path, port: u16, guard: Duration) -> (Child, u32) {
    let log = dir.join("nats.log");
    let child = Command::new(bin)
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(dir.join("jetstream"))
        .stdout(File::create(dir.join("nats.out")).expect("the NATS log"))
        // A new file per start: readiness is read from this start's lines.
        .stderr(File::create(&log).expect("the NATS log"))
        .spawn()
        .expect("spawning nats-server");
    let pid = child.id();
    process::wait_until(guard, "the private NATS to be ready", || {
        (process::read(&log).contains("Server is ready") && process::answers(port, b"", b"INFO"))
            .then_some(())
    });
    (child, pid)
}
