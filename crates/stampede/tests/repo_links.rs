//! Everything a contributor needs is in this repository (docs/design.md §11):
//! no tracked file may link to, or name, a document that is not in it.
//!
//! - Every relative Markdown link (`[text](path)`, `![alt](path)`, and
//!   reference definitions `[label]: path`) in a tracked `.md` file must
//!   resolve to a tracked file or directory. `#anchors` and `?queries` are
//!   stripped; `http:`, `https:` and `mailto:` links are not checked.
//! - No tracked file outside a `tests/` folder may mention the documents that
//!   once lived beside the repository (`../shared`, `shared/DESIGN.md`, …).
//! - Repository paths written in backticks in a tracked `.md` file
//!   (`crates/…`, `docs/…`, `scripts/…`) must exist, so the docs follow the
//!   code when it moves.
//!
//! Files are listed with `git ls-files` where git is available, else by a
//! walk of the tree that skips `target/` and `.git/`.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Names of documents outside the repository that no file may cite.
const OUTSIDE: &[&str] = &[
    "../shared",
    "shared/DESIGN.md",
    "shared/API.md",
    "shared/STACK.md",
    "shared/STYLE.md",
];

/// Where repository paths in backticks start.
const PATH_ROOTS: &[&str] = &["crates/", "docs/", "scripts/", ".ci/", ".config/"];

/// The workspace root: the nearest ancestor of this crate whose Cargo.toml
/// declares the workspace.
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .find(|dir| {
            std::fs::read_to_string(dir.join("Cargo.toml"))
                .is_ok_and(|text| text.contains("[workspace]"))
        })
        .expect("no workspace Cargo.toml above this crate")
        .to_path_buf()
}

/// The repository's files, relative to `root` with `/` separators, that
/// exist in the working tree.
fn tracked_files(root: &Path) -> BTreeSet<String> {
    let listed = Command::new("git")
        .arg("-C")
        .arg(root)
        .args(["ls-files", "-z"])
        .output()
        .ok()
        .filter(|out| out.status.success() && !out.stdout.is_empty());
    let files: BTreeSet<String> = match listed {
        Some(out) => String::from_utf8_lossy(&out.stdout)
            .split('\0')
            .filter(|name| !name.is_empty())
            .map(str::to_owned)
            .collect(),
        None => {
            let mut files = BTreeSet::new();
            walk(root, root, &mut files);
            files
        }
    };
    // A file deleted in the working tree but still in the index is gone.
    files
        .into_iter()
        .filter(|name| root.join(name).is_file())
        .collect()
}

fn walk(root: &Path, dir: &Path, files: &mut BTreeSet<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        if name == "target" || name == ".git" {
            continue;
        }
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            walk(root, &path, files);
        } else if kind.is_file()
            && let Ok(relative) = path.strip_prefix(root)
        {
            let parts: Vec<_> = relative
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            files.insert(parts.join("/"));
        }
    }
}

/// The text of a Markdown line outside inline code spans.
fn outside_code_spans(line: &str) -> String {
    line.split('`').step_by(2).collect::<Vec<_>>().join(" ")
}

/// The inline code spans of a Markdown line.
fn code_spans(line: &str) -> Vec<&str> {
    line.split('`').skip(1).step_by(2).collect()
}

/// Lines of a Markdown document that are not inside fenced code blocks,
/// with their 1-based numbers.
fn prose_lines(text: &str) -> Vec<(usize, &str)> {
    let mut fence: Option<&str> = None;
    let mut lines = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        let marker = ["```", "~~~"].into_iter().find(|m| trimmed.starts_with(m));
        match (fence, marker) {
            (None, Some(m)) => fence = Some(m),
            (Some(open), Some(m)) if open == m => fence = None,
            (None, None) => lines.push((index + 1, line)),
            _ => {}
        }
    }
    lines
}

