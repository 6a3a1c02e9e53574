//! The packaging files against real linters (from PyPI, installed by
//! `scripts/setup.sh` under the target directory, and Debian's shellcheck),
//! and what each must promise, read from the files themselves: the image
//! (`image`), the CI workflow (`workflow`), the Kubernetes manifests
//! (`kubernetes`), the compose stack (`compose`) and the log-shipping
//! example (`logging`).

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

mod compose;
mod image;
mod kubernetes;
mod logging;
mod workflow;

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap()
}

/// Runs a linter and fails with its findings.
pub fn lint(mut command: Command, what: &str) {
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
pub fn python_tool(name: &str) -> Command {
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).parent().unwrap();
    let tool = target.join("tools-venv/bin").join(name);
    assert!(
        tool.is_file(),
        "{} is missing: run scripts/setup.sh",
        tool.display()
    );
    Command::new(tool)
}

/// A YAML file (one document) as JSON.
pub fn yaml(path: &Path) -> serde_json::Value {
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
