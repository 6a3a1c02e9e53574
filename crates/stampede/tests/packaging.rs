//! The packaging files against real linters: hadolint on the Dockerfile and
//! check-jsonschema's GitHub-workflow schema on the CI workflow (from PyPI,
//! installed by `scripts/setup.sh` under the target directory), shellcheck
//! (Debian) on every shell script; and what the image and the workflow must
//! promise, read from the files themselves: a non-root user, a health check
//! on `/livez` at the port it listens on, SIGTERM to stop, a build context
//! without build outputs, data or history; and a workflow that runs
//! `.ci/run` with the cluster tests' services and `CI=true`.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap()
}

/// Runs a linter and fails with its findings.
fn lint(mut command: Command, what: &str) {
    let output = command
        .output()
        .unwrap_or_else(|err| panic!("{what} could not run ({err}): run scripts/setup.sh"));
    assert!(
        output.status.success(),
        "{what} found problems:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A tool from scripts/requirements-tools.txt, in the virtual environment
/// `scripts/setup.sh` makes in the target directory (the parent of this
/// test's scratch directory).
fn python_tool(name: &str) -> Command {
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).parent().unwrap();
    let tool = target.join("tools-venv/bin").join(name);
    assert!(
        tool.is_file(),
        "{} is missing: run scripts/setup.sh",
        tool.display()
    );
    Command::new(tool)
}

#[test]
fn hadolint_passes_on_the_dockerfile() {
    let mut command = python_tool("hadolint");
    command
        .arg("--failure-threshold")
        .arg("info")
        .arg(repo().join("Dockerfile"));
    lint(command, "hadolint");
}

#[test]
fn shellcheck_passes_on_every_script() {
    let mut scripts = vec![PathBuf::from(".ci/run")];
    for dir in ["scripts", "scripts/lib"] {
        for entry in std::fs::read_dir(repo().join(dir)).unwrap() {
            let name = PathBuf::from(entry.unwrap().file_name());
            if name.extension().is_some_and(|ext| ext == "sh") {
                scripts.push(Path::new(dir).join(name));
            }
        }
    }
    assert!(scripts.len() > 5, "{scripts:?}");
    // From the repository's root, where the scripts' `source` paths start.
    let mut command = Command::new("shellcheck");
    command
        .current_dir(repo())
        .arg("--external-sources")
        .args(&scripts);
    lint(command, "shellcheck");
}

/// The instructions of the Dockerfile's last stage (the image), joined
/// across continuation lines, without comments.
fn final_stage() -> Vec<String> {
    let text = read("Dockerfile");
    let joined = text.replace("\\\n", " ");
    let lines: Vec<String> = joined
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(str::to_owned)
        .collect();
    let last_from = lines
        .iter()
        .rposition(|line| line.starts_with("FROM "))
        .unwrap();
    lines[last_from..].to_vec()
}

fn instruction<'a>(stage: &'a [String], name: &str) -> Vec<&'a str> {
    stage
        .iter()
        .filter_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .collect()
}

