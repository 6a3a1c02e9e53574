//! The CI workflow: valid against GitHub's workflow schema, and running
//! `.ci/run` with the cluster tests' services and `CI=true`.

use crate::{lint, python_tool, read, repo};

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