/// The targets of the Markdown links on one line (code spans excluded):
/// inline links and images `[text](target "title")`, and a reference
/// definition `[label]: target`.
fn link_targets(line: &str) -> Vec<String> {
    let prose = outside_code_spans(line);
    let mut targets = Vec::new();
    if let Some(definition) = prose.trim_start().strip_prefix('[')
        && let Some((label, rest)) = definition.split_once("]:")
        && !label.is_empty()
        && !label.contains('[')
        && let Some(target) = rest.split_whitespace().next()
    {
        targets.push(target.trim_matches(['<', '>']).to_owned());
    }
    let mut rest = prose.as_str();
    while let Some(at) = rest.find("](") {
        let after = &rest[at + 2..];
        let (target, consumed) = if let Some(inner) = after.strip_prefix('<') {
            match inner.find('>') {
                Some(end) => (inner[..end].to_owned(), end + 2),
                None => (String::new(), after.len()),
            }
        } else {
            // Up to the parenthesis that closes the link, allowing nested
            // pairs in the target; a title starts after whitespace.
            let mut depth = 0usize;
            let mut end = after.len();
            for (i, c) in after.char_indices() {
                match c {
                    '(' => depth += 1,
                    ')' if depth == 0 => {
                        end = i;
                        break;
                    }
                    ')' => depth -= 1,
                    _ => {}
                }
            }
            let inside = &after[..end];
            let target = inside.split_whitespace().next().unwrap_or("");
            (target.to_owned(), end)
        };
        if !target.is_empty() {
            targets.push(target);
        }
        rest = &after[consumed.min(after.len())..];
    }
    targets
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
            if let Some(byte) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(byte);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `path` (with `/` separators) with `.` and `..` resolved; `None` if it
/// climbs above the root.
fn normalise(path: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            other => parts.push(other),
        }
    }
    Some(parts.join("/"))
}

fn has_scheme(target: &str) -> bool {
    match target.split_once(':') {
        Some((scheme, _)) => {
            !scheme.is_empty()
                && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+.-".contains(c))
        }
        None => false,
    }
}

/// Whether `path` is a tracked file, or a directory holding one.
fn in_repo(files: &BTreeSet<String>, path: &str) -> bool {
    let path = path.trim_end_matches('/');
    if path.is_empty() {
        return true;
    }
    if files.contains(path) {
        return true;
    }
    let dir = format!("{path}/");
    files
        .range(dir.clone()..)
        .next()
        .is_some_and(|f| f.starts_with(&dir))
}

/// Why a link from the Markdown file `from` to `target` does not resolve
/// inside the repository, if it does not.
fn broken_link(files: &BTreeSet<String>, from: &str, target: &str) -> Option<String> {
    let target = target.split(['#', '?']).next().unwrap_or("");
    if target.is_empty() {
        return None;
    }
    if has_scheme(target) {
        let scheme = target.split(':').next().unwrap_or("").to_ascii_lowercase();
        return match scheme.as_str() {
            "http" | "https" | "mailto" => None,
            _ => Some(format!("`{target}` is not a file of this repository")),
        };
    }
    let target = percent_decode(target);
    let joined = match target.strip_prefix('/') {
        Some(from_root) => from_root.to_owned(),
        None => match from.rsplit_once('/') {
            Some((dir, _)) => format!("{dir}/{target}"),
            None => target.clone(),
        },
    };
    match normalise(&joined) {
        None => Some(format!("`{target}` points outside the repository")),
        Some(path) if in_repo(files, &path) => None,
        Some(path) => Some(format!(
            "`{target}` (= {path}) is not a tracked file of this repository"
        )),
    }
}

/// A backticked span that names a repository path.
fn repo_path(span: &str) -> Option<&str> {
    let plain = span
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "_./-".contains(c));
    (plain && PATH_ROOTS.iter().any(|root| span.starts_with(root))).then_some(span)
}

fn markdown_problems(files: &BTreeSet<String>, root: &Path) -> Vec<String> {
    let mut problems = Vec::new();
    for file in files.iter().filter(|f| f.ends_with(".md")) {
        let text = std::fs::read_to_string(root.join(file))
            .unwrap_or_else(|err| panic!("reading {file}: {err}"));
        for (number, line) in prose_lines(&text) {
            for target in link_targets(line) {
                if let Some(why) = broken_link(files, file, &target) {
                    problems.push(format!("{file}:{number}: link {why}"));
                }
            }
            for span in code_spans(line) {
                if let Some(path) = repo_path(span)
                    && !in_repo(files, path)
                {
                    problems.push(format!(
                        "{file}:{number}: `{path}` names no file or folder of this repository"
                    ));
                }
            }
        }
    }
    problems
}

