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
    let page = dir.path().join("run.html");

    let run = stampede(&[
        "bench",
        "flash-sale",
        "--report",
        page.to_str().unwrap(),
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

    // The HTML report: one page that needs nothing else, with both charts,
    // a line per outcome that occurred, and the audit's verdict.
    let page = std::fs::read_to_string(&page).unwrap();
    assert!(page.starts_with("<!doctype html>"), "{page}");
    for fetches in ["<script", "src=", "<link", "url(", "@import"] {
        assert!(
            !page.contains(fetches),
            "the report fetches ({fetches}): {page}"
        );
    }
    assert_eq!(page.matches("<svg").count(), 2, "{page}");
    assert!(page.contains("<td>won</td><td>50</td>"), "{page}");
    let refused = report["outcomes"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(name, n)| *name != "won" && count(n) > 0)
        .count();
    // Each outcome: a line in each chart.
    assert_eq!(
        page.matches("<polyline").count(),
        2 * (1 + refused),
        "{page}"
    );
    assert!(page.contains("class=\"ok\">clean</span>"), "{page}");

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

/// The history lines of `path`, parsed.
fn history(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

#[test]
fn a_recorded_history_checks_clean_and_the_check_catches_a_lost_order_and_a_paid_cancel() {
    if crate::ON_POSTGRES {
        // The tampering below writes SQLite.
        return;
    }
    let dir = DataDir::new();
    let binary = Binary::start(&dir);
    let target = format!("http://{}", binary.addr);
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("history.jsonl");
    let file_arg = file.to_str().unwrap();

    let run = stampede(&[
        "bench",
        "flash-sale",
        "--target",
        &target,
        "--jwt-secret",
        SECRET,
        "--users",
        "100",
        "--stock",
        "40",
        "--per-user-limit",
        "2",
        "--duration",
        "2s",
        "--connections",
        "8",
        "--replay-ratio",
        "0.2",
        "--pay-cancel-ratio",
        "0.5",
        "--no-ceiling",
        "--history",
        file_arg,
        "--json",
    ]);
    assert!(run.status.success(), "{}", text(&run));
    let report: Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(report["audit_ok"], true, "{report:#}");

    // Every request is in the history, with its answer.
    let records = history(&file);
    let purchases = records.iter().filter(|r| r["op"] == "purchase").count() as u64;
    assert_eq!(
        purchases,
        count(&report["purchase"]["requests"]),
        "{report:#}"
    );
    let won: Vec<&Value> = records.iter().filter(|r| r["outcome"] == "won").collect();
    assert_eq!(won.len() as u64, count(&report["outcomes"]["won"]));
    assert!(
        won.iter()
            .all(|r| r["status"] == 202 && r["order"].is_string())
    );
    let cancelled: Vec<&Value> = records
        .iter()
        .filter(|r| r["op"] == "cancel" && r["outcome"] == "ok")
        .collect();
    assert!(!cancelled.is_empty(), "no cancel went through");
    assert!(records.iter().any(|r| r["op"] == "pay"), "no pay was sent");

    let check = |label: &str| {
        let out = stampede(&[
            "check-history",
            "--target",
            &target,
            "--jwt-secret",
            SECRET,
            file_arg,
        ]);
        eprintln!("{label}: {}", text(&out));
        out
    };
    let clean = check("before tampering");
    assert!(clean.status.success(), "{}", text(&clean));

    // Behind the server's back: hand an acknowledged order to someone else
    // (lost for its buyer), and mark a cancelled order paid.
    let cancelled_ids: Vec<&str> = cancelled
        .iter()
        .map(|r| r["order"].as_str().unwrap())
        .collect();
    let kept = won
        .iter()
        .map(|r| r["order"].as_str().unwrap())
        .find(|id| !cancelled_ids.contains(id))
        .unwrap();
    let db = rusqlite::Connection::open(dir.path().join("stampede.db")).unwrap();
    db.busy_timeout(Duration::from_secs(10)).unwrap();
    let moved = db
        .execute(
            "UPDATE orders SET user_id = 'someone-else' WHERE id = ?1",
            [kept],
        )
        .unwrap();
    let paid = db
        .execute(
            "UPDATE orders SET status = 'paid' WHERE id = ?1",
            [cancelled_ids[0]],
        )
        .unwrap();
    assert_eq!((moved, paid), (1, 1));
    drop(db);

    let caught = check("after tampering");
    assert_eq!(caught.status.code(), Some(1), "{}", text(&caught));
    let out = String::from_utf8_lossy(&caught.stdout);
    assert!(
        out.contains(&format!("lost order (I5): order {kept}")),
        "{}",
        text(&caught)
    );
    assert!(
        out.contains(&format!(
            "pay and cancel both took (I7): order {}",
            cancelled_ids[0]
        )),
        "{}",
        text(&caught)
    );
}

#[test]
fn the_crowd_100x_stock_scenario_sells_out_and_reports_the_requests_in_flight_then() {
    let dir = DataDir::new();
    let binary = Binary::start(&dir);
    let target = format!("http://{}", binary.addr);
    let run = stampede(&[
        "bench",
        "flash-sale",
        "--scenario",
        "crowd-100x-stock",
        "--target",
        &target,
        "--jwt-secret",
        SECRET,
        "--stock",
        "20",
        "--duration",
        "2s",
        "--connections",
        "32",
        "--no-ceiling",
        "--json",
    ]);
    assert!(run.status.success(), "{}", text(&run));
    let report: Value = serde_json::from_slice(&run.stdout)
        .unwrap_or_else(|e| panic!("--json printed no JSON ({e}): {}", text(&run)));
    assert_eq!(report["audit_ok"], true, "{report:#}");
    assert_eq!(count(&report["users"]), 2000, "100 × the stock");
    assert_eq!(count(&report["outcomes"]["won"]), 20, "{report:#}");
    // Sold out with the crowd still sending: the requests in flight at that
    // moment are counted (how long they waited is a figure, not a test).
    let sell_out = &report["sell_out"];
    assert!(count(&sell_out["in_flight"]) >= 1, "{report:#}");
    assert!(sell_out["waited_max_ms"].as_f64().is_some(), "{report:#}");
    assert!(
        String::from_utf8_lossy(&run.stderr).contains("sell-out "),
        "{}",
        text(&run)
    );
}
