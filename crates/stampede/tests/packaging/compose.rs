//! compose.yaml, the whole cluster on one host: valid against the compose
//! specification; the stack's shape (two distinct api services, every
//! dependency waited on until healthy, Redis without eviction, JetStream on
//! a volume); each node's environment, filled from what
//! `deploy/compose/new-env.sh` prints, accepted by the binary's own
//! validation; no secret in the file; Prometheus scraping exactly the
//! nodes; Grafana provisioned with the dashboard compose mounts.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use stampede::config::sources::Sources;
use stampede::config::{LogFormat, Role, Settings};

use crate::{lint, python_tool, read, repo, yaml};

/// The services that run the binary, and the role each must have.
const NODES: [(&str, Role); 3] = [
    ("api-a", Role::Api),
    ("api-b", Role::Api),
    ("worker", Role::Worker),
];

fn compose() -> Value {
    yaml(&repo().join("compose.yaml"))
}

fn service<'a>(compose: &'a Value, name: &str) -> &'a Value {
    let service = &compose["services"][name];
    assert!(service.is_object(), "no service {name} in compose.yaml");
    service
}

/// A compose duration (`45s`, `1m30s`, `500ms`).
fn duration(text: &str) -> Duration {
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap();
        let number: u64 = rest[..digits].parse().unwrap();
        rest = &rest[digits..];
        let unit = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        total += match &rest[..unit] {
            "h" => Duration::from_secs(number * 3600),
            "m" => Duration::from_secs(number * 60),
            "s" => Duration::from_secs(number),
            "ms" => Duration::from_millis(number),
            other => panic!("unit {other:?} in duration {text:?}"),
        };
        rest = &rest[unit..];
    }
    total
}

/// A short volume (`source:target[:mode]`) as (source, target).
fn mount(volume: &Value) -> (&str, &str) {
    let mut parts = volume.as_str().unwrap().split(':');
    (parts.next().unwrap(), parts.next().unwrap())
}

/// What `new-env.sh` prints, as variables.
fn new_env() -> BTreeMap<String, String> {
    let output = Command::new(repo().join("deploy/compose/new-env.sh"))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "new-env.sh: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| {
            let (name, value) = line.split_once('=').unwrap_or_else(|| panic!("{line}"));
            (name.to_owned(), value.to_owned())
        })
        .collect()
}

/// `text` with every `${NAME...}` replaced by `vars[NAME]` (all of them
/// must be there, as `${NAME:?}` demands).
fn interpolate(text: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').unwrap() + start;
        let name = rest[start + 2..end].split(':').next().unwrap();
        out.push_str(
            vars.get(name)
                .unwrap_or_else(|| panic!("new-env.sh does not set {name}")),
        );
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

/// The variables the image sets (its Dockerfile's `ENV`), under which
/// compose's `environment` goes.
fn image_env() -> Vec<(String, String)> {
    let stage = crate::image::final_stage();
    crate::image::instruction(&stage, "ENV")
        .iter()
        .flat_map(|line| line.split_whitespace())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap();
            (name.to_owned(), value.to_owned())
        })
        .collect()
}

/// A node's settings as the binary resolves them in its container: the
/// image's variables, then the service's, interpolated with `vars`.
fn node_settings(compose: &Value, name: &str, vars: &BTreeMap<String, String>) -> Settings {
    let mut env = image_env();
    let environment = service(compose, name)["environment"].as_object().unwrap();
    for (key, value) in environment {
        env.push((key.clone(), interpolate(value.as_str().unwrap(), vars)));
    }
    let settings = Settings::layered(&Sources {
        file: None,
        env,
        flags: Vec::new(),
    })
    .unwrap_or_else(|err| panic!("{name}: the binary refuses its settings: {err:#}"));
    assert!(
        settings.warnings.is_empty(),
        "{name}: {:?}",
        settings.warnings
    );
    settings
}

#[test]
fn compose_yaml_follows_the_compose_specification() {
    let mut command = python_tool("check-jsonschema");
    command
        .args(["--builtin-schema", "vendor.compose-spec"])
        .arg(repo().join("compose.yaml"));
    lint(command, "check-jsonschema (compose specification)");
}