fn outside_mentions(files: &BTreeSet<String>, root: &Path) -> Vec<String> {
    let mut problems = Vec::new();
    for file in files {
        if file.split('/').any(|part| part == "tests") {
            continue;
        }
        let Ok(bytes) = std::fs::read(root.join(file)) else {
            continue;
        };
        let text = String::from_utf8_lossy(&bytes);
        for (index, line) in text.lines().enumerate() {
            for name in OUTSIDE.iter().filter(|name| line.contains(*name)) {
                problems.push(format!(
                    "{file}:{}: names `{name}`, which is not in this repository",
                    index + 1
                ));
            }
        }
    }
    problems
}

#[test]
fn every_markdown_link_and_path_resolves_inside_the_repository() {
    let root = repo_root();
    let files = tracked_files(&root);
    assert!(
        files.contains("README.md") && files.contains("docs/design.md"),
        "the file list of {} looks wrong: {} files",
        root.display(),
        files.len()
    );
    let problems = markdown_problems(&files, &root);
    assert!(
        problems.is_empty(),
        "links or paths to files that are not in the repository \
         (a new file must be `git add`ed):\n{}",
        problems.join("\n")
    );
}

#[test]
fn no_file_outside_tests_names_the_documents_that_lived_beside_the_repository() {
    let root = repo_root();
    let files = tracked_files(&root);
    let problems = outside_mentions(&files, &root);
    assert!(
        problems.is_empty(),
        "cite docs/design.md, docs/api.md or docs/stack.md instead:\n{}",
        problems.join("\n")
    );
}

/// The checker itself: it must see the links it is meant to check, and
/// nothing inside code.
#[test]
fn the_checker_finds_broken_links_and_ignores_code_and_the_web() {
    let files: BTreeSet<String> = ["README.md", "docs/design.md", "crates/app/src/lib.rs"]
        .into_iter()
        .map(str::to_owned)
        .collect();
    let doc = "\
See [design](design.md#4-the-purchase-path), [readme](../README.md),
[site](https://example.com/x.md), [mail](mailto:a@b.c), [top](#contents),
![pic](img/missing.png \"a title\") and [gone](../../shared/DESIGN.md).
`[not a link](nowhere.md)` and `crates/app/src/lib.rs` and `crates/gone.rs`.
[ref]: ./nowhere.md
```
[in a fence](fenced.md) `crates/fenced.rs`
```
[app](</crates/app/src/lib.rs>) [folder](../crates/app/)
";
    let mut broken = Vec::new();
    let mut named = Vec::new();
    for (number, line) in prose_lines(doc) {
        for target in link_targets(line) {
            if broken_link(&files, "docs/design.md", &target).is_some() {
                broken.push((number, target));
            }
        }
        for span in code_spans(line) {
            if let Some(path) = repo_path(span).filter(|p| !in_repo(&files, p)) {
                named.push((number, path.to_owned()));
            }
        }
    }
    assert_eq!(
        broken,
        [
            (3, "img/missing.png".to_owned()),
            (3, "../../shared/DESIGN.md".to_owned()),
            (5, "./nowhere.md".to_owned()),
        ]
    );
    assert_eq!(named, [(4, "crates/gone.rs".to_owned())]);

    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    write("docs/x.md", "fine\nsee shared/STACK.md\n");
    write(
        "crates/a/tests/y.rs",
        "// ../shared/DESIGN.md is allowed in tests\n",
    );
    let files = tracked_files(dir.path());
    assert_eq!(files.len(), 2, "{files:?}");
    assert_eq!(
        outside_mentions(&files, dir.path()),
        ["docs/x.md:2: names `shared/STACK.md`, which is not in this repository"]
    );
    assert_eq!(percent_decode("a%20b.md"), "a b.md");
    assert_eq!(normalise("docs/../../x"), None);
}
