//! `stampede bench flash-sale` and `stampede audit`, run as a user would: the
//! real CLI against the real server. A small run must audit clean, and the
//! audit must catch a state made inconsistent behind the server's back.
//! Nothing here asserts a timing or a throughput: those are measured
//! (docs/benchmarks.md), never tested.

use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;

use crate::harness::{Binary, DataDir, SECRET};

/// Runs the `stampede` CLI with `args`, without inheriting a secret from the
/// environment (it must come from the flags).
fn stampede(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_stampede"))
        .args(args)
        .env_remove("STAMPEDE_JWT_SECRET")
        .env_remove("STAMPEDE_DATA_DIR")
        .output()
        .expect("running stampede")
}

fn text(output: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn count(value: &Value) -> u64 {
    value
        .as_u64()
        .unwrap_or_else(|| panic!("not a count: {value}"))
}

#[test]
fn a_small_bench_audits_clean_and_the_audit_catches_an_order_slipped_into_the_database() {
    if crate::ON_POSTGRES {
        // The load generator is the same whatever the store; this test's
        // tampering writes SQLite.
        return;
    }
    let dir = DataDir::new();
    let binary = Binary::start(&dir);
    let target = format!("http://{}", binary.addr);

    let run = stampede(&[
        "bench",
        "flash-sale",
        "--target",
        &target,
        "--jwt-secret",
        SECRET,
        "--users",
        "200",
        "--stock",
        "50",
        "--per-user-limit",
        "1",
        "--duration",
        "2s",
        "--connections",
        "16",
        "--json",
    ]);
    assert!(run.status.success(), "{}", text(&run));
    let report: Value = serde_json::from_slice(&run.stdout)
        .unwrap_or_else(|e| panic!("--json printed no JSON ({e}): {}", text(&run)));

    assert_eq!(report["audit_ok"], true, "{report:#}");
    assert_eq!(report["audit_violations"], serde_json::json!([]));
    let outcomes = &report["outcomes"];
    assert_eq!(count(&outcomes["won"]), 50, "{report:#}");
    assert_eq!(count(&outcomes["error"]), 0, "{report:#}");
    let total: u64 = outcomes.as_object().unwrap().values().map(count).sum();
    assert_eq!(total, count(&report["purchase"]["requests"]), "{report:#}");
    assert_eq!(report["audit"]["sold"], 50);
    assert_eq!(report["audit"]["remaining"], 0);
    assert_eq!(count(&report["audit"]["orders_checked"]), 50);
    assert_eq!(count(&report["audit"]["users_checked"]), 200);
    // The documented shape is there (values are measurements, not checked).
    for field in ["livez_rps", "losing_rps", "won_per_sec", "losing_ratio"] {
        assert!(report[field].is_number(), "{field} missing: {report:#}");
    }
    for percentile in ["p50", "p99", "p999"] {
        assert!(report["latency_ms"]["won"][percentile].is_number());
    }
    assert_eq!(count(&report["replays"]["mismatched"]), 0);

    // Slip a second order for a winner into the database, past the ledger:
    // the ledger no longer equals the database, and that customer holds two
    // units where the limit is one.
    let sale = report["sale_id"].as_str().unwrap();
    let prefix = report["user_prefix"].as_str().unwrap();
    let db = rusqlite::Connection::open(dir.path().join("stampede.db")).unwrap();
    db.busy_timeout(Duration::from_secs(10)).unwrap();
    let winner: String = db
        .query_row(
            "SELECT user_id FROM orders WHERE sale_id = ?1 LIMIT 1",
            [sale],
            |row| row.get(0),
        )
        .unwrap();
    let inserted = db
        .execute(
            "INSERT INTO orders (id, user_id, sale_id, product_id, quantity, amount_cents, currency,
                                 status, idempotency_key, created_at, expires_at, updated_at)
             SELECT 'ffffffff-ffff-7fff-bfff-ffffffffffff', user_id, sale_id, product_id, quantity,
                    amount_cents, currency, 'awaiting_payment', 'slipped-in', created_at,
                    expires_at, updated_at
             FROM orders WHERE sale_id = ?1 AND user_id = ?2",
            [sale, winner.as_str()],
        )
        .unwrap();
    assert_eq!(inserted, 1);
    drop(db);

    let audit = stampede(&[
        "audit",
        "--target",
        &target,
        "--jwt-secret",
        SECRET,
        "--sale",
        sale,
        "--users",
        "200",
        "--user-prefix",
        prefix,
    ]);
    assert_eq!(audit.status.code(), Some(1), "{}", text(&audit));
    let out = String::from_utf8_lossy(&audit.stdout);
    assert!(out.contains("ledger ≠ database"), "{}", text(&audit));
    assert!(out.contains("oversold"), "{}", text(&audit));
    assert!(
        out.contains(&format!("{winner} holds 2 units")),
        "{}",
        text(&audit)
    );

    // Alone, without knowing any customer, the sale's own numbers give it away.
    let alone = stampede(&[
        "audit",
        "--target",
        &target,
        "--jwt-secret",
        SECRET,
        "--sale",
        sale,
        "--json",
    ]);
    assert_eq!(alone.status.code(), Some(1), "{}", text(&alone));
    let found: Value = serde_json::from_slice(&alone.stdout).unwrap();
    assert_eq!(found["ok"], false);
    assert_eq!(found["sold"], 51, "{found:#}");
}
