//! The files under `deploy/` against the real thing: `promtool` checks the
//! Prometheus config and unit-tests the alerts; a real Prometheus scrapes a
//! node through a short sale, and every dashboard panel's and alert's query
//! is evaluated through its HTTP API. A fresh node must already expose every
//! metric those files name (run in both modes: this module is shared).
//!
//! Needs Debian's `prometheus` package (`scripts/setup.sh` installs it).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use reqwest::StatusCode;
use serde_json::Value;

use crate::harness::{Api, Binary, DataDir, crowd, eventually, require_tool, wait_for};

/// Per-sale series appear with the first live sale, not at start.
const PER_SALE: &[&str] = &["stampede_sale_remaining", "stampede_sale_sold"];

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy")
}

fn run_ok(mut command: Command, what: &str) {
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{what} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Every PromQL expression of the alerts.
fn alert_queries() -> Vec<String> {
    let text = std::fs::read_to_string(deploy().join("prometheus/alerts.yml")).unwrap();
    // `expr:` is either on its line or a `|` block indented below it.
    let mut queries = Vec::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let Some(rest) = line.trim_start().strip_prefix("expr:") else {
            continue;
        };
        let rest = rest.trim();
        if rest != "|" {
            queries.push(rest.to_owned());
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        let mut block = String::new();
        while let Some(next) = lines.peek() {
            let next_indent = next.len() - next.trim_start().len();
            if !next.trim().is_empty() && next_indent <= indent {
                break;
            }
            block.push_str(next.trim());
            block.push(' ');
            lines.next();
        }
        queries.push(block.trim().to_owned());
    }
    queries
}

/// Every panel's queries (title, expression), with the node variable
/// standing for every node.
fn panel_queries() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(deploy().join("grafana/stampede.json")).unwrap();
    let dashboard: Value = serde_json::from_str(&text).unwrap();
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        let title = panel["title"].as_str().unwrap().to_owned();
        let targets = panel["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "panel {title} has no query");
        for target in targets {
            let expr = target["expr"].as_str().unwrap().replace("$instance", ".+");
            queries.push((title.clone(), expr));
        }
    }
    queries
}

/// The `stampede_*` metric names an expression reads.
fn names_in(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = expr;
    while let Some(at) = rest.find("stampede_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.insert(tail[..end].to_owned());
        rest = &tail[end..];
    }
    names
}

