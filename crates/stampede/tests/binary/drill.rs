//! `stampede drill`, a few rounds as CI runs them: each starts a fresh
//! deployment of this binary, kills a node with SIGKILL mid-crowd, restarts
//! it, and passes the audit and the history check. Embedded mode in the
//! `binary` test binary, cluster mode (two api nodes and a worker) in
//! `binary-postgres`, skipped there without the services outside CI. The
//! checks themselves are shown to fail in crates/bench/src/check_tests.rs.

use std::process::Command;

use crate::harness::DataDir;

#[test]
fn crash_drills_keep_every_promise_a_history_can_see() {
    let mode = if crate::ON_POSTGRES {
        // Services missing outside CI: skip (under CI=true DataDir fails).
        if !DataDir::new().is_cluster() {
            return;
        }
        "cluster"
    } else {
        "embedded"
    };
    let work = tempfile::tempdir().unwrap();
    // No cancels in cluster mode: a cancel committed in PostgreSQL whose node
    // is killed before it returns the units to Redis leaves the ledger short
    // for good — I2's known gap (docs/design.md), which 100-round drills
    // find about once (docs/reliability.md). Embedded mode rebuilds its
    // ledger at start, so there cancels are drilled too.
    let pay_cancel = if crate::ON_POSTGRES { "0" } else { "0.3" };
    let output = Command::new(env!("CARGO_BIN_EXE_stampede"))
        .args(["drill", "--seed", "15", "--rounds", "2", "--mode", mode])
        .args(["--duration", "1500ms", "--users", "100", "--stock", "40"])
        .args(["--pay-cancel-ratio", pay_cancel])
        .arg("--work-dir")
        .arg(work.path())
        .env_remove("STAMPEDE_JWT_SECRET")
        .env_remove("STAMPEDE_DATA_DIR")
        .output()
        .expect("running stampede drill");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let text = format!(
        "exit {:?}\nstdout:\n{stdout}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{text}");
    assert!(stdout.contains("round 0 seed 15: ok"), "{text}");
    assert!(stdout.contains("round 1 seed 16: ok"), "{text}");
    assert!(stdout.contains("2 rounds, 0 failed, seed 15"), "{text}");
    // Each round recorded requests and killed a node of the deployment.
    assert_eq!(stdout.matches("1 crashes").count(), 2, "{text}");
}