#[test]
fn the_image_runs_unprivileged_checks_livez_on_its_port_and_stops_on_sigterm() {
    let stage = final_stage();
    let user = instruction(&stage, "USER");
    assert_eq!(user.len(), 1, "one USER line in the image: {user:?}");
    let uid = user[0].split(':').next().unwrap();
    assert!(
        uid != "root" && uid != "0",
        "the image must not run as root: {uid}"
    );

    let expose = instruction(&stage, "EXPOSE");
    assert_eq!(expose, ["8080"]);
    let env = instruction(&stage, "ENV").join(" ");
    assert!(env.contains("STAMPEDE_LISTEN=0.0.0.0:8080"), "{env}");
    let health = instruction(&stage, "HEALTHCHECK").join(" ");
    assert!(health.contains("http://127.0.0.1:8080/livez"), "{health}");
    assert_eq!(instruction(&stage, "STOPSIGNAL"), ["SIGTERM"]);
    assert_eq!(instruction(&stage, "CMD"), [r#"["serve"]"#]);
    // Every variable the image sets is a setting the binary knows.
    for name in env.split_whitespace().filter_map(|kv| kv.split_once('=')) {
        let setting = name
            .0
            .strip_prefix("STAMPEDE_")
            .unwrap()
            .to_ascii_lowercase();
        assert!(
            stampede::config::names::Setting::named(&setting).is_some(),
            "{} is not a setting",
            name.0
        );
    }
    // No secret is baked in.
    assert!(!env.contains("SECRET"), "{env}");
}

#[test]
fn the_build_context_leaves_out_outputs_data_and_history() {
    let ignored: Vec<String> = read(".dockerignore")
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(str::to_owned)
        .collect();
    for needed in ["target", "stampede-data", ".git", "**/*.db"] {
        assert!(
            ignored.iter().any(|line| line == needed),
            "{needed} in {ignored:?}"
        );
    }
}

#[test]
fn the_ci_workflow_is_a_valid_github_workflow_that_runs_what_ci_runs() {
    let workflow = repo().join(".github/workflows/ci.yml");
    let mut command = python_tool("check-jsonschema");
    command
        .args(["--builtin-schema", "vendor.github-workflows"])
        .arg(&workflow);
    lint(command, "check-jsonschema");
    let text = read(".github/workflows/ci.yml");
    // The same steps as here, with the cluster tests unable to skip.
    assert!(text.contains("run: bash .ci/run"), "{text}");
    assert!(text.contains("CI: \"true\""), "{text}");
    // The services the cluster tests use, NATS with JetStream on.
    for service in ["image: postgres:", "image: redis:", "nats:2.11 -js"] {
        assert!(text.contains(service), "{service} in {text}");
    }
    assert!(text.contains("actions/cache@"), "cargo is cached");
}

/// Every Kubernetes object under deploy/kubernetes (files with an
/// `apiVersion` and a `kind`), read as JSON through the tools' Python, by
/// path relative to that directory.
fn kubernetes_objects() -> Vec<(PathBuf, serde_json::Value)> {
    let root = repo().join("deploy/kubernetes");
    let mut files = Vec::new();
    let mut dirs = vec![root.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|ext| ext == "yaml") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
        .into_iter()
        .map(|path| (path.strip_prefix(&root).unwrap().to_owned(), yaml(&path)))
        .filter(|(_, value)| value.get("apiVersion").is_some() && value.get("kind").is_some())
        .collect()
}

/// A YAML file (one document) as JSON.
fn yaml(path: &Path) -> serde_json::Value {
    let mut python = python_tool("python");
    python
        .arg("-c")
        .arg("import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))")
        .arg(path);
    let output = python.output().unwrap();
    assert!(
        output.status.success(),
        "{}: {}",
        path.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// `kubernetes-validate --strict` on JSON objects, written to scratch files.
fn validate_kubernetes(objects: &[(String, serde_json::Value)]) {
    let scratch = tempfile::tempdir().unwrap();
    let mut command = python_tool("kubernetes-validate");
    command.args(["--strict", "--no-warn"]);
    for (name, object) in objects {
        let file = scratch
            .path()
            .join(format!("{}.json", name.replace('/', "_")));
        std::fs::write(&file, serde_json::to_vec_pretty(object).unwrap()).unwrap();
        command.arg(file);
    }
    lint(command, "kubernetes-validate --strict");
}

#[test]
fn every_kubernetes_manifest_is_a_complete_valid_object() {
    let objects = kubernetes_objects();
    assert!(objects.len() >= 10, "{} objects", objects.len());
    let named: Vec<(String, serde_json::Value)> = objects
        .into_iter()
        .map(|(path, object)| (path.display().to_string(), object))
        .collect();
    validate_kubernetes(&named);
}

/// Applies an overlay's inline JSON 6902 patches (`replace` and `add` on
/// existing parents) to the base objects they target, as Kustomize would.
fn apply_overlay(overlay: &str) -> Vec<(String, serde_json::Value)> {
    let kustomization = yaml(
        &repo()
            .join("deploy/kubernetes/overlays")
            .join(overlay)
            .join("kustomization.yaml"),
    );
    assert_eq!(kustomization["resources"][0], "../../base");
    let mut objects: Vec<(String, serde_json::Value)> = kubernetes_objects()
        .into_iter()
        .filter(|(path, _)| path.starts_with("base"))
        .map(|(path, object)| (path.display().to_string(), object))
        .collect();
    for patch in kustomization["patches"].as_array().unwrap() {
        let (kind, name) = (&patch["target"]["kind"], &patch["target"]["name"]);
        let (_, object) = objects
            .iter_mut()
            .find(|(_, o)| o["kind"] == *kind && o["metadata"]["name"] == *name)
            .unwrap_or_else(|| panic!("no {kind} {name} in the base"));
        let scratch = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(scratch.path(), patch["patch"].as_str().unwrap()).unwrap();
        for operation in yaml(scratch.path()).as_array().unwrap() {
            let op = operation["op"].as_str().unwrap();
            assert!(op == "replace" || op == "add", "{op}");
            let path = operation["path"].as_str().unwrap();
            let (parent, key) = path.rsplit_once('/').unwrap();
            let parent = object
                .pointer_mut(parent)
                .unwrap_or_else(|| panic!("{path}: no parent in {kind} {name}"));
            let value = operation["value"].clone();
            match parent {
                serde_json::Value::Object(map) => {
                    if op == "replace" {
                        assert!(map.contains_key(key), "{path}: nothing to replace");
                    }
                    map.insert(key.to_owned(), value);
                }
                serde_json::Value::Array(items) => items[key.parse::<usize>().unwrap()] = value,
                other => panic!("{path}: parent is {other}"),
            }
        }
    }
    objects
}

#[test]
fn the_production_overlay_patches_the_base_into_valid_objects() {
    let objects = apply_overlay("production");
    let api = objects
        .iter()
        .find(|(_, o)| o["kind"] == "Deployment" && o["metadata"]["name"] == "stampede-api")
        .unwrap();
    assert_eq!(api.1["spec"]["replicas"], 4);
    validate_kubernetes(&objects);
}

#[test]
fn deployments_probe_the_real_endpoints_and_outlast_the_drain() {
    let objects = kubernetes_objects();
    let settings = objects
        .iter()
        .find(|(_, o)| o["kind"] == "ConfigMap" && o["metadata"]["name"] == "stampede-settings")
        .map(|(_, o)| o["data"].clone())
        .unwrap();
    let listen = settings["STAMPEDE_LISTEN"].as_str().unwrap();
    let port: u64 = listen.rsplit_once(':').unwrap().1.parse().unwrap();
    let drain: u64 = settings["STAMPEDE_SHUTDOWN_GRACE_SECS"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let deployments: Vec<_> = objects
        .iter()
        .filter(|(_, o)| o["kind"] == "Deployment")
        .collect();
    assert_eq!(deployments.len(), 2, "api and worker");
    for (path, deployment) in deployments {
        let pod = &deployment["spec"]["template"]["spec"];
        let container = &pod["containers"][0];
        assert_eq!(
            container["ports"][0]["containerPort"],
            port,
            "{}",
            path.display()
        );
        assert_eq!(container["ports"][0]["name"], "http");
        for (probe, endpoint) in [
            ("startupProbe", "/startupz"),
            ("readinessProbe", "/readyz"),
            ("livenessProbe", "/livez"),
        ] {
            let get = &container[probe]["httpGet"];
            assert_eq!(get["path"], endpoint, "{probe} of {}", path.display());
            assert_eq!(get["port"], "http", "{probe} of {}", path.display());
        }
        let pause = container["lifecycle"]["preStop"]["sleep"]["seconds"]
            .as_u64()
            .unwrap();
        let grace = pod["terminationGracePeriodSeconds"].as_u64().unwrap();
        assert!(
            grace > pause + drain,
            "{}: grace {grace} s must exceed the preStop pause {pause} s and the drain {drain} s",
            path.display()
        );
        let role = &container["env"][0];
        assert_eq!(role["name"], "STAMPEDE_ROLE");
        assert!(
            role["value"] == "api" || role["value"] == "worker",
            "{role}"
        );
    }
}

#[test]
fn every_setting_the_manifests_give_is_one_the_binary_knows() {
    for (path, object) in kubernetes_objects() {
        let data = match object["kind"].as_str() {
            Some("Secret") => &object["stringData"],
            Some("ConfigMap") if object["metadata"]["name"] == "stampede-settings" => {
                &object["data"]
            }
            _ => continue,
        };
        let keys = data.as_object().unwrap().keys();
        for key in keys {
            let name = key
                .strip_prefix("STAMPEDE_")
                .unwrap_or_else(|| panic!("{key} in {}", path.display()));
            assert!(
                stampede::config::names::Setting::named(&name.to_ascii_lowercase()).is_some(),
                "{key} in {} is not a setting",
                path.display()
            );
        }
    }
}