/// The metric names in a Prometheus text exposition.
fn exposed(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .filter_map(|line| line.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

struct Prometheus {
    child: Child,
    base: String,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Scrapes `target` every second and evaluates the deployed alerts.
    fn start(target: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let alerts = deploy()
            .join("prometheus/alerts.yml")
            .canonicalize()
            .unwrap();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - {}\n\
             scrape_configs:\n  - job_name: stampede\n    static_configs:\n      - targets: [\"{target}\"]\n",
            alerts.display()
        );
        let config_file = dir.path().join("prometheus.yml");
        std::fs::write(&config_file, config).unwrap();
        let child = require_tool("prometheus")
            .arg(format!("--config.file={}", config_file.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        }
    }

    /// A JSON answer of the HTTP API (`Err` also while it is starting).
    async fn get(
        &self,
        client: &reqwest::Client,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<Value, String> {
        let url = reqwest::Url::parse_with_params(&format!("{}{path}", self.base), query)
            .map_err(|e| e.to_string())?;
        let response = client.get(url).send().await.map_err(|e| e.to_string())?;
        response.json().await.map_err(|e| e.to_string())
    }

    /// The instant vector `expr` evaluates to, or the error Prometheus gives.
    async fn query(&self, client: &reqwest::Client, expr: &str) -> Result<Vec<Value>, String> {
        let answer = self
            .get(client, "/api/v1/query", &[("query", expr)])
            .await?;
        if answer["status"] != "success" {
            return Err(answer["error"].to_string());
        }
        Ok(answer["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn promtool_checks_the_config_and_unit_tests_the_alerts() {
    let dir = deploy().join("prometheus");
    let mut check = require_tool("promtool");
    check
        .current_dir(&dir)
        .args(["check", "config", "prometheus.yml"]);
    run_ok(check, "promtool check config");
    let mut test = require_tool("promtool");
    test.current_dir(&dir)
        .args(["test", "rules", "alerts.test.yml"]);
    run_ok(test, "promtool test rules");
}

#[test]
fn the_dashboard_and_alerts_read_what_they_should() {
    let panels = panel_queries();
    assert!(panels.len() >= 8, "{} dashboard queries", panels.len());
    let alerts = alert_queries();
    assert_eq!(alerts.len(), 8, "{alerts:?}");
    assert!(alerts.iter().all(|expr| !expr.is_empty()), "{alerts:?}");
    assert!(names_in(&alerts.join(" ")).contains("stampede_ledger_drift_total"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_real_prometheus_scrapes_a_sale_and_every_query_answers() {
    let data = DataDir::new();
    let binary = Binary::start(&data);
    let api = Arc::new(Api::new(&binary));
    let client = reqwest::Client::new();

    // A fresh node already exposes every series the deployed files name.
    let panels = panel_queries();
    let alerts = alert_queries();
    let named: BTreeSet<String> = panels
        .iter()
        .map(|(_, expr)| expr.as_str())
        .chain(alerts.iter().map(String::as_str))
        .flat_map(names_in)
        .collect();
    let fresh = exposed(&api.metrics().await);
    let missing: Vec<&String> = named
        .iter()
        .filter(|name| !PER_SALE.contains(&name.as_str()) && !fresh.contains(*name))
        .collect();
    assert!(
        missing.is_empty(),
        "a fresh node does not expose {missing:?}"
    );

    let prometheus = Prometheus::start(&binary.addr.to_string());
    eventually(30, "Prometheus to scrape the node", || async {
        let up = prometheus
            .query(&client, "up{job=\"stampede\"} == 1")
            .await
            .ok()?;
        (!up.is_empty()).then_some(())
    })
    .await;

    // A short sale: 40 units, 120 buyers, one each.
    let sale = api.create_sale(40, 1).await;
    let (tasks, answers) = crowd(&api, &sale, 120, 1);
    wait_for(&answers, StatusCode::ACCEPTED, 40).await;
    for task in tasks {
        task.await.unwrap();
    }
    // Scraped after the sale: the wins are counted and the stock is gone.
    eventually(30, "a scrape after the sale", || async {
        let remaining = prometheus
            .query(
                &client,
                &format!("stampede_sale_remaining{{sale_id=\"{sale}\"}} == 0"),
            )
            .await
            .ok()?;
        let won = prometheus
            .query(&client, "stampede_purchases_total{outcome=\"won\"} >= 40")
            .await
            .ok()?;
        (!remaining.is_empty() && !won.is_empty()).then_some(())
    })
    .await;

    let scraped: BTreeSet<String> = prometheus
        .get(&client, "/api/v1/label/__name__/values", &[])
        .await
        .unwrap()["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|name| name.as_str().map(str::to_owned))
        .collect();
    let mut failures = Vec::new();
    for name in &named {
        if !scraped.contains(name) {
            failures.push(format!("{name} is named under deploy/ but not scraped"));
        }
    }
    for (title, expr) in &panels {
        match prometheus.query(&client, expr).await {
            Ok(result) if result.is_empty() => {
                failures.push(format!("panel {title:?}: no data for {expr}"));
            }
            Ok(_) => {}
            Err(error) => failures.push(format!("panel {title:?}: {expr}: {error}")),
        }
    }
    for expr in &alerts {
        if let Err(error) = prometheus.query(&client, expr).await {
            failures.push(format!("alert query {expr}: {error}"));
        }
    }
    // Prometheus itself evaluated every alert without an error.
    let rules = prometheus.get(&client, "/api/v1/rules", &[]).await.unwrap();
    let evaluated: Vec<&Value> = rules["data"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|group| group["rules"].as_array().unwrap())
        .collect();
    assert_eq!(evaluated.len(), alerts.len(), "{rules}");
    for rule in evaluated {
        if rule["health"] != "ok" {
            failures.push(format!("rule {}: {}", rule["name"], rule["lastError"]));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
