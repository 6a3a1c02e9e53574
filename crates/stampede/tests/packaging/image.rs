//! The Dockerfile: hadolint, and what the image promises (a non-root user, a
//! health check on `/livez` at the port it listens on, SIGTERM to stop); the
//! build context without build outputs, data, secrets or history;
//! shellcheck on every shell script (`scripts/`, `deploy/`, `.ci/run`).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{lint, python_tool, read, repo};

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
    // scripts/ and deploy/, every level down.
    let mut dirs = vec![PathBuf::from("scripts"), PathBuf::from("deploy")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(repo().join(&dir)).unwrap() {
            let entry = entry.unwrap();
            let path = dir.join(entry.file_name());
            if entry.file_type().unwrap().is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|ext| ext == "sh") {
                scripts.push(path);
            }
        }
    }
    assert!(
        scripts.contains(&Path::new("deploy/compose/new-env.sh").to_owned()),
        "{scripts:?}"
    );
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
pub(crate) fn final_stage() -> Vec<String> {
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

pub(crate) fn instruction<'a>(stage: &'a [String], name: &str) -> Vec<&'a str> {
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
    // .env: compose's secrets (deploy/compose/new-env.sh).
    for needed in ["target", "stampede-data", ".git", "**/*.db", ".env"] {
        assert!(
            ignored.iter().any(|line| line == needed),
            "{needed} in {ignored:?}"
        );
    }
}
