//! The layout keeps the architecture readable (docs/design.md §3):
//!
//! - no two top-level modules of a crate import each other, directly or
//!   through others (`crate::x` paths in code, tests excluded), so each
//!   crate's modules form layers;
//! - no file under `crates/*/src` is longer than 1,300 lines;
//! - no crate holds more than a quarter of the lines under `crates/*/src`.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const MAX_FILE_LINES: usize = 1_300;

fn crates_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("crates/ above this crate")
        .to_path_buf()
}

/// Every `.rs` file below `dir`, recursively.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            out.push(path);
        }
    }
}

/// One crate's sources: (path below `src/`, text).
fn sources(krate: &Path) -> Vec<(String, String)> {
    let src = krate.join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files
        .into_iter()
        .map(|path| {
            let relative = path
                .strip_prefix(&src)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            (relative, std::fs::read_to_string(&path).unwrap())
        })
        .collect()
}

/// The top-level module a file belongs to (`None`: the crate root).
fn top_module(relative: &str) -> Option<String> {
    let first = relative.split('/').next().unwrap();
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (!matches!(name, "lib" | "main")).then(|| name.to_owned())
}

/// The top-level modules `text` names as `crate::<module>`, outside comments
/// and test modules.
fn crate_references(text: &str) -> BTreeSet<String> {
    let code = text.split("#[cfg(test)]").next().unwrap_or_default();
    let mut names = BTreeSet::new();
    for line in code.lines().filter(|l| !l.trim_start().starts_with("//")) {
        for (at, _) in line.match_indices("crate::") {
            // `$crate::` and `stampede_crate::` are not this crate's paths.
            let before = line[..at].chars().next_back();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
                continue;
            }
            let name: String = line[at + "crate::".len()..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                names.insert(name);
            }
        }
    }
    names
}

/// A cycle in `edges`, if there is one, as the modules on it.
fn find_cycle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            return Some(path[at..].to_vec());
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in edges.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, edges, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    edges
        .keys()
        .find_map(|node| visit(node, edges, &mut Vec::new(), &mut done))
}

fn crate_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(crates_dir())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.join("src").is_dir())
        .collect();
    dirs.sort();
    dirs
}

#[test]
fn no_two_modules_of_a_crate_import_each_other() {
    let mut circles = Vec::new();
    for krate in crate_dirs() {
        let files = sources(&krate);
        let modules: BTreeSet<String> = files.iter().filter_map(|(r, _)| top_module(r)).collect();
        let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (relative, text) in &files {
            let Some(from) = top_module(relative) else {
                continue;
            };
            for to in crate_references(text) {
                if to != from && modules.contains(&to) {
                    edges.entry(from.clone()).or_default().insert(to);
                }
            }
        }
        if let Some(cycle) = find_cycle(&edges) {
            circles.push(format!("{}: {}", krate.display(), cycle.join(" → ")));
        }
    }
    assert!(
        circles.is_empty(),
        "import circles:\n{}",
        circles.join("\n")
    );
}

#[test]
fn no_source_file_is_too_long_and_no_crate_too_large() {
    let mut too_long = Vec::new();
    let mut per_crate = Vec::new();
    for krate in crate_dirs() {
        let mut lines = 0;
        for (relative, text) in sources(&krate) {
            let n = text.lines().count();
            if n > MAX_FILE_LINES {
                too_long.push(format!("{}/src/{relative}: {n} lines", krate.display()));
            }
            lines += n;
        }
        per_crate.push((krate, lines));
    }
    assert!(
        too_long.is_empty(),
        "files over {MAX_FILE_LINES} lines:\n{}",
        too_long.join("\n")
    );
    let total: usize = per_crate.iter().map(|(_, n)| n).sum();
    for (krate, lines) in &per_crate {
        assert!(
            lines * 4 <= total,
            "{} holds {lines} of {total} lines under crates/*/src, over a quarter: split it",
            krate.display()
        );
    }
}

#[test]
fn the_circle_check_sees_a_circle() {
    let edges = BTreeMap::from([
        ("state".to_owned(), BTreeSet::from(["protect".to_owned()])),
        ("protect".to_owned(), BTreeSet::from(["state".to_owned()])),
    ]);
    assert_eq!(find_cycle(&edges).unwrap().len(), 2);
    let references = crate_references(
        "use crate::state::AppState;\n// crate::ignored\nlet x = $crate::macro_path;\n",
    );
    assert_eq!(references, BTreeSet::from(["state".to_owned()]));
}
