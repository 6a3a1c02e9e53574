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