#[test]
fn the_stack_waits_for_healthy_dependencies_and_runs_distinct_nodes() {
    let compose = compose();
    let services = compose["services"].as_object().unwrap();
    for name in [
        "nginx",
        "api-a",
        "api-b",
        "worker",
        "postgres",
        "redis",
        "nats",
        "prometheus",
        "grafana",
    ] {
        service(&compose, name);
    }
    let volumes = compose["volumes"].as_object().unwrap();
    for (name, service) in services {
        // One container each: nginx's upstream and Prometheus name them.
        let replicas = service["deploy"]["replicas"].as_u64().unwrap_or(1);
        assert!(replicas <= 1, "{name}: replicas {replicas}");
        assert!(service.get("scale").is_none(), "{name}: scale");
        let image = service["image"].as_str().unwrap();
        let tag = image.rsplit_once(':').map(|(_, tag)| tag);
        assert!(
            tag.is_some_and(|tag| tag != "latest"),
            "{name}: pin the image tag ({image})"
        );
        let test = &service["healthcheck"]["test"];
        assert!(
            test.is_array() && test[0] != "NONE",
            "{name} has no health check"
        );
        if let Some(depends) = service.get("depends_on") {
            let depends = depends
                .as_object()
                .unwrap_or_else(|| panic!("{name}: depends_on without conditions"));
            for (on, how) in depends {
                assert_eq!(how["condition"], "service_healthy", "{name} → {on}");
                assert!(
                    services[on]["healthcheck"]["test"].is_array(),
                    "{name} waits for {on}, which has no health check"
                );
            }
        }
        for volume in service["volumes"].as_array().into_iter().flatten() {
            let (source, _) = mount(volume);
            if let Some(path) = source.strip_prefix("./") {
                assert!(repo().join(path).exists(), "{name} mounts {source}");
            } else {
                assert!(volumes.contains_key(source), "{name}: volume {source}");
            }
        }
    }
    // The nodes: one image, built here, two distinct api services.
    for (name, _) in NODES {
        let node = service(&compose, name);
        assert_eq!(node["build"], ".", "{name}");
        assert_eq!(node["image"], service(&compose, "api-a")["image"], "{name}");
    }
    let nginx_waits: BTreeSet<&str> = service(&compose, "nginx")["depends_on"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(nginx_waits, BTreeSet::from(["api-a", "api-b"]));
}

#[test]
fn redis_never_evicts_and_the_stores_keep_their_data_on_volumes() {
    let compose = compose();
    let volumes = compose["volumes"].as_object().unwrap();
    let redis: Vec<&str> = service(&compose, "redis")["command"]
        .as_array()
        .unwrap()
        .iter()
        .map(|arg| arg.as_str().unwrap())
        .collect();
    let option = |name: &str| {
        let at = redis.iter().position(|arg| *arg == name);
        at.map(|at| redis[at + 1])
    };
    // An evicted ledger key would be a sale forgotten mid-flight; the
    // append-only file on a volume survives a restart.
    assert_eq!(
        option("--maxmemory-policy"),
        Some("noeviction"),
        "{redis:?}"
    );
    assert_eq!(option("--appendonly"), Some("yes"), "{redis:?}");
    let redis_data = service(&compose, "redis")["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(mount)
        .any(|(source, target)| target == "/data" && volumes.contains_key(source));
    assert!(redis_data, "Redis's data is not on a volume");

    // JetStream's store on a named volume.
    let nats = service(&compose, "nats");
    let args: Vec<&str> = nats["command"]
        .as_array()
        .unwrap()
        .iter()
        .map(|arg| arg.as_str().unwrap())
        .collect();
    assert!(args.contains(&"-js"), "{args:?}");
    let store = args
        .iter()
        .position(|arg| *arg == "-sd" || *arg == "--store_dir")
        .map(|at| args[at + 1])
        .unwrap_or_else(|| panic!("no JetStream store directory in {args:?}"));
    let on_volume = nats["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(mount)
        .any(|(source, target)| target == store && volumes.contains_key(source));
    assert!(on_volume, "the JetStream store {store} is not on a volume");
    let postgres_data = service(&compose, "postgres")["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(mount)
        .any(|(source, target)| {
            target == "/var/lib/postgresql/data" && volumes.contains_key(source)
        });
    assert!(postgres_data, "PostgreSQL's data is not on a volume");
}

#[test]
fn every_node_setting_is_one_the_binary_knows_and_accepts() {
    let compose = compose();
    let vars = new_env();
    let subnet = compose["networks"]["default"]["ipam"]["config"][0]["subnet"]
        .as_str()
        .unwrap();
    let services = compose["services"].as_object().unwrap();
    for (name, service) in services {
        for (key, _) in service["environment"].as_object().into_iter().flatten() {
            if let Some(setting) = key.strip_prefix("STAMPEDE_") {
                assert!(
                    stampede::config::names::Setting::named(&setting.to_ascii_lowercase())
                        .is_some(),
                    "{key} of {name} is not a setting"
                );
            }
        }
    }
    for (name, role) in NODES {
        let node = service(&compose, name);
        let settings = node_settings(&compose, name, &vars);
        assert_eq!(settings.role, role, "{name}");
        // Cluster mode, all three shared stores.
        assert!(settings.database.is_some(), "{name}: no database");
        assert!(settings.redis_url.is_some(), "{name}: no Redis");
        assert!(settings.nats_url.is_some(), "{name}: no NATS");
        assert_eq!(settings.nats_replicas, 1, "{name}: one NATS server");
        assert_eq!(settings.log.format, Some(LogFormat::Json), "{name}");
        let environment = &node["environment"];
        assert_eq!(environment["STAMPEDE_TRUSTED_PROXIES"], subnet, "{name}");
        for url in [
            environment["STAMPEDE_REDIS_URL"].as_str().unwrap(),
            environment["STAMPEDE_NATS_URL"].as_str().unwrap(),
            environment["STAMPEDE_PUBLIC_URL"].as_str().unwrap(),
        ] {
            let host = url.split("://").nth(1).unwrap().split([':', '/']).next();
            assert!(
                services.contains_key(host.unwrap()),
                "{name}: {url} is not a service of the stack"
            );
        }

        // Ready on the port it listens on; stopped after its drain.
        let port = settings.listen.port();
        let check: Vec<&str> = node["healthcheck"]["test"]
            .as_array()
            .unwrap()
            .iter()
            .map(|arg| arg.as_str().unwrap())
            .collect();
        assert_eq!(check[..2], ["CMD", "curl"], "{name}");
        assert!(check.contains(&"--fail"), "{name}: {check:?}");
        assert_eq!(
            check.last(),
            Some(&format!("http://127.0.0.1:{port}/readyz").as_str()),
            "{name}"
        );
        let stop = duration(node["stop_grace_period"].as_str().unwrap());
        assert!(
            stop > settings.shutdown_grace,
            "{name}: stop_grace_period {stop:?} must exceed the drain {:?}",
            settings.shutdown_grace
        );
    }
}

#[test]
fn secrets_come_from_new_env_and_none_is_in_the_file() {
    let text = read("compose.yaml");
    let required: BTreeSet<String> = text
        .match_indices("${")
        .map(|(at, _)| {
            let inner = &text[at + 2..at + text[at..].find('}').unwrap()];
            let (name, rule) = inner.split_at(inner.find(':').unwrap_or(inner.len()));
            // Never a silent default: unset must stop `docker compose up`.
            assert!(rule.starts_with(":?"), "${{{inner}}} may be unset");
            name.to_owned()
        })
        .collect();
    let first = new_env();
    let printed: BTreeSet<String> = first.keys().cloned().collect();
    assert_eq!(
        required, printed,
        "compose.yaml's ${{VAR:?}} and new-env.sh"
    );

    // Each secret in the environment comes from .env.
    let compose = compose();
    for (name, service) in compose["services"].as_object().unwrap() {
        for (key, value) in service["environment"].as_object().into_iter().flatten() {
            let value = value.as_str().unwrap();
            if ["SECRET", "PASSWORD", "KEY"]
                .iter()
                .any(|s| key.contains(s))
            {
                assert!(
                    value.starts_with("${") && value.ends_with('}'),
                    "{name}: {key} is written in compose.yaml"
                );
            }
        }
    }
    let database = &service(&compose, "api-a")["environment"]["STAMPEDE_DATABASE_URL"];
    assert!(
        database
            .as_str()
            .unwrap()
            .contains(":${POSTGRES_PASSWORD:?"),
        "{database}"
    );

    // Fresh each time, and of a form that needs no quoting in a URL or
    // in .env; the binary's own checks run in
    // `every_node_setting_is_one_the_binary_knows_and_accepts`.
    let second = new_env();
    for (name, value) in &first {
        assert!(value.len() >= 32, "{name} is short: {value}");
        assert!(
            value.bytes().all(|b| b.is_ascii_hexdigit()),
            "{name}: {value}"
        );
        assert_ne!(value, &second[name], "{name} is not random");
    }
    for ignores in [".gitignore", ".dockerignore"] {
        assert!(
            read(ignores).lines().any(|line| line.trim() == ".env"),
            "{ignores} must leave out .env"
        );
    }
}

#[test]
fn prometheus_in_the_stack_scrapes_exactly_the_nodes() {
    let compose = compose();
    let prometheus = service(&compose, "prometheus");
    let mounts: BTreeMap<&str, &str> = prometheus["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(mount)
        .collect();
    let config = mounts["./deploy/compose/prometheus.yml"];
    let alerts = mounts["./deploy/prometheus/alerts.yml"];
    // The image's default --config.file; the alerts beside it.
    assert_eq!(config, "/etc/prometheus/prometheus.yml");
    let alerts = Path::new(alerts);
    assert_eq!(alerts.parent(), Path::new(config).parent());

    // promtool reads the rule files relative to the configuration.
    let scratch = tempfile::tempdir().unwrap();
    let copied = scratch.path().join("prometheus.yml");
    std::fs::copy(repo().join("deploy/compose/prometheus.yml"), &copied).unwrap();
    std::fs::copy(
        repo().join("deploy/prometheus/alerts.yml"),
        scratch.path().join(alerts.file_name().unwrap()),
    )
    .unwrap();
    let mut command = Command::new("promtool");
    command.args(["check", "config"]).arg(&copied);
    lint(command, "promtool check config");

    let scrape = yaml(&copied);
    let rules: Vec<&str> = scrape["rule_files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|file| file.as_str().unwrap())
        .collect();
    assert_eq!(rules, [alerts.file_name().unwrap().to_str().unwrap()]);
    let jobs = scrape["scrape_configs"].as_array().unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0]["job_name"], "stampede", "StampedeDown reads it");
    let targets: BTreeSet<String> = jobs[0]["static_configs"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|config| config["targets"].as_array().unwrap())
        .map(|target| target.as_str().unwrap().to_owned())
        .collect();
    let vars = new_env();
    let nodes: BTreeSet<String> = NODES
        .iter()
        .map(|(name, _)| {
            let port = node_settings(&compose, name, &vars).listen.port();
            format!("{name}:{port}")
        })
        .collect();
    assert_eq!(targets, nodes);
}

#[test]
fn grafana_provisions_prometheus_and_the_dashboard_compose_mounts() {
    let compose = compose();
    let grafana = service(&compose, "grafana");
    let mounts: BTreeMap<&str, &str> = grafana["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(mount)
        .collect();
    for kind in ["datasources", "dashboards"] {
        assert_eq!(
            mounts[format!("./deploy/grafana/provisioning/{kind}").as_str()],
            format!("/etc/grafana/provisioning/{kind}"),
        );
    }
    let provisioning = repo().join("deploy/grafana/provisioning");

    let sources = yaml(&provisioning.join("datasources/prometheus.yml"));
    assert_eq!(sources["apiVersion"], 1);
    let sources = sources["datasources"].as_array().unwrap();
    assert_eq!(sources.len(), 1);
    let source = &sources[0];
    assert_eq!(source["isDefault"], true, "the dashboard takes the default");
    // The Prometheus of the stack, on the port its health check reads.
    let prometheus_check = service(&compose, "prometheus")["healthcheck"]["test"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .as_str()
        .unwrap();
    let port = prometheus_check
        .strip_prefix("http://localhost:")
        .unwrap()
        .split('/')
        .next()
        .unwrap();
    assert_eq!(source["url"], format!("http://prometheus:{port}"));

    let dashboard: Value = serde_json::from_str(&read("deploy/grafana/stampede.json")).unwrap();
    let variable = dashboard["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .find(|variable| variable["type"] == "datasource")
        .unwrap();
    assert_eq!(
        source["type"], variable["query"],
        "the dashboard's data source"
    );

    let providers = yaml(&provisioning.join("dashboards/stampede.yml"));
    assert_eq!(providers["apiVersion"], 1);
    let provider = &providers["providers"][0];
    assert_eq!(provider["type"], "file");
    let folder = Path::new(provider["options"]["path"].as_str().unwrap());
    let mounted = Path::new(mounts["./deploy/grafana/stampede.json"]);
    assert_eq!(mounted.parent(), Some(folder), "the provider's folder");
    assert_eq!(
        grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"],
        mounted.to_str().unwrap()
    );
}
