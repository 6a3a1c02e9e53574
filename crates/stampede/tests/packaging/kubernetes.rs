//! The Kubernetes manifests: every object valid (`kubernetes-validate
//! --strict`), the production overlay too, probes on the real endpoints, a
//! grace period past the drain, and only settings the binary knows.

use std::path::PathBuf;

use crate::{lint, python_tool, repo, yaml};

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
